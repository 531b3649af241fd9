"""A generic class-folder layout: ``train/<class>/*``, ``test/<class>/*`` and optionally
``val/<class>/*``.

Class folder names are canonical class names or common aliases (case-insensitive, see
:data:`~harness.data.labels.FOLDER_ALIASES`). The classes are those present in train, in
canonical order. Without a ``val/`` folder val is carved from train.
"""
from __future__ import annotations

from pathlib import Path

from harness.data.base import BadEntries, RawDataset, RootGuard
from harness.data.labels import CANONICAL_CLASSES, FOLDER_ALIASES
from harness.data.sfew import read_class_folders
from harness.errors import UserError

PROTOCOLS = ("default",)


def read(root: Path, protocol: str, bad: BadEntries) -> RawDataset:
    """Read train/test (and val when present) class folders."""
    for split in ("train", "test"):
        if not (root / split).is_dir():
            raise UserError(f"{root / split}: missing split folder (the folder layout needs "
                            "train/<class>/ and test/<class>/)")
    guard = RootGuard(root)
    official = {s: read_class_folders(root / s, FOLDER_ALIASES, bad, guard, case_insensitive=True)
                for s in ("train", "val", "test") if (root / s).is_dir()}
    present = sorted({e.label for e in official["train"]})
    if not present:
        raise UserError(f"{root / 'train'}: no images in any class folder")
    classes = [CANONICAL_CLASSES[i] for i in present]
    remap = {old: new for new, old in enumerate(present)}
    for split, entries in official.items():
        for e in entries:
            if e.label not in remap:
                raise UserError(f"{e.where}: class {CANONICAL_CLASSES[e.label]!r} has no "
                                f"training images in {root / 'train'}")
            e.label = remap[e.label]
    return RawDataset(class_names=classes, official=official, annotation_files=[],
                      label_map={"aliases": FOLDER_ALIASES, "classes": classes},
                      val_policy="official" if "val" in official else "carve")


