"""Flags shared by several commands."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from harness.errors import UserError, env


def add_results_flag(p: argparse.ArgumentParser) -> None:
    """``--results DIR`` (default ``$FERBENCH_RESULTS`` or ``results``)."""
    p.add_argument("--results", default=env("FERBENCH_RESULTS", "results"),
                   help="results store (default: $FERBENCH_RESULTS or ./results)")


def check_model_preset(model: str, preset: str) -> None:
    """Refuse (``UserError``) a model timm does not know, or a preset the model cannot be built at."""
    import timm

    import methods  # noqa: F401  (registers the models)
    from methods.interface import model_presets

    if not timm.is_model(model):
        raise UserError(f"unknown model {model!r}; `python -m harness models` lists them")
    presets = model_presets(model)
    if preset not in presets:
        raise UserError(f"--preset {preset!r} is not allowed for {model}; allowed values: {', '.join(presets)}")


def add_model_flags(p: argparse.ArgumentParser) -> None:
    """``MODEL [--preset paper|tiny] [--set KEY=VALUE ...]``: one model configuration."""
    p.add_argument("model", help="registered model name, e.g. apvit")
    p.add_argument("--preset", default="paper", choices=("paper", "tiny"))
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="model override (repeatable), e.g. --set app.k=120")


def _bounded(kind: type, low: float, strict: bool):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
        if value < low or (strict and value == low) or value != value:
            raise argparse.ArgumentTypeError(f"{text} is out of range: must be {'>' if strict else '>='} {low:g}")
        return value
    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


positive_int = _bounded(int, 1, strict=False)  # >= 1
nonnegative_int = _bounded(int, 0, strict=False)  # >= 0
positive_float = _bounded(float, 0, strict=True)  # > 0


def add_run_config_flags(p: argparse.ArgumentParser) -> None:
    """``--set``/``--seeds``/``--spec-only``: which run configuration of a table to show.

    By default a table is shown as its last ``reproduce`` ran it (the ``--set`` overrides and
    ``--seeds`` that the store recorded); explicit flags choose another configuration.
    """
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="overrides of the run to show (default: those of the last reproduce of the table)")
    p.add_argument("--seeds", type=positive_int, default=None,
                   help="seed count of the run to show (default: that of the last reproduce, else the spec's)")
    p.add_argument("--spec-only", action="store_true",
                   help="show the tables as their specs state them, ignoring the last reproduce's "
                        "--set/--seeds/--datasets")
    p.add_argument("--datasets", default=None, metavar="KEY[,KEY]",
                   help="only these columns (default: those of the last reproduce of each table, else every "
                        "one); a table with none of them is left out")


def run_configs(results: str | os.PathLike, tables: list[str], args: argparse.Namespace) -> dict:
    """``{table id: RunConfig}`` to show: explicit flags, else the recorded run.

    Explicit ``--datasets`` keys must each be a column of at least one of ``tables``.
    """
    from harness.report.collect import RunConfig
    from harness.run.plan import parse_sets
    from harness.store import Store

    explicit = parse_sets(getattr(args, "set", None))
    seeds = getattr(args, "seeds", None)
    datasets = checked_datasets(tables, getattr(args, "datasets", None))
    if explicit or getattr(args, "spec_only", False):
        return {t: RunConfig(explicit, seeds, datasets) for t in tables}
    store = Store(results, create=False) if Path(results).is_dir() else None  # no store: nothing recorded
    out = {}
    for t in tables:
        inv = (store.invocation(t) if store is not None else None) or {}
        recorded = inv.get("datasets")
        out[t] = RunConfig(inv.get("set", {}), seeds or inv.get("seeds"),
                           datasets or (tuple(recorded) if recorded else None))
    return out


def checked_datasets(tables: list[str], text: str | None) -> tuple[str, ...] | None:
    """``--datasets`` as keys, each a column of at least one of ``tables`` (None: every column)."""
    from harness.specs import dataset_keys, load_spec

    keys = dataset_keys(text)
    if keys is not None:
        known = {c.key for t in tables for c in load_spec(t).datasets}
        unknown = [k for k in keys if k not in known]
        if unknown:
            raise UserError(f"--datasets: {', '.join(unknown)} is not a column of "
                            f"{tables[0] if len(tables) == 1 else 'any of these tables'}; allowed values: "
                            f"{', '.join(sorted(known))}")
    return keys


def check_output_file(path: str | os.PathLike, suffixes: tuple[str, ...], *, force: bool) -> Path:
    """An output file that can be written: a known suffix, not a folder, not overwritten without ``force``."""

    out = Path(path)
    if out.is_dir():
        raise UserError(f"--out {out} is a folder; give a file name ending in {' or '.join(suffixes)}")
    if out.suffix not in suffixes:
        raise UserError(f"--out {out}: unknown file type {out.suffix or '(none)'!r}; allowed: {', '.join(suffixes)}")
    if out.exists() and not force:
        raise UserError(f"--out {out} exists; pass --force to overwrite it")
    _check_parent_writable(out.parent)
    return out


def check_output_dir(path: str | os.PathLike) -> Path:
    """An output folder that exists as a folder or can be created."""

    out = Path(path)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a folder; the report is a folder (index.html, tables/, ...)")
    _check_parent_writable(out if out.exists() else out.parent)
    return out


def _check_parent_writable(folder) -> None:

    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"cannot write under {folder}: {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"cannot write under {folder}: {existing} is not writable")
