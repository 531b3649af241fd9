"""Pictures of what the trained models keep and attend to, for the report's table pages.

A stage of its own between the store and the report: it rebuilds stored cells' models from their
records and kept weights (``cells/<id>/model.pt``), runs them on a fixed sample of test images and
writes PNG figures into a folder the report only reads (:func:`harness.report.build.build_report`
copies them into the table pages). The report never builds a model (``tests/test_house.py``).

For every table and dataset column, one cell per row (the lowest seed that ran, ``ok``), and the
same ``SAMPLE`` test images for every row: drawn with a generator seeded by ``SAMPLE_SEED`` from
the first row's test split. What a figure shows is read from what the model exposes, never from
its name:

* ``tokens``: a model with the interface's ``kept_patches`` hook (APViT): the patches APP keeps
  and the tokens each ATP block keeps, as the model itself reports them.
* ``cam``: GradCAM++ (the ``grad-cam`` package, ``pytorch_grad_cam.GradCAMPlusPlus``) for the
  predicted class, on the last transformer block's first norm of a ViT whose tokens form the full
  patch grid (``reshape_transform`` drops the prefix tokens); a token-pruning model's grid is the
  patch embedding's output (its tokens after pruning are no grid).
* ``faces``: a model with the interface's ``generate`` hook (PF-ViT): the reconstruction and the
  poker (neutral) face its generator makes from the test image's tokens.

Real-data pictures are for a local report only: ``synthetic_only`` (what ``publish`` passes) makes
none of them, and publishing drops any figure whose cells are not all synthetic.
"""
from __future__ import annotations

import math
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import pandas as pd

from harness.errors import UserError

if TYPE_CHECKING:
    import torch

SAMPLE = 6  # test images per figure
SAMPLE_SEED = 0
KINDS = ("tokens", "cam", "faces")


@dataclass
class Pictured:
    """One row's model on the sample: inputs normalised [n, 3, S, S] and the row's test settings."""

    row: str
    cell_id: str
    model: Any  # torch.nn.Module in eval mode, on the CPU
    x: torch.Tensor  # [n, 3, S, S], the eval transform's output
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: list[str]  # the record's order: what the head's outputs mean


# --- choosing cells and images ----------------------------------------------------------------------


def picture_cells(frame: pd.DataFrame, table_id: str, *, synthetic_only: bool = False
                  ) -> dict[str, list[tuple[str, str]]]:
    """Per dataset column of ``table_id``: ``(row, cell_id)`` in row order, the lowest seed with an
    ``ok`` result per row (stale results are out of every statistic, and out of the pictures)."""
    if frame.empty or "cell_id" not in frame:
        return {}
    t = frame[(frame["table_id"] == table_id) & (frame["status"] == "ok") & frame["cell_id"].notna()]
    if "kind" in t:
        t = t[t["kind"].ne("eval")]  # a cross-dataset evaluation pictures nothing its trained cell does not
    if synthetic_only:
        t = t[t["synthetic"].eq(True)]
    out: dict[str, list[tuple[str, str]]] = {}
    for dataset, d in t.groupby("dataset", sort=False):
        firsts = d.sort_values("seed", kind="stable").drop_duplicates("row")
        order = {r: i for i, r in enumerate(dict.fromkeys(d["row"]))}
        out[str(dataset)] = [(str(r.row), str(r.cell_id))
                             for r in sorted(firsts.itertuples(), key=lambda r: order[r.row])]
    return out


def sample_indices(n: int, k: int = SAMPLE, seed: int = SAMPLE_SEED) -> np.ndarray:
    """``min(k, n)`` distinct indices of ``range(n)``, drawn by a generator seeded with ``seed``, ascending."""
    return np.sort(np.random.default_rng(seed).choice(n, size=min(k, n), replace=False))


# --- rebuilding a cell's model ------------------------------------------------------------------------


def load_cell(store: Any, cell_id: str) -> tuple[Any, dict[str, Any]]:
    """The model of stored cell ``cell_id`` holding its selected weights (eval mode, CPU), and its
    record (:func:`harness.run.cellmodel.load_cell_model`)."""
    from harness.run.cellmodel import load_cell_model

    loaded = load_cell_model(store, cell_id)
    return loaded.model, loaded.record


