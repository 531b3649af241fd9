"""Batched image pipelines: uint8 [B, 3, S, S] + torch.Generator -> float32 [B, 3, s, s].

"apvit" is the APViT / TransFER training augmentation (RAF-DB config): random rotation
(p 0.5, +-6 deg), RandomResizedCrop (scale 0.8-1, ratio 1), horizontal flip 0.5, random
grayscale 0.2, colour jitter (0.4, 0.4, 0.4, 0.1) with p 0.8, normalise, random erasing
(p 0.5, scale 0.02-0.33, ratio 0.3-3.3, ``value='random'``: as torchvision's RandomErasing that
the official config names, every erased pixel and channel is drawn from N(0, 1), after
normalisation). At eval time every pipeline is resize + normalise. "none" is resize + normalise
in training too.

Normalisation is ``(x / 255 - mean) / std`` with the recipe's ``mean``/``std``
(:class:`methods.interface.Recipe`); the default is ImageNet's (timm's constants, which are the
official APViT config's ``img_norm_cfg`` -- mean 123.675, 116.28, 103.53 and std 58.395, 57.12,
57.375 on 0..255 -- divided by 255; TransFER's Paddle config uses the same). face.evoLVe's IR-50
pre-training uses 0.5 / 0.5 (:data:`HALF_MEAN`, :data:`HALF_STD`).

All per-sample parameters are drawn from the passed generator, so a batch is a pure function
of (images, generator state). Each pipeline but "apvit_tv" and "transfer_paddle" is a
:class:`Pipeline` in two halves: ``draw(batch, g)`` takes every random number of a batch from the
host generator, in the pipeline's fixed order, and composes them into small host tensors (one
affine matrix per sample, colour factors, erasing boxes and their noise); ``apply(images, params)``
does the per-pixel work on the images' device. The trainer draws batch k+1's parameters while
batch k trains and moves them in one non-blocking copy from pinned memory
(:func:`params_to`), so a GPU step waits on no host transfer; calling the pipeline does both
halves at once. The generator is a host (CPU) one and ``images`` may be on any
device: every random number is drawn on the host, in the same order wherever the images are, the
small parameter tensors (affine matrices, colour maps, erasing noise) are moved to the images'
device, and the per-pixel work (warp, colour matmul, normalisation, erasing, resize) runs there.
On the CPU the output is what it was before the pipelines became device-agnostic, bit for bit. Two shortcuts keep "apvit" fast on CPU, where a tiny run's
data path must not dominate:

* rotation, crop, resize and flip are composed into one affine warp per sample and applied
  in a single bilinear ``grid_sample`` pass (zero fill outside the image, as torchvision's
  rotate) instead of three resamplings;
* grayscale and colour jitter are composed into one 3x3 colour matrix plus offset per sample
  (brightness, contrast and saturation are linear; the four ops keep torchvision's random
  per-sample order) and applied with one batched matmul, clamped once at the end; hue is a
  rotation of the chroma plane in YIQ space rather than a shift of HSV hue.

"apvit_tv" is the same pipeline with torchvision's colour semantics (clamping after every
op, HSV hue), about 3x slower; the two differ only in pixel values, not in what is random.

Why hand-written rather than kornia.augmentation (kornia's version of this pipeline is in
``tests/benchmarks/kornia_apvit.py``, timed against this one by ``make bench``,
``tests/benchmarks/test_augment.py``). Speed: on the 2-core VM's CPU, one thread, batch 128,
this pipeline takes 96 ms at 112 px and 504 ms at 224 px, kornia's 414 ms and 2,364 ms (median,
pytest-benchmark; not measured on a GPU). Semantics: kornia's RandomErasing fills a constant in
[0, 1] where the official config fills N(0, 1) noise after normalising, and picks its box
differently (a coin flip between ratios below and above 1, the box clamped to the image, not up
to ten tries); its ColorJitter draws one op order per batch, not per sample; rotation and crop
are two resamplings. And it draws from torch's global generator: seeding that from our
per-(seed, epoch) generator inside ``torch.random.fork_rng`` makes it reproducible (the
benchmark does so), but ties every batch to kornia's internal draw order, which may change with
its version, so a resumed run would stop being bit-exact after an upgrade. What stays
hand-written is therefore the whole pipeline: the parameter draws, their composition into one
affine warp and one colour map per sample, and the erasing; the per-pixel primitives are
torch's (``affine_grid``/``grid_sample``, ``baddbmm``, ``interpolate``).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

Transform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]

Stats = tuple[float, ...]

# The default: ImageNet's, as the official APViT (mmcls ``img_norm_cfg``) and TransFER configs.
MEAN: Stats = IMAGENET_DEFAULT_MEAN
STD: Stats = IMAGENET_DEFAULT_STD
# face.evoLVe's IR-50 convention, (x - 0.5) / 0.5 (its MS-Celeb-1M training).
HALF_MEAN: Stats = (0.5, 0.5, 0.5)
HALF_STD: Stats = (0.5, 0.5, 0.5)
_GREY = (0.299, 0.587, 0.114)


def build_transform(name: str, img_size: int, *, train: bool, mean: Stats = MEAN, std: Stats = STD) -> Transform:
    """Return the pipeline ``name`` at ``img_size`` for train or eval, normalising with
    ``mean``/``std`` (the recipe's). A :class:`Pipeline` except "apvit_tv" and "transfer_paddle"
    in training, which draw as they go (plain callables)."""
    if name not in PIPELINES:
        from harness.errors import UserError
        raise UserError(f"unknown augmentation {name!r}; known: {', '.join(PIPELINES)}")
    mean, std = tuple(mean), tuple(std)
    if not train or name == "none":
        return Pipeline(_no_draws, lambda x, _: resize_normalize(x, img_size, mean=mean, std=std))
    if name in _DRAWING:
        return lambda x, g: _DRAWING[name](x, g, img_size, mean=mean, std=std)
    return _PIPELINES[name](img_size, mean=mean, std=std)


Params = dict[str, Any]
_PACKED = (torch.float32, torch.int64, torch.bool)  # exact through float32 (indices are small)


@dataclass(frozen=True)
class Pipeline:
    """A batch pipeline in two halves: ``draw(batch, g) -> params`` (host tensors and plain
    erase boxes, every random number taken from ``g``) and ``apply(images, params)`` (per-pixel
    work where ``images`` are, ``params`` already there). ``pipeline(images, g)`` runs both."""

    draw: Callable[[int, torch.Generator], Params]
    apply: Callable[[torch.Tensor, Params], torch.Tensor]

    def __call__(self, images: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        return self.apply(images, params_to(self.draw(images.shape[0], g), images.device))


def _no_draws(batch: int, g: torch.Generator) -> Params:
    return {}


def pack_params(params: Params) -> tuple[torch.Tensor, list[tuple[str, torch.Size, torch.dtype]]]:
    """The tensors of ``params`` in one flat float32 host tensor, and the layout to unpack it.
    Exact: draws are float32, and int64 indices and bools are small whole numbers."""
    tensors = {k: v for k, v in params.items() if isinstance(v, torch.Tensor)}
    bad = [k for k, v in tensors.items() if v.dtype not in _PACKED]
    if bad:
        raise TypeError(f"pack_params: {bad} are not float32, int64 or bool")
    layout = [(k, v.shape, v.dtype) for k, v in tensors.items()]
    flat = torch.cat([v.reshape(-1).to(torch.float32) for v in tensors.values()]) if tensors else torch.empty(0)
    return flat, layout


def unpack_params(flat: torch.Tensor, layout: list[tuple[str, torch.Size, torch.dtype]]) -> Params:
    """Inverse of :func:`pack_params`: views of ``flat`` (wherever it is) in their shapes and dtypes."""
    out, start = {}, 0
    for k, shape, dtype in layout:
        n = math.prod(shape)
        out[k] = flat[start:start + n].view(shape).to(dtype)
        start += n
    return out


def params_to(params: Params, device: torch.device) -> Params:
    """``params`` with its tensors on ``device``, moved in one non-blocking copy from pinned memory
    (:func:`pack_params`); unchanged on the CPU."""
    if device.type == "cpu" or not any(isinstance(v, torch.Tensor) for v in params.values()):
        return params
    flat, layout = pack_params(params)
    if device.type == "cuda":
        flat = flat.pin_memory()
    return {**params, **unpack_params(flat.to(device, non_blocking=True), layout)}


@functools.lru_cache(maxsize=64)
def const(values: tuple, device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A constant tensor made once per device: a host-to-device copy in every batch would make the
    step wait (do not modify the result in place)."""
    return torch.tensor(values, dtype=dtype, device=device)


def normalize(x: torch.Tensor, mean: Stats = MEAN, std: Stats = STD) -> torch.Tensor:
    """x: float [B, 3, H, W] in [0, 1] -> (x - mean) / std per channel."""
    m = const(tuple(mean), x.device, x.dtype).view(1, 3, 1, 1)
    s = const(tuple(std), x.device, x.dtype).view(1, 3, 1, 1)
    return (x - m) / s


def _normalize_(x: torch.Tensor, scale: float = 1.0, mean: Stats = MEAN, std: Stats = STD) -> torch.Tensor:
    """In place: x * scale in [0, 1] -> normalised."""
    m = const(tuple(mean), x.device, x.dtype).view(1, 3, 1, 1)
    s = const(tuple(std), x.device, x.dtype).view(1, 3, 1, 1)
    return x.mul_(scale / s).sub_(m / s)


def resize_normalize(images: torch.Tensor, img_size: int, mean: Stats = MEAN, std: Stats = STD) -> torch.Tensor:
    """images: uint8 [B, 3, S, S] -> float [B, 3, img_size, img_size], bilinear + normalise."""
    x = images.float()
    if x.shape[-1] != img_size or x.shape[-2] != img_size:
        x = F.interpolate(x, size=(img_size, img_size), mode="bilinear", align_corners=False,
                          antialias=True).clamp_(0.0, 255.0)
    return _normalize_(x, 1 / 255.0, mean, std)


def _u(g: torch.Generator, n: int, lo: float, hi: float) -> torch.Tensor:
    return torch.rand(n, generator=g) * (hi - lo) + lo


def affine_draws(g: torch.Generator, b: int, *, rot_p: float = 0.5, degrees: float = 6.0,
                 scale: tuple[float, float] = (0.8, 1.0), flip_p: float = 0.5) -> torch.Tensor:
    """Rotate -> RandomResizedCrop (ratio 1) -> h-flip drawn and composed into one affine map per
    sample, host float32 [B, 2, 3] (``F.affine_grid``'s theta)."""
    angle = torch.where(torch.rand(b, generator=g) < rot_p,
                        _u(g, b, -degrees, degrees), torch.zeros(b)) * (math.pi / 180)  # [B]
    half = _u(g, b, scale[0], scale[1]).sqrt()  # [B] crop half-size in normalised units
    centre = (torch.rand(b, 2, generator=g) * 2 - 1) * (1 - half).unsqueeze(1)  # [B, 2]
    flip = torch.where(torch.rand(b, generator=g) < flip_p, -1.0, 1.0)  # [B]
    cos, sin = torch.cos(angle), torch.sin(angle)
    rot = torch.stack([torch.stack([cos, sin], -1), torch.stack([-sin, cos], -1)], -2)  # [B,2,2]
    scale_m = torch.diag_embed(torch.stack([half * flip, half], -1))  # [B, 2, 2]
    return torch.cat([rot @ scale_m, (rot @ centre.unsqueeze(-1))], -1)  # [B, 2, 3]


def warp(images: torch.Tensor, theta: torch.Tensor, img_size: int, *, unit: bool = True) -> torch.Tensor:
    """One bilinear warp (zero fill outside, as torchvision's rotate): images uint8 [B, 3, S, S],
    theta [B, 2, 3] on their device -> float [B, 3, img_size, img_size] in [0, 1] (0..255 when
    ``unit`` is False)."""
    grid = F.affine_grid(theta, [images.shape[0], 3, img_size, img_size], align_corners=False)
    x = images.float()
    return F.grid_sample(x.div_(255.0) if unit else x, grid, mode="bilinear",
                         padding_mode="zeros", align_corners=False)


def geometric(images: torch.Tensor, g: torch.Generator, img_size: int, *, unit: bool = True,
              **draws: Any) -> torch.Tensor:
    """:func:`affine_draws` then :func:`warp` in one call; ``draws`` are affine_draws' keywords."""
    return warp(images, affine_draws(g, images.shape[0], **draws).to(images.device), img_size, unit=unit)


def grey(x: torch.Tensor) -> torch.Tensor:
    """x: float [B, 3, H, W] -> luma [B, 1, H, W] (ITU-R 601, as torchvision)."""
    w = const(_GREY, x.device, x.dtype).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


def rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    """x: float [N, 3, H, W] in [0, 1] -> hsv [N, 3, H, W], hue in [0, 1)."""
    r, g, b = x.unbind(1)
    maxc, _ = x.max(1)
    minc, _ = x.min(1)
    eq = maxc == minc
    cr = maxc - minc
    ones = torch.ones_like(maxc)
    s = cr / torch.where(eq, ones, maxc)
    div = torch.where(eq, ones, cr)
    rc, gc, bc = (maxc - r) / div, (maxc - g) / div, (maxc - b) / div
    hr = (maxc == r) * (bc - gc)
    hg = ((maxc == g) & (maxc != r)) * (2.0 + rc - bc)
    hb = ((maxc != g) & (maxc != r)) * (4.0 + gc - rc)
    h = torch.remainder((hr + hg + hb) / 6.0 + 1.0, 1.0)
    return torch.stack([h, s, maxc], 1)


def hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """x: hsv [N, 3, H, W] -> rgb [N, 3, H, W]."""
    h, s, v = x.unbind(1)
    h6 = h * 6.0
    i = torch.floor(h6)
    f = h6 - i
    i = i.long().remainder(6).unsqueeze(1)  # [N, 1, H, W]
    p = (v * (1.0 - s)).clamp(0.0, 1.0)
    q = (v * (1.0 - s * f)).clamp(0.0, 1.0)
    t = (v * (1.0 - s * (1.0 - f))).clamp(0.0, 1.0)
    table = {  # sector -> (r, g, b)
        "r": torch.stack([v, q, p, p, t, v], 1), "g": torch.stack([t, v, v, q, p, p], 1),
        "b": torch.stack([p, p, t, v, v, q], 1)}
    return torch.cat([table[c].gather(1, i) for c in "rgb"], 1)


def _adjust(x: torch.Tensor, op: int, f: torch.Tensor) -> torch.Tensor:
    """One colour-jitter op on x [n, 3, H, W] with per-sample factors f [n]."""
    fv = f.view(-1, 1, 1, 1)
    if op == 0:  # brightness
        return (x * fv).clamp_(0.0, 1.0)
    if op == 1:  # contrast: blend with the mean grey level
        m = grey(x).mean((1, 2, 3), keepdim=True)
        return (fv * x + (1 - fv) * m).clamp_(0.0, 1.0)
    if op == 2:  # saturation: blend with the grey image
        return (fv * x + (1 - fv) * grey(x)).clamp_(0.0, 1.0)
    hsv = rgb_to_hsv(x)  # hue
    hsv[:, 0] = torch.remainder(hsv[:, 0] + f.view(-1, 1, 1), 1.0)  # f on x's device
    return hsv_to_rgb(hsv)


def colour_jitter(x: torch.Tensor, g: torch.Generator, *, p: float = 0.8,
                  strength: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1)) -> torch.Tensor:
    """torchvision ColorJitter applied with probability p per sample; x float [B, 3, H, W]."""
    b = x.shape[0]
    apply = torch.rand(b, generator=g) < p  # [B]
    br, co, sa, hu = strength
    factors = torch.stack([_u(g, b, 1 - br, 1 + br), _u(g, b, 1 - co, 1 + co),
                           _u(g, b, 1 - sa, 1 + sa), _u(g, b, -hu, hu)], 1)  # [B, 4]
    order = torch.argsort(torch.rand(b, 4, generator=g), 1)  # [B, 4] random op order
    x = x.clone()
    for step in range(4):
        for op in range(4):
            idx = torch.nonzero(apply & (order[:, step] == op)).flatten()  # on the host
            if idx.numel():
                on = idx.to(x.device)
                x[on] = _adjust(x[on], op, factors[idx, op].to(x.device))
    return x


