"""``python -m harness tables``: list the table specs."""
from __future__ import annotations

import argparse

from harness.specs import list_specs, load_spec


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``tables`` command."""
    p = sub.add_parser("tables", help="list the table specs")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print one line per spec: id, source, rows x datasets, caption."""
    for tid in list_specs():
        s = load_spec(tid)
        runnable = sum(not r.reference for r in s.rows)
        print(f"{tid:16s} {s.source.paper.split(' (')[0]} {s.source.table:9s} "
              f"{runnable} rows x {len(s.datasets)} datasets x {s.seeds} seeds  {s.caption[:60]}")
    return 0
