"""The stand-in generator's knobs (pose, illumination, clutter, occluders, low resolution,
imbalance, label noise), their ranges, the per-dataset defaults and real class frequencies."""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any


from harness.checks import value_problems
from harness.errors import UserError


GENERATOR_VERSION = 3


SCALES = {"tiny": 1, "small": 4, "medium": 10}


# Real class frequencies, canonical order (neutral, happy, sad, surprise, fear, disgust, anger,
# contempt). RAF-DB and AffectNet are the official counts; FERPlus, SFEW and ExpW approximate.
FREQ = {
    "rafdb_train": (2524, 4772, 1982, 1290, 281, 717, 705),
    "rafdb_test": (680, 1185, 478, 329, 74, 160, 162),
    "affectnet_train": (74874, 134415, 25459, 14090, 6378, 3803, 24882, 3750),
    "ferplus_train": (10295, 7526, 3514, 3562, 652, 248, 2466, 165),
    "sfew_train": (228, 256, 234, 150, 98, 74, 255),
    "expw_all": (34883, 30537, 10559, 7060, 1088, 3995, 3671),
}


def _knob(default: float | int, **limits: float) -> float | int:
    """A knob with its allowed range as field metadata (read by :mod:`harness.checks`)."""
    return field(default=default, metadata={"allowed": limits})


@dataclass(frozen=True)
class Knobs:
    """Difficulty and nuisance settings; each nuisance at 0 turns it off."""

    occlusion: float = _knob(0.15, ge=0, le=1)  # probability of an occluder (sunglasses, hand, blob)
    clutter: float = _knob(0.6, ge=0, le=4)  # background clutter amount
    low_res: float = _knob(0.1, ge=0, le=1)  # probability of a down- then up-sampled (low-resolution) image
    label_noise: float = _knob(0.05, ge=0, lt=1)  # fraction of training labels flipped to another class
    imbalance: float = _knob(1.0, ge=0, le=4)  # exponent on the real class frequencies; 0 = balanced
    pose: float = _knob(0.5, ge=0, le=2)  # roll/yaw/pitch/scale/translation jitter
    illumination: float = _knob(0.7, ge=0, le=2)  # directional light, exposure and colour cast
    intensity_min: float = _knob(0.9, ge=0, le=1)  # weakest expression intensity (0 = neutral face)
    expr_noise: float = _knob(0.3, ge=0, le=4)  # per-sample and per-identity geometry noise
    identities: int = _knob(400, ge=2)  # identity pool; train and test people are disjoint
    n_train: int = _knob(0, ge=0)  # 0 = the scale's default
    n_test: int = _knob(0, ge=0)


# Per-dataset defaults. AffectNet's real training frequencies span 36:1 (happy vs contempt): at
# the stand-in's 1,500 training images that leaves about 20 images of disgust and of contempt,
# which no model learns (the tiny AffectNet cells stayed near chance). The square root of the real
# frequencies keeps their order and shape (6:1) and gives every class 70 or more.
DATASET_KNOBS: dict[str, dict[str, float]] = {"affectnet": {"imbalance": 0.5}}


def data_problems(data: dict[str, Any], prefix: str = "data.") -> list[str]:
    """Problems of ``data.*`` values (knob name -> value) against :class:`Knobs`'s ranges."""
    return value_problems(Knobs, data, prefix)


def make_knobs(name: str | None = None, **knobs) -> Knobs:
    """Knobs from keyword overrides over the dataset's defaults; an unknown knob or a value out of
    range is a UserError."""
    names = {f.name for f in fields(Knobs)}
    unknown = sorted(set(knobs) - names)
    if unknown:
        raise UserError(f"unknown synthetic knob(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
    problems = data_problems(knobs, prefix="")
    if problems:
        raise UserError("; ".join(problems))
    return replace(Knobs(), **{**DATASET_KNOBS.get(name or "", {}), **knobs})
