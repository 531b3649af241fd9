"""Drawing one synthetic face: an identity, an expression in an 8-d geometry space, and the
nuisances the knobs turn on."""
from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from harness.data.synth.knobs import Knobs


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
