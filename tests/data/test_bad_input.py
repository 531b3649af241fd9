"""Bad input: every error names the file and the line or entry; skip_bad records and skips."""
from __future__ import annotations

import csv
import json

import pytest

from harness.cli import main
from harness.data import load_dataset
from harness.errors import UserError
from tests.data.makers import (AFFECTNET_HEADER, ferplus_rows, make_affectnet, make_expw, make_ferplus,
                               make_folders, make_rafdb, solid)


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
    _raises("ferplus", root, "fer2013.csv", "fer2013new.csv", "12", "10")


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


# -- image paths stay inside the dataset root ------------------------------------------------------

def _outside(tmp_path):
    """An image outside every dataset root below: what an escaping path would read."""
    return solid(tmp_path / "outside.png", (1, 2, 3))


def _escape_rafdb(tmp_path):
    root = make_rafdb(tmp_path / "r")
    solid(tmp_path / "outside_aligned.jpg", (1, 2, 3))
    (root / "Image" / "aligned" / "train_").mkdir()  # so that the OS resolves train_/.. too
    lst = root / "EmoLabel" / "list_patition_label.txt"
    lst.write_text(lst.read_text() + "train_/../../../../outside.jpg 4\n")
    return root, f"{lst}:13"


AFFECTNET_TRAIN = [("1/a.jpg", 0), ("1/b.jpg", 1), ("2/c.jpg", 1), ("3/f.jpg", 0), ("3/g.jpg", 6), ("3/h.jpg", 6)]


def _escape_affectnet(tmp_path):  # the maker writes the image where the row points: outside
    root = make_affectnet(tmp_path / "a", train=AFFECTNET_TRAIN + [("../../outside.jpg", 0)])
    return root, f"{root / 'training.csv'}:8"


def _absolute_affectnet(tmp_path):
    root = make_affectnet(tmp_path / "a", train=AFFECTNET_TRAIN + [(str(tmp_path / "abs.jpg"), 0)])
    return root, f"{root / 'training.csv'}:8"


def _escape_expw(tmp_path):
    lines = [f"img_{i}.jpg 0 5 10 30 25 55.5 {i % 7}" for i in range(20)] + ["../../../outside.jpg 0 5 10 30 25 55.5 3"]
    root = make_expw(tmp_path / "e", lines=lines)
    return root, f"{root / 'label' / 'label.lst'}:21"


def _absolute_expw(tmp_path):
    lines = [f"img_{i}.jpg 0 5 10 30 25 55.5 {i % 7}" for i in range(20)] + [f"{tmp_path / 'abs.jpg'} 0 5 10 30 25 55.5 3"]
    root = make_expw(tmp_path / "e", lines=lines)
    return root, f"{root / 'label' / 'label.lst'}:21"


def _escape_sfew(tmp_path):  # a class folder that is a link to a folder elsewhere
    root = make_folders(tmp_path / "s", {"Train": {"Happy": 3, "Sad": 3}, "Val": {"Happy": 1}})
    make_folders(tmp_path / "elsewhere", {"x": {"Angry": 2}})
    (root / "Val" / "Angry").symlink_to(tmp_path / "elsewhere" / "x" / "Angry")
    return root, str(root / "Val" / "Angry")


def _escape_folder(tmp_path):  # an image that is a link to a file elsewhere
    root = make_folders(tmp_path / "f", {"train": {"happy": 3, "sad": 3}, "test": {"happy": 1}})
    (root / "train" / "sad" / "evil.png").symlink_to(_outside(tmp_path))
    return root, str(root / "train" / "sad" / "evil.png")


def _escape_faceid(tmp_path):
    root = make_folders(tmp_path / "i", {"train": {"p1": 3, "p2": 3}, "test": {"p1": 1, "p2": 1}})
    (root / "test" / "p2" / "evil.png").symlink_to(_outside(tmp_path))
    return root, str(root / "test" / "p2" / "evil.png")


def _escape_imagenet(tmp_path):  # a class folder that is a link to a folder elsewhere
    root = make_folders(tmp_path / "n", {"train": {"cat": 3, "dog": 3}, "val": {"cat": 1}})
    make_folders(tmp_path / "elsewhere", {"x": {"dog": 1}})
    (root / "val" / "dog").symlink_to(tmp_path / "elsewhere" / "x" / "dog")
    return root, str(root / "val" / "dog")


ESCAPES = {"rafdb": _escape_rafdb, "affectnet": _escape_affectnet, "affectnet-absolute": _absolute_affectnet,
           "expw": _escape_expw, "expw-absolute": _absolute_expw, "sfew": _escape_sfew, "folder": _escape_folder,
           "faceid": _escape_faceid, "imagenet": _escape_imagenet}


