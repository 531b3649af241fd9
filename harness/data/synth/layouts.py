"""Writing a stand-in in the official layout of each real dataset: how many images of which class
in which split, drawn in parallel, saved as the real files are."""
from __future__ import annotations

import csv
import hashlib
import os
import signal
from dataclasses import dataclass
from typing import Any, Callable
from pathlib import Path

import numpy as np
from PIL import Image

from harness.data.labels import (AFFECTNET_LABELS, CANONICAL_CLASSES, EXPW_LABELS,
                                 FER2013_LABELS, FERPLUS_LABELS, FERPLUS_VOTE_COLUMNS,
                                 RAFDB_LABELS, SFEW_FOLDERS)
from harness.data.synth.faces import _CONFUSE, _VALENCE, _background, _identity, render_face
from harness.data.synth.generic import GENERIC_CLASSES, render_generic
from harness.data.synth.knobs import FREQ, Knobs, SCALES


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
    # (harness.run.interrupts) inherited, each would print a "Cancelled" traceback. Ctrl-C is the
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
