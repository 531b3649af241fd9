"""SIGTERM and SIGINT cancel a ``reproduce`` run the same way, and leave nothing running.

The driver turns either signal into :class:`Cancelled` (a ``KeyboardInterrupt``), so the code
that already unwinds on Ctrl-C stops its local workers and releases its claims; finished records
and epoch checkpoints stay on disk, and the next run resumes from them.

Local workers are submitit jobs: a controller process per job that runs the worker as its child.
They are started with SIGINT ignored, so a terminal's Ctrl-C (sent to the whole foreground process
group) reaches only the driver, which then stops them itself: SIGINT to each worker (the worker
re-enables it, see :class:`harness.run.workqueue.QueueWorker`), SIGKILL to whatever is left after a
grace period. Nothing prints a raw traceback to the terminal.
"""
from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path
from typing import Iterable, Iterator

from harness.store import pid_alive

SIGNALS = (signal.SIGTERM, signal.SIGINT)
_state = {"defer": 0, "pending": None, "fired": False}


class Cancelled(KeyboardInterrupt):
    """The run was cancelled by a signal; carries what was stopped, for the one-line message."""

    def __init__(self, signame: str) -> None:
        super().__init__(signame)
        self.signame = signame
        self.stopped_workers = 0
        self.running_cells: list[str] = []

    @property
    def exit_code(self) -> int:
        """128 + the signal number, as a shell reports a process ended by it."""
        return 128 + int(getattr(signal, self.signame, signal.SIGINT))


def _handler(signum: int, frame) -> None:
    if _state["fired"]:
        return  # already unwinding: a second Ctrl-C must not interrupt the clean-up
    if _state["defer"]:
        _state["pending"] = signum
        return
    _state["fired"] = True
    raise Cancelled(signal.Signals(signum).name)


@contextlib.contextmanager
def cancel_on_signals() -> Iterator[None]:
    """Inside, SIGTERM and SIGINT raise :class:`Cancelled` once in the main thread."""
    old = {s: signal.getsignal(s) for s in SIGNALS}
    _state.update(defer=0, pending=None, fired=False)
    for s in SIGNALS:
        signal.signal(s, _handler)
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@contextlib.contextmanager
def spawning() -> Iterator[None]:
    """Start child processes inside: they inherit SIGINT ignored, and a signal arriving meanwhile
    is raised only once the child is known to the caller (so it is never orphaned)."""
    old = signal.getsignal(signal.SIGINT)
    _state["defer"] += 1
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # inherited across exec; a handler would not be
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
        _state["defer"] -= 1
    pending = _state["pending"]
    if pending is not None and not _state["defer"] and old is _handler:
        _state["pending"] = None
        _handler(pending, None)


def descendants(pid: int) -> list[int]:
    """Pids of every live descendant of ``pid`` (children first), from ``/proc``."""
    parents: dict[int, list[int]] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parents.setdefault(ppid, []).append(int(proc.name))
    out, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def stop_local_workers(jobs: Iterable, grace_s: float = 5.0) -> int:
    """Stop submitit local jobs and everything they started; returns how many were running.

    SIGINT goes to each job's worker processes (its controller ignores SIGINT and exits once its
    worker has); whatever is still alive after ``grace_s`` is killed. Returns once all are gone.
    """
    running = [j for j in jobs if getattr(j, "_process", None) is not None and j._process.poll() is None]
    tree = {j: descendants(j._process.pid) for j in running}
    for kids in tree.values():
        for pid in kids:
            _kill(pid, signal.SIGINT)
    deadline = time.time() + grace_s
    while time.time() < deadline:
        alive = [p for j, kids in tree.items() for p in kids if pid_alive(p)]
        alive += [j for j in running if j._process.poll() is None]
        if not alive:
            return len(running)
        time.sleep(0.1)
    for j, kids in tree.items():
        for pid in [*kids, *descendants(j._process.pid)]:
            _kill(pid, signal.SIGKILL)
        _kill(j._process.pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            j._process.wait(timeout=5)
    return len(running)
