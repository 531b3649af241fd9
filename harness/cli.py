"""``python -m harness COMMAND ...``: one module per command under ``harness/commands``.

Each command module exposes ``add_parser(subparsers)``, which registers its sub-parser and sets
``func`` to a callable ``(args) -> int``.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys

from harness.errors import UserError

COMMANDS = ("tables", "models", "keys", "show", "reproduce", "status", "collect", "report", "publish", "flops", "latency",
            "throughput", "data", "eval", "predict")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """Build the top-level parser with every available command, or with ``only`` that one.

    Importing every command costs seconds (``reproduce`` pulls in torch and timm), so ``main``
    registers just the command it was asked for; ``--help`` with no command lists them all.
    """
    parser = argparse.ArgumentParser(prog="python -m harness", description="FERbench harness")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS if only not in COMMANDS else (only,):
        module_name = f"harness.commands.{name}"
        if importlib.util.find_spec(module_name) is None:
            continue
        importlib.import_module(module_name).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; bad input prints ``error: ...`` to stderr and exits with 2."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv[0] if argv else None).parse_args(argv)
    args.argv = argv  # commands that re-launch themselves (reproduce --detach) need it
    try:
        return int(args.func(args) or 0)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
