"""Fan cells out through submitit: ``local`` (bounded), ``debug`` (in-process) or ``slurm``.

The executor only moves cells and reports back; the runner writes records and the parent
process writes the failure ledger. What runs is decided here, from the store:

* a cell with a valid record is *cached* and not run again;
* a cell in the failure ledger is skipped unless ``retry_failed`` (its failure is reported);
* a cell claimed by another live invocation is *waited for*, not computed twice;
* everything else is claimed (atomically) and submitted.

submitit's local executor starts every job at once and kills them after 2 minutes by default;
here at most ``max_parallel`` cells run at a time, each with ``cores // max_parallel`` threads,
under an explicit ``timeout_min``. They are taken longest first, as far as is known: one seed of
each configuration first, then the rest by what their configuration took (:func:`longest_first`),
so that the last cells of a table do not run alone on one core.

Devices (``device``: auto, cpu, cuda, cuda:N): on a machine with GPUs the local executor runs one
worker per GPU by default, each on its own GPU; a SLURM array task asks for one GPU when its
partition has GPUs (``sinfo``'s GRES column), and resolves ``auto`` on the node it lands on.

The debug executor runs cells in this process and, unlike submitit's, never opens a debugger on a
failure (submitit's drops into ``pdb`` and waits on stdin): the error is recorded and the run goes
on. ``FERBENCH_PDB=1`` (or ``ExecutorConfig.pdb``, ``eval --pdb``) opts into submitit's post-mortem.
"""
from __future__ import annotations

import os
import shutil
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import submitit
from submitit.local.debug import DebugJob
from tqdm import tqdm

from harness.run.cells import Cell, canonical_json
from harness.run.devices import gpu_count, local_gpu_parameters, resolve_device
from harness.errors import UserError
from harness.specs import load_yaml
from harness.run.interrupts import Cancelled, spawning, stop_local_workers
from harness.run.prepare import decode_once
from harness.run.train.runner import CellJob
from harness.store import Store, slurm_job_alive
from harness.run.workqueue import QueueWorker, WorkQueue

EXECUTORS = ("local", "debug", "slurm")


