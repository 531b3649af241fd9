"""FERPlus as Microsoft ships it, on the real data: skipped, with the reason, where it is absent.

The archive (FER2013's images: research use only) is never part of this repository. These tests
look for ``$FERBENCH_FERPLUS`` or ``../shared/data/ferplus.tar.gz`` beside the checkout, extract
it once into the cache, and write nothing from it anywhere but temporary folders.
"""
from __future__ import annotations

import csv
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from harness.data import load_dataset

ARCHIVE = Path(os.environ.get("FERBENCH_FERPLUS") or Path(__file__).resolve().parents[3] / "shared" / "data"
               / "ferplus.tar.gz")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not ARCHIVE.is_file(), reason=f"no real FERPlus archive at {ARCHIVE} "
                                 "(set FERBENCH_FERPLUS to its path)")]
FOLDERS = {"FER2013Train": "Training", "FER2013Valid": "PublicTest", "FER2013Test": "PrivateTest"}
# Split sizes of the real data under each rule (Microsoft's majority; the raw argmax).
SIZES = {"majority": {"train": 25045, "val": 3191, "test": 3137},
         "argmax": {"train": 28385, "val": 3555, "test": 3545}}


@pytest.fixture(scope="module")
def ferplus_root() -> Path:
    """The archive extracted once into ``$FERBENCH_CACHE/real`` (or ``~/.cache/ferbench/real``)."""
    cache = Path(os.environ.get("FERBENCH_CACHE") or Path.home() / ".cache" / "ferbench") / "real"
    root = cache / "ferplus"
    if not (root / "FER2013Test" / "label.csv").is_file():
        cache.mkdir(parents=True, exist_ok=True)
        with tarfile.open(ARCHIVE) as tar:
            tar.extractall(cache, filter="data")
    return root


def _csv_pair_from_folders(folders: Path, out: Path) -> Path:
    """The reverse of Microsoft's generate_training_data.py: the CSV pair for the folders' images."""
    out.mkdir(parents=True)
    with open(out / "fer2013.csv", "w", newline="") as old, open(out / "fer2013new.csv", "w", newline="") as new:
        w_old, w_new = csv.writer(old), csv.writer(new)
        w_old.writerow(["emotion", "pixels", "Usage"])
        w_new.writerow(["Usage", "Image name", "neutral", "happiness", "surprise", "sadness", "anger", "disgust",
                        "fear", "contempt", "unknown", "NF"])
        for folder, usage in FOLDERS.items():
            with open(folders / folder / "label.csv", newline="") as f:
                for row in csv.reader(f):
                    pixels = np.asarray(Image.open(folders / folder / row[0]))
                    w_old.writerow([0, " ".join(map(str, pixels.flatten().tolist())), usage])
                    w_new.writerow([usage, row[0], *row[2:]])
    return out


@pytest.mark.parametrize("protocol", ["majority", "argmax"])
def test_split_sizes_under_each_rule(ferplus_root, protocol):
    ds = load_dataset("ferplus", ferplus_root, protocol=protocol, decode_size=8, cache=False)
    assert {k: len(v) for k, v in ds.splits.items()} == SIZES[protocol]
    assert ds.num_classes == 8 and all(len(set(v.labels.tolist())) == 8 for v in ds.splits.values())


def test_both_layouts_read_the_same_entries(ferplus_root, tmp_path):
    pair_root = _csv_pair_from_folders(ferplus_root, tmp_path / "pair")
    folders = load_dataset("ferplus", ferplus_root, decode_size=16, cache=False)
    pair = load_dataset("ferplus", pair_root, decode_size=16, cache=False)
    assert "folders" in folders.split_info["labels"]["layout"] and "csv pair" in pair.split_info["labels"]["layout"]
    for split in ("train", "val", "test"):
        a, b = folders.splits[split], pair.splits[split]
        assert a.names == b.names and torch.equal(a.labels, b.labels) and torch.equal(a.votes, b.votes)
        assert torch.equal(a.images, b.images)
