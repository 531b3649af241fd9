"""``python -m harness reproduce --table ID``: run what is missing of a paper table.

``--until-ci W --max-seeds N`` budgets seeds by precision: after the spec's seeds, rounds add
seeds to the rows whose seed-aware delta CI (``harness.stats``: two-level bootstrap) is still
wider than +-W points, until every row is within W or has N seeds. The rule looks at the CI's
width only, never at significance. Added seeds are ordinary cells (cached, ledgered); the
baseline of a dataset gets as many seeds as its neediest row, so every comparison stays
seed-matched. The budget (W, N, each round's counts) is written to
``<results>/budgets/<table>.json`` and the report says how many seeds each row got and why.

A table whose columns list ``eval_on`` targets also plans cross-dataset evaluations
(:mod:`harness.run.evals`): once the executor has finished, every trained cell with a record is
tested in this process on each target's test split (cached like cells; ``--dry-run`` lists them).
A local ``--detach`` run evaluates at its end, in its own session; a SLURM ``--detach`` evaluates
nothing: the next ``reproduce`` of the table, with every cell cached, evaluates.
"""
from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time

from harness.run.cells import SCALES, split_overrides
from harness.run.overrides import train_problems
from harness.data.synth import data_problems
from harness.commands.common import add_results_flag, nonnegative_int, positive_float, positive_int
from harness.errors import UserError, env
from harness.run.weights import WeightRef
from harness.run.executors import EXECUTORS, ExecutorConfig, check_executor, run_cells
from harness.run.interrupts import Cancelled, cancel_on_signals
from harness.run.tracking import MLFLOW_ENV, check_mlflow, mlflow_for_workers
from harness.run.evals import plan_evaluations
from harness.run.plan import MAX_CELLS, DataSource, WeightsSource, cell_recipe, parse_sets, plan_table, with_upstream
from harness.specs import dataset_keys, load_spec, restrict_datasets
from harness.store import Store, atomic_write_json


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``reproduce`` command."""
    p = sub.add_parser("reproduce", help="run the missing cells of a table")
    p.add_argument("--table", required=True, help="table id, e.g. apvit_tab5 (see `tables`)")
    p.add_argument("--scale", default="tiny", choices=SCALES, help="model preset and training budget")
    p.add_argument("--seeds", type=positive_int, default=None, help="number of seeds (default: the spec's)")
    p.add_argument("--datasets", default=None, metavar="KEY[,KEY]",
                   help="only these columns of the table (default: every one)")
    p.add_argument("--executor", default=None, help=f"one of {', '.join(EXECUTORS)} (default local)")
    p.add_argument("--profile", default=None, help="YAML executor profile (SLURM partition, time, ...)")
    p.add_argument("--device", default=None,
                   help="auto (default: CUDA when present), cpu, cuda or cuda:N; refused if this machine lacks it")
    p.add_argument("--max-parallel", type=positive_int, default=None,
                   help="concurrent cells (default: one per GPU with GPUs, else one per core)")
    p.add_argument("--threads", type=positive_int, default=None, help="threads per cell (default: cores / parallel)")
    p.add_argument("--cells-per-gpu", type=positive_int, default=None,
                   help="local: cells sharing each GPU (default 1; 2 keeps a GPU busy with small models)")
    p.add_argument("--timeout-min", type=positive_float, default=None, help="per-cell time limit (default 60)")
    p.add_argument("--partition", default=None, help="SLURM partition")
    p.add_argument("--gpus", type=nonnegative_int, default=None, help="SLURM GPUs per node")
    p.add_argument("--mem-gb", type=positive_float, default=None, help="SLURM memory per cell")
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
    p.add_argument("--max-retries", type=nonnegative_int, default=None, help="automatic retries of a failing cell")
    p.add_argument("--detach", action="store_true", help="submit and return; `status`/`collect` later")
    p.add_argument("--dry-run", action="store_true", help="plan and validate, run nothing")
    p.add_argument("--break-stale-claims", action="store_true",
                   help="take over cells claimed by a process on another host that this host cannot check "
                        "(a crashed container, a store copied from another machine); status lists such claims")
    p.add_argument("--skip-bad", action="store_true",
                   help="train without the dataset entries that do not load (listed by `data check --skip-bad`); "
                        "recorded as data.skip_bad, part of every cell's identity")
    p.add_argument("--yes", action="store_true",
                   help=f"plan a table of more than {MAX_CELLS} cells (refused without it, to catch typos)")
    p.add_argument("--until-ci", type=float, default=None, metavar="W",
                   help="add seeds in rounds to rows whose delta CI half-width is above W points")
    p.add_argument("--max-seeds", type=int, default=None, metavar="N",
                   help="the cap on seeds per row for --until-ci (required with it)")
    p.add_argument("--report", default=None, metavar="DIR",
                   help="then write this table's HTML report to DIR in the same process (what `report --table ID "
                        "--scale S --out DIR` writes), also when cells failed; `make reproduce` uses it")
    p.add_argument("--mlflow", default=None, metavar="URI",
                   help="also log every cell's training curves to this MLflow tracking URI, one run per cell "
                        f"(needs mlflow; default: ${MLFLOW_ENV}); TensorBoard event files are written either way")
    add_results_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Validate everything, then run the cells that lack a valid result.

    SIGTERM and SIGINT cancel the run the same way (:mod:`harness.run.interrupts`): local workers
    are stopped, claims released, finished results and epoch checkpoints kept; one line says
    what was cancelled and how to resume.
    """
    with cancel_on_signals():
        try:
            status = _run(args)
        except Cancelled as err:
            _report_cancelled(err, args)
            return err.exit_code
    if args.report and not args.dry_run and not args.detach:
        return _write_report(args) or status
    return status


