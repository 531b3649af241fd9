"""Results -> one tidy pandas frame, one row per (table, row, dataset, seed).

The frame is the only thing later stages read (statistics, tables, figures, report), so it
carries what they need: the spec's labels and paper values, the metrics, the per-sample test
predictions (``y_true``/``y_pred`` arrays, for paired tests), costs, timings, provenance, and the
status of every cell: ``ok``, ``stale`` (a result exists, but from other code or data: shown,
never reused), ``failed`` (in the ledger), ``missing`` or ``reference`` (a paper-only row).

Cells are re-planned from the specs without touching datasets: the current code version and the
data fingerprint recorded with each cell's config decide which record is current. A row has the
spec's seeds, or more where the store holds more (``reproduce --seeds N`` or ``--until-ci``);
the seed budget of ``--until-ci`` (``<results>/budgets/<table>.json``) is carried as columns.

A table with ``eval_on`` targets adds one row per (table, row, trained column, target, seed): the
cross-dataset evaluation of that seed's cell (:mod:`harness.run.evals`), with ``kind`` ``"eval"``,
``trained_on``/``tested_on`` (column and target keys), ``dataset`` ``"<trained>→<tested>"`` (so
every per-dataset statistic treats the pair as one more column) and the accuracy over the shared
classes (``shared_accuracy``; ``target_only_classes`` lists those counted as errors).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from harness.run.cells import SLOT_FIELDS, canonical_json, split_overrides
from harness.run.codeversion import code_version
from harness.run.evals import EvalStore, eval_code_version, eval_slot, target_knobs
from harness.data.align import describe_alignment
from harness.errors import UserError
from harness.run.plan import declared_model
from harness.run.tracking import events_dir, has_events
from harness.specs import TableSpec, load_spec, restrict_datasets
from harness.store import Store
from methods.interface import recipe_summary

NAN = math.nan


def slot_key(cell: dict[str, Any]) -> str:
    """:meth:`harness.run.cells.Cell.slot` of a cell stored as a dict."""
    return canonical_json({k: cell[k] for k in SLOT_FIELDS})


def _index_records(store: Store) -> tuple[dict[str, dict], dict[str, list[dict]]]:
    by_id, by_key = {}, {}
    for rec in store.iter_records():
        by_id[rec["cell_id"]] = rec
        by_key.setdefault(slot_key(rec["cell"]), []).append(rec)
    return by_id, by_key


def _unseeded(key_fields: dict[str, Any]) -> str:
    return canonical_json({k: key_fields[k] for k in SLOT_FIELDS if k != "seed"})


def _seeds_by_config(known: dict[str, list[dict]], by_key: dict[str, list[dict]]) -> dict[str, set[int]]:
    """The seeds the store holds (planned or recorded) for each slot without its seed."""
    out: dict[str, set[int]] = {}
    for cells in known.values():
        for c in cells:
            out.setdefault(_unseeded(c), set()).add(int(c["seed"]))
    for recs in by_key.values():
        for r in recs:
            out.setdefault(_unseeded(r["cell"]), set()).add(int(r["cell"]["seed"]))
    return out


def budget_path(results_dir: Path | str, table_id: str) -> Path:
    """Where ``reproduce --until-ci`` records a table's seed budget (width, cap, rounds)."""
    return Path(results_dir) / "budgets" / f"{table_id}.json"


def read_budget(results_dir: Path | str, table_id: str) -> dict[str, Any] | None:
    """The seed budget of a table, or None when it was never run with ``--until-ci``."""
    p = budget_path(results_dir, table_id)
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None


def _known_cells(store: Store) -> dict[str, list[dict[str, Any]]]:
    """Planned cell configs in the store, by logical key (newest code version first)."""
    out: dict[str, list[dict]] = {}

    def mtime(p: Path) -> float:
        try:
            return p.stat().st_mtime
        except OSError:  # moved aside meanwhile
            return 0.0

    paths = sorted(store.root.glob("cells/*/cell.json"), key=mtime, reverse=True)
    for p in paths:
        c = store.cell(p.parent.name)
        if c:
            out.setdefault(slot_key(c), []).append(c)
    return out


