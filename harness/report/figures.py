"""Report figures (seaborn on the Agg backend), each saved as SVG and PNG.

Every ``*_figure`` function takes the analysis cells (or the frame) and returns a matplotlib
``Figure`` or None when there is nothing to draw; ``save`` writes it and closes it. Figures read
only the frame/analysis, never result files.

* ``delta_figure``: per-row delta against the baseline with the seed-aware CI (two-level
  bootstrap over seeds and test images), the paper's delta as a cross (one panel per dataset).
* ``cost_figure``: accuracy vs GFLOPs (Table 13 style), ours and the paper's points.
* ``heatmap_figure``: our mean accuracy over a two-factor grid (Fig. 5 style, k x r).
* ``confusion_figure``: row-normalised confusion matrices summed over seeds (Fig. 6 style).
* ``latency_figure``: median latency (IQR bars) vs GFLOPs from a benchmark frame.
* ``pareto_figure``: methods compared, accuracy vs GFLOPs and vs latency (paper values hollow).
"""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from harness.stats.inference import finite  # noqa: E402

sns.set_theme(style="whitegrid", context="notebook", font_scale=0.85)
plt.rcParams["svg.fonttype"] = "none"  # text stays text: smaller, searchable SVGs
plt.rcParams["svg.hashsalt"] = "ferbench"  # deterministic ids

SYNTH_NOTE = "synthetic stand-in data: absolute values are meaningless"


def save(fig: plt.Figure, out_dir: Path, name: str, dpi: int = 110) -> dict[str, Path]:
    """Write ``<name>.svg`` and ``<name>.png`` under ``out_dir`` and close the figure."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"svg": out_dir / f"{name}.svg", "png": out_dir / f"{name}.png"}
    fig.savefig(paths["svg"], bbox_inches="tight", metadata={"Date": None})
    fig.savefig(paths["png"], bbox_inches="tight", dpi=dpi)
    plt.close(fig)
    return paths


def _table(cells: pd.DataFrame, table_id: str) -> pd.DataFrame:
    return cells[cells["table_id"] == table_id]


def _synth_title(fig: plt.Figure, title: str, synthetic: bool) -> None:
    fig.suptitle(f"{title}\n({SYNTH_NOTE})" if synthetic else title, fontsize=10)


def delta_figure(cells: pd.DataFrame, table_id: str) -> plt.Figure | None:
    """Our delta vs the baseline (points, seed-aware 95% CI bars) beside the paper's (crosses).

    The bars are ``diff_ci_low``/``diff_ci_high`` of :func:`harness.stats.compare_to_baseline`
    (two-level bootstrap over seeds and test images); the marker is the Holm-adjusted seed-level
    test's. A row with one seed has no bar.
    """
    t = _table(cells, table_id)
    t = t[~t["is_baseline"].astype(bool) & ~t["reference"].astype(bool)]
    if t.empty or not (np.isfinite(t["our_delta"]).any() or np.isfinite(t["paper_delta"]).any()):
        return None
    datasets = list(dict.fromkeys(t["dataset_label"]))
    rows = list(dict.fromkeys(t.sort_values("row_index")["row"]))
    fig, axes = plt.subplots(1, len(datasets), figsize=(3.6 * len(datasets) + 1.2, 0.42 * len(rows) + 1.4),
                             sharey=True, squeeze=False)
    pal = sns.color_palette()
    for ax, ds in zip(axes[0], datasets):
        d = t[t["dataset_label"] == ds].set_index("row").reindex(rows)
        y = np.arange(len(rows))
        lo = (d["our_delta"] - d["diff_ci_low"]).clip(lower=0).fillna(0)
        hi = (d["diff_ci_high"] - d["our_delta"]).clip(lower=0).fillna(0)
        ax.errorbar(d["our_delta"], y, xerr=[lo, hi], fmt="o", color=pal[0], capsize=3, label="ours (95% CI over seeds × test images)")
        ax.scatter(d["paper_delta"], y, marker="x", color=pal[3], zorder=3, label="paper")
        for yi, m in zip(y, d["marker"].fillna("")):
            if m:
                ax.annotate(m, (1.0, yi), xycoords=("axes fraction", "data"), ha="right", va="center",
                            fontsize=8)
        ax.axvline(0, color="0.4", lw=0.8)
        ax.set_title(ds)
        ax.set_xlabel("Δ accuracy vs baseline (points)")
    axes[0][0].set_yticks(np.arange(len(rows)), rows)
    axes[0][0].invert_yaxis()
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=7, frameon=False,
               bbox_to_anchor=(0.5, -0.02))
    _synth_title(fig, f"{table_id}: effect against the baseline row", bool(t["synthetic"].any()))
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig


def cost_figure(cells: pd.DataFrame, table_id: str) -> plt.Figure | None:
    """Accuracy against GFLOPs: our mean ± CI at our measured GFLOPs, the paper's points."""
    t = _table(cells, table_id)
    pe = t["paper_extra"].map(lambda e: (e or {}).get("gflops") if isinstance(e, dict) else None)
    paper_g = pd.to_numeric(pe, errors="coerce")
    ours = t[np.isfinite(t["gflops"]) & np.isfinite(t["mean"])]
    papers = t.assign(pg=paper_g)[np.isfinite(paper_g) & np.isfinite(t["paper_value"])]
    if ours.empty and papers.empty:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    pal = sns.color_palette()
    if len(papers):
        ax.scatter(papers["pg"], papers["paper_value"], marker="s", color=pal[1], label="paper")
        for r in papers.itertuples():
            ax.annotate(r.row, (r.pg, r.paper_value), fontsize=7, xytext=(4, 3), textcoords="offset points")
    if len(ours):
        half = ((ours["ci_high"] - ours["ci_low"]) / 2).fillna(0)
        ax.errorbar(ours["gflops"], ours["mean"], yerr=half, fmt="o", color=pal[0], capsize=3,
                    label="ours (mean ± 95% CI)")
        for r in ours.itertuples():
            ax.annotate(r.row, (r.gflops, r.mean), fontsize=7, xytext=(4, -9), textcoords="offset points",
                        color=pal[0])
    ax.margins(x=0.12, y=0.08)
    ax.set_xlabel("GFLOPs (fvcore: 1 multiply-add = 1 FLOP)")
    ax.set_ylabel("accuracy (%)")
    ax.legend(fontsize=8)
    _synth_title(fig, f"{table_id}: accuracy vs computation", bool(t["synthetic"].any()))
    fig.tight_layout()
    return fig


