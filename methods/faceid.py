"""Face-ID IR-50: the face-recognition pre-training that APViT's and TransFER's CNN start from.

APViT and TransFER take the first three stages of an IR-50 trained for face recognition on
MS-Celeb-1M (face.evoLVe's model zoo). With real data the user passes that checkpoint. On the
embedded synthetic data this model is the stand-in: the preset's whole four-stage IR-50
(``IR50_PRESETS``; every FER model cuts it after stage 2, 3 or 4 and loads it strictly, ignoring
the units past its cut), trained to tell synthetic people apart, then handed on through
:meth:`FaceIDIR50.exports` as ``weights.ir50``.

Differences from face.evoLVe, all deliberate and stated in the report's methods notes:

* the embedding is face.evoLVe's ``output_layer`` shape (BN -> dropout -> flatten -> Linear ->
  BN1d) on the last stage's map, so identity must be read from *where* things are on the face, as in
  the real model (a global average pool instead let the tiny stage identify people by skin and
  hair colour, which does not transfer to expressions: measured on the synthetic faces); the classifier
  on top is a plain Linear with softmax cross-entropy, not ArcFace's margin: with a few hundred
  identities a margin buys nothing and costs a tuned schedule.

Registered name: ``faceid_ir50`` with presets ``paper`` (face.evoLVe's IR-50 at 112x112: a 7x7
map, as in its model zoo) and ``tiny`` (the tiny IR-50 at 48x48). No override keys; ``num_classes`` is the number of identities.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
import torch.nn as nn
from timm.models import generate_default_cfgs, register_model

from methods.interface import Recipe
from methods.layers.ir50 import IR50, ir50_cut

__all__ = ["FaceIDIR50"]


class FaceIDIR50(nn.Module):
    """Truncated IR-50 + face.evoLVe-style embedding (BN, dropout, flatten, Linear, BN1d) + classifier."""

    def __init__(self, widths: tuple[int, ...], depths: tuple[int, ...], stem: int | None, img_size: int,
                 embed_dim: int, num_classes: int = 1000) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.backbone = IR50(widths, depths, num_stages=len(widths), stem_chs=stem)
        grid = img_size // self.backbone.reduction
        c = self.backbone.out_chs
        self.embed = nn.Sequential(nn.BatchNorm2d(c), nn.Dropout(0.4), nn.Flatten(),
                                   nn.Linear(c * grid * grid, embed_dim), nn.BatchNorm1d(embed_dim))
        self.head = nn.Linear(embed_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, 3, H, W] -> identity logits [B, num_classes]."""
        return self.head(self.embed(self.backbone(x)))  # [B, C, H/8, W/8] -> [B, E] -> [B, num_classes]

    def exports(self) -> dict[str, dict[str, torch.Tensor]]:
        """``weights.ir50``: the backbone in face.evoLVe key layout (``input_layer.*``, ``body.N.*``)."""
        return {"weights.ir50": {k: v.detach().cpu() for k, v in self.backbone.state_dict().items()}}


# face.evoLVe normalises with mean = std = 0.5 (its training script), not ImageNet's constants.
_PAPER_RECIPE = Recipe(
    optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=5e-4, epochs=40, batch_size=256, grad_clip=None,
    schedule="cosine", warmup_epochs=1, img_size=112, augment="none", loss="ce", sampler="none",
    mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
)
# Sized to take about 1.5-2 minutes on 2 CPU cores with 2 threads (4k images, 48x48), which is
# where identity accuracy stops rising on the synthetic identity set (measured on the synthetic identity set).
_TINY_RECIPE = replace(_PAPER_RECIPE, optimizer="adamw", lr=2e-3, weight_decay=0.05, epochs=12, batch_size=64,
                       img_size=48, warmup_epochs=0)

PRESET_CFGS: dict[str, dict[str, Any]] = {
    "paper": dict(cut=ir50_cut("paper", 4), embed_dim=512, recipe=_PAPER_RECIPE),
    "tiny": dict(cut=ir50_cut("tiny", 4), embed_dim=128, recipe=_TINY_RECIPE),
}

default_cfgs = generate_default_cfgs({
    "faceid_ir50": {"url": "", "num_classes": 1000, "input_size": (3, 112, 112), "mean": (0.5, 0.5, 0.5),
                    "std": (0.5, 0.5, 0.5), "first_conv": "backbone.input_layer.0", "classifier": "head"},
})


def _create_faceid(variant: str, pretrained: bool = False, preset: str = "paper", **kwargs: Any) -> FaceIDIR50:
    if pretrained:
        raise ValueError(f"{variant}: pretrained=True is not supported (no model hub)")
    for timm_kwarg in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):
        kwargs.pop(timm_kwarg, None)
    num_classes = kwargs.pop("num_classes", 1000)
    if kwargs:
        raise ValueError(f"unknown override key(s) {', '.join(sorted(kwargs))}; {variant} has no override keys")
    if preset not in PRESET_CFGS:
        raise ValueError(f"preset: {preset!r} is not allowed; allowed values: {', '.join(PRESET_CFGS)}")
    cfg = PRESET_CFGS[preset]
    cut = cfg["cut"]
    model = FaceIDIR50(cut["ir50_widths"], cut["ir50_depths"], cut["ir50_stem"], cfg["recipe"].img_size,
                       cfg["embed_dim"], num_classes=num_classes)
    model.recipe = cfg["recipe"]
    model.preset = preset
    return model


@register_model
def faceid_ir50(pretrained: bool = False, **kwargs: Any) -> FaceIDIR50:
    """The preset's IR-50 trained for face identification: the ``faceid_ir50`` pre-training stage."""
    return _create_faceid("faceid_ir50", pretrained=pretrained, **kwargs)
