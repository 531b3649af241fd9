"""Expand a table spec into cells: rows × datasets × seeds at one scale.

Everything is checked here, before any job is submitted: override keys and values (by building
each distinct model configuration on the meta device), the data root, the dataset protocol.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from harness.cells import SCALES, Cell, PlannedCell, check_overrides, code_version, split_overrides
from harness.errors import UserError
from harness.specs import TableSpec

SYNTHETIC_SEED = 0  # the stand-in data is one fixed dataset; training seeds vary, the data does not
SYNTHETIC_SCALE = {"tiny": "tiny", "paper": "medium"}  # stand-in size per scale preset


@dataclass(frozen=True)
class DataSource:
    """Where a table's datasets come from: a real data root, or the synthetic stand-ins."""

    root: Path | None = None  # None: generate synthetic stand-ins
    cache_dir: Path | None = None
    dry_run: bool = False  # never write to the synthetic cache (``reproduce --dry-run``)

    @property
    def synthetic(self) -> bool:
        """Whether results will come from synthetic stand-in data."""
        return self.root is None

    @classmethod
    def from_args(cls, data_root: str | None, cache_dir: str | None = None) -> "DataSource":
        """``--data-root`` or ``$FERBENCH_DATA_ROOT``; neither means synthetic stand-ins."""
        root = data_root or os.environ.get("FERBENCH_DATA_ROOT")
        if root is not None and not Path(root).is_dir():
            raise UserError(f"data root {root!r} does not exist or is not a directory")
        return cls(Path(root) if root else None, Path(cache_dir) if cache_dir else None)


@lru_cache(maxsize=None)
def _resolve_dataset(source: DataSource, name: str, protocol: str | None, scale: str,
                     knobs: tuple[tuple[str, Any], ...]) -> tuple[str, str, bool]:
    from harness.data import load_dataset, synthetic_root

    if source.synthetic:
        root = synthetic_root(name, scale=SYNTHETIC_SCALE[scale], seed=SYNTHETIC_SEED, cache_dir=source.cache_dir,
                              write_cache=not source.dry_run, **dict(knobs))
    else:
        if knobs:
            raise UserError(f"data.* overrides {sorted(k for k, _ in knobs)} apply to synthetic data only")
        root = source.root / name
        if not root.is_dir():
            raise UserError(f"dataset {name!r}: {root} does not exist (data root {source.root})")
    ds = load_dataset(name, root, protocol=protocol, decode_size=32, split_seed=0)
    return str(root), ds.fingerprint, ds.synthetic


def plan_table(spec: TableSpec, *, scale: str = "tiny", seeds: int | None = None,
               source: DataSource = DataSource(), extra: dict[str, Any] | None = None) -> list[PlannedCell]:
    """Every cell of a table, validated. ``extra`` overrides apply to every row (``--set``)."""
    if scale not in SCALES:
        raise UserError(f"unknown scale {scale!r}; allowed: {', '.join(SCALES)}")
    n_seeds = seeds or spec.seeds
    planned: list[PlannedCell] = []
    checked: set[tuple] = set()
    for i, row in enumerate(spec.rows):
        if row.reference:
            continue
        for col in spec.datasets:
            method, overrides = spec.resolved(row, col)
            overrides = {**overrides, **(extra or {})}
            key = (method, tuple(sorted((k, repr(v)) for k, v in overrides.items())))
            if key not in checked:
                check_overrides(method, scale, overrides, f"{spec.path}: row {i + 1} ({row.label!r}), {col.key}")
                checked.add(key)
            model_o, train_o, data_o = split_overrides(overrides)
            root, fingerprint, synthetic = _resolve_dataset(source, col.key, col.protocol, scale,
                                                            tuple(sorted(data_o.items())))
            for seed in range(n_seeds):
                cell = Cell(method=method, model=model_o, train=train_o, data=data_o, dataset=col.key,
                            protocol=col.protocol, scale=scale, seed=seed, fingerprint=fingerprint,
                            code_version=code_version(method), synthetic=synthetic, data_root=root)
                planned.append(PlannedCell(spec.id, row.label, i, col.key, seed, cell))
    return planned


def parse_sets(items: list[str] | None) -> dict[str, Any]:
    """``["app.k=160", "head=gap"]`` -> ``{"app.k": 160, "head": "gap"}`` (values parsed as YAML)."""
    import yaml

    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set {item!r}: expected key=value")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as err:
            raise UserError(f"--set {item!r}: value is not valid YAML ({err})") from None
    return out
