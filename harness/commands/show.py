"""``python -m harness show --table ID [--row LABEL] [--dataset KEY] [--seed N]``: resolved cells as YAML.

What a cell of a table really is once the spec, its row, its column, the run's ``--set`` and the
preset are resolved: the model overrides, the recipe after ``train.*`` overrides (the dataset's
recipe where the method has several), what each weights key starts from and where that file or
stage is, the data folder, protocol and fingerprint, the cell id, and whether the store holds its
result. Nothing is trained or written (the plan is the one ``reproduce --dry-run`` makes).

The run configuration is the table's last ``reproduce`` (``--set``, ``--seeds``, ``--datasets``),
as for ``status`` and ``report``; the flags choose another.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml

from harness.commands.common import add_results_flag, add_run_config_flags, nonnegative_int, run_configs
from harness.errors import UserError
from harness.run.cells import SCALES


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``show`` command."""
    p = sub.add_parser("show", help="the resolved configuration of a table's cells, as YAML",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--table", required=True, help="table id, e.g. apvit_tab5 (see `tables`)")
    p.add_argument("--row", default=None, help="only this row (its label)")
    p.add_argument("--dataset", default=None, help="only this column (its key)")
    p.add_argument("--seed", type=nonnegative_int, default=None, help="only this seed")
    p.add_argument("--scale", default=None, choices=SCALES,
                   help="model preset (default: that of the last reproduce of the table, else tiny)")
    p.add_argument("--data-root", default=None,
                   help="real datasets under DIR/<dataset> (default: $FERBENCH_DATA_ROOT, else synthetic stand-ins)")
    p.add_argument("--cache-dir", default=None, help="where synthetic stand-ins are generated")
    p.add_argument("--weights-dir", default=None,
                   help="folder of pre-trained checkpoints (default: $FERBENCH_WEIGHTS)")
    p.add_argument("--stand-ins", action="store_true",
                   help="where a checkpoint file is missing, show the synthetic stage that would stand in")
    add_results_flag(p)
    add_run_config_flags(p)
    p.set_defaults(func=run)


def _pick(planned: list, attr: str, value: Any, flag: str) -> list:
    """The planned cells whose ``attr`` is ``value`` (None: all); an unknown value names the known ones."""
    if value is None:
        return planned
    known = list(dict.fromkeys(getattr(p, attr) for p in planned))
    if value not in known:
        raise UserError(f"{flag} {value!r} is not in this plan; allowed values: {', '.join(map(str, known))}")
    return [p for p in planned if getattr(p, attr) == value]


def cell_status(store, cell_id: str) -> str:
    """``ok`` (a valid record), ``failed`` (in the ledger), ``running`` (a live claim) or ``missing``."""
    if store is None:
        return "missing"
    if store.record(cell_id) is not None:
        return "ok"
    claim = store.claim_state(cell_id)
    if claim is not None and claim["state"] != "dead":
        return "running"
    return "failed" if store.failure(cell_id) is not None else "missing"


def describe_cell(planned, store) -> dict[str, Any]:
    """One planned cell as plain data: where it sits, what it runs, what it starts from, its state."""
    from harness.run.plan import cell_recipe
    from harness.run.weights import WeightRef

    cell = planned.cell
    weights = {}
    for key, ref in sorted(cell.weights.items()):
        parsed = WeightRef.parse(ref)
        weights[key] = {"from": parsed.label, "ref": ref,
                        **({"path": cell.weight_paths[key]} if key in cell.weight_paths else {}),
                        **({"stage_status": cell_status(store, parsed.digest)} if parsed.kind == "stage" else {})}
    return {
        "cell": cell.id, "status": cell_status(store, cell.id),
        "table": planned.table_id, "row": planned.row, "column": planned.dataset, "seed": planned.seed,
        "method": cell.method, "scale": cell.scale,
        "model": {k: v for k, v in cell.model.items() if not k.startswith("weights.")},
        "train": cell.train, "recipe": cell_recipe(cell).to_dict(), "weights": weights,
        "data": {"loader": cell.dataset, "protocol": cell.protocol, "root": cell.data_root,
                 "synthetic": cell.synthetic, "fingerprint": cell.fingerprint, "overrides": cell.data},
        "upstream": list(cell.upstream), "code_version": cell.code_version,
    }


def run(args: argparse.Namespace) -> int:
    """Plan the table as its run did (writing nothing), keep the matching cells, print them as YAML."""
    from harness.report.collect import run_spec
    from harness.run.plan import DataSource, WeightsSource, plan_table
    from harness.specs import load_spec
    from harness.store import Store

    load_spec(args.table)  # an unknown id fails here, with suggestions
    config = run_configs(args.results, [args.table], args)[args.table]
    spec = run_spec(args.table, config)
    store = Store(args.results, create=False) if Path(args.results).is_dir() else None
    recorded = (store.invocation(args.table) if store is not None else None) or {}
    scale = args.scale or recorded.get("scale") or "tiny"
    source = DataSource.from_args(args.data_root, args.cache_dir)
    source = DataSource(source.root, source.cache_dir, dry_run=True)  # show writes nothing
    weights = WeightsSource.from_args(args.weights_dir, args.stand_ins)
    planned = plan_table(spec, scale=scale, seeds=config.seeds, source=source, extra=config.extra, weights=weights)
    planned = _pick(planned, "row", args.row, "--row")
    planned = _pick(planned, "dataset", args.dataset, "--dataset")
    planned = _pick(planned, "seed", args.seed, "--seed")
    print(yaml.safe_dump([describe_cell(p, store) for p in planned], sort_keys=False, allow_unicode=True), end="")
    return 0

