"""A work queue in a directory, and the worker that drains it.

The local executor does not start one process per cell: importing torch, timm and the harness
costs seconds, which would be a large share of a tiny cell. Instead it starts ``max_parallel``
workers, each a submitit job that takes cells from this queue until it is empty.

Layout: ``pending/<order>-<cell id>.json`` -> ``held/<slot>/...`` (taken by worker ``slot``) ->
``done/...``. Every move is an atomic ``rename``, so two workers never take the same item. A
worker that is preempted keeps its held item; when submitit requeues it, it resumes that item
first (from the cell's epoch checkpoint).
"""
from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import submitit

from harness.run.cells import Cell
from harness.run.train.runner import run_and_record
from harness.store import Store


class WorkQueue:
    """Pending, held and done items of one invocation."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        for d in ("pending", "held", "done"):
            (self.root / d).mkdir(parents=True, exist_ok=True)

    def put(self, order: int, cell: dict[str, Any]) -> None:
        """Add a cell; lower ``order`` is taken first."""
        tmp = self.root / f".{cell['id']}.tmp"
        tmp.write_text(json.dumps(cell))
        os.replace(tmp, self.root / "pending" / f"{order:06d}-{cell['id']}.json")

    def take(self, slot: int) -> Path | None:
        """Move the first pending item to ``held/<slot>``; None when nothing is pending."""
        dest = self.root / "held" / str(slot)
        dest.mkdir(exist_ok=True)
        while items := sorted((self.root / "pending").glob("*.json")):
            for item in items:
                try:
                    item.rename(dest / item.name)
                except FileNotFoundError:
                    continue  # another worker took it first, or the driver renamed it (reorder)
                return dest / item.name
        return None

    def reorder(self, cell_ids: list[str]) -> None:
        """Renumber the pending items so that they are taken in the order of ``cell_ids``.

        Ids not pending (taken meanwhile) are skipped; pending items not named keep their number.
        """
        pending = {self.cell_id(p): p for p in (self.root / "pending").glob("*.json")}
        for order, cid in enumerate(cell_ids):
            item = pending.get(cid)
            if item is None or item.name == f"{order:06d}-{cid}.json":
                continue
            try:
                item.rename(item.with_name(f"{order:06d}-{cid}.json"))
            except FileNotFoundError:
                pass  # a worker took it first

    def held(self, slot: int) -> list[Path]:
        """Items worker ``slot`` took and has not finished."""
        return sorted((self.root / "held" / str(slot)).glob("*.json"))

    def finish(self, item: Path) -> None:
        """Mark an item done, whatever its outcome (the store has the record or the failure)."""
        item.rename(self.root / "done" / item.name)

    def requeue(self, item: Path) -> None:
        """Put a done item back in pending (an automatic retry)."""
        item.rename(self.root / "pending" / item.name)

    def pending(self) -> int:
        """How many items wait for a worker."""
        return sum(1 for _ in (self.root / "pending").glob("*.json"))

    def done(self) -> list[Path]:
        """Finished items."""
        return sorted((self.root / "done").glob("*.json"))

    @staticmethod
    def cell_id(item: Path) -> str:
        """The cell id an item stands for."""
        return item.stem.split("-", 1)[1]


class QueueWorker(submitit.helpers.Checkpointable):
    """``QueueWorker()(queue_dir, results_dir, slot, threads, device, max_cells)``: run cells until the
    queue is empty, or ``max_cells`` of them (0: no limit).

    With several GPUs and ``device`` auto or cuda, worker ``slot`` trains on its own GPU
    (:func:`harness.run.devices.worker_device`).

    Preemption or timeout re-submits the same call (submitit's checkpointing); the new process
    resumes its held item first, and the cell resumes from its last epoch checkpoint.
    """

    def __call__(self, queue_dir: str, results_dir: str, slot: int, threads: int = 1, device: str = "auto",
                 max_cells: int = 0) -> int:
        from harness.run.devices import worker_device

        if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:  # a local worker: the driver stops it with SIGINT
            signal.signal(signal.SIGINT, signal.default_int_handler)
        queue, store = WorkQueue(queue_dir), Store(results_dir)
        n = 0
        while True:
            held = queue.held(slot)
            item = held[0] if held else (None if max_cells and n >= max_cells else queue.take(slot))
            if item is None:
                return n
            run_and_record(Cell.from_dict(json.loads(item.read_text())), store, threads=threads,
                           device=worker_device(device, slot))
            queue.finish(item)
            n += 1
