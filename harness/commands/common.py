"""Flags shared by several commands."""
from __future__ import annotations

import argparse
import os


def add_results_flag(p: argparse.ArgumentParser) -> None:
    """``--results DIR`` (default ``$FERBENCH_RESULTS`` or ``results``)."""
    p.add_argument("--results", default=os.environ.get("FERBENCH_RESULTS", "results"),
                   help="results store (default: $FERBENCH_RESULTS or ./results)")


def add_model_flags(p: argparse.ArgumentParser) -> None:
    """``MODEL [--preset paper|tiny] [--set KEY=VALUE ...]``: one model configuration."""
    p.add_argument("model", help="registered model name, e.g. apvit")
    p.add_argument("--preset", default="paper", choices=("paper", "tiny"))
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="model override (repeatable), e.g. --set app.k=120")
