"""The benchmark grid as data: which configurations the latency suite times, at what cost.

A case is one model configuration. ``family`` groups a pruned variant with its unpruned
baseline (same architecture, APP and ATP off, ``is_baseline``): the report computes latency and
FLOPs ratios only inside a family, on the same machine, preset, batch and thread count.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Case:
    """One configuration: pytest id, label for the report, model name and overrides."""

    id: str
    label: str
    model: str
    overrides: dict[str, Any] = field(default_factory=dict)
    family: str = "apvit"
    is_baseline: bool = False


CASES: tuple[Case, ...] = (
    # APViT (IR-50 + 768-d ViT), Tables 1, 6 and 13.
    Case("baseline", "baseline (196, 1.0)", "apvit_baseline", {}, is_baseline=True),
    Case("app-only", "APP only (160, 1.0)", "apvit", {"atp.r": 1.0}),
    Case("atp-only", "ATP only (196, 0.9)", "apvit", {"app.k": 196}),
    Case("apvit-160-0.9", "APViT (160, 0.9)", "apvit", {}),
    Case("apvit-80-0.6", "APViT (80, 0.6)", "apvit", {"app.k": 80, "atp.r": 0.6}),
    Case("apvit-10-0.6", "APViT (10, 0.6)", "apvit", {"app.k": 10, "atp.r": 0.6}),
    Case("soft", "APViT soft APP (160, 0.9)", "apvit", {"app.mode": "soft"}),
    # Table 14: lighter Transformers, each with its own unpruned baseline.
    Case("hybrid-deit-tiny", "Hybrid-DeiT-Tiny", "apvit_hybrid_deit_tiny", {"app.k": 196, "atp.r": 1.0},
         family="hybrid_deit_tiny", is_baseline=True),
    Case("hybrid-deit-tiny-ap", "Hybrid-DeiT-Tiny + AP (120, 0.9)", "apvit_hybrid_deit_tiny", {},
         family="hybrid_deit_tiny"),
    Case("deit-tiny", "DeiT-Tiny", "apvit_deit_tiny", {"atp.r": 1.0}, family="deit_tiny", is_baseline=True),
    Case("deit-tiny-ap", "DeiT-Tiny + ATP (196, 0.8)", "apvit_deit_tiny", {}, family="deit_tiny"),
    # TransFER (B = 2, RAF-DB's settings): the latency of its row on the report's methods comparison.
    Case("transfer", "TransFER (B=2)", "transfer", {}, family="transfer", is_baseline=True),
    # MAE-ViT (plain ViT-B/16 at 224): the latency of its row on the report's methods comparison.
    Case("mae-vit-base", "MAE-ViT-B/16", "mae_vit_base", {}, family="mae_vit", is_baseline=True),
)

PRESETS = ("tiny", "paper")
BATCHES = (1, 32)

# (rounds, warm-up rounds) per (preset, batch): sized so that `make bench` stays under 10 minutes
# on an idle 2-core CPU (about 6 minutes measured; a busy machine doubles it). Paper scale at
# batch 32 is ~0.5-6.5 s per forward, so it gets 4 rounds.
ROUNDS: dict[tuple[str, int], tuple[int, int]] = {
    ("tiny", 1): (30, 5),
    ("tiny", 32): (20, 3),
    ("paper", 1): (12, 2),
    ("paper", 32): (4, 1),
}

# With benchmarking disabled (the normal test run) every benchmark body runs once; paper scale
# is limited to these cases at batch 1 so that the quick mode stays within seconds.
QUICK_PAPER = {("baseline", 1), ("apvit-160-0.9", 1), ("deit-tiny-ap", 1)}

# The augmentation benchmark (test_augment.py): the "apvit" training pipeline, hand-written
# (harness.data.transforms, what the harness uses) against kornia.augmentation, on uint8 batches
# already on the bench device. (rounds, warm-up rounds): kornia at 224 px is ~3-4 s per batch of
# 128 on one core of the 2-core VM, the hand-written one ~0.3 s.
AUGMENT_PIPELINES = ("hand", "kornia")
AUGMENT_SIZES = (112, 224)
AUGMENT_BATCH = 128
AUGMENT_QUICK_BATCH = 4  # quick mode: every body once, on a few images
AUGMENT_ROUNDS: dict[str, tuple[int, int]] = {"hand": (8, 1), "kornia": (3, 1)}