def _metric_columns(rec: dict[str, Any], store: Store) -> dict[str, Any]:
    m, t, cost, prov = rec["metrics"], rec["timing"], rec.get("cost", {}), rec["provenance"]
    arrays = store.predictions(rec["cell_id"])
    return {
        "accuracy": m["accuracy"], "mean_class_accuracy": m["mean_class_accuracy"],
        "val_accuracy": m.get("val_accuracy", NAN), "per_class_accuracy": m["per_class_accuracy"],
        # reported, never used: what selecting the epoch on the test set would have given
        "test_selected_accuracy": m.get("test_selected_accuracy", NAN),
        "confusion": m["confusion"], "class_names": rec["class_names"],
        "y_true": arrays["y_true"].astype(np.int64), "y_pred": arrays["y_pred"].astype(np.int64),
        "gflops": cost.get("gflops", NAN), "params_m": cost.get("params_m", NAN),
        "params_test_m": cost.get("params_test_m", NAN),
        "tokens_before_head": cost.get("tokens_before_head"),
        "train_s": t["train_s"], "eval_s": t["eval_s"], "wall_s": t.get("wall_s", NAN),
        "epochs": t["epochs"], "steps": t["steps"], "final_loss": t["final_train_loss"],
        "resumed": rec.get("resumed_from_epoch") is not None,
        "git_commit": prov.get("git_commit"), "git_dirty": prov.get("git_dirty"), "cpu": prov.get("cpu"),
        "gpu": prov.get("gpu"), "threads": prov.get("threads"),
        # records from before the GPU path trained on the CPU in full precision
        "device_name": prov.get("device_name", prov.get("cpu")), "amp": prov.get("amp", "off"),
        "history": [{"epoch": h.get("epoch"), "losses": h.get("losses") or {"loss": h.get("train_loss")},
                     "val_accuracy": h.get("val_accuracy")} for h in t.get("history", [])],
        "torch_version": prov.get("packages", {}).get("torch"), "packages": prov.get("packages", {}),
        "dataset_fingerprint": prov.get("dataset_fingerprint"), "hostname": prov.get("hostname"),
        "started_from": describe_start(rec.get("started_from", {}), store),
        "stand_in": any(v.get("stand_in") for v in rec.get("started_from", {}).values()),
        "alignment": describe_alignment(rec["data"].get("split_info", {}).get("alignment")),
        "data_note": describe_data(rec["data"].get("split_info", {})),
        "recipe": recipe_summary(rec["recipe"]) if rec.get("recipe") else None,
        "selection": m.get("selection"),
        "tensorboard": tensorboard_dir(store, rec["cell_id"]),
    }


def tensorboard_dir(store: Store, cell_id: str) -> str | None:
    """The absolute folder of a cell's TensorBoard event files, or None when it wrote none."""
    folder = events_dir(store, cell_id)
    return str(folder.resolve()) if has_events(folder) else None


def describe_data(split_info: dict[str, Any]) -> str | None:
    """What a cell trained on beyond the dataset's name: a training subsample, the label rule."""
    parts = []
    if (limit := split_info.get("train_limit")):
        parts.append(f"train {limit['kept']:,} of {limit['of']:,}")
    if (rule := split_info.get("labels", {}).get("rule")):
        parts.append(f"labels: {rule}")
    return "; ".join(parts) or None


def describe_start(started: dict[str, dict[str, Any]], store: Store | None = None) -> str:
    """One line per weights key: what a run started from (a stage and its checkpoint, with the data
    the stage trained on when the store knows it; a file; scratch)."""
    parts = []
    for key, s in sorted(started.items()):
        if s.get("kind") == "stage":
            stage = store.cell(s["cell"]) if store is not None else None
            on = (f", on {'synthetic' if stage['synthetic'] else 'real'} {stage['dataset']}"
                  if stage and "dataset" in stage else "")
            what = f"stage {s['stage']} (cell {s['cell']}, sha256 {s['sha256']}{on})"
        elif s.get("kind") == "file":
            what = f"{Path(s['path']).name} (sha256 {s['sha256']})"
        else:
            what = "scratch"
        parts.append(f"{key}: {what}{' [stand-in]' if s.get('stand_in') else ''}")
    return "; ".join(parts) or "scratch"


def _empty_metrics() -> dict[str, Any]:
    return {"accuracy": NAN, "mean_class_accuracy": NAN, "val_accuracy": NAN, "test_selected_accuracy": NAN,
            "per_class_accuracy": None,
            "confusion": None, "class_names": None, "y_true": None, "y_pred": None, "gflops": NAN,
            "params_m": NAN, "params_test_m": NAN, "tokens_before_head": None, "train_s": NAN, "eval_s": NAN, "wall_s": NAN,
            "epochs": None, "steps": None, "final_loss": NAN, "resumed": False, "git_commit": None,
            "git_dirty": None, "cpu": None, "gpu": None, "threads": None, "device_name": None, "amp": None,
            "history": None, "torch_version": None,
            "packages": None, "dataset_fingerprint": None, "hostname": None, "started_from": None,
            "stand_in": False, "alignment": None, "data_note": None, "recipe": None, "selection": None,
            "tensorboard": None}


