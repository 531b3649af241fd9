"""Where the papers' training starts: the checkpoint files their public code loads, and stand-ins.

Values of :attr:`methods.interface.Recipe.init`. A ``file:`` name is looked up in the user's
weights folder (FERbench never downloads); a ``stage:`` name is a pre-training stage the harness
runs on synthetic data (``tables/stages/<id>.yaml``).
"""
from __future__ import annotations

# face.evoLVe's IR-50 trained on MS-Celeb-1M (its model zoo; APViT and TransFER load this file).
IR50_MS1M = "file:backbone_ir50_ms1m_epoch120.pth"
# timm's original ImageNet ViT-small (768-d, 8 blocks: the "old vit_small" APViT and TransFER use).
VIT_SMALL_IN1K = "file:vit_small_p16_224-15ec54c9.pth"
# timm's DeiT-Tiny (ImageNet), APViT's Table 14.
DEIT_TINY_IN1K = "file:deit_tiny_patch16_224-a1311bcf.pth"
# The synthetic stand-in for IR50_MS1M: the IR-50 cut trained to identify synthetic people.
FACEID_STAGE = "stage:faceid_ir50"