def _write_report(args: argparse.Namespace) -> int:
    """The ``report`` command for this table and scale, in this process (torch and timm are
    imported already: a second interpreter would pay for them again)."""
    from harness.cli import build_parser

    argv = ["report", "--table", args.table, "--scale", args.scale, "--results", str(args.results),
            "--out", args.report]
    report = build_parser("report").parse_args(argv)
    return report.func(report)


def _check_set_values(extra: dict) -> None:
    """``--set train.*``/``data.*`` values, checked on their own so the message names ``--set``."""
    _, train, data = split_overrides(extra)
    problems = train_problems(train, prefix="--set train.") + data_problems(data, prefix="--set data.")
    if problems:
        raise UserError("; ".join(problems))


def _run(args: argparse.Namespace) -> int:
    t0 = time.time()
    check_mlflow(args.mlflow)
    check_mlflow(env(MLFLOW_ENV), f"${MLFLOW_ENV}")
    spec = restrict_datasets(load_spec(args.table), args.datasets)
    cfg = ExecutorConfig.from_profile(args.profile, name=args.executor, device=args.device,
                                      max_parallel=args.max_parallel, cells_per_gpu=args.cells_per_gpu,
                                      threads=args.threads, timeout_min=args.timeout_min,
                                      slurm_partition=args.partition, slurm_gpus_per_node=args.gpus,
                                      slurm_mem_gb=args.mem_gb, max_retries=args.max_retries,
                                      retry_failed=args.retry_failed or None, detach=args.detach or None,
                                      break_stale_claims=args.break_stale_claims or None)
    check_executor(cfg)
    _check_budget_args(args, spec)
    extra = _extra(args)
    _check_set_values(extra)
    source = DataSource.from_args(args.data_root, args.cache_dir)
    if args.dry_run:  # plan and print; write nothing, not even to the synthetic-data cache
        source = DataSource(source.root, source.cache_dir, dry_run=True)
    weights = WeightsSource.from_args(args.weights_dir, args.stand_ins)
    planned = plan_table(spec, scale=args.scale, seeds=args.seeds, source=source, extra=extra, weights=weights,
                         max_cells=_max_cells(args))
    cells = with_upstream(planned)
    if not planned:
        raise UserError(f"{spec.path}: the table plans no cell to run")
    evals = plan_evaluations(spec, planned, source)
    stages = [c for c in cells if c.stage]
    n_unique = len(cells) - len(stages)
    data_note = "SYNTHETIC stand-in data" if source.synthetic else f"data root {source.root}"
    stage_note = f" + {len(stages)} pre-training stage(s) ({', '.join(c.stage for c in stages)})" if stages else ""
    left_out = f" (left out: {', '.join(c.key for c in spec.left_out)})" if spec.left_out else ""
    print(f"{spec.id}: {len(spec.rows)} rows x {len(spec.datasets)} datasets{left_out} x {args.seeds or spec.seeds} seeds "
          f"= {n_unique} cells{stage_note} at scale {args.scale!r} on {data_note}; executor {cfg.name} "
          f"({cfg.parallel()} parallel x {cfg.cell_threads()} threads, device {cfg.device})", file=sys.stderr)
    if evals:
        print(f"{spec.id}: + {len(evals)} cross-dataset evaluation(s) of the trained cells (in this process, once "
              "their cells have records)", file=sys.stderr)
    if args.dry_run:
        for c in stages:
            print(f"{c.id}  stage:{c.stage:18s} {c.dataset:10s} seed {c.seed}")
        for p in planned:
            start = ", ".join(f"{k}={WeightRef.parse(v).label}" for k, v in sorted(p.cell.weights.items()))
            print(f"{p.cell.id}  {p.row:24s} {p.dataset:10s} seed {p.seed}  recipe {cell_recipe(p.cell).summary()}"
                  + (f"  from {start}" if start else ""))
        for e in evals:
            print(f"{e.evaluation.id}  eval {e.row:19s} {e.dataset} -> {e.target} seed {e.seed}  of cell "
                  f"{e.evaluation.cell_id}" + (f" ({e.evaluation.protocol})" if e.evaluation.protocol else ""))
        return 0
    store = Store(args.results)
    store.check_writable()  # a read-only or full store: one clear error before anything trains
    if cfg.detach and cfg.name != "slurm":
        return _detach_local(args)
    store.record_invocation(spec.id, overrides=extra, seeds=args.seeds, scale=args.scale, argv=args.argv,
                           datasets=dataset_keys(args.datasets))
    args.planned_ids = [c.id for c in cells]
    with mlflow_for_workers(args.mlflow):  # the workers read it from their environment
        summary = run_cells(cells, store, cfg)
        failed = len(summary.failed)
        if args.until_ci is not None:
            more, planned = _budget_rounds(args, spec, planned, store, cfg, source, weights)
            failed += more
            evals = plan_evaluations(spec, planned, source)  # the seeds the rounds added, too
    eval_line = ""
    if evals and not cfg.detach:
        from harness.run.evaluate import run_evaluations

        done = run_evaluations([e.evaluation for e in evals], store, threads=cfg.cell_threads(), device=cfg.device,
                               retry_failed=cfg.retry_failed)
        failed += len(done.failed)
        eval_line = f"; evaluations: {done.line()}"
    print(f"{spec.id}: {summary.line()}{eval_line} (total {time.time() - t0:.1f}s)", file=sys.stderr)
    if failed or summary.skipped_failed:
        print("failure ledger: python -m harness status --table " + spec.id, file=sys.stderr)
    return 1 if failed else 0


