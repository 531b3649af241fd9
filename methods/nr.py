"""Neural Resizer: low-resolution faces reach a 224-pixel Transformer through SR and a learned resizer.

Hwang, Kim, Park, Seo, Ko and Yeo, "Vision Transformer Equipped with Neural Resizer on Facial
Expression Recognition Task" (ICASSP 2022). Pipeline (Eq. 1, Fig. 1c; the implementation-facts
note): optional Spatial Transformer -> up-scaling to a high resolution (a frozen, pre-trained face
super-resolution network, or interpolation) -> down-scaling to the backbone's input size (the
learnable resizer of Talebi & Milanfar, or interpolation) -> a timm Transformer. Everything but
the SR network is trained jointly ("blue blocks" of Fig. 1); the SR network is frozen
(``requires_grad_(False)``), as ``f_sr`` "does not involve in updating parameters".

Build it with ``timm.create_model("nr_vit", preset="paper" | "tiny", **overrides)``; overrides are
dotted keys passed through ``**`` (``**{"nr.up": "sr"}``), plus timm's ``num_classes`` (default 8,
FERPlus). A second registered model, ``nr_sr``, is the ``sr_faces`` pre-training stage that trains
the SR network (:class:`SRStage`).

The model's input is the *low-resolution* image: the recipe's ``img_size`` is 48 at ``paper``
(FERPlus's 48x48; the paper also shrinks RAF-DB's 100x100 to 48 first), so the data loader hands
the native pixels over and every up-scaling happens inside the model.

Presets (:data:`PRESETS`):

* ``paper``: 48 -> 384 (the paper's high resolution) -> 224; SR x8 (64 channels, 8 residual
  blocks), learned resizer r = 1, n = 16 (the reference configuration); backbones are timm's
  architectures at 224 (:data:`BACKBONES`).
* ``tiny``: 24 -> 48 -> 32, the same shape at a size a 2-core CPU trains in a table budget: the
  loader shrinks the 48x48 FERPlus stand-in to 24x24, SR x2 (16 channels, 2 blocks), a learned
  resizer with n = 8, backbones of the same timm families with reduced depth and width (built
  through ``timm.create_model(name, img_size=32, depth=..., embed_dim=..., ...)``, never from the
  hub).

Override keys (``describe_overrides(model_name, preset)`` lists them; bad values raise ``ValueError`` naming the key):

* ``nr.backbone``: a timm architecture name, one of :data:`BACKBONES` (ViT-S, DeiT-S, ConViT-S,
  XCiT-S12, Swin-T/S/B/L). Default ``swin_small_patch4_window7_224`` (Tables 1 and 2).
* ``nr.up`` (``bilinear`` | ``bicubic`` | ``sr``): the up-scaler. ``sr`` is the frozen SR network
  (its weights: ``weights.sr``), its output resized to the preset's high resolution if it differs.
* ``nr.down`` (``none`` | ``bilinear`` | ``ltr``): the down-scaler from the high resolution to the
  backbone's size. ``none`` is Table 2's "-": no high-resolution step at all, the up-scaler's
  interpolation goes straight to the backbone's size (the vanilla pipeline); it needs an
  interpolating ``nr.up``. ``ltr`` is the learned resizer.
* ``nr.stn`` (true | false): an affine Spatial Transformer in front, identity at initialisation.
* ``nr.ltr_blocks`` (r, int 0..8, default 1) and ``nr.ltr_filters`` (n, int >= 1, default 16 at
  ``paper``, 8 at ``tiny``).
* ``nr.head`` (``mlp`` | ``linear``): the classifier. ``mlp`` (default) is the public code's head,
  Linear(D -> 512) -> BatchNorm -> ReLU -> Dropout(0.5) -> Linear on the backbone's pooled
  features; the paper is silent, so the code is the default at ``paper``. ``linear`` is timm's
  own linear head, the default at ``tiny`` (the MLP head, hidden 64 there, slowed the tiny model
  on real faces: :data:`PRESETS`).
* ``nr.schedule`` (``paper`` | ``code``): the lr steps. ``paper`` (default): "decreasing it one
  quarter every 10 epochs", x0.75 at every tenth of training. ``code``: the public code's
  ``StepLR(step_size=15, gamma=0.25)`` over its 100 epochs, x0.25 at 15, 30, ..., 90% of training.
* ``weights.backbone`` (path or None): the backbone's ImageNet checkpoint (local file; timm's
  layout, or an official release that timm's own ``checkpoint_filter_fn`` for that family maps,
  ``.pth`` or ``.safetensors``), loaded strictly; only the classifier is ignored.
* ``weights.sr`` (path or None): the SR network's state dict (the ``sr_faces`` stage's export, or
  a user's checkpoint of :class:`~methods.layers.resizer.FaceSR` at the preset), loaded strictly.
  Only valid with ``nr.up: sr``. Without it the frozen SR network stays at its initialisation
  (bicubic plus a small random residual).

Table 2 as pure overrides: (a) ``nr.up: bilinear, nr.down: none``; (b) ``bilinear, ltr``;
(c) ``sr, bilinear``; (d) ``sr, ltr``; (e) (d) + ``nr.stn: true, nr.backbone: swin_base_...``.

Recipe (``paper``, Sec. 3.2): 100 epochs, batch 64, lr 1e-4 multiplied by 0.75 every 10 epochs
("decreasing it one quarter every 10 epochs"; ``nr.schedule: code`` for the public code's steps).
Not stated, so chosen and said here: Adam (no
weight decay, no clipping), APViT's augmentation pipeline standing in for the paper's unnamed
"constructive" augmentation, cross-entropy (a table states ``train.loss: fpdls`` and its
arguments where the paper used F-PDLS: the loss is an axis of every method, ``methods.losses``).
Evaluation is deterministic (one resize, no test-time augmentation) on FERPlus PrivateTest; the
public code's random test-time augmentation and its use of PublicTest as the test set are not
copied (the methods notes say so). ``tiny``: see ``_TINY_RECIPE``.

Where training starts (``Recipe.init``): at ``paper`` the backbone's ImageNet file
(``methods.pretrained.IMAGENET_BACKBONES``, ``file:<name>`` in the weights folder;
``--stand-ins`` uses its ``generic_<backbone>`` stage instead, marked) and, with ``nr.up: sr``, the
SR network from ``file:nr_face_sr_x8.pth`` with the synthetic ``sr_faces`` stage as its stand-in
(the paper's DIC model has another architecture); at ``tiny`` the backbone from its
``generic_<backbone>`` stage and the SR network from the ``sr_faces`` stage.

The ``generic_<backbone>`` stages (``tables/stages/generic_*.yaml``, model ``nr_backbone``,
:class:`BackboneStage`) stand in for the backbones' supervised ImageNet-1K weights: the backbone
alone, trained to classify the generic-image stand-in (no faces) at its own input size, exported
as ``weights.backbone``. One stage per distinct tiny architecture: ViT-S and DeiT-S share
``generic_vit_s`` (one architecture), so seven stages cover the eight backbones.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace
from typing import Any

import timm
import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import generate_default_cfgs, register_model

from methods.interface import Recipe
from methods.pretrained import FACE_SR_X8, IMAGENET_BACKBONES, SR_FACES_STAGE
from methods.layers.ir50 import LoadReport, read_state_dict, strict_load
from methods.layers.keys import OverrideKey, check_path, choice, flag, int_range, load_weight_files, validate
from methods.layers.resizer import FaceSR, LearnedResizer, SpatialTransformer, resize

__all__ = ["NeuralResizer", "SRStage", "BackboneStage", "backbone_stage", "BACKBONES", "OVERRIDE_KEYS", "describe_overrides", "validate_overrides",
           "read_checkpoint"]

UPSCALERS = ("bilinear", "bicubic", "sr")
DOWNSCALERS = ("none", "bilinear", "ltr")
HEADS = ("mlp", "linear")
SCHEDULES = ("paper", "code")


# ---------------------------------------------------------------------------------------------
# Backbones: the paper's timm architectures and their tiny variants


@dataclass(frozen=True)
class Backbone:
    """One timm architecture: its label, the keyword arguments that shrink it for ``tiny`` (same
    family, reduced depth and width) and the stage that stands in for its ImageNet weights
    (``tables/stages/<stage>.yaml``). Its ImageNet file is ``methods.pretrained.IMAGENET_BACKBONES``."""

    label: str
    tiny: dict[str, Any]
    stage: str


_TINY_VIT = dict(patch_size=4, embed_dim=64, depth=4, num_heads=2)  # 8x8 patches of a 32x32 image
_TINY_SWIN = dict(patch_size=4, window_size=4, num_heads=(2, 4))  # 8x8 then 4x4 tokens, 4x4 windows

# ViT-S and DeiT-S are one architecture (DeiT's is a training recipe); at tiny they share the stage.
BACKBONES: dict[str, Backbone] = {
    "vit_small_patch16_224": Backbone("ViT-S", _TINY_VIT, "generic_vit_s"),
    "deit_small_patch16_224": Backbone("DeiT-S", _TINY_VIT, "generic_vit_s"),
    # ConViT multiplies embed_dim by num_heads (convit_small: 48 x 9 = 432): 32 x 2 = 64 here.
    "convit_small": Backbone("ConViT-S", {**_TINY_VIT, "embed_dim": 32, "local_up_to_layer": 3}, "generic_convit_s"),
    # XCiT's convolutional patch embedding exists for patches of 8 and 16 only: 4x4 tokens at tiny.
    "xcit_small_12_p16_224": Backbone("XCiT-S12", {**_TINY_VIT, "patch_size": 8}, "generic_xcit_s12"),
    "swin_tiny_patch4_window7_224": Backbone("Swin-T", {**_TINY_SWIN, "embed_dim": 32, "depths": (2, 2)}, "generic_swin_t"),
    "swin_small_patch4_window7_224": Backbone("Swin-S", {**_TINY_SWIN, "embed_dim": 32, "depths": (2, 4)}, "generic_swin_s"),
    "swin_base_patch4_window7_224": Backbone("Swin-B", {**_TINY_SWIN, "embed_dim": 48, "depths": (2, 4)}, "generic_swin_b"),
    "swin_large_patch4_window7_224": Backbone("Swin-L", {**_TINY_SWIN, "embed_dim": 64, "depths": (2, 4)}, "generic_swin_l"),
}
assert set(BACKBONES) == set(IMAGENET_BACKBONES)


# ---------------------------------------------------------------------------------------------
# Override keys


OVERRIDE_KEYS: dict[str, OverrideKey] = {
    "nr.backbone": OverrideKey(" | ".join(BACKBONES), "timm architecture behind the resizer", choice("nr.backbone", tuple(BACKBONES))),
    "nr.up": OverrideKey(" | ".join(UPSCALERS), "up-scaler to the high resolution (sr: frozen face SR network)", choice("nr.up", UPSCALERS)),
    "nr.down": OverrideKey(" | ".join(DOWNSCALERS), "down-scaler to the backbone's size (none: interpolate straight there; ltr: learned resizer)", choice("nr.down", DOWNSCALERS)),
    "nr.stn": OverrideKey("true | false", "identity-initialised affine Spatial Transformer in front", flag("nr.stn")),
    "nr.ltr_blocks": OverrideKey("int in 0..8", "r, residual blocks of the learned resizer", int_range("nr.ltr_blocks", 0, 8)),
    "nr.ltr_filters": OverrideKey("int >= 1", "n, channels of the learned resizer", int_range("nr.ltr_filters", 1)),
    "nr.head": OverrideKey(" | ".join(HEADS), "classifier: mlp (public code: Linear-BN-ReLU-Dropout 0.5-Linear) or timm's linear head", choice("nr.head", HEADS)),
    "nr.schedule": OverrideKey(" | ".join(SCHEDULES), "lr steps: paper (x0.75 every tenth of training) or code (StepLR x0.25 every 15 of 100 epochs)", choice("nr.schedule", SCHEDULES)),
    "weights.backbone": OverrideKey("path | None", "the backbone's ImageNet checkpoint (local file)", check_path("weights.backbone")),
    "weights.sr": OverrideKey("path | None", "the SR network's checkpoint (local file; nr.up: sr only)", check_path("weights.sr")),
}

_DEFAULTS: dict[str, Any] = {
    "nr.backbone": "swin_small_patch4_window7_224",
    "nr.up": "sr",
    "nr.down": "ltr",
    "nr.stn": False,
    "nr.ltr_blocks": 1,
    "nr.ltr_filters": 16,
    "nr.head": "mlp",
    "nr.schedule": "paper",
    "weights.backbone": None,
    "weights.sr": None,
}


def _defaults(preset: str) -> dict[str, Any]:
    cfg = _preset(preset)
    return {**_DEFAULTS, "nr.ltr_filters": cfg.ltr_filters, "nr.head": cfg.head}


def validate_overrides(overrides: dict[str, Any]) -> dict[str, Any]:
    """Check dotted override keys and values (each alone, then together); return them normalised."""
    settings = {**_DEFAULTS, **validate(overrides, OVERRIDE_KEYS)}
    if settings["nr.down"] == "none" and settings["nr.up"] == "sr":
        raise ValueError("nr.down: none is not allowed with nr.up: sr (the SR output must still be resized to "
                         "the backbone's size); allowed values here: bilinear, ltr")
    if settings["weights.sr"] is not None and settings["nr.up"] != "sr":
        raise ValueError(f"weights.sr: the model has no SR network (nr.up: {settings['nr.up']}); "
                         "allowed values here: None")
    return {k: settings[k] for k in overrides}


# ---------------------------------------------------------------------------------------------
# Presets


@dataclass(frozen=True)
class PresetConfig:
    """Sizes and sub-network widths of one preset (not overridable: presets choose them)."""

    img_size: int  # the low-resolution input
    hr_size: int  # what the up-scaler produces when a down-scaler follows
    target: int  # the backbone's input size
    sr: dict[str, int] = field(default_factory=dict)  # FaceSR(scale, channels, blocks)
    ltr_filters: int = 16  # the learned resizer's n unless nr.ltr_filters says otherwise
    head_hidden: int = 512  # the hidden width of nr.head: mlp (the public code's 512 at paper)
    head: str = "mlp"  # nr.head unless a spec says otherwise
    stn: dict[str, int] = field(default_factory=dict)  # SpatialTransformer(channels, hidden)


PRESETS: dict[str, PresetConfig] = {
    "paper": PresetConfig(img_size=48, hr_size=384, target=224, sr=dict(scale=8, channels=64, blocks=8),
                          stn=dict(channels=8, hidden=32)),
    # n = 8: at 16 the resizer was most of a tiny (b)/(d)/(e) cell (a training step of Swin-S behind
    # it 4.5 ms an image at n = 16, 3.7 at 8; evaluation 1.4 / 1.0 ms; 1 thread, batch 16, measured)
    # head linear: the public code's MLP head (BatchNorm, dropout 0.5) held the tiny proposed model
    # (Swin-B + STN + SR + LTR, F-PDLS) at the majority class for the first 5 of 12 epochs on real
    # FERPlus (6,000 images, seed 0), where timm's linear head leaves it in 2-3 (47.8 against
    # 50.2 test accuracy after 12 epochs at lr 3e-4; measured)
    "tiny": PresetConfig(img_size=24, hr_size=48, target=32, sr=dict(scale=2, channels=16, blocks=2),
                         stn=dict(channels=8, hidden=32), ltr_filters=8, head_hidden=64, head="linear"),
}


def _preset(preset: str) -> PresetConfig:
    if preset not in PRESETS:
        raise ValueError(f"preset: {preset!r} is not allowed; allowed values: {', '.join(PRESETS)}")
    return PRESETS[preset]


# ---------------------------------------------------------------------------------------------
# Checkpoints


def read_checkpoint(path: str) -> dict[str, torch.Tensor]:
    """A local ``.safetensors`` file or a torch checkpoint (``state_dict``/``model`` unwrapped)."""
    if str(path).endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path)
    return read_state_dict(path)


def load_backbone_checkpoint(backbone: nn.Module, path: str) -> LoadReport:
    """Load an ImageNet checkpoint into a timm backbone strictly; only its classifier is ignored.

    The checkpoint goes through the timm family's ``checkpoint_filter_fn`` when it has one (the
    official Swin, DeiT and XCiT releases have other key layouts; timm maps them), then every key
    but the classifier must match in name and shape.
    """
    state = read_checkpoint(path)
    filter_fn = getattr(sys.modules[type(backbone).__module__], "checkpoint_filter_fn", None)
    if filter_fn is not None:
        state = filter_fn(state, backbone)
    head = backbone.pretrained_cfg.get("classifier", "head")
    ignored = {k: "classifier (task-specific, re-initialised)" for k in state if k.startswith(head + ".")}
    target = {k: v for k, v in backbone.state_dict().items() if not k.startswith(head + ".")}
    return strict_load(target, state, ignored, f"backbone weights {path}")


# ---------------------------------------------------------------------------------------------
# Models


def mlp_head(in_features: int, hidden: int, num_classes: int) -> nn.Sequential:
    """The public code's classifier: [B, in_features] -> Linear -> BN -> ReLU -> Dropout 0.5 -> Linear -> [B, num_classes]."""
    return nn.Sequential(nn.Linear(in_features, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                         nn.Dropout(0.5), nn.Linear(hidden, num_classes))


def build_backbone(name: str, preset: str, num_classes: int) -> nn.Module:
    """The timm backbone ``name`` at ``preset``'s input size (reduced depth and width at ``tiny``)."""
    cfg = _preset(preset)
    kwargs = BACKBONES[name].tiny if preset == "tiny" else {}
    return timm.create_model(name, pretrained=False, num_classes=num_classes, img_size=cfg.target, **kwargs)


class NeuralResizer(nn.Module):
    """(STN) -> up-scaler -> down-scaler -> timm backbone: [B, 3, s, s] low-res -> logits [B, num_classes]."""

    def __init__(self, cfg: PresetConfig, settings: dict[str, Any], backbone: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.settings = dict(settings)
        self.num_classes = num_classes
        self.stn = SpatialTransformer(**cfg.stn) if settings["nr.stn"] else None
        self.sr = FaceSR(**cfg.sr).requires_grad_(False) if settings["nr.up"] == "sr" else None
        down = settings["nr.down"]
        self.resizer = (LearnedResizer(cfg.target, settings["nr.ltr_blocks"], settings["nr.ltr_filters"])
                        if down == "ltr" else None)
        self.backbone = backbone
        # nr.head: mlp puts the public code's head on the backbone's pooled features (the backbone is
        # then built without a classifier); linear keeps timm's own head inside the backbone.
        self.head = (mlp_head(backbone.num_features, cfg.head_hidden, num_classes)
                     if settings["nr.head"] == "mlp" else None)
        self.weight_reports: dict[str, LoadReport] = {}

    def resize_input(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, 3, s, s] -> what the backbone sees, [B, 3, target, target]."""
        if self.stn is not None:
            x = self.stn(x)  # [B, 3, s, s]
        up, down = self.settings["nr.up"], self.settings["nr.down"]
        if down == "none":
            return resize(x, self.cfg.target, up)  # one interpolation, no high-resolution step
        x = resize(self.sr(x), self.cfg.hr_size) if up == "sr" else resize(x, self.cfg.hr_size, up)  # [B, 3, hr, hr]
        if down == "ltr":
            return self.resizer(x)
        return resize(x, self.cfg.target, "bilinear")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, 3, s, s] -> logits [B, num_classes]."""
        out = self.backbone(self.resize_input(x))  # [B, num_classes], or [B, D] pooled under nr.head: mlp
        return out if self.head is None else self.head(out)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        """The backbone's own exemptions (position embeddings, tokens, Swin's bias tables)."""
        inner = getattr(self.backbone, "no_weight_decay", None)
        return {f"backbone.{n}" for n in (inner() if callable(inner) else ())}


class SRStage(nn.Module):
    """The ``sr_faces`` pre-training stage: the preset's :class:`FaceSR` trained on synthetic faces.

    It gets the full-resolution face ``[B, 3, hr, hr]`` and makes its own low-resolution input by
    bilinear down-scaling with anti-aliasing (the degradation the data loaders apply when they
    shrink an image), super-resolves it and minimises the L1 error to the original (``l1``). So
    that the stage's record has an accuracy, a linear probe on the detached, pooled SR features
    identifies the person (``probe``, trained by its own term; it does not touch the SR network):
    ``forward`` returns the probe's logits. ``exports()`` hands the SR network on as ``weights.sr``.
    """

    def __init__(self, cfg: PresetConfig, num_classes: int = 1000) -> None:
        super().__init__()
        self.cfg = cfg
        self.num_classes = num_classes
        self.sr = FaceSR(**cfg.sr)
        self.probe = nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(cfg.sr["channels"] * 16, num_classes))

    def degrade(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, 3, H, W] -> [B, 3, H/scale, W/scale], bilinear with anti-aliasing."""
        side = max(x.shape[-1] // self.sr.scale, 1)
        return F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False, antialias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, 3, hr, hr] -> identity logits of the probe [B, num_classes]."""
        return self.probe(self.sr.forward_features(self.degrade(x))[1])

    def training_step(self, x: torch.Tensor, y: torch.Tensor, loss_fn: nn.Module) -> dict[str, torch.Tensor]:
        """Named terms of one batch: ``l1`` (SR output vs the original) and ``probe`` (detached features)."""
        out, feats = self.sr.forward_features(self.degrade(x))  # [B, 3, H', W'], [B, C, h, w]
        if out.shape[-2:] != x.shape[-2:]:  # hr not a multiple of the scale: compare at the original size
            out = resize(out, x.shape[-1])
        return {"l1": F.l1_loss(out, x), "probe": loss_fn(self.probe(feats.detach()), y)}

    def exports(self) -> dict[str, dict[str, torch.Tensor]]:
        """``weights.sr``: the SR network's state dict (the layout :class:`NeuralResizer` loads)."""
        return {"weights.sr": {k: v.detach().cpu() for k, v in self.sr.state_dict().items()}}


class BackboneStage(nn.Module):
    """A ``generic_<backbone>`` stage: the preset's timm backbone trained to classify generic images.

    The stand-in for the backbone's supervised ImageNet-1K weights (the paper fine-tunes those):
    the same architecture as ``nr_vit`` builds for ``nr.backbone`` at the preset, trained on the
    generic-image stand-in (procedural shapes, textures and scenes, no face) at the backbone's own
    input size. ``exports()`` hands the whole backbone on as ``weights.backbone`` (timm's layout,
    classifier included, which :func:`load_backbone_checkpoint` ignores).
    """

    def __init__(self, cfg: PresetConfig, backbone: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.num_classes = num_classes
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, 3, s, s] (s = the backbone's size, else resized bilinearly) -> logits [B, num_classes]."""
        if x.shape[-1] != self.cfg.target:
            x = resize(x, self.cfg.target, "bilinear")
        return self.backbone(x)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        inner = getattr(self.backbone, "no_weight_decay", None)
        return {f"backbone.{n}" for n in (inner() if callable(inner) else ())}

    def exports(self) -> dict[str, dict[str, torch.Tensor]]:
        """``weights.backbone``: the backbone's state dict (the layout ``nr_vit``'s loader reads)."""
        return {"weights.backbone": {k: v.detach().cpu().clone() for k, v in self.backbone.state_dict().items()}}


# ---------------------------------------------------------------------------------------------
# Recipes

_PAPER_RECIPE = Recipe(
    optimizer="adam", lr=1e-4, weight_decay=0.0, epochs=100, batch_size=64, grad_clip=None, schedule="step",
    milestones=tuple(i / 10 for i in range(1, 10)), lr_gamma=0.75, img_size=48, augment="apvit", loss="ce",
    sampler="none", mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD,
)
# Tiny: the paper's schedule shape (x0.75 at every tenth of training) for 12 epochs of the ~1.4k-image
# FERPlus stand-in, batch 16, lr 1e-3, no augmentation; the backbone starts from its generic_<backbone>
# stage. Measured on the FERPlus stand-in (Swin-S, Table 2's (a), from generic_swin_s): at batch 64
# (22 steps an epoch) the tiny Transformers stay at the majority class (val 36.2): 6-10 epochs from
# scratch (the earlier measurement), 6 from the stage at lr 1e-4..1e-3; at batch 16 Swin-S leaves it after 7-9 epochs (CE
# 45.6 at 48 px input, F-PDLS 38.9 at 24 px after 12 epochs) and ViT-S (48 px) after 3 (64-65 after
# 20). 12 epochs is the least at which nr_tab2's rows leave it. The tiny Swins take 4x4 patches
# (8x8 tokens): with 2x2 patches the backbone was most of a cell's compute, and nr_tab2 at 3 seeds
# ran ~33 min on an idle 2-core Intel Xeon VM (extrapolated from 5 of 18 cells); with 4x4, 25 min
# 44 s there. The learned resizer was then most of a cell; with the tiny preset's n = 8 and the
# longest-first queue, nr_tab2 took 12 min 58 s on a 2-core AMD EPYC VM (16 min 34 s at n = 16).
# See docs/measurements.md. One warm-up epoch and gradients clipped at norm 1 (as APViT's and
# TransFER's tiny recipes): without them the proposed pipeline (Swin-B, STN, SR, LTR) stayed at the
# majority class on 2 of 3 seeds under CE and under F-PDLS (nr_tab3 at tiny); with them the same
# four cells reached 65.7-68.7 (majority 36.7).
_TINY_RECIPE = replace(_PAPER_RECIPE, lr=1e-3, epochs=12, batch_size=16, img_size=24, augment="none",
                       warmup_epochs=1, grad_clip=1.0)

# The SR stage: L1 training of the SR network (and the probe) on synthetic faces, Adam, cosine.
_SR_PAPER_RECIPE = Recipe(
    optimizer="adam", lr=2e-4, weight_decay=0.0, epochs=40, batch_size=16, grad_clip=None, schedule="cosine",
    img_size=PRESETS["paper"].hr_size, augment="none", loss="ce", sampler="none",
)
_SR_TINY_RECIPE = replace(_SR_PAPER_RECIPE, lr=2e-3, epochs=10, batch_size=64, img_size=PRESETS["tiny"].hr_size)


# The generic_<backbone> stages: supervised classification of the generic-image stand-in, DeiT's
# recipe shape (AdamW, wd 0.05, cosine with warm-up; the recipe behind supervised IN1K weights).
_GENERIC_PAPER_RECIPE = Recipe(
    optimizer="adamw", lr=1e-3, weight_decay=0.05, epochs=300, batch_size=1024, grad_clip=None, schedule="cosine",
    warmup_epochs=5, img_size=PRESETS["paper"].target, augment="mae_pretrain", loss="ce", sampler="none",
    mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD,
)
# Tiny: 10 epochs of the 3,000-image stand-in at the backbone's 32x32, no augmentation (MAE's
# random-resized-crop pipeline made an epoch ~7x slower on CPU for the same accuracy: measured).
_GENERIC_TINY_RECIPE = replace(_GENERIC_PAPER_RECIPE, epochs=10, batch_size=64, warmup_epochs=1,
                               img_size=PRESETS["tiny"].target, augment="none")


def backbone_stage(name: str) -> str:
    """``stage:<id>`` of the stage standing in for backbone ``name``'s ImageNet weights."""
    return f"stage:{BACKBONES[name].stage}"


# nr.schedule: code is the public code's StepLR(step_size=15, gamma=0.25) over its 100 epochs,
# as fractions of training so that the tiny preset's shorter run keeps the shape.
_CODE_SCHEDULE = dict(milestones=tuple(e / 100 for e in range(15, 100, 15)), lr_gamma=0.25)


def _recipe(preset: str, settings: dict[str, Any]) -> Recipe:
    """The preset's recipe with ``init`` for this configuration (which weights keys it has) and
    the lr steps ``nr.schedule`` names."""
    schedule = _CODE_SCHEDULE if settings["nr.schedule"] == "code" else {}
    return replace(_init_recipe(preset, settings), **schedule)


def _init_recipe(preset: str, settings: dict[str, Any]) -> Recipe:
    sr = settings["nr.up"] == "sr"
    stage = backbone_stage(settings["nr.backbone"])
    if preset == "paper":
        init = {"weights.backbone": IMAGENET_BACKBONES[settings["nr.backbone"]], **({"weights.sr": FACE_SR_X8} if sr else {})}
        stand_in = {"weights.backbone": stage, **({"weights.sr": SR_FACES_STAGE} if sr else {})}
        return replace(_PAPER_RECIPE, init=init, stand_in=stand_in)
    return replace(_TINY_RECIPE, init={"weights.backbone": stage, **({"weights.sr": SR_FACES_STAGE} if sr else {})},
                   stand_in={})


def _cfg(img_size: int) -> dict[str, Any]:
    # timm metadata only: no hub weights exist, local files are loaded through weights.*
    return {"url": "", "num_classes": 8, "input_size": (3, img_size, img_size), "mean": IMAGENET_DEFAULT_MEAN,
            "std": IMAGENET_DEFAULT_STD, "first_conv": "", "classifier": "backbone.head"}


default_cfgs = generate_default_cfgs({"nr_vit": _cfg(PRESETS["paper"].img_size),
                                      "nr_sr": {**_cfg(PRESETS["paper"].hr_size), "classifier": "probe.2"},
                                      "nr_backbone": _cfg(PRESETS["paper"].target)})


def describe_overrides(model_name: str = "nr_vit", preset: str = "paper") -> dict[str, dict[str, Any]]:
    """Every override key of the ``nr_*`` models with its allowed values, meaning and default at ``preset``."""
    defaults = _defaults(preset)
    return {key: {"allowed": spec.allowed, "doc": spec.doc, "default": defaults[key]}
            for key, spec in OVERRIDE_KEYS.items()}


def _pop_timm_kwargs(variant: str, pretrained: bool, kwargs: dict[str, Any]) -> None:
    if pretrained:
        raise ValueError(f"{variant}: pretrained=True is not supported (no model hub); "
                         "pass local files with weights.backbone= / weights.sr=")
    for timm_kwarg in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):
        kwargs.pop(timm_kwarg, None)


def _create_nr(variant: str, pretrained: bool = False, preset: str = "paper", **kwargs: Any) -> NeuralResizer:
    """Build the Neural Resizer at ``preset`` with dotted overrides; load local weights if given."""
    _pop_timm_kwargs(variant, pretrained, kwargs)
    num_classes = kwargs.pop("num_classes", 8)
    cfg = _preset(preset)
    settings = {**_defaults(preset), **validate_overrides(kwargs)}
    mlp = settings["nr.head"] == "mlp"
    backbone = build_backbone(settings["nr.backbone"], preset, 0 if mlp else num_classes)
    model = NeuralResizer(cfg, settings, backbone, num_classes)
    model.recipe = _recipe(preset, settings)
    model.preset = preset
    model.pretrained_cfg = {**_cfg(cfg.img_size), "architecture": variant, "num_classes": num_classes,
                            "classifier": "head.4" if mlp else "backbone.head"}
    load_weight_files(model, settings, {
        "weights.backbone": lambda p: load_backbone_checkpoint(model.backbone, p),
        "weights.sr": lambda p: strict_load(model.sr.state_dict(), read_checkpoint(p), {}, f"SR weights {p}")})
    return model


def _create_sr(variant: str, pretrained: bool = False, preset: str = "paper", **kwargs: Any) -> SRStage:
    _pop_timm_kwargs(variant, pretrained, kwargs)
    num_classes = kwargs.pop("num_classes", 1000)
    if kwargs:
        raise ValueError(f"unknown override key(s) {', '.join(sorted(kwargs))}; {variant} has no override keys")
    model = SRStage(_preset(preset), num_classes=num_classes)
    model.recipe = _SR_PAPER_RECIPE if preset == "paper" else _SR_TINY_RECIPE
    model.preset = preset
    return model


def _create_backbone_stage(variant: str, pretrained: bool = False, preset: str = "paper", **kwargs: Any) -> BackboneStage:
    _pop_timm_kwargs(variant, pretrained, kwargs)
    num_classes = kwargs.pop("num_classes", 1000)
    unknown = set(kwargs) - {"nr.backbone"}
    if unknown:
        raise ValueError(f"unknown override key(s) {', '.join(sorted(unknown))}; allowed keys: nr.backbone")
    name = {**_DEFAULTS, **validate(kwargs, OVERRIDE_KEYS)}["nr.backbone"]
    cfg = _preset(preset)
    model = BackboneStage(cfg, build_backbone(name, preset, num_classes), num_classes)
    model.recipe = _GENERIC_PAPER_RECIPE if preset == "paper" else _GENERIC_TINY_RECIPE
    model.preset = preset
    model.pretrained_cfg = {**_cfg(cfg.target), "architecture": variant, "num_classes": num_classes}
    return model


@register_model
def nr_vit(pretrained: bool = False, **kwargs: Any) -> NeuralResizer:
    """Neural Resizer (SR x8 -> learned resizer -> Swin-S at 224 by default); Tables 1-4."""
    return _create_nr("nr_vit", pretrained=pretrained, **kwargs)


@register_model
def nr_sr(pretrained: bool = False, **kwargs: Any) -> SRStage:
    """The face super-resolution network of ``nr.up: sr``, as the ``sr_faces`` pre-training stage."""
    return _create_sr("nr_sr", pretrained=pretrained, **kwargs)


@register_model
def nr_backbone(pretrained: bool = False, **kwargs: Any) -> BackboneStage:
    """The ``nr.backbone`` alone, as the ``generic_<backbone>`` stage (ImageNet stand-in) exporting ``weights.backbone``."""
    return _create_backbone_stage("nr_backbone", pretrained=pretrained, **kwargs)
