"""The static HTML comparison report (jinja2 over ``report_templates/``, autoescape on).

``build_report(frame, specs, out_dir)`` reads only the collected frame (as built by
``harness.report.collect.collect_tables`` or re-read with :func:`read_exported`), the table specs and an
optional benchmark frame, and writes a folder that can be published as is::

    index.html            the methods compared (tables/comparison/methods.yaml: ours vs paper,
                          verdicts, GFLOPs, parameters, latency, Pareto figure, ranking), then
                          all tables, provenance, failure ledger, stale cells, methods notes,
                          statistics and verdict definitions, latency
    claims.html           the claims ledger: every paper value the specs carry, with its verdict
    <table_id>.html       one page per table: regenerated table, statistics, figures
    report.css            the only stylesheet (no CDN, no external resource)
    figures/<id>/*.svg|png
    tables/<id>.md|tex|html   the regenerated tables in three formats
    data/frame.csv|parquet, cells.csv, summary.csv, comparisons.csv, selection.csv[, benchmarks.csv],
         methods.csv|json, claims.csv|json, ranking_blocks.csv

The comparison and claims tables are interactive (sort, search, per-column filters): itables
embeds DataTables in each page in its offline mode (the library inlined as base64, nothing
fetched), so they work from ``file://``. Figures stay static SVG/PNG.
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from harness import stats
from harness.errors import UserError
from harness.stats.inference import finite

from harness.report import compare, cross, figures, render
TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "report_templates"
ARRAY_COLUMNS = ("y_true", "y_pred")
FRAME_KEY_COLUMNS = ("table_id", "row", "dataset", "seed", "status")  # what every results frame has
JSON_COLUMNS = ("per_class_accuracy", "confusion", "class_names", "paper_extra", "overrides", "packages",
                "history")


# --- export ----------------------------------------------------------------------------------

# A text cell starting with one of these is run as a formula by a spreadsheet (OWASP's list).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def csv_text(value: Any) -> Any:
    """``value`` as a CSV cell that no spreadsheet runs as a formula: text starting with ``=``,
    ``+``, ``-``, ``@`` (tab, CR) gets a leading ``'``; numbers, and text that is a number, stay."""
    if isinstance(value, str) and value.startswith(_FORMULA_START) and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


def to_csv(frame: pd.DataFrame, path: Path, *, index: bool = False) -> None:
    """Write ``frame`` as CSV with every text cell and header passed through :func:`csv_text`."""
    out = frame.reset_index() if index else frame.copy()
    for i, dtype in enumerate(out.dtypes):
        if dtype == object or isinstance(dtype, pd.StringDtype):
            out.isetitem(i, out.iloc[:, i].map(csv_text))
    out.columns = [csv_text(c) for c in out.columns]
    out.to_csv(path, index=False)


