"""Tiny real-format copies of each dataset, written into a temporary folder."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

FERNEW_COLUMNS = ["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear",
                  "contempt", "unknown", "NF"]
AFFECTNET_HEADER = ["subDirectory_filePath", "face_x", "face_y", "face_width", "face_height",
                    "facial_landmarks", "expression", "valence", "arousal"]


def solid(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (20, 20),
          box: tuple[int, int, int, int] | None = None, box_colour=(0, 0, 255)) -> Path:
    """A solid-colour image, optionally with a differently coloured rectangle (l, t, r, b)."""
    arr = np.zeros((size[1], size[0], 3), dtype=np.uint8)
    arr[:] = colour
    if box is not None:
        left, top, right, bottom = box
        arr[top:bottom, left:right] = box_colour
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, quality=95) if path.suffix == ".jpg" else Image.fromarray(arr).save(path)
    return path


def make_rafdb(root: Path, lines: list[tuple[str, int]] | None = None) -> Path:
    """RAF-DB basic: 8 train (both classes 4=happy and 7=neutral) and 4 test images."""
    lines = lines or [(f"train_{i:05d}.jpg", 4 if i % 2 else 7) for i in range(1, 9)] + \
        [("test_00001.jpg", 1), ("test_00002.jpg", 2), ("test_00003.jpg", 6), ("test_00004.jpg", 3)]
    for j, (name, code) in enumerate(lines):
        solid(root / "Image" / "aligned" / name.replace(".jpg", "_aligned.jpg"), (10 * j, 20 * code, 100))
    (root / "EmoLabel").mkdir(parents=True, exist_ok=True)
    (root / "EmoLabel" / "list_patition_label.txt").write_text(
        "".join(f"{n} {c}\n" for n, c in lines))
    return root


def ferplus_rows():
    """(usage, name, votes, grey value) per row; rows 2-4 are dropped under both rules."""
    return [
        ("Training", "fer0000000.png", [0, 8, 2, 0, 0, 0, 0, 0, 0, 0], 10),  # happy
        ("Training", "fer0000001.png", [1, 0, 0, 6, 0, 0, 3, 0, 0, 0], 20),  # sad
        ("Training", "fer0000002.png", [0, 0, 0, 0, 0, 0, 0, 0, 7, 3], 30),  # unknown wins: drop
        ("Training", "fer0000003.png", [0, 0, 0, 0, 0, 0, 0, 0, 1, 9], 40),  # NF wins: drop
        ("Training", "", [10, 0, 0, 0, 0, 0, 0, 0, 0, 0], 50),  # no image name: drop
        ("Training", "fer0000005.png", [2, 0, 0, 0, 0, 0, 0, 8, 0, 0], 60),  # contempt
        ("PublicTest", "fer0000006.png", [0, 0, 9, 0, 0, 0, 1, 0, 0, 0], 70),  # surprise
        ("PrivateTest", "fer0000007.png", [0, 0, 0, 0, 5, 5, 0, 0, 0, 0], 80),  # tie -> anger
        ("PrivateTest", "fer0000008.png", [4, 0, 0, 0, 0, 0, 0, 0, 4, 2], 90),  # tie -> neutral
        ("PrivateTest", "fer0000009.png", [0, 0, 0, 0, 0, 0, 7, 0, 1, 2], 100),  # fear (7 of the 9 left)
    ]
# Under Microsoft's majority rule rows 7 (5 to 5) and 8 (4 of 10) have no majority: dropped.


def make_ferplus(root: Path, rows=None, old_header=None, new_header=None, extra_old_rows: int = 0) -> Path:
    rows = rows or ferplus_rows()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "fer2013.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(old_header or ["emotion", "pixels", "Usage"])
        for usage, _, _, value in rows + rows[:extra_old_rows]:
            w.writerow([0, " ".join([str(value)] * 2304), usage])
    with open(root / "fer2013new.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(new_header or ["Usage", "Image name", *FERNEW_COLUMNS])
        for usage, name, votes, _ in rows:
            w.writerow([usage, name, *votes])
    return root


def make_ferplus_folders(root: Path, rows=None) -> Path:
    """The same rows in Microsoft's folder layout (generate_training_data.py's output): a folder
    per split with 48x48 grey PNGs and a header-less label.csv; rows without a name have no image."""
    folders = {"Training": "FER2013Train", "PublicTest": "FER2013Valid", "PrivateTest": "FER2013Test"}
    lines: dict[str, list] = {f: [] for f in folders.values()}
    for usage, name, votes, value in rows or ferplus_rows():
        if not name:
            continue
        folder = root / folders[usage]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((48, 48), value, dtype=np.uint8), mode="L").save(folder / name)
        lines[folders[usage]].append([name, "(0, 0, 48, 48)", *votes])
    for folder, rows_ in lines.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        with open(root / folder / "label.csv", "w", newline="") as f:
            csv.writer(f).writerows(rows_)
    return root


def make_affectnet(root: Path, train=None, test=None, header=None) -> Path:
    """AffectNet: full images 40x30 with a blue face box; rows (name, expression)."""
    train = train or [("1/a.jpg", 0), ("1/b.jpg", 1), ("2/c.jpg", 1), ("2/d.jpg", 7), ("2/e.jpg", 9),
                      ("3/f.jpg", 0), ("3/g.jpg", 6), ("3/h.jpg", 6)]
    test = test or [("4/v0.jpg", 0), ("4/v1.jpg", 1), ("4/v6.jpg", 6), ("4/v7.jpg", 7)]
    root.mkdir(parents=True, exist_ok=True)
    for fname, rows in (("training.csv", train), ("validation.csv", test)):
        with open(root / fname, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(header or AFFECTNET_HEADER)
            for rel, expr in rows:
                solid(root / "Manually_Annotated_Images" / rel, (200, 0, 0), size=(40, 30),
                      box=(10, 5, 30, 25))
                w.writerow([rel, 10, 5, 20, 20, "1.0;2.0", expr, 0.1, 0.2])
    return root


def make_folders(root: Path, layout: dict[str, dict[str, int]], suffix: str = ".png") -> Path:
    """layout: {split folder: {class folder: number of images}}."""
    for split, classes in layout.items():
        for cls, n in classes.items():
            for i in range(n):
                solid(root / split / cls / f"{cls}_{i}{suffix}", (i * 20, 50, 50))
    return root


def make_expw(root: Path, n: int = 20, lines: list[str] | None = None) -> Path:
    """ExpW: one 50x40 image per face, face box (top 5, left 10, right 30, bottom 25)."""
    if lines is None:
        lines = [f"img_{i}.jpg 0 5 10 30 25 55.5 {i % 7}" for i in range(n)]
    for line in lines:
        solid(root / "image" / "origin" / line.split()[0], (0, 200, 0), size=(50, 40),
              box=(10, 5, 30, 25), box_colour=(250, 250, 0))
    (root / "label").mkdir(parents=True, exist_ok=True)
    (root / "label" / "label.lst").write_text("".join(line + "\n" for line in lines))
    return root
