"""FERPlus in either official layout, labelled by Microsoft's majority rule (or by the argmax).

Two layouts, detected from what the dataset folder holds:

* **the CSV pair**: ``fer2013.csv`` (FER2013's pixels) joined row by row with ``fer2013new.csv``
  (FERPlus's 10 annotator votes per image);
* **Microsoft's folders**, as FERPlus's ``src/generate_training_data.py`` writes them:
  ``FER2013Train/``, ``FER2013Valid/``, ``FER2013Test/``, each with 48x48 grey PNGs and a
  ``label.csv`` of ``name, "(0, 0, 48, 48)", <10 vote counts>`` rows.

Both give the same entries (name, label, vote distribution) for the same images. Splits:
Training / FER2013Train -> train, PublicTest / FER2013Valid -> val, PrivateTest / FER2013Test ->
test (the validation split is the official one, never used as the test set).

Protocols (the label of an image from its votes over neutral, happiness, surprise, sadness, anger,
disgust, fear, contempt, unknown, NF):

* ``majority`` (default): Microsoft's rule, as its reference reader applies it in majority mode
  (FERPlus ``src/ferplus.py``, ``FERPlusReader._process_data`` with ``load_folders``): votes of a
  single annotator are removed as outliers, then the image keeps the emotion that has *more than
  half* of the remaining votes; an image with no such emotion, or whose winner is unknown or
  not-a-face, is dropped. (One published version of that reader compares the winner's index with
  ``emotion_count - 2`` and so also drops fear and contempt; we keep all eight expressions, as the
  FERPlus paper and the 8-class results the papers report do.)
* ``argmax``: the emotion with the most raw votes, the earlier column winning ties; unknown and
  NF winners dropped. FERbench's rule before it followed Microsoft's; kept for comparison.

Dropped images are counted by reason in ``split_info["dropped"]``. The per-image distribution
kept for PDLS/F-PDLS (``votes``) is the *raw* votes over the eight expressions, normalised: the
prior describes how annotators disagree, and single votes are that disagreement (outlier removal
is a labelling rule, not a property of the faces).
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from harness.data.base import BadEntries, Entry, RawDataset, RootGuard, csv_rows, require_file
from harness.data.labels import (CANONICAL_CLASSES, CANONICAL_INDEX, FERPLUS_LABELS,
                                 FERPLUS_NON_EXPRESSION, FERPLUS_VOTE_COLUMNS)
from harness.errors import UserError

PROTOCOLS = ("majority", "argmax")
FER2013_HEADER = ["emotion", "pixels", "Usage"]
FERNEW_HEADER = ["Usage", "Image name", *FERPLUS_VOTE_COLUMNS]
USAGE_SPLIT = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
FOLDER_SPLIT = {"FER2013Train": "train", "FER2013Valid": "val", "FER2013Test": "test"}
RULE_TEXT = {"majority": "Microsoft's majority: single votes removed, then more than half of the rest; "
                         "no majority, unknown or NF dropped",
             "argmax": "argmax of the raw votes, first column wins ties; unknown/NF dropped"}


def majority_winner(votes: np.ndarray) -> int | None:
    """Microsoft's majority rule: votes [10] (file order) -> the winning column, or None (no winner).

    Counts of one vote are outliers and set to 0; the winner must then hold more than half of
    what remains.
    """
    kept = np.where(votes > 1.0, votes, 0.0)  # [10]
    total = kept.sum()
    if total <= 0:
        return None
    i = int(np.argmax(kept))
    return i if kept[i] > 0.5 * total else None


def argmax_winner(votes: np.ndarray) -> int | None:
    """The column with the most raw votes (the earlier one on a tie), or None without votes."""
    return int(np.argmax(votes)) if votes.sum() > 0 else None


WINNERS = {"majority": majority_winner, "argmax": argmax_winner}


def _parse_votes(values: list[str], where: str, bad: BadEntries) -> np.ndarray | None:
    try:
        votes = np.array([float(v) for v in values], dtype=np.float64)
        if votes.shape != (len(FERPLUS_VOTE_COLUMNS),) or (votes < 0).any() or not np.isfinite(votes).all():
            raise ValueError
    except ValueError:
        bad.report(f"{where}: expected {len(FERPLUS_VOTE_COLUMNS)} non-negative vote counts, got {values!r}")
        return None
    return votes


class _Labeller:
    """Votes -> (label, distribution) under one protocol, counting what it drops and why."""

    def __init__(self, protocol: str) -> None:
        self.winner = WINNERS[protocol]
        self.canon = np.array([CANONICAL_INDEX[FERPLUS_LABELS[c]] for c in FERPLUS_VOTE_COLUMNS[:8]])
        self.dropped = {"no image name": 0, "no votes": 0, "no majority": 0, "unknown/NF wins": 0}

    def __call__(self, votes: np.ndarray) -> tuple[int, np.ndarray] | None:
        if votes.sum() <= 0:
            self.dropped["no votes"] += 1
            return None
        i = self.winner(votes)
        if i is None:
            self.dropped["no majority"] += 1
            return None
        column = FERPLUS_VOTE_COLUMNS[i]
        if column in FERPLUS_NON_EXPRESSION:
            self.dropped["unknown/NF wins"] += 1
            return None
        dist = np.zeros(len(CANONICAL_CLASSES))
        dist[self.canon] = votes[:8]
        return CANONICAL_INDEX[FERPLUS_LABELS[column]], dist / dist.sum()


def read(root: Path, protocol: str, bad: BadEntries) -> RawDataset:
    """Read whichever official layout ``root`` holds (the CSV pair first)."""
    if (root / "fer2013.csv").is_file():
        return _read_csv_pair(root, protocol, bad)
    if any((root / folder / "label.csv").is_file() for folder in FOLDER_SPLIT):
        return _read_folders(root, protocol, bad)
    raise UserError(f"{root}: no FERPlus layout found: expected either fer2013.csv + fer2013new.csv (the CSV "
                    f"pair) or {', '.join(FOLDER_SPLIT)} folders each with a label.csv (Microsoft's "
                    "generate_training_data.py)")


def _raw(official: dict[str, list[Entry]], files: list[Path], protocol: str, layout: str,
         labeller: _Labeller) -> RawDataset:
    return RawDataset(class_names=list(CANONICAL_CLASSES), official=official, annotation_files=files,
                      val_policy="official",
                      label_map={"columns": list(FERPLUS_VOTE_COLUMNS), "map": FERPLUS_LABELS,
                                 "rule": RULE_TEXT[protocol], "layout": layout},
                      has_votes=True, dropped=labeller.dropped)


def _read_csv_pair(root: Path, protocol: str, bad: BadEntries) -> RawDataset:
    old_path = require_file(root / "fer2013.csv", "FER2013 pixel file (fer2013.csv)")
    new_path = require_file(root / "fer2013new.csv", "FERPlus vote file (fer2013new.csv)")
    old_rows, new_rows = list(csv_rows(old_path, FER2013_HEADER)), list(csv_rows(new_path, FERNEW_HEADER))
    if len(old_rows) != len(new_rows):
        raise UserError(f"{old_path} has {len(old_rows)} data rows but {new_path} has "
                        f"{len(new_rows)}: the files are joined row by row and must match")
    labeller = _Labeller(protocol)
    official: dict[str, list[Entry]] = {"train": [], "val": [], "test": []}
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
            labeller.dropped["no image name"] += 1
            continue
        votes = _parse_votes(new[2:], where, bad)
        if votes is None or (labelled := labeller(votes)) is None:
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
        label, dist = labelled
        official[USAGE_SPLIT[usage]].append(Entry(name=name, label=label, source=pixels.astype(np.uint8).reshape(48, 48),
                                                  where=where, votes=dist))
    return _raw(official, [old_path, new_path], protocol, "csv pair (fer2013.csv + fer2013new.csv)", labeller)


def _read_folders(root: Path, protocol: str, bad: BadEntries) -> RawDataset:
    labeller = _Labeller(protocol)
    guard = RootGuard(root)
    official: dict[str, list[Entry]] = {"train": [], "val": [], "test": []}
    files = []
    for folder, split in FOLDER_SPLIT.items():
        ann = require_file(root / folder / "label.csv", f"FERPlus {folder} label file ({folder}/label.csv)")
        files.append(ann)
        for line, row in csv_rows(ann, None):
            where = f"{ann}:{line}"
            if len(row) != 2 + len(FERPLUS_VOTE_COLUMNS):
                bad.report(f"{where}: expected name, face box and {len(FERPLUS_VOTE_COLUMNS)} vote counts, "
                           f"got {len(row)} fields")
                continue
            votes = _parse_votes(row[2:], where, bad)
            if votes is None or (labelled := labeller(votes)) is None:
                continue
            path = guard.image(root / folder, row[0].strip(), where, bad)
            if path is None or not _is_fer_png(path, where, bad):
                continue
            label, dist = labelled
            official[split].append(Entry(name=row[0].strip(), label=label, source=path, where=where, votes=dist))
    return _raw(official, files, protocol, f"Microsoft's folders ({', '.join(FOLDER_SPLIT)})", labeller)


def _is_fer_png(path: Path, where: str, bad: BadEntries) -> bool:
    """Whether ``path`` is a 48x48 grey image (the header only: decoding comes later, once)."""
    try:
        with Image.open(path) as img:
            ok, what = img.size == (48, 48) and img.mode == "L", f"{img.size[0]}x{img.size[1]} {img.mode}"
    except FileNotFoundError:
        bad.report(f"{where}: image {path} does not exist")
        return False
    except (OSError, ValueError) as err:
        bad.report(f"{where}: image {path} is not readable ({err})")
        return False
    if not ok:
        bad.report(f"{where}: image {path} is {what}, not the 48x48 grey (L) of FER2013")
    return ok
