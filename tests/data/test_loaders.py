"""Each loader on a tiny real-format copy: label mapping, split sizes, votes, crops."""
from __future__ import annotations

import pytest
import torch
from PIL import Image

from harness.data import CANONICAL_CLASSES, load_dataset
from harness.errors import UserError
from tests.data.makers import (make_affectnet, make_expw, make_ferplus, make_ferplus_folders, make_folders,
                              make_rafdb)

IDX = {c: i for i, c in enumerate(CANONICAL_CLASSES)}


def _label_of(ds, name):
    for split in ds.splits.values():
        if name in split.names:
            return CANONICAL_CLASSES[int(split.labels[split.names.index(name)])]
    raise KeyError(name)


def test_rafdb_labels_splits_and_images(tmp_path):
    ds = load_dataset("rafdb", make_rafdb(tmp_path), decode_size=16, val_fraction=0.25)
    assert ds.class_names == list(CANONICAL_CLASSES[:7]) and ds.num_classes == 7
    assert {k: len(v) for k, v in ds.splits.items()} == {"train": 6, "val": 2, "test": 4}
    assert _label_of(ds, "train_00001.jpg") == "happy"  # RAF 4 = Happiness
    assert _label_of(ds, "train_00002.jpg") == "neutral"  # RAF 7 = Neutral
    test = ds.splits["test"]
    assert [CANONICAL_CLASSES[i] for i in test.labels] == ["surprise", "fear", "anger", "disgust"]
    assert test.images.shape == (4, 3, 16, 16) and test.images.dtype == torch.uint8
    assert test.votes is None and not ds.synthetic and ds.skipped == []
    # val is stratified: one happy and one neutral carved from train
    assert sorted(ds.splits["val"].labels.tolist()) == [IDX["neutral"], IDX["happy"]]
    assert ds.split_info["seed"] == 0 and ds.split_info["fraction"] == 0.25


def test_val_carving_is_seeded(tmp_path):
    root = make_rafdb(tmp_path)
    a = load_dataset("rafdb", root, decode_size=8, val_fraction=0.25, split_seed=0)
    b = load_dataset("rafdb", root, decode_size=8, val_fraction=0.25, split_seed=0)
    assert a.splits["val"].names == b.splits["val"].names and a.fingerprint == b.fingerprint
    others = {tuple(load_dataset("rafdb", root, decode_size=8, val_fraction=0.25,
                                 split_seed=s).splits["val"].names) for s in range(1, 8)}
    assert len(others) > 1
    assert load_dataset("rafdb", root, decode_size=8, split_seed=3).fingerprint != a.fingerprint


@pytest.mark.parametrize("protocol, test_labels, dropped", [
    ("majority", ["fear"], {"no image name": 1, "no votes": 0, "no majority": 2, "unknown/NF wins": 2}),
    ("argmax", ["anger", "neutral", "fear"], {"no image name": 1, "no votes": 0, "no majority": 0,
                                              "unknown/NF wins": 2}),
])
def test_ferplus_rules_votes_and_drops(tmp_path, protocol, test_labels, dropped):
    ds = load_dataset("ferplus", make_ferplus(tmp_path), protocol=protocol, decode_size=8)
    assert ds.num_classes == 8 and ds.protocol == protocol
    assert {k: len(v) for k, v in ds.splits.items()} == {"train": 3, "val": 1, "test": len(test_labels)}
    train = ds.splits["train"]
    assert train.names == ["fer0000000.png", "fer0000001.png", "fer0000005.png"]
    assert [CANONICAL_CLASSES[i] for i in train.labels] == ["happy", "sad", "contempt"]
    # votes: the raw distribution over the eight expressions, canonical order, rows sum to 1
    assert torch.allclose(train.votes.sum(1), torch.ones(3))
    assert train.votes[0, IDX["happy"]] == pytest.approx(0.8)
    assert train.votes[0, IDX["surprise"]] == pytest.approx(0.2)
    assert train.votes[1, IDX["fear"]] == pytest.approx(0.3)
    assert train.votes[1, IDX["neutral"]] == pytest.approx(0.1)  # a single vote stays in the prior
    assert ds.splits["val"].names == ["fer0000006.png"]  # PublicTest is val, not test
    assert [CANONICAL_CLASSES[i] for i in ds.splits["test"].labels] == test_labels
    assert ds.split_info["dropped"] == dropped
    img = train.images[0]
    assert img.shape == (3, 8, 8) and int(img[0, 0, 0]) == 10 and torch.equal(img[0], img[2])


@pytest.mark.parametrize("protocol", ["majority", "argmax"])
def test_ferplus_both_layouts_give_the_same_entries(tmp_path, protocol):
    pair = load_dataset("ferplus", make_ferplus(tmp_path / "pair"), protocol=protocol, decode_size=8)
    folders = load_dataset("ferplus", make_ferplus_folders(tmp_path / "folders"), protocol=protocol, decode_size=8)
    for split in ("train", "val", "test"):
        a, b = pair.splits[split], folders.splits[split]
        assert a.names == b.names and torch.equal(a.labels, b.labels)
        assert torch.equal(a.votes, b.votes) and torch.equal(a.images, b.images)
    assert "folders" in folders.split_info["labels"]["layout"] and "csv pair" in pair.split_info["labels"]["layout"]
    assert pair.fingerprint != folders.fingerprint  # the fingerprint covers the files read


