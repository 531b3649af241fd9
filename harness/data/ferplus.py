"""FERPlus: ``fer2013.csv`` (pixels) joined row by row with ``fer2013new.csv`` (votes).

Protocol "majority" (8 classes): the label is the column with the most of the 10 annotator
votes (ties go to the earlier column in file order); rows where ``unknown`` or ``NF`` wins,
rows with no votes and rows whose ``Image name`` is empty (FERPlus's removed non-faces) are
dropped and counted in ``split_info["dropped"]``. The per-image vote distribution over the 8
expressions (normalised to sum 1) is kept for PDLS/F-PDLS. Splits: Training -> train,
PublicTest -> val, PrivateTest -> test (PublicTest is not used as the test set).
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from harness.data.base import BadEntries, Entry, RawDataset, csv_rows, require_file
from harness.data.labels import (CANONICAL_CLASSES, CANONICAL_INDEX, FERPLUS_LABELS,
                                 FERPLUS_NON_EXPRESSION, FERPLUS_VOTE_COLUMNS)
from harness.errors import UserError

PROTOCOLS = ("majority",)
FER2013_HEADER = ["emotion", "pixels", "Usage"]
FERNEW_HEADER = ["Usage", "Image name", *FERPLUS_VOTE_COLUMNS]
USAGE_SPLIT = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}


def read(root: Path, protocol: str, bad: BadEntries) -> RawDataset:
    """Parse and join the two FERPlus CSVs into train/val/test entries with votes."""
    old_path = require_file(root / "fer2013.csv", "FER2013 pixel file (fer2013.csv)")
    new_path = require_file(root / "fer2013new.csv", "FERPlus vote file (fer2013new.csv)")
    old_rows, new_rows = list(csv_rows(old_path, FER2013_HEADER)), list(csv_rows(new_path, FERNEW_HEADER))
    if len(old_rows) != len(new_rows):
        raise UserError(f"{old_path} has {len(old_rows)} data rows but {new_path} has "
                        f"{len(new_rows)}: the files are joined row by row and must match")
    canon = np.array([CANONICAL_INDEX[FERPLUS_LABELS[c]] for c in FERPLUS_VOTE_COLUMNS[:8]])
    official: dict[str, list[Entry]] = {"train": [], "val": [], "test": []}
    dropped = {"no image name": 0, "unknown/NF majority": 0, "no votes": 0}
    for (old_line, old), (new_line, new) in zip(old_rows, new_rows):
        where = f"{new_path}:{new_line}"
        if len(old) != 3 or len(new) != len(FERNEW_HEADER):
            bad.report(f"{old_path}:{old_line} / {where}: wrong number of columns")
            continue
        usage = new[0].strip()
        if usage not in USAGE_SPLIT:
            bad.report(f"{where}: unknown Usage {usage!r}")
            continue
        if old[2].strip() != usage:
            bad.report(f"{where}: Usage {usage!r} differs from {old[2].strip()!r} at "
                       f"{old_path}:{old_line}; the files are out of step")
            continue
        name = new[1].strip()
        if not name:
            dropped["no image name"] += 1
            continue
        try:
            votes = np.array([float(v) for v in new[2:]], dtype=np.float64)
            if (votes < 0).any() or not np.isfinite(votes).all():
                raise ValueError
        except ValueError:
            bad.report(f"{where}: vote counts must be non-negative numbers, got {new[2:]!r}")
            continue
        if votes.sum() <= 0:
            dropped["no votes"] += 1
            continue
        winner = FERPLUS_VOTE_COLUMNS[int(np.argmax(votes))]
        if winner in FERPLUS_NON_EXPRESSION:
            dropped["unknown/NF majority"] += 1
            continue
        with warnings.catch_warnings():  # a malformed string stops early; the size check catches it
            warnings.simplefilter("ignore")
            try:
                pixels = np.fromstring(old[1], dtype=np.int64, sep=" ")
            except ValueError:
                pixels = np.zeros(0, dtype=np.int64)
        if pixels.size != 48 * 48 or pixels.min() < 0 or pixels.max() > 255:
            bad.report(f"{old_path}:{old_line}: pixels must be 2304 integers in 0..255 "
                       f"(48x48 grey), got {pixels.size} values")
            continue
        dist = np.zeros(len(CANONICAL_CLASSES))
        dist[canon] = votes[:8]
        dist /= dist.sum()
        official[USAGE_SPLIT[usage]].append(Entry(
            name=name, label=CANONICAL_INDEX[FERPLUS_LABELS[winner]],
            source=pixels.astype(np.uint8).reshape(48, 48), where=where, votes=dist))
    return RawDataset(class_names=list(CANONICAL_CLASSES), official=official,
                      annotation_files=[old_path, new_path], val_policy="official",
                      label_map={"columns": list(FERPLUS_VOTE_COLUMNS), "map": FERPLUS_LABELS,
                                 "rule": "argmax, first column wins ties; unknown/NF dropped"},
                      has_votes=True, dropped=dropped)
