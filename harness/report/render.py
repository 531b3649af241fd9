"""Regenerated paper tables: the paper's layout, our numbers beside the paper's.

``table_frame`` builds one display frame per table (rows = the spec's row labels in the paper's
order, columns = dataset x {Ours, Paper, Δ paper, Δ base, Verdict}, plus the paper's extra
columns such as FLOPs); ``to_markdown`` / ``to_latex`` / ``to_html`` export it through pandas
(``DataFrame.to_markdown`` and ``Styler.to_latex`` / ``Styler.to_html``), never by hand.

Cell conventions (the legend below the tables says the same):

* Ours: mean ± half-width of the 95 % t-CI over n seeds; ``(n=1, no CI)`` for one seed;
  ``failed`` / ``missing`` when no seed finished; ``†`` marks synthetic stand-in data.
* Paper: the paper's value, ``n.r.`` when it reports none; reference rows show only this.
* Δ paper: our mean minus the paper's value.
* Δ base: our delta against the baseline row, the paper's delta in brackets, and the
  significance marker of the Holm-adjusted seed-level p (paired t-test on seed-matched deltas;
  ``*`` < .05, ``**`` < .01, ``***`` < .001).
* Verdict: :data:`harness.stats.VERDICTS`; an inconclusive cell says how many seeds it needs.
"""
from __future__ import annotations

import hashlib
import math
import re
from typing import Any

import numpy as np
import pandas as pd

from harness.stats.inference import finite
from harness import stats
from harness.specs import NOT_REPORTED

SYNTHETIC_MARK = "†"
SUBCOLUMNS = ("Ours", "Paper", "Δ paper", "Δ base", "Verdict")
LEGEND = (
    "Ours: mean ± 95% t-CI half-width over n seeds. Paper: the paper's value (n.r. = not "
    "reported). Δ paper: ours − paper. Δ base: ours − baseline row [paper's delta], with the "
    "marker of the Holm-adjusted seed-level test (paired t on seed-matched deltas; * p<.05, "
    "** p<.01, *** p<.001). Verdict: see the definitions; 'inconclusive' says how many seeds it needs. "
    f"{SYNTHETIC_MARK} = synthetic stand-in data: absolute values are meaningless."
)


def _num(x: Any, digits: int = 2, signed: bool = False) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return ""
    return f"{x:+.{digits}f}".replace("-", "−") if signed else f"{x:.{digits}f}"


def format_ours(cell: pd.Series) -> str:
    """``mean ± half-CI`` for one cell of the analysis, with the n=1 / failure conventions."""
    if bool(cell.get("reference", False)):
        return "ref."
    n = int(cell.get("n", 0) or 0)
    if n == 0:
        if int(cell.get("n_failed", 0) or 0):
            return "failed"
        if int(cell.get("n_stale", 0) or 0):
            return "stale"
        return "missing"
    mark = SYNTHETIC_MARK if bool(cell.get("synthetic", False)) else ""
    if n == 1 or not math.isfinite(float(cell["ci_high"])):
        return f"{cell['mean']:.2f}{mark} (n=1, no CI)"
    half = (float(cell["ci_high"]) - float(cell["ci_low"])) / 2
    return f"{cell['mean']:.2f} ± {half:.2f}{mark}"


def format_base(cell: pd.Series) -> str:
    """Δ base: ``ours [paper] marker``, empty for the baseline and reference rows."""
    if bool(cell.get("is_baseline", False)):
        return "baseline"
    ours = _num(cell.get("our_delta", np.nan), signed=True)
    paper = _num(cell.get("paper_delta", np.nan), signed=True)
    if not ours and not paper:
        return ""
    marker = cell.get("marker", "") or ""
    return f"{ours or '–'} [{paper or 'n.r.'}]{marker}"


def format_verdict(cell: pd.Series) -> str:
    """The verdict, with its note in brackets (``inconclusive (≈ 40 seeds needed)``)."""
    v = str(cell.get("verdict", "") or "")
    note = cell.get("verdict_note", "")
    return f"{v} ({note})" if isinstance(note, str) and note else v


