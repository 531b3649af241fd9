"""A procedural synthetic FER dataset, written in the official layout of a real one.

Faces are drawn with PIL from an identity (face shape, skin tone, feature placement, hair)
and an expression: a point in an 8-d geometry space (mouth curvature, openness and width,
brow raise and tilt, eye openness, mouth asymmetry, nose wrinkle). Each class has a
prototype; a sample moves from neutral towards its prototype by a random intensity and gets
per-sample and per-identity noise, so classes overlap (weak expressions look neutral, fear
and surprise share raised brows and open mouths, anger and disgust lowered brows). Nuisances
are knobs an ablation can turn off: pose, illumination, background clutter, occluders
(sunglasses, hands, blobs), low resolution, class imbalance and label noise.

:func:`synthetic_root` generates a stand-in once into a cache directory named by its
parameters and returns it; :func:`write_synthetic` writes one anywhere. Output is a pure
function of (dataset, scale, seed, knobs): every image has its own seeded generator and
JPEG/PNG parameters are fixed. A ``SYNTHETIC.json`` marker with the parameters and a hash of
every written file lets :func:`harness.data.load_dataset` flag the data as synthetic.
"""
from __future__ import annotations

import atexit
import csv
import hashlib
import json
import math
import os
import shutil
import signal
import tempfile
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from harness.checks import value_problems
from harness.data.base import SYNTHETIC_MARKER
from harness.data.labels import (AFFECTNET_LABELS, CANONICAL_CLASSES, EXPW_LABELS,
                                 FER2013_LABELS, FERPLUS_LABELS, FERPLUS_VOTE_COLUMNS,
                                 RAFDB_LABELS, SFEW_FOLDERS)
from harness.errors import UserError

GENERATOR_VERSION = 3
CACHE_ENV = "FERBENCH_CACHE"
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


# Expression geometry: curve, open, width, brow_raise, brow_tilt, eye_open, asym, wrinkle.
_NEUTRAL = np.array([0.0, 0.05, 1.0, 0.0, 0.0, 0.62, 0.0, 0.0])
_PROTO = {
    "neutral": _NEUTRAL,
    "happy": np.array([0.9, 0.35, 1.2, 0.1, 0.0, 0.42, 0.0, 0.0]),
    "sad": np.array([-0.7, 0.05, 0.9, 0.05, 0.8, 0.45, 0.0, 0.0]),
    "surprise": np.array([0.0, 0.95, 0.75, 0.8, 0.1, 1.0, 0.0, 0.0]),
    "fear": np.array([-0.35, 0.55, 1.15, 0.55, 0.7, 0.92, 0.0, 0.0]),
    "disgust": np.array([-0.45, 0.2, 0.95, -0.35, -0.3, 0.38, 0.0, 1.0]),
    "anger": np.array([-0.3, 0.1, 0.85, -0.6, -0.85, 0.55, 0.0, 0.2]),
    "contempt": np.array([0.15, 0.05, 1.0, 0.05, 0.0, 0.55, 0.9, 0.0]),
}
_NOISE = np.array([0.18, 0.08, 0.08, 0.15, 0.18, 0.08, 0.12, 0.15])
_IDENTITY_BIAS = np.array([0.12, 0.03, 0.06, 0.12, 0.15, 0.08, 0.05, 0.05])
_VALENCE = {"neutral": (0.0, 0.0), "happy": (0.7, 0.4), "sad": (-0.6, -0.2), "surprise": (0.2, 0.7),
            "fear": (-0.5, 0.7), "disgust": (-0.6, 0.3), "anger": (-0.6, 0.6),
            "contempt": (-0.4, 0.3)}
# Confusable classes: FERPlus annotators split their votes among these.
_CONFUSE = {"neutral": ("sad", "contempt"), "happy": ("neutral", "surprise"),
            "sad": ("neutral", "fear"), "surprise": ("fear", "happy"), "fear": ("surprise", "sad"),
            "disgust": ("anger", "sad"), "anger": ("disgust", "neutral"),
            "contempt": ("neutral", "disgust")}


def _identity(seed: int, ident: int) -> dict:
    r = np.random.default_rng([seed, 7919, ident])
    tone = r.uniform()
    skin = np.array([250, 222, 196]) * (1 - tone) + np.array([115, 74, 50]) * tone
    skin = np.clip(skin + r.normal(0, 8, 3), 0, 255)
    hair = np.clip(np.array([30, 22, 15]) + r.uniform(0, 1) * np.array([170, 120, 60])
                   + r.normal(0, 10, 3), 0, 255)
    return {
        "skin": skin, "hair": hair, "hair_style": int(r.integers(3)),
        "hair_depth": r.uniform(0.45, 0.62), "face_w": r.uniform(0.28, 0.36),
        "face_h": r.uniform(0.38, 0.46), "eye_dx": r.uniform(0.12, 0.15),
        "eye_y": r.uniform(-0.09, -0.05), "eye_size": r.uniform(0.05, 0.065),
        "brow_gap": r.uniform(0.055, 0.075), "brow_w": r.uniform(0.02, 0.03),
        "mouth_y": r.uniform(0.17, 0.22), "mouth_w": r.uniform(0.12, 0.15),
        "nose_len": r.uniform(0.08, 0.12), "iris": np.clip(r.uniform(20, 120, 3), 0, 255),
        "bias": r.normal(0, 1, 8) * _IDENTITY_BIAS,
    }


def _background(r: np.random.Generator, size: int, clutter: float) -> Image.Image:
    base = r.uniform(40, 220, 3).astype(np.float32)
    t = np.arange(size, dtype=np.float32) / size
    ramp = t[None, :] * np.float32(r.uniform(-1, 1)) + t[:, None] * np.float32(r.uniform(-1, 1))
    grad = ramp[..., None] * r.normal(0, 40, 3).astype(np.float32)  # [size, size, 3]
    img = Image.fromarray(np.clip(base + grad, 0, 255).astype(np.uint8), "RGB")
    d = ImageDraw.Draw(img)
    for _ in range(int(r.poisson(8 * clutter))):
        col = tuple(int(v) for v in r.uniform(0, 255, 3))
        x0, y0 = r.uniform(-0.2, 1.0, 2) * size
        w, h = r.uniform(0.05, 0.5, 2) * size
        kind = r.integers(3)
        if kind == 0:
            d.ellipse([x0, y0, x0 + w, y0 + h], fill=col)
        elif kind == 1:
            d.rectangle([x0, y0, x0 + w, y0 + h], fill=col)
        else:
            d.line([x0, y0, x0 + w * r.choice([-1, 1]), y0 + h], fill=col,
                   width=max(1, int(r.uniform(0.01, 0.04) * size)))
    return img


