"""Power analysis and seed budgeting: how many seeds a test or an interval needs, and the power
the seeds run had (the primary test's power is statsmodels ``TTestPower``'s, the paired t-test's).
"""
from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING

import numpy as np
from scipy import stats as sps
from statsmodels.stats.power import TTestPower

from harness.stats.inference import ALPHA, MARGIN

if TYPE_CHECKING:
    import pandas as pd

POWER = 0.80


def tost_seeds_needed(mean: float, sd: float, target: float, margin: float = MARGIN,
                      alpha: float = ALPHA, cap: int = 100_000) -> float:
    """Seeds for the equivalence test to pass if the mean and SD stay as observed.

    The smallest n >= 2 with t(1 - alpha, n - 1) x sd / sqrt(n) < margin - |mean - target|;
    inf when the mean lies outside the band (more seeds cannot help), NaN when unknown.
    """
    if not all(map(math.isfinite, (mean, sd, target, margin))):
        return np.nan
    room = margin - abs(mean - target)
    if room <= 0:
        return math.inf
    if sd == 0:
        return 2.0
    n = np.arange(2, cap + 1)
    ok = sps.t.ppf(1 - alpha, n - 1) * sd / np.sqrt(n) < room
    return float(n[np.argmax(ok)]) if ok.any() else math.inf


_TTEST_POWER = TTestPower()


def seeds_needed(sd: float, effect: float, alpha: float = ALPHA, power: float = POWER) -> float:
    """Seeds for a two-sided paired t-test to detect ``effect`` with ``power`` at ``alpha``.

    statsmodels ``TTestPower().solve_power`` with Cohen's d = |effect| / sd, rounded up, at least
    2. inf for a zero effect, NaN when sd or effect is unknown; 2 when sd is 0.
    """
    if not (math.isfinite(sd) and math.isfinite(effect)):
        return np.nan
    if effect == 0:
        return math.inf
    if sd == 0:
        return 2.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        n = _TTEST_POWER.solve_power(effect_size=abs(effect) / sd, nobs=None, alpha=alpha, power=power,
                                     alternative="two-sided")
    n = float(np.asarray(n).squeeze())
    return float(max(2, math.ceil(n))) if math.isfinite(n) else math.inf


def achieved_power(sd: float, effect: float, n: int, alpha: float = ALPHA) -> float:
    """Power of the two-sided paired t-test with ``n`` seeds to detect ``effect`` (NaN if unknown)."""
    if n < 2 or not (math.isfinite(sd) and math.isfinite(effect)):
        return np.nan
    if sd == 0:
        return 1.0 if effect != 0 else alpha
    return float(_TTEST_POWER.power(effect_size=abs(effect) / sd, nobs=n, alpha=alpha, alternative="two-sided"))


def min_detectable_effect(sd: float, n: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """The smallest |delta| (points) the paired t-test detects with ``power`` using ``n`` seeds."""
    if n < 2 or not math.isfinite(sd):
        return np.nan
    if sd == 0:
        return 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        es = _TTEST_POWER.solve_power(effect_size=None, nobs=n, alpha=alpha, power=power, alternative="two-sided")
    return float(np.asarray(es).squeeze()) * sd


def format_seeds(n: float) -> str:
    """``≈ 12``; ``> 10⁵`` past the search cap; ``∞`` for a zero effect; ``?`` when unknown."""
    if n is None or (isinstance(n, float) and math.isnan(n)):
        return "?"
    if math.isinf(n):
        return "∞"
    return "> 10⁵" if n > 100_000 else f"≈ {int(n)}"


def next_seed_counts(comparisons: pd.DataFrame, counts: dict[tuple[str, str], int], width: float, max_seeds: int,
                     baseline: str) -> tuple[dict[tuple[str, str], int], dict[str, float]]:
    """One round of the seed budget: the new seed count of every (row, dataset) that needs more.

    ``comparisons`` is :func:`harness.stats.compare_to_baseline`'s frame. A row needs more seeds
    while its delta CI half-width is above ``width`` (or unknown: fewer than 2 seeds) and it has
    fewer than ``max_seeds``; it gets the count that would bring the half-width to ``width`` if
    it shrank as 1/sqrt(n), at least one more seed, at most the cap. The baseline of each dataset
    then gets its neediest row's count. Returns (changed counts, half-widths by "row | dataset").
    """
    need: dict[tuple[str, str], int] = {}
    halves: dict[str, float] = {}
    for r in comparisons.itertuples():
        key = (r.row, r.dataset)
        n = counts.get(key, 0)
        half = (r.diff_ci_high - r.diff_ci_low) / 2
        halves[f"{r.row} | {r.dataset}"] = float(half)
        if (math.isfinite(half) and half <= width) or n >= max_seeds:
            continue
        target = n + 1 if not math.isfinite(half) else math.ceil(n * (half / width) ** 2)
        need[key] = min(max_seeds, max(n + 1, target))
    for (row, ds), n in list(need.items()):
        if counts.get((baseline, ds), 0) < n:
            need[(baseline, ds)] = max(need.get((baseline, ds), 0), n)
    return need, halves
