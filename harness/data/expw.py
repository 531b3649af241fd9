"""ExpW: ``label/label.lst`` + ``image/origin/<image_name>``.

Lines read ``image_name face_id top left right bottom confidence expression`` with
expression 0..6 (:data:`~harness.data.labels.EXPW_LABELS`); each line is one face, cropped by
its box. There is no official split: a seeded, stratified 75/10/15 train/val/test split.
"""
from __future__ import annotations

from pathlib import Path

from harness.data.base import BadEntries, Entry, RawDataset, RootGuard, require_file, utf8_errors
from harness.data.labels import CANONICAL_INDEX, EXPW_LABELS, SEVEN_CLASSES

PROTOCOLS = ("default",)
LABEL_FILE = Path("label") / "label.lst"
IMAGE_DIRS = (Path("image") / "origin", Path("origin"), Path("image"))


def read(root: Path, protocol: str, bad: BadEntries) -> RawDataset:
    """Parse label.lst into one pool of face entries, split 75/10/15 later."""
    ann = require_file(root / LABEL_FILE, "ExpW label file (label/label.lst)")
    image_dir = next((root / d for d in IMAGE_DIRS if (root / d).is_dir()), root / IMAGE_DIRS[0])
    entries: list[Entry] = []
    guard = RootGuard(root)
    with open(ann, encoding="utf-8-sig") as f, utf8_errors(ann):
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{ann}:{lineno}"
            parts = line.split()
            if len(parts) != 8:
                bad.report(f"{where}: expected 8 fields 'image_name face_id top left right "
                           f"bottom confidence expression', got {len(parts)}")
                continue
            name, face_id = parts[0], parts[1]
            try:
                top, left, right, bottom = (int(float(v)) for v in parts[2:6])
            except (ValueError, OverflowError):  # OverflowError: inf, 1e400
                bad.report(f"{where}: face box {parts[2:6]!r} is not four finite numbers")
                continue
            try:
                label = EXPW_LABELS[int(parts[7])]
            except (ValueError, KeyError):
                bad.report(f"{where}: unknown expression {parts[7]!r} for {name} (ExpW uses 0..6)")
                continue
            if right <= left or bottom <= top:
                bad.report(f"{where}: empty face box {parts[2:6]!r} for {name}")
                continue
            source = guard.image(image_dir, name, where, bad)
            if source is None:
                continue
            entries.append(Entry(name=f"{name}#{face_id}", label=CANONICAL_INDEX[label],
                                 source=source, where=where,
                                 box=(left, top, right, bottom)))
    return RawDataset(class_names=list(SEVEN_CLASSES), official={"all": entries},
                      annotation_files=[ann], label_map={str(k): v for k, v in EXPW_LABELS.items()},
                      val_policy="all", fractions=(0.75, 0.10, 0.15))
