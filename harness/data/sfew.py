"""SFEW 2.0: class folders (Angry, Disgust, Fear, Happy, Neutral, Sad, Surprise) under
``Train/`` and ``Val/``.

SFEW's test labels are not public, so the official Val set is the test set (as in the
papers) and val is carved from Train.
"""
from __future__ import annotations

from pathlib import Path

from harness.data.base import BadEntries, Entry, RawDataset, RootGuard
from harness.data.labels import CANONICAL_INDEX, SEVEN_CLASSES, SFEW_FOLDERS
from harness.errors import UserError

PROTOCOLS = ("default",)


def _find(root: Path, names: tuple[str, ...]) -> Path:
    for n in names:
        if (root / n).is_dir():
            return root / n
    raise UserError(f"{root}: missing SFEW split folder (looked for {', '.join(names)})")


def read_class_folders(split_dir: Path, mapping: dict[str, str], bad: BadEntries, guard: RootGuard,
                       case_insensitive: bool = False) -> list[Entry]:
    """Entries from ``split_dir/<class folder>/<image>``; an unknown folder is a bad entry, and so
    is a folder or image that ``guard`` finds outside the dataset root (a symbolic link to elsewhere)."""
    lookup = {k.lower(): v for k, v in mapping.items()} if case_insensitive else mapping
    entries: list[Entry] = []
    for folder in sorted(p for p in split_dir.iterdir() if p.is_dir()):
        key = folder.name.lower() if case_insensitive else folder.name
        if key not in lookup:
            bad.report(f"{folder}: unknown class folder {folder.name!r} "
                       f"(expected one of {', '.join(sorted(mapping))})")
            continue
        label = CANONICAL_INDEX[lookup[key]]
        for img in guard.images(folder, bad):
            entries.append(Entry(name=f"{folder.name}/{img.name}", label=label, source=img,
                                 where=str(img)))
    return entries


def read(root: Path, protocol: str, bad: BadEntries) -> RawDataset:
    """Read Train -> train (val carved from it) and Val -> test."""
    train_dir = _find(root, ("Train", "train"))
    test_dir = _find(root, ("Val", "val"))
    guard = RootGuard(root)
    official = {"train": read_class_folders(train_dir, SFEW_FOLDERS, bad, guard),
                "test": read_class_folders(test_dir, SFEW_FOLDERS, bad, guard)}
    return RawDataset(class_names=list(SEVEN_CLASSES), official=official, annotation_files=[],
                      label_map=dict(SFEW_FOLDERS))