def heatmap_figure(cells: pd.DataFrame, table_id: str, x: str, y: str,
                   dataset: str | None = None) -> plt.Figure | None:
    """Our mean accuracy on the grid of overrides ``x`` (columns) by ``y`` (rows), one dataset.

    Each square is annotated with our mean and, where the paper states one, the paper's value
    in brackets; missing cells stay blank.
    """
    t = _table(cells, table_id)
    if dataset is not None:
        t = t[t["dataset"] == dataset]
    if t.empty:
        return None
    ds = t["dataset"].iloc[0]
    t = t[t["dataset"] == ds]
    ov = t["overrides"].map(lambda o: o if isinstance(o, dict) else {})
    t = t.assign(_x=ov.map(lambda o: o.get(x)), _y=ov.map(lambda o: o.get(y)))
    t = t[t["_x"].notna() & t["_y"].notna()]
    if t.empty:
        return None
    grid = t.pivot_table(index="_y", columns="_x", values="mean", aggfunc="first", dropna=False)
    paper = t.pivot_table(index="_y", columns="_x", values="paper_value", aggfunc="first", dropna=False)
    if not np.isfinite(grid.to_numpy(dtype=float)).any():
        return None
    grid = grid.sort_index(ascending=False).sort_index(axis=1, ascending=False)
    paper = paper.reindex_like(grid)
    annot = np.full(grid.shape, "", dtype=object)
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            g, p = grid.iat[i, j], paper.iat[i, j]
            s = f"{g:.1f}" if math.isfinite(g) else "–"
            if math.isfinite(p):
                s += f"\n[{p:.2f}]"
            annot[i, j] = s
    fig, ax = plt.subplots(figsize=(1.0 * grid.shape[1] + 2.4, 0.7 * grid.shape[0] + 1.6))
    sns.heatmap(grid.astype(float), annot=annot, fmt="", cmap="viridis", ax=ax,
                cbar_kws={"label": "our accuracy (%)"}, annot_kws={"fontsize": 7}, linewidths=0.5)
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    label = t["dataset_label"].iloc[0]
    _synth_title(fig, f"{table_id}: {y} × {x} on {label} (ours; [paper])", bool(t["synthetic"].any()))
    fig.tight_layout()
    return fig


