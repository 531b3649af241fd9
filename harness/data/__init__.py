"""Datasets for FERbench: loaders for the real FER datasets and a synthetic stand-in.

Public API::

    load_dataset(name, root, protocol=..., decode_size=112, val_fraction=0.1, split_seed=0,
                 skip_bad=False) -> FERDataset
    synthetic_root(name, scale="tiny", seed=0, cache_dir=None, **knobs) -> Path
    build_transform(name, img_size, train=...) -> (uint8 [B,3,S,S], Generator) -> float [B,3,s,s]
    iterate_batches(split, batch_size=..., transform=..., seed=..., epoch=..., shuffle=...,
                    sampler="none") -> (x, y, index) batches

Every loader reads its dataset's official files; labels are mapped to
:data:`CANONICAL_CLASSES` through one table per dataset in :mod:`harness.data.labels`.
"""
from __future__ import annotations

from pathlib import Path

from harness.data import affectnet, expw, faceid, ferplus, folder, imagenet, rafdb, sfew
from harness.data.base import BadEntries, FERDataset, Split, assemble
from harness.data.batches import iterate_batches, num_batches, repeat_factors
from harness.data.labels import CANONICAL_CLASSES
from harness.data.synth import synthetic_root
from harness.data.transforms import build_transform
from harness.errors import UserError, env

DATASETS: tuple[str, ...] = ("rafdb", "ferplus", "affectnet", "sfew", "expw", "folder", "faceid", "imagenet")
_LOADERS = {"rafdb": rafdb, "ferplus": ferplus, "affectnet": affectnet, "sfew": sfew,
            "expw": expw, "folder": folder, "faceid": faceid, "imagenet": imagenet}
DATA_ROOT_ENV = "FERBENCH_DATA_ROOT"

__all__ = ["CANONICAL_CLASSES", "DATASETS", "FERDataset", "Split", "build_transform",
           "iterate_batches", "load_dataset", "num_batches", "protocols", "repeat_factors", "resolve_root",
           "synthetic_root"]


def protocols(name: str) -> tuple[str, ...]:
    """The protocols a dataset supports; the first is the default."""
    return _loader(name).PROTOCOLS


def resolve_root(name: str, root: str | Path | None) -> Path:
    """``root`` if given, else ``$FERBENCH_DATA_ROOT/<name>``; raise UserError if neither."""
    if root is None or str(root) == "":
        base = env(DATA_ROOT_ENV)
        if not base:
            raise UserError(f"no data root for {name}: pass --root DIR or set {DATA_ROOT_ENV} "
                            f"(the loader then reads ${DATA_ROOT_ENV}/{name})")
        root = Path(base) / name
    path = Path(root).expanduser()
    if not path.is_dir():
        raise UserError(f"{path}: data root for {name} is not a directory")
    return path


def _loader(name: str):
    if name not in _LOADERS:
        raise UserError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    return _LOADERS[name]


def load_dataset(name: str, root: str | Path | None, *, protocol: str | None = None,
                 decode_size: int = 112, val_fraction: float = 0.1, split_seed: int = 0,
                 skip_bad: bool = False, cache: bool = True) -> FERDataset:
    """Load a dataset from its official files: decoded uint8 splits "train", "val", "test".

    Images are decoded once (grey replicated to RGB) and resized to ``decode_size``. Val is
    carved from train (seeded, stratified, ``val_fraction``) unless the dataset has an
    official validation split that is not its test set. Bad entries raise a UserError naming
    the file and line/entry; with ``skip_bad`` they are skipped and listed in ``skipped``.
    ``root=None`` reads ``$FERBENCH_DATA_ROOT/<name>``. The decoded images are a memory-mapped
    file shared by every process that loads the same data (:mod:`harness.data.base`);
    ``cache=False`` neither reads nor writes it.
    """
    module = _loader(name)
    protocol = protocol or module.PROTOCOLS[0]
    if protocol not in module.PROTOCOLS:
        raise UserError(f"unknown protocol {protocol!r} for {name}; known: {', '.join(module.PROTOCOLS)}")
    if decode_size < 8:
        raise UserError(f"decode_size must be at least 8, got {decode_size}")
    path = resolve_root(name, root)
    bad = BadEntries(skip_bad, name, path)
    raw = module.read(path, protocol, bad)
    raw.skipped = bad.skipped
    return assemble(name, protocol, path, raw, decode_size=decode_size, val_fraction=val_fraction,
                    split_seed=split_seed, skip_bad=skip_bad, cache=cache)
