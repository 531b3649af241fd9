"""Statistics over the collected frame: CIs, seed-level tests against the baseline, power, verdicts.

Reads only the tidy frame that ``harness.collect.collect_tables`` builds (one row per
table x row x dataset x seed), so it works the same on a frame re-read from the exported
Parquet. Everything here is a plain function from frames to frames.

The unit of replication is the **training run** (a seed): an ablation claims something about a
training procedure, and two procedures differ by more than one trained model each. Choices,
stated once (``statistics_text`` below is what the report prints):

* Per cell (table, row, dataset): mean and sample std (ddof=1) of the test accuracy over the
  seeds whose status is ``ok``; a 95 % CI from the t-distribution with n-1 degrees of freedom.
  With n = 1 there is no CI (NaN) and the report says so.
* "Reproduced" is an equivalence claim: two one-sided t-tests (TOST, statsmodels
  ``DescrStatsW.ttost_mean``) of our mean against the paper's value +- the table's ``margin``
  (default 1 point). A wide CI cannot pass it.
* Against the baseline row on the same dataset, seed-matched (seeds ``ok`` on both sides):

  - the **primary test**, which decides significance, markers and verdicts: a paired t-test on
    the seed-matched accuracy differences (scipy ``ttest_1samp`` of the deltas against 0; option
    Wilcoxon signed-rank, or Welch on the two sets of seeds). Needs 2 matched seeds.
  - the effect CI: a **two-level bootstrap** of the seed-averaged difference. Each replicate
    resamples seeds with replacement and, independently, test images with replacement (the same
    image indices for every seed and for row and baseline, because every run is scored on the
    same test set). The interval is observed +- t(n-1) x bootstrap SE: with a handful of seeds a
    percentile interval is far too narrow (3 seeds have 10 distinct resamples). The crossed
    resampling counts each run's per-image noise twice (in the spread between seeds and again in
    the images), so the interval is conservative: 96-100 % coverage at a nominal 95 % in
    ``tests/harness/test_stats_seed_unit.py``'s simulations; the paired t-test, not this
    interval, decides.
  - descriptive only: the exact McNemar test per seed and pooled over seeds ("these trained
    models differ on this test set"), and, when the ``deepsig`` package is installed, almost
    stochastic order (Dror et al. 2019; eps_min of row over baseline on per-seed accuracies).
  - power (statsmodels ``TTestPower``, the paired t-test's): from the SD of the seed-matched
    deltas, the seeds needed for 80 % power at alpha = 0.05 to detect the paper's delta (our
    observed delta where the paper gives none), the power the seeds we ran had, and the
    minimum detectable effect with them.

* Holm correction (statsmodels ``multipletests(method="holm")``) over one family per table:
  every non-baseline, non-reference row x dataset with a primary p-value.
* Per table and dataset: Kendall tau-b (scipy) between the paper's values and our means, the
  fraction of rows whose delta has the paper's sign, and what test-set selection would add
  (:func:`selection_cost`).
"""
from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from joblib import Memory
from scipy import stats as sps
from statsmodels.stats.contingency_tables import mcnemar as sm_mcnemar
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestPower
from statsmodels.stats.weightstats import DescrStatsW

ALPHA = 0.05
CONFIDENCE = 0.95
POWER = 0.80
N_BOOT = 2000
BOOT_SEED = 0
MARGIN = 1.0  # points; the default of a spec's ``margin`` (harness.specs)
ASO_TAU = 0.2
ASO_ITERATIONS = 200
SEED_METHODS = ("paired-t", "wilcoxon", "welch")

CELL_KEYS = ["table_id", "row", "dataset"]

# Column sets of the analysis frames (also the schema of an empty analysis).
COMPARISON_COLUMNS = ["table_id", "row", "dataset", "n_pairs", "n_pred", "diff", "diff_sd",
                      "diff_ci_low", "diff_ci_high", "ci_method", "seed_stat", "seed_p",
                      "mcnemar_b", "mcnemar_c", "mcnemar_p", "mcnemar_seed_p", "aso_eps",
                      "power_target", "power_target_source", "power", "seeds_needed", "mde", "note",
                      "p_holm"]
CELL_COLUMNS = ["table_id", "row", "dataset", "row_index", "dataset_label", "n", "seeds", "mean", "std",
                "ci_low", "ci_high", "mean_class_accuracy", "gflops", "paper_value", "paper_extra",
                "is_baseline", "reference", "synthetic", "n_failed", "n_missing", "n_stale", "method",
                "overrides", "margin", "tost_p", "tost_seeds_needed", "test_selected_mean", "best_seed",
                "best_seed_test_selected", "budget_width", "budget_max_seeds", "delta_paper",
                *COMPARISON_COLUMNS[3:], "paper_delta", "our_delta", "marker", "verdict", "verdict_note",
                "seeds_reason", "dataset_index"]
SUMMARY_COLUMNS = ["table_id", "dataset", "dataset_label", "kendall_tau", "kendall_p", "kendall_n",
                   "sign_agree", "sign_n", "sign_fraction", "synthetic"]
