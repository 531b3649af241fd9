"""RAF-DB basic: ``EmoLabel/list_patition_label.txt`` + ``Image/aligned/<stem>_aligned.jpg``.

Lines read ``train_00001.jpg 5``; the prefix (train/test) names the official split and the
label is 1..7 in RAF order (:data:`~harness.data.labels.RAFDB_LABELS`). Val is carved from
train.
"""
from __future__ import annotations

from pathlib import Path

from harness.data.base import BadEntries, Entry, RawDataset, RootGuard, require_file, utf8_errors
from harness.data.labels import CANONICAL_INDEX, RAFDB_LABELS, SEVEN_CLASSES
from harness.errors import UserError

PROTOCOLS = ("default",)
LABEL_FILE = Path("EmoLabel") / "list_patition_label.txt"


def read(root: Path, protocol: str, bad: BadEntries) -> RawDataset:
    """Parse the RAF-DB partition/label list into train and test entries."""
    ann = require_file(root / LABEL_FILE, "RAF-DB label list (EmoLabel/list_patition_label.txt)")
    image_dir = root / "Image" / "aligned"
    if not image_dir.is_dir():
        raise UserError(f"{image_dir}: missing RAF-DB aligned image folder (Image/aligned)")
    official: dict[str, list[Entry]] = {"train": [], "test": []}
    guard = RootGuard(root)
    with open(ann, encoding="utf-8-sig") as f, utf8_errors(ann):
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{ann}:{lineno}"
            parts = line.split()
            if len(parts) != 2:
                bad.report(f"{where}: expected '<image> <label>', got {line.strip()!r}")
                continue
            fname, code = parts
            split = fname.split("_", 1)[0]
            if split not in official:
                bad.report(f"{where}: image name {fname!r} does not start with train_ or test_")
                continue
            try:
                label = RAFDB_LABELS[int(code)]
            except (ValueError, KeyError):
                bad.report(f"{where}: unknown label {code!r} for {fname} (RAF-DB labels are 1..7)")
                continue
            stem = fname.rsplit(".", 1)[0]
            source = guard.image(image_dir, f"{stem}_aligned.jpg", where, bad)
            if source is None:
                continue
            official[split].append(Entry(name=fname, label=CANONICAL_INDEX[label],
                                         source=source, where=where))
    return RawDataset(class_names=list(SEVEN_CLASSES), official=official, annotation_files=[ann],
                      label_map={str(k): v for k, v in RAFDB_LABELS.items()})
