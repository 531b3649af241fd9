"""``python -m harness models``: the method families, their registered models and presets.

Read from timm's registry (a family registers its models on import), never a hand-kept list.
"""
from __future__ import annotations

import argparse
import json
from typing import Any


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``models`` command."""
    p = sub.add_parser("models", help="list the method families, their registered models and presets")
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.set_defaults(func=run_models)


def families() -> dict[str, dict[str, Any]]:
    """``{family: {"paper": first docstring line, "models": [...], "presets": [...]}}`` from timm's registry."""
    import timm

    from methods import FAMILIES  # importing it registers every family, plugins included
    from methods.interface import model_family, model_presets

    out = {}
    for name, module_name in FAMILIES.items():
        models = [m for m in timm.list_models() if timm.models.model_entrypoint(m).__module__ == module_name]
        if not models:
            continue  # a family module that registers nothing (yet)
        module = model_family(models[0])
        presets = model_presets(models[0])
        out[name] = {"paper": (module.__doc__ or "").strip().splitlines()[0], "models": models,
                     "presets": list(presets)}
    return out


def run_models(args: argparse.Namespace) -> int:
    """One line per family (its paper), then one per registered model with its presets."""
    fams = families()
    if args.json:
        print(json.dumps(fams, indent=1))
        return 0
    for name, fam in fams.items():
        print(f"{name}: {fam['paper']}")
        for model in fam["models"]:
            print(f"  {model:26s} presets: {', '.join(fam['presets'])}")
    return 0
