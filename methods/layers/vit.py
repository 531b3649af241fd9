"""The plain ViT that APViT, MAE-ViT and PF-ViT share: timm's ``VisionTransformer`` with MAE's choices.

* Pure functions: MAE's fixed 2-D sin-cos position embedding, patchify / unpatchify, per-sample
  random masking.
* :class:`ViTArch` / :class:`DecoderArch` and the variants MAE-ViT's paper uses (ViT-T/S/B at
  ``paper``, 48 px with 8 px patches at ``tiny``), MAE's decoder sizes.
* :class:`MAEViT` (a timm ViT with a class-token head, MAE's head initialisation and lr-decay
  groups) and :class:`SupervisedViT` (the same ViT as a supervised pre-training stage that exports
  ``weights.vit``), with DeiT's supervised pre-training recipe (:data:`SUPERVISED_RECIPES`).
* :func:`load_vit_checkpoint`: strict loading of our stages' exports, official MAE and timm ViT
  checkpoints.

Every family imports these from here, never from another family's file, so that a change to one
family does not touch the code (and results) of another.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import torch
import torch.nn as nn
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers.pos_embed_sincos import build_sincos2d_pos_embed
from timm.models.vision_transformer import VisionTransformer

from methods.interface import Recipe
from methods.layers.ir50 import LoadReport, read_state_dict, strict_load
from methods.layers.keys import OverrideKey, fraction, validate

__all__ = ["sincos_pos_embed", "patchify", "unpatchify", "num_visible", "random_masking", "ViTArch", "DecoderArch",
           "PAPER_VARIANTS", "TINY_VARIANTS", "PAPER_DECODER", "TINY_DECODER", "NORM", "vit_kwargs", "MAEViT",
           "SupervisedViT", "SUPERVISED_RECIPES", "HybridArch", "round_half_up", "DROP_PATH_KEY", "supervised_overrides", "load_vit_checkpoint"]


# ---------------------------------------------------------------------------------------------
# Pure functions: position embedding, patches, masking


def sincos_pos_embed(grid: int, dim: int, cls_token: bool = True) -> torch.Tensor:
    """MAE's fixed 2-D sin-cos position embedding: [1 + grid*grid, dim] (class token row = 0).

    Built with timm's ``build_sincos2d_pos_embed`` (same frequencies, 1 / 10000^(k / (dim/4))) and
    its channel blocks reordered to MAE's ``get_2d_sincos_pos_embed``: [sin(col), cos(col),
    sin(row), cos(row)], patches in row-major order.
    """
    if dim % 4:
        raise ValueError(f"sin-cos position embedding needs dim divisible by 4, got {dim}")
    emb = build_sincos2d_pos_embed([grid, grid], dim)  # [N, dim]: sin(row), sin(col), cos(row), cos(col)
    q = dim // 4
    sin_r, sin_c, cos_r, cos_c = emb.split(q, dim=1)
    emb = torch.cat([sin_c, cos_c, sin_r, cos_r], dim=1)  # [N, dim]
    if cls_token:
        emb = torch.cat([torch.zeros(1, dim), emb], dim=0)  # [1 + N, dim]
    return emb


def patchify(imgs: torch.Tensor, p: int) -> torch.Tensor:
    """imgs: [B, C, H, W] -> patches [B, N, p*p*C], row-major patches, (row, col, channel) inside."""
    B, C, H, W = imgs.shape
    if H % p or W % p:
        raise ValueError(f"image {H}x{W} is not a multiple of the patch size {p}")
    h, w = H // p, W // p
    x = imgs.reshape(B, C, h, p, w, p)
    return torch.einsum("nchpwq->nhwpqc", x).reshape(B, h * w, p * p * C)


def unpatchify(x: torch.Tensor, p: int, channels: int = 3) -> torch.Tensor:
    """patches [B, N, p*p*C] (square grid) -> imgs [B, C, H, W]; the inverse of :func:`patchify`."""
    B, N, _ = x.shape
    h = int(math.isqrt(N))
    if h * h != N:
        raise ValueError(f"{N} patches do not form a square grid")
    x = x.reshape(B, h, h, p, p, channels)
    return torch.einsum("nhwpqc->nchpwq", x).reshape(B, channels, h * p, h * p)


def num_visible(num_patches: int, mask_ratio: float) -> int:
    """How many patches an image keeps: ``round((1 - mask_ratio) * N)`` (half up), at least 1.

    MAE's code truncates (``int(N * (1 - r))``); the two agree whenever (1 - r) * N is an integer
    (196 and 64 patches at 0.75).
    """
    return max(int(math.floor(num_patches * (1.0 - mask_ratio) + 0.5)), 1)


def random_masking(x: torch.Tensor, mask_ratio: float, generator: torch.Generator | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Keep a uniformly random subset of patches per image (MAE's per-sample shuffling).

    x: [B, N, D] -> (x_kept [B, K, D] in shuffled order, mask [B, N] with 1 = masked and 0 =
    kept in the original order, ids_restore [B, N] that unshuffles), K = :func:`num_visible`.
    """
    B, N, D = x.shape
    keep = num_visible(N, mask_ratio)
    noise = torch.rand(B, N, device=x.device, generator=generator)  # [B, N]
    ids_shuffle = torch.argsort(noise, dim=1)  # [B, N] ascending: the first K are kept
    ids_restore = torch.argsort(ids_shuffle, dim=1)  # [B, N]
    ids_keep = ids_shuffle[:, :keep]  # [B, K]
    x_kept = torch.gather(x, 1, ids_keep.unsqueeze(-1).expand(-1, -1, D))  # [B, K, D]
    mask = torch.ones(B, N, device=x.device)
    mask[:, :keep] = 0
    mask = torch.gather(mask, 1, ids_restore)  # [B, N]
    return x_kept, mask, ids_restore


