"""Transforms and batch iteration: shapes, determinism, sampler repeat factors."""
from __future__ import annotations

import math

import pytest
import torch

from harness.data import build_transform, iterate_batches, num_batches, repeat_factors
from harness.data.base import Split
from harness.data.transforms import MEAN, STD


def _images(n=8, s=20, seed=0):
    return torch.randint(0, 256, (n, 3, s, s), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", ["apvit", "apvit_tv", "none"])
def test_train_transform_shape_dtype_determinism(name):
    x = _images()
    t = build_transform(name, 16, train=True)
    a = t(x, torch.Generator().manual_seed(1))
    b = t(x, torch.Generator().manual_seed(1))
    assert a.shape == (8, 3, 16, 16) and a.dtype == torch.float32
    assert torch.equal(a, b)
    if name != "none":
        assert not torch.equal(a, t(x, torch.Generator().manual_seed(2)))


def test_eval_transform_is_resize_and_normalise():
    x = _images(s=16)
    out = build_transform("apvit", 16, train=False)(x, torch.Generator())
    expect = (x.float() / 255 - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    assert torch.allclose(out, expect, atol=1e-6)
    assert build_transform("apvit", 8, train=False)(x, torch.Generator()).shape == (8, 3, 8, 8)


def test_augmentation_statistics():
    """Flip, grayscale and erasing happen at about their probabilities."""
    from harness.data.transforms import HALF_MEAN, HALF_STD, apvit_train
    x = torch.zeros(2000, 3, 8, 8, dtype=torch.uint8)
    x[:, 0] = 200  # red image: grayscale or saturation changes make channels equal/closer
    # channel-equal normalisation and a zero fill, so grey pixels and erased boxes are exact
    out = apvit_train(x, torch.Generator().manual_seed(0), 8, mean=HALF_MEAN, std=HALF_STD, erase_value=0.0)
    erased = (out == 0).all(1).any((1, 2)).float().mean().item()  # exact zeros after normalise
    assert 0.4 < erased < 0.6
    grey = (out[:, 0] - out[:, 1]).abs().amax((1, 2)) < 1e-4
    assert 0.15 < grey.float().mean().item() < 0.3


def test_default_normalisation_is_imagenet_and_the_recipe_can_change_it():
    assert (MEAN, STD) == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))  # APViT/TransFER configs / 255
    x = torch.full((1, 3, 4, 4), 255, dtype=torch.uint8)
    out = build_transform("none", 4, train=False)(x, torch.Generator())
    assert torch.allclose(out[0, :, 0, 0], torch.tensor([(1 - 0.485) / 0.229, (1 - 0.456) / 0.224, (1 - 0.406) / 0.225]))
    half = build_transform("apvit", 4, train=False, mean=(0.5,) * 3, std=(0.5,) * 3)(x, torch.Generator())
    assert torch.allclose(half, torch.ones_like(half))


def test_random_erasing_fills_with_standard_normal_noise():
    from harness.data.transforms import random_erasing
    x = torch.zeros(4000, 3, 16, 16)
    out = random_erasing(x, torch.Generator().manual_seed(0))
    erased = (out != 0).flatten(1).any(1)
    assert 0.45 < erased.float().mean().item() < 0.55  # p = 0.5
    vals = out[out != 0]
    assert abs(vals.mean().item()) < 0.02 and abs(vals.std().item() - 1) < 0.02  # N(0, 1) per pixel
    sample = out[torch.nonzero(erased)[0, 0]]
    assert not torch.equal(sample[0], sample[1])  # per channel, not one value for the box
    again = random_erasing(torch.zeros(4000, 3, 16, 16), torch.Generator().manual_seed(0))
    assert torch.equal(out, again)  # drawn from the passed generator only
    with pytest.raises(ValueError, match="allowed values"):
        random_erasing(torch.zeros(1, 3, 4, 4), torch.Generator(), value="noise")


def test_repeat_factors_sqrt_threshold():
    labels = torch.tensor([0] * 90 + [1] * 9 + [2] * 1)
    r = repeat_factors(labels, 0.15)
    assert r[0] == 1.0
    assert r[90] == pytest.approx(math.sqrt(0.15 / 0.09))
    assert r[99] == pytest.approx(math.sqrt(0.15 / 0.01))


def _split(labels):
    n = len(labels)
    return Split(images=_images(n, 8), labels=torch.tensor(labels), names=[str(i) for i in range(n)])


def test_iterate_batches_deterministic_and_complete():
    split = _split([0, 1] * 10)
    t = build_transform("apvit", 8, train=True)
    run = lambda epoch: list(iterate_batches(split, batch_size=6, transform=t, seed=5, epoch=epoch, shuffle=True))
    a, b, c = run(0), run(0), run(1)
    assert all(torch.equal(x1, x2) and torch.equal(i1, i2) for (x1, _, i1), (x2, _, i2) in zip(a, b))
    assert sorted(torch.cat([i for _, _, i in a]).tolist()) == list(range(20))
    assert not torch.equal(torch.cat([i for _, _, i in a]), torch.cat([i for _, _, i in c]))
    assert [len(y) for _, y, _ in a] == [6, 6, 6, 2]
    for x, y, i in a:
        assert x.shape == (len(y), 3, 8, 8) and torch.equal(y, split.labels[i])
    dropped = list(iterate_batches(split, batch_size=6, transform=t, seed=5, epoch=0, shuffle=True, drop_last=True))
    assert [len(y) for _, y, _ in dropped] == [6, 6, 6]
    ordered = list(iterate_batches(split, batch_size=20, transform=t, seed=0, epoch=0, shuffle=False))
    assert ordered[0][2].tolist() == list(range(20))


def test_samplers():
    split = _split([0] * 90 + [1] * 9 + [2] * 1)
    t = build_transform("none", 8, train=True)
    idx = torch.cat([i for _, _, i in iterate_batches(split, batch_size=50, transform=t, seed=0, epoch=0,
                                                       shuffle=True, sampler="sqrt")])
    counts = torch.bincount(split.labels[idx], minlength=3).tolist()
    assert counts == [90, 9 * math.ceil(math.sqrt(0.15 / 0.09)), math.ceil(math.sqrt(0.15 / 0.01))]
    assert num_batches(split, batch_size=50, sampler="sqrt") == -(-len(idx) // 50)
    assert num_batches(split, batch_size=50, sampler="sqrt", drop_last=True) == len(idx) // 50
    heavy = torch.cat([i for _, _, i in iterate_batches(split, batch_size=100, transform=t, seed=0, epoch=0,
                                                         shuffle=True, sampler="heavy")])
    assert len(heavy) == 100
    counts = torch.bincount(split.labels[heavy], minlength=3)
    assert counts.min() > 15  # every class about a third