def collect_spec(spec: TableSpec, store: Store, *, scale: str | None = None, extra: dict[str, Any] | None = None,
                 seeds: int | None = None) -> pd.DataFrame:
    """The frame of one table from whatever the store holds for it.

    ``extra`` and ``seeds`` are a ``reproduce`` run's ``--set`` overrides and ``--seeds`` (see
    :func:`harness.commands.common.run_configs`), so its cells are the ones looked up.
    """
    by_id, by_key = _index_records(store)
    known = _known_cells(store)
    seeds_held = _seeds_by_config(known, by_key)
    budget = read_budget(store.root, spec.id) or {}
    rows: list[dict[str, Any]] = []
    for i, row in enumerate(spec.rows):
        for col in spec.datasets:
            method, overrides = spec.resolved(row, col)
            overrides = {**overrides, **(extra or {})}
            _, train_o, data_o = split_overrides(overrides)
            version = None if row.reference else code_version(method)
            base = {"table_id": spec.id, "row": row.label, "row_index": i, "dataset": col.key,
                    "dataset_label": col.label, "paper_extra": dict(row.paper_extra), "is_baseline": row.label == spec.baseline,
                    "reference": row.reference, "method": method, "overrides": overrides, "margin": spec.margin,
                    "budget_width": budget.get("width", NAN), "budget_max_seeds": budget.get("max_seeds", NAN)}
            pv = spec.paper_value(row.label, col.key)
            base["paper_value"] = NAN if pv is None else pv
            if row.reference:
                rows.append({**base, **_empty_metrics(), "seed": -1, "scale": None, "cell_id": None,
                             "status": "reference", "stale": False, "failed": False, "synthetic": False,
                             "error": None, "attempts": 0, "log_path": None})
                continue
            scales = [scale] if scale else sorted({c["scale"] for cs in known.values() for c in cs} or {"tiny"})
            for sc in scales:
                overrides = {**spec.resolved(row, col, sc)[1], **(extra or {})}  # scale_set differs by scale
                _, train_o, data_o = split_overrides(overrides)
                # The model overrides as planned: with the recipe's default weights sources filled in.
                declared, _ = declared_model(method, sc, overrides, f"{spec.path}: row {row.label!r}")
                probe = {"method": method, "model": declared, "train": train_o, "data": data_o,
                         "dataset": col.loader, "protocol": col.protocol}
                held = seeds_held.get(_unseeded({**probe, "scale": sc, "seed": None}), set())
                for seed in range(max(seeds or spec.seeds, max(held, default=-1) + 1)):
                    key = slot_key({**probe, "scale": sc, "seed": seed})
                    candidates = known.get(key, [])
                    current = [k for k in candidates if k["code_version"] == version]
                    planned = current[0] if current else None
                    rec = by_id.get(planned["id"]) if planned else None
                    entry = {**base, "overrides": overrides, "seed": seed, "scale": sc,
                             "cell_id": planned["id"] if planned else None,
                             "synthetic": bool(planned["synthetic"]) if planned else None,
                             "error": None, "attempts": 0, "log_path": None}
                    if rec is not None:
                        rows.append({**entry, **_metric_columns(rec, store), "status": "ok", "stale": False,
                                     "failed": False, "synthetic": bool(rec["data"]["synthetic"])})
                        continue
                    fail = store.failure(planned["id"]) if planned else None
                    old = [r for r in by_key.get(key, []) if not planned or r["cell_id"] != planned["id"]]
                    if fail is not None:
                        rows.append({**entry, **_empty_metrics(), "status": "failed", "stale": False, "failed": True,
                                     "error": f"{fail['error_type']}: {fail['message']}",
                                     "attempts": fail["attempts"], "log_path": fail.get("log_path"),
                                     "tensorboard": tensorboard_dir(store, planned["id"])})  # up to the failure
                    elif old:
                        stale = max(old, key=lambda r: r["timing"].get("finished_at", 0))
                        rows.append({**entry, **_metric_columns(stale, store), "cell_id": stale["cell_id"],
                                     "status": "stale", "stale": True, "failed": False,
                                     "synthetic": bool(stale["data"]["synthetic"])})
                    else:
                        rows.append({**entry, **_empty_metrics(), "status": "missing", "stale": False,
                                     "failed": False})
    return pd.DataFrame(rows + _eval_rows(spec, rows, store))


