"""The synthetic stand-ins: official layouts read by the real loaders, deterministic."""
from __future__ import annotations

import hashlib
import json

import pytest

from harness.data import load_dataset, synthetic_root
from harness.data.synth import write_synthetic
from harness.errors import UserError

SMALL = dict(n_train=42, n_test=14)


def _tree(root):
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and not p.name.startswith(".decoded-"):
            h.update(p.relative_to(root).as_posix().encode() + p.read_bytes())
    return h.hexdigest()


def test_synthetic_rafdb_loads_through_the_rafdb_loader(tmp_path):
    root = write_synthetic("rafdb", tmp_path / "raf", seed=1, **SMALL)
    assert (root / "EmoLabel" / "list_patition_label.txt").is_file()
    assert len(list((root / "Image" / "aligned").glob("train_*_aligned.jpg"))) == 42
    ds = load_dataset("rafdb", root, decode_size=32)
    assert ds.synthetic and ds.num_classes == 7
    assert len(ds.splits["train"]) + len(ds.splits["val"]) == 42 and len(ds.splits["test"]) == 14
    assert json.loads((root / "SYNTHETIC.json").read_text())["seed"] == 1
    again = load_dataset("rafdb", root, decode_size=32)  # from the decoded cache
    assert again.fingerprint == ds.fingerprint
    assert all((again.splits[s].images == ds.splits[s].images).all() for s in ds.splits)


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a = write_synthetic("rafdb", tmp_path / "a", seed=3, **SMALL)
    b = write_synthetic("rafdb", tmp_path / "b", seed=3, **SMALL)
    c = write_synthetic("rafdb", tmp_path / "c", seed=4, **SMALL)
    assert _tree(a) == _tree(b) != _tree(c)
    fa, fb, fc = (load_dataset("rafdb", r, decode_size=16).fingerprint for r in (a, b, c))
    assert fa == fb != fc


@pytest.mark.parametrize("name, protocol, classes", [
    ("affectnet", "8class", 8), ("affectnet", "7class", 7), ("ferplus", None, 8),
    ("sfew", None, 7), ("expw", None, 7), ("folder", None, 7)])
def test_other_stand_ins_load(tmp_path, name, protocol, classes):
    root = write_synthetic(name, tmp_path / name, seed=0, **SMALL)
    ds = load_dataset(name, root, protocol=protocol, decode_size=16)
    assert ds.synthetic and ds.num_classes == classes
    assert all(len(s) > 0 for s in ds.splits.values())
    if name == "ferplus":
        assert ds.splits["train"].votes is not None
    if name == "affectnet":  # validation.csv (= test) is balanced
        counts = ds.splits["test"].class_counts(classes)
        assert max(counts) - min(counts) <= 1


def test_synthetic_root_caches_by_parameters(tmp_path):
    a = synthetic_root("rafdb", seed=0, cache_dir=tmp_path, **SMALL)
    assert synthetic_root("rafdb", seed=0, cache_dir=tmp_path, **SMALL) == a
    b = synthetic_root("rafdb", seed=0, cache_dir=tmp_path, occlusion=0.0, **SMALL)
    assert b != a and b.parent == a.parent
    with pytest.raises(UserError, match="unknown synthetic knob"):
        synthetic_root("rafdb", cache_dir=tmp_path, sparkle=1.0)


def test_imbalance_and_label_noise_knobs(tmp_path):
    root = write_synthetic("rafdb", tmp_path / "bal", imbalance=0.0, label_noise=0.0, n_train=70, n_test=7)
    ds = load_dataset("rafdb", root, decode_size=8, val_fraction=0.1)
    counts = [a + b for a, b in zip(ds.splits["train"].class_counts(7), ds.splits["val"].class_counts(7))]
    assert counts == [10] * 7
