"""Results on disk: atomic records, per-cell claims, the failure ledger, checkpoints.

Layout under the results directory (``results/`` by default, ``$FERBENCH_RESULTS`` or
``--results`` to move it)::

    cells/<cell id>/cell.json         the resolved config (written when the cell is planned)
    cells/<cell id>/record.json       the result: metrics, costs, provenance (atomic, last written)
    cells/<cell id>/predictions.npz   per-sample test labels, predictions and logits
    cells/<cell id>/<key>.pt          what a pre-training stage hands on (``weights.ir50.pt``, ...)
    cells/<cell id>/model.pt          the model's selected weights (best validation epoch): ``predict``
    cells/<cell id>/checkpoint.pt     per-epoch training state, removed once the record exists
    cells/<cell id>/checkpoint.prev.pt  the epoch before it (a fallback if the last one is corrupt)
    cells/<cell id>/claim.json        who is computing the cell now (created with O_EXCL): the
                                      invocation's pid and host, and the pids of its local workers
    cells/<cell id>/failure.json      the ledger entry of the last failure, with an attempt count
    cells/<cell id>/progress.json     the worker's heartbeat while it trains: pid, host, epoch, step, time
    cells/<cell id>/history.jsonl     one line per training start, discarded checkpoint, finish
    cells/<cell id>/tensorboard/      TensorBoard event files: the training curves, per epoch
                                      (written by :mod:`harness.run.tracking`, not by the store)
    runs/<table id>.json              the last ``reproduce`` invocation of a table (overrides, seeds, columns)
    logs/                             executor logs (submitit folders)

Every file is written to a temporary name and renamed, so a reader sees all of it or none. Every
file the store reads is validated: one that does not parse or lacks what its readers need is
moved aside (``<name>.corrupt-<time>``) with a warning and treated as missing, so its cell runs
again; a record is valid only when, in addition, the checksum of its predictions file matches.
"""
from __future__ import annotations

import errno
import hashlib
import io
import json
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import numpy as np

from harness.errors import UserError, env

SCHEMA_VERSION = 1
STALL_S = 600.0  # a running worker silent for longer (no heartbeat) is reported as stalled
CLAIM_GRACE_S = 10.0  # an unreadable claim younger than this may be being written right now
MIN_FREE_BYTES = 64 * 2**20  # below this, a store is "full" before anything trains
log = logging.getLogger("ferbench.store")
T = TypeVar("T")

_NUM = (int, float)
# What each JSON file must hold for its readers (key -> type or nested spec); extra keys are fine.
CELL_SCHEMA = {"id": str, "method": str, "model": dict, "train": dict, "data": dict, "dataset": str,
               "protocol": (str, type(None)), "scale": str, "seed": int, "code_version": str, "synthetic": bool, "fingerprint": str}
RECORD_SCHEMA = {"schema": int, "cell_id": str, "cell": CELL_SCHEMA,
                 "predictions": {"file": str, "sha256": str},
                 "metrics": {"accuracy": _NUM, "mean_class_accuracy": _NUM, "per_class_accuracy": dict,
                             "confusion": (list, type(None))},  # None for a face-ID stage's 400 classes
                 "class_names": list, "data": {"synthetic": bool},
                 "timing": {"train_s": _NUM, "eval_s": _NUM, "epochs": int, "steps": int, "final_train_loss": _NUM},
                 "provenance": dict}
FAILURE_SCHEMA = {"cell_id": str, "error_type": str, "message": str, "attempts": int, "time": _NUM}
CLAIM_SCHEMA = {"pid": int, "host": str}
PROGRESS_SCHEMA = {"epoch": int, "epochs": int, "pid": int}
MODEL_WEIGHTS = "model.pt"  # a cell's selected weights, a state dict
INVOCATION_SCHEMA = {"table": str, "set": dict, "seeds": (int, type(None)), "scale": str}


def schema_problem(obj: Any, schema: dict[str, Any], where: str = "") -> str | None:
    """The first way ``obj`` does not fit ``schema`` (key -> type, tuple of types or nested dict)."""
    if not isinstance(obj, dict):
        return f"{where or 'the file'} is a {type(obj).__name__}, not a mapping"
    for key, want in schema.items():
        if key not in obj:
            return f"{where}{key} is missing"
        if isinstance(want, dict):
            problem = schema_problem(obj[key], want, f"{where}{key}.")
            if problem:
                return problem
        elif isinstance(obj[key], bool) and want in (int, _NUM):
            return f"{where}{key} is not a number"
        elif not isinstance(obj[key], want):
            return f"{where}{key} has the wrong type ({type(obj[key]).__name__})"
    return None


