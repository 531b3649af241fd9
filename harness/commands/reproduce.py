"""``python -m harness reproduce --table ID``: run what is missing of a paper table."""
from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time

from harness.cells import SCALES, split_overrides
from harness.checks import data_problems, train_problems
from harness.commands.common import add_results_flag, nonnegative_int, positive_float, positive_int
from harness.errors import UserError
from harness.executors import EXECUTORS, ExecutorConfig, check_executor, run_cells
from harness.interrupts import Cancelled, cancel_on_signals
from harness.plan import DataSource, parse_sets, plan_table
from harness.specs import load_spec
from harness.store import Store


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``reproduce`` command."""
    p = sub.add_parser("reproduce", help="run the missing cells of a table")
    p.add_argument("--table", required=True, help="table id, e.g. apvit_tab5 (see `tables`)")
    p.add_argument("--scale", default="tiny", choices=SCALES, help="model preset and training budget")
    p.add_argument("--seeds", type=positive_int, default=None, help="number of seeds (default: the spec's)")
    p.add_argument("--executor", default=None, help=f"one of {', '.join(EXECUTORS)} (default local)")
    p.add_argument("--profile", default=None, help="YAML executor profile (SLURM partition, time, ...)")
    p.add_argument("--max-parallel", type=positive_int, default=None, help="concurrent cells (default: cores)")
    p.add_argument("--threads", type=positive_int, default=None, help="threads per cell (default: cores / parallel)")
    p.add_argument("--timeout-min", type=positive_float, default=None, help="per-cell time limit (default 60)")
    p.add_argument("--partition", default=None, help="SLURM partition")
    p.add_argument("--gpus", type=nonnegative_int, default=None, help="SLURM GPUs per node")
    p.add_argument("--mem-gb", type=positive_float, default=None, help="SLURM memory per cell")
    p.add_argument("--data-root", default=None,
                   help="real datasets under DIR/<dataset> (default: $FERBENCH_DATA_ROOT, else synthetic stand-ins)")
    p.add_argument("--cache-dir", default=None, help="where synthetic stand-ins are generated")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override applied to every row")
    p.add_argument("--retry-failed", action="store_true", help="re-run cells in the failure ledger")
    p.add_argument("--max-retries", type=nonnegative_int, default=None, help="automatic retries of a failing cell")
    p.add_argument("--detach", action="store_true", help="submit and return; `status`/`collect` later")
    p.add_argument("--dry-run", action="store_true", help="plan and validate, run nothing")
    add_results_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Validate everything, then run the cells that lack a valid result.

    SIGTERM and SIGINT cancel the run the same way (:mod:`harness.interrupts`): local workers
    are stopped, claims released, finished results and epoch checkpoints kept; one line says
    what was cancelled and how to resume.
    """
    with cancel_on_signals():
        try:
            return _run(args)
        except Cancelled as err:
            _report_cancelled(err, args)
            return err.exit_code


def _check_set_values(extra: dict) -> None:
    """``--set train.*``/``data.*`` values, checked on their own so the message names ``--set``."""
    _, train, data = split_overrides(extra)
    problems = train_problems(train, prefix="--set train.") + data_problems(data, prefix="--set data.")
    if problems:
        raise UserError("; ".join(problems))


def _run(args: argparse.Namespace) -> int:
    t0 = time.time()
    spec = load_spec(args.table)
    cfg = ExecutorConfig.from_profile(args.profile, name=args.executor, max_parallel=args.max_parallel,
                                      threads=args.threads, timeout_min=args.timeout_min,
                                      slurm_partition=args.partition, slurm_gpus_per_node=args.gpus,
                                      slurm_mem_gb=args.mem_gb, max_retries=args.max_retries,
                                      retry_failed=args.retry_failed or None, detach=args.detach or None)
    check_executor(cfg)
    extra = parse_sets(args.set)
    _check_set_values(extra)
    source = DataSource.from_args(args.data_root, args.cache_dir)
    if args.dry_run:  # plan and print; write nothing, not even to the synthetic-data cache
        source = DataSource(source.root, source.cache_dir, dry_run=True)
    planned = plan_table(spec, scale=args.scale, seeds=args.seeds, source=source, extra=extra)
    cells = [p.cell for p in planned]
    if not cells:
        raise UserError(f"{spec.path}: the table plans no cell to run")
    n_unique = len({c.id for c in cells})
    data_note = "SYNTHETIC stand-in data" if source.synthetic else f"data root {source.root}"
    print(f"{spec.id}: {len(spec.rows)} rows x {len(spec.datasets)} datasets x {args.seeds or spec.seeds} seeds "
          f"= {n_unique} cells at scale {args.scale!r} on {data_note}; executor {cfg.name} "
          f"({cfg.parallel()} parallel x {cfg.cell_threads()} threads)", file=sys.stderr)
    if args.dry_run:
        for p in planned:
            print(f"{p.cell.id}  {p.row:24s} {p.dataset:10s} seed {p.seed}")
        return 0
    store = Store(args.results)
    store.check_writable()  # a read-only or full store: one clear error before anything trains
    if cfg.detach and cfg.name != "slurm":
        return _detach_local(args)
    store.record_invocation(spec.id, overrides=extra, seeds=args.seeds, scale=args.scale, argv=args.argv)
    args.planned_ids = [c.id for c in cells]
    summary = run_cells(cells, store, cfg)
    print(f"{spec.id}: {summary.line()} (total {time.time() - t0:.1f}s)", file=sys.stderr)
    if summary.failed or summary.skipped_failed:
        print("failure ledger: python -m harness status --table " + spec.id, file=sys.stderr)
    return 1 if summary.failed else 0


def _report_cancelled(err: Cancelled, args: argparse.Namespace) -> None:
    """One line: what was stopped, what is kept, how to resume."""
    ids = list(dict.fromkeys(getattr(args, "planned_ids", [])))
    kept = resumable = 0
    if ids:
        store = Store(args.results)
        kept = sum(store.record(c) is not None for c in ids)
        resumable = sum(store.record(c) is None and store.checkpoint_path(c).exists() for c in ids)
    running = ", ".join(c[:8] for c in err.running_cells) or "none"
    progress = (f"{kept}/{len(ids)} cells have results (kept), {resumable} will resume from an epoch checkpoint; "
                if ids else "nothing had started; ")
    print(f"\nreproduce cancelled by {err.signame}: stopped {err.stopped_workers} local worker(s) "
          f"(cells training: {running}); {progress}resume with: python -m harness {shlex.join(args.argv)}",
          file=sys.stderr)


def _detach_local(args: argparse.Namespace) -> int:
    """Re-run this command in a new session writing to a log, and return at once."""
    store = Store(args.results)
    log = store.log_dir / f"reproduce-{args.table}-{int(time.time())}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    argv = [a for a in args.argv if a != "--detach"]
    with open(log, "w") as f:
        proc = subprocess.Popen([sys.executable, "-m", "harness", *argv], stdout=f, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True, cwd=os.getcwd())
    print(f"detached (pid {proc.pid}); log: {log}\n  follow with: python -m harness status --table {args.table}")
    return 0
