"""Run cross-dataset evaluations (:mod:`harness.run.evals`): a stored cell's model on a target's test split.

The model is the cell's own (its selected weights, :func:`harness.run.cellmodel.load_cell_model`);
the target's test split is decoded at the cell's ``img_size`` and passes through the cell's
evaluation transform, batch size and mixed precision (the runner's :func:`predict`), so an
evaluation on the cell's own dataset would reproduce its test predictions.

Evaluations run in the process that calls :func:`run_evaluations` (``reproduce`` runs them once
the cells they need have records), one after another: each is one forward pass over a test split.
"""
from __future__ import annotations

import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

from harness.run.evals import EvalStore, Evaluation, cross_metrics
from harness.store import Store


class TargetChanged(RuntimeError):
    """The target's data is not what the evaluation was planned on (its fingerprint differs)."""


def evaluate(ev: Evaluation, store: Store, *, threads: int = 1, device: str = "auto") -> dict[str, Any]:
    """Test the cell ``ev.cell_id`` on ``ev``'s target and write the evaluation's record; return it."""
    import numpy as np
    import torch

    from harness.data import build_transform, load_dataset
    from harness.run.cellmodel import load_cell_model
    from harness.run.devices import amp_dtype, resolve_device
    from harness.run.train.runner import predict, provenance
    from methods.interface import set_progress

    t0 = time.time()
    torch.set_num_threads(threads)
    dev = resolve_device(device)
    loaded = load_cell_model(store, ev.cell_id)
    recipe = loaded.record["recipe"]
    data = load_dataset(ev.dataset, ev.data_root, protocol=ev.protocol, decode_size=recipe["img_size"],
                        split_seed=0, skip_bad=bool(ev.data.get("skip_bad", False)))
    if data.fingerprint != ev.fingerprint:
        raise TargetChanged(f"{ev.dataset} at {ev.data_root} changed since the evaluation was planned "
                            f"(fingerprint {data.fingerprint} != {ev.fingerprint}); plan the table again")
    transform = build_transform(recipe["augment"], recipe["img_size"], train=False, mean=tuple(recipe["mean"]),
                                std=tuple(recipe["std"]))
    amp = amp_dtype(recipe.get("amp", "auto"), dev)
    model = loaded.model.to(dev)
    set_progress(model, 1.0)  # tested as the runner tests: at the end of any keep schedule
    logits, y_true = predict(model, data.splits["test"], transform, recipe["batch_size"] * 2, device=dev, amp=amp)
    model_classes = list(loaded.record["class_names"])
    metrics, y_pred = cross_metrics(logits, y_true, model_classes, list(data.class_names))
    record = {
        "evaluation": ev.to_dict(),
        "metrics": metrics,
        "class_names": list(data.class_names),
        "model_class_names": model_classes,
        "trained": {"cell_id": ev.cell_id, "dataset": loaded.cell.dataset, "protocol": loaded.cell.protocol,
                    "accuracy": loaded.record["metrics"]["accuracy"], "synthetic": loaded.record["data"]["synthetic"]},
        "data": {"fingerprint": data.fingerprint, "synthetic": data.synthetic, "split_info": data.split_info,
                 "sizes": {k: len(v.labels) for k, v in data.splits.items()}, "skipped": data.skipped},
        "timing": {"eval_s": time.time() - t0, "finished_at": time.time()},
        "provenance": {**provenance(threads, dev, amp), "dataset_fingerprint": data.fingerprint},
    }
    EvalStore(store.root).write_result(ev.id, record, {"y_true": y_true.astype(np.int16),
                                                       "y_pred": y_pred.astype(np.int16)})
    return record


@dataclass
class EvalSummary:
    """What one invocation did with its evaluations."""

    done: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    skipped_failed: list[str] = field(default_factory=list)
    no_cell: list[str] = field(default_factory=list)  # their trained cell has no record (failed or not run)

    def line(self) -> str:
        """One-line human summary."""
        parts = [f"{len(self.done)} done", f"{len(self.cached)} cached", f"{len(self.failed)} failed"]
        if self.skipped_failed:
            parts.append(f"{len(self.skipped_failed)} failed earlier (use --retry-failed)")
        if self.no_cell:
            parts.append(f"{len(self.no_cell)} without a trained cell")
        return ", ".join(parts)


def run_evaluations(evals: list[Evaluation], store: Store, *, threads: int = 1, device: str = "auto",
                    retry_failed: bool = False) -> EvalSummary:
    """Compute every evaluation of ``evals`` that lacks a valid record and whose cell has one.

    A failing evaluation is noted (``evals/<id>/failure.json``) and the others go on; it is tried
    again with ``retry_failed``. Two invocations may compute the same evaluation at once: both write
    the same result atomically, so the store stays whole.
    """
    estore = EvalStore(store.root)
    summary = EvalSummary()
    for ev in {e.id: e for e in evals}.values():
        estore.write_config(ev)
        if estore.record(ev.id) is not None:
            summary.cached.append(ev.id)
        elif store.record(ev.cell_id) is None:
            summary.no_cell.append(ev.id)
        elif estore.failure(ev.id) is not None and not retry_failed:
            summary.skipped_failed.append(ev.id)
        else:
            try:
                evaluate(ev, store, threads=threads, device=device)
                summary.done.append(ev.id)
            except Exception as err:
                traceback.print_exc(file=sys.stderr)
                estore.record_failure(ev.id, error_type=type(err).__name__, message=str(err))
                summary.failed.append(ev.id)
                print(f"evaluation {ev.id} (cell {ev.cell_id} on {ev.target or ev.dataset}) failed "
                      f"({type(err).__name__}: {str(err)[:160]})", file=sys.stderr)
    return summary
