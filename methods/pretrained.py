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
# The synthetic stand-in for VIT_SMALL_IN1K: APViT's own ViT trained to classify the generic-image
# ("ImageNet") stand-in.
APVIT_VIT_STAGE = "stage:sup_generic_apvit"

# The Neural Resizer's timm backbones at 224, from ImageNet: the official releases that timm's default
# weights came from when the paper was written (2022); timm's checkpoint_filter_fn maps their layouts.
# ViT-S/16's own release is a JAX .npz: save timm's state dict as the .pth named here.
IMAGENET_BACKBONES = {
    "vit_small_patch16_224": "file:vit_small_patch16_224.pth",
    "deit_small_patch16_224": "file:deit_small_patch16_224-cd65a155.pth",
    "convit_small": "file:convit_small.pth",
    "xcit_small_12_p16_224": "file:xcit_small_12_p16_224.pth",
    "swin_tiny_patch4_window7_224": "file:swin_tiny_patch4_window7_224.pth",
    "swin_small_patch4_window7_224": "file:swin_small_patch4_window7_224.pth",
    "swin_base_patch4_window7_224": "file:swin_base_patch4_window7_224_22kto1k.pth",
    "swin_large_patch4_window7_224": "file:swin_large_patch4_window7_224_22kto1k.pth",
}
# The Neural Resizer's face SR network (methods.layers.resizer.FaceSR, x8) as a user's checkpoint (no
# public one exists: the paper's DIC has another architecture), and its synthetic stand-in stage.
FACE_SR_X8 = "file:nr_face_sr_x8.pth"
SR_FACES_STAGE = "stage:sr_faces"
