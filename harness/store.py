"""Results on disk: atomic records, per-cell claims, the failure ledger, checkpoints.

Layout under the results directory (``results/`` by default, ``$FERBENCH_RESULTS`` or
``--results`` to move it)::

    cells/<cell id>/cell.json         the resolved config (written when the cell is planned)
    cells/<cell id>/record.json       the result: metrics, costs, provenance (atomic, last written)
    cells/<cell id>/predictions.npz   per-sample test labels, predictions and logits
    cells/<cell id>/<key>.pt          what a pre-training stage hands on (``weights.ir50.pt``, ...)
    cells/<cell id>/checkpoint.pt     per-epoch training state, removed once the record exists
    cells/<cell id>/claim.json        who is computing the cell now (created with O_EXCL)
    cells/<cell id>/failure.json      the ledger entry of the last failure, with an attempt count
    cells/<cell id>/progress.json     the worker's pid and epoch while it trains
    logs/                             executor logs (submitit folders)

Every file is written to a temporary name and renamed, so a reader sees all of it or none. A
record is valid only when it parses, has this schema version and the checksum of its predictions
file matches; anything else is treated as missing (and moved aside), so its cell runs again.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np

SCHEMA_VERSION = 1


def default_results_dir() -> Path:
    """``$FERBENCH_RESULTS`` or ``results/`` in the current directory."""
    return Path(os.environ.get("FERBENCH_RESULTS", "results"))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same directory and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON."""
    atomic_write_bytes(path, json.dumps(obj, indent=1, sort_keys=True, default=str).encode())