SELECTION_COLUMNS = ["table_id", "dataset", "dataset_label", "n_rows", "n_seeds", "honest",
                     "test_selected", "best_seed", "best_seed_test_selected", "synthetic"]

# --- verdicts: the one definition ---------------------------------------------------------

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


# --- building blocks (pure, tested against scipy/statsmodels) -----------------------------


@dataclass(frozen=True)
class Summary:
    """Mean, sample std and t-CI of a handful of per-seed values (CI NaN when n < 2)."""

    n: int
    mean: float
    std: float
    ci_low: float
    ci_high: float


def summarise(values: np.ndarray | list[float], confidence: float = CONFIDENCE) -> Summary:
    """Mean, std (ddof=1) and the two-sided t confidence interval of the mean.

    n = 0 gives all NaN; n = 1 gives the value with NaN std and CI (no interval from one seed);
    identical values give a zero-width interval.
    """
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    n = int(x.size)
    if n == 0:
        return Summary(0, np.nan, np.nan, np.nan, np.nan)
    mean = float(x.mean())
    if n == 1:
        return Summary(1, mean, np.nan, np.nan, np.nan)
    std = float(x.std(ddof=1))
    half = float(sps.t.ppf(0.5 + confidence / 2, n - 1)) * std / np.sqrt(n)
    return Summary(n, mean, std, mean - half, mean + half)


@dataclass(frozen=True)
class McNemar:
    """Pooled exact McNemar: b = row right & baseline wrong, c = the converse."""

    b: int
    c: int
    pvalue: float


def mcnemar_pooled(
    y_true: list[np.ndarray], pred_row: list[np.ndarray], pred_base: list[np.ndarray]
) -> McNemar:
    """Exact McNemar test on discordant pairs summed over seed-matched prediction pairs.

    Each list holds one array per matched seed (same test order on both sides). Pooling
    treats every (seed, sample) pair as one paired observation; no discordant pair gives p = 1.
    A single-element list is the per-seed test.
    """
    b = c = 0
    for yt, pr, pb in zip(y_true, pred_row, pred_base, strict=True):
        right_row = np.asarray(pr) == np.asarray(yt)
        right_base = np.asarray(pb) == np.asarray(yt)
        b += int(np.sum(right_row & ~right_base))
        c += int(np.sum(~right_row & right_base))
    if b + c == 0:
        return McNemar(0, 0, 1.0)
    res = sm_mcnemar(np.array([[0, b], [c, 0]]), exact=True)
    return McNemar(b, c, float(res.pvalue))


@dataclass(frozen=True)
class BootstrapCI:
    """Observed seed-averaged difference (points), its bootstrap SE and CI."""

    observed: float
    se: float
    low: float
    high: float


def two_level_bootstrap(
    correct_row: np.ndarray,
    correct_base: np.ndarray,
    *,
    n_boot: int = N_BOOT,
    confidence: float = CONFIDENCE,
    seed: int = BOOT_SEED,
) -> BootstrapCI:
    """Two-level bootstrap CI of the accuracy difference row - baseline, in percentage points.

    correct_row, correct_base: [seeds, samples] booleans, seed-matched, same test order.
    Each replicate draws seeds with replacement and, independently, test images with replacement;
    the image indices are shared by every seed and by row and baseline (all runs are scored on
    one test set, so its sampling error is common to them). Statistic: the mean over drawn seeds
    of the mean over drawn images of (row right - baseline right). Interval: observed +-
    t(S-1) x SE_boot, S = number of seeds (conservative: see the module docstring); NaN for S < 2
    (one run says nothing about the spread between runs). Generator ``np.random.default_rng(seed)``.
    """
    d = np.asarray(correct_row, float) - np.asarray(correct_base, float)  # [S, N]
    if d.ndim != 2 or d.size == 0:
        return BootstrapCI(np.nan, np.nan, np.nan, np.nan)
    n_seeds, n_img = d.shape
    observed = 100.0 * float(d.mean())
    if n_seeds < 2:
        return BootstrapCI(observed, np.nan, np.nan, np.nan)
    rng = np.random.default_rng(seed)
    img = rng.integers(0, n_img, size=(n_boot, n_img))  # [B, N]
    counts = np.zeros((n_boot, n_img))
    np.add.at(counts, (np.arange(n_boot)[:, None], img), 1.0)  # [B, N] multiplicity of each image
    per_seed = counts @ d.T / n_img  # [B, S] each seed's mean over the drawn images
    pick = rng.integers(0, n_seeds, size=(n_boot, n_seeds))  # [B, S]
    boot = 100.0 * np.take_along_axis(per_seed, pick, axis=1).mean(axis=1)  # [B]
    se = float(boot.std(ddof=1))
    half = float(sps.t.ppf(0.5 + confidence / 2, n_seeds - 1)) * se
    return BootstrapCI(observed, se, observed - half, observed + half)


