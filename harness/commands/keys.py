"""``python -m harness keys MODEL [--preset P]``: every key a model takes, with its default and allowed values.

Read from the model's own validation (its family's ``describe_overrides``), the fields of
:class:`methods.interface.Recipe` with their limits and the preset's values, and the data knobs,
never a hand-kept list, so a new key shows here the moment it exists.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import fields
from typing import Any

from harness.commands.common import check_model_preset


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``keys`` command."""
    k = sub.add_parser("keys", help="every override key of a model: model, train.* and data.*")
    k.add_argument("model", help="a registered model name (see `models`)")
    k.add_argument("--preset", default="tiny", help="the preset whose defaults to show (default tiny)")
    k.add_argument("--json", action="store_true", help="one JSON object")
    k.set_defaults(func=run_keys)


def _recipe(model: str, preset: str):
    import timm
    import torch

    with torch.device("meta"):
        return timm.create_model(model, preset=preset).recipe


def keys(model: str, preset: str) -> dict[str, dict[str, dict[str, Any]]]:
    """``{"model": {...}, "train": {...}, "data": {...}}``: every key with allowed values, default, meaning."""
    from harness.data.align import ALIGN_KNOBS, METHODS
    from harness.data.base import LOADER_KNOBS
    from harness.data.synth.knobs import Knobs
    from harness.data.transforms import PIPELINES
    from methods.interface import describe_overrides, recipe_fields
    from methods.losses import LOSSES

    check_model_preset(model, preset)
    model_keys = describe_overrides(model, preset)  # {} for a family without override keys
    train = {f"train.{k}": {**v, "doc": ""} for k, v in recipe_fields(_recipe(model, preset)).items() if k != "name"}
    train["train.augment"]["allowed"] = " | ".join(PIPELINES)  # the registries the harness checks names against
    train["train.loss"]["allowed"] = " | ".join(sorted(LOSSES))
    data = {"data.train_limit": {"allowed": "int >= 1, or a fraction in (0, 1)", "default": None,
                                 "doc": "a seeded, stratified subsample of the training split (any dataset)"},
            "data.skip_bad": {"allowed": "true | false", "default": False,
                              "doc": "train without the entries that do not load (listed by `data check --skip-bad`)"},
            "data.align": {"allowed": " | ".join(METHODS), "default": None,
                           "doc": "train and test on an aligned copy of the dataset (`data align`)"},
            "data.align_size": {"allowed": "int >= 16", "default": None, "doc": "the aligned copy's side in pixels"}}
    # a knob the loaders gain must be described here (this test-free guard fails loudly otherwise)
    if set(LOADER_KNOBS) | set(ALIGN_KNOBS) != {k.split(".", 1)[1] for k in data}:
        raise RuntimeError("harness keys: a data.* loader knob is not described")
    for f in fields(Knobs):
        data[f"data.{f.name}"] = {"allowed": f.metadata.get("allowed", ""), "default": f.default,
                                  "doc": "synthetic stand-ins only"}
    return {"model": model_keys, "train": train, "data": data}


def _text(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items()) or "any"
    return str(value)


def run_keys(args: argparse.Namespace) -> int:
    """Print each key: name, default at the preset, allowed values, meaning."""
    out = keys(args.model, args.preset)
    if args.json:
        print(json.dumps(out, indent=1, default=str))
        return 0
    for group, entries in out.items():
        print(f"# {group}.* keys of {args.model} at preset {args.preset}" if group == "model"
              else f"# {group}.* keys")
        for key, d in entries.items():
            doc = f"  {d['doc']}" if d.get("doc") else ""
            print(f"{key:28s} default {_text(d['default'])!s:24s} allowed: {_text(d['allowed'])}{doc}")
    return 0
