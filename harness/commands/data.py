"""``python -m harness data check|synth|align``: inspect a dataset through the real loader,
write a synthetic stand-in in a dataset's official layout, or write an aligned copy of one."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from harness.errors import UserError


def add_parser(subparsers) -> None:
    """Register ``data`` with its ``check``, ``synth`` and ``align`` sub-commands."""
    from harness.data import DATASETS
    from harness.data.align import FITS, JOBS, METHODS, RULES, TEMPLATES
    from harness.data.synth import SCALES

    p = subparsers.add_parser("data", help="check a dataset, write a synthetic stand-in or an aligned copy")
    sub = p.add_subparsers(dest="data_command", required=True, metavar="{check,synth,align}")
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
    a = sub.add_parser("align", help="write a face-aligned copy in the dataset's own layout, with a manifest")
    a.add_argument("dataset", choices=tuple(JOBS))
    a.add_argument("--root", default=None,
                   help="dataset folder (default: $FERBENCH_DATA_ROOT/<dataset>)")
    a.add_argument("--out", required=True, help="output folder (new or empty)")
    a.add_argument("--method", default="mtcnn", choices=METHODS,
                   help="mtcnn: detect five points; landmarks: the points the dataset ships")
    a.add_argument("--size", type=int, default=112, help="side of the aligned square crop in pixels")
    a.add_argument("--template", default="evolve", choices=tuple(TEMPLATES),
                   help="reference points (face.evoLVe's, scaled to --size)")
    a.add_argument("--rule", default="confident", choices=RULES,
                   help="which face to keep when MTCNN finds several")
    a.add_argument("--fit", default="five", choices=FITS,
                   help="five: least squares over the five points, as face.evoLVe (default); "
                        "eyes: both eye centres exactly on the template's")
    a.add_argument("--skip-bad", action="store_true", help="skip bad entries and list them")
    a.add_argument("--no-progress", action="store_true", help="no progress bar")
    a.set_defaults(func=run)
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


def _check_out_folder(out: Path) -> None:
    """``--out`` must be a folder or a path one can create: neither it nor a parent a non-folder."""
    for p in (out, *out.parents):
        if p.exists() or p.is_symlink():
            if not p.is_dir():
                what = "it exists" if p == out else f"{p} (a parent of it) exists"
                raise UserError(f"--out {out}: {what} and is not a folder; name a new or existing folder")
            return


def run(args: argparse.Namespace) -> int:
    """Dispatch ``data check`` / ``data synth`` / ``data align``."""
    if args.data_command == "align":
        return _align(args)
    if args.data_command == "synth":
        from harness.data.synth import write_synthetic
        knobs = _knobs(args.knob)
        _check_out_folder(Path(args.out))
        t0 = time.perf_counter()
        try:
            out = write_synthetic(args.dataset, args.out, scale=args.scale, seed=args.seed, **knobs)
        except OSError as err:
            raise UserError(f"--out {args.out}: cannot write the stand-in there ({err})") from None
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
    for key, text in ds.split_info.get("labels", {}).items():
        print(f"{key}: {text}")
    al = ds.split_info.get("alignment")
    print("alignment: as shipped" if al is None else
          f"alignment: {al['method']} ({al['template']} template{', ' + al['fit'] + ' fit' if al.get('fit') else ''}, "
          f"{al['size']}px), "
          + ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in al["counts"].items()))
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


def _align(args: argparse.Namespace) -> int:
    from harness.data.align import MANIFEST, align_dataset

    t0 = time.perf_counter()
    summary = align_dataset(args.dataset, args.root, args.out, method=args.method, size=args.size,
                            template=args.template, rule=args.rule, fit=args.fit, skip_bad=args.skip_bad,
                            progress=not args.no_progress)
    counts = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in summary["counts"].items())
    print(f"aligned {summary['images']} {args.dataset} images ({args.method}, {args.template} template, "
          f"{args.fit} fit, {args.size}px) into {args.out} in {time.perf_counter() - t0:.1f}s: {counts}")
    if summary["fallbacks"]:
        print(f"{len(summary['fallbacks'])} fell back to a centre crop (listed in {args.out}/{MANIFEST}):")
        for name in summary["fallbacks"][:20]:
            print(f"  {name}")
        if len(summary["fallbacks"]) > 20:
            print(f"  ... and {len(summary['fallbacks']) - 20} more")
    for line in summary["skipped"]:
        print(f"skipped: {line}")
    return 0