def seed_test(row: np.ndarray, base: np.ndarray, method: str = "paired-t") -> tuple[float, float]:
    """Seed-level test of row vs baseline accuracies: (statistic, p-value).

    ``paired-t`` (the primary test): scipy ``ttest_1samp`` of the seed-matched differences
    against 0 (the same as ``ttest_rel``); ``wilcoxon``: scipy ``wilcoxon`` on them (arrays
    aligned by seed; with n <= 5 it cannot reach p < 0.05); ``welch``: scipy
    ``ttest_ind(equal_var=False)`` on the two sets. NaN with fewer than 2 values on a side;
    p = 1 when every difference is 0; NaN when the differences are equal but not 0 (zero
    variance: the t statistic is undefined).
    """
    row = np.asarray(row, float)
    base = np.asarray(base, float)
    if row.size < 2 or base.size < 2:
        return np.nan, np.nan
    if method == "welch":
        if np.ptp(row) == 0 and np.ptp(base) == 0:
            return (0.0, 1.0) if row[0] == base[0] else (np.nan, np.nan)
        res = sps.ttest_ind(row, base, equal_var=False)
    elif method in ("paired-t", "wilcoxon"):
        diff = row - base
        if np.all(diff == 0):
            return 0.0, 1.0
        if method == "wilcoxon":
            res = sps.wilcoxon(row, base)
        else:
            if np.ptp(diff) == 0:
                return np.nan, np.nan
            res = sps.ttest_1samp(diff, 0.0)
    else:
        raise ValueError(f"unknown seed test {method!r}: use one of {', '.join(SEED_METHODS)}")
    return float(res.statistic), float(res.pvalue)


def tost_pvalue(values: np.ndarray | list[float], target: float, margin: float = MARGIN) -> float:
    """TOST p-value that the mean of ``values`` lies within ``target`` +- ``margin``.

    statsmodels ``DescrStatsW.ttost_mean(target - margin, target + margin)``: the larger of the
    two one-sided t-test p-values (n - 1 df). NaN with fewer than 2 finite values or no target.
    Equivalence at alpha <=> the (1 - 2 alpha) t-CI lies inside the band.
    """
    x = np.asarray(values, float)
    x = x[np.isfinite(x)]
    if x.size < 2 or not math.isfinite(target) or not math.isfinite(margin):
        return np.nan
    if np.ptp(x) == 0:  # zero variance: the tests are decided by where the mean lies
        return 0.0 if abs(x[0] - target) < margin else 1.0
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(DescrStatsW(x).ttost_mean(target - margin, target + margin)[0])


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


def aso_epsilon(row: np.ndarray, base: np.ndarray, *, iterations: int = ASO_ITERATIONS,
                confidence: float = CONFIDENCE, seed: int = BOOT_SEED) -> float:
    """Almost stochastic order (Dror et al. 2019): eps_min of ``row`` over ``base`` (deepsig).

    eps_min < tau (0.2) reads "the row is almost stochastically better"; > 1 - tau "worse".
    NaN when ``deepsig`` is not installed, ``iterations`` is 0 or a side has fewer than 2 seeds.
    deepsig seeds numpy's global generator; its state is restored afterwards.
    """
    row = np.asarray(row, float)
    base = np.asarray(base, float)
    if iterations <= 0 or row.size < 2 or base.size < 2:
        return np.nan
    if not aso_available():
        return np.nan
    return _aso_memo()(row, base, confidence, iterations, seed, version("deepsig"))


def _aso(row: np.ndarray, base: np.ndarray, confidence: float, iterations: int, seed: int,
         deepsig_version: str) -> float:
    from deepsig import aso

    state = np.random.get_state()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "division by zero in violation ratio" for identical seeds
            return float(aso(row, base, confidence_level=confidence, num_bootstrap_iterations=iterations,
                             num_jobs=1, show_progress=False, seed=seed))
    finally:
        np.random.set_state(state)


def _aso_memo() -> Callable[..., float]:
    # ASO is deterministic given its seed but takes about 0.8 s per comparison, most of a cached
    # report's time: joblib memoises it on disk, keyed by the scores, settings and deepsig version.
    root = os.environ.get("FERBENCH_CACHE")  # the cache folder of harness.data (decoded images, stand-ins)
    return Memory(Path(root or Path.home() / ".cache" / "ferbench").expanduser() / "stats", verbose=0).cache(_aso)


def aso_available() -> bool:
    """Whether the ``deepsig`` package (almost stochastic order) can be imported."""
    try:
        import deepsig  # noqa: F401
    except ImportError:
        return False
    return True


def holm(pvalues: np.ndarray | list[float]) -> np.ndarray:
    """Holm-adjusted p-values (statsmodels); NaN entries stay NaN and are not counted."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full_like(p, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        out[ok] = multipletests(p[ok], method="holm")[1]
    return out


def kendall_tau(paper: np.ndarray | list[float], ours: np.ndarray | list[float]) -> tuple[float, float, int]:
    """Kendall tau-b between the paper's values and ours over rows with both: (tau, p, n)."""
    a = np.asarray(paper, float)
    b = np.asarray(ours, float)
    ok = np.isfinite(a) & np.isfinite(b)
    n = int(ok.sum())
    if n < 2:
        return np.nan, np.nan, n
    res = sps.kendalltau(a[ok], b[ok])
    return float(res.statistic), float(res.pvalue), n


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


