"""Classification losses by name: ``build_loss(name, **kwargs) -> nn.Module``.

A small registry so a recipe can name its loss (``Recipe.loss``, ``Recipe.loss_kwargs``) and any
method can train with any of them (``train.loss: fpdls`` in a table row). Every loss maps
``(logits [B, K], target [B] int64) -> scalar``, the mean over the batch.

* ``ce``: plain cross-entropy (APViT, TransFER). Keyword arguments: none.
* ``label_smoothing``: cross-entropy with smoothed one-hot targets. Keyword argument
  ``smoothing`` (float in [0, 1), default 0.1), PyTorch's definition: the target is
  ``(1 - smoothing) * onehot + smoothing / K``.
* ``focal``: ``-(1 - p_y)^gamma * log p_y`` (Lin et al., ICCV 2017, without their per-class
  alpha weight, as the Neural Resizer paper uses it). ``gamma`` >= 0, default 2.0 (Lin et al.).
* ``pdls``: Prior Distribution Label Smoothing (Vo et al., the Neural Resizer paper's [10]):
  cross-entropy against ``alpha * onehot(y) + (1 - alpha) * D[y]``. ``alpha`` in [0, 1],
  default 0.5; ``prior`` = D, required.
* ``fpdls``: Focal PDLS, the Neural Resizer paper's Eq. 2-3:
  ``-sum_c (1 - p_c)^gamma * (alpha * onehot(y)_c + (1 - alpha) * D[y, c]) * log p_c``.
  ``alpha`` default 0.8, ``gamma`` default 2.0, ``prior`` required.

Defaults: the Neural Resizer paper states neither alpha nor gamma, so each loss takes its public
code's defaults: PDLS alpha 0.5 (``LabelSmoothingLossDis``), F-PDLS alpha 0.8 and gamma 2.0
(``FocalLabelSmoothingLossDis``) (``shared/notes/implementation-facts.md``). ``focal``'s gamma = 2.0 is Lin et al.'s.

The prior D is a ``[K, K]`` tensor (or anything ``torch.as_tensor`` reads) whose row ``k`` is a
distribution over the K classes for samples labelled ``k``: non-negative, rows summing to 1. On
FERPlus it is the mean annotator-vote distribution of the training images of each class. Where D
comes from is the caller's business (the harness resolves ``prior: votes`` and friends); this
module only ever sees the matrix. ``p = softmax(logits)`` is computed in float32, and the focal
factor is not detached (the paper's formula; Lin et al. do the same).
"""
from __future__ import annotations

import inspect
import math
from typing import Any, Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

LOSSES: dict[str, Callable[..., nn.Module]] = {}
PRIOR_ATOL = 1e-4  # rows of D must sum to 1 within this (a float32 mean of votes is not exact)