def _extra_ours(key: str, rows: pd.DataFrame, base_gflops: float) -> str:
    g = rows["gflops"].dropna()
    if not len(g):
        return ""
    gf = float(g.iloc[0])
    if key == "flops":
        return f"{100 * gf / base_gflops:.0f}%" if math.isfinite(base_gflops) and base_gflops else ""
    if key == "gflops":
        return f"{gf:.2f}"
    return ""


def table_frame(cells: pd.DataFrame, spec: Any) -> pd.DataFrame:
    """The display frame of one table: index = row labels, columns = (dataset, sub-column).

    ``cells`` is ``Analysis.cells`` (any tables); ``spec`` the table's ``TableSpec``. Rows come
    in the spec's order; a row without any result still appears. Extra columns
    (``columns_extra``) come first, as (key, Paper) and (key, Ours) pairs; ``flops`` in ours is
    GFLOPs relative to the baseline row, as the paper prints it.
    """
    t = cells[cells["table_id"] == spec.id]
    labels = [r.label for r in spec.rows]
    base_g = np.nan
    if spec.baseline is not None:
        b = t[(t["row"] == spec.baseline)]["gflops"].dropna()
        base_g = float(b.iloc[0]) if len(b) else np.nan
    data: dict[tuple[str, str], list[str]] = {}
    for key in spec.columns_extra:
        name = {"flops": "FLOPs", "gflops": "GFLOPs"}.get(key, key)
        paper_col, ours_col = [], []
        for r in spec.rows:
            pv = r.paper_extra.get(key, "")
            paper_col.append(f"{pv:.2f}" if isinstance(pv, float) else str(pv))
            ours_col.append(_extra_ours(key, t[t["row"] == r.label], base_g))
        data[(name, "Paper")] = paper_col
        data[(name, "Ours")] = ours_col
    for ds in spec.datasets:
        cols = {c: [] for c in SUBCOLUMNS}
        for r in spec.rows:
            hit = t[(t["row"] == r.label) & (t["dataset"] == ds.key)]
            pv = r.paper.get(ds.key, NOT_REPORTED)
            paper = "n.r." if pv == NOT_REPORTED else f"{float(pv):.2f}"
            if hit.empty:
                cols["Ours"].append("ref." if r.reference else "missing")
                cols["Paper"].append(paper)
                cols["Δ paper"].append("")
                cols["Δ base"].append("")
                cols["Verdict"].append(stats.REFERENCE if r.reference else stats.NO_RESULT)
                continue
            c = hit.iloc[0]
            cols["Ours"].append(format_ours(c))
            cols["Paper"].append(paper)
            cols["Δ paper"].append(_num(c.get("delta_paper", np.nan), signed=True))
            cols["Δ base"].append(format_base(c) if not r.reference else "")
            cols["Verdict"].append(format_verdict(c))
        for sub in SUBCOLUMNS:
            data[(ds.label, sub)] = cols[sub]
    frame = pd.DataFrame(data, index=pd.Index(labels))
    frame.columns = pd.MultiIndex.from_tuples(frame.columns)
    return frame


_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~])")
_MD_ENTITY = re.compile(r"&(?=#?\w+;)")


def escape_markdown(text: Any) -> str:
    """Text that Markdown shows as written: no raw HTML, no emphasis or links, no broken table cells."""
    out = _MD_SPECIAL.sub(r"\\\1", str(text))
    out = _MD_ENTITY.sub("&amp;", out)
    return out.replace("<", "&lt;").replace(">", "&gt;").replace("\n", " ")


def to_markdown(frame: pd.DataFrame) -> str:
    """GitHub-flavoured Markdown (pandas ``to_markdown``); header = ``dataset · sub-column``.

    Every label and cell is escaped (:func:`escape_markdown`): a row label carrying HTML or a
    ``|`` is shown as text and cannot break the table.
    """
    flat = frame.map(escape_markdown)
    flat.columns = [escape_markdown(f"{a} · {b}") for a, b in frame.columns]
    flat.index = [escape_markdown(i) for i in frame.index]
    flat.index.name = "Row"
    return flat.to_markdown()