_DIGESTS: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path) -> str | None:
    """SHA-256 of a file, or None if it cannot be read; cached while its size and mtime hold."""
    try:
        st = path.stat()
        key = (str(path), st.st_size, st.st_mtime_ns)
        if key not in _DIGESTS:
            h = hashlib.sha256()
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            _DIGESTS[key] = h.hexdigest()
        return _DIGESTS[key]
    except OSError:
        return None


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def slurm_job_alive(job_id: str) -> bool:
    """Whether SLURM still knows the job as pending or running (squeue works without accounting)."""
    try:
        out = subprocess.run(["squeue", "-h", "-j", str(job_id), "-o", "%T"], capture_output=True,
                             text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return True  # can't tell: keep the claim rather than compute the cell twice
    return out.returncode == 0 and bool(out.stdout.strip())


class Store:
    """All reads and writes of one results directory."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        (self.root / "cells").mkdir(parents=True, exist_ok=True)

    # -- paths -----------------------------------------------------------------------------
    def cell_dir(self, cell_id: str) -> Path:
        """The directory of one cell."""
        return self.root / "cells" / cell_id

    def checkpoint_path(self, cell_id: str) -> Path:
        """Where the runner keeps the per-epoch training state of a cell."""
        return self.cell_dir(cell_id) / "checkpoint.pt"

    @property
    def log_dir(self) -> Path:
        """Executor logs."""
        return self.root / "logs"

    def cell_ids(self) -> list[str]:
        """Every cell that has a directory."""
        return sorted(p.name for p in (self.root / "cells").iterdir() if p.is_dir())

    # -- configs and records ---------------------------------------------------------------
    def write_cell(self, cell: dict[str, Any]) -> None:
        """Record a cell's resolved config (idempotent)."""
        path = self.cell_dir(cell["id"]) / "cell.json"
        if not path.exists():
            atomic_write_json(path, cell)

    def cell(self, cell_id: str) -> dict[str, Any] | None:
        """The resolved config of a cell, if known."""
        return _read_json(self.cell_dir(cell_id) / "cell.json")

    def write_result(self, cell_id: str, record: dict[str, Any], arrays: dict[str, np.ndarray],
                     artifacts: dict[str, bytes] | None = None) -> None:
        """Write predictions and artifacts (a stage's weights), then the record that points at
        them, with their checksums; the record lands last."""
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        blob = buf.getvalue()
        d = self.cell_dir(cell_id)
        atomic_write_bytes(d / "predictions.npz", blob)
        files = {}
        for key, data in (artifacts or {}).items():
            atomic_write_bytes(d / f"{key}.pt", data)
            files[key] = {"file": f"{key}.pt", "sha256": hashlib.sha256(data).hexdigest()}
        record = {**record, "schema": SCHEMA_VERSION, "cell_id": cell_id, "artifacts": files,
                  "predictions": {"file": "predictions.npz", "sha256": hashlib.sha256(blob).hexdigest()}}
        atomic_write_json(d / "record.json", record)
        (d / "failure.json").unlink(missing_ok=True)
        self.checkpoint_path(cell_id).unlink(missing_ok=True)
        (d / "progress.json").unlink(missing_ok=True)

    def record(self, cell_id: str) -> dict[str, Any] | None:
        """The valid record of a cell, or None. A corrupt record is moved aside and reported."""
        d = self.cell_dir(cell_id)
        path = d / "record.json"
        if not path.exists():
            return None
        rec = _read_json(path)
        problem = None
        if rec is None:
            problem = "record.json does not parse"
        elif rec.get("schema") != SCHEMA_VERSION:
            problem = f"schema {rec.get('schema')} != {SCHEMA_VERSION}"
        else:
            files = [rec.get("predictions", {}), *rec.get("artifacts", {}).values()]
            for f in files:
                if file_sha256(d / f.get("file", "predictions.npz")) != f.get("sha256"):
                    problem = f"{f.get('file')} is missing or does not match its checksum"
                    break
        if problem:
            path.rename(d / f"record.json.corrupt-{int(time.time() * 1e6)}")
            return None
        return rec

    def predictions(self, cell_id: str) -> dict[str, np.ndarray]:
        """The per-sample arrays of a cell with a valid record."""
        with np.load(self.cell_dir(cell_id) / "predictions.npz") as z:
            return {k: z[k] for k in z.files}

    def corrupt_files(self, cell_id: str) -> list[Path]:
        """Records that were found corrupt and moved aside."""
        return sorted(self.cell_dir(cell_id).glob("record.json.corrupt-*"))

    def iter_records(self) -> Iterator[dict[str, Any]]:
        """Every valid record in the store (used to find stale results)."""
        for cid in self.cell_ids():
            if (self.cell_dir(cid) / "record.json").exists():
                rec = self.record(cid)
                if rec is not None:
                    yield rec

    # -- claims ----------------------------------------------------------------------------
    def claim(self, cell_id: str, owner: dict[str, Any]) -> bool:
        """Atomically claim a cell for computing; False when someone alive holds it."""
        path = self.cell_dir(cell_id) / "claim.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        owner = {**owner, "host": socket.gethostname(), "time": time.time()}
        for _ in range(2):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if self.claim_alive(cell_id):
                    return False
                try:  # break a dead claim; the rename is atomic, so only one breaker wins
                    path.rename(path.with_name(f"claim.broken-{os.getpid()}-{time.time_ns()}"))
                except FileNotFoundError:
                    pass
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(owner, f)
            return True
        return False

    def claim_owner(self, cell_id: str) -> dict[str, Any] | None:
        """Who holds the claim on a cell, if anyone."""
        return _read_json(self.cell_dir(cell_id) / "claim.json")

    def update_claim(self, cell_id: str, **fields: Any) -> None:
        """Add fields (a SLURM job id, say) to a claim this process holds."""
        owner = self.claim_owner(cell_id) or {}
        atomic_write_json(self.cell_dir(cell_id) / "claim.json", {**owner, **fields})

    def claim_alive(self, cell_id: str) -> bool:
        """A claim is alive while its SLURM job is queued or its owning process runs."""
        owner = self.claim_owner(cell_id)
        if owner is None:
            return (self.cell_dir(cell_id) / "claim.json").exists()  # being written right now
        if owner.get("slurm_job_id"):
            return slurm_job_alive(owner["slurm_job_id"])
        if owner.get("host") != socket.gethostname():
            return True  # another machine's process: can't check, don't steal
        return pid_alive(int(owner.get("pid", -1)))

    def release(self, cell_id: str) -> None:
        """Drop this process's claim."""
        (self.cell_dir(cell_id) / "claim.json").unlink(missing_ok=True)

    # -- failures --------------------------------------------------------------------------
    def record_failure(self, cell_id: str, *, error_type: str, message: str, traceback_tail: str,
                       log_path: str | None) -> dict[str, Any]:
        """Add a failure to the ledger; the attempt count accumulates across invocations."""
        prev = self.failure(cell_id) or {}
        entry = {"cell_id": cell_id, "error_type": error_type, "message": message[-2000:],
                 "traceback_tail": traceback_tail[-4000:], "log_path": log_path,
                 "attempts": int(prev.get("attempts", 0)) + 1, "time": time.time()}
        atomic_write_json(self.cell_dir(cell_id) / "failure.json", entry)
        return entry

    def failure(self, cell_id: str) -> dict[str, Any] | None:
        """The ledger entry of a cell, if it failed and has no valid record since."""
        return _read_json(self.cell_dir(cell_id) / "failure.json")

    def ledger(self) -> list[dict[str, Any]]:
        """Every failure entry in the store."""
        return [f for cid in self.cell_ids() if (f := self.failure(cid)) is not None]

    def write_progress(self, cell_id: str, **fields: Any) -> None:
        """The worker's heartbeat: pid, epoch, time."""
        atomic_write_json(self.cell_dir(cell_id) / "progress.json",
                          {**fields, "pid": os.getpid(), "time": time.time()})

    def progress(self, cell_id: str) -> dict[str, Any] | None:
        """The last heartbeat of a running cell."""
        return _read_json(self.cell_dir(cell_id) / "progress.json")