def round_half_up(x: float) -> int:
    """Round to the nearest integer, halves up (Python's ``round`` rounds halves to even); used to
    scale a paper's token or block count to a smaller grid."""
    return int(math.floor(x + 0.5))


# ---------------------------------------------------------------------------------------------
# Architecture


@dataclass(frozen=True)
class HybridArch:
    """An IR-50 stem under a ViT (APViT, TransFER): the fields every hybrid preset sets.

    Not overridable: presets choose it. Families subclass it for their own fields and defaults.
    """

    img_size: int = 112
    ir50_widths: tuple[int, ...] = (64, 128, 256)
    ir50_depths: tuple[int, ...] = (3, 4, 14)
    ir50_stem: int | None = None
    embed_dim: int = 768
    depth: int = 8
    num_heads: int = 8
    mlp_ratio: float = 3.0
    qkv_bias: bool = False
    norm_eps: float = 1e-6
    # A BatchNorm on the CNN output, before the 1x1 projection. Not in the papers: their IR-50 is
    # pre-trained, so its features arrive at a useful scale. A tiny IR-50 trained from scratch
    # does not get there, and the ViT on top then never leaves the majority class (measured on
    # APViT: 38.7% = always "happy" on the synthetic RAF-DB, with or without it the CNN alone learns).
    backbone_norm: bool = False


@dataclass(frozen=True)
class ViTArch:
    """The encoder of one variant at one preset."""

    img_size: int
    patch_size: int
    embed_dim: int
    depth: int
    num_heads: int
    mlp_ratio: float = 4.0
    qkv_bias: bool = True  # False for timm's original vit_small, the ViT APViT fine-tunes

    @property
    def grid(self) -> int:
        """Patches per side."""
        return self.img_size // self.patch_size


@dataclass(frozen=True)
class DecoderArch:
    """MAE's lightweight decoder."""

    embed_dim: int = 512
    depth: int = 8
    num_heads: int = 16


PAPER_VARIANTS: dict[str, ViTArch] = {
    "tiny": ViTArch(224, 16, 192, 12, 3),
    "small": ViTArch(224, 16, 384, 12, 6),
    "base": ViTArch(224, 16, 768, 12, 12),
}
# Sized so that mae_tab1 (three stages and 18 fine-tuning cells) fits 15 minutes on 2 CPU cores:
# 48x48 with 8x8 patches (a 6x6 grid; a 0.75 mask keeps 9), 4 blocks, head dim 16.
TINY_VARIANTS: dict[str, ViTArch] = {
    "tiny": ViTArch(48, 8, 32, 4, 2),
    "small": ViTArch(48, 8, 48, 4, 3),
    "base": ViTArch(48, 8, 64, 4, 4),
}
PAPER_DECODER = DecoderArch()
TINY_DECODER = DecoderArch(embed_dim=64, depth=2, num_heads=4)

NORM = partial(nn.LayerNorm, eps=1e-6)


def vit_kwargs(arch: ViTArch) -> dict[str, Any]:
    """Keyword arguments of timm's ``VisionTransformer`` for ``arch`` (LayerNorm eps 1e-6, as MAE)."""
    return dict(img_size=arch.img_size, patch_size=arch.patch_size, embed_dim=arch.embed_dim, depth=arch.depth,
                num_heads=arch.num_heads, mlp_ratio=arch.mlp_ratio, qkv_bias=arch.qkv_bias, norm_layer=NORM)