def random_grayscale(x: torch.Tensor, g: torch.Generator, p: float = 0.2) -> torch.Tensor:
    """Replace each sample by its luma (3 channels) with probability p."""
    m = (torch.rand(x.shape[0], generator=g) < p).view(-1, 1, 1, 1).to(x.device)
    return torch.where(m, grey(x).expand_as(x), x)


_YIQ = ((0.299, 0.587, 0.114), (0.596, -0.274, -0.322), (0.211, -0.523, 0.312))
_YIQ_INV = tuple(map(tuple, torch.linalg.inv(torch.tensor(_YIQ)).tolist()))


def colour_draws(g: torch.Generator, b: int, *, grey_p: float = 0.2, p: float = 0.8,
                 strength: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1)) -> Params:
    """Random grayscale + colour jitter draws, host: ``use_grey`` bool [B], ``factors`` [B, 4]
    (brightness, contrast, saturation, hue; identity where jitter is off) and ``order`` int64
    [B, 4] (torchvision's random per-sample op order). The same numbers, in the same order, as
    :func:`random_grayscale` followed by :func:`colour_jitter`."""
    use_grey = torch.rand(b, generator=g) < grey_p  # [B]
    apply = torch.rand(b, generator=g) < p  # [B]
    br, co, sa, hu = strength
    f = torch.stack([_u(g, b, 1 - br, 1 + br), _u(g, b, 1 - co, 1 + co),
                     _u(g, b, 1 - sa, 1 + sa), _u(g, b, -hu, hu)], 1)  # [B, 4]
    order = torch.argsort(torch.rand(b, 4, generator=g), 1)  # [B, 4]
    f = torch.where(apply.unsqueeze(1), f, torch.tensor([1.0, 1.0, 1.0, 0.0]))  # identity if off
    return {"use_grey": use_grey, "factors": f, "order": order}