_LATEX_SYMBOLS = {"±": r"$\pm$", "Δ": r"$\Delta$", "−": "$-$", "†": r"\textsuperscript{\dag}",
                  "τ": r"$\tau$", "–": "--", "²": r"$^2$"}
_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def escape_latex(text: str) -> str:
    """Text that LaTeX typesets as written (``%`` would start a comment, ``&`` a new column...)."""
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text)).replace("\n", " ")


def to_latex(frame: pd.DataFrame, caption: str = "", label: str = "") -> str:
    """A booktabs ``tabular`` (``\\toprule``/``\\midrule``/``\\bottomrule``) via ``Styler.to_latex``.

    Cells and headers are escaped by pandas, the caption by :func:`escape_latex`; the label keeps
    only characters that are safe in ``\\label`` (letters, digits, ``:_.-``).
    """
    styler = (frame.style.format(escape="latex")
              .format_index(escape="latex", axis=0).format_index(escape="latex", axis=1))
    kwargs: dict[str, Any] = {"hrules": True, "multicol_align": "c",
                              "column_format": "l" + "r" * frame.shape[1]}
    if caption:
        kwargs["caption"] = escape_latex(caption)
    if label:
        kwargs["label"] = re.sub(r"[^A-Za-z0-9:_.-]", "-", label)
    text = styler.to_latex(**kwargs)
    for sym, tex in _LATEX_SYMBOLS.items():
        text = text.replace(sym, tex)
    return text


_VERDICT_CLASS = {v: "v-" + v.replace(" ", "-") for v in stats.VERDICTS}


def to_html(frame: pd.DataFrame, table_id: str = "t") -> str:
    """An HTML ``<table>`` via ``Styler.to_html`` (cell text escaped by pandas).

    Verdict cells get a class ``v-<verdict>``, synthetic cells ``synthetic``, reference rows
    ``reference``; the report's stylesheet colours them.
    """
    classes = pd.DataFrame("", index=frame.index, columns=frame.columns)
    for col in frame.columns:
        for i, val in enumerate(frame[col]):
            cls = []
            verdict_name = val.split(" (")[0] if isinstance(val, str) else val
            if col[1] == "Verdict" and verdict_name in _VERDICT_CLASS:
                cls.append(_VERDICT_CLASS[verdict_name])
            if isinstance(val, str) and SYNTHETIC_MARK in val:
                cls.append("synthetic")
            if val == "ref.":
                cls.append("reference")
            if col[1] in ("Ours", "Paper"):
                cls.append("num")
            classes.iloc[i, frame.columns.get_loc(col)] = " ".join(cls)
    styler = (frame.style.format(escape="html").format_index(escape="html", axis=0)
              .format_index(escape="html", axis=1)
              .set_td_classes(classes).set_uuid(table_id.replace("_", ""))
              .set_table_attributes(f'class="paper-table" data-table="{table_id}"'))
    return styler.to_html()


def summary_frame(summary: pd.DataFrame, cells: pd.DataFrame) -> pd.DataFrame:
    """The index page's comparison of all tables: one row per (table, dataset)."""
    if summary.empty:
        return pd.DataFrame()
    out = pd.DataFrame({
        "Table": summary["table_id"],
        "Dataset": summary["dataset_label"],
        "Kendall τ (n)": [f"{_num(t)} ({int(n)})" if math.isfinite(t) else f"– ({int(n)})"
                          for t, n in zip(summary["kendall_tau"], summary["kendall_n"])],
        "Sign agrees": [f"{a}/{n}" if n else "–" for a, n in zip(summary["sign_agree"], summary["sign_n"])],
    })
    for v in stats.VERDICTS:
        out[v] = summary[f"n_{v.replace(' ', '_')}"].astype(int).to_numpy()
    out["Data"] = np.where(summary["synthetic"], f"synthetic {SYNTHETIC_MARK}", "real")
    return out


