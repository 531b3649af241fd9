"""Type and range checks of ``train.*`` and ``data.*`` values, before anything runs.

The allowed values are data next to the fields they constrain: ``dataclasses.field`` metadata
``{"allowed": {"ge": 0, "lt": 1, "choices": (...)}}`` on :class:`methods.interface.Recipe` and on
:class:`harness.data.synth.Knobs` (:func:`harness.run.overrides.train_problems` and
:func:`harness.data.synth.data_problems` call :func:`value_problems`). This module only reads them, so a new field with bounds needs
no code here. Each problem is one line naming the key, the value and what is allowed.
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any

_OPS = {"ge": (">=", lambda v, b: v >= b), "gt": (">", lambda v, b: v > b),
        "le": ("<=", lambda v, b: v <= b), "lt": ("<", lambda v, b: v < b)}


def _type_ok(value: Any, hint: Any) -> tuple[bool, str]:
    """Whether ``value`` fits the annotation ``hint``; the second item names the type for messages."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        results = [_type_ok(value, a) for a in args]
        return any(ok for ok, _ in results), " or ".join(name for _, name in results)
    if hint is type(None):
        return value is None, "null"
    if hint is bool:
        return isinstance(value, bool), "true/false"
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool), "an integer"
    if hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return ok and math.isfinite(value), "a finite number"
    if hint is str:
        return isinstance(value, str), "a string"
    if origin in (tuple, list):
        return (isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)), "a list of strings"
    if origin is dict or hint is dict:
        return isinstance(value, dict), "a mapping"
    return True, str(hint)


def _allowed_text(limits: dict[str, Any]) -> str:
    if "choices" in limits:
        return "one of " + ", ".join(map(str, limits["choices"]))
    return " and ".join(f"{_OPS[k][0]} {v}" for k, v in limits.items() if k in _OPS)


def value_problems(cls: type, values: dict[str, Any], prefix: str,
                   extra_choices: dict[str, tuple[str, ...]] | None = None) -> list[str]:
    """Problems of ``values`` (field name -> value) against the fields of dataclass ``cls``.

    Unknown names are not reported here (the callers list the known keys). ``extra_choices``
    adds choices kept elsewhere (augmentation pipelines, loss names).
    """
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    problems = []
    for name, value in values.items():
        if name not in fields:
            continue
        key = f"{prefix}{name}={value!r}"
        ok, type_name = _type_ok(value, hints[name])
        if not ok:
            problems.append(f"{key}: expected {type_name}")
            continue
        limits = dict(fields[name].metadata.get("allowed", {}))
        if extra_choices and name in extra_choices:
            limits["choices"] = extra_choices[name]
        if value is None:
            continue
        if "choices" in limits and value not in limits["choices"]:
            problems.append(f"{key}: allowed values: {', '.join(map(str, limits['choices']))}")
        elif any(k in _OPS and not _OPS[k][1](value, b) for k, b in limits.items()):
            problems.append(f"{key}: allowed: {_allowed_text(limits)}")
    return problems