def format_seeds(n: float) -> str:
    """``≈ 12``; ``> 10⁵`` past the search cap; ``∞`` for a zero effect; ``?`` when unknown."""
    if n is None or (isinstance(n, float) and math.isnan(n)):
        return "?"
    if math.isinf(n):
        return "∞"
    return "> 10⁵" if n > 100_000 else f"≈ {int(n)}"


# --- over the frame --------------------------------------------------------------------------


def _ok(frame: pd.DataFrame) -> pd.DataFrame:
    acc = pd.to_numeric(frame["accuracy"], errors="coerce")
    return frame[(frame["status"] == "ok") & np.isfinite(acc)]


def _first(series: pd.Series, default=None):
    s = series.dropna()
    return s.iloc[0] if len(s) else default


def _num_col(g: pd.DataFrame, col: str) -> pd.Series:
    return pd.to_numeric(g[col], errors="coerce") if col in g else pd.Series(np.nan, index=g.index)


def cell_stats(frame: pd.DataFrame, confidence: float = CONFIDENCE, alpha: float = ALPHA) -> pd.DataFrame:
    """One row per (table, row, dataset): n, mean, std, CI, TOST, paper value, counts by status,
    and what test-set selection and the best seed would have reported."""
    records = []
    for (tid, row, ds), g in frame.groupby(CELL_KEYS, sort=False, dropna=False):
        ok = _ok(g)
        acc = ok["accuracy"].to_numpy(float)
        s = summarise(acc, confidence)
        gflops = _num_col(ok, "gflops")
        paper_value = float(_num_col(g, "paper_value").iloc[0]) if "paper_value" in g else np.nan
        margin = float(_first(_num_col(g, "margin"), MARGIN))
        test_sel = _num_col(ok, "test_selected_accuracy").dropna()
        records.append(
            {
                "table_id": tid,
                "row": row,
                "dataset": ds,
                "row_index": int(_first(g["row_index"], 0)),
                "dataset_label": _first(g.get("dataset_label", pd.Series(dtype=object)), ds),
                "n": s.n,
                "seeds": ",".join(str(int(x)) for x in sorted(ok["seed"].dropna().unique())),
                "mean": s.mean,
                "std": s.std,
                "ci_low": s.ci_low,
                "ci_high": s.ci_high,
                "mean_class_accuracy": float(_num_col(ok, "mean_class_accuracy").mean()) if len(ok) else np.nan,
                "gflops": float(gflops.mean()) if len(gflops.dropna()) else np.nan,
                "paper_value": paper_value,
                "paper_extra": _first(g["paper_extra"], {}) if "paper_extra" in g else {},
                "is_baseline": bool(g["is_baseline"].any()) if "is_baseline" in g else False,
                "reference": bool(g["reference"].any()) if "reference" in g else False,
                # any seed that produced a result (ok or stale) on synthetic stand-in data
                "synthetic": bool(g.loc[g["status"].isin(["ok", "stale"]), "synthetic"].eq(True).any())
                if "synthetic" in g else False,
                "n_failed": int((g["status"] == "failed").sum()),
                "n_missing": int((g["status"] == "missing").sum()),
                "n_stale": int((g["status"] == "stale").sum()),
                "method": _first(g["method"], "") if "method" in g else "",
                "overrides": _first(g["overrides"], {}) if "overrides" in g else {},
                "margin": margin,
                "tost_p": tost_pvalue(acc, paper_value, margin),
                "tost_seeds_needed": tost_seeds_needed(s.mean, s.std, paper_value, margin, alpha),
                "test_selected_mean": float(test_sel.mean()) if len(test_sel) else np.nan,
                "best_seed": float(acc.max()) if acc.size else np.nan,
                "best_seed_test_selected": float(test_sel.max()) if len(test_sel) else np.nan,
                "budget_width": float(_first(_num_col(g, "budget_width"), np.nan)),
                "budget_max_seeds": float(_first(_num_col(g, "budget_max_seeds"), np.nan)),
            }
        )
    out = pd.DataFrame.from_records(records)
    if len(out):
        out["delta_paper"] = out["mean"] - out["paper_value"]
    return out


@dataclass
class _Paired:
    """Seed-matched accuracies of row and baseline, and the predictions where both have them."""

    seeds: list[int]
    acc_row: np.ndarray
    acc_base: np.ndarray
    y_true: list[np.ndarray]
    pred_row: list[np.ndarray]
    pred_base: list[np.ndarray]


def _paired(row_ok: pd.DataFrame, base_ok: pd.DataFrame) -> _Paired:
    base_by_seed = {int(r.seed): r for r in base_ok.itertuples()}
    p = _Paired([], np.array([]), np.array([]), [], [], [])
    ar, ab = [], []
    for r in row_ok.sort_values("seed").itertuples():
        b = base_by_seed.get(int(r.seed))
        if b is None:
            continue
        p.seeds.append(int(r.seed))
        ar.append(float(r.accuracy))
        ab.append(float(b.accuracy))
        if getattr(r, "y_pred", None) is None or getattr(b, "y_pred", None) is None:
            continue
        t_r, t_b = np.asarray(r.y_true), np.asarray(b.y_true)
        if t_r.shape != t_b.shape or not np.array_equal(t_r, t_b):
            continue
        p.y_true.append(t_r)
        p.pred_row.append(np.asarray(r.y_pred))
        p.pred_base.append(np.asarray(b.y_pred))
    p.acc_row, p.acc_base = np.array(ar), np.array(ab)
    return p


