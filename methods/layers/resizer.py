"""Resizer front-ends for a fixed-size backbone: interpolation, a learned resizer, face SR, an STN.

Pieces of the Neural Resizer (Hwang et al., ICASSP 2022, ``methods/nr.py``), each a module that maps
an image batch ``[B, 3, H, W]`` to another size. All of them work on normalised images (what the
harness feeds a model), so they compose in any order.

* :func:`resize` -- deterministic interpolation (``bilinear`` | ``bicubic``), ``align_corners=False``
  and no anti-aliasing: ``F.interpolate``'s defaults, which is also what TensorFlow's
  ``tf.image.resize`` (the learned resizer's reference code) does by default.
* :class:`LearnedResizer` -- "learning to resize" (Talebi & Milanfar, ICCV 2021), with the layer
  order of the implementation-facts note: bilinear image skip to the target size; main path
  7x7 conv 3->n + LeakyReLU(0.2) -> 1x1 conv + LeakyReLU + BN -> bilinear resize -> r residual
  blocks (conv3-BN-LeakyReLU-conv3-BN + identity) -> conv3 + BN + the resized features -> 7x7 conv
  n->3, added to the image skip.
* :class:`FaceSR` -- a small face super-resolution network (EDSR-style: conv, residual blocks
  without BN, pixel shuffle) that predicts the residual over a bicubic up-scaling. The paper uses
  DIC (Ma et al., CVPR 2020) pre-trained on Helen; FERbench trains this stand-in in the
  ``sr_faces`` pre-training stage (``methods.nr.SRStage``).
* :class:`SpatialTransformer` -- an affine STN (Jaderberg et al., 2015) whose regressor starts at
  the identity transform, so at initialisation it returns its input.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

INTERPOLATIONS = ("bilinear", "bicubic")


def resize(x: torch.Tensor, size: int, mode: str = "bilinear") -> torch.Tensor:
    """x: [B, C, H, W] -> [B, C, size, size] by ``mode`` interpolation (identity when already that size)."""
    if mode not in INTERPOLATIONS:
        raise ValueError(f"interpolation {mode!r} is not allowed; allowed values: {', '.join(INTERPOLATIONS)}")
    if x.shape[-2:] == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode=mode, align_corners=False)


class Interpolate(nn.Module):
    """:func:`resize` as a module (no parameters)."""

    def __init__(self, size: int, mode: str = "bilinear") -> None:
        super().__init__()
        resize(torch.zeros(1, 1, 1, 1), 1, mode)  # validate the mode now, not at the first forward
        self.size, self.mode = size, mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, C, H, W] -> [B, C, size, size]."""
        return resize(x, self.size, self.mode)

    def extra_repr(self) -> str:
        return f"size={self.size}, mode={self.mode}"


class _ResBlock(nn.Module):
    """conv3 - BN - LeakyReLU(0.2) - conv3 - BN, plus the identity (Talebi & Milanfar's block)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(n, n, 3, padding=1, bias=False), nn.BatchNorm2d(n), nn.LeakyReLU(0.2),
            nn.Conv2d(n, n, 3, padding=1, bias=False), nn.BatchNorm2d(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class LearnedResizer(nn.Module):
    """Talebi & Milanfar's learnable resizer: [B, 3, H, W] -> [B, 3, size, size].

    ``blocks`` is r (residual blocks), ``filters`` is n (channels); their defaults r = 1, n = 16
    are the reference configuration the Neural Resizer paper follows.
    """

    def __init__(self, size: int, blocks: int = 1, filters: int = 16, in_chans: int = 3) -> None:
        super().__init__()
        self.size = size
        n = filters
        self.head = nn.Sequential(nn.Conv2d(in_chans, n, 7, padding=3), nn.LeakyReLU(0.2),
                                  nn.Conv2d(n, n, 1), nn.LeakyReLU(0.2), nn.BatchNorm2d(n))
        self.blocks = nn.Sequential(*[_ResBlock(n) for _ in range(blocks)])
        self.fuse = nn.Sequential(nn.Conv2d(n, n, 3, padding=1, bias=False), nn.BatchNorm2d(n))
        self.tail = nn.Conv2d(n, in_chans, 7, padding=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, 3, H, W] -> [B, 3, size, size]."""
        skip = resize(x, self.size)  # [B, 3, s, s]
        feats = resize(self.head(x), self.size)  # [B, n, s, s]
        feats = self.fuse(self.blocks(feats)) + feats
        return self.tail(feats) + skip


class FaceSR(nn.Module):
    """Face super-resolution by ``scale``: [B, 3, h, w] -> [B, 3, scale*h, scale*w].

    conv3 3->C, ``blocks`` residual blocks (conv3-ReLU-conv3, no BN, as EDSR), conv3 + the head's
    features, conv3 C->3*s^2, pixel shuffle; the result is added to a bicubic up-scaling of the
    input, so an untrained network is bicubic interpolation plus small noise.
    """

    def __init__(self, scale: int = 2, channels: int = 32, blocks: int = 4) -> None:
        super().__init__()
        if scale < 1:
            raise ValueError(f"FaceSR: scale {scale!r} must be >= 1")
        self.scale = scale
        self.head = nn.Conv2d(3, channels, 3, padding=1)
        self.body = nn.Sequential(*[nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(),
                                                  nn.Conv2d(channels, channels, 3, padding=1))
                                    for _ in range(blocks)])
        self.fuse = nn.Conv2d(channels, channels, 3, padding=1)
        self.up = nn.Sequential(nn.Conv2d(channels, 3 * scale * scale, 3, padding=1), nn.PixelShuffle(scale))

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: [B, 3, h, w] -> (super-resolved [B, 3, s*h, s*w], features [B, C, h, w])."""
        head = self.head(x)  # [B, C, h, w]
        feats = head
        for blk in self.body:
            feats = feats + blk(feats)
        feats = self.fuse(feats) + head  # EDSR's global skip
        out = self.up(feats) + resize(x, x.shape[-1] * self.scale, "bicubic")  # [B, 3, s*h, s*w]
        return out, feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, 3, h, w] -> [B, 3, scale*h, scale*w]."""
        return self.forward_features(x)[0]


class SpatialTransformer(nn.Module):
    """Affine STN on [B, 3, H, W], same size out; the regressor's last layer starts at the identity.

    Localisation net: two conv-pool-ReLU stages and a 2-layer MLP on a fixed 8x8 pooled map, so it
    works at any input size. Its last Linear has zero weights and the identity as bias, so at
    initialisation ``theta`` is the identity for every input and the output equals the input
    (``grid_sample`` with ``align_corners=False`` samples pixel centres exactly).
    """

    def __init__(self, channels: int = 8, hidden: int = 32) -> None:
        super().__init__()
        self.loc = nn.Sequential(
            nn.Conv2d(3, channels, 5, padding=2), nn.MaxPool2d(2), nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1), nn.AdaptiveAvgPool2d(8), nn.ReLU(),
            nn.Flatten(), nn.Linear(channels * 64, hidden), nn.ReLU())
        self.theta = nn.Linear(hidden, 6)
        nn.init.zeros_(self.theta.weight)
        with torch.no_grad():
            self.theta.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, 3, H, W] -> x warped by the regressed affine transform, [B, 3, H, W]."""
        theta = self.theta(self.loc(x)).view(-1, 2, 3)  # [B, 2, 3]
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)  # [B, H, W, 2]
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
