"""Face alignment as a recorded protocol step: five points -> similarity -> warp, with a manifest.

:func:`align_dataset` writes an aligned copy of a dataset in the dataset's own layout (so the
loader reads it unchanged), plus two files in the copy's root:

* ``ALIGNMENT.json`` (:data:`~harness.data.base.ALIGNMENT_MARKER`): method, template, size,
  selection rule, detector and its version, counts per status, the names of every image that
  fell back. :func:`harness.data.load_dataset` hashes it into the dataset fingerprint and
  reports it in ``split_info["alignment"]``, so every result record carries it;
* ``alignment_manifest.jsonl``: one line per image: detector score, the five points (source
  pixels, x y), the 2x3 source->output transform, and the status.

Statuses: ``aligned`` (one face, or the dataset's own landmarks), ``several_faces`` (the
detector found more than one; ``chosen`` and ``rule`` say which was kept), ``no_face`` (the
detector found none) and ``fallback`` (no usable points otherwise, e.g. a missing landmark
file, or a degenerate fit). The last two fall back to a centre crop: the largest square
centred on the face box when the dataset ships one, else on the image. Nothing is dropped.

Methods:

* ``mtcnn``: facenet-pytorch's MTCNN (weights ship in its wheel) with face.evoLVe's stage
  thresholds (0.6, 0.7, 0.8) and minimum face size 20. Where the dataset ships a face box
  (AffectNet, ExpW) the search is limited to the box widened by :data:`BOX_MARGIN` per side.
  Rule ``confident`` (default; face.evoLVe keeps its first face, the most confident after
  NMS) or ``central`` (nearest to the centre of the search region).
* ``landmarks``: the points the dataset ships, no detector: RAF-DB's five manual points
  (``Annotation/manual/<stem>_manu_attri.txt``, in ``Image/original`` pixels), AffectNet's 68
  points reduced to five by :func:`five_from_68`.

The transform is a similarity to the face.evoLVe reference points for a square crop, scaled to
the requested size; the warp is bilinear with a black border (face.evoLVe: ``cv2.warpAffine``).
Fits (``fit``, :data:`FITS`):

* ``five`` (default, face.evoLVe's): the least-squares similarity over all five points, posed as
  face.evoLVe's ``warp_and_crop_face`` poses it -- ``matlab_cp2tform.get_similarity_transform_for_cv2``
  solves for the map from the reference points to the detected ones, residuals in source pixels,
  and inverts it. Fitting the other way (residuals in crop pixels, as FERbench did before
  ``ALIGN_VERSION`` 2) is a different estimate: it weighs the scale differently (on the astronaut
  photo 0.88 against face.evoLVe's 0.93). face.evoLVe also tries a reflected fit and keeps it when
  its residual is smaller; for an upright face it never is, and a mirror image is no alignment, so
  it is left out. The estimate is scikit-image's ``SimilarityTransform`` (Umeyama), which reaches
  the same least-squares optimum.
* ``eyes``: the similarity that puts both eye centres exactly on the template's (two points fix
  a similarity); nose and mouth are not used. Not in face.evoLVe; for faces whose mouth is far
  from the template's (a broad smile, an open mouth) the five-point fit trades the eyes against
  the mouth corners, by 2-2.5 px at 112 px on the astronaut photo.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

from harness.data.base import ALIGNMENT_MARKER, SYNTHETIC_MARKER, BadEntries, RootGuard
from harness.errors import UserError

ALIGN_VERSION = 2  # 2: the five-point fit is face.evoLVe's (reference -> source, inverted); ``fit``
MANIFEST = "alignment_manifest.jsonl"
METHODS = ("mtcnn", "landmarks")
RULES = ("confident", "central")
FITS = ("five", "eyes")
STATUSES = ("aligned", "several_faces", "no_face", "fallback")
BOX_MARGIN = 0.25  # MTCNN searches the shipped face box widened by this fraction per side
MTCNN_THRESHOLDS = (0.6, 0.7, 0.8)  # face.evoLVe's align/detector.py
MTCNN_MIN_FACE = 20

# face.evoLVe align_trans.py: REFERENCE_FACIAL_POINTS for a 96x112 crop, made square
# (default_square=True shifts x by 8) for a 112x112 crop; face_align.py scales by size / 112.
# Order: left eye, right eye, nose tip, left mouth corner, right mouth corner (image left/right).
TEMPLATES: dict[str, tuple[int, np.ndarray]] = {
    "evolve": (112, np.array([[38.29459953, 51.69630051], [73.53179932, 51.50139999],
                              [56.02519989, 71.73660278], [41.54930115, 92.3655014],
                              [70.72990036, 92.20410156]])),
}


def reference_points(size: int, template: str = "evolve") -> np.ndarray:
    """The template's five points for a ``size`` x ``size`` crop: float [5, 2] (x, y)."""
    if template not in TEMPLATES:
        raise UserError(f"unknown alignment template {template!r}; known: {', '.join(TEMPLATES)}")
    base, pts = TEMPLATES[template]
    return pts * (size / base)