def _compare_one(row_ok: pd.DataFrame, base_ok: pd.DataFrame, paper_delta: float, *, n_boot: int,
                 boot_seed: int, confidence: float, seed_method: str, alpha: float, aso_iterations: int) -> dict:
    """The statistics of one row against its baseline on one dataset (see ``compare_to_baseline``)."""
    p = _paired(row_ok, base_ok)
    rec: dict = {"n_pairs": len(p.seeds), "n_pred": len(p.y_true)}
    notes = []
    deltas = p.acc_row - p.acc_base  # [S] points
    if len(deltas):
        rec["diff"] = float(deltas.mean())
        rec["diff_sd"] = float(deltas.std(ddof=1)) if len(deltas) >= 2 else np.nan
    if seed_method == "welch":
        rec["seed_stat"], rec["seed_p"] = seed_test(row_ok["accuracy"].to_numpy(float),
                                                    base_ok["accuracy"].to_numpy(float), "welch")
    else:
        rec["seed_stat"], rec["seed_p"] = seed_test(p.acc_row, p.acc_base, seed_method)
    if len(p.seeds) < 2:
        notes.append(f"{len(p.seeds)} matched seed{'s' if len(p.seeds) != 1 else ''}: no seed-level test")
    if p.y_true:
        cr = np.stack([pr == y for pr, y in zip(p.pred_row, p.y_true)])  # [S', N]
        cb = np.stack([pb == y for pb, y in zip(p.pred_base, p.y_true)])
        m = mcnemar_pooled(p.y_true, p.pred_row, p.pred_base)
        rec.update(mcnemar_b=m.b, mcnemar_c=m.c, mcnemar_p=m.pvalue,
                   mcnemar_seed_p=[mcnemar_pooled([y], [a], [b]).pvalue
                                   for y, a, b in zip(p.y_true, p.pred_row, p.pred_base)])
        if len(p.y_true) == len(p.seeds):
            bs = two_level_bootstrap(cr, cb, n_boot=n_boot, confidence=confidence, seed=boot_seed)
            rec.update(diff_ci_low=bs.low, diff_ci_high=bs.high, ci_method="two-level bootstrap")
    else:
        notes.append("no seed-matched per-sample predictions")
    if "ci_method" not in rec and len(deltas) >= 2:
        s = summarise(deltas, confidence)
        rec.update(diff_ci_low=s.ci_low, diff_ci_high=s.ci_high, ci_method="seed-level t")
    target, source = (abs(paper_delta), "paper") if math.isfinite(paper_delta) and paper_delta != 0 \
        else (abs(rec.get("diff", np.nan)), "ours")
    sd = rec.get("diff_sd", np.nan)
    rec.update(power_target=target, power_target_source=source,
               power=achieved_power(sd, target, len(p.seeds), alpha),
               seeds_needed=seeds_needed(sd, target, alpha), mde=min_detectable_effect(sd, len(p.seeds), alpha),
               aso_eps=aso_epsilon(p.acc_row, p.acc_base, iterations=aso_iterations, confidence=confidence,
                                   seed=boot_seed))
    rec["note"] = "; ".join(notes)
    return rec


