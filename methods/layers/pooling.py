"""Attentive pooling for APViT: criteria registries and pooling functions.

APP (attentive patch pooling) scores every patch token from its features, then keeps the top-k
(``hard``) or re-weights all of them (``soft``). ATP (attentive token pooling) scores patch tokens
from the class-token row of an attention block's pre-softmax logits and keeps a fraction of them.

Conventions (shared by every function here):

* ``x``: ``[B, P + N, C]`` tokens, the first ``P = num_prefix_tokens`` are prefix (class) tokens and
  are always kept in front, in order;
* ``scores``: ``[B, N]``, one score per patch token, higher means more important;
* kept patch tokens stay in their original (ascending) order, so spatial order is preserved.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn as nn

# ---------------------------------------------------------------------------------------------
# APP criteria: [B, N, C] patch features -> [B, N] scores


def app_abs(feats: torch.Tensor) -> torch.Tensor:
    """Sum of absolute values over channels (APViT's default). feats: [B, N, C] -> [B, N]."""
    return feats.abs().sum(dim=-1)


def app_sum(feats: torch.Tensor) -> torch.Tensor:
    """Signed sum over channels. feats: [B, N, C] -> [B, N]."""
    return feats.sum(dim=-1)


def app_max(feats: torch.Tensor) -> torch.Tensor:
    """Maximum over channels. feats: [B, N, C] -> [B, N]."""
    return feats.amax(dim=-1)


class LANet(nn.Module):
    """Learned APP criterion: two 1x1 convs C -> C/r -> 1 with a ReLU between.

    Applied per token, a 1x1 conv is a linear layer, so it is written as two ``nn.Linear``.
    ``variant``:

    * ``"paper"`` (default): conv, ReLU, conv, as the paper describes LANet; no sigmoid (only the
      relative order matters for top-k) and no normalisation.
    * ``"code"``: the official APViT code's ``LANet`` (``mmcls/models/necks/la_max.py``): a
      BatchNorm after each conv (over channels, i.e. over every token of the batch) and a sigmoid
      at the end. Keys ``fc1``, ``bn1``, ``fc2``, ``bn2`` (the code's ``LA_conv1``, ``bn1``,
      ``LA_conv2``, ``bn2``).
    """

    VARIANTS = ("paper", "code")

    def __init__(self, dim: int, reduction: int = 16, variant: str = "paper") -> None:
        super().__init__()
        if variant not in self.VARIANTS:
            raise ValueError(f"app.lanet_variant: {variant!r} is not allowed; allowed values: {', '.join(self.VARIANTS)}")
        hidden = max(dim // reduction, 1)
        self.variant = variant
        self.fc1 = nn.Linear(dim, hidden)
        self.bn1 = nn.BatchNorm1d(hidden) if variant == "code" else None
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(hidden, 1)
        self.bn2 = nn.BatchNorm1d(1) if variant == "code" else None

    @staticmethod
    def _bn(bn: nn.BatchNorm1d, x: torch.Tensor) -> torch.Tensor:
        """BatchNorm over the channels of tokens: x [B, N, C] -> [B, N, C] (= BatchNorm2d on [B, C, h, w])."""
        return bn(x.flatten(0, 1)).view_as(x)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """feats: [B, N, C] -> [B, N] (in (0, 1) for the ``code`` variant)."""
        h = self.fc1(feats)  # [B, N, C/r]
        if self.bn1 is not None:
            h = self._bn(self.bn1, h)
        s = self.fc2(self.act(h))  # [B, N, 1]
        if self.bn2 is not None:
            s = torch.sigmoid(self._bn(self.bn2, s))
        return s.squeeze(-1)


APP_CRITERIA: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "abs": app_abs,
    "sum": app_sum,
    "max": app_max,
}
LEARNED_APP_CRITERIA = ("lanet",)


class Criterion(nn.Module):
    """Thin holder that makes a pure criterion function usable where a module is expected."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], name: str) -> None:
        super().__init__()
        self.fn = fn
        self.name = name

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.fn(feats)

    def extra_repr(self) -> str:
        return self.name


def build_app_criterion(name: str, dim: int, lanet_reduction: int = 16, lanet_variant: str = "paper") -> nn.Module:
    """Return the APP criterion ``name`` as a module mapping [B, N, C] -> [B, N]."""
    if name == "lanet":
        return LANet(dim, lanet_reduction, lanet_variant)
    if name not in APP_CRITERIA:
        raise ValueError(f"app.criterion: unknown {name!r}; allowed: {sorted(APP_CRITERIA) + list(LEARNED_APP_CRITERIA)}")
    return Criterion(APP_CRITERIA[name], name)


# ---------------------------------------------------------------------------------------------
# ATP criteria: [B, H, N] class-token logits (patch columns) -> [B, N] scores


def atp_sum(cls_logits: torch.Tensor) -> torch.Tensor:
    """Signed sum over heads (APViT's default). cls_logits: [B, H, N] -> [B, N]."""
    return cls_logits.sum(dim=1)


def atp_max(cls_logits: torch.Tensor) -> torch.Tensor:
    """Maximum over heads. cls_logits: [B, H, N] -> [B, N]."""
    return cls_logits.amax(dim=1)


def atp_abs(cls_logits: torch.Tensor) -> torch.Tensor:
    """Sum of absolute values over heads. cls_logits: [B, H, N] -> [B, N]."""
    return cls_logits.abs().sum(dim=1)


ATP_CRITERIA: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "sum": atp_sum,
    "max": atp_max,
    "abs": atp_abs,
}


# ---------------------------------------------------------------------------------------------
# Pooling


def topk_indices(scores: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k`` highest-scoring patch tokens in ascending (spatial) order, without gradient.

    scores: [B, N] -> keep_idx [B, k]. Ties are broken by ``torch.topk``.
    """
    if not 1 <= k <= scores.shape[1]:
        raise ValueError(f"topk_pool: k={k} must be in 1..{scores.shape[1]}")
    with torch.no_grad():
        return scores.topk(k, dim=1).indices.sort(dim=1).values  # [B, k]


def topk_pool(
    x: torch.Tensor,
    scores: torch.Tensor,
    k: int,
    num_prefix_tokens: int = 1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep the prefix tokens and the ``k`` highest-scoring patch tokens, in their original order.

    x: [B, P + N, C], scores: [B, N] -> (x_kept [B, P + k, C], keep_idx [B, k]) where ``keep_idx``
    indexes patch tokens (0..N-1), sorted ascending (:func:`topk_indices`). Gradients reach ``x``
    through the gather only. The prefix tokens are gathered with the patches (their indices lead
    the index), so the output is one gather, not a gather and a concatenation.
    """
    B, T, C = x.shape
    P = num_prefix_tokens
    N = T - P
    if scores.shape != (B, N):
        raise ValueError(f"topk_pool: scores {tuple(scores.shape)} do not match {N} patch tokens")
    keep_idx = topk_indices(scores, k)  # [B, k]
    idx = keep_idx if P == 0 else torch.cat([torch.arange(P, device=x.device).expand(B, P), keep_idx + P], 1)  # [B, P + k]
    return x.gather(1, idx.unsqueeze(-1).expand(B, P + k, C)), keep_idx  # [B, P + k, C], [B, k]


def soft_pool(
    x: torch.Tensor,
    scores: torch.Tensor,
    num_prefix_tokens: int = 1,
    normalise: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Re-weight patch tokens by the attention map instead of dropping any (APViT Table 6, "soft").

    x: [B, P + N, C], scores: [B, N] -> (x_weighted [B, P + N, C], keep_idx [B, N] = arange(N)).
    With ``normalise`` the map is divided by its largest absolute value per sample, so weights lie
    in [-1, 1] and the feature scale stays bounded whatever the criterion's magnitude (the paper
    does not say how the map is scaled; this is the project's choice). Without it the raw scores
    multiply the features (the official code's LANet, whose map is a sigmoid). Gradients flow into
    ``scores`` (e.g. to LANet).
    """
    B, T, C = x.shape
    N = T - num_prefix_tokens
    weights = scores / scores.abs().amax(dim=1, keepdim=True).clamp_min(1e-12) if normalise else scores  # [B, N]
    patches = x[:, num_prefix_tokens:] * weights.unsqueeze(-1)  # [B, N, C]
    keep_idx = torch.arange(N, device=x.device).expand(B, N)  # [B, N]
    return torch.cat([x[:, :num_prefix_tokens], patches], dim=1), keep_idx


def atp_keep_count(num_tokens: int, keep_rate: float) -> int:
    """Patch tokens an ATP block keeps: ``max(floor((num_tokens - 1) * r), 1)``.

    ``num_tokens`` counts the class token, which is kept on top of the returned number. The rate is
    relative to the current count (as in APViT/EViT). A tiny epsilon guards the floor against
    float error (``0.7 * 10`` must give 7).
    """
    return max(int(math.floor((num_tokens - 1) * keep_rate + 1e-9)), 1)


def atp_pool(
    x: torch.Tensor,
    cls_logits: torch.Tensor,
    keep_rate: float,
    criterion: str = "sum",
    num_prefix_tokens: int = 1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """ATP: score patch tokens from the class-token attention logits and keep the top fraction.

    x: [B, 1 + N, C], cls_logits: [B, H, N] (pre-softmax scaled q_cls . k^T over the patch
    columns) -> (x_kept [B, 1 + n_keep, C], keep_idx [B, n_keep]), with
    ``n_keep = atp_keep_count(1 + N, keep_rate)``.
    """
    if criterion not in ATP_CRITERIA:
        raise ValueError(f"atp.criterion: unknown {criterion!r}; allowed: {sorted(ATP_CRITERIA)}")
    scores = ATP_CRITERIA[criterion](cls_logits)  # [B, N]
    return topk_pool(x, scores, atp_keep_count(x.shape[1], keep_rate), num_prefix_tokens)