def _mouth(d: ImageDraw.ImageDraw, mx: float, my: float, e: np.ndarray, idn: dict, s: float,
           lip: tuple) -> None:
    curve, opn, width, asym = e[0], max(e[1], 0.0), max(e[2], 0.4), e[6]
    mw = idn["mouth_w"] * s * width
    xs = np.linspace(-1, 1, 17)
    corner = -curve * 0.07 * s * xs**2 - asym * 0.06 * s * np.clip(xs, 0, None) ** 2
    upper = my + corner - opn * 0.02 * s * (1 - xs**2)
    lower = my + corner + opn * 0.1 * s * (1 - xs**2)
    pts_u = [(mx + x * mw, y) for x, y in zip(xs, upper)]
    pts_l = [(mx + x * mw, y) for x, y in zip(xs, lower)]
    if opn > 0.12:
        d.polygon(pts_u + pts_l[::-1], fill=(60, 20, 25, 255))
        if curve > 0.3 and opn > 0.2:  # teeth
            teeth = [(x, y + (yl - y) * 0.35) for (x, y), (_, yl) in zip(pts_u, pts_l)]
            d.polygon(pts_u + teeth[::-1], fill=(240, 240, 235, 255))
    lw = max(2, int(0.02 * s))
    d.line(pts_u, fill=lip, width=lw, joint="curve")
    d.line(pts_l, fill=lip, width=lw, joint="curve")


def _occluder(d: ImageDraw.ImageDraw, r: np.random.Generator, cx: float, ey: float, my: float,
              idn: dict, s: float) -> None:
    kind = r.integers(3)
    if kind == 0:  # sunglasses
        col = tuple(int(v) for v in r.uniform(0, 60, 3)) + (255,)
        rw, rh = idn["eye_size"] * s * 1.9, idn["eye_size"] * s * 1.4
        for sgn in (-1, 1):
            ex = cx + sgn * idn["eye_dx"] * s
            d.rounded_rectangle([ex - rw, ey - rh, ex + rw, ey + rh], radius=rh * 0.6, fill=col)
        d.line([cx - idn["eye_dx"] * s + rw, ey, cx + idn["eye_dx"] * s - rw, ey], fill=col,
               width=max(2, int(0.015 * s)))
    elif kind == 1:  # hand over the mouth, cheek or chin
        col = tuple(int(v) for v in np.clip(idn["skin"] * r.uniform(0.85, 1.1), 0, 255)) + (255,)
        hx = cx + r.uniform(-0.25, 0.25) * s
        hy = my + r.uniform(-0.05, 0.12) * s
        hw, hh = r.uniform(0.12, 0.18) * s, r.uniform(0.08, 0.12) * s
        d.ellipse([hx - hw, hy - hh, hx + hw, hy + hh], fill=col)
        for j in range(4):
            fx = hx - hw + (j + 0.5) * hw * 0.5
            d.rounded_rectangle([fx - hw * 0.12, hy - hh * 2.2, fx + hw * 0.12, hy],
                                radius=hw * 0.1, fill=col)
    else:  # a random blob (scarf, microphone, hair strand)
        col = tuple(int(v) for v in r.uniform(0, 255, 3)) + (255,)
        n = 7
        ang = np.sort(r.uniform(0, 2 * math.pi, n))
        rad = r.uniform(0.06, 0.16, n) * s
        bx, by = cx + r.uniform(-0.25, 0.25) * s, ey + r.uniform(-0.05, 0.35) * s
        d.polygon([(bx + a * math.cos(t), by + a * math.sin(t)) for a, t in zip(rad, ang)], fill=col)


