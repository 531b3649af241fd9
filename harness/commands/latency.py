"""``python -m harness latency MODEL [--preset paper|tiny] [--set key=value ...] [--batch N] [--threads N]
[--rounds N] [--warmup N] [--device cpu|cuda] [--selection] [--profile] --json``.

Times one configuration with the benchmark suite's protocol (:mod:`harness.measure.latency`): eval mode,
``torch.no_grad``, fixed thread count, warm-up rounds, then ``--rounds`` timed forwards of one
``[batch, 3, S, S]`` input. With ``--json`` it prints one JSON object (a stable interface used by
other checks) with at least ``median_ms``, ``iqr_ms``, ``rounds``, ``batch``, ``threads`` and
``gflops`` (fvcore, per image); also the token trace and the environment. ``--selection`` adds
``selection`` (APViT's token-selection time and its share of the forward); ``--profile`` prints a
``torch.profiler`` table to stderr. Bad input exits with status 2 and a one-line message.
"""
from __future__ import annotations

import argparse
import json
import sys

from harness.commands.common import add_model_flags
from harness.errors import UserError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``latency`` command."""
    from harness.measure.latency import DEFAULT_ROUNDS, DEFAULT_WARMUP

    p = subparsers.add_parser("latency", help="time one model configuration (the benchmark suite's protocol)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_flags(p)
    p.add_argument("--batch", type=int, default=1, help="images per forward (default 1)")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads (default: all CPUs available)")
    p.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS, help=f"timed rounds (default {DEFAULT_ROUNDS})")
    p.add_argument("--warmup", type=int, default=DEFAULT_WARMUP, help=f"warm-up rounds (default {DEFAULT_WARMUP})")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]")
    p.add_argument("--selection", action="store_true", help="also time APViT's token selection on its own")
    p.add_argument("--profile", action="store_true", help="print a torch.profiler table to stderr")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Measure, print the result."""
    import methods  # noqa: F401  (registers the models)
    from harness.measure import latency
    from harness.run.plan import parse_sets

    import yaml

    try:
        overrides = parse_sets(args.sets)
    except yaml.YAMLError as err:
        raise UserError(f"--set: a value is not valid YAML ({err})") from None
    if args.rounds < 1 or args.warmup < 0:
        raise UserError(f"--rounds {args.rounds} must be >= 1 and --warmup {args.warmup} >= 0")
    bench = latency.prepare(args.model, args.preset, overrides, batch=args.batch, threads=args.threads,
                            device=args.device)
    times = latency.time_rounds(bench.step, args.rounds, args.warmup)
    record = {**bench.info(), "warmup": args.warmup, **latency.summarise(times, args.batch)}
    if args.selection:
        record["selection"] = latency.selection_overhead(bench, forward_ms=record["median_ms"])
    if args.profile:
        print(latency.profile(bench), file=sys.stderr)
    if args.json:
        print(json.dumps(record, default=str))
    else:
        print(f"{args.model} ({args.preset}, batch {args.batch}, {bench.threads} threads, {bench.env['machine_id']}): "
              f"median {record['median_ms']:.2f} ms, IQR {record['iqr_ms']:.2f} ms over {record['rounds']} rounds "
              f"({record['warmup']} warm-up); {record['gflops']:.3f} GFLOPs/image")
        if "selection" in record:
            s = record["selection"]
            print(f"selection: {s['selection_ms']:.3f} ms = {100 * s['share']:.2f}% of the forward")
    return 0