def default_results_dir() -> Path:
    """``$FERBENCH_RESULTS`` or ``results/`` in the current directory."""
    return Path(env("FERBENCH_RESULTS", "results"))


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


def move_aside(path: Path, problem: str) -> Path | None:
    """Rename a malformed file to ``<name>.corrupt-<time>`` and warn; None if it is already gone."""
    dest = path.with_name(f"{path.name}.corrupt-{time.time_ns() // 1000}")
    try:
        path.rename(dest)
    except FileNotFoundError:
        return None
    except OSError as err:
        log.warning("%s: %s; could not move it aside (%s), ignoring it", path, problem, err)
        return None
    log.warning("%s: %s; moved aside to %s, treated as missing", path, problem, dest.name)
    return dest


def read_valid_json(path: Path, schema: dict[str, Any], check: Callable[[dict], str | None] | None = None,
                    *, grace_s: float = 0.0) -> dict[str, Any] | None:
    """Read a JSON file the store wrote; a malformed one is moved aside with a warning (None).

    ``grace_s``: a malformed file younger than this is left alone (it may be being written by a
    process that created it with O_EXCL, as claims are) and None is returned.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as err:
        log.warning("%s: cannot be read (%s); treated as missing", path, err)
        return None
    try:
        obj = json.loads(raw)
        problem = schema_problem(obj, schema) or (check(obj) if check else None)
    except (ValueError, UnicodeDecodeError) as err:
        obj, problem = None, f"does not parse ({type(err).__name__})"
    if problem is None:
        return obj
    try:
        if grace_s and time.time() - path.stat().st_mtime < grace_s:
            return None
        if path.read_bytes() != raw:  # replaced meanwhile (renames are atomic): read the new one
            return read_valid_json(path, schema, check, grace_s=grace_s)
    except FileNotFoundError:
        return None
    move_aside(path, problem)
    return None


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host (a zombie counts as gone)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _event(event: str, **fields: Any) -> dict[str, Any]:
    """One line of a cell's training log."""
    return {"event": event, "pid": os.getpid(), "host": socket.gethostname(), "time": time.time(), **fields}


def process_start(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot, ``/proc/<pid>/stat``), or None where there
    is no ``/proc``: with the pid it names one process, so a reused pid is not taken for its owner."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def process_alive(pid: Any, start: Any = None) -> bool:
    """Whether ``pid`` runs on this host and, when ``start`` is known, is the process that started then."""
    if not isinstance(pid, int) or not pid_alive(pid):
        return False
    return start is None or process_start(pid) in (None, start)


