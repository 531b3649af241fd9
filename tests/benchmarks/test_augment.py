"""Throughput of the "apvit" training augmentation: hand-written against kornia.augmentation.

Batch 128 of uint8 images at 112 and 224 px, already on the bench device
($FERBENCH_BENCH_DEVICE), each call with a fresh per-batch generator as the runner passes.
Timed with ``benchmark.pedantic`` (``make bench``); ``extra_info`` has ``kind="augment"`` so the
report lists these rows beside, never against, the model latencies. The harness trains with the
hand-written pipeline: see :mod:`harness.data.transforms` for why.
"""
from __future__ import annotations

import pytest
import torch

from harness.measure import latency
from harness.data.transforms import build_transform
from tests.benchmarks.cases import (AUGMENT_BATCH, AUGMENT_PIPELINES, AUGMENT_QUICK_BATCH, AUGMENT_ROUNDS,
                                    AUGMENT_SIZES)

LABELS = {"hand": "apvit augmentation, hand-written (harness)", "kornia": "apvit augmentation, kornia"}


def _pipeline(name: str, size: int):
    if name == "hand":
        return build_transform("apvit", size, train=True)
    pytest.importorskip("kornia")
    from tests.benchmarks.kornia_apvit import kornia_apvit, seeded
    return seeded(kornia_apvit(size))


@pytest.mark.parametrize("size", AUGMENT_SIZES, ids=lambda s: f"{s}px")
@pytest.mark.parametrize("name", AUGMENT_PIPELINES)
def test_augment(benchmark, quick, bench_threads, bench_device, name, size):
    batch = AUGMENT_QUICK_BATCH if quick else AUGMENT_BATCH
    threads = 1 if quick else bench_threads
    device = torch.device(bench_device)
    transform = _pipeline(name, size)
    images = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0)).to(device)
    calls = iter(range(10**6))

    def step() -> torch.Tensor:
        out = transform(images, torch.Generator().manual_seed(next(calls)))
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return out

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        out = step()
        assert out.shape == (batch, 3, size, size) and out.dtype == torch.float32 and out.device == images.device
        assert torch.isfinite(out).all()
        # Both are pure functions of (images, generator state): what a resumed run needs.
        assert torch.equal(transform(images, torch.Generator().manual_seed(5)),
                           transform(images, torch.Generator().manual_seed(5)))
        benchmark.group = f"augment batch {AUGMENT_BATCH}"
        benchmark.extra_info.update(kind="augment", label=f"{LABELS[name]}, {size} px", batch=batch,
                                    threads=threads, device=str(device), input_size=size,
                                    env=latency.environment(threads, device))
        rounds, warmup = AUGMENT_ROUNDS[name]
        benchmark.pedantic(step, rounds=rounds, warmup_rounds=warmup, iterations=1)
    finally:
        torch.set_num_threads(previous)