def confusion_figure(frame: pd.DataFrame, table_id: str, row: str) -> plt.Figure | None:
    """Row-normalised confusion matrices of one row, summed over its ok seeds, per dataset."""
    t = frame[(frame["table_id"] == table_id) & (frame["row"] == row) & (frame["status"] == "ok")]
    if "confusion" not in t:
        return None
    t = t[t["confusion"].map(lambda c: c is not None and len(c) > 0)]
    if t.empty:
        return None
    datasets = list(dict.fromkeys(t["dataset"]))
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.3 * len(datasets), 4.0), squeeze=False)
    for ax, ds in zip(axes[0], datasets):
        g = t[t["dataset"] == ds]
        m = np.sum([np.asarray(c, dtype=float) for c in g["confusion"]], axis=0)
        norm = m / np.clip(m.sum(axis=1, keepdims=True), 1, None)
        names = list(g["class_names"].iloc[0]) if "class_names" in g else list(range(len(m)))
        sns.heatmap(norm, annot=True, fmt=".2f", cmap="Blues", vmin=0, vmax=1, cbar=False, ax=ax,
                    xticklabels=names, yticklabels=names, annot_kws={"fontsize": 6}, square=True)
        ax.set_title(f"{g['dataset_label'].iloc[0]} (n seeds = {len(g)})")
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.tick_params(labelsize=7)
    _synth_title(fig, f"{table_id}: confusion of '{row}'", bool(t["synthetic"].any()))
    fig.tight_layout()
    return fig


def training_curves_figure(frame: pd.DataFrame, table_id: str) -> plt.Figure | None:
    """Per dataset (panel rows): each named loss term and the validation accuracy (panel columns)
    against the epoch, one line per table row, mean over seeds with a ± SD band."""
    t = frame[(frame["table_id"] == table_id) & (frame["status"] == "ok")]
    if "history" not in t or t.empty:
        return None
    long = [{"dataset": r["dataset_label"], "row": r["row"], "seed": r["seed"], "epoch": h["epoch"],
             "panel": name, "value": v}
            for _, r in t.iterrows() for h in (r["history"] if isinstance(r["history"], list) else [])
            for name, v in [*((f"loss: {k}", x) for k, x in (h.get("losses") or {}).items()),
                            ("val accuracy (%)", h.get("val_accuracy"))]
            if finite(v)]
    if not long:
        return None
    d = pd.DataFrame(long)
    if d["epoch"].nunique() < 2:
        return None  # one epoch is a point, not a curve
    panels = sorted(d["panel"].unique(), key=lambda p: (p.startswith("val"), p))
    datasets = list(dict.fromkeys(d["dataset"]))
    fig, axes = plt.subplots(len(datasets), len(panels), figsize=(3.6 * len(panels), 2.9 * len(datasets)),
                             squeeze=False)
    for i, ds in enumerate(datasets):
        for j, panel in enumerate(panels):
            ax = axes[i][j]
            sns.lineplot(data=d[(d["dataset"] == ds) & (d["panel"] == panel)], x="epoch", y="value",
                         hue="row", errorbar="sd", ax=ax, legend=(i == 0 and j == len(panels) - 1))
            ax.set_title(f"{ds}: {panel}", fontsize=9)
            ax.set_ylabel("")
    if axes[0][-1].get_legend() is not None:
        sns.move_legend(axes[0][-1], "upper left", bbox_to_anchor=(1.02, 1), fontsize=7, title=None)
    _synth_title(fig, f"{table_id}: training curves", bool(t["synthetic"].any()))
    fig.tight_layout()
    return fig


def latency_figure(benchmarks: pd.DataFrame) -> plt.Figure | None:
    """Median latency (ms, IQR bars) against GFLOPs, one colour per machine.

    One panel per (preset, batch) when the frame has those columns, since a batch-32 forward is
    not comparable with a batch-1 one; selection-overhead rows (``kind == "selection"``) are left out.
    """
    need = {"name", "median_ms", "gflops"}
    if benchmarks is None or benchmarks.empty or not need <= set(benchmarks.columns):
        return None
    b = benchmarks.copy()
    if "kind" in b:
        b = b[b["kind"].fillna("latency") == "latency"]
    b = b[pd.to_numeric(b["gflops"], errors="coerce").notna() & pd.to_numeric(b["median_ms"], errors="coerce").notna()]
    if b.empty:
        return None
    if "machine" not in b:
        b["machine"] = "unknown"
    panel_cols = [c for c in ("preset", "batch") if c in b and b[c].notna().any()]
    panels = list(b.groupby(panel_cols, sort=True, dropna=False)) if panel_cols else [((), b)]
    ncols = min(len(panels), 2)
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(6.4 * ncols, 4.2 * nrows), squeeze=False)
    pal = dict(zip(dict.fromkeys(b["machine"]), sns.color_palette()))
    for ax, (key, p) in zip(axes.flat, panels):
        for machine, g in p.groupby("machine", sort=False):
            yerr = g["iqr_ms"].fillna(0) / 2 if "iqr_ms" in g else None
            ax.errorbar(g["gflops"], g["median_ms"], yerr=yerr, fmt="o", capsize=3, color=pal[machine],
                        label=str(machine))
            for r in g.itertuples():
                ax.annotate(str(r.name), (r.gflops, r.median_ms), fontsize=7, xytext=(4, 3),
                            textcoords="offset points")
        ax.margins(x=0.2, y=0.15)
        ax.set_xlabel("GFLOPs per image (fvcore)")
        ax.set_ylabel("median latency per forward (ms), bars = IQR")
        if panel_cols:
            key = key if isinstance(key, tuple) else (key,)
            ax.set_title(", ".join(f"{c} {v}" for c, v in zip(panel_cols, key)), fontsize=9)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    axes[0][0].legend(fontsize=8, title="machine", title_fontsize=8, loc="best")
    fig.suptitle("Latency vs computation", fontsize=10)
    fig.tight_layout()
    return fig