def compare_to_baseline(
    frame: pd.DataFrame,
    *,
    n_boot: int = N_BOOT,
    boot_seed: int = BOOT_SEED,
    confidence: float = CONFIDENCE,
    seed_method: str = "paired-t",
    alpha: float = ALPHA,
    aso_iterations: int = ASO_ITERATIONS,
) -> pd.DataFrame:
    """One row per non-baseline, non-reference (table, row, dataset) that has a baseline.

    Columns: n_pairs (seed-matched ok seeds), n_pred (of those, with per-sample predictions),
    diff (mean seed-matched accuracy difference, points) and diff_sd (its SD over seeds),
    diff_ci_low/high (two-level bootstrap; a seed-level t-interval without predictions),
    seed_stat/seed_p (the primary test), the descriptive McNemar (pooled b/c/p and per seed) and
    ASO eps_min, the power columns (target, its source "paper"/"ours", power with the seeds run,
    seeds needed for 80 %, minimum detectable effect), then p_holm (Holm over the table's family)
    and ``note`` when a test could not run.
    """
    if seed_method not in SEED_METHODS:
        raise ValueError(f"unknown seed test {seed_method!r}: use one of {', '.join(SEED_METHODS)}")
    records = []
    for tid, t in frame.groupby("table_id", sort=False):
        base_rows = t[t["is_baseline"].astype(bool)]
        for ds, tds in t.groupby("dataset", sort=False):
            base = base_rows[base_rows["dataset"] == ds]
            base_ok = _ok(base)
            base_paper = float(_num_col(base, "paper_value").iloc[0]) if len(base) else np.nan
            for row, g in tds.groupby("row", sort=False):
                if bool(g["is_baseline"].any()) or bool(g.get("reference", pd.Series([False])).any()):
                    continue
                row_ok = _ok(g)
                rec = {c: np.nan for c in COMPARISON_COLUMNS}
                rec.update(table_id=tid, row=row, dataset=ds, n_pairs=0, n_pred=0, ci_method="", note="",
                           mcnemar_seed_p=None, power_target_source="")
                if base.empty:
                    rec["note"] = "no baseline row"
                elif base_ok.empty:
                    rec["note"] = "baseline has no ok seed"
                elif row_ok.empty:
                    rec["note"] = "row has no ok seed"
                else:
                    paper_delta = float(_num_col(g, "paper_value").iloc[0]) - base_paper
                    rec.update(_compare_one(row_ok, base_ok, paper_delta, n_boot=n_boot, boot_seed=boot_seed,
                                            confidence=confidence, seed_method=seed_method, alpha=alpha,
                                            aso_iterations=aso_iterations))
                records.append(rec)
    out = pd.DataFrame.from_records(records, columns=COMPARISON_COLUMNS)
    out["p_holm"] = np.nan
    for _, idx in out.groupby("table_id").groups.items():
        out.loc[idx, "p_holm"] = holm(out.loc[idx, "seed_p"].to_numpy(float))
    return out


def table_summary(cells: pd.DataFrame) -> pd.DataFrame:
    """One row per (table, dataset): Kendall tau (paper vs ours), sign agreement, verdict counts."""
    records = []
    for (tid, ds), g in cells.groupby(["table_id", "dataset"], sort=False):
        g = g[~g["reference"].astype(bool)]
        tau, p, n = kendall_tau(g["paper_value"].to_numpy(float), g["mean"].to_numpy(float))
        d = g[~g["is_baseline"].astype(bool)]
        ok = d[np.isfinite(d["paper_delta"]) & (d["paper_delta"] != 0) & np.isfinite(d["our_delta"])]
        agree = int((np.sign(ok["our_delta"]) == np.sign(ok["paper_delta"])).sum())
        verdicts = g["verdict"].value_counts().to_dict()
        records.append({
            "table_id": tid, "dataset": ds,
            "dataset_label": g["dataset_label"].iloc[0] if len(g) else ds,
            "kendall_tau": tau, "kendall_p": p, "kendall_n": n,
            "sign_agree": agree, "sign_n": len(ok),
            "sign_fraction": agree / len(ok) if len(ok) else np.nan,
            "synthetic": bool(g["synthetic"].any()),
            **{f"n_{k.replace(' ', '_')}": int(verdicts.get(k, 0)) for k in VERDICTS},
        })
    return pd.DataFrame.from_records(records)


def selection_cost(cells: pd.DataFrame) -> pd.DataFrame:
    """What test-set selection and best-of-seeds would report, per (table, dataset).

    Averages over the table's run rows that have all four numbers: our honest mean (selected on
    validation, mean over seeds), the mean over seeds of the best epoch *on the test set* (the
    public APViT/TransFER/MAE code's protocol), the best seed's honest accuracy, and the best
    seed with test-set epoch selection (best of n runs, as peers report). Inflation = each minus
    the honest mean, in points; it grows with the number of seeds (``n_seeds``: the fewest run).
    """
    c = cells[(cells["n"] > 0) & ~cells["reference"].astype(bool)]
    c = c[np.isfinite(c["test_selected_mean"]) & np.isfinite(c["best_seed_test_selected"])]
    records = []
    for (tid, ds), g in c.groupby(["table_id", "dataset"], sort=False):
        records.append({
            "table_id": tid, "dataset": ds, "dataset_label": g["dataset_label"].iloc[0],
            "n_rows": len(g), "n_seeds": int(g["n"].min()),
            "honest": float(g["mean"].mean()), "test_selected": float(g["test_selected_mean"].mean()),
            "best_seed": float(g["best_seed"].mean()),
            "best_seed_test_selected": float(g["best_seed_test_selected"].mean()),
            "synthetic": bool(g["synthetic"].any()),
        })
    return pd.DataFrame.from_records(records, columns=SELECTION_COLUMNS)


def _verdict_note(r) -> str:
    """'≈ N seeds needed' for an inconclusive cell: the effect's power first, else the value's."""
    if r.verdict != INCONCLUSIVE:
        return ""
    if not r.is_baseline and math.isfinite(r.paper_delta) and r.paper_delta != 0:
        if int(r.n_pairs or 0) < 2:
            return f"{int(r.n_pairs or 0)} matched seed(s): seeds needed unknown"
        return f"{format_seeds(r.seeds_needed)} seeds needed"
    return f"{format_seeds(r.tost_seeds_needed)} seeds needed (±{r.margin:g})"