def slurm_job_alive(job_id: str) -> bool:
    """Whether SLURM still knows the job as pending or running (squeue works without accounting)."""
    try:
        out = subprocess.run(["squeue", "-h", "-j", str(job_id), "-o", "%T"], capture_output=True,
                             text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return True  # can't tell: keep the claim rather than compute the cell twice
    return out.returncode == 0 and bool(out.stdout.strip())


class Store:
    """All reads and writes of one results directory.

    ``create=False`` (the read-only commands) never creates the directory: a store that does not
    exist is a :class:`UserError`.
    """

    def __init__(self, root: Path | str, *, create: bool = True) -> None:
        self.root = Path(root)
        if not create:
            if not self.root.is_dir():
                raise UserError(f"results folder {self.root} does not exist (nothing has run there yet; "
                                "check --results or $FERBENCH_RESULTS)")
            return
        try:
            (self.root / "cells").mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise UserError(f"results folder {self.root} cannot be created: {err.strerror or err}") from None

    def check_writable(self, min_free_bytes: int | None = None) -> None:
        """Fail with one clear error, before anything trains, when results could not be written."""
        probe = self.root / "cells" / f".write-test-{os.getpid()}"
        try:
            atomic_write_bytes(probe, b"x" * 4096)
            probe.unlink()
        except OSError as err:
            if err.errno == errno.ENOSPC:
                raise UserError(f"results folder {self.root} is on a full disk; nothing was run") from None
            raise UserError(f"results folder {self.root} is not writable ({err.strerror or err}); "
                            "nothing was run. Fix its permissions or pass --results DIR") from None
        free = shutil.disk_usage(self.root).free
        min_free_bytes = MIN_FREE_BYTES if min_free_bytes is None else min_free_bytes
        if free < min_free_bytes:
            raise UserError(f"results folder {self.root} is on a full disk ({free / 2**20:.0f} MiB free, "
                            f"{min_free_bytes / 2**20:.0f} MiB needed); nothing was run") from None

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
        cells = self.root / "cells"
        return sorted(p.name for p in cells.iterdir() if p.is_dir()) if cells.is_dir() else []

    # -- configs and records ---------------------------------------------------------------
    def write_cell(self, cell: dict[str, Any]) -> None:
        """Record a cell's resolved config (idempotent)."""
        path = self.cell_dir(cell["id"]) / "cell.json"
        if not path.exists():
            atomic_write_json(path, cell)

    def cell(self, cell_id: str) -> dict[str, Any] | None:
        """The resolved config of a cell, if known and well-formed (else moved aside: None)."""
        return read_valid_json(self.cell_dir(cell_id) / "cell.json", CELL_SCHEMA,
                               lambda c: None if c["id"] == cell_id else f"its id {c['id']!r} is not its folder's")

    def write_result(self, cell_id: str, record: dict[str, Any], arrays: dict[str, np.ndarray],
                     artifacts: dict[str, bytes] | None = None, weights: bytes | None = None) -> None:
        """Write predictions, artifacts (a stage's weights) and the model's selected weights, then
        the record that points at them, with their checksums; the record lands last.

        The weights (``model.pt``) are checked by their reader (``predict``), not on every read of
        the record: a paper-scale model is hundreds of MB, and status and collect read every record."""
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        blob = buf.getvalue()
        d = self.cell_dir(cell_id)
        atomic_write_bytes(d / "predictions.npz", blob)
        files = {}
        for key, data in (artifacts or {}).items():
            atomic_write_bytes(d / f"{key}.pt", data)
            files[key] = {"file": f"{key}.pt", "sha256": hashlib.sha256(data).hexdigest()}
        if weights is not None:
            atomic_write_bytes(d / MODEL_WEIGHTS, weights)
            record = {**record, "weights_file": {"file": MODEL_WEIGHTS, "sha256": hashlib.sha256(weights).hexdigest()}}
        finish = _event("finish")
        history = [*self.history(cell_id), finish]
        record = {**record, "schema": SCHEMA_VERSION, "cell_id": cell_id, "artifacts": files,
                  "predictions": {"file": "predictions.npz", "sha256": hashlib.sha256(blob).hexdigest()},
                  "training_log": history,
                  "checkpoints_discarded": [e for e in history if e["event"] == "checkpoint_discarded"]}
        atomic_write_json(d / "record.json", record)
        self._append_event(cell_id, finish)  # only once the record is there (a full disk leaves no "finish")
        (d / "failure.json").unlink(missing_ok=True)
        self.checkpoint_path(cell_id).unlink(missing_ok=True)
        self._prev_checkpoint(cell_id).unlink(missing_ok=True)
        (d / "progress.json").unlink(missing_ok=True)

    def record(self, cell_id: str) -> dict[str, Any] | None:
        """The valid record of a cell, or None. A malformed or corrupt record is moved aside (warned)."""
        d = self.cell_dir(cell_id)

        def predictions_match(rec: dict[str, Any]) -> str | None:
            if rec["schema"] != SCHEMA_VERSION:
                return f"schema {rec['schema']} != {SCHEMA_VERSION}"
            if rec["cell_id"] != cell_id:
                return f"its cell_id {rec['cell_id']!r} is not its folder's"
            for f in [rec["predictions"], *rec.get("artifacts", {}).values()]:
                if file_sha256(d / f["file"]) != f["sha256"]:
                    return f"{f['file']} is missing or does not match its checksum"
            return None

        return read_valid_json(d / "record.json", RECORD_SCHEMA, predictions_match)

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

    # -- checkpoints and the training log ---------------------------------------------------
    def _prev_checkpoint(self, cell_id: str) -> Path:
        return self.cell_dir(cell_id) / "checkpoint.prev.pt"

    def save_checkpoint(self, cell_id: str, blob: bytes) -> None:
        """Write an epoch checkpoint atomically, keeping the previous one as a fallback."""
        path = self.checkpoint_path(cell_id)
        if path.exists():
            os.replace(path, self._prev_checkpoint(cell_id))
        atomic_write_bytes(path, blob)

    def resume_checkpoint(self, cell_id: str, load: Callable[[bytes], T]) -> T | None:
        """Start (or resume) training a cell: the last good checkpoint, decoded by ``load``, or None.

        A checkpoint that ``load`` rejects (any exception) is moved aside and logged, and the one
        before it is tried; the cell restarts from scratch when none is good. The training log
        (and so the cell's record) says which checkpoint was discarded and why.
        """
        found: T | None = None
        used = None
        for path in (self.checkpoint_path(cell_id), self._prev_checkpoint(cell_id)):
            if not path.exists():
                continue
            try:
                found, used = load(path.read_bytes()), path.name
                break
            except Exception as err:  # noqa: BLE001 - any failure to decode means the file is unusable
                problem = f"checkpoint does not load ({type(err).__name__}: {str(err)[:200]})"
                dest = move_aside(path, problem)
                self.log_event(cell_id, "checkpoint_discarded", file=path.name, reason=problem,
                               moved_to=dest.name if dest else None)
        self.log_event(cell_id, "start", checkpoint=used)
        return found

    def log_event(self, cell_id: str, event: str, **fields: Any) -> None:
        """Append one line to the cell's training log (starts, discarded checkpoints, finishes)."""
        self._append_event(cell_id, _event(event, **fields))

    def _append_event(self, cell_id: str, entry: dict[str, Any]) -> None:
        line = json.dumps(entry, default=str)
        path = self.cell_dir(cell_id) / "history.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as f:  # one short O_APPEND write per event
            f.write(line + "\n")

    def history(self, cell_id: str) -> list[dict[str, Any]]:
        """The cell's training log, oldest first (unreadable lines are skipped)."""
        try:
            lines = (self.cell_dir(cell_id) / "history.jsonl").read_text(errors="replace").splitlines()
        except OSError:
            return []
        out = []
        for line in lines:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if isinstance(ev, dict) and isinstance(ev.get("event"), str):
                out.append(ev)
        return out

    # -- claims ----------------------------------------------------------------------------
    def claim(self, cell_id: str, owner: dict[str, Any], *, take_unverifiable: bool = False) -> bool:
        """Atomically claim a cell for computing; False when someone alive holds it (or, unless
        ``take_unverifiable``, someone this host cannot check: another machine's process)."""
        path = self.cell_dir(cell_id) / "claim.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        owner = {**owner, "host": socket.gethostname(), "time": time.time(), "start": process_start(os.getpid())}
        for _ in range(2):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if self.claim_alive(cell_id, take_unverifiable=take_unverifiable):
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
        """Who holds the claim on a cell, if anyone (a malformed, settled claim is moved aside)."""
        return read_valid_json(self.cell_dir(cell_id) / "claim.json", CLAIM_SCHEMA, grace_s=CLAIM_GRACE_S)

    def update_claim(self, cell_id: str, **fields: Any) -> None:
        """Add fields (a SLURM job id, say) to a claim this process holds."""
        owner = self.claim_owner(cell_id) or {}
        atomic_write_json(self.cell_dir(cell_id) / "claim.json", {**owner, **fields})

    def add_claim_workers(self, cell_ids: list[str], pid: int) -> None:
        """Name a local worker (its pid, on this host) in this process's claims on ``cell_ids``.

        A claim stays alive while its owner *or any of its workers* is alive, so a worker left
        running by a driver that died is never joined by a second one on the same cell.
        """
        host = socket.gethostname()
        for cid in cell_ids:
            owner = self.claim_owner(cid)
            if owner is None or owner.get("pid") != os.getpid() or owner.get("host") != host:
                continue
            workers = [w for w in owner.get("workers", []) if isinstance(w, dict)]
            workers.append({"pid": int(pid), "host": host, "start": process_start(int(pid))})
            atomic_write_json(self.cell_dir(cid) / "claim.json", {**owner, "workers": workers})

    def claim_alive(self, cell_id: str, *, take_unverifiable: bool = False) -> bool:
        """A claim is alive while its SLURM job is queued, or its owner or one of its workers runs
        (the same pid *and* start time: a reused pid is not the owner). Another machine's process
        cannot be checked: its claim counts as alive unless ``take_unverifiable``."""
        path = self.cell_dir(cell_id) / "claim.json"
        owner = self.claim_owner(cell_id)
        if owner is None:
            return path.exists()  # being written right now (a settled malformed claim was moved aside)
        if owner.get("slurm_job_id"):
            return slurm_job_alive(owner["slurm_job_id"])
        state = self._claim_processes(cell_id, owner)
        return state["alive"] or (state["unverifiable"] and not take_unverifiable)

    def _claim_processes(self, cell_id: str, owner: dict[str, Any]) -> dict[str, Any]:
        here = socket.gethostname()
        procs = [owner, *(w for w in owner.get("workers", []) if isinstance(w, dict))]
        progress = self.progress(cell_id)
        if progress and progress.get("time", 0) >= owner.get("time", 0):
            procs.append(progress)
        mine = [p for p in procs if p.get("host", here) == here]
        return {"alive": any(process_alive(p.get("pid"), p.get("start")) for p in mine),
                "unverifiable": len(mine) < len(procs), "progress": progress}

    def claim_state(self, cell_id: str) -> dict[str, Any] | None:
        """Who holds a cell's claim and how it stands, for people: ``owner``, ``age_s`` (since it
        was claimed), ``heartbeat_age_s`` (since the worker last wrote progress; None before),
        ``state`` (``alive``, ``slurm``, ``unverifiable``: another host's, or ``dead``) and
        ``stalled`` (alive but silent for more than :data:`STALL_S`: a stopped worker, say)."""
        owner = self.claim_owner(cell_id)
        if owner is None:
            return None
        now = time.time()
        if owner.get("slurm_job_id"):
            state, progress = ("slurm" if slurm_job_alive(owner["slurm_job_id"]) else "dead"), self.progress(cell_id)
        else:
            procs = self._claim_processes(cell_id, owner)
            progress = procs["progress"]
            state = "alive" if procs["alive"] else "unverifiable" if procs["unverifiable"] else "dead"
        beat = now - progress["time"] if progress and isinstance(progress.get("time"), (int, float)) else None
        return {"owner": owner, "age_s": now - float(owner.get("time", now)), "heartbeat_age_s": beat,
                "state": state, "stalled": state == "alive" and beat is not None and beat > STALL_S}

    def release(self, cell_id: str) -> None:
        """Drop this process's claim (a claim naming a SLURM job that still runs is kept)."""
        owner = self.claim_owner(cell_id)
        if owner and owner.get("slurm_job_id") and slurm_job_alive(owner["slurm_job_id"]):
            return
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
        """The ledger entry of a cell, if it failed and has no valid record since (malformed: None)."""
        return read_valid_json(self.cell_dir(cell_id) / "failure.json", FAILURE_SCHEMA)

    def ledger(self) -> list[dict[str, Any]]:
        """Every failure entry in the store."""
        return [f for cid in self.cell_ids() if (f := self.failure(cid)) is not None]

    def write_progress(self, cell_id: str, **fields: Any) -> None:
        """The worker's heartbeat: pid, host, epoch, time."""
        atomic_write_json(self.cell_dir(cell_id) / "progress.json",
                          {**fields, "pid": os.getpid(), "start": process_start(os.getpid()),
                           "host": socket.gethostname(), "time": time.time()})

    def progress(self, cell_id: str) -> dict[str, Any] | None:
        """The last heartbeat of a running cell."""
        return read_valid_json(self.cell_dir(cell_id) / "progress.json", PROGRESS_SCHEMA)

    # -- invocations -----------------------------------------------------------------------
    def record_invocation(self, table_id: str, *, overrides: dict[str, Any], seeds: int | None, scale: str,
                          argv: list[str] | None = None, datasets: list[str] | None = None) -> None:
        """Remember a ``reproduce`` run configuration (``datasets``: its ``--datasets`` columns, None
        for all), so that status, collect and report see it."""
        atomic_write_json(self.root / "runs" / f"{table_id}.json",
                          {"table": table_id, "set": overrides, "seeds": seeds, "scale": scale,
                           "datasets": None if datasets is None else list(datasets),
                           "argv": list(argv or []), "time": time.time()})

    def invocation(self, table_id: str) -> dict[str, Any] | None:
        """The last recorded ``reproduce`` configuration of a table, if any."""
        return read_valid_json(self.root / "runs" / f"{table_id}.json", INVOCATION_SCHEMA)
