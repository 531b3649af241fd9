"""TransFER's dropping: Multi-Attention Dropping (MAD), its alternatives, and MSAD's masks.

Xue et al., "TransFER: Learning Relation-aware Facial Expression Representations with
Transformers" (ICCV 2021), Sec. 3.2-3.3 and Table 4.

* MAD takes ``n`` maps per sample and, in training, with probability ``p`` per sample, sets one of
  them (chosen uniformly) to zero; nothing is rescaled, and at eval it is the identity. The same
  draw, one of ``n`` per selected sample, is MSAD's: over the ``H`` heads of every attention block
  (the paper), or -- the PaddlePaddle port's reading -- over the token positions ``0..H-1`` of the
  q/k/v tensor (its ``HeadDropOut`` indexes the token axis with a head index).
* The alternatives of Table 4 act on the same ``[B, n, h, w]`` stack of attention maps: element-wise
  dropout, timm's DropBlock (``DropBlock2d``, a mask per map) and spatial dropout
  (``nn.Dropout2d``, whole maps dropped independently). Like dropout, they rescale the kept
  values in training and are the identity at eval.

All randomness comes from torch's global generator, which the trainer seeds per epoch.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
from timm.layers import DropBlock2d

MAP_DROPS = ("mad", "dropout", "dropblock", "spatial_dropout", "none")
MSAD_MODES = ("head", "token", "none")


def drop_one_mask(batch: int, n: int, p: float, device: torch.device | str | None = None) -> torch.Tensor:
    """Keep mask that zeroes one of ``n`` entries (uniform) in each sample selected with probability ``p``.

    Returns float [batch, n] of ones, with exactly one 0 in every selected row and none elsewhere.
    """
    keep = torch.ones(batch, n, device=device)
    if n == 0 or p <= 0:
        return keep
    selected = torch.rand(batch, device=device) < p  # [B]
    which = torch.randint(n, (batch,), device=device)  # [B]
    rows = selected.nonzero().squeeze(1)  # [S]
    keep[rows, which[rows]] = 0.0
    return keep


class MultiAttentionDrop(nn.Module):
    """MAD: zero one whole map of ``n`` per sample with probability ``p``, in training only, no rescaling."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = float(p)
        self.last_keep: torch.Tensor | None = None  # [B, n] of the last training forward, for inspection

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        """maps: [B, n, *] -> [B, n, *]."""
        if not self.training or self.p <= 0:
            self.last_keep = None
            return maps
        keep = drop_one_mask(maps.shape[0], maps.shape[1], self.p, maps.device)  # [B, n]
        self.last_keep = keep
        return maps * keep.to(maps.dtype).view(*keep.shape, *([1] * (maps.dim() - 2)))

    def extra_repr(self) -> str:
        return f"p={self.p}"


def build_map_drop(name: str, p: float, block_size: int = 7) -> nn.Module:
    """The drop acting on the stacked branch maps [B, n, h, w]: ``name`` in :data:`MAP_DROPS`.

    ``block_size`` is DropBlock's block side on this map (callers rescale it to their grid).
    """
    builders: dict[str, Callable[[], nn.Module]] = {
        "mad": lambda: MultiAttentionDrop(p),
        "dropout": lambda: nn.Dropout(p),
        # one mask per map: the paper contrasts MAD with drops that act "independently ... channel-wise"
        "dropblock": lambda: DropBlock2d(drop_prob=p, block_size=block_size, couple_channels=False),
        "spatial_dropout": lambda: nn.Dropout2d(p),
        "none": nn.Identity,
    }
    if name not in builders:
        raise ValueError(f"transfer.drop: {name!r} is not allowed; allowed values: {', '.join(MAP_DROPS)}")
    return builders[name]()


def msad_masks(
    mode: str, batch: int, num_heads: int, num_tokens: int, p: float, device: torch.device | str | None = None
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Draw one block's MSAD masks: ``(head_mask [B, H] or None, token_mask [B, N] or None)``.

    ``head`` (the paper): one head's output zeroed per selected sample. ``token`` (the Paddle port):
    q, k and v of one token position in ``0..H-1`` zeroed per selected sample (position 0 is the
    class token). ``none``: no masks. Call it in training only; every block draws its own.
    """
    if mode == "none" or p <= 0:
        return None, None
    if mode == "head":
        return drop_one_mask(batch, num_heads, p, device), None
    if mode == "token":
        if num_tokens < num_heads:
            raise ValueError(f"transfer.msad: token mode needs at least {num_heads} tokens, got {num_tokens}")
        keep = torch.ones(batch, num_tokens, device=device)
        keep[:, :num_heads] = drop_one_mask(batch, num_heads, p, device)
        return None, keep
    raise ValueError(f"transfer.msad: {mode!r} is not allowed; allowed values: {', '.join(MSAD_MODES)}")