class MAEViT(VisionTransformer):
    """The FER model: a timm ViT with a class-token (or average-pool) head, fine-tuned from ``weights.vit``."""

    def __init__(self, arch: ViTArch, pool: str = "token", drop_path: float = 0.1, num_classes: int = 7) -> None:
        super().__init__(**vit_kwargs(arch), num_classes=num_classes, global_pool=pool,
                         drop_path_rate=drop_path)
        self.arch = arch
        self.weight_reports: dict[str, LoadReport] = {}
        self.token_trace = {"grid": arch.grid ** 2, "blocks": [arch.grid ** 2 + 1] * arch.depth,
                            "before_head": arch.grid ** 2 + 1}
        with torch.no_grad():
            # MAE's fine-tuning head: trunc-normal 2e-5 (a near-zero start that learns at once)
            nn.init.trunc_normal_(self.head.weight, std=2e-5)
            nn.init.zeros_(self.head.bias)

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """Layer groups for layer-wise lr decay, by MAE's rule (its ``lr_decay.get_layer_id_for_vit``).

        Embeddings are layer 0 and block i layer i + 1, as in timm; the final norm is with the head
        (full lr) as in MAE, where timm's matcher puts it with the last block.
        """
        return dict(stem=r"^cls_token|reg_token|pos_embed|patch_embed|norm_pre", blocks=[(r"^blocks\.(\d+)", None)])


class SupervisedViT(MAEViT):
    """The ViT trained supervised on the generic-image stand-in: a stage that exports ``weights.vit``."""

    def exports(self) -> dict[str, dict[str, torch.Tensor]]:
        """``weights.vit``: every weight but the classifier, in timm's ViT layout."""
        return {"weights.vit": {k: v.detach().cpu().clone() for k, v in self.state_dict().items()
                                if not k.startswith("head.")}}


# Supervised pre-training stages (``sup_pretrain_*``): the stochastic-depth key they take.
DROP_PATH_KEY = OverrideKey("float in [0, 1)", "stochastic depth rate (MAE's fine-tuning: 0.1)", fraction("mae.drop_path"))


def supervised_overrides(overrides: dict[str, Any]) -> dict[str, Any]:
    """Check a supervised stage's overrides (only ``mae.drop_path``); ``ValueError`` if bad."""
    return validate(overrides, {"mae.drop_path": DROP_PATH_KEY})


# Supervised pre-training (DeiT's recipe, which the supervised IN1K checkpoints come from: AdamW
# lr 5e-4 x 1024 / 512, batch 1024, 300 epochs, 5 warm-up, wd 0.05, cosine).
_PRETRAIN_SUP = Recipe(
    name="supervised", optimizer="adamw", lr=1e-3, weight_decay=0.05, no_weight_decay=("pos_embed", "cls_token"),
    epochs=300, batch_size=1024, grad_clip=None, schedule="cosine", warmup_epochs=5, img_size=224,
    augment="mae_pretrain", loss="ce", sampler="none", mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD,
)
_TINY_PRETRAIN_SUP = replace(_PRETRAIN_SUP, lr=1e-3, iterations=630, batch_size=64, warmup_epochs=1, img_size=48)
SUPERVISED_RECIPES: dict[str, Recipe] = {"paper": _PRETRAIN_SUP, "tiny": _TINY_PRETRAIN_SUP}


# ---------------------------------------------------------------------------------------------
# Checkpoints


def load_vit_checkpoint(model: VisionTransformer, path: str) -> LoadReport:
    """Load a ViT encoder into ``model`` strictly; return what was loaded and what was dropped.

    Accepts our stages' exports (timm layout, no head), official MAE checkpoints (``{"model":
    ...}``, with or without the decoder) and timm ViT checkpoints (DeiT's ``{"model": ...}`` or a
    bare state dict). Dropped on purpose, and reported: the classifier ``head.*`` (task-specific),
    MAE's ``decoder_*`` and ``mask_token`` (pre-training only), and ``norm.*`` when the model pools
    with ``fc_norm`` (MAE's global-pool fine-tuning starts that norm afresh). Any other missing,
    unexpected or wrong-shaped key (a position embedding for another grid included) raises
    ``ValueError`` listing them all.
    """
    state = read_state_dict(path)
    fc_norm = not isinstance(getattr(model, "fc_norm", nn.Identity()), nn.Identity)
    ignored: dict[str, str] = {}
    for key in state:
        if key.startswith("head."):
            ignored[key] = "classifier (task-specific; trained from its initialisation)"
        elif key.startswith(("decoder_", "mask_token")):
            ignored[key] = "MAE decoder (pre-training only)"
        elif key.startswith("norm.") and fc_norm:
            ignored[key] = "final norm (mae.pool avg uses a fresh fc_norm instead, as MAE's fine-tuning)"
    skip = ("head.", "fc_norm.") if fc_norm else ("head.",)
    target = {k: v for k, v in model.state_dict().items() if not k.startswith(skip)}
    return strict_load(target, state, ignored, f"ViT weights {path}")
