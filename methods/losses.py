"""Classification losses by name: ``build_loss(name, **kwargs) -> nn.Module``.

A small registry so a recipe can name its loss (``Recipe.loss``, ``Recipe.loss_kwargs``) and other
losses (focal, PDLS, F-PDLS, ...) can be added with :func:`register_loss` without touching callers.
Every loss maps ``(logits [B, K], target [B] int64) -> scalar``.

* ``ce``: plain cross-entropy (APViT, TransFER). Keyword arguments: none.
* ``label_smoothing``: cross-entropy with smoothed one-hot targets. Keyword argument
  ``smoothing`` (float in [0, 1), default 0.1), PyTorch's definition: the target is
  ``(1 - smoothing) * onehot + smoothing / K``.
"""
from __future__ import annotations

from typing import Any, Callable

import torch.nn as nn

LOSSES: dict[str, Callable[..., nn.Module]] = {}


def register_loss(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: register a factory ``(**kwargs) -> nn.Module`` under ``name``."""
    def wrap(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in LOSSES:
            raise ValueError(f"loss {name!r} is already registered")
        LOSSES[name] = factory
        return factory
    return wrap


@register_loss("ce")
def _ce() -> nn.Module:
    return nn.CrossEntropyLoss()


@register_loss("label_smoothing")
def _label_smoothing(smoothing: float = 0.1) -> nn.Module:
    if not 0.0 <= float(smoothing) < 1.0:
        raise ValueError(f"label_smoothing: smoothing={smoothing!r} is not allowed; allowed values: a number in [0, 1)")
    return nn.CrossEntropyLoss(label_smoothing=float(smoothing))


def build_loss(name: str, **kwargs: Any) -> nn.Module:
    """Build the loss registered as ``name``; unknown names or keyword arguments raise ``ValueError``."""
    if name not in LOSSES:
        raise ValueError(f"loss: unknown {name!r}; allowed values: {', '.join(sorted(LOSSES))}")
    try:
        return LOSSES[name](**kwargs)
    except TypeError as err:
        raise ValueError(f"loss {name!r}: bad keyword arguments {sorted(kwargs)} ({err})") from None
