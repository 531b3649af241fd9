"""Statistics over the collected frame, as plain functions from frames to frames.

Reads only the tidy frame that ``harness.report.collect.collect_tables`` builds (one row per
table x row x dataset x seed), so it works the same on a frame re-read from the exported
Parquet: per-cell estimates (:func:`cell_stats`), seed-matched comparisons with the baseline row
(:func:`compare_to_baseline`), per-table summaries, and :func:`analyse`, which runs them all and
attaches a verdict to each cell.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from harness.stats.inference import (
    ALPHA,
    ASO_ITERATIONS,
    BOOT_SEED,
    CONFIDENCE,
    MARGIN,
    N_BOOT,
    SEED_METHODS,
    aso_available,
    aso_epsilon,
    holm,
    kendall_tau,
    mcnemar_pooled,
    seed_test,
    summarise,
    tost_pvalue,
    two_level_bootstrap,
)
from harness.stats.power import (
    POWER,
    achieved_power,
    format_seeds,
    min_detectable_effect,
    seeds_needed,
    tost_seeds_needed,
)
from harness.stats.verdicts import INCONCLUSIVE, VERDICTS, significance_marker, verdict

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