@dataclass
class ExecutorConfig:
    """How to run cells. SLURM fields may also come from a YAML profile (``--profile``)."""

    name: str = "local"
    device: str = "auto"  # auto | cpu | cuda | cuda:N (see harness.run.devices)
    max_parallel: int | None = None  # default: the GPU count with GPUs, else the number of cores
    threads: int | None = None  # per cell; default: cores // max_parallel
    timeout_min: float = 60.0
    max_retries: int = 0  # automatic re-submissions of a failed cell within one invocation
    retry_failed: bool = False
    detach: bool = False
    poll_s: float = 0.5
    slurm_partition: str | None = None
    slurm_time_min: float | None = None
    slurm_cpus_per_task: int | None = None  # default: SLURM_GPU_CPUS for a GPU task, else 1
    slurm_gpus_per_node: int = 0
    slurm_mem_gb: float | None = None  # default: sized to the data the cells read (slurm_resources)
    cells_per_gpu: int = 1  # local: cells sharing one GPU (small models leave it idle between kernels)
    slurm_array_parallelism: int = 64
    slurm_extra: dict[str, Any] = field(default_factory=dict)
    pdb: bool = False  # debug executor: post-mortem pdb on a failure (also FERBENCH_PDB=1)
    break_stale_claims: bool = False  # take over claims held by another host's process (unverifiable)

    @classmethod
    def from_profile(cls, path: str | None, **overrides: Any) -> "ExecutorConfig":
        """Defaults, then the YAML profile, then explicit (non-None) flags."""
        values: dict[str, Any] = {}
        if path:
            p = Path(path)
            if not p.is_file():
                raise UserError(f"executor profile {path!r} does not exist")
            values = load_yaml(p) or {}  # repeated keys, depth and alias limits as for table specs
            unknown = set(values) - set(cls.__dataclass_fields__)
            if unknown:
                raise UserError(f"{path}: unknown keys {sorted(unknown)}; allowed: {sorted(cls.__dataclass_fields__)}")
        values.update({k: v for k, v in overrides.items() if v is not None})
        cfg = cls(**values)
        if cfg.name not in EXECUTORS:
            raise UserError(f"unknown executor {cfg.name!r}; allowed: {', '.join(EXECUTORS)}")
        if not isinstance(cfg.cells_per_gpu, int) or isinstance(cfg.cells_per_gpu, bool) or cfg.cells_per_gpu < 1:
            raise UserError(f"cells_per_gpu: {cfg.cells_per_gpu!r} is not allowed; allowed values: an integer >= 1")
        return cfg

    def parallel(self) -> int:
        """How many cells run at once: ``max_parallel``, else one per GPU when cells train on GPUs, else
        one per core."""
        if self.max_parallel:
            return self.max_parallel
        gpus = gpu_count(self.device) if self.name != "slurm" else 0
        return max(1, gpus * self.cells_per_gpu or os.cpu_count() or 1)

    def cell_threads(self) -> int:
        """Threads per cell so that concurrent cells don't oversubscribe the cores."""
        return self.threads or max(1, (os.cpu_count() or 1) // self.parallel())


def check_executor(cfg: ExecutorConfig) -> None:
    """Fail before submitting anything when the executor cannot start, or (local and debug) when
    this machine lacks the device asked for."""
    if cfg.name != "slurm":
        resolve_device(cfg.device)
    if cfg.name == "slurm":
        missing = [c for c in ("sbatch", "squeue", "scontrol") if shutil.which(c) is None]
        if missing:
            raise UserError(f"executor 'slurm' cannot start: {', '.join(missing)} not found on PATH "
                            "(install slurm-wlm, or run scripts/slurm_local.sh start for a local cluster)")


@dataclass
class Summary:
    """What one invocation did."""

    done: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    skipped_failed: list[str] = field(default_factory=list)
    waited: list[str] = field(default_factory=list)
    submitted: list[str] = field(default_factory=list)
    wall_s: float = 0.0

    def line(self) -> str:
        """One-line human summary."""
        parts = [f"{len(self.done)} done", f"{len(self.cached)} cached", f"{len(self.failed)} failed"]
        if self.skipped_failed:
            parts.append(f"{len(self.skipped_failed)} failed earlier (use --retry-failed)")
        if self.waited:
            parts.append(f"{len(self.waited)} computed by another invocation")
        if self.submitted:
            parts.append(f"{len(self.submitted)} submitted (detached)")
        return ", ".join(parts) + f" in {self.wall_s:.1f}s"


class _Raised:
    """What a debug job's function raised, kept as its result."""

    def __init__(self, err: Exception) -> None:
        self.err = err


class _Catching:
    """A submitted function whose exception is returned (as :class:`_Raised`), not raised."""

    def __init__(self, fn: Any) -> None:
        self.fn = fn

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return self.fn(*args, **kwargs)
        except Exception as err:
            traceback.print_exc()  # what submitit's debug job prints before its pdb
            return _Raised(err)


class QuietDebugJob(DebugJob):
    """submitit's :class:`DebugJob` (1.5.4) without its post-mortem ``pdb``, which waits on stdin.

    Modifications: the function runs under :class:`_Catching`, so DebugJob's ``except`` (print,
    ``pdb.post_mortem()``) is never reached; the error is raised here instead, as the job's own (not
    wrapped), on every ``result()``. A failed job is therefore over: submitit's would run the
    function again on the next ``result()``.
    """

    def results(self) -> list[Any]:
        out = super().results()
        if isinstance(out[0], _Raised):
            raise out[0].err
        return out

    def exception(self) -> BaseException | None:  # type: ignore[override]
        try:
            self.results()
        except Exception as err:
            return err
        return None


class QuietDebugExecutor(submitit.DebugExecutor):
    """The debug executor with :class:`QuietDebugJob`: in-process, no debugger on a failure."""

    job_class = QuietDebugJob

    def _internal_process_submissions(self, delayed_submissions: list) -> list:
        for ds in delayed_submissions:
            ds.function = _Catching(ds.function)
        return [QuietDebugJob(self.folder, ds) for ds in delayed_submissions]


SLURM_GPU_CPUS = 8  # a GPU task's CPUs: its training thread, the checkpoint writer, torch's intra-op pool


def slurm_resources(cfg: ExecutorConfig, gpus: int, data_bytes: int) -> tuple[int, float]:
    """CPUs and GB of memory per SLURM array task: the profile's or flags' values, else defaults that
    fit. A GPU task gets :data:`SLURM_GPU_CPUS` CPUs, a CPU task one; memory is 1.25 x the largest
    decoded dataset the cells read (the memory map's pages count against the task's cgroup; an
    AffectNet map at 112 px is about 11 GB) plus 6 GB with a GPU (model, optimiser state, pinned
    batches and checkpoint snapshots on the host) or 3 GB without."""
    cpus = cfg.slurm_cpus_per_task or (SLURM_GPU_CPUS if gpus else 1)
    mem = cfg.slurm_mem_gb or round(1.25 * data_bytes / 2**30 + (6.0 if gpus else 3.0), 1)
    return cpus, mem


def slurm_gpus(cfg: ExecutorConfig) -> int:
    """GPUs per SLURM array task: ``slurm_gpus_per_node``, else one when cells may use a GPU and
    ``sinfo`` lists GPUs in the partition's generic resources, else none."""
    return cfg.slurm_gpus_per_node or (1 if cfg.device != "cpu" and partition_has_gpus(cfg.slurm_partition) else 0)


def _make_executor(cfg: ExecutorConfig, store: Store, data_bytes: int = 0, gpus: int | None = None) -> submitit.Executor:
    folder = store.log_dir / cfg.name / "%j"
    if cfg.name == "debug":
        wants_pdb = cfg.pdb or os.environ.get("FERBENCH_PDB", "") not in ("", "0")
        return (submitit.DebugExecutor if wants_pdb else QuietDebugExecutor)(folder=folder)
    if cfg.name == "local":
        ex = submitit.LocalExecutor(folder=folder)
        ex.update_parameters(timeout_min=cfg.timeout_min, **local_gpu_parameters(cfg.device))
        return ex
    ex = submitit.SlurmExecutor(folder=folder, max_num_timeout=3)
    gpus = slurm_gpus(cfg) if gpus is None else gpus
    cpus, mem_gb = slurm_resources(cfg, gpus, data_bytes)
    params: dict[str, Any] = dict(time=int(cfg.slurm_time_min or cfg.timeout_min), cpus_per_task=cpus,
                                  mem=f"{int(mem_gb * 1024)}M", signal_delay_s=30,
                                  array_parallelism=cfg.slurm_array_parallelism, **cfg.slurm_extra)
    if cfg.slurm_partition:
        params["partition"] = cfg.slurm_partition
    if gpus:
        params["gpus_per_node"] = gpus  # one array task = one cell = its GPUs
    ex.update_parameters(**params)
    return ex


def partition_has_gpus(partition: str | None) -> bool:
    """Whether a SLURM partition (the default one for None) lists GPUs in its generic resources."""
    import subprocess

    cmd = ["sinfo", "--noheader", "-o", "%G"] + (["-p", partition] if partition else [])
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False
    return any(g.startswith("gpu") for line in out.split() for g in line.split(","))


def _failure_of(job: submitit.Job) -> tuple[str, str, str]:
    """(type, message, traceback tail) of a finished job that left no record."""
    try:
        job.result()
        return "NoRecord", "the job finished but wrote no valid record", ""
    except Exception as err:  # submitit wraps worker errors; keep their text
        text = str(err)
        tail = "\n".join(text.strip().splitlines()[-25:])
        etype = type(err).__name__
        for line in reversed(text.strip().splitlines()):
            head = line.split(":", 1)[0].strip()
            if head.endswith(("Error", "Exception", "Loss", "Fault")) and " " not in head:
                etype = head.rsplit(".", 1)[-1]
                break
        if "UncompletedJobError" in etype or "has not produced any output" in text:
            etype = "Killed"
        return etype, text.strip().splitlines()[-1] if text.strip() else etype, tail


def dependency_waves(cells: list[Cell]) -> list[list[Cell]]:
    """Group cells so that each runs after the cells it depends on (``Cell.upstream``).

    An upstream cell shared by many (a pre-training stage) appears once, so it runs once.
    Upstream ids outside ``cells`` are taken as already computed (or failed) elsewhere.
    """
    ids = {c.id for c in cells}
    placed: set[str] = set()
    waves, left = [], list(cells)
    while left:
        wave = [c for c in left if all(u in placed or u not in ids for u in c.upstream)]
        assert wave, "ids hash their upstream ids, so a dependency cycle cannot be built"
        waves.append(wave)
        placed |= {c.id for c in wave}
        left = [c for c in left if c.id not in placed]
    return waves


def run_cells(cells: list[Cell], store: Store, cfg: ExecutorConfig) -> Summary:
    """Run every cell that lacks a valid result; return what happened."""
    t0 = time.time()
    summary = Summary()
    unique = list({c.id: c for c in cells}.values())
    for c in unique:
        store.write_cell(c.to_dict())
    todo: list[Cell] = []
    for c in unique:
        if store.record(c.id) is not None:
            summary.cached.append(c.id)
        elif store.failure(c.id) is not None and not cfg.retry_failed:
            summary.skipped_failed.append(c.id)
        else:
            todo.append(c)

    owner = {"pid": os.getpid(), "argv": sys.argv[:6], "executor": cfg.name}
    mine, theirs = [], []
    for c in todo:
        (mine if store.claim(c.id, owner, take_unverifiable=cfg.break_stale_claims) else theirs).append(c)

    bar = tqdm(total=len(unique), initial=len(summary.cached) + len(summary.skipped_failed), unit="cell",
               desc="cells", dynamic_ncols=True, file=sys.stderr,
               mininterval=0.5 if sys.stderr.isatty() else 30)  # a log file gets a line every 30 s
    try:
        data_bytes = decode_once(mine)  # before the fan-out, not under a lock by the first cell
        gpus = slurm_gpus(cfg) if cfg.name == "slurm" else 0
        executor = _make_executor(cfg, store, data_bytes, gpus)
        threads = cfg.cell_threads() if cfg.name != "slurm" else (cfg.threads or slurm_resources(cfg, gpus, 0)[0])
        if cfg.name == "slurm" and cfg.detach:
            jobs = _submit_array(executor, mine, store, threads, cfg)
            summary.submitted = [c.id for c in mine]
            for c, job in zip(mine, jobs):
                store.update_claim(c.id, slurm_job_id=job.job_id)
            mine = []
        # A stage that another invocation is computing must finish before our cells that need it;
        # a cell whose invocation was cancelled before finishing it is ours to run.
        needed = {u for c in mine for u in c.upstream}
        left = _wait_for_others([c for c in theirs if c.id in needed], store, cfg, summary, bar)
        adopted = _adopt(left, store, owner, cfg)
        mine += adopted
        pending = [c for c in theirs if c.id not in needed] + [c for c in left if c not in adopted]
        while mine or pending:
            _run_claimed(mine, executor, cfg, store, threads, summary, bar)
            left = _wait_for_others(pending, store, cfg, summary, bar)
            mine = _adopt(left, store, owner, cfg)
            pending = [c for c in left if c not in mine]  # taken over by yet another invocation
    finally:
        bar.close()
        if not (cfg.name == "slurm" and cfg.detach):
            for c in todo:
                owner_now = store.claim_owner(c.id) or {}
                if owner_now.get("pid") == os.getpid():
                    store.release(c.id)
    summary.wall_s = time.time() - t0
    return summary


def _run_claimed(cells: list[Cell], executor, cfg: ExecutorConfig, store: Store, threads: int, summary: Summary,
               bar) -> None:
    """Run claimed cells after their upstream cells; a cell whose upstream stage has no result is ledgered.

    Local and debug: one queue, in which each cell is released as soon as its own upstream cells
    have records. SLURM: dependency waves, one array job each.
    """
    if cfg.name != "slurm":
        _run_queue(executor, cfg, cells, store, threads, summary, bar)
        return
    for wave in dependency_waves(cells):
        ready = [c for c in wave if not _ledger_upstream_failure(c, store, summary, bar)]
        # A wave narrower than the pool (a lone pre-training stage) gets the idle cores too.
        wave_threads = threads if cfg.threads or not ready else \
            max(threads, (os.cpu_count() or 1) // min(cfg.parallel(), len(ready)))
        _run_slurm(executor, cfg, ready, store, wave_threads, summary, bar)


def _ledger_upstream_failure(cell: Cell, store: Store, summary: Summary, bar) -> bool:
    """Ledger ``cell`` as failed if one of its upstream cells has no record; say whether it was."""
    missing = [u for u in cell.upstream if store.record(u) is None]
    if missing:
        store.record_failure(cell.id, error_type="UpstreamFailed", message=_upstream_failure(missing, store),
                             traceback_tail="", log_path=None)
        summary.failed.append(cell.id)
        bar.update(1)
    return bool(missing)


def _adopt(cells: list[Cell], store: Store, owner: dict[str, Any], cfg: ExecutorConfig) -> list[Cell]:
    """Claim cells another invocation left unfinished (it was cancelled); those claimed are ours now."""
    return [c for c in cells if store.claim(c.id, owner, take_unverifiable=cfg.break_stale_claims)]


def _upstream_failure(missing: list[str], store: Store) -> str:
    """Name the pre-training stages a cell could not start from, and why they failed."""
    parts = []
    for cid in missing:
        stage = (store.cell(cid) or {}).get("stage") or "upstream cell"
        fail = store.failure(cid)
        why = f"{fail['error_type']}: {fail['message'][:200]}" if fail else "no result"
        parts.append(f"{stage} (cell {cid}) failed ({why})")
    return "pre-training stage " + "; ".join(parts) + "; fix it, then run with --retry-failed"


def _submit_array(executor: submitit.Executor, cells: list[Cell], store: Store, threads: int,
                  cfg: ExecutorConfig) -> list[submitit.Job]:
    if not cells:
        return []
    return executor.map_array(CellJob(), [c.to_dict() for c in cells], [str(store.root)] * len(cells),
                              [threads] * len(cells), [cfg.device] * len(cells))


def config_key(cell: Cell) -> str:
    """A cell's configuration without its seed: the seeds of one table row cost about the same."""
    return canonical_json({**cell.identity(), "seed": None})


def longest_first(cells: list[Cell], seconds: dict[str, float]) -> list[Cell]:
    """The order to run ``cells`` in: longest first, learnt as they finish.

    ``seconds`` maps a :func:`config_key` to what one of its cells took. Cells of configurations
    not yet timed come first, one seed of each before the next (so that every configuration is
    timed early), in plan order; then the others, the longest configuration first, so that no long
    cell runs alone at the end while the other slots idle (longest-processing-time scheduling).
    """
    keys = {c.id: config_key(c) for c in cells}
    rank: dict[str, int] = {}
    seen: dict[str, int] = {}
    for c in cells:
        rank[c.id] = seen.get(keys[c.id], 0)
        seen[keys[c.id]] = rank[c.id] + 1

    def order(item: tuple[int, Cell]) -> tuple[int, float, int]:
        i, c = item
        took = seconds.get(keys[c.id])
        return (0, rank[c.id], i) if took is None else (1, -took, i)

    return [c for _, c in sorted(enumerate(cells), key=order)]


def _run_queue(executor, cfg: ExecutorConfig, cells: list[Cell], store: Store, threads: int,
               summary: Summary, bar) -> None:
    """Local and debug: ``max_parallel`` queue workers drain this invocation's cells, longest first.

    A cell enters the queue once the upstream cells it names have records (a stage's dependents
    start when that stage ends, not when every stage of the table has). While fewer cells can run
    than there are slots (a lone pre-training stage), the one worker started gets the idle cores
    too and stops after that cell, so that no later cell oversubscribes them.
    """
    if not cells:
        return
    queue = WorkQueue(store.root / "queue" / f"{os.getpid()}-{time.time_ns()}")
    attempts = {c.id: 1 for c in cells}
    remaining = {c.id for c in cells}
    workers: dict[int, submitit.Job] = {}
    slots = 1 if cfg.name == "debug" else cfg.parallel()

    def spawn() -> None:
        slot = next(s for s in range(slots + 1) if s not in workers)
        busy = sum(1 for s in workers if queue.held(s))
        runnable = queue.pending() + busy
        wide = not cfg.threads and cfg.name != "debug" and runnable < slots
        n_threads = max(threads, (os.cpu_count() or 1) // max(runnable, 1)) if wide else threads
        with spawning():  # the worker ignores a terminal's Ctrl-C; a signal now waits for `workers`
            workers[slot] = executor.submit(QueueWorker(), str(queue.root), str(store.root), slot, n_threads,
                                            cfg.device, 1 if n_threads > threads else 0)
            if cfg.name == "local":  # its claims stay alive while it runs, even if this process dies
                store.add_claim_workers(sorted(remaining), int(workers[slot].job_id))

    try:
        _drain(queue, workers, spawn, slots, cfg, store, attempts, remaining, summary, bar,
               {c.id: c for c in cells})
    except KeyboardInterrupt as err:  # SIGINT or SIGTERM: stop the workers; finished cells are kept
        running = [queue.cell_id(item) for slot in workers for item in queue.held(slot)]
        stopped = stop_local_workers(workers.values()) if cfg.name == "local" else 0
        if isinstance(err, Cancelled):
            err.stopped_workers += stopped
            err.running_cells += running
        raise


def _release(queue: WorkQueue, blocked: dict[str, Cell], remaining: set[str], store: Store, summary: Summary,
             bar) -> bool:
    """Queue the blocked cells whose upstream cells are all over; ledger those whose upstream failed.

    Returns whether any cell was queued.
    """
    queued = False
    for cid, c in list(blocked.items()):
        if any(u in remaining for u in c.upstream):
            continue  # an upstream cell of this invocation is still to run
        del blocked[cid]
        if _ledger_upstream_failure(c, store, summary, bar):
            remaining.discard(cid)
        else:
            queue.put(len(remaining), c.to_dict())
            queued = True
    return queued


def _drain(queue: WorkQueue, workers: dict, spawn, slots: int, cfg: ExecutorConfig, store: Store,
           attempts: dict[str, int], remaining: set[str], summary: Summary, bar, cells: dict[str, Cell]) -> None:
    """Poll workers and the queue until every cell of this invocation has an outcome; release cells
    as their upstream cells finish, and reorder the pending ones longest first as each
    configuration gets timed (:func:`longest_first`)."""
    seconds: dict[str, float] = {}
    blocked = dict(cells)
    told: set[tuple[str, str]] = set()  # stalled cells already reported

    def reorder() -> None:
        queue.reorder([c.id for c in longest_first([c for c in cells.values() if c.id in remaining], seconds)])

    if _release(queue, blocked, remaining, store, summary, bar):
        reorder()
    while remaining:
        for slot in workers:  # a worker that stopped (kill -STOP, a hung filesystem) is named, not waited on silently
            for item in queue.held(slot):
                _say_why_waiting(queue.cell_id(item), store, told)
        for slot, job in list(workers.items()):
            if cfg.name == "debug":
                _result_quietly(job)  # the debug executor runs the worker here, in-process
            elif not job.done():
                continue
            del workers[slot]
            for item in queue.held(slot):  # the worker died inside this cell: killed, out of memory...
                etype, msg, tail = _failure_of(job)
                store.record_failure(queue.cell_id(item), error_type=etype, message=msg, traceback_tail=tail,
                                     log_path=str(job.paths.stderr))
                queue.finish(item)
        changed = False
        for item in queue.done():
            cid = queue.cell_id(item)
            if cid not in remaining:
                continue
            record = store.record(cid)
            if record is not None:
                remaining.discard(cid)
                summary.done.append(cid)
                bar.update(1)
                key = config_key(cells[cid])
                if key not in seconds:
                    seconds[key] = float(record.get("timing", {}).get("wall_s", 0.0))
                    changed = True
            elif attempts[cid] <= cfg.max_retries:
                attempts[cid] += 1
                queue.requeue(item)
            else:
                remaining.discard(cid)
                summary.failed.append(cid)
                bar.update(1)
                entry = store.failure(cid) or {}
                tqdm.write(f"cell {cid} failed ({entry.get('error_type')}: {str(entry.get('message'))[:160]}); "
                           f"log: {entry.get('log_path')}", file=sys.stderr)
        if _release(queue, blocked, remaining, store, summary, bar) or changed:
            reorder()
        idle = sum(1 for s in workers if not queue.held(s))  # starting, or about to find the queue empty
        while queue.pending() > idle and len(workers) < slots:
            spawn()
            idle += 1
        if remaining and workers and cfg.name != "debug":
            time.sleep(cfg.poll_s)


def _result_quietly(job: submitit.Job) -> None:
    try:
        job.result()
    except Exception:
        pass  # the outcome is read from the store and the queue


def _run_slurm(executor, cfg: ExecutorConfig, cells: list[Cell], store: Store, threads: int,
               summary: Summary, bar) -> None:
    """SLURM: one array job per invocation, one task per cell; SLURM bounds the concurrency.

    Without accounting (a small or local cluster) ``sacct`` fails and submitit never learns a
    job's state; ``job.done()`` still sees the result file of a job that returned or raised, but
    a job killed outright leaves none. So a job that ``squeue`` no longer lists, twice in a row,
    is over, result file or not.
    """
    running = {}
    gone: dict[str, int] = {}
    for c, job in zip(cells, _submit_array(executor, cells, store, threads, cfg)):
        running[c.id] = job
        store.update_claim(c.id, slurm_job_id=job.job_id)
    while running:
        for cid, job in list(running.items()):
            if not job.done():
                gone[cid] = 0 if slurm_job_alive(job.job_id) else gone.get(cid, 0) + 1
                if gone[cid] < 2:
                    continue
            del running[cid]
            if store.record(cid) is not None:
                summary.done.append(cid)
            else:
                prior = store.failure(cid)
                if prior is None or prior["time"] < job_submitted(job):
                    etype, msg, tail = _failure_of(job) if job.done() else _failure_from_log(job)
                    store.record_failure(cid, error_type=etype, message=msg, traceback_tail=tail,
                                         log_path=str(job.paths.stderr))
                summary.failed.append(cid)
            bar.update(1)
        if running:
            time.sleep(max(cfg.poll_s, 2.0))


def _failure_from_log(job: submitit.Job) -> tuple[str, str, str]:
    """A job that vanished without a result: the tail of its log says what is known."""
    try:
        tail = "\n".join(Path(job.paths.stderr).read_text(errors="replace").splitlines()[-25:])
    except OSError:
        tail = ""
    return "Killed", "the job ended without a result (killed, cancelled or out of memory)", tail


def _say_why_waiting(cell_id: str, store: Store, told: set[tuple[str, str]]) -> None:
    """One line when this invocation waits on a claim it cannot vouch for: another host's (which
    ``--break-stale-claims`` takes over) or a worker whose heartbeat stopped. A claim SLURM holds is
    neither (and asking squeue again every poll would double the queries)."""
    owner = store.claim_owner(cell_id)
    if owner is None or owner.get("slurm_job_id"):
        return
    state = store.claim_state(cell_id)
    if state is None or not (state["state"] == "unverifiable" or state["stalled"]):
        return
    kind = "stalled" if state["stalled"] else "unverifiable"
    if (cell_id, kind) in told:
        return
    told.add((cell_id, kind))
    o = state["owner"]
    why = (f"its worker has written no heartbeat for {state['heartbeat_age_s'] / 60:.0f} min" if state["stalled"]
           else f"it is claimed by pid {o.get('pid')} on host {o.get('host')}, which this host cannot check; "
                "pass --break-stale-claims to take it over if that process is gone")
    tqdm.write(f"waiting for cell {cell_id} (claimed {state['age_s'] / 60:.0f} min ago): {why}", file=sys.stderr)


def job_submitted(job: submitit.Job) -> float:
    """When a job was submitted (the mtime of its pickled submission)."""
    try:
        return job.paths.submitted_pickle.stat().st_mtime
    except OSError:
        return 0.0


def _wait_for_others(cells: list[Cell], store: Store, cfg: ExecutorConfig, summary: Summary, bar) -> list[Cell]:
    """Cells another live invocation is computing: wait for their record or their failure.

    Returns the cells whose invocation stopped with neither (it was cancelled: SIGTERM, Ctrl-C),
    for the caller to claim and run; they are not failures.
    """
    waiting = {c.id: c for c in cells}
    left: list[Cell] = []
    told: set[tuple[str, str]] = set()
    while waiting:
        for cid in list(waiting):
            if store.record(cid) is not None:
                summary.waited.append(cid)
            elif not store.claim_alive(cid, take_unverifiable=cfg.break_stale_claims):
                if store.failure(cid) is None:
                    left.append(waiting.pop(cid))
                    continue
                summary.failed.append(cid)
            else:
                _say_why_waiting(cid, store, told)
                continue
            del waiting[cid]
            bar.update(1)
        if waiting:
            time.sleep(max(cfg.poll_s, 1.0))
    return left