def _seeds_reason(r) -> str:
    """Why the cell has the seeds it has: the spec's count, or the ``--until-ci`` budget's outcome."""
    if r.reference:
        return ""
    if not math.isfinite(r.budget_width):
        return f"{r.n} seed{'s' if r.n != 1 else ''} (fixed count)"
    cap = int(r.budget_max_seeds) if math.isfinite(r.budget_max_seeds) else None
    if r.is_baseline:
        return f"{r.n}: matches the row that needed most (seed-matched comparisons)"
    half = (r.diff_ci_high - r.diff_ci_low) / 2 if math.isfinite(r.diff_ci_high) else math.nan
    if math.isfinite(half) and half <= r.budget_width:
        return f"{r.n}: delta CI ±{half:.2f} ≤ ±{r.budget_width:g} reached"
    if cap is not None and r.n >= cap:
        return f"{r.n}: cap of {cap} seeds reached (delta CI ±{half:.2f} > ±{r.budget_width:g})"
    return f"{r.n}: budget not finished (delta CI ±{half:.2f} > ±{r.budget_width:g})"


@dataclass
class Analysis:
    """Everything the renderers need: per-cell stats with comparisons and verdicts, per-table
    summaries, the cost of test-set selection, and the parameters used (printed in the report)."""

    cells: pd.DataFrame
    comparisons: pd.DataFrame
    summary: pd.DataFrame
    params: dict = field(default_factory=dict)
    selection: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=SELECTION_COLUMNS))


def analyse(
    frame: pd.DataFrame,
    *,
    alpha: float = ALPHA,
    confidence: float = CONFIDENCE,
    n_boot: int = N_BOOT,
    boot_seed: int = BOOT_SEED,
    seed_method: str = "paired-t",
    aso_iterations: int = ASO_ITERATIONS,
) -> Analysis:
    """Run every statistic over the frame and attach a verdict to each cell.

    ``aso_iterations=0`` skips almost stochastic order (it costs ~2 ms per iteration and row).
    """
    params = {"alpha": alpha, "confidence": confidence, "n_boot": n_boot, "boot_seed": boot_seed,
              "seed_method": seed_method, "power": POWER,
              "aso_iterations": aso_iterations if aso_available() else 0}
    if frame.empty:
        return Analysis(pd.DataFrame(columns=CELL_COLUMNS), pd.DataFrame(columns=COMPARISON_COLUMNS),
                        pd.DataFrame(columns=SUMMARY_COLUMNS + [f"n_{k.replace(' ', '_')}" for k in VERDICTS]),
                        params)
    cells = cell_stats(frame, confidence, alpha)
    comps = compare_to_baseline(frame, n_boot=n_boot, boot_seed=boot_seed, confidence=confidence,
                                seed_method=seed_method, alpha=alpha, aso_iterations=aso_iterations)
    cells = cells.merge(comps, on=CELL_KEYS, how="left")
    cells["n_pairs"] = cells["n_pairs"].fillna(0)
    # Baseline mean / paper value per (table, dataset), for the deltas against it.
    base = cells[cells["is_baseline"]].set_index(["table_id", "dataset"])
    key = pd.MultiIndex.from_frame(cells[["table_id", "dataset"]])
    base_mean = base["mean"].reindex(key).to_numpy(float) if len(base) else np.full(len(cells), np.nan)
    base_paper = base["paper_value"].reindex(key).to_numpy(float) if len(base) else np.full(len(cells), np.nan)
    cells["paper_delta"] = cells["paper_value"].to_numpy(float) - base_paper
    # Our delta: the seed-matched difference when there is one, else the difference of means.
    cells["our_delta"] = np.where(
        np.isfinite(cells["diff"].to_numpy(float)),
        cells["diff"].to_numpy(float),
        cells["mean"].to_numpy(float) - base_mean,
    )
    cells.loc[cells["is_baseline"], ["our_delta", "paper_delta"]] = np.nan
    cells["marker"] = [significance_marker(p) for p in cells["p_holm"].to_numpy(float)]
    cells["verdict"] = [
        verdict(
            reference=bool(r.reference), n=int(r.n), synthetic=bool(r.synthetic),
            paper_value=float(r.paper_value), ci_low=float(r.ci_low), ci_high=float(r.ci_high),
            is_baseline=bool(r.is_baseline), our_delta=float(r.our_delta),
            paper_delta=float(r.paper_delta), p_holm=float(r.p_holm), tost_p=float(r.tost_p),
            power=float(r.power), alpha=alpha,
        )
        for r in cells.itertuples()
    ]
    cells["verdict_note"] = [_verdict_note(r) for r in cells.itertuples()]
    cells["seeds_reason"] = [_seeds_reason(r) for r in cells.itertuples()]
    # Keep the frame's order of tables and datasets (the specs' order), not the alphabet's.
    table_order = {t: i for i, t in enumerate(pd.unique(frame["table_id"]))}
    ds_order = {ds: i for i, ds in enumerate(pd.unique(frame["dataset"]))}
    cells["dataset_index"] = cells["dataset"].map(ds_order)
    cells = (cells.assign(_t=cells["table_id"].map(table_order))
             .sort_values(["_t", "row_index", "dataset_index"], kind="stable")
             .drop(columns="_t").reset_index(drop=True))
    cells = cells[CELL_COLUMNS]
    return Analysis(cells, comps, table_summary(cells), params, selection_cost(cells))


