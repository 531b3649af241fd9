"""``python -m harness reproduce --table ID``: run what is missing of a paper table."""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from harness.cells import SCALES
from harness.commands.common import add_results_flag
from harness.executors import EXECUTORS, ExecutorConfig, check_executor, run_cells
from harness.plan import DataSource, WeightsSource, parse_sets, plan_table, with_upstream
from harness.specs import load_spec
from harness.store import Store


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``reproduce`` command."""
    p = sub.add_parser("reproduce", help="run the missing cells of a table")
    p.add_argument("--table", required=True, help="table id, e.g. apvit_tab5 (see `tables`)")
    p.add_argument("--scale", default="tiny", choices=SCALES, help="model preset and training budget")
    p.add_argument("--seeds", type=int, default=None, help="number of seeds (default: the spec's)")
    p.add_argument("--executor", default=None, help=f"one of {', '.join(EXECUTORS)} (default local)")
    p.add_argument("--profile", default=None, help="YAML executor profile (SLURM partition, time, ...)")
    p.add_argument("--max-parallel", type=int, default=None, help="concurrent cells (default: cores)")
    p.add_argument("--threads", type=int, default=None, help="threads per cell (default: cores / parallel)")
    p.add_argument("--timeout-min", type=float, default=None, help="per-cell time limit (default 60)")
    p.add_argument("--partition", default=None, help="SLURM partition")
    p.add_argument("--gpus", type=int, default=None, help="SLURM GPUs per node")
    p.add_argument("--mem-gb", type=float, default=None, help="SLURM memory per cell")
    p.add_argument("--data-root", default=None,
                   help="real datasets under DIR/<dataset> (default: $FERBENCH_DATA_ROOT, else synthetic stand-ins)")
    p.add_argument("--cache-dir", default=None, help="where synthetic stand-ins are generated")
    p.add_argument("--weights-dir", default=None,
                   help="folder of pre-trained checkpoints named as the recipes expect (default: $FERBENCH_WEIGHTS)")
    p.add_argument("--stand-ins", action="store_true",
                   help="where a checkpoint file is missing, start from the recipe's synthetic pre-training stage "
                        "instead (marked as a stand-in in every record and report)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override applied to every row")
    p.add_argument("--retry-failed", action="store_true", help="re-run cells in the failure ledger")
    p.add_argument("--max-retries", type=int, default=None, help="automatic retries of a failing cell")
    p.add_argument("--detach", action="store_true", help="submit and return; `status`/`collect` later")
    p.add_argument("--dry-run", action="store_true", help="plan and validate, run nothing")
    add_results_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Validate everything, then run the cells that lack a valid result."""
    t0 = time.time()
    spec = load_spec(args.table)
    cfg = ExecutorConfig.from_profile(args.profile, name=args.executor, max_parallel=args.max_parallel,
                                      threads=args.threads, timeout_min=args.timeout_min,
                                      slurm_partition=args.partition, slurm_gpus_per_node=args.gpus,
                                      slurm_mem_gb=args.mem_gb, max_retries=args.max_retries,
                                      retry_failed=args.retry_failed or None, detach=args.detach or None)
    check_executor(cfg)
    source = DataSource.from_args(args.data_root, args.cache_dir)
    weights = WeightsSource.from_args(args.weights_dir, args.stand_ins)
    planned = plan_table(spec, scale=args.scale, seeds=args.seeds, source=source, extra=parse_sets(args.set),
                         weights=weights)
    cells = with_upstream(planned)
    stages = [c for c in cells if c.stage]
    n_unique = len(cells) - len(stages)
    data_note = "SYNTHETIC stand-in data" if source.synthetic else f"data root {source.root}"
    stage_note = f" + {len(stages)} pre-training stage(s) ({', '.join(c.stage for c in stages)})" if stages else ""
    print(f"{spec.id}: {len(spec.rows)} rows x {len(spec.datasets)} datasets x {args.seeds or spec.seeds} seeds "
          f"= {n_unique} cells{stage_note} at scale {args.scale!r} on {data_note}; executor {cfg.name} "
          f"({cfg.parallel()} parallel x {cfg.cell_threads()} threads)", file=sys.stderr)
    if args.dry_run:
        for c in stages:
            print(f"{c.id}  stage:{c.stage:18s} {c.dataset:10s} seed {c.seed}")
        for p in planned:
            start = ", ".join(f"{k}={v.split('@')[0]}" for k, v in sorted(p.cell.weights.items()))
            print(f"{p.cell.id}  {p.row:24s} {p.dataset:10s} seed {p.seed}" + (f"  from {start}" if start else ""))
        return 0
    if cfg.detach and cfg.name != "slurm":
        return _detach_local(args)
    summary = run_cells(cells, Store(args.results), cfg)
    print(f"{spec.id}: {summary.line()} (total {time.time() - t0:.1f}s)", file=sys.stderr)
    if summary.failed or summary.skipped_failed:
        print("failure ledger: python -m harness status --table " + spec.id, file=sys.stderr)
    return 1 if summary.failed else 0


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
