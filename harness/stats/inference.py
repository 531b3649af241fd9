"""Statistical tests and intervals: pure functions over arrays of per-seed or per-image values.

Each is checked against scipy/statsmodels on fixed inputs (``tests/harness/test_stats.py``). The
package's default settings (alpha, confidence, bootstrap size and seed, equivalence margin, ASO)
are defined here.
"""
from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any, Callable

import numpy as np
from joblib import Memory
from scipy import stats as sps
from statsmodels.stats.contingency_tables import mcnemar as sm_mcnemar
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.weightstats import DescrStatsW

ALPHA = 0.05
CONFIDENCE = 0.95
N_BOOT = 2000
BOOT_SEED = 0
MARGIN = 1.0  # points; the default of a spec's ``margin`` (harness.specs)
ASO_TAU = 0.2
ASO_ITERATIONS = 200
SEED_METHODS = ("paired-t", "wilcoxon", "welch")


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
    t(S-1) x SE_boot, S = number of seeds (conservative: see docs/statistics.md); NaN for S < 2
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


def finite(x: Any) -> bool:
    """Whether ``x`` is a number that is neither NaN nor infinite (None, text and NaN are not)."""
    try:
        return x is not None and math.isfinite(float(x))
    except (TypeError, ValueError):
        return False
