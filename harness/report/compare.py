"""Methods compared with each other: the comparison spec, the comparison frame, the ranking, the claims ledger.

Everything here reads what the report already has -- the collected frame, its
:class:`harness.stats.Analysis` cells, the table specs and the benchmark frame -- never result
files, so a report rebuilt from an exported frame gives the same comparison.

* :func:`load_comparison` reads ``tables/comparison/<id>.yaml`` (its own folder: it is not a
  paper table, so ``list_specs`` and ``load_spec`` never see it). It says which row of which
  table represents each method, and which benchmark case times it.
* :func:`comparison_frame`: one row per method x dataset: our mean ± CI over the seeds that
  finished, the seeds, the paper's value, the verdict, GFLOPs and parameters (from the records,
  at the runs' scale), the paper's GFLOPs, and the median latency at batch 1 and 32 (from the
  pytest-benchmark frame, with its machine).
* :func:`rank_methods`: Demšar's procedure through ``autorank`` where several methods ran on
  several datasets with the same seeds; each (dataset, seed) is one block of the repeated-measures
  design.
* :func:`claims_ledger` / :func:`claims_counts`: every paper value the specs carry (reference
  rows excepted: they are other methods printed for comparison, never run) with its verdict.
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness.stats.inference import finite
from harness import stats
from harness.errors import UserError
from harness.specs import tables_dir

COMPARISON_DIR = "comparison"
BATCHES = (1, 32)
MIN_BLOCKS = 5  # autorank's minimum number of paired measurements


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Entry(_Strict):
    """One table row that stands for the method; ``datasets`` restricts it to some columns."""

    table: str
    row: str
    datasets: list[str] | None = None


class LatencyCase(_Strict):
    """The benchmark configuration timed for the method (model, preset and overrides)."""

    model: str
    preset: str = "paper"
    set: dict[str, Any] = Field(default_factory=dict)


class MethodEntry(_Strict):
    key: str
    label: str
    paper: str
    entries: list[Entry] = Field(min_length=1)
    latency: LatencyCase | None = None
    note: str = ""


class ComparisonSpec(_Strict):
    """A validated comparison spec (``tables/comparison/<id>.yaml``)."""

    id: str
    caption: str
    methods: list[MethodEntry] = Field(min_length=1)
    path: str = ""


def comparison_path(comparison_id: str = "methods", directory: Path | None = None) -> Path:
    """Where a comparison spec lives: ``<tables>/comparison/<id>.yaml``."""
    return (directory or tables_dir()) / COMPARISON_DIR / f"{comparison_id}.yaml"


def parse_comparison(data: Any, path: Path, specs: dict[str, Any] | None = None) -> ComparisonSpec:
    """Validate a comparison spec; with ``specs`` (id -> TableSpec), check every table, row and
    dataset it names against them, naming the file, the method and the entry."""
    if not isinstance(data, dict):
        raise UserError(f"{path}: a comparison spec must be a YAML mapping")
    try:
        spec = ComparisonSpec.model_validate({**data, "path": str(path)})
    except ValidationError as err:
        lines = [f"{path}: invalid comparison spec"]
        for e in err.errors():
            msg = "unknown key" if e["type"] == "extra_forbidden" else e["msg"]
            lines.append(f"  {'.'.join(map(str, e['loc']))}: {msg}")
        raise UserError("\n".join(lines)) from None
    if spec.id != path.stem:
        raise UserError(f"{path}: id {spec.id!r} does not match the file name {path.stem!r}")
    keys = [m.key for m in spec.methods]
    dup = sorted({k for k in keys if keys.count(k) > 1})
    if dup:
        raise UserError(f"{path}: duplicate method keys {dup}")
    for m in spec.methods:
        for i, e in enumerate(m.entries):
            where = f"{path}: method {m.key!r}, entries[{i}]"
            if specs is None:
                continue
            if e.table not in specs:
                raise UserError(f"{where}: unknown table {e.table!r}; known tables: {', '.join(sorted(specs))}")
            t = specs[e.table]
            labels = [r.label for r in t.rows]
            if e.row not in labels:
                raise UserError(f"{where}: table {e.table} has no row {e.row!r}; rows are {labels}")
            if t.row(e.row).reference:
                raise UserError(f"{where}: row {e.row!r} of {e.table} is a reference row (never run)")
            cols = [d.key for d in t.datasets]
            for ds in e.datasets or []:
                if ds not in cols:
                    raise UserError(f"{where}: table {e.table} has no dataset {ds!r}; its datasets are {cols}")
    return spec


def load_comparison(comparison_id: str = "methods", directory: Path | None = None,
                    *, check: bool = True) -> ComparisonSpec | None:
    """Load ``<tables>/comparison/<id>.yaml``; None when there is none (a tables folder without
    a comparison gives a report without the comparison section). ``check`` validates the named
    tables, rows and datasets against the table specs."""
    from harness.specs import list_specs, load_spec

    path = comparison_path(comparison_id, directory)
    if not path.is_file():
        return None
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise UserError(f"{path}: not valid YAML: {err}") from None
    specs = None
    if check:
        base = directory or tables_dir()
        specs = {t: load_spec(t, base) for t in list_specs(base)}
    return parse_comparison(data, path, specs)


# --- the comparison frame ----------------------------------------------------------------------

COMPARISON_COLUMNS = ["method_key", "method", "paper_ref", "dataset", "dataset_label", "table_id", "row",
                      "n", "seeds", "mean", "ci_low", "ci_high", "paper_value", "delta_paper", "verdict",
                      "verdict_note", "synthetic", "scale", "gflops", "params_m", "params_test_m", "paper_gflops",
                      "latency_b1_ms", "latency_b32_ms", "latency_machine", "latency_gflops"]


def _ok_runs(frame: pd.DataFrame, table_id: str, row: str, dataset: str) -> pd.DataFrame:
    if frame.empty or "status" not in frame:
        return frame.iloc[0:0]
    return frame[(frame["table_id"] == table_id) & (frame["row"] == row) & (frame["dataset"] == dataset)
                 & (frame["status"] == "ok")]


def _pick(method: MethodEntry, cells: pd.DataFrame) -> list[tuple[str, Entry, pd.Series]]:
    """(dataset, entry, cell) per dataset the method's entries name, in first-seen order: the first
    entry with a finished seed, else the first entry listing the dataset."""
    chosen: dict[str, tuple[Entry, pd.Series]] = {}
    fallback: dict[str, tuple[Entry, pd.Series]] = {}
    for e in method.entries:
        hits = cells[(cells["table_id"] == e.table) & (cells["row"] == e.row)] if len(cells) else cells
        for _, c in hits.iterrows():
            ds = str(c["dataset"])
            if e.datasets is not None and ds not in e.datasets:
                continue
            fallback.setdefault(ds, (e, c))
            if int(c.get("n", 0) or 0) > 0:
                chosen.setdefault(ds, (e, c))
    return [(ds, *chosen.get(ds, fb)) for ds, fb in fallback.items()]


def _paper_gflops(method: MethodEntry, cells: pd.DataFrame) -> float:
    """The paper's GFLOPs of the method: the first of its entries' rows that states them (Table 13's)."""
    for e in method.entries:
        if not len(cells):
            break
        extra = cells[(cells["table_id"] == e.table) & (cells["row"] == e.row)]["paper_extra"]
        g = [float(x["gflops"]) for x in extra if isinstance(x, dict) and finite(x.get("gflops"))]
        if g:
            return g[0]
    return np.nan


def _latency_rows(bench: pd.DataFrame | None, case: LatencyCase | None) -> pd.DataFrame:
    """The benchmark's latency rows of one configuration (model, preset, overrides), any machine."""
    if bench is None or bench.empty or case is None or "model" not in bench:
        return pd.DataFrame()
    want = json.dumps(case.set, sort_keys=True)
    kind = bench["kind"] if "kind" in bench else pd.Series("latency", index=bench.index)
    ov = bench["overrides"].map(lambda s: json.dumps(json.loads(s), sort_keys=True) if isinstance(s, str) else "{}") \
        if "overrides" in bench else pd.Series("{}", index=bench.index)
    preset = bench["preset"] if "preset" in bench else pd.Series(case.preset, index=bench.index)
    return bench[(kind == "latency") & (bench["model"] == case.model) & (preset == case.preset) & (ov == want)]


def latency_machine(spec: ComparisonSpec, bench: pd.DataFrame | None) -> str | None:
    """The one machine whose timings the comparison shows: the one that timed the most of its
    methods (ties: the first by name). Timings of different machines are never put side by side."""
    counts: dict[str, int] = {}
    for m in spec.methods:
        for machine in set(_latency_rows(bench, m.latency).get("machine", pd.Series(dtype=str))):
            counts[str(machine)] = counts.get(str(machine), 0) + 1
    return min(counts, key=lambda k: (-counts[k], k)) if counts else None


def _latency(bench: pd.DataFrame | None, case: LatencyCase | None, machine: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {"latency_b1_ms": np.nan, "latency_b32_ms": np.nan, "latency_machine": "",
                           "latency_gflops": np.nan}
    hit = _latency_rows(bench, case)
    if hit.empty or machine is None:
        return out
    hit = hit[hit["machine"].astype(str) == machine]
    if hit.empty:
        return out
    for b in BATCHES:
        hb = hit[pd.to_numeric(hit["batch"], errors="coerce") == b]
        if len(hb):
            out[f"latency_b{b}_ms"] = float(hb["median_ms"].iloc[-1])
    out["latency_machine"] = machine
    g = pd.to_numeric(hit["gflops"], errors="coerce").dropna() if "gflops" in hit else pd.Series(dtype=float)
    out["latency_gflops"] = float(g.iloc[0]) if len(g) else np.nan
    return out


def comparison_frame(spec: ComparisonSpec, frame: pd.DataFrame, cells: pd.DataFrame,
                     benchmarks: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per method x dataset (columns :data:`COMPARISON_COLUMNS`), methods in the spec's order.

    ``cells`` is ``Analysis.cells`` of ``frame``; only tables present there count. ``gflops`` and
    ``params_m`` are the medians over the finished seeds' records (fvcore, at the runs' scale);
    ``paper_gflops`` is the paper's, from the row's ``paper_extra`` in any of the method's entries;
    latency is the pytest-benchmark median of the method's ``latency`` case, every method's on the
    same machine (:func:`latency_machine`); a method not timed there shows none.
    """
    rows = []
    machine = latency_machine(spec, benchmarks)
    for m in spec.methods:
        paper_g = _paper_gflops(m, cells)
        lat = _latency(benchmarks, m.latency, machine)
        for ds, entry, c in _pick(m, cells):
            runs = _ok_runs(frame, entry.table, entry.row, ds)
            g = pd.to_numeric(runs["gflops"], errors="coerce").dropna() if "gflops" in runs else pd.Series(dtype=float)
            p, pt = (pd.to_numeric(runs[k], errors="coerce").dropna() if k in runs else pd.Series(dtype=float)
                     for k in ("params_m", "params_test_m"))
            scales = sorted({str(s) for s in runs["scale"].dropna()}) if "scale" in runs else []
            seeds = sorted(int(s) for s in runs["seed"]) if len(runs) else []
            rows.append({
                "method_key": m.key, "method": m.label, "paper_ref": m.paper, "dataset": ds,
                "dataset_label": c.get("dataset_label", ds), "table_id": entry.table, "row": entry.row,
                "n": int(c.get("n", 0) or 0), "seeds": seeds, "mean": float(c.get("mean", np.nan)),
                "ci_low": float(c.get("ci_low", np.nan)), "ci_high": float(c.get("ci_high", np.nan)),
                "paper_value": float(c.get("paper_value", np.nan)),
                "delta_paper": float(c.get("delta_paper", np.nan)),
                "verdict": str(c.get("verdict", stats.NO_RESULT)), "verdict_note": str(c.get("verdict_note", "") or ""),
                "synthetic": bool(c.get("synthetic", False)), "scale": ", ".join(scales),
                "gflops": float(g.median()) if len(g) else np.nan,
                "params_m": float(p.median()) if len(p) else np.nan,
                "params_test_m": float(pt.median()) if len(pt) else np.nan, "paper_gflops": paper_g, **lat,
            })
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


# --- ranking (Demšar through autorank) -------------------------------------------------------------


@dataclass
class Ranking:
    """What :func:`rank_methods` found: the blocks used, autorank's result and report, or why not."""

    ran: bool
    reason: str = ""
    blocks: pd.DataFrame = field(default_factory=pd.DataFrame)
    ranks: pd.DataFrame = field(default_factory=pd.DataFrame)
    omnibus: str = ""
    pvalue: float = math.nan
    posthoc: str = ""
    report: str = ""
    synthetic: bool = False
    result: Any = None


def ranking_blocks(comparison: pd.DataFrame, frame: pd.DataFrame) -> pd.DataFrame:
    """Accuracy per (dataset, seed) block (rows) and method (columns), only blocks where every
    method of ``comparison`` has a finished run with that seed."""
    series = {}
    for r in comparison.itertuples():
        runs = _ok_runs(frame, r.table_id, r.row, r.dataset)
        for s, acc in zip(runs["seed"], runs["accuracy"]):
            series.setdefault(r.method, {})[(r.dataset_label, int(s))] = float(acc)
    if not series:
        return pd.DataFrame()
    blocks = pd.DataFrame(series)
    blocks.index = pd.MultiIndex.from_tuples(blocks.index, names=["dataset", "seed"])
    return blocks.dropna().sort_index()


def rank_methods(comparison: pd.DataFrame, frame: pd.DataFrame, alpha: float = stats.ALPHA) -> Ranking:
    """Demšar's procedure (``autorank`` in its non-parametric mode): Friedman + Nemenyi for three
    or more methods, Wilcoxon signed-rank for two; blocks are (dataset, seed) pairs on which every
    method ran with the same seed. Runs only with >= 2 methods, >= 2 datasets and >= 5 blocks."""
    from autorank import autorank, create_report

    blocks = ranking_blocks(comparison, frame)
    synthetic = bool(comparison["synthetic"].any()) if len(comparison) else False
    n_methods = blocks.shape[1] if len(blocks) else 0
    n_ds = blocks.index.get_level_values("dataset").nunique() if len(blocks) else 0
    if n_methods < 2 or n_ds < 2 or len(blocks) < MIN_BLOCKS:
        return Ranking(False, reason=(
            f"needs at least 2 methods that ran on at least 2 datasets with the same seeds and at least "
            f"{MIN_BLOCKS} such (dataset, seed) blocks; have {n_methods} methods, {n_ds} datasets, "
            f"{len(blocks)} blocks"), blocks=blocks, synthetic=synthetic)
    data = blocks.reset_index(drop=True)
    # autorank prints a notice and the rank table even when not verbose: keep it off stdout.
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        res = autorank(data, alpha=alpha, verbose=False, order="descending", force_mode="nonparametric")
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        create_report(res, decimal_places=3)
    ranks = res.rankdf.reset_index().rename(columns={"index": "method"})
    keep = [c for c in ("method", "meanrank", "median", "mad", "ci_lower", "ci_upper", "effect_size", "magnitude")
            if c in ranks]
    return Ranking(True, blocks=blocks, ranks=ranks[keep], omnibus=str(res.omnibus), pvalue=float(res.pvalue),
                   posthoc=str(res.posthoc or ""), report=buf.getvalue().strip(), synthetic=synthetic, result=res)


def cd_figure(ranking: Ranking):
    """autorank's critical-difference diagram (three or more methods), or None."""
    import matplotlib.pyplot as plt
    from autorank import plot_stats

    if not ranking.ran or ranking.result is None or ranking.blocks.shape[1] < 3:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ax = plot_stats(ranking.result, allow_insignificant=True)
    if ax is None:
        return None
    fig = ax.figure if hasattr(ax, "figure") else plt.gcf()
    if ranking.synthetic:
        fig.suptitle("synthetic stand-in data", fontsize=9)
    return fig


# --- the claims ledger -------------------------------------------------------------------------------


CLAIM_COLUMNS = ["paper", "table_id", "table", "row", "dataset", "dataset_label", "paper_value", "n", "mean",
                 "ci_low", "ci_high", "delta_paper", "is_baseline", "paper_delta", "our_delta", "marker", "verdict",
                 "verdict_note", "synthetic"]


def claims_ledger(cells: pd.DataFrame, specs: list) -> pd.DataFrame:
    """Every cell with a paper value (reference rows excepted), with our result and its verdict."""
    by_id = {s.id: s for s in specs}
    if cells.empty:
        return pd.DataFrame(columns=CLAIM_COLUMNS)
    c = cells[cells["table_id"].isin(by_id) & ~cells["reference"].astype(bool)
              & np.isfinite(cells["paper_value"].to_numpy(float))].copy()
    c["paper"] = c["table_id"].map(lambda t: by_id[t].source.paper)
    c["table"] = c["table_id"].map(lambda t: by_id[t].source.table)
    return c[CLAIM_COLUMNS].reset_index(drop=True)


def claims_counts(ledger: pd.DataFrame) -> pd.DataFrame:
    """Per paper: claims, claims with a result, and the count of each verdict (zeros dropped in ``text``)."""
    cols = ["paper", "claims", "with_result", *stats.VERDICTS, "text"]
    if ledger.empty:
        return pd.DataFrame(columns=cols)
    out = []
    for paper, g in ledger.groupby("paper", sort=False):
        counts = {v: int((g["verdict"] == v).sum()) for v in stats.VERDICTS}
        parts = [f"{n} {v}" for v, n in counts.items() if n]
        out.append({"paper": paper, "claims": len(g), "with_result": int((g["n"] > 0).sum()), **counts,
                    "text": f"{paper.split(' (')[0]}: {len(g)} claims, " + ", ".join(parts)})
    return pd.DataFrame(out, columns=cols)