def compose_colour(means: torch.Tensor, use_grey: torch.Tensor, factors: torch.Tensor,
                   order: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`colour_draws` as per-sample affine colour maps on ``means``' device.

    means: [B, 3] per-sample channel means of the input (for contrast). Returns (M [B, 3, 3],
    o [B, 3]) with output pixel = M @ pixel + o, before clamping.
    """
    b, dev, f = means.shape[0], means.device, factors
    eye = torch.eye(3, device=dev).expand(b, 3, 3)
    grey_m = const(_GREY, dev).view(1, 1, 3).expand(b, 3, 3)  # every row = luma weights
    m = torch.where(use_grey.view(-1, 1, 1), grey_m, eye)  # [B, 3, 3]
    o = torch.zeros(b, 3, device=dev)
    luma = const(_GREY, dev)
    ang = f[:, 3] * 2 * math.pi
    cos, sin = torch.cos(ang), torch.sin(ang)
    rot = torch.zeros(b, 3, 3, device=dev)
    rot[:, 0, 0] = 1
    rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = cos, -sin, sin, cos
    ops = [
        f[:, 0].view(-1, 1, 1) * eye,  # brightness
        None,  # contrast: depends on the current mean, built per step
        f[:, 2].view(-1, 1, 1) * eye + (1 - f[:, 2]).view(-1, 1, 1) * grey_m,  # saturation
        const(_YIQ_INV, dev) @ rot @ const(_YIQ, dev),  # hue
    ]
    rows, no_off = torch.arange(b, device=dev), torch.zeros(b, 3, device=dev)
    for step in range(4):
        op = order[:, step]
        mean_grey = ((m @ means.unsqueeze(-1)).squeeze(-1) + o) @ luma  # [B]
        c = f[:, 1]
        ops[1] = c.view(-1, 1, 1) * eye
        c_off = ((1 - c) * mean_grey).unsqueeze(1).expand(b, 3)  # [B, 3]
        t = torch.stack(ops, 1)[rows, op]  # [B, 3, 3]
        off = torch.where((op == 1).unsqueeze(1), c_off, no_off)
        m, o = t @ m, (t @ o.unsqueeze(-1)).squeeze(-1) + off
    return m, o


def colour_matrices(means: torch.Tensor, g: torch.Generator, **draws: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`colour_draws` then :func:`compose_colour` in one call (``draws``: its keywords)."""
    p = params_to(colour_draws(g, means.shape[0], **draws), means.device)
    return compose_colour(means, p["use_grey"], p["factors"], p["order"])


def erase_boxes(shape: torch.Size, g: torch.Generator, *, p: float = 0.5,
                scale: tuple[float, float] = (0.02, 0.33), ratio: tuple[float, float] = (0.3, 3.3),
                attempts: int = 10) -> list[tuple[int, int, int, int, int]]:
    """torchvision RandomErasing boxes, vectorised: up to ``attempts`` per sample, first fit.

    Returns (sample, top, left, height, width) for every sample that gets erased.
    """
    b, _, hgt, wid = shape
    apply = torch.rand(b, generator=g) < p  # [B]
    area = hgt * wid * _u(g, b * attempts, *scale).view(b, attempts)
    aspect = torch.exp(_u(g, b * attempts, math.log(ratio[0]), math.log(ratio[1]))).view(b, attempts)
    eh = torch.round(torch.sqrt(area * aspect))
    ew = torch.round(torch.sqrt(area / aspect))
    ok = (eh < hgt) & (ew < wid)  # [B, A]
    first = torch.argmax(ok.int(), 1)  # [B] first fitting attempt
    rows = torch.arange(b)
    eh, ew = eh[rows, first], ew[rows, first]
    apply &= ok.any(1)
    top = torch.floor(torch.rand(b, generator=g) * (hgt - eh + 1))
    left = torch.floor(torch.rand(b, generator=g) * (wid - ew + 1))
    return [(i, int(top[i]), int(left[i]), int(eh[i]), int(ew[i]))
            for i in torch.nonzero(apply).flatten().tolist()]


def erase_draws(shape: torch.Size | tuple[int, ...], g: torch.Generator, *, value: float | str = "random",
                **box: Any) -> Params:
    """Random-erasing draws, host: ``boxes`` (:func:`erase_boxes`, ``box`` its keywords) and, for
    ``value="random"``, ``noise``: float32, every erased pixel and channel from N(0, 1), one draw
    per box in sample order ([C, h, w] each, as torchvision), concatenated flat."""
    if isinstance(value, str) and value != "random":
        raise ValueError(f"random_erasing: value {value!r} is not allowed; allowed values: a number or 'random'")
    boxes = erase_boxes(shape, g, **box)
    out: Params = {"boxes": boxes}
    if value == "random" and boxes:
        c = shape[1]
        out["noise"] = torch.cat([torch.randn(c, h, w, generator=g).flatten() for _, _, _, h, w in boxes])
    return out


def erase(x: torch.Tensor, boxes: list[tuple[int, int, int, int, int]], noise: torch.Tensor | None = None,
          value: float | str = "random") -> torch.Tensor:
    """Fill ``boxes`` of x float [B, C, H, W] in place, with ``noise`` (on x's device) or ``value``.

    A box is one slice copy (at most B small copies: a loop costs less than masking the whole
    batch, on the CPU and on a GPU alike); its bounds are host integers, so nothing waits.
    """
    c, start = x.shape[1], 0
    for i, top, left, h, w in boxes:
        if value == "random":
            x[i, :, top:top + h, left:left + w] = noise[start:start + c * h * w].view(c, h, w)
            start += c * h * w
        else:
            x[i, :, top:top + h, left:left + w] = value
    return x


def random_erasing(x: torch.Tensor, g: torch.Generator, *, value: float | str = "random", **box: Any) -> torch.Tensor:
    """Erase one random box per sample (p 0.5, area 0.02-0.33, aspect 0.3-3.3 unless ``box`` says
    otherwise), in place; x float [B, C, H, W].

    ``value="random"`` fills every erased pixel and channel with N(0, 1) drawn from ``g``
    (torchvision's ``RandomErasing(value='random')``, the official APViT config); a number fills
    with that constant.
    """
    p = params_to(erase_draws(x.shape, g, value=value, **box), x.device)
    return erase(x, p["boxes"], p.get("noise"), value)


def augment(img_size: int, *, mean: Stats, std: Stats, warp_kw: dict[str, Any] | None = None,
            colour_kw: dict[str, Any] | None = None, erase_kw: dict[str, Any] | None = None) -> Pipeline:
    """A training :class:`Pipeline`: one affine warp (:func:`affine_draws` with ``warp_kw``), then
    grayscale + colour jitter as one colour map when ``colour_kw`` is given (:func:`colour_draws`),
    normalisation, and random erasing when ``erase_kw`` is given (:func:`erase_draws`). Draws
    happen in that order."""
    warp_kw = warp_kw or {}

    def draw(b: int, g: torch.Generator) -> Params:
        params: Params = {"theta": affine_draws(g, b, **warp_kw)}
        if colour_kw is not None:
            params.update(colour_draws(g, b, **colour_kw))
        if erase_kw is not None:
            params.update(erase_draws((b, 3, img_size, img_size), g, **erase_kw))
        return params

    def apply(images: torch.Tensor, params: Params) -> torch.Tensor:
        if colour_kw is None:
            x = _normalize_(warp(images, params["theta"], img_size), 1.0, mean, std)
        else:
            x = warp(images, params["theta"], img_size, unit=False)  # [B, 3, s, s] in 0..255
            b = x.shape[0]
            m, o = compose_colour(x.mean((2, 3)) / 255.0, params["use_grey"], params["factors"], params["order"])
            x = torch.baddbmm(o.unsqueeze(-1), m / 255.0, x.view(b, 3, -1)).view_as(x)  # [B, 3, s, s]
            x = _normalize_(x.clamp_(0.0, 1.0), 1.0, mean, std)
        if erase_kw is not None:
            x = erase(x, params["boxes"], params.get("noise"), erase_kw.get("value", "random"))
        return x

    return Pipeline(draw, apply)


def apvit_train(img_size: int, *, mean: Stats = MEAN, std: Stats = STD,
                erase_value: float | str = "random") -> Pipeline:
    """The APViT/TransFER training pipeline (see the module docstring); uint8 [B, 3, S, S] ->
    float [B, 3, s, s]."""
    return augment(img_size, mean=mean, std=std, colour_kw={}, erase_kw={"value": erase_value})


def apvit_train_tv(images: torch.Tensor, g: torch.Generator, img_size: int, *, mean: Stats = MEAN,
                   std: Stats = STD, erase_value: float | str = "random") -> torch.Tensor:
    """As :func:`apvit_train` with torchvision's colour semantics (per-op clamps, HSV hue)."""
    x = geometric(images, g, img_size)
    x = random_grayscale(x, g)
    x = colour_jitter(x, g)
    return random_erasing(normalize(x, mean, std), g, value=erase_value)



# MAE-ViT (methods/mae.py): its fine-tuning and pre-training pipelines.

def mae_train(img_size: int, *, mean: Stats = MEAN, std: Stats = STD) -> Pipeline:
    """MAE-ViT fine-tuning: random affine, h-flip, colour jitter, random erasing.

    The paper names the four operations and no parameters; ours: rotation +-10 deg and a
    scale/translation crop (0.8-1 of the area) with flip p 0.5, as one warp; colour jitter (0.4,
    0.4, 0.4, 0.1) on every sample, no grayscale; normalise; random erasing p 0.25 with N(0, 1)
    pixels (MAE's fine-tuning ``reprob`` and mode).
    """
    return augment(img_size, mean=mean, std=std, warp_kw={"rot_p": 1.0, "degrees": 10.0},
                   colour_kw={"grey_p": 0.0, "p": 1.0}, erase_kw={"p": 0.25})


def mae_pretrain_train(img_size: int, *, mean: Stats = MEAN, std: Stats = STD) -> Pipeline:
    """MAE pre-training: RandomResizedCrop (area 0.2-1; aspect ratio 1, MAE's is 3/4-4/3) + h-flip."""
    return augment(img_size, mean=mean, std=std, warp_kw={"rot_p": 0.0, "scale": (0.2, 1.0)})


def flip_train(img_size: int, *, mean: Stats = MEAN, std: Stats = STD) -> Pipeline:
    """Horizontal flip (p 0.5) only: the mildest of the papers' operations, for tiny recipes whose
    48-pixel ViTs stay at the majority class under the full pipelines."""
    return augment(img_size, mean=mean, std=std, warp_kw={"rot_p": 0.0, "scale": (1.0, 1.0)})


def scale_flip_train(img_size: int, *, mean: Stats = MEAN, std: Stats = STD) -> Pipeline:
    """PF-ViT's paper: "random scaling and flipping". No parameters are given; ours: a square crop of
    80-100% of the area resized back (the scaling), horizontal flip p 0.5, as one warp."""
    return augment(img_size, mean=mean, std=std, warp_kw={"rot_p": 0.0, "scale": (0.8, 1.0)})


# TransFER (methods/transfer.py): the paper's operations, and the PaddlePaddle port's config.

def transfer_train(img_size: int, *, mean: Stats = MEAN, std: Stats = STD) -> Pipeline:
    """TransFER's paper: "random rotate and crop, random horizontal flip, and random erasing", no
    colour operation. The paper gives no parameters; ours are the "apvit" pipeline's (rotation p 0.5,
    +-6 deg; crop 0.8-1 of the area; flip p 0.5; erasing p 0.5 with N(0, 1) pixels)."""
    return augment(img_size, mean=mean, std=std, erase_kw={})


def transfer_paddle_train(images: torch.Tensor, g: torch.Generator, img_size: int, *, mean: Stats = MEAN,
                          std: Stats = STD) -> torch.Tensor:
    """The PaddlePaddle port's TransFER config (``ppcls/configs/RAF/TransFER.yaml``): RandCropImage,
    horizontal flip, RandAugment (2 ops, magnitude 5), normalise, RandomErasing (p 0.5, area
    0.02-0.4, aspect 0.3-3.3, filled with 0 after normalising). Two departures, said here: the crop
    is square (Paddle's random aspect 3/4-4/3 is not drawn) over 8-100% of the area, and RandAugment
    is torchvision's (``transforms.v2.RandAugment``), run per sample under torch's global generator
    seeded from ``g`` (so a batch stays a function of ``g``, but of torchvision's draw order too).
    uint8 [B, 3, S, S] -> float [B, 3, s, s]."""
    from torchvision.transforms import v2

    x = geometric(images, g, img_size, rot_p=0.0, scale=(0.08, 1.0))  # [B, 3, s, s] in [0, 1]
    u8 = x.mul_(255.0).round_().clamp_(0, 255).to(torch.uint8)
    augment = v2.RandAugment(num_ops=2, magnitude=5)
    seeds = torch.randint(0, 2**62, (u8.shape[0],), generator=g).tolist()
    with torch.random.fork_rng(devices=[]):
        for i, seed in enumerate(seeds):
            torch.manual_seed(seed)
            u8[i] = augment(u8[i])
    x = _normalize_(u8.float(), 1 / 255.0, mean, std)
    return random_erasing(x, g, p=0.5, scale=(0.02, 0.4), ratio=(0.3, 1 / 0.3), value=0.0)


_PIPELINES = {"apvit": apvit_train, "mae": mae_train, "mae_pretrain": mae_pretrain_train, "flip": flip_train,
              "transfer": transfer_train, "scale_flip": scale_flip_train}
_DRAWING = {"apvit_tv": apvit_train_tv, "transfer_paddle": transfer_paddle_train}
PIPELINES = ("apvit", "apvit_tv", "none", "mae", "mae_pretrain", "flip", "transfer", "transfer_paddle", "scale_flip")
