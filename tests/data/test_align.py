"""Face alignment (``harness.data.align``, ``data align``) on a real photograph: scikit-image's
``astronaut`` (512x512, one face), shipped inside the scikit-image package."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from harness.cli import main
from harness.data import load_dataset
from harness.data.align import (MANIFEST, MTCNNDetector, align_dataset, align_image, check_alignment,
                                five_from_68, reference_points, similarity, warp_face)
from harness.data.base import ALIGNMENT_MARKER
from harness.errors import UserError
from tests.data.makers import make_affectnet, make_expw, make_ferplus, make_folders

SIZE = 112


@pytest.fixture(scope="module")
def detector() -> MTCNNDetector:
    return MTCNNDetector()


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return skdata.astronaut()  # uint8 [512, 512, 3]


def _mad(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean())


def _rotated(image: np.ndarray, degrees: float, scale: float) -> np.ndarray:
    pil = Image.fromarray(image)
    pil = pil.resize((round(pil.width * scale), round(pil.height * scale)), Image.BICUBIC)
    return np.asarray(pil.rotate(degrees, resample=Image.BICUBIC, expand=True))


def _no_face() -> np.ndarray:
    return np.tile(np.linspace(0, 255, 160, dtype=np.uint8)[None, :, None], (120, 1, 3))  # a grey ramp


def test_detector_finds_one_face(detector, astronaut):
    faces = detector(astronaut)
    assert len(faces) == 1 and faces[0].score > 0.99
    left_eye, right_eye = faces[0].points[:2]
    l, t, r, b = faces[0].box
    assert l < left_eye[0] < right_eye[0] < r and t < left_eye[1] < b  # eyes inside the box, left first


# Eye-centre error on the 112 px crop, in pixels (left, right), for each fit: the detected points
# mapped by the recorded transform. Measured: five 2.37 and 2.11 (nose 5.6, mouth corners 7.2 and
# 6.9: this broad smile puts the mouth corners 5 px higher and 4.5 px wider than the template's, and
# a similarity cannot place all five, so the least-squares fit trades the eyes against the mouth;
# the reverse fit FERbench used before, residuals in crop pixels, gave 2.63 and 2.25); eyes 0.00
# and 0.00 (nose 2.0, mouth corners 9.9 and 9.1). Only the eyes fit meets the 2 px.
EYE_ERROR = {"five": (2.0, 2.6), "eyes": (0.0, 0.05)}  # (lower, upper) bound on the worse eye


@pytest.mark.parametrize("fit", ["five", "eyes"])
def test_aligned_crop_puts_the_eyes_on_the_template(detector, astronaut, fit):
    crop, rec = align_image(astronaut, SIZE, detector=detector, fit=fit)
    assert crop.shape == (SIZE, SIZE, 3) and crop.dtype == np.uint8 and rec["status"] == "aligned"
    ref = reference_points(SIZE)
    m = np.array(rec["transform"])
    fitted = np.array(rec["points"]) @ m[:, :2].T + m[:, 2]
    worse = np.hypot(*(fitted[:2] - ref[:2]).T).max()
    lo, hi = EYE_ERROR[fit]
    assert lo <= worse <= hi
    assert np.abs(fitted[:2].mean(0)[0] - ref[:2].mean(0)[0]) < 0.1  # the eye midpoint, horizontally
    # Detect again in the crop: this checks the warp itself, not only the fitted matrix. MTCNN's own
    # landmarks move with the crop: after the eyes fit it finds the eyes 0.3 and 0.4 px from the
    # template's; after the five-point fit (the face 5% larger, filling the crop) 8.5 and 7.3 px,
    # 7 px low, which the transform does not explain, so only the tilt is checked there.
    faces = detector(crop)
    assert len(faces) == 1
    if fit == "eyes":
        assert np.hypot(*(faces[0].points[:2] - ref[:2]).T).max() < 1.0
    tilt = np.degrees(np.arctan2(*(faces[0].points[1] - faces[0].points[0])[::-1]))
    assert abs(tilt) < 1.5  # the eye line is level, like the template's (-0.3 degrees)


def test_five_point_fit_is_face_evolves(detector, astronaut):
    """face.evoLVe (matlab_cp2tform) solves the linear least squares for the map from the
    reference points to the detected ones, [u, v] = [[a, b], [-b, a]] [x, y] + [c, d], and inverts
    it; solved here directly, it is the ``five`` fit's inverse."""
    points, ref = detector(astronaut)[0].points, reference_points(SIZE)
    x, y = ref.T
    rows = np.concatenate([np.stack([x, y, np.ones(5), np.zeros(5)], 1), np.stack([y, -x, np.zeros(5), np.ones(5)], 1)])
    a, b, c, d = np.linalg.lstsq(rows, np.concatenate([points[:, 0], points[:, 1]]), rcond=None)[0]
    back = np.array([[a, b, c], [-b, a, d], [0, 0, 1]])  # reference -> source
    assert np.allclose(np.linalg.inv(similarity(points, ref, "five")), back, atol=1e-9)
    forward = similarity(points, ref, "eyes")
    assert np.allclose(np.vstack([points[:2].T, np.ones(2)]).T @ forward[:2].T, ref[:2], atol=1e-9)