@pytest.mark.parametrize("case", list(ESCAPES))
def test_image_paths_outside_the_root_are_refused(tmp_path, case):
    """'..', an absolute path or a symbolic link out of the root: an error naming the file and line
    (or image), which says where --skip-bad applies; under skip_bad the entry is skipped."""
    name = case.split("-")[0]
    root, where = ESCAPES[case](tmp_path)
    msg = _raises(name, root, where, "the dataset root", "python -m harness data check")
    assert ("is absolute" if "absolute" in case else "leads outside") in msg
    ds = load_dataset(name, root, decode_size=8, skip_bad=True)
    assert len(ds.skipped) == 1
    assert ds.skipped[0].startswith(where)


def test_data_check_skip_bad_lists_an_escaping_entry(tmp_path, capsys):
    root, where = _escape_affectnet(tmp_path)
    assert main(["data", "check", "affectnet", "--root", str(root), "--decode-size", "8"]) == 2
    assert where in capsys.readouterr().err
    assert main(["data", "check", "affectnet", "--root", str(root), "--decode-size", "8", "--skip-bad", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert len(record["skipped"]) == 1 and record["skipped"][0].startswith(where)
    assert "../../outside.jpg" not in str(record["split_info"])


def test_ferplus_image_names_are_not_paths(tmp_path):
    """FERPlus stores pixels in its CSV: an ``Image name`` is only a name, nothing is read by it."""
    rows = ferplus_rows()
    rows[0] = (rows[0][0], "../../../outside.png", *rows[0][2:])
    ds = load_dataset("ferplus", make_ferplus(tmp_path, rows=rows), decode_size=8)
    assert ds.splits["train"].names[0] == "../../../outside.png" and ds.skipped == []


# -- malformed numbers and CSV rows: clear errors, not tracebacks -----------------------------------

def test_ferplus_stray_quote_names_file_and_line(tmp_path):
    root = make_ferplus(tmp_path, rows=ferplus_rows() * 3)  # enough rows for the run-on field to overflow
    path = root / "fer2013.csv"
    lines = path.read_text().split("\n")
    lines[2] = lines[2].replace(",", ',"', 1)  # a double quote opening the pixels field of line 3
    path.write_text("\n".join(lines))
    _raises("ferplus", root, f"{path}:3", "malformed CSV row", "double quote")


def test_ferplus_huge_field_names_file_and_line(tmp_path):
    rows = ferplus_rows()
    rows[1] = (rows[1][0], "x" * 200_000, *rows[1][2:])
    root = make_ferplus(tmp_path, rows=rows)
    _raises("ferplus", root, f"{root / 'fer2013new.csv'}:3", "malformed CSV row", "field larger than field limit")


def test_affectnet_huge_field_names_file_and_line(tmp_path):
    root = make_affectnet(tmp_path)
    with open(root / "validation.csv", newline="") as f:
        rows = list(csv.reader(f))
    rows[2][5] = "1.0;" * 40_000
    with open(root / "validation.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)
    _raises("affectnet", root, f"{root / 'validation.csv'}:3", "malformed CSV row")


@pytest.mark.parametrize("value", ["inf", "1e400", "-inf"])
def test_affectnet_infinite_face_box_is_a_bad_entry(tmp_path, value):
    root = make_affectnet(tmp_path)
    with open(root / "training.csv", newline="") as f:
        rows = list(csv.reader(f))
    rows[3][3] = value  # face_width of line 4
    with open(root / "training.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)
    _raises("affectnet", root, f"{root / 'training.csv'}:4", "face box", "finite")
    ds = load_dataset("affectnet", root, decode_size=8, val_fraction=0.25, skip_bad=True)
    assert len(ds.skipped) == 1 and "training.csv:4" in ds.skipped[0]


@pytest.mark.parametrize("value", ["inf", "1e400"])
def test_expw_infinite_face_box_is_a_bad_entry(tmp_path, value):
    lines = [f"img_{i}.jpg 0 5 10 30 25 55.5 {i % 7}" for i in range(20)]
    lines[1] = f"img_1.jpg 0 5 10 {value} 25 55.5 1"
    root = make_expw(tmp_path, lines=lines)
    _raises("expw", root, f"{root / 'label' / 'label.lst'}:2", "face box", "finite")
    ds = load_dataset("expw", root, decode_size=8, skip_bad=True)
    assert len(ds.skipped) == 1 and "label.lst:2" in ds.skipped[0]


def test_bad_entry_advice_says_where_skip_bad_applies(tmp_path):
    root = make_rafdb(tmp_path)
    (root / "EmoLabel" / "list_patition_label.txt").write_text("train_00001.jpg 4\ntrain_00002.jpg 9\n")
    msg = _raises("rafdb", root, "list_patition_label.txt:2")
    assert f"python -m harness data check rafdb --root {root} --skip-bad" in msg
    assert "pass --skip-bad to `reproduce`" in msg
    make_rafdb(root)  # a missing image is found while decoding, where the dataset is known
    (root / "Image" / "aligned" / "test_00002_aligned.jpg").unlink()
    msg = _raises("rafdb", root, "test_00002_aligned.jpg")
    assert f"python -m harness data check rafdb --root {root} --skip-bad" in msg