def render_face(r: np.random.Generator, expression: str, idn: dict, k: Knobs, size: int) -> np.ndarray:
    """Draw one face; returns uint8 [size, size, 3]. ``r`` supplies every random choice."""
    R = size * 2  # drawn at 2x and downsampled, for anti-aliasing
    img = _background(r, R, k.clutter).convert("RGBA")
    layer = Image.new("RGBA", (R, R), (0, 0, 0, 0))
    d = ImageDraw.Draw(layer)
    p = k.pose
    s = R * float(np.clip(1 + 0.07 * p * r.normal(), 0.8, 1.2))
    cx = R / 2 + p * r.normal(0, 0.03) * R
    cy = R / 2 + 0.02 * R + p * r.normal(0, 0.03) * R
    yaw = float(np.clip(r.normal(0, 0.35 * p), -0.8, 0.8))
    pitch = float(np.clip(r.normal(0, 0.3 * p), -0.6, 0.6))

    intensity = r.uniform(k.intensity_min, 1.0)
    e = _NEUTRAL + intensity * (_PROTO[expression] - _NEUTRAL)
    e = e + k.expr_noise * (r.normal(0, 1, 8) * _NOISE + idn["bias"])

    skin = tuple(int(v) for v in idn["skin"]) + (255,)
    shade = tuple(int(v * 0.8) for v in idn["skin"]) + (255,)
    hair = tuple(int(v) for v in idn["hair"]) + (255,)
    fw, fh = idn["face_w"] * s, idn["face_h"] * s
    if idn["hair_style"] == 1:  # long hair behind the face
        d.rounded_rectangle([cx - fw * 1.2, cy - fh * 1.1, cx + fw * 1.2, cy + fh * 1.1],
                            radius=fw * 0.6, fill=hair)
    d.rectangle([cx - fw * 0.45, cy + fh * 0.6, cx + fw * 0.45, R], fill=shade)
    d.ellipse([cx - fw, cy - fh, cx + fw, cy + fh], fill=skin)
    top = cy - fh * 1.06
    depth = idn["hair_depth"] * fh * (1.25 if idn["hair_style"] == 2 else 1.0)
    d.pieslice([cx - fw * 1.05, top, cx + fw * 1.05, top + 2 * depth], 180, 360, fill=hair)

    fx, fy = cx + yaw * 0.07 * s, cy + pitch * 0.04 * s
    ey = fy + idn["eye_y"] * s
    eye_open = float(np.clip(e[5], 0.12, 1.3))
    for sgn in (-1, 1):
        squash = 1 - 0.3 * yaw * sgn
        ex = fx + sgn * idn["eye_dx"] * s * (1 + 0.15 * yaw * sgn)
        ew, eh = idn["eye_size"] * s * 1.3 * squash, idn["eye_size"] * s * eye_open
        d.ellipse([ex - ew, ey - eh, ex + ew, ey + eh], fill=(245, 245, 240, 255))
        ir = min(eh, ew * 0.55) * 0.9
        d.ellipse([ex - ir, ey - ir, ex + ir, ey + ir], fill=tuple(int(v) for v in idn["iris"]) + (255,))
        d.arc([ex - ew, ey - eh, ex + ew, ey + eh], 180, 360, fill=shade, width=max(1, int(0.008 * s)))
        by = ey - idn["brow_gap"] * s - e[3] * 0.045 * s
        inner = (ex - sgn * ew * 1.05, by - e[4] * 0.04 * s)
        outer = (ex + sgn * ew * 1.1, by + e[4] * 0.012 * s)
        d.line([inner, outer], fill=hair, width=max(2, int(idn["brow_w"] * s)))
    nb = fy + idn["nose_len"] * s
    d.line([(fx, ey + 0.01 * s), (fx + 0.012 * s, nb)], fill=shade, width=max(1, int(0.01 * s)))
    d.arc([fx - 0.03 * s, nb - 0.02 * s, fx + 0.03 * s, nb + 0.015 * s], 0, 180, fill=shade,
          width=max(1, int(0.01 * s)))
    if e[7] > 0.3:  # nose wrinkle
        for j in range(3):
            yy = ey + (0.01 + 0.018 * j) * s
            d.line([(fx - 0.025 * s, yy), (fx + 0.025 * s, yy + 0.004 * s)], fill=shade,
                   width=max(1, int(0.006 * s * min(e[7], 1.5))))
    lip = tuple(int(v) for v in np.clip(idn["skin"] * np.array([0.75, 0.45, 0.45]), 0, 255)) + (255,)
    my = fy + idn["mouth_y"] * s
    _mouth(d, fx, my, e, idn, s, lip)
    if r.uniform() < k.occlusion:
        _occluder(d, r, fx, ey, my, idn, s)

    roll = float(np.clip(r.normal(0, 10 * p), -30, 30))
    if roll:
        layer = layer.rotate(roll, resample=Image.BILINEAR, center=(cx, cy))
    img.alpha_composite(layer)
    small = img.convert("RGB").resize((size, size), Image.BILINEAR, reducing_gap=None)
    x = np.asarray(small, dtype=np.float32)
    if k.illumination:
        li = k.illumination
        t = np.arange(size, dtype=np.float32) / size - 0.5
        theta = r.uniform(0, 2 * math.pi)
        amp = 2 * li * r.uniform(0.1, 0.45)
        light = 1 + amp * (t[None, :] * math.cos(theta) + t[:, None] * math.sin(theta))  # [S, S]
        gain = (np.exp(li * r.normal(0, 0.18)) * (1 + li * r.normal(0, 0.05, 3))).astype(np.float32)
        x = x * light[..., None] * gain
    x = x + r.standard_normal(x.shape, dtype=np.float32) * 3.0
    return _maybe_low_res(Image.fromarray(np.clip(x, 0, 255).astype(np.uint8), "RGB"), r, k.low_res, (0.2, 0.45))


def _maybe_low_res(img: Image.Image, r: np.random.Generator, chance: float, scale: tuple[float, float]) -> np.ndarray:
    """With probability ``chance``, down-sample to a random fraction ``scale`` of the side (at least 8 px)
    and back up, as a low-resolution capture; returns uint8 [S, S, 3]."""
    if r.uniform() < chance:
        size = img.size[0]
        lo = max(8, int(size * r.uniform(*scale)))
        img = img.resize((lo, lo), Image.BILINEAR).resize((size, size), Image.BILINEAR)
    return np.asarray(img)


# --------------------------------------------------------------------------------------------
# Sample plans: which class, identity and seed every written image gets.

@dataclass(frozen=True)
class _Sample:
    index: int
    cls: str  # rendered expression
    label: str  # written label (after label noise)
    ident: int
    split: str


def _counts(freq: tuple[float, ...], n: int, alpha: float) -> list[int]:
    w = np.asarray(freq, dtype=np.float64) ** alpha
    w = w / w.sum() * n
    c = np.floor(w).astype(int)
    c[np.argsort(-(w - c), kind="stable")[: n - c.sum()]] += 1
    return c.tolist()


def _plan(seed: int, code: int, split: str, n: int, classes: tuple[str, ...], freq, alpha: float,
          k: Knobs, ident_range: tuple[int, int], noisy: bool, start: int = 0) -> list[_Sample]:
    r = np.random.default_rng([seed, code, _SPLIT_CODE[split]])
    counts = _counts(freq, n, alpha)
    labels = np.repeat(np.arange(len(classes)), counts)
    labels = labels[r.permutation(len(labels))]
    out = []
    for i, c in enumerate(labels):
        obs = int(c)
        if noisy and r.uniform() < k.label_noise:
            obs = int((c + r.integers(1, len(classes))) % len(classes))
        out.append(_Sample(start + i, classes[c], classes[obs],
                           int(r.integers(*ident_range)), split))
    return out


_SPLIT_CODE = {"train": 1, "test": 2, "val": 3, "all": 4}
_DATASET_CODE = {"rafdb": 11, "affectnet": 12, "ferplus": 13, "sfew": 14, "expw": 15, "folder": 16,
                 "faceid": 17, "imagenet": 18}
