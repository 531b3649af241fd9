"""Cells: one (row, dataset, seed, scale) of a table, resolved to a content-hashed run config.

A cell's id hashes everything that can change its result: the model name and overrides, the
training and data overrides, the dataset's fingerprint and protocol, the scale preset, the seed
and the version of the code that trains it. Table and row labels are *not* part of it, so the
same configuration in two tables (APViT's full model is in Tables 1, 5 and 6) runs once.

Plain data: this module imports neither torch nor the methods, so executors, the work queue and
``collect`` can move cells without them (validation lives in :mod:`harness.run.overrides`).

Override keys live in one namespace shared by table specs, ``--set`` and model constructors:

* ``train.<field>`` -- a field of :class:`methods.interface.Recipe` (``train.epochs: 2``);
* ``data.<knob>`` -- a knob of the synthetic stand-in generator (``data.occlusion: 0``);
* ``weights.<part>`` -- where a part of the model starts from: ``stage:<id>`` (a pre-training
  stage, :mod:`harness.stages`), ``file:<name>`` (a checkpoint in the weights folder), a path, or
  ``none`` (from scratch). The method's recipe (:attr:`~methods.interface.Recipe.init`) gives the
  default; the harness resolves it, the model only ever receives a local file path;
* anything else -- a model override, validated by the model's own constructor.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

SCALES = ("tiny", "paper")
SLOT_FIELDS = ("method", "model", "train", "data", "dataset", "protocol", "scale", "seed")


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace: the byte string that ids are hashed from."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def short_hash(obj: Any, n: int = 16) -> str:
    """First ``n`` hex digits of the SHA-256 of ``canonical_json(obj)``."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:n]


def split_overrides(overrides: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Split one override dict into ``(model, train, data)`` parts; prefixes are stripped."""
    model, train, data = {}, {}, {}
    for key, value in overrides.items():
        if key.startswith("train."):
            train[key[len("train."):]] = value
        elif key.startswith("data."):
            data[key[len("data."):]] = value
        else:
            model[key] = value
    return model, train, data


def is_weights_key(key: str) -> bool:
    """Whether an override key says where a part of the model starts from (``weights.*``)."""
    return key.startswith("weights.")


@dataclass(frozen=True)
class Cell:
    """A fully resolved run configuration. Plain data: it pickles and serialises to JSON."""

    method: str
    model: dict[str, Any]
    train: dict[str, Any]
    data: dict[str, Any]
    dataset: str
    protocol: str | None
    scale: str
    seed: int
    fingerprint: str
    code_version: str
    synthetic: bool
    data_root: str  # where the data lives now; not hashed, the fingerprint stands for the content
    upstream: tuple[str, ...] = ()  # ids of the cells (pre-training stages) this one starts from
    # What each weights key starts from, by content: "stage:<id>@<cell id>", "file:<sha256>" or
    # "none"; "standin:" in front marks a synthetic stage standing in for a missing file.
    weights: dict[str, str] = field(default_factory=dict)
    weight_paths: dict[str, str] = field(default_factory=dict)  # files, where they are now; not hashed
    stage: str | None = None  # the stage id, when this cell is a pre-training stage

    def identity(self) -> dict[str, Any]:
        """Everything that determines the result (the hashed part)."""
        d = dataclasses.asdict(self)
        d.pop("data_root")
        d.pop("weight_paths")
        return d

    @property
    def id(self) -> str:
        """Content hash of :meth:`identity`."""
        return short_hash(self.identity())

    def slot(self) -> str:
        """What a table cell asks for, whatever the code version, data fingerprint or data location.

        Two cells with the same slot but different ids are the same experiment run by different
        code or on changed data: the older result is *stale*.
        """
        return canonical_json({k: getattr(self, k) for k in SLOT_FIELDS})

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form, with ``id``."""
        return {**dataclasses.asdict(self), "id": self.id}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Cell":
        """Inverse of :meth:`to_dict`."""
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        kw["upstream"] = tuple(kw.get("upstream", ()))
        return cls(**kw)


@dataclass(frozen=True)
class PlannedCell:
    """A cell as it appears in a table: which row, which column."""

    table_id: str
    row: str
    row_index: int
    dataset: str
    seed: int
    cell: Cell = field(compare=False)
    stages: tuple[Cell, ...] = field(default=(), compare=False)  # upstream pre-training stage cells
