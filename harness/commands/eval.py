"""``python -m harness eval MODEL --checkpoint FILE --dataset KEY``: evaluate a checkpoint under a cell's protocol.

A released checkpoint (the official APViT one, say) is evaluated exactly as a trained cell is:
the same loader, split, preprocessing (the recipe's normalisation and resize), metrics and
store. The command plans one cell of a one-row table whose row is::

    set: {weights.model: <FILE>, weights.<part>: none (every part the recipe would start from),
          train.epochs: 0, <--set overrides>}

so nothing is trained and the loaded weights are validated and tested once. The record is an
ordinary one: a row of any table with that ``set`` (the command prints it) names the same cell,
and ``collect``/``report`` show it beside the rows the harness trained -- "released checkpoint vs
our training" is one table. The checkpoint may be in the method's own layout or, for APViT, the
official release's (``extractor.*``/``vit.*``/``head.fc.*``), which is mapped key by key and
loaded strictly: every key that does not map is listed and the cell fails.

The cell runs in this process (the debug executor); a failure is recorded and printed, and no
debugger opens unless asked for (``--pdb``, or ``FERBENCH_PDB=1``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from harness.run.cells import SCALES
from harness.run.overrides import check_overrides
from harness.commands.common import add_results_flag
from harness.errors import UserError


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``eval`` command."""
    p = sub.add_parser("eval", help="evaluate a local checkpoint under a cell's protocol",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="registered model name, e.g. apvit")
    p.add_argument("--checkpoint", required=True,
                   help="checkpoint file (a path, or file:<name> in the weights folder)")
    p.add_argument("--dataset", required=True, help="dataset key (its folder under the data root), e.g. rafdb")
    p.add_argument("--loader", default=None, help="dataset loader when it differs from --dataset")
    p.add_argument("--protocol", default=None, help="dataset protocol, e.g. 7class for AffectNet")
    p.add_argument("--scale", default="paper", choices=SCALES, help="model preset (default paper)")
    p.add_argument("--seed", type=int, default=0, help="cell seed (evaluation draws nothing random; default 0)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="model or data override (repeatable)")
    p.add_argument("--data-root", default=None,
                   help="real datasets under DIR/<dataset> (default: $FERBENCH_DATA_ROOT, else synthetic stand-ins)")
    p.add_argument("--cache-dir", default=None, help="where synthetic stand-ins are generated")
    p.add_argument("--weights-dir", default=None, help="folder that file:<name> checkpoints are looked up in")
    p.add_argument("--threads", type=int, default=None, help="threads (default: all cores)")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    p.add_argument("--pdb", action="store_true",
                   help="open pdb post-mortem when the evaluation fails (default: record and print the error; "
                        "FERBENCH_PDB=1 does the same, also for reproduce --executor debug)")
    add_results_flag(p)
    p.set_defaults(func=run)


def eval_overrides(model: str, scale: str, checkpoint: str, extra: dict) -> dict:
    """The row ``set`` of an evaluation: the checkpoint, every other weights part from nothing, no training."""
    recipe = check_overrides(model, scale, {k: v for k, v in extra.items() if not k.startswith("weights.")},
                             f"eval {model}")
    if extra.get("train.epochs", 0) != 0:
        raise UserError(f"eval: train.epochs={extra['train.epochs']!r} is not allowed; allowed values: 0 "
                        "(evaluation trains nothing)")
    return {**{key: "none" for key in recipe.init}, "weights.model": checkpoint, **extra, "train.epochs": 0}


def build_eval_spec(model: str, dataset: str, loader: str | None, protocol: str | None, overrides: dict):
    """A one-row, one-column table spec whose only cell is the evaluation."""
    from harness.specs import parse_spec

    column = {"key": dataset, "label": dataset, **({"dataset": loader} if loader else {}),
              **({"protocol": protocol} if protocol else {})}
    data = {"id": "eval", "caption": f"{model}: a checkpoint evaluated under the harness's protocol",
            "source": {"paper": "-", "table": "-", "file": "-"}, "method": model, "datasets": [column],
            "seeds": 1, "rows": [{"label": "checkpoint", "set": overrides}]}
    return parse_spec(data, Path("eval.yaml"))


def run(args: argparse.Namespace) -> int:
    """Plan the evaluation cell, run it if the store lacks it, print its metrics and row ``set``."""
    from harness.run.executors import ExecutorConfig, check_executor, run_cells
    from harness.run.plan import DataSource, WeightsSource, parse_sets, plan_table
    from harness.store import Store

    extra = parse_sets(args.set)
    overrides = eval_overrides(args.model, args.scale, args.checkpoint, extra)
    spec = build_eval_spec(args.model, args.dataset, args.loader, args.protocol, overrides)
    source = DataSource.from_args(args.data_root, args.cache_dir)
    weights = WeightsSource.from_args(args.weights_dir)
    planned = [p for p in plan_table(spec, scale=args.scale, seeds=args.seed + 1, source=source, weights=weights)
               if p.seed == args.seed]
    cell = planned[0].cell
    store = Store(args.results)
    cfg = ExecutorConfig(name="debug", device=args.device, max_parallel=1, threads=args.threads, retry_failed=True,
                         pdb=args.pdb)
    check_executor(cfg)
    summary = run_cells([cell], store, cfg)
    rec = store.record(cell.id)
    if rec is None:
        fail = store.failure(cell.id) or {}
        print(f"eval failed: {fail.get('error_type')}: {fail.get('message')}", file=sys.stderr)
        return 1
    m = rec["metrics"]
    data_note = " (SYNTHETIC stand-in data)" if rec["data"]["synthetic"] else ""
    print(f"{cell.id}: {args.model} ({args.scale}) on {args.dataset}{data_note}, {summary.line()}: "
          f"accuracy {m['accuracy']:.2f}%, mean class accuracy {m['mean_class_accuracy']:.2f}%, "
          f"val {m['val_accuracy']:.2f}%")
    print("a table row naming this record:\n" + yaml.safe_dump({"set": overrides}, sort_keys=False).rstrip())
    return 0
