"""Bad input: every error names the file and the line or entry; skip_bad records and skips."""
from __future__ import annotations

import csv

import pytest

from harness.data import load_dataset
from harness.errors import UserError
from tests.data.makers import (AFFECTNET_HEADER, make_affectnet, make_expw, make_ferplus,
                               make_folders, make_rafdb)


def _raises(name, root, *parts, **kw):
    with pytest.raises(UserError) as err:
        load_dataset(name, root, decode_size=8, **kw)
    msg = str(err.value)
    for p in parts:
        assert p in msg, msg
    return msg


def test_missing_annotation_files(tmp_path):
    (make_rafdb(tmp_path / "r") / "EmoLabel" / "list_patition_label.txt").unlink()
    _raises("rafdb", tmp_path / "r", "list_patition_label.txt", "missing")
    (make_affectnet(tmp_path / "a") / "validation.csv").unlink()
    _raises("affectnet", tmp_path / "a", "validation.csv", "missing")
    (make_ferplus(tmp_path / "f") / "fer2013new.csv").unlink()
    _raises("ferplus", tmp_path / "f", "fer2013new.csv", "missing")
    (make_expw(tmp_path / "e", n=3) / "label" / "label.lst").unlink()
    _raises("expw", tmp_path / "e", "label.lst", "missing")
    make_folders(tmp_path / "s", {"Train": {"Happy": 1}})
    _raises("sfew", tmp_path / "s", "Val")


def test_missing_image_names_line(tmp_path):
    root = make_rafdb(tmp_path)
    (root / "Image" / "aligned" / "train_00003_aligned.jpg").unlink()
    _raises("rafdb", root, "list_patition_label.txt:3", "train_00003_aligned.jpg", "not found")


def test_truncated_image(tmp_path):
    root = make_affectnet(tmp_path)
    path = root / "Manually_Annotated_Images" / "2" / "c.jpg"
    path.write_bytes(path.read_bytes()[:200])
    _raises("affectnet", root, "training.csv:4", "c.jpg", "cannot decode")


def test_corrupt_image_in_folder(tmp_path):
    root = make_folders(tmp_path, {"train": {"happy": 2}, "test": {"happy": 1}})
    (root / "train" / "happy" / "happy_1.png").write_bytes(b"not an image at all")
    _raises("folder", root, "happy_1.png", "cannot decode")


@pytest.mark.parametrize("name, maker, edit, parts", [
    ("rafdb", make_rafdb, lambda r: (r / "EmoLabel" / "list_patition_label.txt").write_text(
        "train_00001.jpg 4\ntrain_00002.jpg 9\n"), ["list_patition_label.txt:2", "unknown label '9'"]),
    ("expw", lambda r: make_expw(r, n=3), lambda r: (r / "label" / "label.lst").write_text(
        "img_0.jpg 0 5 10 30 25 55.5 0\nimg_1.jpg 0 5 10 30 25 55.5 7\n"), ["label.lst:2", "'7'"]),
    ("folder", lambda r: make_folders(r, {"train": {"happy": 1, "bored": 1}, "test": {"happy": 1}}),
     lambda r: None, ["bored", "unknown class folder"]),
])
def test_unknown_labels(tmp_path, name, maker, edit, parts):
    root = maker(tmp_path)
    edit(root)
    _raises(name, root, *parts)


def test_affectnet_unknown_expression(tmp_path):
    root = make_affectnet(tmp_path, train=[("1/a.jpg", 0), ("1/b.jpg", 12)])
    _raises("affectnet", root, "training.csv:3", "unknown expression '12'", "1/b.jpg")


def test_wrong_csv_headers(tmp_path):
    bad = list(AFFECTNET_HEADER)
    bad[6] = "emotion"
    _raises("affectnet", make_affectnet(tmp_path / "a", header=bad), "training.csv:1", "wrong CSV header")
    _raises("ferplus", make_ferplus(tmp_path / "f", old_header=["label", "pixels", "Usage"]),
            "fer2013.csv:1", "wrong CSV header")
    _raises("ferplus", make_ferplus(tmp_path / "g", new_header=["Usage", "Image name", "neutral"]),
            "fer2013new.csv:1", "wrong CSV header")


def test_ferplus_row_count_mismatch(tmp_path):
    root = make_ferplus(tmp_path, extra_old_rows=2)
    _raises("ferplus", root, "fer2013.csv", "fer2013new.csv", "11", "9")


def test_ferplus_bad_pixels_names_line(tmp_path):
    root = make_ferplus(tmp_path)
    rows = list(csv.reader(open(root / "fer2013.csv")))
    rows[2][1] = "1 2 3"
    with open(root / "fer2013.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)
    _raises("ferplus", root, "fer2013.csv:3", "2304")


def test_skip_bad_skips_and_records(tmp_path):
    root = make_rafdb(tmp_path)
    clean = load_dataset("rafdb", root, decode_size=8)
    (root / "Image" / "aligned" / "test_00002_aligned.jpg").unlink()
    lst = root / "EmoLabel" / "list_patition_label.txt"
    lst.write_text(lst.read_text() + "train_00099.jpg 0\n")
    ds = load_dataset("rafdb", root, decode_size=8, skip_bad=True)
    assert len(ds.skipped) == 2
    assert any("list_patition_label.txt:13" in s and "unknown label" in s for s in ds.skipped)
    assert any("test_00002_aligned.jpg" in s for s in ds.skipped)
    assert len(ds.splits["test"]) == 3 and "test_00002.jpg" not in ds.splits["test"].names
    assert ds.split_info["skipped"] == 2 and ds.fingerprint != clean.fingerprint
