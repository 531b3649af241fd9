"""The "apvit" training pipeline built from kornia.augmentation, for the augmentation benchmark.

Benchmark only: the harness trains with :func:`harness.data.transforms.apvit_train` (see its
module docstring for why). Where kornia's semantics differ from the hand-written pipeline's
(and from the official torchvision config the hand-written one follows) it says so below.
"""
from __future__ import annotations

import torch
from torch import nn

from harness.data.transforms import MEAN, STD, Stats


def kornia_apvit(img_size: int, *, mean: Stats = MEAN, std: Stats = STD) -> nn.Module:
    """uint8 [B, 3, S, S] -> float [B, 3, img_size, img_size], on the input's device.

    Differences from ``apvit_train``: rotation, crop and resize are two resamplings instead of
    one warp; colour jitter draws one op order per batch (torchvision and ours: per sample);
    random erasing fills a constant (kornia allows only a value in [0, 1], here 0 after
    normalisation) where the official config fills N(0, 1) noise, and picks its box differently
    (a coin flip between ratio < 1 and > 1, box clamped to the image, instead of up to ten tries).
    Every parameter is drawn from torch's global CPU generator.
    """
    import kornia.augmentation as K

    return nn.Sequential(
        K.RandomRotation(degrees=6.0, p=0.5),
        K.RandomResizedCrop((img_size, img_size), scale=(0.8, 1.0), ratio=(1.0, 1.0)),
        K.RandomHorizontalFlip(p=0.5),
        K.RandomGrayscale(p=0.2),
        K.ColorJitter(0.4, 0.4, 0.4, 0.1, p=0.8),
        K.Normalize(mean=torch.tensor(mean), std=torch.tensor(std)),
        K.RandomErasing(scale=(0.02, 0.33), ratio=(0.3, 3.3), value=0.0, p=0.5),
    )


def seeded(pipeline: nn.Module):
    """``transform(images, g)`` as the harness calls it: the global CPU generator is seeded from
    ``g`` inside ``fork_rng``, so kornia's draws follow our per-(seed, epoch) generator (and a
    resumed run sees the same batches) without disturbing anyone else's global state."""

    def transform(images: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        seed = int(torch.randint(0, 2**62, (1,), generator=g))
        with torch.random.fork_rng(devices=[]):  # kornia draws on the CPU unless the module is moved
            torch.random.default_generator.manual_seed(seed)  # the CPU generator only (manual_seed: CUDA too)
            return pipeline(images.float().div_(255.0))

    return transform
