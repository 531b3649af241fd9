"""``python -m harness collect``: the tidy results frame, as CSV/Parquet/Markdown.

In the CSV, a text cell that starts with ``=``, ``+``, ``-`` or ``@`` gets a leading ``'``, so that a
spreadsheet shows it rather than running it (:func:`harness.report.build.csv_text`)."""
from __future__ import annotations

import argparse
import sys

from harness.report.collect import collect_tables, tables_with_results
from harness.commands.common import add_results_flag, add_run_config_flags, check_output_file, run_configs
from harness.store import Store

SCALAR_COLUMNS = ["table_id", "row", "dataset", "seed", "scale", "status", "synthetic", "accuracy",
                  "mean_class_accuracy", "val_accuracy", "paper_value", "gflops", "params_m", "train_s",
                  "eval_s", "recipe", "cell_id", "error"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``collect`` command."""
    p = sub.add_parser("collect", help="collect results into a frame")
    p.add_argument("--table", action="append", help="table id(s); default: all with results")
    p.add_argument("--out", default=None, help="write FILE.csv or FILE.parquet instead of Markdown to stdout")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    add_results_flag(p)
    add_run_config_flags(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print (or write) one row per cell."""
    out = check_output_file(args.out, (".csv", ".parquet"), force=args.force) if args.out else None
    Store(args.results, create=False)  # a missing results folder is an error, never created
    if args.table:
        tables = args.table
        configs = run_configs(args.results, tables, args)
    else:
        from harness.specs import list_specs

        configs = run_configs(args.results, list_specs(), args)
        tables = tables_with_results(args.results, configs)
    df = collect_tables(tables, args.results, configs=configs)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.suffix == ".parquet":
            df.drop(columns=["y_true", "y_pred"]).to_parquet(out)
        else:
            from harness.report.build import to_csv

            to_csv(df[SCALAR_COLUMNS], out)  # text cells that a spreadsheet would run as formulas are quoted
        print(out)
        return 0
    if df.empty:
        print("no results", file=sys.stderr)
        return 0
    if df["synthetic"].fillna(False).astype(bool).any():
        print("NOTE: results marked synthetic come from the synthetic stand-in data; absolute values are not "
              "comparable with the paper.\n")
    print(df[SCALAR_COLUMNS].to_markdown(index=False, floatfmt=".2f"))
    return 0
