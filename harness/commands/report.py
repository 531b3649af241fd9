"""``python -m harness report``: build the static HTML comparison report and print its path.

Latency: ``--benchmarks`` takes a CSV/Parquet frame, a pytest-benchmark JSON file or a folder of
them; without it, the pytest-benchmark JSON under ``<results>/benchmarks`` (where ``make bench``
autosaves) is read when there is any. A results folder with benchmarks but no table results
still gives a report (the latency section alone).

The report is built in a fresh folder beside ``--out`` and moved in only once complete (files of
the same name replaced, ``index.html`` last, other files left): a full disk or an error mid-way
leaves the previous report whole. A report whose inputs (the collected frame, the specs, the
benchmarks, the options and the report's own code and templates) are those it was built from
is left as it is (``<out>/.inputs.sha256`` holds their digest): a re-run with nothing new to
train does not redraw the figures and pictures.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
from pathlib import Path

import pandas as pd

from harness.commands.common import (add_results_flag, add_run_config_flags, check_output_dir, checked_datasets,
                                     run_configs)
from harness.errors import UserError


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``report`` command."""
    p = sub.add_parser("report", help="build the HTML comparison report from collected results")
    p.add_argument("--table", action="append", metavar="ID",
                   help="table id (repeatable); default: every table that has results")
    add_results_flag(p)
    p.add_argument("--out", default=os.environ.get("FERBENCH_REPORTS", "reports"),
                   help="report folder (default: $FERBENCH_REPORTS or ./reports)")
    p.add_argument("--scale", default=None, help="only results of this scale preset")
    p.add_argument("--frame", default=None, metavar="FILE",
                   help="rebuild from an exported frame.parquet instead of the results store")
    p.add_argument("--benchmarks", default=None, metavar="FILE",
                   help="latency results: pytest-benchmark JSON file or folder, or CSV/Parquet "
                        "(name, machine, median_ms, iqr_ms, gflops, ...); default: <results>/benchmarks")
    p.add_argument("--seed-test", choices=("paired-t", "wilcoxon", "welch"), default="paired-t",
                   help="the seed-level primary test against the baseline (default: paired t on seed-matched deltas)")
    p.add_argument("--no-pictures", action="store_true",
                   help="leave out the pictures (token keeps, GradCAM++, generated faces) rebuilt from stored weights")
    add_run_config_flags(p)
    p.set_defaults(func=run)


def _read_table_file(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    if path.suffix == ".csv":
        return pd.read_csv(path)
    raise UserError(f"{path}: expected a .csv or .parquet file")


def _read_benchmarks(path: Path) -> pd.DataFrame:
    from harness.report.benchmarks import load_benchmark_json

    if path.is_dir() or path.suffix == ".json":
        return load_benchmark_json([path])
    return _read_table_file(path)


def run(args: argparse.Namespace) -> int:
    """Collect (or read) the frame, build the report, print the path of index.html."""
    from harness.report.collect import RunConfig, collect_tables, one_scale, run_spec, tables_with_results
    from harness.specs import list_specs, load_spec

    check_output_dir(args.out)  # before any work: an existing file or an unwritable place is an error
    if args.frame:
        path = Path(args.frame)
        if not path.is_file() or path.suffix != ".parquet":
            raise UserError(f"--frame {path}: expected an existing frame.parquet written by a report")
        from harness.report.build import read_exported

        frame = read_exported(path)
        tables = args.table or list(dict.fromkeys(frame["table_id"]))
        keys = checked_datasets(tables, args.datasets)
        configs = {t: RunConfig({}, None, keys) for t in tables}
        if keys is not None:
            frame = frame[frame["dataset"].isin(keys)]
    else:
        results = Path(args.results)
        if not results.is_dir():
            raise UserError(f"results folder {results} does not exist (run `python -m harness reproduce` first, "
                            "or pass --results DIR)")
        bench_dir = results / "benchmarks"
        if args.benchmarks is None and bench_dir.is_dir():
            args.benchmarks = str(bench_dir)
        configs = run_configs(results, args.table or list_specs(), args)
        tables = args.table or tables_with_results(results, configs)
        if not tables and not args.benchmarks:
            raise UserError(f"no table has results in {results}, and there are no benchmarks in {bench_dir} "
                            "(run `make bench` or `python -m harness reproduce`)")
        specs_checked = [load_spec(t) for t in tables]  # a misspelt id fails here, with suggestions
        frame = (collect_tables([s.id for s in specs_checked], results, scale=args.scale, configs=configs) if tables
                 else pd.DataFrame(columns=["table_id", "row", "dataset", "seed", "status", "synthetic"]))
    specs = [s for t in tables if (s := run_spec(t, configs.get(t))) is not None]
    frame = one_scale(frame, args.scale)
    benchmarks = _read_benchmarks(Path(args.benchmarks)) if args.benchmarks else None
    if not tables and (benchmarks is None or benchmarks.empty):
        raise UserError(f"no table has results and {args.benchmarks} holds no pytest-benchmark results")
    out = Path(args.out)
    digest = inputs_digest(frame, specs, benchmarks, [args.seed_test, args.no_pictures, bool(args.frame)])
    marker = out / INPUTS_FILE
    if (out / "index.html").is_file() and marker.is_file() and marker.read_text().strip() == digest:
        print(f"report: up to date (its inputs have not changed): {out / 'index.html'}", file=sys.stderr)
        print(out / "index.html")
        return 0
    from harness.report.build import build_report, staged  # matplotlib and seaborn: only to build

    with staged(out, merge=True) as tmp, tempfile.TemporaryDirectory(prefix="ferbench-pictures.") as folder:
        pictures = None
        if not args.frame and not args.no_pictures and tables:
            from harness.pictures import make_pictures

            # a local report: pictures of real data too (publish leaves them out)
            pictures = make_pictures(Path(args.results), frame, specs, Path(folder))
        build_report(frame, specs, tmp, benchmarks=benchmarks, seed_test=args.seed_test, pictures=pictures)
        (tmp / INPUTS_FILE).write_text(digest + "\n")
    print(out / "index.html")
    return 0


INPUTS_FILE = ".inputs.sha256"
_REPORT_CODE = ("harness/report", "harness/stats", "harness/pictures.py", "harness/commands/report.py", "report_templates")


def inputs_digest(frame: pd.DataFrame, specs: list, benchmarks: pd.DataFrame | None, options: list) -> str:
    """SHA-256 of everything a report is built from: the frame, the specs, the benchmarks, the
    options and the bytes of the report's code and templates."""
    root = Path(__file__).resolve().parents[2]
    h = hashlib.sha256()
    for part in (frame, benchmarks):
        h.update(b"\0" if part is None else part.astype(str).to_csv(index=True).encode())
    h.update(repr([repr(s) for s in specs]).encode() + repr(options).encode())
    for name in _REPORT_CODE:
        path = root / name
        for f in sorted(path.rglob("*") if path.is_dir() else [path]):
            if f.is_file() and "__pycache__" not in f.parts:
                h.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes())
    return h.hexdigest()