def register_loss(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: register a factory ``(**kwargs) -> nn.Module`` under ``name``."""
    def wrap(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in LOSSES:
            raise ValueError(f"loss {name!r} is already registered")
        LOSSES[name] = factory
        return factory
    return wrap


def check_prior(prior: Any, name: str = "prior") -> torch.Tensor:
    """``prior`` as a float32 ``[K, K]`` tensor; ``ValueError`` unless it is square, finite,
    non-negative and every row sums to 1 (within :data:`PRIOR_ATOL`)."""
    try:
        d = torch.as_tensor(prior, dtype=torch.float32).detach().cpu()
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"{name}: expected a [K, K] matrix of numbers, got {type(prior).__name__}") from None
    if d.ndim != 2 or d.shape[0] != d.shape[1] or d.shape[0] < 2:
        raise ValueError(f"{name}: expected a square [K, K] matrix with K >= 2, got shape {list(d.shape)}")
    if not torch.isfinite(d).all() or (d < 0).any():
        raise ValueError(f"{name}: every entry must be a finite number >= 0")
    sums = d.sum(1)
    bad = [i for i, s in enumerate(sums.tolist()) if abs(s - 1.0) > PRIOR_ATOL]
    if bad:
        raise ValueError(f"{name}: every row must sum to 1 (a distribution over the classes); rows {bad} "
                         f"sum to {[round(sums[i].item(), 6) for i in bad]}")
    return d


def _unit(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{key}={value!r} is not allowed; allowed values: a number in [0, 1]")
    return float(value)


def _non_negative(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{key}={value!r} is not allowed; allowed values: a finite number >= 0")
    return float(value)


def soft_targets(target: torch.Tensor, num_classes: int, alpha: float, prior: torch.Tensor | None) -> torch.Tensor:
    """``alpha * onehot(y) + (1 - alpha) * D[y]``; plain one-hot without a prior.

    target: [B] int64 -> [B, K] float32, rows summing to 1.
    """
    onehot = F.one_hot(target, num_classes).float()  # [B, K]
    if prior is None:
        return onehot
    return alpha * onehot + (1.0 - alpha) * prior[target]  # [B, K]


class FocalPriorLoss(nn.Module):
    """``-sum_c (1 - p_c)^gamma * target_c * log p_c``, batch mean: F-PDLS, and PDLS (gamma 0)
    and focal loss (no prior) as its special cases."""

    def __init__(self, alpha: float = 1.0, gamma: float = 0.0, prior: torch.Tensor | None = None) -> None:
        super().__init__()
        self.alpha, self.gamma = alpha, gamma
        self.register_buffer("prior", prior, persistent=False)  # moves with .to(device); not in checkpoints

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        k = logits.shape[-1]
        prior = self.prior
        if prior is not None:
            if prior.shape[0] != k:
                raise ValueError(f"prior is [{prior.shape[0]}, {prior.shape[1]}] but the model has {k} classes")
            prior = prior.to(logits.device)
        logp = F.log_softmax(logits.float(), dim=-1)  # [B, K]
        t = soft_targets(target, k, self.alpha, prior)  # [B, K]
        per_class = t * logp  # [B, K]
        if self.gamma:
            per_class = per_class * (1.0 - logp.exp()).pow(self.gamma)
        return -per_class.sum(-1).mean()

    def extra_repr(self) -> str:
        k = None if self.prior is None else self.prior.shape[0]
        return f"alpha={self.alpha}, gamma={self.gamma}, prior={'none' if k is None else f'[{k}, {k}]'}"


@register_loss("ce")
def _ce() -> nn.Module:
    return nn.CrossEntropyLoss()


@register_loss("label_smoothing")
def _label_smoothing(smoothing: float = 0.1) -> nn.Module:
    if isinstance(smoothing, bool) or not isinstance(smoothing, (int, float)) or not 0.0 <= float(smoothing) < 1.0:
        raise ValueError(f"label_smoothing: smoothing={smoothing!r} is not allowed; allowed values: a number in [0, 1)")
    return nn.CrossEntropyLoss(label_smoothing=float(smoothing))


@register_loss("focal")
def _focal(gamma: float = 2.0) -> nn.Module:
    return FocalPriorLoss(alpha=1.0, gamma=_non_negative(gamma, "focal: gamma"))


def _required_prior(prior: Any, loss: str) -> torch.Tensor:
    if prior is None:
        raise ValueError(f"{loss}: prior is required: a [K, K] matrix whose row k is the label distribution "
                         "of class k (on FERPlus, the mean annotator votes: prior: votes in a table spec)")
    return check_prior(prior, f"{loss}: prior")


@register_loss("pdls")
def _pdls(alpha: float = 0.5, prior: Any = None) -> nn.Module:
    return FocalPriorLoss(alpha=_unit(alpha, "pdls: alpha"), gamma=0.0, prior=_required_prior(prior, "pdls"))


@register_loss("fpdls")
def _fpdls(alpha: float = 0.8, gamma: float = 2.0, prior: Any = None) -> nn.Module:
    return FocalPriorLoss(alpha=_unit(alpha, "fpdls: alpha"), gamma=_non_negative(gamma, "fpdls: gamma"),
                          prior=_required_prior(prior, "fpdls"))


def build_loss(name: str, **kwargs: Any) -> nn.Module:
    """Build the loss registered as ``name``; unknown names, keyword arguments or values raise ``ValueError``."""
    if name not in LOSSES:
        raise ValueError(f"loss: unknown {name!r}; allowed values: {', '.join(sorted(LOSSES))}")
    allowed = loss_arguments(name)
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ValueError(f"loss {name!r}: unknown keyword argument(s) {unknown}; allowed: "
                         f"{', '.join(allowed) or 'none'}")
    return LOSSES[name](**kwargs)


def loss_arguments(name: str) -> tuple[str, ...]:
    """The keyword arguments the loss ``name`` accepts, in order."""
    return tuple(inspect.signature(LOSSES[name]).parameters)