CROSS = "→"  # joins the trained and the tested dataset key in an evaluation row's ``dataset``


def _eval_metric_columns(rec: dict[str, Any], estore: EvalStore) -> dict[str, Any]:
    """The frame columns of an evaluation record (what a cell's record gives, where it applies)."""
    m, prov = rec["metrics"], rec.get("provenance", {})
    arrays = estore.predictions(rec["eval_id"])
    return {**_empty_metrics(),
            "accuracy": m["accuracy"], "mean_class_accuracy": m["mean_class_accuracy"],
            "per_class_accuracy": m["per_class_accuracy"], "class_names": rec["class_names"],
            "y_true": arrays["y_true"].astype(np.int64), "y_pred": arrays["y_pred"].astype(np.int64),
            "eval_s": rec.get("timing", {}).get("eval_s", NAN),
            "shared_accuracy": NAN if m["shared_accuracy"] is None else m["shared_accuracy"],
            "shared_classes": ", ".join(m["shared_classes"]),
            "target_only_classes": ", ".join(m.get("target_only_classes", [])),
            "git_commit": prov.get("git_commit"), "git_dirty": prov.get("git_dirty"), "cpu": prov.get("cpu"),
            "gpu": prov.get("gpu"), "threads": prov.get("threads"), "device_name": prov.get("device_name"),
            "amp": prov.get("amp"), "torch_version": prov.get("packages", {}).get("torch"),
            "packages": prov.get("packages", {}), "dataset_fingerprint": prov.get("dataset_fingerprint"),
            "hostname": prov.get("hostname"),
            # synthetic when either side is: the model's training data or the target
            "synthetic": bool(rec["data"]["synthetic"] or rec.get("trained", {}).get("synthetic"))}


def _eval_rows(spec: TableSpec, cell_rows: list[dict[str, Any]], store: Store) -> list[dict[str, Any]]:
    """The cross-dataset evaluation rows of a table, one per cell row and ``eval_on`` target.

    The evaluation shown is the one of the row's cell (ok or stale) by today's evaluation code,
    found by its slot among the configs in the store; an older one's record is shown as stale.
    """
    targets = {c.key: spec.eval_targets(c) for c in spec.datasets}
    if not any(targets.values()):
        return []
    estore = EvalStore(store.root)
    by_slot: dict[str, list[dict]] = {}
    for c in estore.configs():  # newest first
        by_slot.setdefault(eval_slot(c["cell_id"], c["dataset"], c["protocol"], c["data"]), []).append(c)
    out = []
    for r in cell_rows:
        if r["status"] == "reference":
            continue
        for t in targets.get(r["dataset"], []):
            pv = spec.paper_cross_value(r["row"], r["dataset"], t.key)
            entry = {**{k: r[k] for k in ("table_id", "row", "row_index", "paper_extra", "is_baseline", "reference",
                                          "method", "overrides", "margin", "budget_width", "budget_max_seeds",
                                          "seed", "scale")},
                     "dataset": f"{r['dataset']}{CROSS}{t.key}",
                     "dataset_label": f"{r['dataset_label']} {CROSS} {t.label or t.key}",
                     "paper_value": NAN if pv is None else pv, "kind": "eval", "trained_on": r["dataset"],
                     "tested_on": t.key, "trained_label": r["dataset_label"], "tested_label": t.label or t.key,
                     "trained_cell_id": r["cell_id"], "cell_id": None, "synthetic": r["synthetic"],
                     "error": None, "attempts": 0, "log_path": None, "stale": False, "failed": False,
                     "shared_accuracy": NAN, "shared_classes": None, "target_only_classes": None}
            cell = store.cell(r["cell_id"]) if r["status"] in ("ok", "stale") and r["cell_id"] else None
            if cell is None:  # no trained model to evaluate yet
                out.append({**_empty_metrics(), **entry, "status": "missing"})
                continue
            found = by_slot.get(eval_slot(cell["id"], t.loader, t.protocol, target_knobs(cell["data"])), [])
            version = eval_code_version(r["method"])
            current = next((c for c in found if c["code_version"] == version), None)
            rec = estore.record(current["id"]) if current else None
            fail = estore.failure(current["id"]) if current and rec is None else None
            old = [x for c in found if c is not current and (x := estore.record(c["id"])) is not None]
            if rec is not None:
                out.append({**entry, **_eval_metric_columns(rec, estore), "cell_id": current["id"],
                            "status": r["status"], "stale": r["status"] == "stale"})
            elif fail is not None:
                out.append({**_empty_metrics(), **entry, "cell_id": current["id"], "status": "failed", "failed": True,
                            "error": f"{fail['error_type']}: {fail['message']}", "attempts": fail["attempts"]})
            elif old:
                stale = max(old, key=lambda x: x.get("timing", {}).get("finished_at", 0))
                out.append({**entry, **_eval_metric_columns(stale, estore), "cell_id": stale["eval_id"],
                            "status": "stale", "stale": True})
            else:
                out.append({**_empty_metrics(), **entry, "cell_id": current["id"] if current else None,
                            "status": "missing"})
    return out