def five_from_68(points: np.ndarray) -> np.ndarray:
    """68 iBUG/Multi-PIE points [68, 2] -> five [5, 2]: eye centres (means of the six eye points,
    36-41 and 42-47), nose tip (30), mouth corners (48, 54); zero-based indices."""
    p = np.asarray(points, dtype=np.float64).reshape(68, 2)
    return np.stack([p[36:42].mean(0), p[42:48].mean(0), p[30], p[48], p[54]])


def similarity(points: np.ndarray, reference: np.ndarray, fit: str = "five") -> np.ndarray | None:
    """The similarity mapping ``points`` [5, 2] onto ``reference`` [5, 2] by ``fit`` (see the
    module docstring): a 3x3 matrix (source pixels -> output pixels), or None when the fit fails
    or is degenerate."""
    from skimage.transform import SimilarityTransform

    if fit not in FITS:
        raise UserError(f"unknown alignment fit {fit!r}; known: {', '.join(FITS)}")
    points = np.asarray(points, dtype=np.float64)
    if points.shape != (5, 2) or not np.isfinite(points).all():
        return None
    if fit == "eyes":
        if np.hypot(*(points[1] - points[0])) < 1e-6:
            return None
        tform = SimilarityTransform.from_estimate(points[:2], reference[:2])
        matrix = tform.params if tform else None
    else:  # face.evoLVe: reference -> source in least squares, then inverted
        tform = SimilarityTransform.from_estimate(reference, points)
        matrix = np.linalg.inv(tform.params) if tform and tform.scale > 1e-6 else None
    if matrix is None or not np.isfinite(matrix).all() or abs(np.linalg.det(matrix[:2, :2])) < 1e-12:
        return None
    return matrix