@contextmanager
def staged(out: Path, *, merge: bool = False) -> Iterator[Path]:
    """A fresh folder beside ``out`` to build into, moved into place only when the block ends
    without an error: a full disk or a failure mid-way leaves ``out`` as it was, and no half-built
    folder (the staging one is removed).

    A missing or empty ``out`` is replaced by the staging folder. Otherwise, with ``merge`` (the
    report), every built file is moved over its namesake in ``out``, ``index.html`` last, and the
    other files of ``out`` stay; without it (publish, which checked that ``out`` holds only its own
    files), ``out`` is swapped whole: renamed aside, replaced, then deleted.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))  # same file system: renames
    tmp.chmod(0o755)  # mkdtemp's 0700 would keep a web server out of the published folder
    try:
        yield tmp
        if out.is_dir() and not out.is_symlink() and not any(out.iterdir()):
            out.rmdir()
        if not out.exists() and not out.is_symlink():
            tmp.rename(out)
        elif merge:
            built = sorted((p for p in tmp.rglob("*") if not p.is_dir()), key=lambda p: (p.name == "index.html", p))
            for p in built:
                dest = out / p.relative_to(tmp)
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.replace(p, dest)
        else:
            old = tmp.with_name(tmp.name + ".old")
            out.rename(old)
            try:
                tmp.rename(out)
            except OSError:
                old.rename(out)
                raise
            shutil.rmtree(old)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _json_default(o: Any) -> Any:
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    return str(o)


def _to_json(v: Any) -> Any:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    return json.dumps(v, default=_json_default, sort_keys=True)


def export_frame(frame: pd.DataFrame, data_dir: Path) -> dict[str, Path]:
    """Write the frame as Parquet (per-sample predictions kept as int lists, dict/list columns
    as JSON text) and as CSV (per-sample predictions dropped). Returns the paths."""
    data_dir.mkdir(parents=True, exist_ok=True)
    out = frame.copy()
    for col in JSON_COLUMNS:
        if col in out:
            out[col] = out[col].map(_to_json)
    for col in ARRAY_COLUMNS:
        if col in out:
            out[col] = out[col].map(lambda a: None if a is None else [int(x) for x in np.asarray(a)])
    paths = {"parquet": data_dir / "frame.parquet", "csv": data_dir / "frame.csv"}
    out.to_parquet(paths["parquet"], index=False)
    to_csv(out.drop(columns=[c for c in ARRAY_COLUMNS if c in out]), paths["csv"])
    return paths


def read_exported(path: Path) -> pd.DataFrame:
    """Read ``frame.parquet`` written by :func:`export_frame` back into the collect contract; a file
    that is not one (not Parquet, or without the frame's key columns) is a :class:`UserError`."""
    try:
        frame = pd.read_parquet(path)
    except Exception as err:  # noqa: BLE001 - pyarrow raises many types for a file that is not Parquet
        raise UserError(f"--frame {path}: not a Parquet file ({type(err).__name__})") from None
    missing = [c for c in FRAME_KEY_COLUMNS if c not in frame]
    if missing:
        raise UserError(f"--frame {path}: not a FERbench results frame (no column {', '.join(missing)}); "
                        "pass the frame.parquet a report or `collect --out` wrote")
    for col in JSON_COLUMNS:
        if col in frame:
            frame[col] = frame[col].map(lambda s: json.loads(s) if isinstance(s, str) else None).astype(object)
    for col in ARRAY_COLUMNS:
        if col in frame:
            frame[col] = frame[col].map(
                lambda a: None if a is None or isinstance(a, float) else np.asarray(a, dtype=int)).astype(object)
    return frame


# --- pieces of the pages ---------------------------------------------------------------------


def _uniq(frame: pd.DataFrame, col: str) -> list:
    if col not in frame:
        return []
    vals = [v for v in frame[col].tolist() if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return list(dict.fromkeys(str(v) for v in vals))


def provenance(frame: pd.DataFrame) -> dict[str, Any]:
    """Commit, dirty flag, hardware, packages, datasets + fingerprints, scale and seeds."""
    run = frame[frame["status"].isin(["ok", "stale", "failed"])] if "status" in frame else frame
    packages: dict[str, set[str]] = {}
    if "packages" in run:
        for p in run["packages"]:
            if isinstance(p, str):
                p = json.loads(p)
            for k, v in (p or {}).items():
                packages.setdefault(str(k), set()).add(str(v))
    datasets = []
    if len(run):
        cols = [c for c in ("dataset", "dataset_label", "dataset_fingerprint", "alignment", "data_note", "synthetic")
                if c in run]
        for _, r in run[cols].drop_duplicates().iterrows():
            datasets.append({c: r[c] for c in cols})
    dirty = [bool(x) for x in run["git_dirty"].dropna()] if "git_dirty" in run else []
    seeds = sorted({int(s) for s in run["seed"].dropna()}) if "seed" in run else []
    return {
        "commits": _uniq(run, "git_commit"),
        "dirty": any(dirty),
        "dirty_known": bool(dirty),
        "cpu": _uniq(run, "cpu"), "gpu": _uniq(run, "gpu"), "threads": _uniq(run, "threads"),
        "device": _uniq(run, "device_name"), "amp": _uniq(run, "amp"),
        "torch": _uniq(run, "torch_version"), "hostname": _uniq(run, "hostname"),
        "packages": {k: ", ".join(sorted(v)) for k, v in sorted(packages.items())},
        "datasets": datasets, "scale": _uniq(run, "scale"), "seeds": seeds,
    }


def ledger(frame: pd.DataFrame, status: str) -> pd.DataFrame:
    """The failed (or stale) seeds: table, row, dataset, seed, attempts, error, log."""
    if "status" not in frame:
        return pd.DataFrame()
    mask = frame["status"] == status
    if status == "stale" and "stale" in frame:
        mask |= frame["stale"].fillna(False).astype(bool)
    cols = [c for c in ("table_id", "row", "dataset", "seed", "attempts", "error", "log_path", "cell_id")
            if c in frame]
    out = frame.loc[mask, cols].reset_index(drop=True)
    return out.astype(object).where(out.notna(), "")


def started_from(frame: pd.DataFrame) -> pd.DataFrame:
    """What each row's runs started from (pre-training stage with its checkpoint hash, a file, or
    scratch) and the recipe they trained with (its name says which dataset's), per dataset;
    stand-ins are flagged."""
    if "started_from" not in frame or "status" not in frame:
        return pd.DataFrame()
    run = frame[frame["status"].isin(["ok", "stale"]) & frame["started_from"].notna()]
    if not len(run):
        return pd.DataFrame()
    if "recipe" not in run:
        run = run.assign(recipe=None)
    out = run.groupby(["row", "dataset"], sort=False).agg(
        started_from=("started_from", lambda s: " | ".join(dict.fromkeys(s))),
        recipe=("recipe", lambda s: " | ".join(dict.fromkeys(str(v) for v in s if v))),
        stand_in=("stand_in", "any"), seeds=("seed", "nunique")).reset_index()
    out["stand_in"] = out["stand_in"].map({True: "stand-in", False: ""})
    return out


def tracking_links(frame: pd.DataFrame) -> dict[str, Any] | None:
    """The TensorBoard event folders of a table's cells (``tensorboard`` column of the frame): one
    entry per cell (row, dataset, seed, cell id, status, folder and its ``file://`` link) and the
    ``--logdir`` that shows them all; None when no cell wrote events (or the frame predates them).

    The folders stay in the results store, so the links work on the machine that holds it.
    """
    if "tensorboard" not in frame:
        return None
    run = frame[frame["tensorboard"].map(lambda v: isinstance(v, str) and bool(v))]
    if run.empty:
        return None
    cells = [{"row": r["row"], "dataset": r.get("dataset_label", r["dataset"]), "seed": int(r["seed"]),
              "cell": r.get("cell_id") or "", "status": r["status"], "folder": r["tensorboard"],
              "href": Path(r["tensorboard"]).as_uri()}
             for _, r in run.drop_duplicates("tensorboard").iterrows()]
    return {"logdir": os.path.commonpath([c["folder"] for c in cells]), "cells": cells}


def methods_notes() -> list[dict[str, str]]:
    """The paper-vs-code choices, from ``report_templates/methods_notes.yaml``."""
    return yaml.safe_load((TEMPLATES_DIR / "methods_notes.yaml").read_text())["notes"]


def _featured_row(cells: pd.DataFrame, spec: Any) -> str | None:
    """The row whose confusion matrices are drawn: the paper's best row that ran, else ours."""
    t = cells[(cells["table_id"] == spec.id) & (cells["n"] > 0) & ~cells["reference"].astype(bool)]
    if t.empty:
        return None
    first = t[t["dataset"] == t["dataset"].iloc[0]]
    col = "paper_value" if np.isfinite(first["paper_value"]).any() else "mean"
    return str(first.loc[first[col].idxmax(), "row"])


def _figures_for(frame: pd.DataFrame, cells: pd.DataFrame, spec: Any, out_dir: Path) -> list[dict]:
    fig_dir = out_dir / "figures" / spec.id
    made: list[dict] = []

    def keep(fig, name: str, caption: str) -> None:
        if fig is None:
            return
        paths = figures.save(fig, fig_dir, name)
        made.append({"name": name, "caption": caption,
                     "svg": paths["svg"].relative_to(out_dir).as_posix(),
                     "png": paths["png"].relative_to(out_dir).as_posix()})

    hints = list(spec.figures)
    kinds = {h.get("kind") for h in hints}
    if spec.baseline is not None:
        keep(figures.delta_figure(cells, spec.id), "delta",
             f"Each row's accuracy difference against the baseline '{spec.baseline}' on the same "
             "dataset: ours (95% CI of a two-level bootstrap over seeds and test images; marker of the "
             "Holm-adjusted seed-level paired t-test) and the paper's (cross).")
    has_paper_gflops = any("gflops" in r.paper_extra for r in spec.rows)
    if "cost" in kinds or has_paper_gflops or "gflops" in spec.columns_extra:
        keep(figures.cost_figure(cells, spec.id), "cost", "Accuracy against GFLOPs (Table 13 style).")
    for i, h in enumerate(h for h in hints if h.get("kind") == "heatmap"):
        keep(figures.heatmap_figure(cells, spec.id, h["x"], h["y"], h.get("dataset")), f"heatmap{i or ''}",
             f"Our mean accuracy over {h['y']} × {h['x']}; the paper's value in brackets where it "
             "states one (Fig. 5 style).")
    keep(figures.training_curves_figure(frame, spec.id), "training",
         "Training curves: every named loss term of the method's training step and the validation "
         "accuracy per epoch, mean over seeds (band: ± one SD across seeds).")
    featured = _featured_row(cells, spec)
    if featured is not None:
        keep(figures.confusion_figure(frame, spec.id, featured), "confusion",
             f"Row-normalised confusion matrices of '{featured}', summed over seeds (Fig. 6 style).")
    return made


def shown_pictures(pictures: list[dict[str, Any]], table_id: str, frame: pd.DataFrame, out_dir: Path, *,
                   published: bool) -> dict[str, Any]:
    """Copy ``table_id``'s pictures into ``out_dir/figures/<table_id>/pictures/``; return them (name,
    caption, png, dataset) and the notes of rows that could not be pictured. Published, a picture
    is kept only when every cell it shows is synthetic in ``frame``: real faces never leave the
    machine that holds them, whatever the picture's own flag says."""
    synthetic = set(frame.loc[frame["synthetic"].eq(True), "cell_id"]) if "cell_id" in frame and "synthetic" in frame \
        else set()
    shown, notes = [], []
    for p in pictures:
        if p.get("table_id") != table_id:
            continue
        if "note" in p:
            notes.append(f"{p['dataset']}: {p['note']}")
            continue
        if published and not (p.get("synthetic") and p["cells"] and set(p["cells"]) <= synthetic):
            continue
        dest = out_dir / "figures" / table_id / "pictures" / f"{p['name']}.png"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(p["file"], dest)
        shown.append({"name": p["name"], "caption": p["caption"], "dataset": p["dataset"],
                      "png": dest.relative_to(out_dir).as_posix()})
    return {"shown": shown, "notes": [] if published else notes}


def _html(frame: pd.DataFrame, css: str = "plain") -> Markup:
    # Styler escapes every cell and header itself (format(escape="html")).
    return Markup(render.plain_html(frame, css))


# --- methods compared, claims ledger (harness.report.compare) ------------------------------------------

# Links to pages of the site are built here; everything else in an interactive table is text,
# escaped here because itables inserts cells as HTML once ``allow_html`` is on.
_ITABLES_EXTERNAL = re.compile(r'<a href=https://itables\.org[^>]*>(.*?)</a>', re.S)


def itables_init() -> Markup:
    """itables' offline bootstrap (DataTables inlined as base64), once per page that has interactive tables."""
    from itables import options as it_opt
    from itables.javascript import generate_init_offline_itables_html

    return Markup(_ITABLES_EXTERNAL.sub(r"\1", generate_init_offline_itables_html(it_opt.dt_bundle)))


def interactive_html(frame: pd.DataFrame, table_id: str, *, html_columns: tuple[str, ...] = (),
                     page_length: int = 25) -> Markup:
    """An interactive table (sort, search, a filter per column) through itables' offline mode.

    Every cell is escaped except the ``html_columns``, which the caller builds from escaped parts.
    itables' own links to its website are unwrapped: the site links nothing outside itself.
    """
    from markupsafe import escape
    from itables import to_html_datatable

    if frame.empty:
        return Markup("")
    shown = frame.copy()
    for col in shown.columns:
        if col not in html_columns:
            shown[col] = shown[col].map(lambda v: "" if v is None else str(escape(str(v))))
    html = to_html_datatable(
        shown, table_id=table_id, connected=False, allow_html=True, showIndex=False, maxBytes=0,
        column_filters="header", pageLength=page_length, classes="display compact", order=[],
        # Not itables' default layout, which it strips of the search box when the rows fit one page.
        layout={"topStart": "search", "topEnd": "info", "bottomStart": "pageLength", "bottomEnd": "paging"},
        display_logo_when_loading=False)
    return Markup(_ITABLES_EXTERNAL.sub(r"\1", html))


def _link(href: str, text: str) -> str:
    from markupsafe import escape

    return f'<a href="{escape(href)}">{escape(text)}</a>'


def _verdict_html(verdict: str, note: str) -> str:
    from markupsafe import escape

    text = f"{verdict} ({note})" if note else verdict
    return f'<span class="verdict v-{escape(verdict.replace(" ", "-"))}">{escape(text)}</span>'


def _fmt(v: Any, digits: int = 2, signed: bool = False) -> str:
    """A number with a true minus sign, or "" when missing."""
    if not finite(v):
        return ""
    return f"{float(v):+.{digits}f}".replace("-", "−") if signed else f"{float(v):.{digits}f}"


def methods_display(comp: pd.DataFrame) -> pd.DataFrame:
    """The comparison table as shown: one row per method x dataset, text cells."""
    def ms(v: Any) -> str:
        return f"{float(v):.1f}" if finite(v) else "not measured"

    rows = []
    for r in comp.itertuples():
        cell = pd.Series({"n": r.n, "mean": r.mean, "ci_low": r.ci_low, "ci_high": r.ci_high,
                          "synthetic": r.synthetic, "reference": False})
        rows.append({
            "Method": r.method, "Dataset": r.dataset_label,
            "Ours (mean ± 95% CI)": render.format_ours(cell) if r.n else "no result",
            "Seeds": ", ".join(map(str, r.seeds)) or "–",
            "Paper": _fmt(r.paper_value) or "n.r.",
            "Δ paper": _fmt(r.delta_paper, signed=True),
            "Verdict": _verdict_html(r.verdict, r.verdict_note),
            # three significant digits: a tiny-scale model costs hundredths of a GFLOP
            "GFLOPs (ours)": (f"{r.gflops:.3g}" + (f" ({r.scale})" if r.scale else "")) if finite(r.gflops) else "",
            "GFLOPs (paper)": _fmt(r.paper_gflops) or "n.r.",
            # what inference uses, beside the training total (PF-ViT's G, D and frozen network)
            "Params at test / in training (M)": f"{_fmt(r.params_test_m) or 'n.r.'} / {_fmt(r.params_m)}",
            "Latency b1 (ms)": ms(r.latency_b1_ms), "Latency b32 (ms)": ms(r.latency_b32_ms),
            "Latency machine": r.latency_machine,
            "From": _link(f"{r.table_id}.html", f"{r.table_id}: {r.row}"),
        })
    return pd.DataFrame(rows)


def claims_display(ledger: pd.DataFrame) -> pd.DataFrame:
    """The claims ledger as shown: one row per claim, linked to its table page."""
    rows = []
    for r in ledger.itertuples():
        cell = pd.Series({"n": r.n, "mean": r.mean, "ci_low": r.ci_low, "ci_high": r.ci_high,
                          "synthetic": r.synthetic, "reference": False})
        base = pd.Series({"is_baseline": bool(r.is_baseline),
                          "our_delta": r.our_delta, "paper_delta": r.paper_delta, "marker": r.marker})
        rows.append({
            "Paper": r.paper.split(" (")[0], "Table": _link(f"{r.table_id}.html#table", f"{r.table} ({r.table_id})"),
            "Row": r.row, "Dataset": r.dataset_label, "Paper value": _fmt(r.paper_value),
            "Ours": render.format_ours(cell) if r.n else "no result",
            "Δ paper": _fmt(r.delta_paper, signed=True),
            "Δ base [paper]": render.format_base(base),
            "Verdict": _verdict_html(r.verdict, r.verdict_note),
        })
    return pd.DataFrame(rows)


def _save_figure(fig, out_dir: Path, sub: str, name: str) -> dict[str, str] | None:
    if fig is None:
        return None
    paths = figures.save(fig, out_dir / "figures" / sub, name)
    return {k: v.relative_to(out_dir).as_posix() for k, v in paths.items()}


def _methods_section(spec: compare.ComparisonSpec | None, frame: pd.DataFrame, cells: pd.DataFrame,
                     benchmarks: pd.DataFrame | None, out_dir: Path, data_dir: Path) -> dict[str, Any] | None:
    """The index's comparison of methods: table, Pareto figure, ranking; writes its data files."""
    if spec is None:
        return None
    comp = compare.comparison_frame(spec, frame, cells, benchmarks)
    if comp.empty:
        return None
    to_csv(comp.assign(seeds=comp["seeds"].map(lambda s: " ".join(map(str, s)))), data_dir / "methods.csv")
    (data_dir / "methods.json").write_text(
        json.dumps(json.loads(comp.to_json(orient="records")), indent=1, sort_keys=True) + "\n")
    ranking = compare.rank_methods(comp, frame)
    if len(ranking.blocks):
        to_csv(ranking.blocks, data_dir / "ranking_blocks.csv", index=True)
    machines = sorted({m for m in comp["latency_machine"] if m})
    return {
        "caption": spec.caption, "spec_path": f"tables/comparison/{Path(spec.path).name}",
        "html": interactive_html(methods_display(comp), "methods_table", html_columns=("Verdict", "From")),
        "methods": list(dict.fromkeys(comp["method"])), "n_rows": len(comp),
        "synthetic": bool(comp["synthetic"].any()), "machines": machines,
        "pareto": _save_figure(figures.pareto_figure(comp), out_dir, "comparison", "pareto"),
        "ranking": ranking,
        "ranks_html": _html(ranking.ranks.sort_values("meanrank").assign(
            meanrank=lambda d: d["meanrank"].map(lambda v: f"{v:.2f}"),
            median=lambda d: d["median"].map(lambda v: f"{v:.2f}"))[["method", "meanrank", "median"]]
            .rename(columns={"method": "Method", "meanrank": "mean rank (1 = best)", "median": "median accuracy"}))
        if ranking.ran else Markup(""),
        "cd": _save_figure(compare.cd_figure(ranking), out_dir, "comparison", "critical_difference"),
    }


def _write_claims(cells: pd.DataFrame, specs: list, data_dir: Path) -> dict[str, Any]:
    ledger = compare.claims_ledger(cells, specs)
    counts = compare.claims_counts(ledger)
    to_csv(ledger, data_dir / "claims.csv")
    (data_dir / "claims.json").write_text(
        json.dumps(json.loads(ledger.to_json(orient="records")), indent=1, sort_keys=True) + "\n")
    return {"html": interactive_html(claims_display(ledger), "claims_table", html_columns=("Table", "Verdict"), page_length=50),
            "counts": counts.to_dict("records"), "n": len(ledger),
            "counts_html": _html(counts.drop(columns=["text"]).rename(columns={"paper": "Paper", "claims": "claims",
                                                                               "with_result": "with a result"})),
            "synthetic": bool(ledger["synthetic"].astype(bool).any()) if len(ledger) else False}


# --- the report --------------------------------------------------------------------------------


def build_report(
    frame: pd.DataFrame,
    specs: list,
    out_dir: Path,
    *,
    benchmarks: pd.DataFrame | None = None,
    analysis: stats.Analysis | None = None,
    seed_test: str = "paired-t",
    comparison: compare.ComparisonSpec | bool = True,
    published: dict[str, Any] | None = None,
    pictures: list[dict[str, Any]] | None = None,
) -> Path:
    """Write the static report for ``specs`` from ``frame`` into ``out_dir``; return index.html.

    ``frame`` follows the collect contract (one row per table x row x dataset x seed); tables
    of ``specs`` without any row in the frame are still listed, as missing. ``benchmarks`` (columns
    name, machine, median_ms, iqr_ms, rounds, batch, gflops, ...) adds the latency figure and table.
    ``seed_test`` picks the seed-level primary test (``paired-t``, ``wilcoxon`` or ``welch``);
    ``analysis`` reuses a
    precomputed :class:`harness.stats.Analysis` of the same frame. ``comparison`` is the methods
    comparison of the index (True: ``tables/comparison/methods.yaml`` when there is one; False:
    none). ``published`` (commit, command; see :mod:`harness.report.publish`) is printed in every footer.
    ``pictures`` are the PNGs :func:`harness.pictures.make_pictures` wrote, copied into the table pages;
    with ``published``, only those whose cells are all synthetic in ``frame`` (:func:`shown_pictures`).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ids = [s.id for s in specs]
    if "table_id" not in frame:
        frame = pd.DataFrame(columns=["table_id", "row", "dataset", "seed", "status", "synthetic"])
    frame = frame[frame["table_id"].isin(ids)]
    frame = frame.iloc[np.argsort(frame["table_id"].map(ids.index).to_numpy(), kind="stable")].reset_index(drop=True)
    analysis = analysis or stats.analyse(frame, seed_method=seed_test)
    cells = analysis.cells
    env = Environment(loader=FileSystemLoader(TEMPLATES_DIR), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    shutil.copyfile(TEMPLATES_DIR / "report.css", out_dir / "report.css")

    # The banner: any result (ok or stale) that comes from synthetic stand-in data.
    synth_rows = (frame["synthetic"].eq(True) & frame["status"].isin(["ok", "stale"])) \
        if "synthetic" in frame else pd.Series(False, index=frame.index)
    synthetic = bool(synth_rows.any())
    synthetic_tables = list(dict.fromkeys(frame.loc[synth_rows, "table_id"]))
    common = {
        "synthetic": synthetic, "synthetic_tables": synthetic_tables, "synth_mark": render.SYNTHETIC_MARK,
        "legend": render.LEGEND, "nav": ids,
        "verdicts": list(stats.VERDICTS.items()),
        "statistics": stats.statistics_text(analysis.params),
        "published": published, "itables": Markup(""),
    }

    tables_dir = out_dir / "tables"
    tables_dir.mkdir(exist_ok=True)
    pages = []
    for spec in specs:
        tframe = render.table_frame(cells, spec)
        (tables_dir / f"{spec.id}.md").write_text(render.to_markdown(tframe) + "\n")
        (tables_dir / f"{spec.id}.tex").write_text(render.to_latex(tframe, spec.caption, f"tab:{spec.id}"))
        table_html = render.to_html(tframe, spec.id)
        (tables_dir / f"{spec.id}.html").write_text(table_html)
        summ = analysis.summary[analysis.summary["table_id"] == spec.id] if len(analysis.summary) else pd.DataFrame()
        tcells = cells[cells["table_id"] == spec.id] if len(cells) else cells
        ran = tcells[tcells["n"] > 0] if len(tcells) else tcells
        page = {
            "id": spec.id, "caption": spec.caption, "source": spec.source, "reading": spec.reading,
            "method": spec.method, "base": spec.base, "scale_set": spec.scale_set, "baseline": spec.baseline,
            "seeds": spec.seeds,
            "datasets": spec.datasets, "excluded": spec.excluded, "left_out": spec.left_out,
            "n_rows": len(spec.rows), "n_ran": int(ran["row"].nunique()) if len(ran) else 0,
            "synthetic": spec.id in synthetic_tables,
            "table_html": Markup(table_html),
            "summary_html": _html(render.summary_frame(summ, tcells)) if len(summ) else Markup(""),
            "comparisons_html": _html(render.comparisons_frame(cells, spec.id)) if len(cells) else Markup(""),
            "seeds_html": _html(render.seeds_frame(cells, spec.id)) if len(cells) else Markup(""),
            "selection_html": _html(render.selection_frame(
                analysis.selection[analysis.selection["table_id"] == spec.id])) if len(analysis.selection)
            else Markup(""),
            "failed_html": _html(ledger(frame[frame["table_id"] == spec.id], "failed")),
            "stale_html": _html(ledger(frame[frame["table_id"] == spec.id], "stale")),
            "started_html": _html(started_from(frame[frame["table_id"] == spec.id])),
            # a published site is read elsewhere: links into this machine's results store would be dead there
            "tracking": None if published else tracking_links(frame[frame["table_id"] == spec.id]),
            "files": {f: f"tables/{spec.id}.{f}" for f in ("md", "tex", "html")},
            "cross": cross.cross_matrices(frame, cells, spec), "cross_legend": cross.LEGEND,
            "summary_rows": summ.to_dict("records") if len(summ) else [],
        }
        page["figures"] = _figures_for(frame, cells, spec, out_dir) if len(tcells) else []
        page["pictures"] = shown_pictures(pictures or [], spec.id, frame, out_dir, published=published is not None)
        pages.append(page)
        (out_dir / f"{spec.id}.html").write_text(
            env.get_template("table.html").render(page=page, title=spec.id, **common))

    data_dir = out_dir / "data"
    exported = export_frame(frame, data_dir)
    to_csv(cells.drop(columns=[c for c in ("paper_extra", "overrides") if c in cells]), data_dir / "cells.csv")
    to_csv(analysis.summary, data_dir / "summary.csv")
    to_csv(analysis.comparisons, data_dir / "comparisons.csv")
    to_csv(analysis.selection, data_dir / "selection.csv")

    bench = None
    if benchmarks is not None and not benchmarks.empty:
        to_csv(benchmarks, data_dir / "benchmarks.csv")
        fig = figures.latency_figure(benchmarks)
        figs = []
        if fig is not None:
            p = figures.save(fig, out_dir / "figures" / "latency", "latency")
            figs.append({"svg": p["svg"].relative_to(out_dir).as_posix(),
                         "png": p["png"].relative_to(out_dir).as_posix()})
        bench = {"html": _html(render.benchmarks_frame(benchmarks)), "figures": figs}

    if comparison is True:
        comparison = compare.load_comparison(check=False)
    methods = _methods_section(comparison or None, frame, cells, benchmarks, out_dir, data_dir)
    claims = _write_claims(cells, specs, data_dir)
    init = itables_init()
    (out_dir / "claims.html").write_text(env.get_template("claims.html").render(
        title="Claims ledger", claims=claims, **{**common, "itables": init if claims["n"] else Markup("")}))

    index = out_dir / "index.html"
    index.write_text(env.get_template("index.html").render(
        title="FERbench reproduction report", pages=pages,
        overview_html=_html(render.summary_frame(analysis.summary, cells)) if len(analysis.summary) else Markup(""),
        selection_html=_html(render.selection_frame(analysis.selection)),
        prov=provenance(frame),
        failed_html=_html(ledger(frame, "failed")), n_failed=len(ledger(frame, "failed")),
        stale_html=_html(ledger(frame, "stale")), n_stale=len(ledger(frame, "stale")),
        notes=methods_notes(), bench=bench,
        data_files={k: v.relative_to(out_dir).as_posix() for k, v in exported.items()},
        methods=methods, claims_counts=claims["counts"],
        **{**common, "itables": init if methods else Markup("")}))
    return index