def comparisons_frame(cells: pd.DataFrame, table_id: str) -> pd.DataFrame:
    """The per-comparison statistics of one table: the seed-level primary test and its power,
    the seed-aware effect CI, and the descriptive McNemar and almost-stochastic-order columns."""
    t = cells[(cells["table_id"] == table_id) & ~cells["is_baseline"] & ~cells["reference"]]
    if t.empty:
        return pd.DataFrame()
    mark = np.where(t["synthetic"].astype(bool), f" {SYNTHETIC_MARK}", "")
    out = pd.DataFrame({
        "Row": t["row"] + mark, "Dataset": t["dataset_label"],
        "seeds": t["n_pairs"].fillna(0).astype(int),
        "Δ (95% CI, seeds × images)": [
            f"{_num(d, signed=True)} [{_num(lo, signed=True)}, {_num(hi, signed=True)}]"
            if math.isfinite(lo) else _num(d, signed=True)
            for d, lo, hi in zip(t["our_delta"], t["diff_ci_low"], t["diff_ci_high"])],
        "SD of Δ over seeds": [_num(x) for x in t["diff_sd"]],
        "seed-level p": [_p(x) for x in t["seed_p"]],
        "p Holm": [_p(x) + m for x, m in zip(t["p_holm"], t["marker"])],
        "power at |Δ target|": [f"{x:.2f} at {tg:.2f} ({src})" if math.isfinite(x) else "–"
                                for x, tg, src in zip(t["power"], t["power_target"], t["power_target_source"])],
        "seeds for 80%": [stats.format_seeds(x) if math.isfinite(tg) else "–"
                          for x, tg in zip(t["seeds_needed"], t["power_target"])],
        "MDE": [_num(x) or "–" for x in t["mde"]],
        "McNemar p per seed": [", ".join(_p(x) for x in ps) if isinstance(ps, (list, tuple, np.ndarray)) else "–"
                               for ps in t["mcnemar_seed_p"]],
        "McNemar pooled b / c, p": [f"{int(b)} / {int(c)}, {_p(p)}" if math.isfinite(b) else "–"
                                    for b, c, p in zip(t["mcnemar_b"], t["mcnemar_c"], t["mcnemar_p"])],
    })
    if np.isfinite(t["aso_eps"].to_numpy(float)).any():
        out["ASO ε_min"] = [_num(x) or "–" for x in t["aso_eps"]]
    out["Note"] = t["note"].fillna("").to_numpy()
    return out.reset_index(drop=True)


def seeds_frame(cells: pd.DataFrame, table_id: str) -> pd.DataFrame:
    """How many seeds each cell got and why (the spec's count, or the ``--until-ci`` budget)."""
    t = cells[(cells["table_id"] == table_id) & ~cells["reference"]]
    if t.empty:
        return pd.DataFrame()
    return pd.DataFrame({"Row": t["row"], "Dataset": t["dataset_label"], "seeds": t["seeds"],
                         "n": t["n"].astype(int), "why": t["seeds_reason"]}).reset_index(drop=True)


def selection_frame(selection: pd.DataFrame) -> pd.DataFrame:
    """What test-set selection and best-of-seeds would report, beside our honest mean (points)."""
    if selection is None or selection.empty:
        return pd.DataFrame()
    s = selection

    def with_gain(col: str) -> list[str]:
        return [f"{v:.2f} ({_num(v - h, signed=True)})" for v, h in zip(s[col], s["honest"])]

    mark = np.where(s["synthetic"].astype(bool), f" {SYNTHETIC_MARK}", "")
    return pd.DataFrame({
        "Table": s["table_id"], "Dataset": s["dataset_label"] + mark,
        "rows × seeds": [f"{int(r)} × {int(n)}" for r, n in zip(s["n_rows"], s["n_seeds"])],
        "honest (val-selected, mean)": [f"{v:.2f}" for v in s["honest"]],
        "best epoch on test (mean)": with_gain("test_selected"),
        "best seed": with_gain("best_seed"),
        "best seed, best epoch on test": with_gain("best_seed_test_selected"),
    }).reset_index(drop=True)


