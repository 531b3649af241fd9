"""Flags shared by several commands."""
from __future__ import annotations

import argparse
import os


def add_results_flag(p: argparse.ArgumentParser) -> None:
    """``--results DIR`` (default ``$FERBENCH_RESULTS`` or ``results``)."""
    p.add_argument("--results", default=os.environ.get("FERBENCH_RESULTS", "results"),
                   help="results store (default: $FERBENCH_RESULTS or ./results)")
