"""Statistics over the collected frame: CIs, paired tests against the baseline, verdicts.

Reads only the tidy frame that ``harness.collect.collect_tables`` builds (one row per
table x row x dataset x seed), so it works the same on a frame re-read from the exported
Parquet. Everything here is a plain function from frames to frames.

Choices, stated once (``STATISTICS`` below is what the report prints):

* Per cell (table, row, dataset): mean and sample std (ddof=1) of the test accuracy over the
  seeds whose status is ``ok``; a 95 % CI from the t-distribution with n-1 degrees of
  freedom. With n = 1 there is no CI (NaN) and the report says so.
* Against the baseline row on the same dataset, seed-matched (only seeds present and ``ok`` on
  both sides, with per-sample predictions on the same test order):

  - exact McNemar on the discordant pairs **pooled over seeds**: b = sum over seeds of
    "row right, baseline wrong", c = the converse; p = exact two-sided binomial test of
    b against b + c with p = 1/2 (statsmodels ``mcnemar(exact=True)`` on [[., b], [c, .]]).
    Each (seed, test sample) pair is one paired observation. No discordant pair gives p = 1.
  - a paired bootstrap CI of the accuracy difference (percentage points): test samples are
    resampled with replacement (the same indices for every seed, which keeps the pairing),
    the statistic is the seed-averaged accuracy difference, percentile interval, seeded.
  - a seed-level Welch t-test of the per-seed accuracies (option: Wilcoxon signed-rank on
    the seed-matched differences). Needs n >= 2 on both sides.

* Holm correction (statsmodels ``multipletests(method="holm")``) over one family per table:
  every non-baseline, non-reference row x dataset with a McNemar p-value. The McNemar test is
  the primary test: its Holm-adjusted p decides significance, the markers and the verdicts.
  Welch p-values are Holm-adjusted over the same family and shown, but decide nothing.
* Per table and dataset: Kendall tau-b (scipy) between the paper's values and our means over
  the rows that have both, and the fraction of non-baseline rows whose delta against the
  baseline has the paper's sign (rows where the paper's delta is exactly 0 are left out).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats as sps
from statsmodels.stats.contingency_tables import mcnemar as sm_mcnemar
from statsmodels.stats.multitest import multipletests

ALPHA = 0.05
CONFIDENCE = 0.95
N_BOOT = 2000
BOOT_SEED = 0

CELL_KEYS = ["table_id", "row", "dataset"]

# Column sets of the analysis frames (also the schema of an empty analysis).
COMPARISON_COLUMNS = ["table_id", "row", "dataset", "n_pairs", "mcnemar_b", "mcnemar_c", "mcnemar_p",
                      "diff", "diff_ci_low", "diff_ci_high", "seed_stat", "seed_p", "note",
                      "p_holm", "seed_p_holm"]
CELL_COLUMNS = ["table_id", "row", "dataset", "row_index", "dataset_label", "n", "seeds", "mean", "std",
                "ci_low", "ci_high", "mean_class_accuracy", "gflops", "paper_value", "paper_extra",
                "is_baseline", "reference", "synthetic", "n_failed", "n_missing", "n_stale", "method",
                "overrides", "delta_paper", *COMPARISON_COLUMNS[3:], "paper_delta", "our_delta", "marker",
                "verdict", "dataset_index"]
SUMMARY_COLUMNS = ["table_id", "dataset", "dataset_label", "kendall_tau", "kendall_p", "kendall_n",
                   "sign_agree", "sign_n", "sign_fraction", "synthetic"]

# --- verdicts: the one definition ---------------------------------------------------------

REPRODUCED = "reproduced"
DIRECTION_HOLDS = "direction holds"
NOT_REPRODUCED = "not reproduced"
NOT_COMPARABLE = "not comparable"
NO_RESULT = "no result"
REFERENCE = "reference"

VERDICTS: dict[str, str] = {
    REPRODUCED: (
        "Real data, at least 2 ok seeds, and the paper's value lies inside our 95% t-CI of the "
        "mean over seeds (bounds included)."
    ),
    DIRECTION_HOLDS: (
        "Not 'reproduced', but the row's effect against the baseline row on the same dataset "
        "has the paper's sign (our mean delta and the paper's delta are both > 0 or both < 0) "
        "and the pooled exact McNemar test is significant after Holm correction "
        "(p_Holm < alpha). This is the only verdict that synthetic stand-in data can earn."
    ),
    NOT_REPRODUCED: (
        "Real data with at least one ok seed and a reported paper value, but neither of the "
        "above. With a single seed there is no CI, so a cell can at best earn "
        "'direction holds'."
    ),
    NOT_COMPARABLE: (
        "The comparison cannot be made: the results come from synthetic stand-in data (absolute "
        "accuracies are meaningless there) and the direction rule does not hold, or the paper "
        "reports no value for this cell."
    ),
    NO_RESULT: "No seed of this cell finished (all failed, missing or stale).",
    REFERENCE: "A row shown with the paper's value only (other methods); it is never run.",
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
    alpha: float = ALPHA,
) -> str:
    """Return the verdict of one cell; the rules are the texts in ``VERDICTS``, in that order.

    ``our_delta``/``paper_delta`` are the row's accuracy minus the baseline's on the same
    dataset (NaN where there is no baseline or no paired comparison), ``p_holm`` the
    Holm-adjusted pooled McNemar p-value.
    """
    if reference:
        return REFERENCE
    if n < 1:
        return NO_RESULT
    direction = (
        not is_baseline
        and np.isfinite(our_delta)
        and np.isfinite(paper_delta)
        and np.isfinite(p_holm)
        and our_delta != 0
        and paper_delta != 0
        and np.sign(our_delta) == np.sign(paper_delta)
        and p_holm < alpha
    )
    if synthetic:
        return DIRECTION_HOLDS if direction else NOT_COMPARABLE
    if not np.isfinite(paper_value):
        return NOT_COMPARABLE
    if n >= 2 and np.isfinite(ci_low) and ci_low <= paper_value <= ci_high:
        return REPRODUCED
    if direction:
        return DIRECTION_HOLDS
    return NOT_REPRODUCED


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


def paired_bootstrap_diff(
    correct_row: np.ndarray,
    correct_base: np.ndarray,
    *,
    n_boot: int = N_BOOT,
    confidence: float = CONFIDENCE,
    seed: int = BOOT_SEED,
) -> tuple[float, float, float]:
    """Paired bootstrap of the accuracy difference row - baseline, in percentage points.

    correct_row, correct_base: [seeds, samples] booleans (seed-matched, same test order).
    Samples are resampled with replacement with the same indices for every seed; the statistic
    is the seed-averaged accuracy difference. Returns (observed, ci_low, ci_high), percentile
    interval, generator ``np.random.default_rng(seed)``.
    """
    d = (np.asarray(correct_row, float) - np.asarray(correct_base, float)).mean(axis=0)  # [N]
    observed = 100.0 * float(d.mean())
    if d.size == 0:
        return np.nan, np.nan, np.nan
    if np.all(d == d[0]):
        return observed, observed, observed
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, d.size, size=(n_boot, d.size))  # [B, N]
    boot = 100.0 * d[idx].mean(axis=1)  # [B]
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(boot, [tail, 100 - tail])
    return observed, float(low), float(high)


def seed_test(
    row: np.ndarray, base: np.ndarray, method: str = "welch"
) -> tuple[float, float]:
    """Seed-level test of row vs baseline accuracies: (statistic, p-value).

    ``welch``: scipy ``ttest_ind(equal_var=False)`` on the two sets of per-seed accuracies.
    ``wilcoxon``: scipy ``wilcoxon`` on seed-matched differences (arrays aligned by seed).
    NaN when either side has fewer than 2 values; p = 1 when every value is equal (scipy
    would return NaN for zero variance).
    """
    row = np.asarray(row, float)
    base = np.asarray(base, float)
    if row.size < 2 or base.size < 2:
        return np.nan, np.nan
    if method == "welch":
        if np.ptp(row) == 0 and np.ptp(base) == 0:
            return (0.0, 1.0) if row[0] == base[0] else (np.nan, np.nan)
        res = sps.ttest_ind(row, base, equal_var=False)
    elif method == "wilcoxon":
        diff = row - base
        if np.all(diff == 0):
            return 0.0, 1.0
        res = sps.wilcoxon(row, base)
    else:
        raise ValueError(f"unknown seed test {method!r}: use 'welch' or 'wilcoxon'")
    return float(res.statistic), float(res.pvalue)


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


# --- over the frame --------------------------------------------------------------------------


def _ok(frame: pd.DataFrame) -> pd.DataFrame:
    acc = pd.to_numeric(frame["accuracy"], errors="coerce")
    return frame[(frame["status"] == "ok") & np.isfinite(acc)]


def _first(series: pd.Series, default=None):
    s = series.dropna()
    return s.iloc[0] if len(s) else default


def cell_stats(frame: pd.DataFrame, confidence: float = CONFIDENCE) -> pd.DataFrame:
    """One row per (table, row, dataset): n, mean, std, CI, paper value, counts by status."""
    records = []
    for (tid, row, ds), g in frame.groupby(CELL_KEYS, sort=False, dropna=False):
        ok = _ok(g)
        s = summarise(ok["accuracy"].to_numpy(float), confidence)
        gflops = pd.to_numeric(ok.get("gflops", pd.Series(dtype=float)), errors="coerce")
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
                "mean_class_accuracy": float(pd.to_numeric(ok.get("mean_class_accuracy"), errors="coerce").mean())
                if "mean_class_accuracy" in ok and len(ok)
                else np.nan,
                "gflops": float(gflops.mean()) if len(gflops.dropna()) else np.nan,
                "paper_value": float(pd.to_numeric(g["paper_value"], errors="coerce").iloc[0])
                if "paper_value" in g
                else np.nan,
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
            }
        )
    out = pd.DataFrame.from_records(records)
    if len(out):
        out["delta_paper"] = out["mean"] - out["paper_value"]
    return out


def _paired_arrays(row_ok: pd.DataFrame, base_ok: pd.DataFrame):
    """Seed-matched (y_true, pred_row, pred_base, acc_row, acc_base) lists; ``why`` if none."""
    base_by_seed = {int(r.seed): r for r in base_ok.itertuples()}
    yt, pr, pb, ar, ab = [], [], [], [], []
    for r in row_ok.itertuples():
        b = base_by_seed.get(int(r.seed))
        if b is None:
            continue
        ar.append(float(r.accuracy))
        ab.append(float(b.accuracy))
        if getattr(r, "y_pred", None) is None or getattr(b, "y_pred", None) is None:
            continue
        t_r, t_b = np.asarray(r.y_true), np.asarray(b.y_true)
        if t_r.shape != t_b.shape or not np.array_equal(t_r, t_b):
            continue
        yt.append(t_r)
        pr.append(np.asarray(r.y_pred))
        pb.append(np.asarray(b.y_pred))
    return yt, pr, pb, np.array(ar), np.array(ab)


def compare_to_baseline(
    frame: pd.DataFrame,
    *,
    n_boot: int = N_BOOT,
    boot_seed: int = BOOT_SEED,
    confidence: float = CONFIDENCE,
    seed_method: str = "welch",
) -> pd.DataFrame:
    """One row per non-baseline, non-reference (table, row, dataset) that has a baseline.

    Columns: n_pairs (seed-matched pairs with predictions), mcnemar_b/c/p, diff (seed-averaged
    accuracy difference on matched seeds, points), diff_ci_low/high (paired bootstrap),
    seed_stat/seed_p (Welch or Wilcoxon on all ok seeds / matched seeds), then p_holm and
    seed_p_holm (Holm over the table's family), and ``note`` when a test could not run.
    """
    records = []
    for tid, t in frame.groupby("table_id", sort=False):
        base_rows = t[t["is_baseline"].astype(bool)]
        for ds, tds in t.groupby("dataset", sort=False):
            base = base_rows[base_rows["dataset"] == ds]
            base_ok = _ok(base)
            for row, g in tds.groupby("row", sort=False):
                if bool(g["is_baseline"].any()) or bool(g.get("reference", pd.Series([False])).any()):
                    continue
                row_ok = _ok(g)
                rec = {"table_id": tid, "row": row, "dataset": ds, "n_pairs": 0,
                       "mcnemar_b": np.nan, "mcnemar_c": np.nan, "mcnemar_p": np.nan,
                       "diff": np.nan, "diff_ci_low": np.nan, "diff_ci_high": np.nan,
                       "seed_stat": np.nan, "seed_p": np.nan, "note": ""}
                if base.empty:
                    rec["note"] = "no baseline row"
                elif base_ok.empty:
                    rec["note"] = "baseline has no ok seed"
                elif row_ok.empty:
                    rec["note"] = "row has no ok seed"
                else:
                    yt, pr, pb, ar, ab = _paired_arrays(row_ok, base_ok)
                    if seed_method == "wilcoxon":
                        rec["seed_stat"], rec["seed_p"] = seed_test(ar, ab, "wilcoxon")
                    else:
                        rec["seed_stat"], rec["seed_p"] = seed_test(
                            row_ok["accuracy"].to_numpy(float), base_ok["accuracy"].to_numpy(float)
                        )
                    if yt:
                        m = mcnemar_pooled(yt, pr, pb)
                        cr = np.stack([p == y for p, y in zip(pr, yt)])
                        cb = np.stack([p == y for p, y in zip(pb, yt)])
                        diff, lo, hi = paired_bootstrap_diff(
                            cr, cb, n_boot=n_boot, confidence=confidence, seed=boot_seed
                        )
                        rec.update(n_pairs=len(yt), mcnemar_b=m.b, mcnemar_c=m.c,
                                   mcnemar_p=m.pvalue, diff=diff, diff_ci_low=lo, diff_ci_high=hi)
                    else:
                        rec["note"] = "no seed-matched per-sample predictions"
                        if len(ar):
                            rec["diff"] = float(np.mean(ar - ab))
                records.append(rec)
    out = pd.DataFrame.from_records(records, columns=COMPARISON_COLUMNS[:-2])
    out["p_holm"] = np.nan
    out["seed_p_holm"] = np.nan
    for tid, idx in out.groupby("table_id").groups.items():
        out.loc[idx, "p_holm"] = holm(out.loc[idx, "mcnemar_p"].to_numpy(float))
        out.loc[idx, "seed_p_holm"] = holm(out.loc[idx, "seed_p"].to_numpy(float))
    return out


def table_summary(cells: pd.DataFrame) -> pd.DataFrame:
    """One row per (table, dataset): Kendall tau (paper vs ours) and sign agreement."""
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


@dataclass
class Analysis:
    """Everything the renderers need: per-cell stats with comparisons and verdicts, per-table
    summaries, and the parameters used (printed in the report)."""

    cells: pd.DataFrame
    comparisons: pd.DataFrame
    summary: pd.DataFrame
    params: dict = field(default_factory=dict)


def analyse(
    frame: pd.DataFrame,
    *,
    alpha: float = ALPHA,
    confidence: float = CONFIDENCE,
    n_boot: int = N_BOOT,
    boot_seed: int = BOOT_SEED,
    seed_method: str = "welch",
) -> Analysis:
    """Run every statistic over the frame and attach a verdict to each cell."""
    params = {"alpha": alpha, "confidence": confidence, "n_boot": n_boot, "boot_seed": boot_seed,
              "seed_method": seed_method}
    if frame.empty:
        return Analysis(pd.DataFrame(columns=CELL_COLUMNS), pd.DataFrame(columns=COMPARISON_COLUMNS),
                        pd.DataFrame(columns=SUMMARY_COLUMNS + [f"n_{k.replace(' ', '_')}" for k in VERDICTS]),
                        params)
    cells = cell_stats(frame, confidence)
    comps = compare_to_baseline(
        frame, n_boot=n_boot, boot_seed=boot_seed, confidence=confidence, seed_method=seed_method
    )
    cells = cells.merge(comps, on=CELL_KEYS, how="left")
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
            paper_delta=float(r.paper_delta), p_holm=float(r.p_holm), alpha=alpha,
        )
        for r in cells.itertuples()
    ]
    # Keep the frame's order of tables and datasets (the specs' order), not the alphabet's.
    table_order = {t: i for i, t in enumerate(pd.unique(frame["table_id"]))}
    ds_order = {ds: i for i, ds in enumerate(pd.unique(frame["dataset"]))}
    cells["dataset_index"] = cells["dataset"].map(ds_order)
    cells = (cells.assign(_t=cells["table_id"].map(table_order))
             .sort_values(["_t", "row_index", "dataset_index"], kind="stable")
             .drop(columns="_t").reset_index(drop=True))
    summary = table_summary(cells)
    return Analysis(cells, comps, summary, params)


def statistics_text(params: dict | None = None) -> list[tuple[str, str]]:
    """The definitions the report prints, as (name, text) pairs, from the module's constants."""
    p = {"alpha": ALPHA, "confidence": CONFIDENCE, "n_boot": N_BOOT, "boot_seed": BOOT_SEED,
         "seed_method": "welch", **(params or {})}
    conf = f"{p['confidence']:.0%}"
    seed_name = ("Welch t-test (unequal variances) on per-seed accuracies" if p["seed_method"] == "welch"
                 else "Wilcoxon signed-rank test on seed-matched accuracy differences")
    return [
        ("Unit", "One cell = one (table, row, dataset). n = the number of seeds whose run finished "
                 "(status ok); failed, missing and stale seeds are left out and listed in the ledger."),
        ("Cell estimate", f"Mean and sample standard deviation (ddof = 1) of test accuracy over the n "
                          f"seeds; {conf} CI = mean ± t(n-1) · sd / √n. With n = 1 there is no CI "
                          "(shown as 'n=1, no CI')."),
        ("Primary test", "Exact McNemar test against the table's baseline row on the same dataset, "
                         "seed-matched, with discordant pairs pooled over seeds (b = row right & "
                         "baseline wrong, c = the converse, summed over seeds; exact binomial test "
                         "of b out of b + c at 1/2). No discordant pair: p = 1."),
        ("Effect CI", f"Paired bootstrap of the seed-averaged accuracy difference (points): "
                      f"{p['n_boot']} resamples of the test samples (same indices for every seed), "
                      f"percentile {conf} interval, generator seed {p['boot_seed']}."),
        ("Seed-level test", f"{seed_name}; needs n ≥ 2 on both sides. Reported, never used for verdicts."),
        ("Multiple comparisons", "Holm step-down correction over one family per table: every "
                                 "non-baseline row × dataset with a McNemar p-value (and, "
                                 "separately, over the seed-level p-values)."),
        ("Significance", f"α = {p['alpha']}, on the Holm-adjusted McNemar p: * p < {p['alpha']}, "
                         "** p < 0.01, *** p < 0.001."),
        ("Ranking", "Kendall τ-b between the paper's values and our means over the rows of one "
                    "table and dataset that have both; sign agreement = the fraction of "
                    "non-baseline rows whose delta against the baseline has the paper's sign "
                    "(rows with a paper delta of exactly 0 are left out)."),
    ]
