"""TransFER's local CNNs: B LANet branches, a drop on their maps, element-wise max, features x map.

Sec. 3.1 of the TransFER paper: each branch is a LANet (two 1x1 convs, C -> C/r -> 1, a ReLU
between them, a sigmoid at the end) giving one attention map ``M_i`` [h, w]; MAD (or an
alternative, :func:`methods.layers.drop.build_map_drop`) acts on the B maps; ``M_out`` is their
element-wise maximum; the output is ``X * M_out``.

``norm=True`` adds a BatchNorm after each conv, as the PaddlePaddle port does (the paper lists no
normalisation). APViT's ``pooling.LANet`` is a different module: it scores tokens for top-k, has
no sigmoid (only the order matters there) and no normalisation option.
"""
from __future__ import annotations

import torch
import torch.nn as nn


class LANetBranch(nn.Module):
    """One attention map from a feature map: conv1x1 C -> C/r (+BN) -> ReLU -> conv1x1 -> 1 (+BN) -> sigmoid."""

    def __init__(self, chs: int, reduction: int = 16, norm: bool = False) -> None:
        super().__init__()
        hidden = max(chs // reduction, 1)
        self.conv1 = nn.Conv2d(chs, hidden, 1)
        self.bn1 = nn.BatchNorm2d(hidden) if norm else nn.Identity()
        self.act = nn.ReLU()
        self.conv2 = nn.Conv2d(hidden, 1, 1)
        self.bn2 = nn.BatchNorm2d(1) if norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, C, h, w] -> map [B, 1, h, w] in (0, 1)."""
        return torch.sigmoid(self.bn2(self.conv2(self.act(self.bn1(self.conv1(x))))))


class LocalCNNs(nn.Module):
    """B LANet branches -> ``drop`` on the stacked maps -> element-wise max -> features x map.

    With ``branches == 0`` it is the identity (no map, nothing dropped): the plain hybrid ViT.
    """

    def __init__(self, chs: int, branches: int, drop: nn.Module, reduction: int = 16, norm: bool = False) -> None:
        super().__init__()
        self.branches = nn.ModuleList(LANetBranch(chs, reduction, norm) for _ in range(branches))
        self.drop = drop

    def attention_maps(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, C, h, w] -> the branches' maps stacked, [B, n, h, w] (before any drop)."""
        return torch.cat([branch(x) for branch in self.branches], dim=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x: [B, C, h, w] -> (x * M_out [B, C, h, w], M_out [B, 1, h, w] or None when there are no branches)."""
        if len(self.branches) == 0:
            return x, None
        maps = self.drop(self.attention_maps(x))  # [B, n, h, w]
        m_out = maps.amax(dim=1, keepdim=True)  # [B, 1, h, w]
        return x * m_out, m_out
