"""Claim verdicts: the one definition of each (``VERDICTS``, the texts the report prints), the
rule that assigns one to a cell, and the significance markers.
"""
from __future__ import annotations

import math

import numpy as np

from harness.stats.inference import ALPHA
from harness.stats.power import POWER

REPRODUCED = "reproduced"
DIRECTION_HOLDS = "direction holds"
DIRECTION_REVERSED = "direction reversed"
NOT_REPRODUCED = "not reproduced"
INCONCLUSIVE = "inconclusive"
NOT_COMPARABLE = "not comparable"
NO_RESULT = "no result"
REFERENCE = "reference"

POSITIVE_VERDICTS = (REPRODUCED, DIRECTION_HOLDS)

VERDICTS: dict[str, str] = {
    REFERENCE: "A row shown with the paper's value only (other methods); it is never run.",
    NO_RESULT: "No seed of this cell finished (all failed, missing or stale).",
    REPRODUCED: (
        "Real data, at least 2 ok seeds, and our mean is equivalent to the paper's value within "
        "the table's margin (± 1 point unless the spec says otherwise): both one-sided t-tests "
        "of TOST reject at α, i.e. the 90% t-CI of our mean lies inside paper ± margin; and the "
        "row's effect against the baseline is not significantly reversed. It judges the cell's "
        "value, never synthetic data."
    ),
    DIRECTION_HOLDS: (
        "The row's effect against the baseline row on the same dataset has the paper's sign and "
        "the seed-level primary test (paired t-test on seed-matched deltas) is significant after "
        "Holm correction over the table (p_Holm < α)."
    ),
    DIRECTION_REVERSED: (
        "The seed-level primary test is significant after Holm correction, but the effect has "
        "the opposite sign of the paper's."
    ),
    NOT_REPRODUCED: (
        "Real data with a paper value whose 95% t-CI of our mean excludes the paper's value; or "
        "a row whose seed-level test had at least 80% power to detect the paper's delta with the "
        "seeds run and still is not significant (the effect is absent, not merely unmeasured)."
    ),
    INCONCLUSIVE: (
        "None of the above, and the seeds run cannot decide: the seed-level test of the row's "
        "effect had less than 80% power to detect the paper's delta (or fewer than 2 matched "
        "seeds), or the CI of a real-data value contains the paper's value but is too wide for "
        "the equivalence test. Shown with '≈ N seeds needed': the seeds for 80% power at α (the "
        "delta) or for the 90% CI to fit inside the margin (the value), from the observed SD."
    ),
    NOT_COMPARABLE: (
        "Nothing to judge: synthetic stand-in data with no effect question left (the baseline row, "
        "or a row whose paper delta is missing or 0), or real data without a paper value."
    ),
}


def verdict(
    *,
    reference: bool,
    n: int,
    synthetic: bool,
    paper_value: float,
    ci_low: float,
    ci_high: float,
    is_baseline: bool,
    our_delta: float,
    paper_delta: float,
    p_holm: float,
    tost_p: float = math.nan,
    power: float = math.nan,
    alpha: float = ALPHA,
    target_power: float = POWER,
) -> str:
    """Return the verdict of one cell; the rules are the texts in ``VERDICTS``, in that order.

    ``our_delta``/``paper_delta`` are the row's accuracy minus the baseline's on the same dataset
    (NaN where there is no baseline or no paired comparison), ``p_holm`` the Holm-adjusted p of
    the seed-level primary test, ``tost_p`` the equivalence p against the paper's value, ``power``
    the primary test's power to detect the paper's delta with the seeds run.
    """
    if reference:
        return REFERENCE
    if n < 1:
        return NO_RESULT
    fin = math.isfinite
    claim = not is_baseline and fin(paper_delta) and paper_delta != 0  # the paper states an effect
    significant = (not is_baseline and fin(p_holm) and p_holm < alpha and fin(our_delta) and our_delta != 0)
    agrees = significant and claim and np.sign(our_delta) == np.sign(paper_delta)
    reversed_ = significant and claim and not agrees
    value_question = not synthetic and fin(paper_value)
    if value_question and fin(tost_p) and tost_p < alpha and not reversed_:
        return REPRODUCED
    if agrees:
        return DIRECTION_HOLDS
    if reversed_:
        return DIRECTION_REVERSED
    value_differs = value_question and n >= 2 and fin(ci_low) and not ci_low <= paper_value <= ci_high
    effect_absent = claim and fin(power) and power >= target_power
    if value_differs or effect_absent:
        return NOT_REPRODUCED
    if claim or value_question:
        return INCONCLUSIVE
    return NOT_COMPARABLE


def significance_marker(p: float) -> str:
    """``***`` p < 0.001, ``**`` p < 0.01, ``*`` p < alpha (0.05), else empty."""
    if not np.isfinite(p):
        return ""
    if p < 0.001:
        return "***"
    if p < 0.01:
        return "**"
    if p < ALPHA:
        return "*"
    return ""
