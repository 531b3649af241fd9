"""AffectNet: ``training.csv`` / ``validation.csv`` + ``Manually_Annotated_Images/``.

Columns: subDirectory_filePath, face_x, face_y, face_width, face_height, facial_landmarks,
expression, valence, arousal. Images are looked up under ``Manually_Annotated_Images/`` (the
original, uncropped images) and cropped to the face box. Protocol "7class" (default) drops
contempt (7); "8class" keeps it. Expressions 8-10 (none, uncertain, no-face) are dropped and
counted. The balanced validation set is the test set; val is carved from training.
"""
from __future__ import annotations

from pathlib import Path

from harness.data.base import BadEntries, Entry, RawDataset, RootGuard, csv_rows, require_file
from harness.data.labels import (AFFECTNET_LABELS, AFFECTNET_NON_EXPRESSION, CANONICAL_CLASSES,
                                 CANONICAL_INDEX, SEVEN_CLASSES)
from harness.errors import UserError

PROTOCOLS = ("7class", "8class")
HEADER = ["subDirectory_filePath", "face_x", "face_y", "face_width", "face_height",
          "facial_landmarks", "expression", "valence", "arousal"]
IMAGE_DIR = "Manually_Annotated_Images"


def _read_csv(path: Path, image_dir: Path, protocol: str, bad: BadEntries,
              dropped: dict[str, int], guard: RootGuard) -> list[Entry]:
    entries: list[Entry] = []
    for line, row in csv_rows(path, HEADER):
        where = f"{path}:{line}"
        if len(row) != len(HEADER):
            bad.report(f"{where}: expected {len(HEADER)} columns, got {len(row)}")
            continue
        rel = row[0].strip()
        try:
            code = int(row[6])
        except ValueError:
            code = -1
        if code in AFFECTNET_NON_EXPRESSION:
            key = AFFECTNET_NON_EXPRESSION[code]
            dropped[key] = dropped.get(key, 0) + 1
            continue
        if code not in AFFECTNET_LABELS:
            bad.report(f"{where}: unknown expression {row[6]!r} for {rel} (AffectNet uses 0..10)")
            continue
        if code == 7 and protocol == "7class":
            dropped["contempt (7class)"] = dropped.get("contempt (7class)", 0) + 1
            continue
        try:
            x, y, w, h = (int(float(v)) for v in row[1:5])
        except (ValueError, OverflowError):  # OverflowError: inf, 1e400
            bad.report(f"{where}: face box {row[1:5]!r} is not four finite numbers for {rel}")
            continue
        if w <= 0 or h <= 0:
            bad.report(f"{where}: empty face box {row[1:5]!r} for {rel}")
            continue
        source = guard.image(image_dir, rel, where, bad)
        if source is None:
            continue
        entries.append(Entry(name=rel, label=CANONICAL_INDEX[AFFECTNET_LABELS[code]],
                             source=source, where=where, box=(x, y, x + w, y + h)))
    return entries


def read(root: Path, protocol: str, bad: BadEntries) -> RawDataset:
    """Parse both CSVs: training.csv -> train (val carved from it), validation.csv -> test."""
    train_csv = require_file(root / "training.csv", "AffectNet annotation file (training.csv)")
    test_csv = require_file(root / "validation.csv", "AffectNet annotation file (validation.csv)")
    image_dir = root / IMAGE_DIR
    if not image_dir.is_dir():
        raise UserError(f"{image_dir}: missing AffectNet image folder ({IMAGE_DIR})")
    dropped: dict[str, int] = {}
    guard = RootGuard(root)
    official = {"train": _read_csv(train_csv, image_dir, protocol, bad, dropped, guard),
                "test": _read_csv(test_csv, image_dir, protocol, bad, dropped, guard)}
    classes = SEVEN_CLASSES if protocol == "7class" else CANONICAL_CLASSES
    return RawDataset(class_names=list(classes), official=official,
                      annotation_files=[train_csv, test_csv],
                      label_map={str(k): v for k, v in AFFECTNET_LABELS.items()
                                 if v in classes}, dropped=dropped)