def warp_face(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """Warp ``image`` uint8 [H, W, 3] by ``matrix`` (3x3, source -> output) into uint8 [size, size, 3]."""
    from skimage.transform import AffineTransform, warp

    out = warp(image, AffineTransform(matrix=matrix).inverse, output_shape=(size, size), order=1,
               mode="constant", cval=0.0, preserve_range=True)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def centre_crop_matrix(shape: tuple[int, ...], size: int,
                       box: tuple[float, float, float, float] | None = None) -> np.ndarray:
    """The fallback: the largest square centred on ``box`` (l, t, r, b), else on the image,
    scaled to ``size``; a 3x3 matrix so it is recorded and applied like any alignment."""
    h, w = shape[:2]
    left, top, right, bottom = box if box is not None else (0, 0, w, h)
    side = max(right - left, bottom - top) if box is not None else min(w, h)
    cx, cy = (left + right) / 2, (top + bottom) / 2
    s = size / max(side, 1)
    return np.array([[s, 0, size / 2 - s * cx], [0, s, size / 2 - s * cy], [0, 0, 1.0]])


@dataclass
class Face:
    """One detection: box (l, t, r, b), score, five points [5, 2] (x, y), all in image pixels."""

    box: np.ndarray
    score: float
    points: np.ndarray


class MTCNNDetector:
    """facenet-pytorch's MTCNN on the CPU with face.evoLVe's thresholds; ``detector(img)`` -> faces."""

    name = "facenet-pytorch MTCNN"

    def __init__(self) -> None:
        try:
            from facenet_pytorch import MTCNN
        except ImportError as err:
            raise UserError(f"the mtcnn method needs facenet-pytorch ({err}); run `make venv`, which "
                            "installs it without its outdated dependency pins") from None
        self._mtcnn = MTCNN(keep_all=True, device="cpu", thresholds=list(MTCNN_THRESHOLDS),
                            min_face_size=MTCNN_MIN_FACE, select_largest=False, post_process=False)

    def describe(self) -> dict[str, Any]:
        """What goes into the fingerprint: package, version and settings."""
        return {"name": self.name, "version": metadata.version("facenet-pytorch"),
                "thresholds": list(MTCNN_THRESHOLDS), "min_face_size": MTCNN_MIN_FACE}

    def __call__(self, image: np.ndarray) -> list[Face]:
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # small images: intra-op threads cost far more than they save
        try:
            with torch.no_grad():
                boxes, probs, points = self._mtcnn.detect(image, landmarks=True)
        finally:
            torch.set_num_threads(threads)
        if boxes is None:
            return []
        return [Face(np.asarray(b, dtype=np.float64), float(p), np.asarray(q, dtype=np.float64))
                for b, p, q in zip(boxes, probs, points)]


def choose(faces: list[Face], region: tuple[float, float, float, float], rule: str) -> int:
    """Index of the face to keep: the highest score (``confident``) or the box centre nearest
    the centre of ``region`` (``central``); ties go to the earlier face."""
    if rule == "confident":
        return int(np.argmax([f.score for f in faces]))
    cx, cy = (region[0] + region[2]) / 2, (region[1] + region[3]) / 2
    return int(np.argmin([np.hypot((f.box[0] + f.box[2]) / 2 - cx, (f.box[1] + f.box[3]) / 2 - cy)
                          for f in faces]))


def align_image(image: np.ndarray, size: int, template: str = "evolve", *,
                points: np.ndarray | None = None, detector: Callable[[np.ndarray], list[Face]] | None = None,
                box: tuple[float, float, float, float] | None = None,
                rule: str = "confident", reason: str = "", fit: str = "five") -> tuple[np.ndarray, dict[str, Any]]:
    """Align one image uint8 [H, W, 3] -> (uint8 [size, size, 3], manifest record).

    With ``points`` [5, 2] they are used as they are (the ``landmarks`` method); else
    ``detector`` is run, inside ``box`` widened by :data:`BOX_MARGIN` when given. No usable
    points -> the centre-crop fallback; ``reason`` says why when the caller already knows.
    ``fit`` is the similarity fit (:data:`FITS`).
    """
    h, w = image.shape[:2]
    record: dict[str, Any] = {"status": "aligned", "score": None, "points": None}
    if points is None and detector is not None:
        region = (0.0, 0.0, float(w), float(h))
        if box is not None:
            mx, my = BOX_MARGIN * (box[2] - box[0]), BOX_MARGIN * (box[3] - box[1])
            region = (max(0.0, box[0] - mx), max(0.0, box[1] - my), min(float(w), box[2] + mx),
                      min(float(h), box[3] + my))
        x0, y0 = int(region[0]), int(region[1])
        crop = image[y0:int(np.ceil(region[3])), x0:int(np.ceil(region[2]))]
        faces = detector(np.ascontiguousarray(crop)) if min(crop.shape[:2]) >= 12 else []
        for f in faces:  # back to full-image pixels
            f.box = f.box + [x0, y0, x0, y0]
            f.points = f.points + [x0, y0]
        record["n_faces"] = len(faces)
        if not faces:
            record["status"] = "no_face"
        else:
            k = choose(faces, region, rule)
            points, record["score"] = faces[k].points, round(faces[k].score, 6)
            if len(faces) > 1:
                record.update(status="several_faces", chosen=k, rule=rule,
                              scores=[round(f.score, 6) for f in faces])
    elif points is None:
        record.update(status="fallback", reason=reason or "no landmarks")
    matrix = similarity(points, reference_points(size, template), fit) if points is not None else None
    if points is not None:
        record["points"] = np.round(points, 2).tolist()
        if matrix is None:
            record.update(status="fallback", reason="degenerate similarity fit")
    if matrix is None:
        matrix = centre_crop_matrix(image.shape, size, box)
    record["transform"] = np.round(matrix[:2], 6).tolist()
    return warp_face(image, matrix, size), record


# ---------------------------------------------------------------------------------------------
# Dataset glue: which images to align, where the copies go, how the annotation files change.


@dataclass
class _Job:
    name: str  # the loader's entry name; the manifest key
    source: Path | np.ndarray
    out: str  # output path relative to the copy's root ("" for pixels stored in a CSV)
    box: tuple[float, float, float, float] | None = None
    points: np.ndarray | None = None
    reason: str = ""  # why ``points`` is missing, for the landmarks method
    extra: dict[str, Any] = field(default_factory=dict)
    where: str = ""  # the annotation file and line (or image) it comes from, for messages


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _read_points(path: Path, n: int) -> np.ndarray:
    """The first ``n`` lines ``x y`` of a landmark file -> float [n, 2]."""
    rows = path.read_text().split("\n")[:n]
    return np.array([[float(v) for v in r.split()[:2]] for r in rows], dtype=np.float64)


def _entries(name: str, root: Path, bad: BadEntries):
    """Every entry the loader would read under any of its protocols, once each, in file order."""
    from harness.data import _loader

    module, seen, out = _loader(name), set(), []
    raws = [module.read(root, p, bad) for p in module.PROTOCOLS]
    for raw in raws:
        for split in sorted(raw.official):
            for e in raw.official[split]:
                if e.where not in seen:
                    seen.add(e.where)
                    out.append(e)
    return out, raws[0].annotation_files


def _jobs_rafdb(root: Path, method: str, bad: BadEntries) -> tuple[list[_Job], list[Path]]:
    """RAF-DB: detect in ``Image/original/<name>`` when it is there (the landmarks method needs
    it: the manual points are in its pixels), else in the official 100x100 aligned image."""
    entries, ann = _entries("rafdb", root, bad)
    guard = RootGuard(root)
    jobs = []
    for e in entries:
        stem = e.name.rsplit(".", 1)[0]
        original = guard.image(root / "Image" / "original", e.name, e.where, bad)
        if original is None:
            continue
        job = _Job(e.name, original if original.is_file() else e.source, _rel(e.source, root), where=e.where)
        if method == "landmarks":
            lm = guard.image(root / "Annotation" / "manual", f"{stem}_manu_attri.txt", e.where, bad)
            if lm is None:
                continue
            if not original.is_file():
                raise UserError(f"{original}: the landmarks method needs RAF-DB's original images "
                                "(the manual points in Annotation/manual are in their pixels)")
            try:
                job.points = _read_points(lm, 5)
            except (OSError, ValueError, IndexError) as err:
                job.reason = f"{lm}: no five 'x y' lines ({err.__class__.__name__})"
        jobs.append(job)
    return jobs, ann


def _jobs_folders(name: str):
    def jobs(root: Path, method: str, bad: BadEntries) -> tuple[list[_Job], list[Path]]:
        entries, ann = _entries(name, root, bad)
        return [_Job(e.name, e.source, _rel(e.source, root), where=e.where) for e in entries], ann
    return jobs


def _jobs_affectnet(root: Path, method: str, bad: BadEntries) -> tuple[list[_Job], list[Path]]:
    """AffectNet: one image per row, its face box; the landmarks method reduces the CSV's 68."""
    entries, ann = _entries("affectnet", root, bad)
    marks: dict[str, str] = {}
    for path in ann:
        with open(path, newline="", encoding="utf-8") as f:
            for row in list(csv.reader(f))[1:]:
                if len(row) > 5:
                    marks[row[0].strip()] = row[5]
    jobs = []
    for e in entries:
        job = _Job(e.name, e.source, _rel(e.source, root), box=e.box, where=e.where)
        if method == "landmarks":
            try:
                job.points = five_from_68(np.array([float(v) for v in marks[e.name].split(";")]))
            except (KeyError, ValueError):
                job.reason = f"{e.where}: facial_landmarks is not 136 numbers 'x;y;...'"
        jobs.append(job)
    return jobs, ann


def _jobs_expw(root: Path, method: str, bad: BadEntries) -> tuple[list[_Job], list[Path]]:
    """ExpW: one job per face line; each face gets its own file ``<stem>_<face_id><suffix>``."""
    entries, ann = _entries("expw", root, bad)
    jobs = []
    for e in entries:
        image, face_id = e.name.rsplit("#", 1)
        stem, dot, suffix = image.rpartition(".")
        out_name = f"{stem}_{face_id}.{suffix}" if dot else f"{image}_{face_id}"
        jobs.append(_Job(e.name, e.source, f"image/origin/{out_name}", box=e.box,
                         extra={"out_name": out_name}, where=e.where))
    return jobs, ann


def _jobs_ferplus(root: Path, method: str, bad: BadEntries) -> tuple[list[_Job], list[Path]]:
    """FERPlus: every row of fer2013.csv (48x48 grey pixels), kept rows and dropped ones alike."""
    _, ann = _entries("ferplus", root, bad)
    jobs = []
    with open(ann[0], newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        next(reader)
        for i, row in enumerate(reader):
            try:
                pixels = np.array(row[1].split(), dtype=np.uint8).reshape(48, 48)
            except (IndexError, ValueError):  # a bad row (kept under --skip-bad): copied as it is
                continue
            jobs.append(_Job(f"row{i + 1}", np.repeat(pixels[:, :, None], 3, 2), ""))
    return jobs, ann


JOBS = {"rafdb": _jobs_rafdb, "affectnet": _jobs_affectnet, "expw": _jobs_expw,
        "ferplus": _jobs_ferplus, "sfew": _jobs_folders("sfew"), "folder": _jobs_folders("folder")}
LANDMARK_DATASETS = ("rafdb", "affectnet")


def _load(source: Path | np.ndarray) -> np.ndarray:
    if isinstance(source, np.ndarray):
        return source
    with Image.open(source) as img:
        return np.asarray(img.convert("RGB"))


def _save(image: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in (".jpg", ".jpeg"):
        Image.fromarray(image).save(path, quality=95)
    else:
        Image.fromarray(image).save(path)


def _write_annotations(name: str, root: Path, out: Path, ann: list[Path], jobs: list[_Job],
                       records: dict[str, dict], images: dict[str, np.ndarray], size: int) -> None:
    """Copy the annotation files; where they hold a face box or pixels, point them at the copy."""
    for path in ann:
        (out / _rel(path, root)).parent.mkdir(parents=True, exist_ok=True)
    if name == "affectnet":
        for path in ann:
            with open(path, newline="", encoding="utf-8") as f:
                rows = list(csv.reader(f))
            for row in rows[1:]:
                rec = records.get(row[0].strip()) if len(row) > 5 else None
                if rec is None:
                    continue
                row[1:5] = ["0", "0", str(size), str(size)]  # the copy is the face
                try:
                    pts = np.array([float(v) for v in row[5].split(";")]).reshape(-1, 2)
                    m = np.array(rec["transform"])
                    row[5] = ";".join(f"{v:.2f}" for v in (pts @ m[:, :2].T + m[:, 2]).ravel())
                except ValueError:
                    pass
            buf = io.StringIO()
            csv.writer(buf, lineterminator="\n").writerows(rows)
            (out / _rel(path, root)).write_text(buf.getvalue(), encoding="utf-8")
    elif name == "expw":
        by_name = {j.name: j for j in jobs}
        lines = []
        for line in ann[0].read_text(encoding="utf-8").splitlines():
            parts = line.split()
            job = by_name.get(f"{parts[0]}#{parts[1]}") if len(parts) == 8 else None
            if job is not None:  # top left right bottom: the whole copy
                parts = [job.extra["out_name"], parts[1], "0", "0", str(size), str(size), *parts[6:]]
            lines.append(" ".join(parts))
        (out / _rel(ann[0], root)).write_text("\n".join(lines) + "\n", encoding="utf-8")
    elif name == "ferplus":
        with open(ann[0], newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
        for i, row in enumerate(rows[1:]):
            if f"row{i + 1}" in images:
                grey = np.asarray(Image.fromarray(images[f"row{i + 1}"]).convert("L"))
                row[1] = " ".join(map(str, grey.ravel().tolist()))
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows(rows)
        (out / _rel(ann[0], root)).write_text(buf.getvalue(), encoding="utf-8")
        shutil.copyfile(ann[1], out / _rel(ann[1], root))
    else:
        for path in ann:
            shutil.copyfile(path, out / _rel(path, root))


def align_dataset(name: str, root: str | Path, out: str | Path, *, method: str = "mtcnn", size: int = 112,
                  template: str = "evolve", rule: str = "confident", fit: str = "five", skip_bad: bool = False,
                  progress: bool = True) -> dict[str, Any]:
    """Write an aligned copy of dataset ``name`` from ``root`` into ``out``; return its summary.

    The copy has the dataset's own layout (the loader reads it unchanged), ``ALIGNMENT.json``
    and ``alignment_manifest.jsonl``. A synthetic stand-in stays marked synthetic.
    """
    from tqdm import tqdm

    from harness.data import resolve_root

    if name not in JOBS:
        raise UserError(f"no aligner for dataset {name!r}; known: {', '.join(JOBS)}")
    if method not in METHODS:
        raise UserError(f"unknown alignment method {method!r}; known: {', '.join(METHODS)}")
    if method == "landmarks" and name not in LANDMARK_DATASETS:
        raise UserError(f"{name} ships no facial landmarks; the landmarks method supports "
                        f"{', '.join(LANDMARK_DATASETS)} (use --method mtcnn)")
    if rule not in RULES:
        raise UserError(f"unknown face selection rule {rule!r}; known: {', '.join(RULES)}")
    if fit not in FITS:
        raise UserError(f"unknown alignment fit {fit!r}; known: {', '.join(FITS)}")
    if name == "ferplus" and size != 48:
        raise UserError(f"FERPlus stores 48x48 pixels in fer2013.csv, so its copy must be --size 48 "
                        f"(got {size})")
    if size < 16:
        raise UserError(f"alignment size must be at least 16, got {size}")
    reference_points(size, template)  # validates the template name
    root, out = resolve_root(name, root), Path(out)
    if out.resolve() == root.resolve():
        raise UserError(f"{out}: the aligned copy must not overwrite the dataset it is made from")
    if out.exists() and any(out.iterdir()):
        raise UserError(f"{out} exists and is not empty; choose a new --out folder")

    bad = BadEntries(skip_bad, name, root)
    jobs, ann = JOBS[name](root, method, bad)
    inside_out, kept = RootGuard(out), []  # every image is written under --out, or not at all
    for job in jobs:
        if job.out and not inside_out.inside(out / job.out):
            bad.report(f"{job.where or job.name}: the aligned copy of {job.name} would be written to "
                       f"{job.out!r}, which leads outside --out {out}")
        else:
            kept.append(job)
    jobs = kept
    detector = MTCNNDetector() if method == "mtcnn" else None
    out.mkdir(parents=True, exist_ok=True)
    records: dict[str, dict] = {}
    images: dict[str, np.ndarray] = {}
    counts = dict.fromkeys(STATUSES, 0)
    with open(out / MANIFEST, "w", encoding="utf-8") as manifest:
        for job in tqdm(jobs, desc=f"align {name} ({method}, {size}px)", unit="img",
                        disable=None if progress else True):  # None: a bar on a terminal only
            try:
                image = _load(job.source)
            except OSError as err:  # the loader reports the same image the same way
                bad.report(f"{job.name}: cannot read image {job.source}: {err}")
                continue
            aligned, rec = align_image(image, size, template, points=job.points, detector=detector,
                                       box=job.box, rule=rule, reason=job.reason, fit=fit)
            source = job.source if isinstance(job.source, np.ndarray) else _rel(job.source, root)
            rec = {"name": job.name, "source": source if isinstance(source, str) else "csv pixels",
                   "out": job.out, **rec}
            counts[rec["status"]] += 1
            records[job.name] = rec
            if job.out:
                _save(aligned, out / job.out)
            else:
                images[job.name] = aligned
            manifest.write(json.dumps(rec, sort_keys=True) + "\n")
    _write_annotations(name, root, out, ann, jobs, records, images, size)
    if (root / SYNTHETIC_MARKER).is_file():
        shutil.copyfile(root / SYNTHETIC_MARKER, out / SYNTHETIC_MARKER)
    summary = {
        "version": ALIGN_VERSION, "dataset": name, "method": method, "template": template, "size": size, "fit": fit,
        "rule": rule if method == "mtcnn" else None,
        "detector": detector.describe() if detector else None,
        "landmarks": {"rafdb": "Annotation/manual (5 manual points)",
                      "affectnet": "facial_landmarks (68 points -> 5)"}[name] if method == "landmarks" else None,
        "warp": ("scikit-image SimilarityTransform, " + {"five": "five points, least squares reference -> source, "
                 "inverted (face.evoLVe)", "eyes": "the two eye centres exactly"}[fit]
                 + "; warp bilinear, black border"),
        "counts": counts, "images": sum(counts.values()),
        "fallbacks": sorted(r["name"] for r in records.values() if r["status"] in ("no_face", "fallback")),
        "skipped": list(bad.skipped),
        "manifest_sha256": hashlib.sha256((out / MANIFEST).read_bytes()).hexdigest(),
        "source_root": str(root),
    }
    (out / ALIGNMENT_MARKER).write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
    return summary


def describe_alignment(summary: dict[str, Any] | None) -> str:
    """One line for a report: ``split_info["alignment"]`` of a loaded dataset, or "as shipped"."""
    if not summary:
        return "as shipped"
    counts = summary.get("counts") or {}
    fell = counts.get("no_face", 0) + counts.get("fallback", 0)
    fit = f", {summary['fit']} fit" if summary.get("fit") else ""
    return (f"{summary.get('method')}, {summary.get('template')} template{fit}, {summary.get('size')}px; "
            f"{fell} of {sum(counts.values())} centre-cropped")


# ---------------------------------------------------------------------------------------------
# Alignment as an ablation axis: the ``data.align`` / ``data.align_size`` overrides of a spec.

ALIGN_KNOBS = ("align", "align_size")


def _align_knobs(align: str | None, align_size: int | None, where: str) -> tuple[str | None, int]:
    if align not in (None, *METHODS):
        raise UserError(f"{where}: data.align must be one of {', '.join(METHODS)}, got {align!r}")
    if align_size is not None and (align is None or not isinstance(align_size, int) or align_size < 16):
        raise UserError(f"{where}: data.align_size needs data.align and an integer >= 16, got {align_size!r}")
    return align, align_size or 112


def aligned_root(name: str, root: Path, *, align: str | None = None, align_size: int | None = None,
                 cache_dir: str | Path | None = None) -> Path:
    """The aligned copy of a synthetic stand-in at ``root``, made once and cached beside it
    (or under ``cache_dir``); ``root`` itself when ``align`` is None."""
    import os

    method, size = _align_knobs(align, align_size, f"synthetic {name}")
    if method is None:
        return root
    base = Path(cache_dir).expanduser() if cache_dir else root.parent
    out = base / f"{root.name}-align{ALIGN_VERSION}-{method}-{size}"
    if (out / ALIGNMENT_MARKER).is_file():
        return out
    tmp = base / f".{out.name}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    align_dataset(name, root, tmp, method=method, size=size)
    try:
        os.rename(tmp, out)
    except OSError:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
        if not (out / ALIGNMENT_MARKER).is_file():
            raise
    return out


def check_alignment(root: Path, *, align: str | None = None, align_size: int | None = None) -> None:
    """Raise a UserError unless the dataset at ``root`` was aligned as ``data.align`` says."""
    from harness.data.base import read_alignment

    method, size = _align_knobs(align, align_size, str(root))
    if method is None:
        return
    got = read_alignment(root)
    if got is None or got.get("method") != method or got.get("size") != size:
        have = "not aligned by FERbench" if got is None else f"aligned with {got.get('method')} at {got.get('size')}px"
        raise UserError(f"{root}: the spec asks for data.align={method} at {size}px but this folder is "
                        f"{have}; write it with `python -m harness data align <dataset> --root <the "
                        f"dataset as shipped> --out {root} --method {method} --size {size}`")
