"""ImageNet's folder layout: ``train/<class>/*`` and ``val/<class>/*``, classes = folder names.

The data of the generic (non-face) pre-training stages, MAE-ViT's "ImageNet-1K" rows: ILSVRC-2012
with its validation images sorted into class folders (the layout torchvision's ``ImageFolder``
reads), or the synthetic *generic-image stand-in* (:func:`harness.data.synth.render_generic`:
procedural shapes, textures and scenes, 30 classes; no face anywhere). ``val/`` is the test split
(ImageNet's test labels are not public); the validation split is carved from ``train/``.
Any folder of images in this layout works; MAE itself never reads the labels.
"""
from __future__ import annotations

from pathlib import Path

from harness.data.base import BadEntries, RawDataset
from harness.data.faceid import read_named_folders

PROTOCOLS = ("default",)


def read(root: Path, protocol: str, bad: BadEntries) -> RawDataset:
    """Read the class folders of ``train/`` and ``val/`` (the test split)."""
    return read_named_folders(root, ("train", "val"), bad, kind="class")