def _check_budget_args(args: argparse.Namespace, spec) -> None:
    if args.until_ci is None and args.max_seeds is None:
        return
    if args.until_ci is None or args.max_seeds is None:
        raise UserError("--until-ci W and --max-seeds N go together (a precision target needs a cap)")
    if not args.until_ci > 0:
        raise UserError(f"--until-ci {args.until_ci}: the half-width W must be > 0 points")
    start = args.seeds or spec.seeds
    if args.max_seeds < max(start, 2):
        raise UserError(f"--max-seeds {args.max_seeds}: must be at least the starting seeds ({start}) and 2")
    if spec.baseline is None:
        raise UserError(f"{spec.path}: --until-ci needs a baseline row (it budgets the delta's CI)")
    if args.detach:
        raise UserError("--until-ci runs in rounds and cannot --detach")


def _budget_rounds(args: argparse.Namespace, spec, planned, store: Store, cfg: ExecutorConfig,
                   source: DataSource, weights: WeightsSource) -> tuple[int, list]:
    """Add seeds in rounds until every delta CI is within ``--until-ci`` or at ``--max-seeds``;
    return the failures and the last plan."""
    from harness.report.collect import budget_path, collect_planned
    from harness.stats import compare_to_baseline
    from harness.stats.power import next_seed_counts

    extra = _extra(args)
    counts: dict[tuple[str, str], int] = {}
    for p in planned:
        counts[(p.row, p.dataset)] = max(counts.get((p.row, p.dataset), 0), p.seed + 1)
    rounds, failed = [], 0
    while True:
        comps = compare_to_baseline(collect_planned(spec, planned, store), aso_iterations=0)
        need, halves = next_seed_counts(comps, counts, args.until_ci, args.max_seeds, spec.baseline)
        rounds.append({"seeds": {f"{r} | {d}": n for (r, d), n in counts.items()}, "half_widths": halves})
        if not need:
            break
        counts.update(need)
        print(f"{spec.id}: round {len(rounds)}: delta CI above ±{args.until_ci:g} -> "
              + "; ".join(f"{r} / {d}: {n} seeds" for (r, d), n in need.items()), file=sys.stderr)
        planned = plan_table(spec, scale=args.scale, seeds=args.seeds, source=source, extra=extra, row_seeds=counts,
                             weights=weights, max_cells=_max_cells(args))
        failed += len(run_cells(with_upstream(planned), store, cfg).failed)
    atomic_write_json(budget_path(store.root, spec.id),
                      {"width": args.until_ci, "max_seeds": args.max_seeds, "scale": args.scale,
                       "extra": {k: str(v) for k, v in extra.items()}, "rounds": rounds})
    capped = [f"{r} / {d}" for (r, d), n in counts.items() if n >= args.max_seeds and r != spec.baseline]
    print(f"{spec.id}: seed budget done after {len(rounds)} round(s); at the cap of {args.max_seeds}: "
          f"{', '.join(capped) or 'none'}", file=sys.stderr)
    return failed, planned


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


def _max_cells(args: argparse.Namespace) -> int:
    return sys.maxsize if args.yes else MAX_CELLS


def _extra(args: argparse.Namespace) -> dict:
    """``--set`` overrides, and ``--skip-bad`` as the loader knob ``data.skip_bad``."""
    return {**parse_sets(args.set), **({"data.skip_bad": True} if args.skip_bad else {})}