# Face-ID people are drawn from their own index range, so no stand-in's test person (indices below
# ``Knobs.identities``) is ever seen by a face-recognition pre-training stage.
FACEID_IDENTITY_OFFSET = 1_000_000


def _ident_ranges(k: Knobs) -> tuple[tuple[int, int], tuple[int, int]]:
    cut = max(1, int(k.identities * 0.75))
    return (0, cut), (cut, max(cut + 1, k.identities))


def _img(seed: int, code: int, smp: _Sample, k: Knobs, size: int) -> np.ndarray:
    r = np.random.default_rng([seed, code, _SPLIT_CODE[smp.split], smp.index])
    return render_face(r, smp.cls, _identity(seed, smp.ident), k, size)


def _save(arr: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(arr)
    if path.suffix == ".png":
        im.save(path, format="PNG", optimize=False, compress_level=6)
    else:
        im.save(path, format="JPEG", quality=92, subsampling=2, optimize=False, progressive=False)


@dataclass(frozen=True)
class _Job:
    """Render one sample; paste it into a cluttered canvas (a face box) and/or save it."""

    seed: int
    code: int
    smp: _Sample
    knobs: Knobs
    size: int
    path: Path | None = None  # None: return the pixels (FERPlus, grey)
    canvas: int = 0  # >0: the face sits in a canvas x canvas image at a random offset


def _produce(job: _Job):
    face = _img(job.seed, job.code, job.smp, job.knobs, job.size)
    if job.path is None:
        return np.asarray(Image.fromarray(face).convert("L"))
    offset = (0, 0)
    if job.canvas:
        r = np.random.default_rng([job.seed, job.code, _SPLIT_CODE[job.smp.split], job.smp.index, 1])
        canvas = np.array(_background(r, job.canvas, job.knobs.clutter))
        left, top = (int(v) for v in r.integers(0, job.canvas - job.size + 1, 2))
        canvas[top:top + job.size, left:left + job.size] = face
        face, offset = canvas, (left, top)
    _save(face, job.path)
    return offset


def _default_signals() -> None:
    # The pool stops its workers with SIGTERM when it closes; with the parent's handler
    # (harness.interrupts) inherited, each would print a "Cancelled" traceback. Ctrl-C is the
    # parent's to handle.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _run(fn: Callable[[Any], Any], jobs: list) -> list:
    """``fn`` over jobs, in worker processes when there are many; results keep the job order."""
    workers = min(os.cpu_count() or 1, 8)
    if len(jobs) < 200 or workers < 2:
        return [fn(j) for j in jobs]
    import multiprocessing as mp
    with mp.get_context("fork").Pool(workers, initializer=_default_signals) as pool:  # numpy/PIL only
        return pool.map(fn, jobs, chunksize=32)


# --------------------------------------------------------------------------------------------
# Writers, one per official layout.

def _sizes(name: str, scale: str, k: Knobs) -> tuple[int, int]:
    # Test splits of >= 2,500 images: one cell's binomial standard error is then <= 1 point (the
    # balanced AffectNet test set is 8 x 360, 2,520 under the 7-class protocol). ExpW has no test
    # split of its own (a seeded 15% of everything) and keeps its small default.
    base = {"rafdb": (1500, 2500), "affectnet": (1500, 2880), "ferplus": (1500, 2500),
            "sfew": (600, 2500), "expw": (1500, 0), "folder": (1000, 2500), "faceid": (4000, 800),
            "imagenet": (3000, 1500)}[name]
    m = SCALES[scale]
    return (k.n_train or base[0] * m, k.n_test or base[1] * m)


def _write_rafdb(out: Path, seed: int, k: Knobs, n_train: int, n_test: int) -> None:
    code, classes = _DATASET_CODE["rafdb"], CANONICAL_CLASSES[:7]
    inv = {v: c for c, v in RAFDB_LABELS.items()}
    tr, te = _ident_ranges(k)
    lines, jobs = [], []
    for split, n, freq, ids in (("train", n_train, FREQ["rafdb_train"], tr),
                                ("test", n_test, FREQ["rafdb_test"], te)):
        for smp in _plan(seed, code, split, n, classes, freq, k.imbalance, k, ids, split == "train"):
            stem = f"{split}_{smp.index + 1:05d}"
            jobs.append(_Job(seed, code, smp, k, 100, out / "Image" / "aligned" / f"{stem}_aligned.jpg"))
            lines.append(f"{stem}.jpg {inv[smp.label]}\n")
    _run(_produce, jobs)
    (out / "EmoLabel").mkdir(parents=True, exist_ok=True)
    (out / "EmoLabel" / "list_patition_label.txt").write_text("".join(lines))


def _write_affectnet(out: Path, seed: int, k: Knobs, n_train: int, n_test: int) -> None:
    code, classes = _DATASET_CODE["affectnet"], CANONICAL_CLASSES
    inv = {v: c for c, v in AFFECTNET_LABELS.items()}
    tr, te = _ident_ranges(k)
    header = ["subDirectory_filePath", "face_x", "face_y", "face_width", "face_height",
              "facial_landmarks", "expression", "valence", "arousal"]
    plans = {"training.csv": _plan(seed, code, "train", n_train, classes, FREQ["affectnet_train"],
                                   k.imbalance, k, tr, True),
             "validation.csv": _plan(seed, code, "test", n_test, classes, (1,) * 8, 0.0, k, te, False)}
    for fname, plan in plans.items():
        rels = [f"{smp.index % 25 + 1}/" + hashlib.sha224(
            f"{seed}-{smp.split}-{smp.index}".encode()).hexdigest() + ".jpg" for smp in plan]
        offsets = _run(_produce, [_Job(seed, code, smp, k, 100, out / "Manually_Annotated_Images" / rel, 140)
                                  for smp, rel in zip(plan, rels)])
        r = np.random.default_rng([seed, code, 99, len(fname)])
        rows = []
        for smp, rel, (fx, fy) in zip(plan, rels, offsets):
            expr = inv[smp.label]
            if smp.split == "train" and r.uniform() < 0.03:  # none / uncertain / no-face rows
                expr = int(r.integers(8, 11))
            v, a = _VALENCE[smp.label]
            val, aro = ((-2.0, -2.0) if expr >= 8 else
                        (float(np.clip(v + r.normal(0, 0.15), -1, 1)),
                         float(np.clip(a + r.normal(0, 0.15), -1, 1))))
            marks = ";".join(f"{fx + x:.2f};{fy + y:.2f}" for x, y in r.uniform(10, 90, (68, 2)))
            rows.append([rel, fx, fy, 100, 100, marks, expr, f"{val:.6f}", f"{aro:.6f}"])
        with open(out / fname, "w", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(header)
            w.writerows(rows)


def _votes(r: np.random.Generator, cls: str) -> list[int]:
    """Ten simulated FERPlus annotators: mostly the true class, some confusable ones."""
    cols = list(FERPLUS_LABELS.values())
    p = np.zeros(10)
    agree = r.uniform(0.45, 0.95)
    p[cols.index(cls)] += agree
    a, b = _CONFUSE[cls]
    p[cols.index(a)] += (1 - agree) * 0.5
    p[cols.index(b)] += (1 - agree) * 0.3
    p[8] += (1 - agree) * 0.2
    return r.multinomial(10, p / p.sum()).tolist()


def _write_ferplus(out: Path, seed: int, k: Knobs, n_train: int, n_test: int) -> None:
    code, classes = _DATASET_CODE["ferplus"], CANONICAL_CLASSES
    cols = list(FERPLUS_LABELS.values())
    fer_inv = {v: c for c, v in FER2013_LABELS.items()}
    tr, te = _ident_ranges(k)
    # PublicTest (val) is an eighth of PrivateTest, not the real ~1:1: it is evaluated every epoch,
    # and at 1,250 images val and test together took ~40% of a tiny Neural Resizer cell's time.
    plan = (_plan(seed, code, "train", n_train, classes, FREQ["ferplus_train"], k.imbalance, k, tr, False)
            + _plan(seed, code, "val", n_test // 8, classes, FREQ["ferplus_train"], k.imbalance, k, te, False)
            + _plan(seed, code, "test", n_test, classes, FREQ["ferplus_train"], k.imbalance, k, te, False))
    pixels = _run(_produce, [_Job(seed, code, smp, k, 48) for smp in plan])
    usage = {"train": "Training", "val": "PublicTest", "test": "PrivateTest"}
    old_rows, new_rows = [], []
    for j, (smp, grey) in enumerate(zip(plan, pixels)):
        r = np.random.default_rng([seed, code, 77, j])
        votes = _votes(r, smp.cls)
        u = r.uniform()
        name = f"fer{j:07d}.png"
        if u < 0.02:  # not a face: NF wins
            votes = [0] * 8 + [int(r.integers(0, 3))] + [0]
            votes[9] = 10 - votes[8]
        elif u < 0.04:  # ambiguous: unknown wins
            votes = [0] * 10
            votes[8], votes[cols.index(smp.cls)] = 6, 4
        elif u < 0.05:  # removed from FERPlus: empty image name
            name = ""
        old_rows.append([fer_inv.get(smp.cls, 6), " ".join(map(str, grey.flatten().tolist())),
                         usage[smp.split]])
        new_rows.append([usage[smp.split], name, *votes])
    for fname, header, rows in (("fer2013.csv", ["emotion", "pixels", "Usage"], old_rows),
                                ("fer2013new.csv", ["Usage", "Image name", *FERPLUS_VOTE_COLUMNS], new_rows)):
        with open(out / fname, "w", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(header)
            w.writerows(rows)


def _write_folders(out: Path, seed: int, k: Knobs, name: str, n_train: int, n_test: int) -> None:
    code, classes = _DATASET_CODE[name], CANONICAL_CLASSES[:7]
    tr, te = _ident_ranges(k)
    if name == "sfew":
        inv, dirs, freq, ext, size = ({v: c for c, v in SFEW_FOLDERS.items()}, ("Train", "Val"),
                                      FREQ["sfew_train"], ".png", 128)
    else:
        inv, dirs, freq, ext, size = {c: c for c in classes}, ("train", "test"), FREQ["rafdb_train"], ".jpg", 100
    jobs = []
    for split, d, n, ids in (("train", dirs[0], n_train, tr), ("test", dirs[1], n_test, te)):
        for smp in _plan(seed, code, split, n, classes, freq, k.imbalance, k, ids, split == "train"):
            jobs.append(_Job(seed, code, smp, k, size, out / d / inv[smp.label] / f"{split}_{smp.index:05d}{ext}"))
    _run(_produce, jobs)


def _write_faceid(out: Path, seed: int, k: Knobs, n_train: int, n_test: int) -> None:
    """``k.identities`` people, each with every expression under every nuisance, in identity folders.

    Train and test hold the *same* people (a recognition task); images are split evenly over them.
    """
    code, people = _DATASET_CODE["faceid"], max(k.identities, 2)
    jobs = []
    for split, n in (("train", n_train), ("test", n_test)):
        r = np.random.default_rng([seed, code, _SPLIT_CODE[split]])
        who = np.arange(n) % people
        expr = r.integers(0, len(CANONICAL_CLASSES), n)
        for i in range(n):
            cls = CANONICAL_CLASSES[int(expr[i])]
            smp = _Sample(i, cls, cls, FACEID_IDENTITY_OFFSET + int(who[i]), split)
            jobs.append(_Job(seed, code, smp, k, 100, out / split / f"id{who[i]:05d}" / f"{split}_{i:06d}.jpg"))
    _run(_produce, jobs)


def _write_expw(out: Path, seed: int, k: Knobs, n_train: int, n_test: int) -> None:
    code, classes = _DATASET_CODE["expw"], CANONICAL_CLASSES[:7]
    inv = {v: c for c, v in EXPW_LABELS.items()}
    plan = _plan(seed, code, "all", n_train, classes, FREQ["expw_all"], k.imbalance, k,
                 (0, k.identities), True)
    names = [f"syn_{smp.index:06d}.jpg" for smp in plan]
    offsets = _run(_produce, [_Job(seed, code, smp, k, 100, out / "image" / "origin" / n, 160)
                              for smp, n in zip(plan, names)])
    r = np.random.default_rng([seed, code, 55])
    lines = [f"{n} 0 {top} {left} {left + 100} {top + 100} {r.uniform(30, 90):.4f} {inv[smp.label]}\n"
             for smp, n, (left, top) in zip(plan, names, offsets)]
    (out / "label").mkdir(parents=True, exist_ok=True)
    (out / "label" / "label.lst").write_text("".join(lines))


# --------------------------------------------------------------------------------------------
# The generic-image (non-face) stand-in for ImageNet-1K: shapes, textures and scenes.

GENERIC_SHAPES = ("circle", "square", "triangle", "star", "ring", "cross", "hexagon", "ellipse",
                  "crescent", "arrow", "diamond", "pentagon")
GENERIC_TEXTURES = ("stripes", "diagonal_stripes", "checkerboard", "dots", "waves", "grid", "bricks",
                    "zigzag", "concentric", "speckle")
GENERIC_SCENES = ("horizon", "sunset", "sea", "forest", "skyline", "mountains", "night", "road")
GENERIC_CLASSES = GENERIC_SHAPES + GENERIC_TEXTURES + GENERIC_SCENES


def _colour(r: np.random.Generator, lo: float = 0, hi: float = 255) -> tuple[int, int, int]:
    return tuple(int(v) for v in r.uniform(lo, hi, 3))


def _polygon(cx: float, cy: float, rad: float, n: int, rot: float, inner: float = 1.0) -> list[tuple[float, float]]:
    """A regular n-gon (or a star, with every other vertex at ``inner`` x the radius)."""
    pts = []
    for i in range(n * (2 if inner != 1.0 else 1)):
        a = rot + i * math.pi / (n if inner != 1.0 else n / 2)
        rr = rad * (inner if inner != 1.0 and i % 2 else 1.0)
        pts.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
    return pts


def _shape(img: Image.Image, r: np.random.Generator, cls: str, size: int) -> None:
    d = ImageDraw.Draw(img)
    cx, cy = r.uniform(0.35, 0.65, 2) * size
    rad = r.uniform(0.18, 0.32) * size
    rot = r.uniform(0, 2 * math.pi)
    col = _colour(r)
    box = [cx - rad, cy - rad, cx + rad, cy + rad]
    if cls == "circle":
        d.ellipse(box, fill=col)
    elif cls == "square":
        d.polygon(_polygon(cx, cy, rad * 1.2, 4, rot), fill=col)
    elif cls == "triangle":
        d.polygon(_polygon(cx, cy, rad * 1.2, 3, rot), fill=col)
    elif cls == "star":
        d.polygon(_polygon(cx, cy, rad * 1.2, 5, rot, inner=0.45), fill=col)
    elif cls == "ring":
        d.ellipse(box, outline=col, width=max(2, int(rad * r.uniform(0.15, 0.3))))
    elif cls == "cross":
        w = rad * r.uniform(0.25, 0.4)
        for a in (rot, rot + math.pi / 2):
            dx, dy = math.cos(a), math.sin(a)
            d.line([cx - rad * dx, cy - rad * dy, cx + rad * dx, cy + rad * dy], fill=col, width=max(2, int(w)))
    elif cls == "hexagon":
        d.polygon(_polygon(cx, cy, rad * 1.1, 6, rot), fill=col)
    elif cls == "pentagon":
        d.polygon(_polygon(cx, cy, rad * 1.1, 5, rot), fill=col)
    elif cls == "ellipse":
        e = r.uniform(0.35, 0.6)
        d.ellipse([cx - rad, cy - rad * e, cx + rad, cy + rad * e] if r.uniform() < 0.5
                  else [cx - rad * e, cy - rad, cx + rad * e, cy + rad], fill=col)
    elif cls == "crescent":  # a disc minus an offset disc, pasted through a mask (the ground shows)
        off, a = rad * r.uniform(0.35, 0.6), rot
        mask = Image.new("L", img.size, 0)
        md = ImageDraw.Draw(mask)
        md.ellipse(box, fill=255)
        md.ellipse([box[0] + off * math.cos(a), box[1] + off * math.sin(a), box[2] + off * math.cos(a),
                    box[3] + off * math.sin(a)], fill=0)
        img.paste(Image.new("RGB", img.size, col), (0, 0), mask)
    elif cls == "arrow":
        dx, dy = math.cos(rot), math.sin(rot)
        tip = (cx + rad * dx, cy + rad * dy)
        d.line([cx - rad * dx, cy - rad * dy, tip[0] - 0.3 * rad * dx, tip[1] - 0.3 * rad * dy], fill=col,
               width=max(2, int(rad * 0.25)))
        px, py = -dy, dx
        d.polygon([tip, (tip[0] - 0.6 * rad * dx + 0.4 * rad * px, tip[1] - 0.6 * rad * dy + 0.4 * rad * py),
                   (tip[0] - 0.6 * rad * dx - 0.4 * rad * px, tip[1] - 0.6 * rad * dy - 0.4 * rad * py)], fill=col)
    elif cls == "diamond":
        d.polygon([(cx, cy - rad * 1.2), (cx + rad * 0.7, cy), (cx, cy + rad * 1.2), (cx - rad * 0.7, cy)], fill=col)


def _texture(img: Image.Image, r: np.random.Generator, cls: str, size: int) -> Image.Image:
    a, b = np.array(_colour(r), np.float32), np.array(_colour(r), np.float32)
    period = r.uniform(0.08, 0.25) * size
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    ang = r.uniform(0, math.pi)
    u = xx * math.cos(ang) + yy * math.sin(ang)
    v = -xx * math.sin(ang) + yy * math.cos(ang)
    ph = r.uniform(0, period)
    if cls == "stripes":
        m = ((yy + ph) // (period / 2)) % 2
    elif cls == "diagonal_stripes":
        m = ((xx + yy + ph) // (period / 2)) % 2
    elif cls == "checkerboard":
        m = (((xx + ph) // period) + ((yy + ph) // period)) % 2
    elif cls == "dots":
        m = (((xx + ph) % period - period / 2) ** 2 + ((yy + ph) % period - period / 2) ** 2) < (period * 0.3) ** 2
    elif cls == "waves":
        m = np.sin(2 * np.pi * (v + 0.15 * size * np.sin(2 * np.pi * u / (2 * period))) / period) > 0
    elif cls == "grid":
        w = max(1.0, period * 0.15)
        m = (((xx + ph) % period) < w) | (((yy + ph) % period) < w)
    elif cls == "bricks":
        row = (yy + ph) // (period / 2)
        shift = (row % 2) * period / 2
        m = (((yy + ph) % (period / 2)) < max(1.0, period * 0.08)) | (((xx + shift) % period) < max(1.0, period * 0.08))
    elif cls == "zigzag":
        m = ((v + np.abs(((u % period) / period) - 0.5) * period) // (period / 2)) % 2
    elif cls == "concentric":
        c = r.uniform(0.3, 0.7, 2) * size
        m = (np.sqrt((xx - c[0]) ** 2 + (yy - c[1]) ** 2) // (period / 2)) % 2
    else:  # speckle: fine random noise of two colours, blurred a little
        m = r.uniform(size=(size, size)) < 0.5
    m = np.asarray(m, np.float32)[..., None]
    arr = a * m + b * (1 - m) + r.normal(0, 6, (size, size, 3)).astype(np.float32)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def _scene(r: np.random.Generator, cls: str, size: int) -> Image.Image:
    t = np.linspace(0, 1, size, dtype=np.float32)[:, None, None]  # top -> bottom
    jit = lambda c, s=25: np.clip(np.array(c, np.float32) + r.normal(0, s, 3), 0, 255)  # noqa: E731
    hy = int(r.uniform(0.4, 0.65) * size)
    if cls == "sunset":
        top, bottom = jit((60, 40, 120)), jit((250, 140, 60))
    elif cls == "night":
        top, bottom = jit((5, 5, 30), 8), jit((20, 20, 60), 10)
    else:
        top, bottom = jit((80, 140, 230)), jit((190, 215, 245))
    sky = top * (1 - t) + bottom * t
    arr = np.broadcast_to(sky, (size, size, 3)).copy()
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    d = ImageDraw.Draw(img)
    ground = tuple(int(v) for v in jit((70, 130, 60)))
    if cls == "horizon":
        d.rectangle([0, hy, size, size], fill=ground)
    elif cls == "sunset":
        sx, sr = r.uniform(0.2, 0.8) * size, r.uniform(0.08, 0.15) * size
        d.ellipse([sx - sr, hy - sr, sx + sr, hy + sr], fill=tuple(int(v) for v in jit((255, 200, 80), 10)))
        d.rectangle([0, hy, size, size], fill=tuple(int(v) for v in jit((40, 30, 40), 10)))
    elif cls == "sea":
        sea = jit((20, 80, 160))
        d.rectangle([0, hy, size, size], fill=tuple(int(v) for v in sea))
        for y in range(hy + 3, size, max(3, int(size * 0.06))):
            x0 = r.uniform(-0.2, 0.8) * size
            d.arc([x0, y, x0 + r.uniform(0.15, 0.4) * size, y + 4],
                  180, 360, fill=tuple(int(v) for v in np.clip(sea + 60, 0, 255)))
    elif cls == "forest":
        d.rectangle([0, hy, size, size], fill=ground)
        for _ in range(int(r.integers(5, 10))):
            x, w = r.uniform(0, 1) * size, r.uniform(0.03, 0.07) * size
            top_y = r.uniform(0.1, 0.4) * size
            d.rectangle([x - w / 2, top_y, x + w / 2, size], fill=tuple(int(v) for v in jit((90, 60, 30), 15)))
            cr = r.uniform(0.08, 0.15) * size
            d.ellipse([x - cr, top_y - cr, x + cr, top_y + cr], fill=tuple(int(v) for v in jit((30, 110, 40), 20)))
    elif cls == "skyline":
        x = 0.0
        while x < size:
            w, h = r.uniform(0.08, 0.2) * size, r.uniform(0.25, 0.7) * size
            col = tuple(int(v) for v in jit((90, 90, 100), 30))
            d.rectangle([x, size - h, x + w, size], fill=col)
            for wy in np.arange(size - h + 3, size - 3, max(3.0, size * 0.06)):
                for wx in np.arange(x + 2, x + w - 2, max(3.0, size * 0.05)):
                    d.rectangle([wx, wy, wx + 1, wy + 1], fill=(240, 230, 150))
            x += w + r.uniform(0, 0.03) * size
    elif cls == "mountains":
        for _ in range(int(r.integers(2, 5))):
            px, ph, pw = r.uniform(0, 1) * size, r.uniform(0.2, 0.5) * size, r.uniform(0.25, 0.5) * size
            d.polygon([(px - pw, hy + 5), (px, hy - ph), (px + pw, hy + 5)], fill=tuple(int(v) for v in jit((110, 100, 110), 20)))
        d.rectangle([0, hy, size, size], fill=ground)
    elif cls == "night":
        for _ in range(int(r.integers(15, 40))):
            x, y = r.uniform(0, 1) * size, r.uniform(0, 0.7) * size
            d.point([x, y], fill=(255, 255, 230))
        mx, my, mr = r.uniform(0.2, 0.8) * size, r.uniform(0.1, 0.35) * size, r.uniform(0.05, 0.1) * size
        d.ellipse([mx - mr, my - mr, mx + mr, my + mr], fill=(240, 240, 210))
        d.rectangle([0, int(0.85 * size), size, size], fill=(10, 10, 15))
    elif cls == "road":
        d.rectangle([0, hy, size, size], fill=ground)
        vx = r.uniform(0.35, 0.65) * size
        d.polygon([(vx - 2, hy), (vx + 2, hy), (size * 0.9, size), (size * 0.1, size)], fill=tuple(int(v) for v in jit((70, 70, 75), 10)))
        for y in range(hy + 4, size, max(4, int(size * 0.1))):
            d.line([vx, y, vx, y + max(2, int(size * 0.04))], fill=(240, 240, 240), width=1)
    return img


def render_generic(r: np.random.Generator, cls: str, k: Knobs, size: int) -> np.ndarray:
    """One generic (non-face) image of class ``cls``: a shape on a textured ground, a texture or a scene.

    Colours, positions, sizes, periods and orientations are random; ``k.clutter`` adds thin random
    lines, ``k.illumination`` an exposure and colour cast, ``k.low_res`` a down- and up-sampling.
    Returns uint8 [size, size, 3].
    """
    if cls in GENERIC_SHAPES:
        ground = GENERIC_TEXTURES[int(r.integers(len(GENERIC_TEXTURES)))] if r.uniform() < 0.3 else "speckle"
        img = _texture(Image.new("RGB", (size, size)), r, ground, size)
        img = Image.blend(img, Image.new("RGB", (size, size), _colour(r)), 0.6)  # a faint ground
        _shape(img, r, cls, size)
    elif cls in GENERIC_TEXTURES:
        img = _texture(Image.new("RGB", (size, size)), r, cls, size)
    else:
        img = _scene(r, cls, size)
    d = ImageDraw.Draw(img)
    for _ in range(int(r.poisson(2 * k.clutter))):
        x0, y0, x1, y1 = r.uniform(0, 1, 4) * size
        d.line([x0, y0, x1, y1], fill=_colour(r), width=1)
    arr = np.asarray(img, np.float32)
    arr = arr * r.uniform(1 - 0.3 * k.illumination, 1 + 0.3 * k.illumination) + r.normal(0, 12 * k.illumination, 3)
    return _maybe_low_res(Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB"), r, k.low_res, (0.3, 0.6))


@dataclass(frozen=True)
class _GenericJob:
    seed: int
    split: str
    index: int
    cls: str
    knobs: Knobs
    size: int
    path: Path


def _produce_generic(job: _GenericJob) -> None:
    r = np.random.default_rng([job.seed, _DATASET_CODE["imagenet"], _SPLIT_CODE[job.split], job.index])
    _save(render_generic(r, job.cls, job.knobs, job.size), job.path)


def _write_imagenet(out: Path, seed: int, k: Knobs, n_train: int, n_test: int) -> None:
    """ImageNet's layout (``train/<class>/``, ``val/<class>/``), balanced over :data:`GENERIC_CLASSES`."""
    jobs = []
    for split, folder, n in (("train", "train", n_train), ("test", "val", n_test)):
        for i in range(n):
            cls = GENERIC_CLASSES[i % len(GENERIC_CLASSES)]
            jobs.append(_GenericJob(seed, split, i, cls, k, 64, out / folder / cls / f"{split}_{i:06d}.JPEG"))
    _run(_produce_generic, jobs)


def _tree_hash(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != SYNTHETIC_MARKER and not p.name.startswith(".decoded-"):
            h.update(p.relative_to(root).as_posix().encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


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


def write_synthetic(name: str, out: str | Path, *, scale: str = "tiny", seed: int = 0, **knobs) -> Path:
    """Write a synthetic stand-in for ``name`` into ``out`` in the official layout; return it."""
    if name not in _DATASET_CODE:
        raise UserError(f"no synthetic generator for {name!r}; known: {', '.join(_DATASET_CODE)}")
    if scale not in SCALES:
        raise UserError(f"unknown scale {scale!r}; known: {', '.join(SCALES)}")
    k = make_knobs(name, **knobs)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    n_train, n_test = _sizes(name, scale, k)
    if name == "rafdb":
        _write_rafdb(out, seed, k, n_train, n_test)
    elif name == "affectnet":
        _write_affectnet(out, seed, k, n_train, n_test)
    elif name == "ferplus":
        _write_ferplus(out, seed, k, n_train, n_test)
    elif name == "expw":
        _write_expw(out, seed, k, n_train, n_test)
    elif name == "faceid":
        _write_faceid(out, seed, k, n_train, n_test)
    elif name == "imagenet":
        _write_imagenet(out, seed, k, n_train, n_test)
    else:
        _write_folders(out, seed, k, name, n_train, n_test)
    marker = {"generator": "ferbench.synth", "version": GENERATOR_VERSION, "dataset": name,
              "scale": scale, "seed": seed, "knobs": asdict(k), "sizes": {"train": n_train, "test": n_test},
              "fingerprint": _tree_hash(out)}
    (out / SYNTHETIC_MARKER).write_text(json.dumps(marker, indent=1, sort_keys=True) + "\n")
    return out


def synthetic_root(name: str, *, scale: str = "tiny", seed: int = 0,
                   cache_dir: str | Path | None = None, write_cache: bool = True, **knobs) -> Path:
    """Return the cached synthetic stand-in for ``name``, generating it on first use.

    The directory is ``<cache>/<name>-<scale>-seed<seed>-<hash of knobs>`` under
    ``cache_dir``, else ``$FERBENCH_CACHE/synthetic``, else ``~/.cache/ferbench/synthetic``.
    Generation goes to a temporary directory renamed into place, so concurrent callers
    never see a half-written stand-in; a failed generation leaves nothing behind. With
    ``write_cache=False`` (``reproduce --dry-run``) a stand-in that is not cached yet is
    generated into a scratch directory outside the cache, removed when the process exits.
    """
    k = make_knobs(name, **knobs)
    if cache_dir is None:
        env = os.environ.get(CACHE_ENV)
        cache_dir = Path(env) / "synthetic" if env else Path.home() / ".cache" / "ferbench" / "synthetic"
    params = json.dumps({"v": GENERATOR_VERSION, "dataset": name, "scale": scale, "seed": seed,
                         "knobs": asdict(k)}, sort_keys=True)
    key = hashlib.sha256(params.encode()).hexdigest()[:10]
    root = Path(cache_dir).expanduser() / f"{name}-{scale}-seed{seed}-{key}"
    if (root / SYNTHETIC_MARKER).is_file():
        return root
    if not write_cache:
        scratch = Path(tempfile.mkdtemp(prefix="ferbench-dry-run-"))
        atexit.register(shutil.rmtree, scratch, ignore_errors=True)
        return write_synthetic(name, scratch / root.name, scale=scale, seed=seed, **asdict(k))
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.parent / f".{root.name}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        write_synthetic(name, tmp, scale=scale, seed=seed, **asdict(k))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        os.rename(tmp, root)
    except OSError:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
        if not (root / SYNTHETIC_MARKER).is_file():
            raise
    return root
