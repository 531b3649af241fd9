"""``python -m harness data check|synth``: inspect a dataset through the real loader, or
write a synthetic stand-in in a dataset's official layout."""
from __future__ import annotations

import argparse
import json
import sys
import time

from harness.errors import UserError


def add_parser(subparsers) -> None:
    """Register ``data`` with its ``check`` and ``synth`` sub-commands."""
    from harness.data import DATASETS
    from harness.data.synth import SCALES

    p = subparsers.add_parser("data", help="check a dataset or write a synthetic stand-in")
    sub = p.add_subparsers(dest="data_command", required=True, metavar="{check,synth}")
    c = sub.add_parser("check", help="load a dataset and print split sizes, class counts, fingerprint")
    c.add_argument("dataset", choices=DATASETS)
    c.add_argument("--root", default=None,
                   help="dataset folder (default: $FERBENCH_DATA_ROOT/<dataset>)")
    c.add_argument("--protocol", default=None, help="e.g. 7class/8class for affectnet")
    c.add_argument("--decode-size", type=int, default=112)
    c.add_argument("--val-fraction", type=float, default=0.1)
    c.add_argument("--split-seed", type=int, default=0)
    c.add_argument("--skip-bad", action="store_true", help="skip bad entries and list them")
    c.add_argument("--json", action="store_true", help="print one JSON object")
    c.set_defaults(func=run)
    s = sub.add_parser("synth", help="write a synthetic stand-in in the dataset's official layout")
    s.add_argument("dataset", choices=DATASETS)
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--scale", default="tiny", choices=tuple(SCALES))
    s.add_argument("--knob", action="append", default=[], metavar="NAME=VALUE",
                   help="override a difficulty knob, e.g. --knob occlusion=0 (repeatable)")
    s.set_defaults(func=run)
    p.set_defaults(func=run)


def _knobs(items: list[str]) -> dict:
    from harness.data.synth import Knobs
    types = {k: type(v) for k, v in Knobs().__dict__.items()}
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or name not in types:
            raise UserError(f"--knob {item!r}: expected NAME=VALUE with NAME in {', '.join(sorted(types))}")
        try:
            out[name] = types[name](value)
        except ValueError:
            raise UserError(f"--knob {item!r}: {value!r} is not a {types[name].__name__}") from None
    return out


def run(args: argparse.Namespace) -> int:
    """Dispatch ``data check`` / ``data synth``."""
    if args.data_command == "synth":
        from harness.data.synth import write_synthetic
        t0 = time.perf_counter()
        out = write_synthetic(args.dataset, args.out, scale=args.scale, seed=args.seed, **_knobs(args.knob))
        print(f"wrote synthetic {args.dataset} ({args.scale}, seed {args.seed}) to {out} "
              f"in {time.perf_counter() - t0:.1f}s")
        return 0
    from harness.data import load_dataset
    t0 = time.perf_counter()
    ds = load_dataset(args.dataset, args.root, protocol=args.protocol, decode_size=args.decode_size,
                      val_fraction=args.val_fraction, split_seed=args.split_seed, skip_bad=args.skip_bad)
    seconds = time.perf_counter() - t0
    counts = {name: dict(zip(ds.class_names, split.class_counts(ds.num_classes)))
              for name, split in ds.splits.items()}
    record = {"dataset": ds.name, "protocol": ds.protocol, "root": ds.root, "synthetic": ds.synthetic,
              "classes": ds.class_names, "splits": {k: len(v) for k, v in ds.splits.items()},
              "class_counts": counts, "fingerprint": ds.fingerprint, "split_info": ds.split_info,
              "skipped": ds.skipped, "warnings": ds.warnings, "has_votes": ds.splits["train"].votes is not None,
              "load_seconds": round(seconds, 3)}
    for line in ds.warnings:
        print(f"warning: {line}", file=sys.stderr)
    if args.json:
        print(json.dumps(record, sort_keys=True))
        return 0
    print(f"{ds.name} ({ds.protocol}) at {ds.root}{'  [synthetic]' if ds.synthetic else ''}")
    print(f"fingerprint {ds.fingerprint}   loaded in {seconds:.2f}s   val: {ds.split_info['val_source']}")
    width = max(len(c) for c in ds.class_names)
    print(f"{'':{width}}  " + "  ".join(f"{s:>6}" for s in ds.splits))
    for c in ds.class_names:
        print(f"{c:{width}}  " + "  ".join(f"{counts[s][c]:>6}" for s in ds.splits))
    print(f"{'total':{width}}  " + "  ".join(f"{len(v):>6}" for v in ds.splits.values()))
    for key, n in ds.split_info.get("dropped", {}).items():
        print(f"dropped (by the protocol): {n} x {key}")
    if ds.skipped:
        print(f"skipped {len(ds.skipped)} bad entries:")
        for line in ds.skipped:
            print(f"  {line}")
    return 0