def _pareto_front(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Indices of the points no other point beats on both lower cost ``x`` and higher accuracy ``y``, by x."""
    order = np.lexsort((-y, x))
    front, best = [], -np.inf
    for i in order:
        if y[i] > best:
            front.append(i)
            best = y[i]
    return np.asarray(front, dtype=int)


def pareto_figure(comparison: pd.DataFrame) -> plt.Figure | None:
    """Accuracy against GFLOPs and against batch-1 latency, one point per method and dataset.

    ``comparison`` is :func:`harness.report.compare.comparison_frame`. Filled markers: our mean ± 95% CI
    at our GFLOPs (fvcore, at the runs' scale) or at the measured latency; hollow markers: the
    paper's accuracy at the paper's GFLOPs, or at our measured latency of the same configuration.
    Colour = method, marker = dataset; the dashed line joins our Pareto-optimal points per dataset.
    GFLOPs use a log axis, because the tiny scale's runs cost a fraction of the paper's.
    """
    c = comparison
    if c is None or c.empty:
        return None
    have_lat = np.isfinite(c["latency_b1_ms"].to_numpy(float)).any()
    panels = [("gflops", "paper_gflops", "GFLOPs per image (fvcore: 1 multiply-add = 1 FLOP), log scale")]
    if have_lat:
        panels.append(("latency_b1_ms", "latency_b1_ms", "median latency, batch 1 (ms)"))
    if not (np.isfinite(c["gflops"].to_numpy(float)).any() or np.isfinite(c["paper_gflops"].to_numpy(float)).any()
            or have_lat):
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(6.4 * len(panels), 4.4), squeeze=False)
    colours = dict(zip(dict.fromkeys(c["method"]), sns.color_palette()))
    markers = dict(zip(dict.fromkeys(c["dataset_label"]), "osD^vP*X"))
    for ax, (x_ours, x_paper, xlabel) in zip(axes.flat, panels):
        for r in c.itertuples():
            col, mk = colours[r.method], markers[r.dataset_label]
            xo, xp = getattr(r, x_ours), getattr(r, x_paper)
            if finite(xo) and finite(r.mean):
                half = (r.ci_high - r.ci_low) / 2 if finite(r.ci_high) else 0.0
                ax.errorbar([xo], [r.mean], yerr=[half], fmt=mk, color=col, capsize=3, markersize=7)
            if finite(xp) and finite(r.paper_value):
                ax.scatter([xp], [r.paper_value], marker=mk, facecolors="none", edgecolors=[col], s=60, linewidths=1.4)
        for ds, g in c.groupby("dataset_label", sort=False):
            ok = g[np.isfinite(g[x_ours].to_numpy(float)) & np.isfinite(g["mean"].to_numpy(float))]
            if len(ok) > 1:
                idx = _pareto_front(ok[x_ours].to_numpy(float), ok["mean"].to_numpy(float))
                ax.plot(ok[x_ours].to_numpy(float)[idx], ok["mean"].to_numpy(float)[idx], ls="--", lw=0.8,
                        color="0.5")
        if x_ours == "gflops":
            ax.set_xscale("log")
        ax.margins(x=0.15, y=0.1)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("accuracy (%)")
    handles = [plt.Line2D([], [], color=col, marker="o", ls="", label=m) for m, col in colours.items()]
    handles += [plt.Line2D([], [], color="0.3", marker=mk, ls="", label=ds) for ds, mk in markers.items()]
    handles += [plt.Line2D([], [], color="0.3", marker="o", ls="", label="ours (mean ± 95% CI)"),
                plt.Line2D([], [], color="0.3", marker="o", ls="", markerfacecolor="none", label="paper")]
    axes[0][-1].legend(handles=handles, fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    _synth_title(fig, "Methods: accuracy vs cost", bool(c["synthetic"].any()))
    fig.tight_layout()
    return fig
