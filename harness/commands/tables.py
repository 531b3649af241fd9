"""``python -m harness tables``: list the table specs."""
from __future__ import annotations

import argparse
import sys

from harness.errors import UserError
from harness.specs import list_specs, load_spec, tables_dir


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``tables`` command."""
    p = sub.add_parser("tables", help="list the table specs")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print one line per spec: id, source, rows x datasets, caption.

    An invalid spec does not hide the others: every valid one is listed, each invalid one is
    named with its error on stderr, and the exit code is 2 if any is invalid.
    """
    invalid: list[str] = []
    for tid in list_specs():
        try:
            s = load_spec(tid)
        except UserError as err:
            invalid.append(tid)
            print(f"{tid:16s} INVALID (the error is on stderr)")
            print(f"error: {err}", file=sys.stderr)
            continue
        runnable = sum(not r.reference for r in s.rows)
        print(f"{tid:16s} {s.source.paper.split(' (')[0]} {s.source.table:9s} "
              f"{runnable} rows x {len(s.datasets)} datasets x {s.seeds} seeds  {s.caption[:60]}")
    if invalid:
        print(f"error: {len(invalid)} invalid table spec(s) in {tables_dir()}: {', '.join(invalid)}", file=sys.stderr)
        return 2
    return 0