def sample_images(rec: dict[str, Any], k: int = SAMPLE, seed: int = SAMPLE_SEED
                ) -> tuple[torch.Tensor, list[str]]:
    """The fixed sample of the cell's test split: uint8 images [n, 3, S, S] (S: the recipe's
    ``img_size``) and their class names."""
    from harness.data import load_dataset
    from harness.run.cells import Cell

    cell = Cell.from_dict(rec["cell"])
    data = load_dataset(cell.dataset, cell.data_root, protocol=cell.protocol, decode_size=rec["recipe"]["img_size"],
                        split_seed=0, skip_bad=cell.data.get("skip_bad", False))
    test = data.splits["test"]
    idx = sample_indices(len(test), k, seed)
    return test.images[idx], [data.class_names[int(test.labels[i])] for i in idx]


def prepare(model: Any, rec: dict[str, Any], images: torch.Tensor) -> torch.Tensor:
    """``images`` uint8 [n, 3, S, S] through the cell's evaluation transform -> float [n, 3, s, s]."""
    from harness.data import build_transform
    from methods.interface import set_progress

    r = rec["recipe"]
    set_progress(model, 1.0)  # the runner tests at the end of any keep schedule
    transform = build_transform(r["augment"], r["img_size"], train=False, mean=r["mean"], std=r["std"])
    return transform(images, None)


