"""Cross-dataset evaluations: a trained cell tested on another dataset's official test split.

A table column (or the whole table) may list ``eval_on`` targets. Each trained cell of such a
column is then evaluated, without retraining, on each target's test split, from the selected
weights its record keeps (``model.pt``). An evaluation is a cached, content-hashed unit like a
cell: its id hashes the trained cell's id, the target's loader, protocol, data knobs and data
fingerprint, and the *code version* of what evaluates (:func:`eval_code_version`); it is computed
once, and a new target adds only its own evaluations.

The target is read with the trained cell's ``data.*`` knobs (a synthetic stand-in of the same
size, an aligned copy when the cell trained on one), except ``data.train_limit``, which only
thins a training split. Class spaces meet through the canonical labels
(:data:`harness.data.labels.CANONICAL_CLASSES`): a target class the model cannot predict
(contempt, for a 7-class model) counts as an error, and :func:`cross_metrics` also gives the
accuracy over the classes both share.

Store layout (beside ``cells/``)::

    evals/<eval id>/eval.json         the evaluation's config (written when it is planned)
    evals/<eval id>/record.json       metrics and provenance, pointing at the predictions (last written)
    evals/<eval id>/predictions.npz   per-sample target labels and predictions (-1: a class the target lacks)
    evals/<eval id>/failure.json      why the last attempt failed

Plain data: this module imports neither torch nor the methods (running is
:mod:`harness.run.evaluate`).
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import UserError
from harness.run.cells import PlannedCell, canonical_json, short_hash
from harness.store import atomic_write_bytes, atomic_write_json, file_sha256, read_valid_json

EVAL_MODULE = "harness.run.evaluate"
EVAL_SCHEMA_VERSION = 1
TARGET_ONLY_KNOBS = ("train_limit",)  # data.* knobs of the training split, not of a target's test split
EVAL_CONFIG_SCHEMA = {"id": str, "cell_id": str, "method": str, "dataset": str, "protocol": (str, type(None)),
                      "data": dict, "fingerprint": str, "code_version": str, "synthetic": bool}
EVAL_RECORD_SCHEMA = {"schema": int, "eval_id": str, "evaluation": EVAL_CONFIG_SCHEMA,
                      "predictions": {"file": str, "sha256": str},
                      "metrics": {"accuracy": (int, float), "shared_accuracy": (int, float, type(None)),
                                  "mean_class_accuracy": (int, float), "per_class_accuracy": dict,
                                  "shared_classes": list},
                      "class_names": list, "model_class_names": list}
EVAL_FAILURE_SCHEMA = {"eval_id": str, "error_type": str, "message": str, "attempts": int, "time": (int, float)}


@lru_cache(maxsize=None)
def eval_code_version(method: str) -> str:
    """The code version of ``method``'s evaluations: the normalised source of what evaluates
    (:mod:`harness.run.evaluate` and everything it reaches: the runner's ``predict``, the loaders,
    the model's family), as :func:`harness.run.codeversion.code_version` hashes a cell's."""
    from harness.run.codeversion import model_module, source_version

    return source_version((EVAL_MODULE, model_module(method)))


@dataclass(frozen=True)
class Evaluation:
    """One trained cell tested on one target. Plain data: it pickles and serialises to JSON."""

    cell_id: str  # the trained cell
    method: str
    scale: str
    dataset: str  # the target's loader
    protocol: str | None
    data: dict[str, Any]  # data.* knobs the target is read with
    fingerprint: str  # the target data's
    code_version: str  # of what evaluates (eval_code_version)
    synthetic: bool
    data_root: str  # where the target lives now; not hashed, the fingerprint stands for the content
    target: str = ""  # the target's key in the spec (a folder name); not hashed

    def identity(self) -> dict[str, Any]:
        """Everything that determines the result (the hashed part)."""
        d = dataclasses.asdict(self)
        d.pop("data_root")
        d.pop("target")
        return d

    @property
    def id(self) -> str:
        """Content hash of :meth:`identity`."""
        return short_hash({"evaluation": self.identity()})

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form, with ``id``."""
        return {**dataclasses.asdict(self), "id": self.id}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Evaluation":
        """Inverse of :meth:`to_dict`."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def eval_slot(cell_id: str, dataset: str, protocol: str | None, data: dict[str, Any]) -> str:
    """What an evaluation asks for, whatever the code version or the target data's fingerprint: two
    evaluations with one slot and different ids are the same test by other code or on changed data."""
    return canonical_json({"cell_id": cell_id, "dataset": dataset, "protocol": protocol, "data": data})


def target_knobs(cell_data: dict[str, Any]) -> dict[str, Any]:
    """The data.* knobs a target is read with: the trained cell's, less those of its training split."""
    return {k: v for k, v in cell_data.items() if k not in TARGET_ONLY_KNOBS}


@dataclass(frozen=True)
class PlannedEval:
    """An evaluation as it appears in a table: which row, trained on which column, tested on which target."""

    table_id: str
    row: str
    row_index: int
    dataset: str  # the column the cell trained on
    target: str  # the eval_on target's key
    target_label: str
    seed: int
    evaluation: Evaluation = field(compare=False)


def plan_evaluations(spec: Any, planned: list[PlannedCell], source: Any) -> list[PlannedEval]:
    """The evaluations of ``planned`` cells on their columns' ``eval_on`` targets.

    Each target is resolved as a column is (:func:`harness.run.plan._resolve_dataset`): its folder
    under the data root (or its synthetic stand-in, generated unless ``source.dry_run``), loader,
    protocol and fingerprint, so a missing target folder is refused before anything runs.
    """
    from harness.run.plan import _resolve_dataset

    columns = {c.key: c for c in spec.datasets}
    out: list[PlannedEval] = []
    for p in planned:
        for t in spec.eval_targets(columns[p.dataset]):
            cell = p.cell
            knobs = target_knobs(cell.data)
            try:
                root, fingerprint, synthetic = _resolve_dataset(source, t.key, t.loader, t.protocol, cell.scale,
                                                                tuple(sorted(knobs.items())))
            except UserError as err:
                raise UserError(f"{spec.path}: column {p.dataset!r}: eval_on {t.key!r}: {err}") from None
            ev = Evaluation(cell_id=cell.id, method=cell.method, scale=cell.scale, dataset=t.loader,
                            protocol=t.protocol, data=knobs, fingerprint=fingerprint,
                            code_version=eval_code_version(cell.method), synthetic=synthetic, data_root=root,
                            target=t.key)
            out.append(PlannedEval(spec.id, p.row, p.row_index, p.dataset, t.key, t.label or t.key, p.seed, ev))
    return out


def cross_metrics(logits: np.ndarray, y_true: np.ndarray, model_classes: list[str],
                  target_classes: list[str]) -> tuple[dict[str, Any], np.ndarray]:
    """Metrics of a model's logits on a target's test split, through the class names.

    ``logits``: [N, C_model] in the model's class order; ``y_true``: [N] indices into
    ``target_classes``. The prediction is the model's argmax mapped to the target's index, -1 when
    the target has no such class; a target class the model lacks can never be predicted. So every
    image of a class the model cannot predict, and every prediction of a class the target lacks,
    is an error of ``accuracy`` (in %, over all N images).

    ``shared_accuracy`` (%) counts only the images whose class the model knows, each predicted by
    the argmax over the shared classes' logits: the accuracy on the common label space (None when
    no image has a shared class). Returns ``(metrics, y_pred [N])``.
    """
    to_target = np.array([target_classes.index(c) if c in target_classes else -1 for c in model_classes])
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = to_target[np.asarray(logits).argmax(1)]  # [N]
    shared = [c for c in target_classes if c in model_classes]
    shared_cols = np.array([model_classes.index(c) for c in shared], dtype=np.int64)  # [S]
    shared_target = np.array([target_classes.index(c) for c in shared], dtype=np.int64)  # [S]
    mask = np.isin(y_true, shared_target)  # [N] images of a class the model knows
    shared_pred = shared_target[np.asarray(logits)[:, shared_cols].argmax(1)] if len(shared) else y_pred
    per_class = {}
    for i, name in enumerate(target_classes):
        of = y_true == i
        per_class[name] = float((y_pred[of] == i).mean() * 100) if of.any() else None
    known = [v for v in per_class.values() if v is not None]
    metrics = {
        "accuracy": float((y_pred == y_true).mean() * 100) if len(y_true) else 0.0,
        "shared_accuracy": float((shared_pred[mask] == y_true[mask]).mean() * 100) if mask.any() else None,
        "mean_class_accuracy": float(np.mean(known)) if known else 0.0,
        "per_class_accuracy": per_class,
        "shared_classes": shared,
        "target_only_classes": [c for c in target_classes if c not in model_classes],  # always errors
        "model_only_classes": [c for c in model_classes if c not in target_classes],  # predicting one is an error
        "n_test": int(len(y_true)), "n_shared": int(mask.sum()),
    }
    return metrics, y_pred


class EvalStore:
    """Reads and writes of the evaluations under a results folder (``<results>/evals/``)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def eval_dir(self, eval_id: str) -> Path:
        """The folder of one evaluation."""
        return self.root / "evals" / eval_id

    def eval_ids(self) -> list[str]:
        """Every evaluation that has a folder."""
        d = self.root / "evals"
        return sorted(p.name for p in d.iterdir() if p.is_dir()) if d.is_dir() else []

    def write_config(self, ev: Evaluation) -> None:
        """Record an evaluation's config (idempotent)."""
        path = self.eval_dir(ev.id) / "eval.json"
        if not path.exists():
            atomic_write_json(path, ev.to_dict())

    def config(self, eval_id: str) -> dict[str, Any] | None:
        """The config of an evaluation, if known and well-formed (a malformed one is moved aside)."""
        return read_valid_json(self.eval_dir(eval_id) / "eval.json", EVAL_CONFIG_SCHEMA,
                               lambda c: None if c["id"] == eval_id else f"its id {c['id']!r} is not its folder's")

    def configs(self) -> list[dict[str, Any]]:
        """Every well-formed evaluation config in the store, newest first."""
        paths = sorted((self.root / "evals").glob("*/eval.json"), key=_mtime, reverse=True)
        return [c for p in paths if (c := self.config(p.parent.name)) is not None]

    def write_result(self, eval_id: str, record: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        """Write the predictions, then the record that points at them with their checksum."""
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        blob = buf.getvalue()
        d = self.eval_dir(eval_id)
        atomic_write_bytes(d / "predictions.npz", blob)
        atomic_write_json(d / "record.json", {**record, "schema": EVAL_SCHEMA_VERSION, "eval_id": eval_id,
                                              "predictions": {"file": "predictions.npz",
                                                              "sha256": hashlib.sha256(blob).hexdigest()}})
        (d / "failure.json").unlink(missing_ok=True)

    def record(self, eval_id: str) -> dict[str, Any] | None:
        """The valid record of an evaluation, or None (a malformed or corrupt one is moved aside)."""
        d = self.eval_dir(eval_id)

        def predictions_match(rec: dict[str, Any]) -> str | None:
            if rec["schema"] != EVAL_SCHEMA_VERSION:
                return f"schema {rec['schema']} != {EVAL_SCHEMA_VERSION}"
            if rec["eval_id"] != eval_id:
                return f"its eval_id {rec['eval_id']!r} is not its folder's"
            if file_sha256(d / rec["predictions"]["file"]) != rec["predictions"]["sha256"]:
                return f"{rec['predictions']['file']} is missing or does not match its checksum"
            return None

        return read_valid_json(d / "record.json", EVAL_RECORD_SCHEMA, predictions_match)

    def predictions(self, eval_id: str) -> dict[str, np.ndarray]:
        """The per-sample arrays of an evaluation with a valid record."""
        with np.load(self.eval_dir(eval_id) / "predictions.npz") as z:
            return {k: z[k] for k in z.files}

    def record_failure(self, eval_id: str, *, error_type: str, message: str) -> dict[str, Any]:
        """Note a failed attempt (the count accumulates across invocations)."""
        prev = self.failure(eval_id) or {}
        entry = {"eval_id": eval_id, "error_type": error_type, "message": message[-2000:],
                 "attempts": int(prev.get("attempts", 0)) + 1, "time": time.time()}
        atomic_write_json(self.eval_dir(eval_id) / "failure.json", entry)
        return entry

    def failure(self, eval_id: str) -> dict[str, Any] | None:
        """The last failure of an evaluation without a valid record since, if any."""
        return read_valid_json(self.eval_dir(eval_id) / "failure.json", EVAL_FAILURE_SCHEMA)


def _mtime(p: Path) -> float:
    try:
        return p.stat().st_mtime
    except OSError:  # moved aside meanwhile
        return 0.0