def collect_planned(spec: TableSpec, planned: list, store: Store) -> pd.DataFrame:
    """The frame of exactly these planned cells (``PlannedCell``s, ``--set`` overrides included):
    ok, failed or missing. What ``reproduce --until-ci`` analyses between its rounds."""
    rows = []
    for p in planned:
        row = spec.row(p.row)
        pv = spec.paper_value(p.row, p.dataset)
        base = {"table_id": spec.id, "row": p.row, "row_index": p.row_index, "dataset": p.dataset,
                "dataset_label": next(d.label for d in spec.datasets if d.key == p.dataset),
                "paper_value": NAN if pv is None else pv, "paper_extra": dict(row.paper_extra),
                "is_baseline": p.row == spec.baseline, "reference": False, "method": p.cell.method,
                "overrides": {}, "margin": spec.margin, "seed": p.seed, "scale": p.cell.scale,
                "cell_id": p.cell.id, "synthetic": p.cell.synthetic}
        rec = store.record(p.cell.id)
        if rec is not None:
            rows.append({**base, **_metric_columns(rec, store), "status": "ok"})
        else:
            rows.append({**base, **_empty_metrics(), "status": "failed" if store.failure(p.cell.id) else "missing"})
    return pd.DataFrame(rows)


class RunConfig(NamedTuple):
    """Which run of a table to show: a ``reproduce`` run's ``--set`` overrides, ``--seeds`` and
    ``--datasets`` columns (None: the spec's seeds, every column)."""

    extra: dict[str, Any]
    seeds: int | None = None
    datasets: tuple[str, ...] | None = None


def run_spec(table_id: str, config: RunConfig | None = None) -> TableSpec | None:
    """The spec of ``table_id`` with the run's columns only; None when it has none of them."""
    spec = load_spec(table_id)
    if config is None or config.datasets is None:
        return spec
    spec = restrict_datasets(spec, config.datasets, strict=False)
    return spec if spec.datasets else None


def collect_tables(table_ids: list[str], results_dir: Path | str, *, scale: str | None = None,
                   configs: dict[str, RunConfig] | None = None) -> pd.DataFrame:
    """The tidy frame of several tables, concatenated; ``configs`` maps a table to its run (a
    table with none of the run's columns contributes nothing)."""
    store = Store(results_dir, create=False)
    configs = configs or {}
    frames = []
    for t in table_ids:
        cfg = configs.get(t, RunConfig({}))
        spec = run_spec(t, cfg)
        if spec is not None:
            frames.append(collect_spec(spec, store, scale=scale, extra=cfg.extra, seeds=cfg.seeds))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def tables_with_results(results_dir: Path | str, configs: dict[str, RunConfig] | None = None) -> list[str]:
    """Ids of the specs that have at least one ok or failed cell (in the run's columns) in the store."""
    from harness.specs import list_specs

    out = []
    configs = configs or {}
    for t in list_specs():
        cfg = configs.get(t, RunConfig({}))
        spec = run_spec(t, cfg)
        if spec is None:
            continue
        df = collect_spec(spec, Store(results_dir, create=False), extra=cfg.extra, seeds=cfg.seeds)
        if (df["status"].isin(["ok", "failed", "stale"])).any():
            out.append(t)
    return out


def one_scale(frame: pd.DataFrame, scale: str | None) -> pd.DataFrame:
    """The rows of ``frame`` at ``scale``; with no scale given, refuse a table whose results come
    from several scale presets (their numbers must never be pooled)."""
    if "scale" not in frame or frame.empty:
        return frame
    if scale:
        return frame[frame["scale"].isna() | (frame["scale"] == scale)]
    ran = frame[frame["status"].isin(["ok", "stale", "failed"])]
    mixed = {t: sorted(map(str, g.dropna().unique())) for t, g in ran.groupby("table_id")["scale"]
             if g.dropna().nunique() > 1}
    if mixed:
        raise UserError(f"results of several scale presets would be pooled ({mixed}); pass --scale")
    return frame