def to_pixels(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """Normalised images [n, 3, H, W] -> float RGB [n, H, W, 3] in [0, 1] (for drawing)."""
    m = np.asarray(mean, dtype=np.float32).reshape(1, 3, 1, 1)
    s = np.asarray(std, dtype=np.float32).reshape(1, 3, 1, 1)
    return np.clip(x.detach().float().cpu().numpy() * s + m, 0.0, 1.0).transpose(0, 2, 3, 1)


# --- what a model keeps and attends to -------------------------------------------------------------


def prunes_tokens(model: Any) -> bool:
    """Whether ``model`` reports which patches it keeps (the interface's ``kept_patches`` hook)."""
    return callable(getattr(model, "kept_patches", None))


def token_keeps(model: Any, x: torch.Tensor) -> list[tuple[str, np.ndarray]]:
    """Which patches survive each pruning step of one forward pass of ``x`` [B, 3, H, W]:
    ``[(stage, kept [B, grid] bool), ...]`` from the model's own ``kept_patches``."""
    from methods.interface import kept_patches

    return [(stage, kept.cpu().numpy()) for stage, kept in kept_patches(model, x) or []]


def cam_target(model: Any) -> tuple[Any, Callable | None] | None:
    """The layer GradCAM++ reads and the ``reshape_transform`` that puts its tokens on the patch
    grid, or None for a model with neither a ViT nor a patch embedding."""
    import torch.nn as nn

    vit = getattr(model, "encoder", model)
    if prunes_tokens(model):
        proj = getattr(getattr(model, "patch_embed", None), "proj", None)
        return (proj, None) if isinstance(proj, nn.Conv2d) else None
    blocks = getattr(vit, "blocks", None)
    pe = getattr(vit, "patch_embed", None)
    grid = getattr(pe, "grid_size", None)
    if blocks is None or not len(blocks) or not hasattr(blocks[-1], "norm1") or grid is None:
        return None
    h, w = int(grid[0]), int(grid[1])

    def reshape(t):  # [B, P + h*w, D] -> [B, D, h, w]
        if t.shape[1] < h * w:
            raise ValueError(f"{t.shape[1]} tokens do not cover the {h}x{w} patch grid (masked at test time)")
        return t[:, t.shape[1] - h * w:].reshape(t.shape[0], h, w, t.shape[2]).permute(0, 3, 1, 2)

    return blocks[-1].norm1, reshape


def gradcam_maps(model: Any, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray] | None:
    """GradCAM++ maps [B, H, W] in [0, 1] for each image's predicted class, and the predictions
    [B]; None when :func:`cam_target` finds no layer."""
    import torch
    from pytorch_grad_cam import GradCAMPlusPlus

    target = cam_target(model)
    if target is None:
        return None
    with torch.no_grad():
        pred = model(x).argmax(1).numpy()
    with GradCAMPlusPlus(model=model, target_layers=[target[0]], reshape_transform=target[1]) as cam:
        maps = cam(input_tensor=x, targets=None)  # targets None: the predicted class
    return np.asarray(maps, dtype=np.float32), pred


def generated_faces(model: Any, x: torch.Tensor) -> dict[str, torch.Tensor] | None:
    """The images the model's generator makes of ``x`` [B, 3, H, W] (the interface's ``generate``
    hook: PF-ViT's ``reconstructed`` and ``poker`` faces), or None for a model without one."""
    from methods.interface import generated_images

    return generated_images(model, x)


# --- figures ---------------------------------------------------------------------------------------


def _grid(lines: list[str], pixels: np.ndarray, classes: list[str], title: str):
    """A figure of one line per label in ``lines`` after a first line of the input images, titled by class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines, n = ["input", *lines], len(pixels)
    fig, axes = plt.subplots(len(lines), n, figsize=(1.25 * n + 1.6, 1.3 * len(lines) + 0.7), squeeze=False)
    for j in range(n):
        axes[0, j].imshow(pixels[j])
        axes[0, j].set_title(classes[j], fontsize=7)
    for ax, label in zip(axes[:, 0], lines):
        ax.set_ylabel("\n".join(textwrap.wrap(label, 22)), fontsize=7, rotation=0, ha="right", va="center")
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
    fig.suptitle(title, fontsize=9)
    return fig, axes


def tokens_figure(pixels: np.ndarray, classes: list[str], rows: list[tuple[str, list[tuple[str, np.ndarray]]]]):
    """Input line, then one line per (row, stage): kept patches as they are, dropped ones greyed.
    ``pixels`` [n, H, W, 3] in [0, 1]; a stage's mask [n, grid] bool."""
    n = len(pixels)
    lines = [f"{row}: {stage}" for row, stages in rows for stage, _ in stages]
    fig, axes = _grid(lines, pixels, classes, "Patches kept by APP and tokens kept after each ATP block")
    line = 1
    for row, stages in rows:
        for stage, keep in stages:
            side = int(math.isqrt(keep.shape[1]))
            for j in range(n):
                up = np.kron(keep[j].reshape(side, side), np.ones((pixels.shape[1] // side, pixels.shape[2] // side)))
                img = pixels[j] * up[..., None] + (0.15 + 0.25 * pixels[j].mean(-1, keepdims=True)) * (1 - up[..., None])
                axes[line, j].imshow(np.clip(img, 0, 1))
                axes[line, j].set_title(f"{int(keep[j].sum())}/{keep.shape[1]}", fontsize=6)
            line += 1
    fig.tight_layout()
    return fig


def cam_figure(pixels: np.ndarray, classes: list[str], rows: list[tuple[str, np.ndarray, list[str]]]):
    """Input line, then one line per row: GradCAM++ map over the image, titled with the prediction."""
    n = len(pixels)
    fig, axes = _grid([r[0] for r in rows], pixels, classes, "GradCAM++ for the predicted class")
    for i, (_, maps, preds) in enumerate(rows, start=1):
        for j in range(n):
            axes[i, j].imshow(pixels[j])
            axes[i, j].imshow(maps[j], cmap="jet", alpha=0.45, vmin=0, vmax=1,
                              extent=(-0.5, pixels.shape[2] - 0.5, pixels.shape[1] - 0.5, -0.5))
            axes[i, j].set_title(f"→ {preds[j]}", fontsize=6)
    fig.tight_layout()
    return fig


def faces_figure(pixels: np.ndarray, classes: list[str], rows: list[tuple[str, dict[str, np.ndarray]]]):
    """Input line, then per row its generated images (reconstructed, poker face where there is one)."""
    n = len(pixels)
    lines = [f"{row}: {kind}" for row, made in rows for kind in made]
    fig, axes = _grid(lines, pixels, classes, "Generated faces: reconstruction and poker (neutral) face")
    line = 1
    for _, made in rows:
        for imgs in made.values():
            for j in range(n):
                axes[line, j].imshow(imgs[j])
            line += 1
    fig.tight_layout()
    return fig


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")  # a PNG carries no date: the same bytes on a re-run
    plt.close(fig)
    return path


# --- the stage -------------------------------------------------------------------------------------

CAPTIONS = {
    "tokens": "What each row keeps, on {n} test images drawn with seed {seed} (the same for every row; each row's "
              "lowest seed that ran): the patches APP keeps (first line of a row) and the patch tokens still "
              "present after each ATP block, from the model's own pruning scores; dropped patches are greyed, "
              "the title counts kept/all.",
    "cam": "GradCAM++ (the grad-cam package) of each row's model for its predicted class (arrow) on {n} test images "
           "drawn with seed {seed} (the same for every row; each row's lowest seed that ran), at {layer}.",
    "faces": "What each row's generator makes of {n} test images drawn with seed {seed} (the same for every row; "
             "each row's lowest seed that ran): the reconstruction, and the poker (neutral) face generated from "
             "the residue tokens alone where the row has a token separator.",
}


def table_pictures(store: Any, table_id: str, dataset: str, cells: list[tuple[str, str]], out_dir: Path,
                   *, synthetic: bool, k: int = SAMPLE, seed: int = SAMPLE_SEED) -> list[dict[str, Any]]:
    """The figures of one table column: ``cells`` are its ``(row, cell_id)``; PNGs written under
    ``out_dir/<table_id>/``. Returns one dict per figure (``table_id``, ``dataset``, ``kind``,
    ``name``, ``caption``, ``file``, ``cells``, ``synthetic``), and one with ``note`` (no ``file``)
    per row that could not be pictured."""
    made: list[dict[str, Any]] = []
    rows: list[Pictured] = []
    images = classes = None
    for row, cid in cells:
        try:
            model, rec = load_cell(store, cid)
            if images is None:
                images, classes = sample_images(rec, k, seed)
            r = rec["recipe"]
            rows.append(Pictured(row, cid, model, prepare(model, rec, images), tuple(r["mean"]), tuple(r["std"]),
                                 list(rec["class_names"])))
        except (UserError, OSError, ValueError, RuntimeError) as err:
            made.append({"table_id": table_id, "dataset": dataset, "note": f"row {row!r} (cell {cid}): {err}"})
    if not rows:
        return made
    pixels = to_pixels(rows[0].x, rows[0].mean, rows[0].std)

    def keep(kind: str, fig, used: list[Pictured], **fmt: Any) -> None:
        name = f"{kind}_{dataset}"
        made.append({"table_id": table_id, "dataset": dataset, "kind": kind, "name": name,
                     "caption": CAPTIONS[kind].format(n=len(pixels), seed=seed, **fmt),
                     "file": _save(fig, out_dir / table_id / f"{name}.png"),
                     "cells": [p.cell_id for p in used], "synthetic": synthetic})

    pruning = [p for p in rows if prunes_tokens(p.model)]
    if pruning:
        stages = [(p.row, token_keeps(p.model, p.x)) for p in pruning]
        if any(not m.all() for _, st in stages for _, m in st):  # nothing pruned anywhere: nothing to show
            keep("tokens", tokens_figure(pixels, classes, stages), pruning)
    cams, layers = [], set()
    for p in rows:
        try:
            got = gradcam_maps(p.model, p.x)
        except ValueError as err:
            made.append({"table_id": table_id, "dataset": dataset, "note": f"GradCAM++ of row {p.row!r}: {err}"})
            continue
        if got is not None:
            cams.append((p, (p.row, got[0], [p.class_names[int(c)] for c in got[1]])))
            layers.add("the patch embedding's output grid" if prunes_tokens(p.model)
                       else "the last transformer block's first LayerNorm (class token dropped)")
    if cams:
        keep("cam", cam_figure(pixels, classes, [c for _, c in cams]), [p for p, _ in cams],
             layer=" and ".join(sorted(layers)))
    faces = []
    for p in rows:
        got = generated_faces(p.model, p.x)
        if got is not None:
            faces.append((p, (p.row, {kind: to_pixels(v, p.mean, p.std) for kind, v in got.items()})))
    if faces:
        keep("faces", faces_figure(pixels, classes, [f for _, f in faces]), [p for p, _ in faces])
    return made


def make_pictures(results: Path, frame: pd.DataFrame, specs: list, out_dir: Path, *,
                  synthetic_only: bool = False, k: int = SAMPLE, seed: int = SAMPLE_SEED) -> list[dict[str, Any]]:
    """The pictures of every table of ``specs`` in ``frame`` (the collect contract), from the store
    at ``results``, written under ``out_dir``; see :func:`table_pictures` for what is returned.
    ``synthetic_only`` (publish) leaves out every cell trained or tested on real data."""
    import torch

    from harness.store import Store

    store = Store(results, create=False)
    made: list[dict[str, Any]] = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a handful of images: one thread, beside whatever else runs
    try:
        for spec in specs:
            for dataset, cells in picture_cells(frame, spec.id, synthetic_only=synthetic_only).items():
                t = frame[(frame["table_id"] == spec.id) & (frame["dataset"] == dataset)]
                synthetic = bool(t.loc[t["cell_id"].isin([c for _, c in cells]), "synthetic"].eq(True).all())
                made += table_pictures(store, spec.id, dataset, cells, Path(out_dir), synthetic=synthetic, k=k,
                                       seed=seed)
    finally:
        torch.set_num_threads(threads)
    for m in made:
        if "note" in m:
            print(f"pictures: {m['table_id']} ({m['dataset']}): {m['note']}", file=sys.stderr)
    return made
