"""Batch iteration: deterministic orders, class-balanced samplers, per-batch transforms.

Everything random is drawn from generators seeded by (seed, epoch), so epoch ``e`` of a
resumed run sees exactly the batches it saw the first time.
"""
from __future__ import annotations

import hashlib
from typing import Iterator

import torch

from harness.data.base import Split
from harness.errors import UserError

SAMPLERS = ("none", "sqrt", "heavy")


def generator_for(seed: int, epoch: int, stream: str) -> torch.Generator:
    """A torch.Generator seeded from (seed, epoch, stream) by a stable hash."""
    digest = hashlib.sha256(f"{seed}:{epoch}:{stream}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))


def repeat_factors(labels: torch.Tensor, threshold: float = 0.15,
                   num_classes: int | None = None) -> torch.Tensor:
    """Class-balanced repeat factors (mmcls ClassBalancedDataset), float [N].

    For class frequency f_c (fraction of samples), r_c = max(1, sqrt(threshold / f_c));
    each sample takes its class's factor. The sampler repeats sample i ceil(r_i) times.
    """
    counts = torch.bincount(labels, minlength=num_classes or 0).double()  # [C]
    freq = counts / max(len(labels), 1)
    r = torch.clamp(torch.sqrt(threshold / freq.clamp_min(1e-12)), min=1.0)  # [C]
    return r[labels].float()


def epoch_indices(labels: torch.Tensor, *, seed: int, epoch: int, shuffle: bool,
                  sampler: str = "none") -> torch.Tensor:
    """The sample indices one epoch visits, in order (int64 [M])."""
    n = len(labels)
    g = generator_for(seed, epoch, "order")
    if sampler == "none":
        return torch.randperm(n, generator=g) if shuffle else torch.arange(n)
    if sampler == "sqrt":
        reps = torch.ceil(repeat_factors(labels)).long()  # [N]
        idx = torch.repeat_interleave(torch.arange(n), reps)  # [M]
        return idx[torch.randperm(len(idx), generator=g)] if shuffle else idx
    if sampler == "heavy":
        # AffectNet-style: every class equally likely, drawn with replacement, N per epoch.
        counts = torch.bincount(labels).double()
        weights = 1.0 / counts[labels]
        return torch.multinomial(weights, n, replacement=True, generator=g)
    raise UserError(f"unknown sampler {sampler!r}; known: {', '.join(SAMPLERS)}")


def num_batches(split: Split, *, batch_size: int, sampler: str = "none", drop_last: bool = False) -> int:
    """How many batches :func:`iterate_batches` yields per epoch (the same for every epoch).

    With the "sqrt" sampler an epoch is longer than the split (samples are repeated), so a
    per-step schedule must use this, not ``len(split) // batch_size``.
    """
    n = len(split.labels)
    if sampler == "sqrt":
        n = int(torch.ceil(repeat_factors(split.labels)).long().sum())
    elif sampler not in SAMPLERS:
        raise UserError(f"unknown sampler {sampler!r}; known: {', '.join(SAMPLERS)}")
    return n // batch_size if drop_last else -(-n // batch_size)


def iterate_batches(split: Split, *, batch_size: int, transform, seed: int, epoch: int,
                    shuffle: bool, sampler: str = "none", drop_last: bool = False
                    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Yield (x float [B, 3, s, s], y int64 [B], index int64 [B]) for one epoch.

    The order comes from :func:`epoch_indices`; ``transform(images_uint8, generator)`` runs
    per batch with a generator seeded by (seed, epoch), so the stream is reproducible.
    ``split.images`` may be a view of the shared memory-mapped cache: it is only read (each
    batch is gathered into a new tensor).
    """
    if batch_size < 1:
        raise UserError(f"batch_size must be positive, got {batch_size}")
    order = epoch_indices(split.labels, seed=seed, epoch=epoch, shuffle=shuffle, sampler=sampler)
    g = generator_for(seed, epoch, "transform")
    stop = len(order) - (len(order) % batch_size if drop_last else 0)
    for start in range(0, stop, batch_size):
        idx = order[start:start + batch_size]
        yield transform(split.images.index_select(0, idx), g), split.labels[idx], idx