def _p(x: float) -> str:
    if x is None or not math.isfinite(float(x)):
        return "–"
    return "<1e-4" if x < 1e-4 else f"{x:.4f}"


def benchmarks_frame(benchmarks: pd.DataFrame) -> pd.DataFrame:
    """The latency table, grouped by machine: median, IQR and rounds per configuration.

    Rows are sorted by machine (timings of different machines are never compared), then kind,
    preset, batch, family (baseline first). When the frame carries ``family``/``is_baseline``
    (pytest-benchmark JSON read by :func:`harness.report.benchmarks.load_benchmark_json`), each pruned
    variant shows its latency ratio to its baseline beside its FLOPs ratio, and the Note says so
    when the latency ratio is worse than the FLOPs ratio by more than
    :data:`harness.report.benchmarks.RATIO_TOLERANCE`. Selection-overhead rows show their share of the forward.
    """
    from harness.report.benchmarks import RATIO_TOLERANCE, add_ratios

    b = benchmarks.copy()
    if "latency_ratio" not in b and {"family", "is_baseline", "kind"} <= set(b):
        b = add_ratios(b)
    order = [c for c in ("machine", "kind", "preset", "batch", "family") if c in b]
    if order:
        if "is_baseline" in b:
            b["_base"] = ~b["is_baseline"].fillna(False).astype(bool)
            order.append("_base")
        b = b.sort_values(order, kind="stable", na_position="last")
    notes = []
    for r in b.itertuples(index=False):
        d = r._asdict()
        note = ""
        if d.get("kind") == "selection" and finite(d.get("selection_share")):
            note = f"selection only: {100 * d['selection_share']:.2f}% of the forward"
        elif _true(d.get("is_baseline")):
            note = "baseline"
        elif _true(d.get("latency_worse")):
            note = (f"⚠ latency ratio {d['latency_ratio']:.2f} is worse than the FLOPs ratio "
                    f"{d['flops_ratio']:.2f} by more than {RATIO_TOLERANCE:.2f}")
        notes.append(note)
    cols = [c for c in ("machine", "preset", "batch", "threads", "name", "gflops", "median_ms", "iqr_ms",
                        "rounds", "ms_per_image", "latency_ratio", "flops_ratio") if c in b]
    out = b[cols].copy()
    for c in ("gflops", "median_ms", "iqr_ms", "ms_per_image", "latency_ratio", "flops_ratio"):
        if c in out:
            out[c] = out[c].map(lambda v: _num(float(v)) if finite(v) else "")
    for c in ("batch", "threads", "rounds"):
        if c in out:
            out[c] = out[c].map(lambda v: str(int(v)) if finite(v) else "")
    if any(notes):
        out["Note"] = notes
    return out.rename(columns={"median_ms": "median (ms)", "iqr_ms": "IQR (ms)", "gflops": "GFLOPs",
                               "ms_per_image": "ms / image", "latency_ratio": "latency ratio",
                               "flops_ratio": "FLOPs ratio"}).reset_index(drop=True)


def _true(v: Any) -> bool:
    return isinstance(v, (bool, np.bool_)) and bool(v)


def plain_html(frame: pd.DataFrame, css_class: str = "plain") -> str:
    """A simple escaped HTML table of a small frame (no index) via ``Styler.to_html``."""
    if frame.empty:
        return ""
    # The element ids come from the content, not pandas' random uuid, so a rebuilt report is byte-identical.
    uuid = hashlib.sha256(f"{css_class}\n{frame.to_csv()}".encode()).hexdigest()[:10]
    return (frame.style.format(escape="html").format_index(escape="html", axis=1).hide(axis="index")
            .set_uuid(uuid).set_table_attributes(f'class="{css_class}"').to_html())
