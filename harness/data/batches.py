"""Batch iteration: deterministic orders, class-balanced samplers, per-batch transforms.

Everything random is drawn from generators seeded by (seed, epoch), so epoch ``e`` of a
resumed run sees exactly the batches it saw the first time.

On a GPU the step waits on no host transfer: a split that fits stays on the device as uint8
(:func:`resident`), the epoch's order is copied there once, batch k+1's augmentation parameters
are drawn and sent (one packed non-blocking copy, :func:`harness.data.transforms.params_to`)
before batch k is handed out, and a split that does not fit is gathered into pinned memory
and copied on a side stream one batch ahead. The draws are the same, in the same order, so a
batch is the same function of (seed, epoch) wherever it runs.
"""
from __future__ import annotations

import dataclasses
import hashlib
from typing import Any, Iterator

import torch

from harness.data.base import Split
from harness.data.transforms import Pipeline, params_to
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


RESIDENT_SHARE = 0.25  # at most this share of a GPU's free memory holds a resident split


def resident(split: Split, device: torch.device | str, share: float = RESIDENT_SHARE) -> Split:
    """``split`` with its uint8 images on ``device`` when they take at most ``share`` of its free
    memory (CUDA); else (and on the CPU) ``split`` itself, read from the host. Labels stay on the
    host (epoch orders are drawn there); each epoch copies them over once."""
    device = torch.device(device)
    if device.type != "cuda" or split.images.device == device:
        return split
    free, _ = torch.cuda.mem_get_info(device)
    if split.images.numel() * split.images.element_size() > share * free:
        return split
    return dataclasses.replace(split, images=split.images.to(device))


def iterate_batches(split: Split, *, batch_size: int, transform, seed: int, epoch: int,
                    shuffle: bool, sampler: str = "none", drop_last: bool = False,
                    device: torch.device | str | None = None
                    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Yield (x float [B, 3, s, s], y int64 [B], index int64 [B]) for one epoch; x and y on
    ``device`` (default: where ``split.images`` are), the index on the host.

    The order comes from :func:`epoch_indices`; the transform runs per batch with a generator
    seeded by (seed, epoch), so the stream is reproducible. ``split.images`` may be a view of the
    shared memory-mapped cache: it is only read (each batch is gathered into a new tensor).
    """
    if batch_size < 1:
        raise UserError(f"batch_size must be positive, got {batch_size}")
    device = torch.device(device) if device is not None else split.images.device
    order = epoch_indices(split.labels, seed=seed, epoch=epoch, shuffle=shuffle, sampler=sampler)
    g = generator_for(seed, epoch, "transform")
    stop = len(order) - (len(order) % batch_size if drop_last else 0)
    starts = range(0, stop, batch_size)
    if device.type == "cpu" and split.images.device.type == "cpu":
        for start in starts:
            idx = order[start:start + batch_size]
            yield transform(split.images.index_select(0, idx), g), split.labels[idx], idx
        return
    loader = _DeviceLoader(split, order, device)
    draw = transform.draw if isinstance(transform, Pipeline) else None
    ahead: Any = None
    for k, start in enumerate(starts):
        idx = order[start:start + batch_size]
        current = ahead if ahead is not None else loader.fetch(start, len(idx), draw, g)
        if k + 1 < len(starts):  # the next batch's copy and draws go out before this one is used
            nxt = starts[k + 1]
            ahead = loader.fetch(nxt, min(batch_size, stop - nxt), draw, g)
        x8, y, params = loader.ready(current)
        yield (transform.apply(x8, params) if draw else transform(x8, g)), y, idx


class _DeviceLoader:
    """Batches of one epoch on ``device``: gathered there from a resident split, or gathered on
    the host into pinned memory and copied on a side stream. ``fetch`` starts a batch, ``ready``
    makes the current stream wait for it."""

    def __init__(self, split: Split, order: torch.Tensor, device: torch.device) -> None:
        self.split, self.device = split, device
        self.on_device = split.images.device.type != "cpu"
        cuda = device.type == "cuda"
        self.order = order
        if self.on_device:  # one copy of the epoch's order and the labels; batches are slices
            move = (lambda t: t.pin_memory().to(device, non_blocking=True)) if cuda else (lambda t: t.to(device))
            self.order, self.labels = move(order), move(split.labels)
        self.stream = torch.cuda.Stream(device) if cuda and not self.on_device else None

    def fetch(self, start: int, n: int, draw, g: torch.Generator) -> tuple[Any, ...]:
        """Start batch ``order[start:start + n]``; its draws (if ``draw``) are taken now, in order."""
        idx = self.order[start:start + n]
        if self.on_device:
            x8, y = self.split.images.index_select(0, idx), self.labels.index_select(0, idx)
            return x8, y, params_to(draw(n, g), self.device) if draw else None
        if self.stream is None:  # a device without streams (tests' "meta")
            x8, y = self.split.images.index_select(0, idx), self.split.labels[idx]
            return x8.to(self.device), y.to(self.device), params_to(draw(n, g), self.device) if draw else None
        images = self.split.images
        x8 = torch.empty((n, *images.shape[1:]), dtype=images.dtype, pin_memory=True)
        torch.index_select(images, 0, idx, out=x8)  # gathered straight into pinned memory
        y = self.split.labels[idx].pin_memory()
        with torch.cuda.stream(self.stream):
            x8, y = x8.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            params = params_to(draw(n, g), self.device) if draw else None
        return x8, y, params

    def ready(self, batch: tuple[Any, ...]) -> tuple[Any, ...]:
        """``batch`` usable on the current stream."""
        if self.stream is not None:
            current = torch.cuda.current_stream(self.device)
            current.wait_stream(self.stream)
            for t in (batch[0], batch[1], *(batch[2] or {}).values()):
                if isinstance(t, torch.Tensor):
                    t.record_stream(current)
        return batch


