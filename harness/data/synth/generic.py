"""Drawing one generic (non-face) image: shapes, textures and scenes, the stand-in for ImageNet."""
from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from harness.data.synth.faces import _maybe_low_res
from harness.data.synth.knobs import Knobs


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