def test_fit_is_exact_for_points_that_are_a_similarity_of_the_template():
    ref = reference_points(224)
    angle, scale, shift = np.radians(25), 2.7, np.array([130.0, 80.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    points = ref @ rot.T + shift
    m = similarity(points, ref)
    assert np.allclose(points @ m[:2, :2].T + m[:2, 2], ref, atol=1e-6)
    assert similarity(np.zeros((5, 2)), ref) is None  # degenerate: every point the same


def test_rotated_and_scaled_copy_aligns_to_nearly_the_same_crop(detector, astronaut):
    crop, _ = align_image(astronaut, SIZE, detector=detector)
    turned = _rotated(astronaut, 20, 0.8)
    again, rec = align_image(turned, SIZE, detector=detector)
    assert rec["status"] == "aligned"
    # Bound: a mean absolute difference under 16 grey levels (of 255), what shifting this crop by
    # two pixels gives (measured 12.9: landmark jitter and two resamplings); the same crop cut from
    # the turned photo with the original's transform differs by 88.
    shift2 = _mad(crop[:, 2:], crop[:, :-2])
    assert _mad(crop, again) < 16.0 and _mad(crop, again) < 1.2 * shift2
    m = np.vstack([np.array(align_image(astronaut, SIZE, detector=detector)[1]["transform"]), [0, 0, 1]])
    assert _mad(crop, warp_face(turned, m, SIZE)) > 4 * _mad(crop, again)


def test_no_face_falls_back_to_a_centre_crop(detector):
    image = _no_face()
    crop, rec = align_image(image, SIZE, detector=detector)
    assert rec["status"] == "no_face" and rec["n_faces"] == 0 and rec["points"] is None
    expected = np.asarray(Image.fromarray(image[:, 20:140]).resize((SIZE, SIZE), Image.BILINEAR))
    assert _mad(crop, expected) < 2.0  # the centred 120x120 square, scaled


def test_several_faces_keeps_one_by_the_stated_rule(detector, astronaut):
    small = np.asarray(Image.fromarray(astronaut).resize((256, 256), Image.BICUBIC))
    pair = np.concatenate([small, small[:, ::-1]], axis=1)  # two faces side by side
    _, rec = align_image(pair, SIZE, detector=detector, rule="confident")
    assert rec["status"] == "several_faces" and len(rec["scores"]) == 2
    assert rec["chosen"] == int(np.argmax(rec["scores"])) and rec["rule"] == "confident"


# -- data align on a RAF-DB-format fixture made of real-photo crops ------------------------------

def _rafdb_fixture(root: Path, photo: np.ndarray) -> tuple[Path, list[str]]:
    """RAF-DB basic: astronaut crops (turned and scaled) as the aligned images, plus one image
    with no face; labels alternate happy (4) and neutral (7)."""
    variants = [(0, 1.0), (12, 0.9), (-15, 0.8), (8, 0.7), (-8, 1.1), (20, 0.85)]
    # ten training images: the loader carves a non-empty validation split (10%) from them
    names = [f"train_{i:05d}.jpg" for i in range(1, 11)] + ["test_00001.jpg", "test_00002.jpg"]
    head = photo[20:300, 100:360]  # the head and shoulders
    images = [_rotated(head, *variants[i % len(variants)]) for i in range(11)] + [_no_face()]
    for name, img in zip(names, images):
        path = root / "Image" / "aligned" / name.replace(".jpg", "_aligned.jpg")
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(path, quality=95)
    (root / "EmoLabel").mkdir(parents=True, exist_ok=True)
    (root / "EmoLabel" / "list_patition_label.txt").write_text(
        "".join(f"{n} {4 if i % 2 else 7}\n" for i, n in enumerate(names)))
    return root, names


def test_data_align_writes_a_dataset_that_data_check_loads(tmp_path, astronaut, capsys):
    root, names = _rafdb_fixture(tmp_path / "raf", astronaut)
    out = tmp_path / "raf_mtcnn"
    assert main(["data", "align", "rafdb", "--root", str(root), "--out", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "11 aligned" in text and "1 no face" in text and "test_00002.jpg" in text

    manifest = [json.loads(line) for line in (out / MANIFEST).read_text().splitlines()]
    assert sorted(r["name"] for r in manifest) == sorted(names)
    by_name = {r["name"]: r for r in manifest}
    assert by_name["test_00002.jpg"]["status"] == "no_face"
    for r in manifest:
        assert r["status"] in ("aligned", "no_face") and len(r["transform"]) == 2
        if r["status"] == "aligned":
            assert r["score"] > 0.9 and np.array(r["points"]).shape == (5, 2)
    summary = json.loads((out / ALIGNMENT_MARKER).read_text())
    assert summary["counts"] == {"aligned": 11, "several_faces": 0, "no_face": 1, "fallback": 0}
    assert summary["fallbacks"] == ["test_00002.jpg"] and summary["detector"]["version"] == "2.6.0"

    assert main(["data", "check", "rafdb", "--root", str(out), "--json"]) == 0
    aligned = json.loads(capsys.readouterr().out)
    assert main(["data", "check", "rafdb", "--root", str(root), "--json"]) == 0
    shipped = json.loads(capsys.readouterr().out)
    assert aligned["splits"] == shipped["splits"] and aligned["class_counts"] == shipped["class_counts"]
    assert aligned["fingerprint"] != shipped["fingerprint"]
    assert shipped["split_info"]["alignment"] is None
    assert aligned["split_info"]["alignment"]["method"] == "mtcnn"
    assert aligned["split_info"]["alignment"]["counts"]["no_face"] == 1
    with Image.open(out / "Image" / "aligned" / "train_00001_aligned.jpg") as img:
        assert img.size == (SIZE, SIZE)

    # The same images aligned at another size are another dataset.
    out224 = tmp_path / "raf_mtcnn224"
    align_dataset("rafdb", root, out224, size=224, progress=False)
    assert load_dataset("rafdb", out224).fingerprint not in (aligned["fingerprint"], shipped["fingerprint"])
    with pytest.raises(UserError, match="not empty"):
        align_dataset("rafdb", root, out224, progress=False)


def test_landmarks_method_uses_rafdb_manual_points(tmp_path, detector, astronaut):
    root = tmp_path / "raf"
    names = ["train_00001.jpg", "train_00002.jpg", "test_00001.jpg"]
    points = detector(astronaut)[0].points
    for i, name in enumerate(names):
        stem = name[:-4]
        aligned = root / "Image" / "aligned" / f"{stem}_aligned.jpg"
        aligned.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(astronaut[:100, :100]).save(aligned)  # the official crop: not used here
        (root / "Image" / "original").mkdir(parents=True, exist_ok=True)
        Image.fromarray(astronaut).save(root / "Image" / "original" / name, quality=95)
        if i < 2:  # test_00001 has no landmark file: it falls back, listed
            lm = root / "Annotation" / "manual" / f"{stem}_manu_attri.txt"
            lm.parent.mkdir(parents=True, exist_ok=True)
            lm.write_text("".join(f"{x:.2f}\t{y:.2f}\n" for x, y in points) + "0\n0\n1\n")
    (root / "EmoLabel").mkdir(parents=True)
    (root / "EmoLabel" / "list_patition_label.txt").write_text("train_00001.jpg 4\ntrain_00002.jpg 7\n"
                                                               "test_00001.jpg 4\n")
    summary = align_dataset("rafdb", root, tmp_path / "out", method="landmarks", progress=False)
    assert summary["counts"]["aligned"] == 2 and summary["fallbacks"] == ["test_00001.jpg"]
    assert summary["detector"] is None and "manual" in summary["landmarks"]
    rec = [json.loads(x) for x in (tmp_path / "out" / MANIFEST).read_text().splitlines()]
    assert {r["name"]: r["source"] for r in rec}["train_00001.jpg"] == "Image/original/train_00001.jpg"
    assert "manu_attri" in next(r for r in rec if r["status"] == "fallback")["reason"]
    crop = np.asarray(Image.open(tmp_path / "out" / "Image" / "aligned" / "train_00001_aligned.jpg"))
    mtcnn_crop, _ = align_image(astronaut, SIZE, detector=detector)
    assert _mad(crop, mtcnn_crop) < 3.0  # the same points give the same crop (JPEG aside)

    # The fit is part of what the aligned data is: recorded, and another fit is another dataset.
    eyes = align_dataset("rafdb", root, tmp_path / "eyes", method="landmarks", fit="eyes", progress=False)
    assert (summary["fit"], eyes["fit"]) == ("five", "eyes")
    from harness.data.base import read_alignment
    assert read_alignment(tmp_path / "eyes")["fit"] == "eyes"  # hashed into the fingerprint, as a whole
    crop_eyes = np.asarray(Image.open(tmp_path / "eyes" / "Image" / "aligned" / "train_00001_aligned.jpg"))
    assert _mad(crop_eyes, crop) > 3.0  # another crop
    with pytest.raises(UserError, match="unknown alignment fit 'mouth'; known: five, eyes"):
        align_dataset("rafdb", root, tmp_path / "mouth", method="landmarks", fit="mouth", progress=False)


def test_affectnet_landmarks_are_reduced_to_five_and_the_csv_follows_the_copy(tmp_path):
    pts68 = np.zeros((68, 2))
    pts68[36:42], pts68[42:48] = [10.0, 20.0], [30.0, 20.0]
    pts68[30], pts68[48], pts68[54] = [20.0, 30.0], [12.0, 40.0], [28.0, 40.0]
    assert np.allclose(five_from_68(pts68.ravel()), [[10, 20], [30, 20], [20, 30], [12, 40], [28, 40]])

    root = make_affectnet(tmp_path / "an")
    # Put 68 plausible points in every row: a face template inside the 20x20 face box at (10, 5).
    face = reference_points(20) + [10, 5]
    pts = np.zeros((68, 2))
    pts[36:42], pts[42:48], pts[30], pts[48], pts[54] = face[0], face[1], face[2], face[3], face[4]
    for fname in ("training.csv", "validation.csv"):
        rows = list(csv.reader(open(root / fname, newline="")))
        for row in rows[1:]:
            row[5] = ";".join(f"{v:.3f}" for v in pts.ravel())
        with open(root / fname, "w", newline="") as f:
            csv.writer(f).writerows(rows)
    out = tmp_path / "an_aligned"
    summary = align_dataset("affectnet", root, out, method="landmarks", size=32, progress=False)
    assert summary["counts"]["aligned"] == summary["images"] == 11  # contempt kept for 8class; 9 is no face
    for protocol in ("7class", "8class"):
        assert load_dataset("affectnet", out, protocol=protocol).split_info["sizes"] == \
            load_dataset("affectnet", root, protocol=protocol).split_info["sizes"]
    row = list(csv.reader(open(out / "training.csv", newline="")))[1]
    assert row[1:5] == ["0", "0", "32", "32"]
    eyes = np.array([float(v) for v in row[5].split(";")]).reshape(68, 2)[36]
    assert np.allclose(eyes, reference_points(32)[0], atol=0.05)  # the landmarks moved with the face


@pytest.mark.parametrize("name, make, size", [
    ("ferplus", make_ferplus, 48),
    ("expw", lambda root: make_expw(root, n=20), 64),
    ("folder", lambda root: make_folders(root, {"train": {"happy": 6, "sad": 5}, "test": {"happy": 1, "sad": 1}}), 64),
])
def test_every_layout_round_trips_through_its_loader(tmp_path, name, make, size):
    root = make(tmp_path / name)
    summary = align_dataset(name, root, tmp_path / "out", size=size, progress=False)
    assert summary["counts"]["no_face"] == summary["images"] > 0  # solid-colour fixtures: no faces
    shipped, aligned = load_dataset(name, root), load_dataset(name, tmp_path / "out")
    assert aligned.split_info["sizes"] == shipped.split_info["sizes"]
    assert aligned.fingerprint != shipped.fingerprint and aligned.split_info["alignment"]["size"] == size
    if name != "folder":  # the box crop and the centre-crop fallback differ only at the box edges
        a, b = aligned.splits["test"].images.float(), shipped.splits["test"].images.float()
        assert (a - b).abs().mean() < 30


def test_bad_requests_are_user_errors(tmp_path, astronaut):
    root, _ = _rafdb_fixture(tmp_path / "raf", astronaut)
    with pytest.raises(UserError, match="ships no facial landmarks"):
        align_dataset("sfew", root, tmp_path / "o1", method="landmarks")
    with pytest.raises(UserError, match="original images"):
        align_dataset("rafdb", root, tmp_path / "o2", method="landmarks")
    with pytest.raises(UserError, match="must not overwrite"):
        align_dataset("rafdb", root, root)
    with pytest.raises(UserError, match="--size 48"):
        align_dataset("ferplus", root, tmp_path / "o3", size=112)
    with pytest.raises(UserError, match=r"data align rafdb|data align <dataset>"):
        check_alignment(root, align="mtcnn")


# -- the same dataset as two table columns ---------------------------------------------------------

def test_one_dataset_as_two_columns_plans_two_distinct_cells(tmp_path, astronaut):
    from harness.run.plan import DataSource, plan_table
    from harness.specs import load_spec

    data_root = tmp_path / "data"
    _rafdb_fixture(data_root / "rafdb", astronaut)
    spec = load_spec("apvit_alignment")
    with pytest.raises(UserError, match="rafdb_mtcnn"):  # the aligned folder is not there yet
        plan_table(spec, seeds=1, source=DataSource(data_root))
    (data_root / "rafdb_mtcnn").mkdir()
    with pytest.raises(UserError, match="data align"):  # there, but not aligned
        plan_table(spec, seeds=1, source=DataSource(data_root))
    (data_root / "rafdb_mtcnn").rmdir()
    align_dataset("rafdb", data_root / "rafdb", data_root / "rafdb_mtcnn", progress=False)
    cells = plan_table(spec, seeds=1, source=DataSource(data_root))
    by_col = {c.dataset: c.cell for c in cells if c.row == "APP / ATP / CLT"}
    official, aligned = by_col["rafdb"], by_col["rafdb_mtcnn"]
    assert official.dataset == aligned.dataset == "rafdb"  # one loader
    assert aligned.data == {"align": "mtcnn"} and official.data == {}
    assert official.fingerprint != aligned.fingerprint and official.slot() != aligned.slot()
    assert aligned.data_root == str(data_root / "rafdb_mtcnn")

    twin = spec.model_copy(update={"datasets": [spec.datasets[0], spec.datasets[1].model_copy(
        update={"set": {}})]})
    with pytest.raises(UserError, match="give one a data.align"):
        plan_table(twin, seeds=1, source=DataSource(data_root))


def test_report_lists_the_alignment_per_dataset():
    import pandas as pd

    from harness.data.align import describe_alignment
    from harness.report.build import provenance

    aligned = {"method": "mtcnn", "template": "evolve", "size": 112,
               "counts": {"aligned": 6, "several_faces": 0, "no_face": 1, "fallback": 0}}
    assert describe_alignment(None) == "as shipped"
    assert describe_alignment(aligned) == "mtcnn, evolve template, 112px; 1 of 7 centre-cropped"
    frame = pd.DataFrame([{"dataset": d, "dataset_label": d, "dataset_fingerprint": fp, "seed": 0,
                           "status": "ok", "synthetic": False, "alignment": describe_alignment(al)}
                          for d, fp, al in (("rafdb", "a1", None), ("rafdb_mtcnn", "b2", aligned))])
    rows = {d["dataset"]: d["alignment"] for d in provenance(frame)["datasets"]}
    assert rows == {"rafdb": "as shipped", "rafdb_mtcnn": "mtcnn, evolve template, 112px; 1 of 7 centre-cropped"}


# -- the aligned copy is written under --out only ------------------------------------------------

def _files_outside(tmp_path: Path, out: Path) -> set[Path]:
    return {p for p in tmp_path.rglob("*") if p.is_file() and out not in p.parents}


def _affectnet_escaping(tmp_path: Path) -> tuple[Path, str]:
    """AffectNet whose last training row names ``../../../outside.jpg`` (written there by the maker)."""
    rows = [("1/a.jpg", 0), ("1/b.jpg", 1), ("2/c.jpg", 1), ("3/f.jpg", 0), ("3/g.jpg", 6), ("3/h.jpg", 6)]
    (tmp_path / "d").mkdir()  # the dataset two levels down: the row reaches tmp_path/outside.jpg
    root = make_affectnet(tmp_path / "d" / "an", train=rows + [("../../../outside.jpg", 0)])
    return root, f"{root / 'training.csv'}:8"


def _expw_escaping(tmp_path: Path) -> tuple[Path, str]:
    lines = [f"img_{i}.jpg 0 5 10 30 25 55.5 {i % 7}" for i in range(20)]
    (tmp_path / "d").mkdir()
    root = make_expw(tmp_path / "d" / "ew", lines=lines + ["../../../../outside.jpg 0 5 10 30 25 55.5 3"])
    return root, f"{root / 'label' / 'label.lst'}:21"


@pytest.mark.parametrize("name, make, method", [
    ("affectnet", _affectnet_escaping, "landmarks"),
    ("expw", _expw_escaping, "mtcnn"),
])
def test_data_align_refuses_an_entry_that_leads_outside(tmp_path, capsys, name, make, method):
    """``../`` in an annotation: `data align` stops naming the file and line and writes nothing
    outside --out; with --skip-bad it skips that entry."""
    root, where = make(tmp_path)
    out = tmp_path / "d" / "out"
    before = _files_outside(tmp_path, out)
    argv = ["data", "align", name, "--root", str(root), "--out", str(out), "--method", method, "--size", "32",
            "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert where in err and "outside the dataset root" in err and "--skip-bad" in err
    assert _files_outside(tmp_path, out) == before
    assert main(argv + ["--skip-bad"]) == 0
    assert f"skipped: {where}" in capsys.readouterr().out
    assert _files_outside(tmp_path, out) == before
    assert len(load_dataset(name, out, skip_bad=True).skipped) == 1  # the copied row still names the old path


def test_data_align_writes_only_under_out_when_a_link_would_lead_out(tmp_path, capsys):
    """A row the loader accepts (``deep`` links to ``a/b/c`` inside the root, so ``deep/../../..``
    is the image folder) would still climb out of --out, where ``deep`` is a plain folder: refused."""
    rows = [("1/a.jpg", 0), ("1/b.jpg", 1), ("2/c.jpg", 1), ("3/f.jpg", 0), ("3/g.jpg", 6), ("3/h.jpg", 6)]
    images = tmp_path / "an" / "Manually_Annotated_Images"
    (images / "a" / "b" / "c").mkdir(parents=True)
    (images / "deep").symlink_to(Path("a") / "b" / "c")
    root = make_affectnet(tmp_path / "an", train=rows + [("deep/../../../x.jpg", 0)])
    assert (images / "x.jpg").is_file() and len(load_dataset("affectnet", root).splits["train"]) == 6
    out = tmp_path / "o1" / "o2" / "out"
    argv = ["data", "align", "affectnet", "--root", str(root), "--out", str(out), "--method", "landmarks",
            "--size", "32", "--no-progress"]
    before = _files_outside(tmp_path, out)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"{root / 'training.csv'}:8" in err and "leads outside --out" in err
    assert _files_outside(tmp_path, out) == before
    assert main(argv + ["--skip-bad"]) == 0
    assert "leads outside --out" in capsys.readouterr().out
    assert _files_outside(tmp_path, out) == before and not (tmp_path / "o1" / "x.jpg").exists()
