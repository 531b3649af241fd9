"""``python -m harness flops MODEL [--preset paper|tiny] [--set key=value ...] [--input-size N] [--json]``.

Builds ``MODEL`` with ``timm.create_model(MODEL, preset=..., **overrides)`` and counts its FLOPs
with :func:`harness.run.train.flops.count_flops` (fvcore, eval mode, batch 1, one multiply-add = one FLOP).
``--set`` values are parsed with ``yaml.safe_load`` so ``app.k=120`` is an int, ``atp.r=0.9`` a
float and ``atp.blocks=[6,7]`` a list. ``--input-size`` defaults to the model's recipe image size;
it must be at least the smallest one a recipe allows, and a size the model cannot run at (most
accept only the size they are built for) is refused naming that size.
With ``--json`` the output is one JSON object (model, preset, overrides, plus every field of
``count_flops``); without it, a short human-readable summary.
"""
from __future__ import annotations

import argparse
import json

from harness.commands.common import add_model_flags
from harness.errors import UserError
from harness.run.plan import parse_sets


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``flops`` command."""
    p = subparsers.add_parser("flops", help="count a model's FLOPs (fvcore, multiply-add = 1 FLOP)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_flags(p)
    p.add_argument("--input-size", type=int, default=None, help="square input side (default: recipe img_size)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Build the model, count its FLOPs, print the result."""
    import timm

    import methods  # noqa: F401  (registers the models)
    from harness.run.train.flops import count_flops
    from methods.interface import get_recipe

    overrides = parse_sets(args.sets)
    if not timm.is_model(args.model):
        known = ", ".join(n for n in timm.list_models()
                          if timm.models.model_entrypoint(n).__module__.startswith("methods."))
        raise UserError(f"unknown model {args.model!r}; FERbench models: {known or 'none registered'}")
    try:
        model = timm.create_model(args.model, preset=args.preset, **overrides)
    except (ValueError, TypeError) as err:
        raise UserError(f"{args.model} ({args.preset}): {err}") from None
    native = get_recipe(model).img_size
    size = args.input_size if args.input_size is not None else native
    smallest = _smallest_img_size()
    if size < smallest:
        raise UserError(f"--input-size {size}: must be at least {smallest} (the smallest img_size a recipe "
                        f"allows); {args.model} ({args.preset}) is built for {native}x{native}")
    try:
        result = count_flops(model, size)
    except (RuntimeError, ValueError, AssertionError) as err:
        if size == native and not isinstance(err, RuntimeError):
            raise  # the model fails at its own size: a bug, not bad input
        hint = "" if size == native else (f"; {args.model} ({args.preset}) is built for {native}x{native}, and "
                                          "most models accept only that size (omit --input-size to count at it)")
        reason = str(err) or type(err).__name__
        raise UserError(f"{args.model}: cannot trace at input size {size} ({reason}){hint}") from None
    record = {"model": args.model, "preset": args.preset, "overrides": overrides, **result}
    if args.json:
        print(json.dumps(record))
    else:
        print(f"{args.model} ({args.preset}, {size}x{size}): {result['gflops']:.3f} GFLOPs "
              f"({result['flop_convention']}), {result['params_m']:.2f} M params")
        if result["tokens_per_block"] is not None:
            print(f"tokens entering each block: {result['tokens_per_block']}; before head: {result['tokens_before_head']}")
        print(f"uncounted ops: {result['uncounted_ops']} (~{100 * result['uncounted_share']:.2f}% of FLOPs)")
    return 0


def _smallest_img_size() -> int:
    """The lower bound the training interface puts on ``Recipe.img_size``."""
    from dataclasses import fields

    from methods.interface import Recipe

    return next(f.metadata["allowed"]["ge"] for f in fields(Recipe) if f.name == "img_size")