def test_ferplus_folder_layout_names_a_missing_or_wrong_image(tmp_path):
    root = make_ferplus_folders(tmp_path)
    (root / "FER2013Train" / "fer0000001.png").unlink()
    Image.new("RGB", (48, 48)).save(root / "FER2013Train" / "fer0000005.png")
    with pytest.raises(UserError, match=r"FER2013Train/label.csv:2: image .*fer0000001.png does not exist"):
        load_dataset("ferplus", root, decode_size=8)
    ds = load_dataset("ferplus", root, decode_size=8, skip_bad=True)
    assert ds.splits["train"].names == ["fer0000000.png"]
    assert any("48x48 grey" in s and "fer0000005.png" in s for s in ds.skipped)


@pytest.mark.parametrize("protocol, sizes, classes", [
    ("7class", {"train": 3, "val": 3, "test": 3}, 7),
    ("8class", {"train": 4, "val": 3, "test": 4}, 8),
])
def test_affectnet_protocols(tmp_path, protocol, sizes, classes):
    ds = load_dataset("affectnet", make_affectnet(tmp_path), protocol=protocol, decode_size=8,
                      val_fraction=0.5)
    assert ds.num_classes == classes
    assert {k: len(v) for k, v in ds.splits.items()} == sizes
    assert ds.split_info["dropped"]["uncertain"] == 1
    assert _label_of(ds, "3/g.jpg") == "anger" and _label_of(ds, "1/b.jpg") == "happy"
    assert ds.splits["test"].names[:3] == ["4/v0.jpg", "4/v1.jpg", "4/v6.jpg"]  # validation.csv
    if protocol == "8class":
        assert _label_of(ds, "2/d.jpg") == "contempt"
    else:
        assert ds.split_info["dropped"]["contempt (7class)"] == 2
    # the face box (blue) is what gets decoded, not the red full image
    img = ds.splits["test"].images[0].float()
    assert img[2].mean() > 200 and img[0].mean() < 40


def test_sfew_class_folders(tmp_path):
    layout = {"Train": {"Angry": 3, "Happy": 4, "Neutral": 3}, "Val": {"Angry": 1, "Sad": 2}}
    ds = load_dataset("sfew", make_folders(tmp_path, layout), decode_size=8, val_fraction=0.34)
    assert {k: len(v) for k, v in ds.splits.items()} == {"train": 7, "val": 3, "test": 3}
    assert _label_of(ds, "Angry/Angry_0.png") == "anger" and _label_of(ds, "Sad/Sad_1.png") == "sad"
    assert ds.splits["test"].names == ["Angry/Angry_0.png", "Sad/Sad_0.png", "Sad/Sad_1.png"]


def test_expw_split_and_crop(tmp_path):
    ds = load_dataset("expw", make_expw(tmp_path, n=40), decode_size=8)
    sizes = {k: len(v) for k, v in ds.splits.items()}
    assert sum(sizes.values()) == 40 and sizes["test"] in (5, 6, 7) and sizes["val"] in (3, 4, 5)
    assert _label_of(ds, "img_0.jpg#0") == "anger" and _label_of(ds, "img_6.jpg#0") == "neutral"
    assert _label_of(ds, "img_3.jpg#0") == "happy"
    assert ds.split_info["fractions"] == [0.75, 0.10, 0.15]
    img = ds.splits["train"].images[0].float()  # the yellow box, not the green frame
    assert img[0].mean() > 200 and img[2].mean() < 50
    names = [set(s.names) for s in ds.splits.values()]
    assert not (names[0] & names[1]) and not (names[0] & names[2]) and not (names[1] & names[2])


def test_folder_layout_aliases_and_official_val(tmp_path):
    layout = {"train": {"Happy": 2, "angry": 2, "neutral": 2}, "val": {"happiness": 1},
              "test": {"anger": 1, "Neutral": 1}}
    ds = load_dataset("folder", make_folders(tmp_path, layout), decode_size=8)
    assert ds.class_names == ["neutral", "happy", "anger"]
    assert {k: len(v) for k, v in ds.splits.items()} == {"train": 6, "val": 1, "test": 2}
    assert ds.split_info["val_source"] == "official validation split"
    test = ds.splits["test"]
    assert [ds.class_names[i] for i in test.labels] == ["neutral", "anger"]  # folder order


def test_data_root_from_environment(tmp_path, monkeypatch):
    make_rafdb(tmp_path / "rafdb")
    monkeypatch.setenv("FERBENCH_DATA_ROOT", str(tmp_path))
    assert len(load_dataset("rafdb", None, decode_size=8).splits["test"]) == 4
