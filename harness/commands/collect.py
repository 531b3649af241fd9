"""``python -m harness collect``: the tidy results frame, as CSV/Parquet/Markdown."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.collect import collect_tables, tables_with_results
from harness.commands.common import add_results_flag

SCALAR_COLUMNS = ["table_id", "row", "dataset", "seed", "scale", "status", "synthetic", "accuracy",
                  "mean_class_accuracy", "val_accuracy", "paper_value", "gflops", "params_m", "train_s",
                  "eval_s", "recipe", "cell_id", "error"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``collect`` command."""
    p = sub.add_parser("collect", help="collect results into a frame")
    p.add_argument("--table", action="append", help="table id(s); default: all with results")
    p.add_argument("--out", default=None, help="write FILE.csv or FILE.parquet instead of Markdown to stdout")
    add_results_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print (or write) one row per cell."""
    tables = args.table or tables_with_results(args.results)
    df = collect_tables(tables, args.results)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.suffix == ".parquet":
            df.drop(columns=["y_true", "y_pred"]).to_parquet(out)
        else:
            df[SCALAR_COLUMNS].to_csv(out, index=False)
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
