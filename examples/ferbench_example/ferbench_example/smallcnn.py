"""SmallCNN: an example method family for FERbench (not a paper's method).

A stack of conv-BN-ReLU blocks, each halving the map, then global average pooling and a linear
classifier. It shows what a family provides: a model registered with timm, a recipe per preset
(``model.recipe``), one override key checked when the model is built, and ``describe_overrides``
for ``harness keys``.

Registered name: ``smallcnn`` with presets ``tiny`` (48 px) and ``paper`` (112 px).
Override key: ``cnn.width`` (int >= 8): the first block's channels; each block doubles them.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
import torch.nn as nn
from timm.models import register_model

from methods.interface import Recipe

PRESETS = {"tiny": {"blocks": 3, "width": 16}, "paper": {"blocks": 4, "width": 64}}
_TINY_RECIPE = Recipe(optimizer="adamw", lr=2e-3, weight_decay=0.05, epochs=3, batch_size=64, img_size=48,
                      schedule="cosine", warmup_epochs=0, augment="none", sampler="none")
RECIPES = {"tiny": _TINY_RECIPE, "paper": replace(_TINY_RECIPE, epochs=40, img_size=112)}


class SmallCNN(nn.Module):
    """Conv-BN-ReLU blocks (stride 2), global average pooling, linear head."""

    def __init__(self, blocks: int, width: int, num_classes: int = 7) -> None:
        super().__init__()
        layers, chans = [], 3
        for i in range(blocks):
            out = width * 2 ** i
            layers += [nn.Conv2d(chans, out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU()]
            chans = out
        self.features = nn.Sequential(*layers)
        self.num_classes = num_classes
        self.head = nn.Linear(chans, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, 3, H, W] -> logits [B, num_classes]."""
        return self.head(self.features(x).mean(dim=(2, 3)))  # [B, C, H', W'] -> [B, C] -> [B, K]


def describe_overrides(model_name: str = "smallcnn", preset: str = "tiny") -> dict[str, dict[str, Any]]:
    """Every override key with its allowed values, meaning and default at ``preset``."""
    return {"cnn.width": {"allowed": "int >= 8", "doc": "the first block's channels (each block doubles them)",
                          "default": PRESETS[preset]["width"]}}


@register_model
def smallcnn(pretrained: bool = False, preset: str = "tiny", num_classes: int = 7, **kwargs: Any) -> SmallCNN:
    """The example family's one model; unknown keys and bad values raise ``ValueError`` naming the key."""
    for timm_kwarg in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):
        kwargs.pop(timm_kwarg, None)
    if pretrained:
        raise ValueError("smallcnn: pretrained=True is not supported (weights come from local files)")
    if preset not in PRESETS:
        raise ValueError(f"preset: {preset!r} is not allowed; allowed values: {', '.join(PRESETS)}")
    width = kwargs.pop("cnn.width", PRESETS[preset]["width"])
    if kwargs:
        raise ValueError(f"unknown override key(s) {', '.join(sorted(kwargs))}; smallcnn takes cnn.width")
    if not isinstance(width, int) or isinstance(width, bool) or width < 8:
        raise ValueError(f"cnn.width: {width!r} is not allowed; allowed values: int >= 8")
    model = SmallCNN(PRESETS[preset]["blocks"], width, num_classes)
    model.recipe = RECIPES[preset]
    return model
