"""``python -m harness throughput MODEL [--preset paper|tiny] [--set key=value ...] [--batch 128]
[--amp auto|bf16|off] [--device auto|cpu|cuda[:N]] [--stage A|B|C|D|E] [--steps N] [--warmup N]
[--peak-tflops T] [--no-data] [--json]``.

Times the runner's training step (:mod:`harness.measure.throughput`): training images per second and
model FLOP utilisation, with a batch already on the device and with the real data path. ``--stage``
picks which pieces of the GPU path are on (A: the path before ... D: the runner's, E: D +
torch.compile); ``scripts/gpu_bench.py`` runs them all. With ``--json`` it prints one JSON object.
"""
from __future__ import annotations

import argparse
import json

from harness.commands.common import add_model_flags, nonnegative_int, positive_float, positive_int


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``throughput`` command."""
    p = subparsers.add_parser("throughput", help="training images/s and model FLOP utilisation of one model",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_flags(p)
    p.add_argument("--batch", type=positive_int, default=128, help="training batch (default 128)")
    p.add_argument("--amp", default="auto", choices=("auto", "bf16", "off"),
                   help="mixed precision (default auto: bf16 on CUDA, off on CPU)")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    p.add_argument("--stage", default="D", choices=("A", "B", "C", "D", "E"),
                   help="GPU-path pieces on (default D, the runner's; see harness.measure.throughput)")
    p.add_argument("--steps", type=positive_int, default=20, help="timed steps (default 20)")
    p.add_argument("--warmup", type=nonnegative_int, default=5,
                   help="untimed steps first, for cudnn.benchmark and compilation (default 5)")
    p.add_argument("--threads", type=positive_int, default=None, help="intra-op threads (default: torch's)")
    p.add_argument("--peak-tflops", type=positive_float, default=None,
                   help="the device's peak TFLOP/s for MFU (default: the table in harness.run.devices)")
    p.add_argument("--data-root", default=None, help="time the data path on DIR/rafdb (default: the synthetic stand-in)")
    p.add_argument("--no-data", action="store_true", help="time only the step on a batch already on the device")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Measure and print."""
    import methods  # noqa: F401  (registers the models)
    from harness.measure import throughput
    from harness.run.plan import parse_sets

    result = throughput.measure(args.model, args.preset, parse_sets(args.sets), batch=args.batch, amp=args.amp,
                                device=args.device, steps=args.steps, warmup=args.warmup, peak=args.peak_tflops,
                                real_data=not args.no_data, data_root=args.data_root, threads=args.threads,
                                speed=throughput.STAGES[args.stage])
    print(json.dumps(result, indent=1) if args.json else throughput.summary_line(result))
    return 0
