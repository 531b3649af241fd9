"""The generic-image stand-in for ImageNet-1K (no faces) and its loader, and MAE-ViT's pipelines."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.data import build_transform, load_dataset
from harness.data.synth import GENERIC_CLASSES, make_knobs, render_generic, write_synthetic
from harness.errors import UserError


def test_generic_stand_in_in_imagenet_layout(tmp_path):
    root = write_synthetic("imagenet", tmp_path / "in", n_train=60, n_test=30)
    assert sorted(p.name for p in (root / "train").iterdir()) == sorted(GENERIC_CLASSES)
    assert (root / "val").is_dir() and not (root / "test").exists()
    ds = load_dataset("imagenet", root, decode_size=32)
    assert ds.synthetic and ds.num_classes == len(GENERIC_CLASSES) == 30
    assert len(ds.splits["test"].labels) == 30 and len(ds.splits["train"].labels) + len(ds.splits["val"].labels) == 60
    again = write_synthetic("imagenet", tmp_path / "again", n_train=60, n_test=30)
    assert load_dataset("imagenet", again, decode_size=32).fingerprint == ds.fingerprint  # deterministic


def test_generic_classes_look_different():
    k = make_knobs(clutter=0, illumination=0, low_res=0)
    means = {c: np.mean([render_generic(np.random.default_rng([i]), c, k, 32).astype(float)
                         for i in range(4)], axis=0) for c in ("night", "sunset", "checkerboard")}
    assert means["night"].mean() < 40 < means["sunset"].mean()  # a night scene is darker than a sunset
    assert render_generic(np.random.default_rng(0), "circle", k, 32).shape == (32, 32, 3)


def test_imagenet_layout_needs_val(tmp_path):
    (tmp_path / "train" / "n01440764").mkdir(parents=True)
    with pytest.raises(UserError, match="val: missing split folder"):
        load_dataset("imagenet", tmp_path)


@pytest.mark.parametrize("name", ["mae", "mae_pretrain"])
def test_mae_pipelines(name):
    x = torch.randint(0, 256, (6, 3, 20, 20), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    t = build_transform(name, 16, train=True)
    a, b = t(x, torch.Generator().manual_seed(1)), t(x, torch.Generator().manual_seed(1))
    assert a.shape == (6, 3, 16, 16) and a.dtype == torch.float32 and torch.equal(a, b)
    assert not torch.equal(a, t(x, torch.Generator().manual_seed(2)))
    assert torch.equal(build_transform(name, 16, train=False)(x, torch.Generator()),
                       build_transform("none", 16, train=False)(x, torch.Generator()))
