"""Override keys as data: each key's allowed values, meaning and checker, and the common checkers.

Every method validates its dotted override keys (``app.k``, ``transfer.p1``, ``weights.ir50``, ...)
with a table of :class:`OverrideKey`; a bad key or value raises ``ValueError`` naming the key and
its allowed values, which the harness passes on with the spec file and row.
"""
from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class OverrideKey:
    """One override key: its allowed values (for messages and docs), meaning and checker."""

    allowed: str
    doc: str
    check: Callable[[Any], Any]


def choice(key: str, allowed: tuple[Any, ...]) -> Callable[[Any], Any]:
    """A checker accepting exactly the values in ``allowed`` (never a bool standing in for 0/1)."""
    def check(value: Any) -> Any:
        if isinstance(value, bool) or value not in allowed:
            raise ValueError(f"{key}: {value!r} is not allowed; allowed values: {', '.join(map(str, allowed))}")
        return value
    return check


def flag(key: str) -> Callable[[Any], bool]:
    """A checker accepting only ``true``/``false`` (YAML booleans), not 0/1."""
    def check(value: Any) -> bool:
        if not isinstance(value, bool):
            raise ValueError(f"{key}: {value!r} is not allowed; allowed values: true, false")
        return value
    return check


def int_range(key: str, lo: int, hi: int | None = None) -> Callable[[Any], int]:
    """A checker for an integer in ``lo..hi`` (``hi=None``: no upper bound)."""
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < lo or (hi is not None and value > hi):
            span = f"{lo}..{hi}" if hi is not None else f">= {lo}"
            raise ValueError(f"{key}: {value!r} is not allowed; allowed values: an integer {span}")
        return value
    return check


def check_path(key: str) -> Callable[[Any], str | None]:
    """A checker for a local checkpoint path, or None."""
    def check(value: Any) -> str | None:
        if value is None:
            return None
        if not isinstance(value, (str, os.PathLike)):
            raise ValueError(f"{key}: {value!r} is not allowed; allowed values: a path to a local checkpoint file")
        return os.fspath(value)
    return check


def validate(overrides: dict[str, Any], keys: dict[str, OverrideKey]) -> dict[str, Any]:
    """Check dotted override keys and values against ``keys``; return them normalised."""
    unknown = sorted(set(overrides) - set(keys))
    if unknown:
        near = [m for k in unknown for m in difflib.get_close_matches(k, list(keys), n=1)]
        hint = f" (did you mean {', '.join(near)}?)" if near else ""
        raise ValueError(f"unknown override key(s) {', '.join(unknown)}{hint}; allowed keys: {', '.join(keys)}")
    return {key: keys[key].check(value) for key, value in overrides.items()}


def fraction(key: str) -> Callable[[Any], float]:
    """Checker: a number in [0, 1) (a mask ratio, a drop rate)."""
    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) < 1.0:
            raise ValueError(f"{key}: {value!r} is not allowed; allowed values: a number in [0, 1)")
        return float(value)
    return check


def load_weight_files(model: Any, paths: dict[str, Any], loaders: dict[str, Callable[[str], Any]]) -> None:
    """Load each ``weights.*`` key's local file (``paths[key]``; None = nothing) with its loader and keep
    the loader's report in ``model.weight_reports[key]``; a missing file is an error naming the key."""
    for key, load in loaders.items():
        path = paths[key]
        if path is None:
            continue
        if not os.path.isfile(path):
            raise ValueError(f"{key}: no such file {path!r}; allowed values: a path to a local checkpoint file")
        model.weight_reports[key] = load(path)
