"""Difficulty calibration of the synthetic RAF-DB stand-in (opt-in: several CPU minutes).

Trains the ``tiny`` APViT baseline (APP and ATP off) with its own ``tiny`` recipe on the
default ``tiny`` stand-in and checks that test accuracy is neither chance nor saturated.
Run with ``FERBENCH_CALIBRATE=1 pytest tests/data/test_calibration.py``.
"""
from __future__ import annotations

import os

import pytest
import torch

from harness.data import build_transform, iterate_batches, load_dataset, num_batches, synthetic_root

pytestmark = [pytest.mark.slow, pytest.mark.skipif(os.environ.get("FERBENCH_CALIBRATE") != "1",
                                                   reason="set FERBENCH_CALIBRATE=1 (takes minutes)")]


def train_and_test(seed: int = 0) -> float:
    """Test accuracy (last epoch) of the tiny APViT baseline on the default tiny synthetic RAF-DB."""
    import timm

    import methods  # noqa: F401  (registers the models)
    from harness.run.train.optim import build_optimizer, build_scheduler

    torch.manual_seed(seed)
    model = timm.create_model("apvit", preset="tiny", **{"app.k": 196, "atp.r": 1.0})
    r = model.recipe
    ds = load_dataset("rafdb", synthetic_root("rafdb"), decode_size=r.img_size)
    train = ds.splits["train"]
    opt = build_optimizer(model, r)
    sched = build_scheduler(opt, r, num_batches(train, batch_size=r.batch_size, sampler=r.sampler))
    train_t = build_transform(r.augment, r.img_size, train=True)
    for epoch in range(r.epochs):
        model.train()
        for x, y, _ in iterate_batches(train, batch_size=r.batch_size, transform=train_t, seed=seed,
                                       epoch=epoch, shuffle=True, sampler=r.sampler):
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), r.grad_clip)
            opt.step()
            sched.step()
    model.eval()
    correct = 0
    with torch.no_grad():
        for x, y, _ in iterate_batches(ds.splits["test"], batch_size=256, seed=0, epoch=0, shuffle=False,
                                       transform=build_transform(r.augment, r.img_size, train=False)):
            correct += int((model(x).argmax(1) == y).sum())
    return correct / len(ds.splits["test"])


def test_tiny_apvit_baseline_is_neither_chance_nor_saturated():
    acc = train_and_test()
    assert 0.6 <= acc <= 0.9, acc