def statistics_text(params: dict | None = None) -> list[tuple[str, str]]:
    """The definitions the report prints, as (name, text) pairs, from the module's constants."""
    p = {"alpha": ALPHA, "confidence": CONFIDENCE, "n_boot": N_BOOT, "boot_seed": BOOT_SEED,
         "seed_method": "paired-t", "power": POWER, "aso_iterations": ASO_ITERATIONS, **(params or {})}
    conf = f"{p['confidence']:.0%}"
    seed_name = {
        "paired-t": "paired t-test on the seed-matched accuracy differences (row − baseline, one per seed)",
        "wilcoxon": "Wilcoxon signed-rank test on the seed-matched accuracy differences (it cannot reach "
                    "p < 0.05 with 5 seeds or fewer)",
        "welch": "Welch t-test (unequal variances) on the two sets of per-seed accuracies",
    }[p["seed_method"]]
    aso = (f"Almost stochastic order (Dror et al. 2019, deepsig): ε_min of the row over the baseline on "
           f"per-seed accuracies ({p['aso_iterations']} bootstrap iterations). ε_min < {ASO_TAU} reads "
           f"'the row is almost stochastically better', > {1 - ASO_TAU:.1f} 'worse'. Descriptive; "
           "with 3 seeds it is optimistic.") if p["aso_iterations"] else \
        "Almost stochastic order: not computed (the deepsig package is not installed, or it was switched off)."
    return [
        ("Unit", "The unit of replication is the training run (a seed): the claims of an ablation table are "
                 "about training procedures. One cell = one (table, row, dataset); n = the number of seeds "
                 "whose run finished (status ok); failed, missing and stale seeds are left out and listed "
                 "in the ledger."),
        ("Cell estimate", f"Mean and sample standard deviation (ddof = 1) of test accuracy over the n "
                          f"seeds; {conf} CI = mean ± t(n-1) · sd / √n. With n = 1 there is no CI "
                          "(shown as 'n=1, no CI')."),
        ("Equivalence (reproduced)", "Two one-sided t-tests (TOST) of our mean against the paper's value "
                                     "± the table's margin (spec field 'margin', default 1 point): "
                                     "equivalent at α when the (1 − 2α) t-CI lies inside the band. A wide "
                                     "CI cannot pass it, so more seeds are needed, not fewer."),
        ("Primary test", f"Against the table's baseline row on the same dataset: {seed_name}. It alone "
                         "decides significance, the markers and the verdicts. Needs 2 matched seeds."),
        ("Effect CI", f"A two-level bootstrap of the seed-averaged accuracy difference (points): each of "
                      f"{p['n_boot']} replicates resamples the matched seeds with replacement and, "
                      "independently, the test images with replacement (the same images for every seed, "
                      "row and baseline: all runs are scored on one test set). Interval = observed ± "
                      "t(n−1) · bootstrap SE, since a percentile interval over 3 seeds is far too narrow; "
                      f"{conf}, generator seed {p['boot_seed']}. It counts each run's per-image noise twice, "
                      "so it is conservative (96–100% coverage of a nominal 95% in simulation). Without "
                      "per-sample predictions: the seed-level t-interval of the deltas. With one seed: none."),
        ("McNemar (descriptive)", "Exact McNemar test per seed and pooled over seeds (b = row right & "
                                  "baseline wrong, c = the converse, summed over seeds). It asks whether "
                                  "these trained models differ on this test set, not whether the training "
                                  "procedures differ, and decides nothing."),
        ("Almost stochastic order", aso),
        ("Power and seeds", f"From the SD of the seed-matched deltas (statsmodels TTestPower, two-sided "
                            f"paired t at α = {p['alpha']}): the seeds needed for {p['power']:.0%} power to "
                            "detect the paper's delta (our observed delta where the paper gives none), the "
                            "power the seeds we ran had, and the minimum detectable effect with them. A row "
                            "that is neither significant nor adequately powered is inconclusive."),
        ("Multiple comparisons", "Holm step-down correction over one family per table: every "
                                 "non-baseline row × dataset with a primary p-value."),
        ("Significance", f"α = {p['alpha']}, on the Holm-adjusted primary p: * p < {p['alpha']}, "
                         "** p < 0.01, *** p < 0.001."),
        ("Ranking", "Kendall τ-b between the paper's values and our means over the rows of one "
                    "table and dataset that have both; sign agreement = the fraction of "
                    "non-baseline rows whose delta against the baseline has the paper's sign "
                    "(rows with a paper delta of exactly 0 are left out)."),
        ("Test-set selection", "Every run also records, without using it, the test accuracy of its best "
                               "epoch on the test set (the public APViT, TransFER and MAE code's protocol). "
                               "Per table and dataset the report shows our honest mean beside that, the "
                               "best seed, and the best seed with test-set selection (best of n runs), and "
                               "the inflation of each in points."),
    ]
