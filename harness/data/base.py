"""Plain records shared by the loaders: entries, splits, datasets, decoding and val carving.

A loader module only parses its dataset's annotation files into :class:`Entry` lists (one
per official split) and names the files it read; :func:`assemble` does the rest the same way
for every dataset: decode once to uint8 tensors, carve the validation split, fingerprint.

Decoded images are cached as one memory-mapped ``.npy`` file per (dataset content, decode size,
split), rows in split order (train, val, test) and channels first, so every split is a slice of
the mapping and nothing is copied: parallel workers loading the same dataset share one copy
through the page cache (an AffectNet-size set, ~11 GB at 112 px, is not held once per worker).
The file is written once (to a temporary name, then renamed; workers that start together wait on
a lock instead of decoding twice) and a stale or partial one is rebuilt. Where it lives:
``$FERBENCH_CACHE/decoded`` for a real dataset (default ``~/.cache/ferbench/decoded``; the
dataset folder itself is never written to), and the stand-in's own folder for synthetic data
(``.decoded-*`` files beside the images it was generated into). See :func:`decoded_cache_path`.
"""
from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
import shlex
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from PIL import Image

from harness.errors import UserError

SYNTHETIC_MARKER = "SYNTHETIC.json"
CACHE_ENV = "FERBENCH_CACHE"  # as harness.data.synth: generated data lives under it
DECODED_CACHE_VERSION = 2  # 1: a torch.save'd blob in the synthetic root; 2: memory-mapped .npy
ALIGNMENT_MARKER = "ALIGNMENT.json"  # written by harness.data.align into an aligned copy
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


@dataclass
class Entry:
    """One labelled sample before decoding.

    ``source`` is an image path or, for datasets that store pixels in a CSV (FERPlus), a
    uint8 array [H, W] or [H, W, 3]. ``box`` is an optional face box (left, top, right,
    bottom) in pixels. ``where`` names the file and line/entry for error messages.
    """

    name: str
    label: int
    source: Path | np.ndarray
    where: str
    box: tuple[int, int, int, int] | None = None
    votes: np.ndarray | None = None  # float [C], canonical order, sums to 1


@dataclass
class Split:
    """One split, decoded: images uint8 [N, 3, S, S], labels int64 [N] in canonical order."""

    images: torch.Tensor
    labels: torch.Tensor
    names: list[str]
    votes: torch.Tensor | None = None  # float32 [N, C], rows sum to 1 (FERPlus); else None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def class_counts(self, num_classes: int) -> list[int]:
        """Number of samples per class index."""
        return torch.bincount(self.labels, minlength=num_classes).tolist()


LOADER_KNOBS = ("train_limit", "skip_bad")  # data.* keys that apply to any dataset, real or synthetic, when it is loaded


def train_limit_problem(limit: Any) -> str | None:
    """Why ``data.train_limit`` is not a number of images (an int >= 1) or a share in (0, 1), or None."""
    if isinstance(limit, bool) or not isinstance(limit, (int, float)):
        return f"data.train_limit={limit!r}: expected a number of images (>= 1) or a share in (0, 1)"
    if isinstance(limit, int) and limit < 1 or isinstance(limit, float) and not 0 < limit < 1:
        return f"data.train_limit={limit!r}: allowed: an integer >= 1 or a number in (0, 1)"
    return None


def stratified_subset(labels: torch.Tensor, n: int, seed: int = 0) -> torch.Tensor:
    """Indices (sorted) of ``n`` of the samples, every class kept in proportion (largest remainders)
    and drawn without replacement by a generator seeded with ``seed``. labels: int64 [N]."""
    counts = torch.bincount(labels).double()  # [C]
    share = counts * n / counts.sum()
    take = share.floor().long()
    for c in torch.argsort(share - take, descending=True, stable=True)[: n - int(take.sum())]:
        take[c] += 1
    g = torch.Generator().manual_seed(seed)
    picked = [torch.nonzero(labels == c).flatten()[torch.randperm(int(counts[c]), generator=g)[: int(k)]]
              for c, k in enumerate(take.tolist()) if k]
    return torch.sort(torch.cat(picked)).values


def limit_train(ds: "FERDataset", limit: int | float, seed: int = 0) -> "FERDataset":
    """``ds`` with its training split cut to ``limit`` images (or that share of them), stratified and
    seeded (the same images for every training seed); validation and test are untouched."""
    train = ds.splits["train"]
    n = limit if isinstance(limit, int) else max(1, round(limit * len(train)))
    if n > len(train):
        raise UserError(f"data.train_limit={limit}: {ds.name} has only {len(train)} training images")
    rows = stratified_subset(train.labels, n, seed)
    cut = Split(images=train.images[rows], labels=train.labels[rows], names=[train.names[i] for i in rows.tolist()],
                votes=None if train.votes is None else train.votes[rows])
    info = {**ds.split_info, "train_limit": {"kept": n, "of": len(train)},
            "sizes": {**ds.split_info.get("sizes", {}), "train": n}}
    return replace(ds, splits={**ds.splits, "train": cut}, split_info=info)


@dataclass
class FERDataset:
    """A loaded dataset: three splits, the class names and the identity of the data."""

    name: str
    protocol: str
    class_names: list[str]
    splits: dict[str, Split]
    fingerprint: str
    split_info: dict[str, Any]
    skipped: list[str]
    root: str
    synthetic: bool
    warnings: list[str] = field(default_factory=list)  # suspicious but loadable: duplicate images
    decoded_cache: str | None = None  # the memory-mapped file the splits are views of, if any

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


@dataclass
class RawDataset:
    """What a loader module returns: entries per official split plus provenance.

    ``official`` maps "train", "test" and optionally "val" to entries. ``val_policy`` is
    "carve" (val is a seeded stratified part of train), "official" (``official["val"]``
    is used as is) or "all" (``official["all"]`` is split seeded into train/val/test with
    ``fractions``).
    """

    class_names: list[str]
    official: dict[str, list[Entry]]
    annotation_files: list[Path]
    label_map: dict[str, Any]
    val_policy: str = "carve"
    fractions: tuple[float, float, float] | None = None
    has_votes: bool = False
    dropped: dict[str, int] = field(default_factory=dict)  # documented filtering, by reason
    skipped: list[str] = field(default_factory=list)  # bad entries skipped under skip_bad


class BadEntries:
    """Collects bad entries: raises at once, or records them when ``skip_bad`` is set.

    The error says where skipping applies: ``data check``, ``data align`` and ``reproduce`` take
    ``--skip-bad`` (``reproduce`` records it as ``data.skip_bad``, part of each cell's identity).
    ``dataset`` and ``root``, when known, make the advice a command to paste.
    """

    def __init__(self, skip_bad: bool, dataset: str | None = None, root: str | Path | None = None) -> None:
        self.skip_bad = skip_bad
        self.skipped: list[str] = []
        self._check = (f"python -m harness data check {dataset or '<dataset>'} --root "
                       f"{shlex.quote(str(root)) if root is not None else '<folder>'} --skip-bad")

    def report(self, message: str) -> None:
        if not self.skip_bad:
            raise UserError(f"{message} (run `{self._check}` to list every bad entry; fix or remove them, "
                            "or pass --skip-bad to `reproduce` to train without them, recorded as data.skip_bad)")
        self.skipped.append(message)


class RootGuard:
    """Keeps paths inside a folder: the dataset root a loader reads, the ``--out`` folder
    ``data align`` writes.

    A path is inside when, resolved as the OS would open it (``..`` and symbolic links followed),
    it lies in the folder, itself resolved. So an annotation naming ``../../x.jpg`` or an absolute
    path, and a symbolic link to elsewhere, are refused. Callers keep the path as they built it,
    unresolved (fingerprints and entry names do not change). A resolved folder is remembered for
    the life of the object, one loader call: a file then costs one ``lstat``.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        real = os.path.realpath(root)
        self._prefix = real.rstrip(os.sep) + os.sep  # "/" stays "/"
        self._real_root = real
        self._real_dirs: dict[str, str] = {}

    def inside(self, path: Path) -> bool:
        """Whether ``path`` (built on the root, or absolute) resolves inside the root."""
        head, tail = os.path.split(os.fspath(path))
        if tail in ("", ".", ".."):
            real = os.path.realpath(path)
        else:
            real_dir = self._real_dirs.get(head)
            if real_dir is None:
                real_dir = self._real_dirs[head] = os.path.realpath(head)
            real = os.path.join(real_dir, tail)
            if os.path.islink(real):
                real = os.path.realpath(real)
        return real == self._real_root or real.startswith(self._prefix)

    def image(self, folder: Path, name: str, where: str, bad: BadEntries) -> Path | None:
        """``folder / name`` for the image an annotation names, or None after reporting a bad entry
        (``where``: the annotation file and line) when ``name`` is absolute or leads out of the root."""
        path = folder / name
        if os.path.isabs(name):
            bad.report(f"{where}: image path {name!r} is absolute; images are named relative to "
                       f"{folder} and must lie inside the dataset root {self.root}")
        elif not self.inside(path):
            bad.report(f"{where}: image path {name!r} {self._leads_out}")
        else:
            return path
        return None

    def images(self, folder: Path, bad: BadEntries) -> list[Path]:
        """The images of a class folder (:func:`list_images`) inside the root; the folder, or an
        image, that a symbolic link takes out of it is a bad entry."""
        if not self.inside(folder):
            bad.report(f"{folder}: class folder {self._leads_out}")
            return []
        images = []
        for img in list_images(folder):
            if self.inside(img):
                images.append(img)
            else:
                bad.report(f"{img}: image {self._leads_out}")
        return images

    @property
    def _leads_out(self) -> str:
        return (f"leads outside the dataset root {self.root} ('..' or a symbolic link leads out of it; "
                "images must lie inside it)")


@contextlib.contextmanager
def utf8_errors(path: Path) -> Iterator[None]:
    """Turn a decoding error while reading ``path`` into a UserError naming the file and line."""
    try:
        yield
    except UnicodeDecodeError:
        raw = path.read_bytes()
        try:
            raw.decode("utf-8-sig")
            msg = f"{path}: not UTF-8 text"
        except UnicodeDecodeError as err:
            line = raw.count(b"\n", 0, err.start) + 1
            msg = (f"{path}:{line}: not UTF-8 text (byte {raw[err.start]:#04x} at offset {err.start}); "
                   "re-save the file as UTF-8")
        raise UserError(msg) from None


def csv_rows(path: Path, header: list[str] | None) -> Iterator[tuple[int, list[str]]]:
    """The data rows of a UTF-8 CSV file as (line number, fields), once its first row is checked
    against ``header`` (None: the file has no header row); empty rows are left out. A wrong header, a malformed row (a field over the
    csv module's size limit: a huge field, or a stray double quote that runs a field on over the
    rows below) or text that is not UTF-8 is a UserError naming the file and line."""
    with open(path, newline="", encoding="utf-8-sig") as f, utf8_errors(path):
        reader = csv.reader(f)
        start = 1
        try:
            got = next(reader, None) if header is not None else header
            if header is not None and (got is None or [h.strip() for h in got] != header):
                raise UserError(f"{path}:1: wrong CSV header {got!r}, expected {header!r}")
            while True:
                start = reader.line_num + 1
                row = next(reader, None)
                if row is None:
                    return
                if row:
                    yield reader.line_num, row
        except csv.Error as err:
            why = (f"read on to line {reader.line_num}: a double quote without its closing one runs a field "
                   "on over the rows below" if reader.line_num > start else "no entry has a field this long")
            raise UserError(f"{path}:{start}: malformed CSV row ({err}; {why})") from None


def require_file(path: Path, what: str) -> Path:
    """Return ``path`` if it is a file, else raise a UserError naming it."""
    if not path.is_file():
        raise UserError(f"{path}: missing {what}")
    return path


def decode_image(entry: Entry, size: int) -> np.ndarray:
    """Decode one entry to uint8 [size, size, 3] (grey is replicated), or raise UserError.

    A face box, when given, is clamped to the image and cropped first; the crop is resized
    to a square without keeping the aspect ratio (faces are near-square already).
    """
    try:
        if isinstance(entry.source, np.ndarray):
            img = Image.fromarray(entry.source)
        else:
            if not entry.source.is_file():
                raise UserError(f"{entry.where}: image file {entry.source} not found")
            img = Image.open(entry.source)
            img.load()
        img = img.convert("RGB")
        if entry.box is not None:
            left, top, right, bottom = entry.box
            left, top = max(0, left), max(0, top)
            right, bottom = min(img.width, right), min(img.height, bottom)
            if right - left < 2 or bottom - top < 2:
                raise UserError(f"{entry.where}: face box {entry.box} lies outside the "
                                f"{img.width}x{img.height} image {entry.source}")
            img = img.crop((left, top, right, bottom))
        if img.size != (size, size):
            img = img.resize((size, size), Image.BILINEAR)
        return np.asarray(img, dtype=np.uint8)
    except UserError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise UserError(f"{entry.where}: cannot decode image {entry.source}: {err}") from None


def _decode_all(entries: list[Entry], size: int, bad: BadEntries) -> tuple[np.ndarray, list[int]]:
    """Decode entries into one array [N, S, S, 3]; returns it and the kept entry indices."""
    out = np.empty((len(entries), size, size, 3), dtype=np.uint8)
    kept: list[int] = []
    for i, entry in enumerate(entries):
        try:
            out[len(kept)] = decode_image(entry, size)
        except UserError as err:
            bad.report(str(err))
            continue
        kept.append(i)
    return out[: len(kept)], kept


def _hash_files(h: "hashlib._Hash", root: Path, raw: RawDataset) -> None:
    for path in raw.annotation_files:
        h.update(b"ann\0" + _rel(path, root).encode() + b"\0")
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    for split in sorted(raw.official):
        for e in raw.official[split]:
            if isinstance(e.source, Path):
                try:
                    size = e.source.stat().st_size
                except OSError:
                    size = -1
                h.update(f"img\0{split}\0{_rel(e.source, root)}\0{size}\0{e.label}\0".encode())


def read_alignment(root: Path) -> dict[str, Any] | None:
    """The summary an aligned copy carries (:mod:`harness.data.align`), less its source location,
    or None for a dataset as shipped."""
    path = root / ALIGNMENT_MARKER
    if not path.is_file():
        return None
    try:
        summary = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise UserError(f"{path}: unreadable alignment marker ({err}); re-run `data align`") from None
    summary.pop("source_root", None)  # where it came from must not change what it is
    return summary


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def _stratified_pick(labels: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Boolean mask choosing round(fraction * N) samples, spread over classes in proportion.

    Each class c gets floor(fraction * n_c); the remaining picks go to the classes with the
    largest remainders (ties to the lower class index), never taking a class's last sample.
    Which samples of a class are picked is seeded by ``rng``.
    """
    classes, counts = np.unique(labels, return_counts=True)
    quota = fraction * counts
    take = np.floor(quota).astype(int)
    take = np.minimum(take, np.maximum(counts - 1, 0))
    want = int(round(fraction * len(labels)))
    for c in np.argsort(-(quota - np.floor(quota)), kind="stable"):
        if take.sum() >= want:
            break
        if take[c] < counts[c] - 1:
            take[c] += 1
    mask = np.zeros(len(labels), dtype=bool)
    for c, k in zip(classes, take):
        idx = np.flatnonzero(labels == c)
        mask[rng.permutation(idx)[:k]] = True
    return mask


def _carve(raw: RawDataset, val_fraction: float, split_seed: int) -> tuple[dict[str, list[Entry]], dict]:
    """Turn the official splits into train/val/test entry lists, seeded and stratified."""
    rng = np.random.default_rng([split_seed, 0x5A17])
    if raw.val_policy == "official":
        splits = {k: raw.official[k] for k in ("train", "val", "test")}
        info = {"val_source": "official validation split"}
    elif raw.val_policy == "carve":
        if not 0.0 < val_fraction < 1.0:
            raise UserError(f"val_fraction must be in (0, 1), got {val_fraction}")
        train = raw.official["train"]
        mask = _stratified_pick(np.array([e.label for e in train], dtype=np.int64), val_fraction, rng)
        splits = {"train": [e for e, m in zip(train, mask) if not m],
                  "val": [e for e, m in zip(train, mask) if m],
                  "test": raw.official["test"]}
        info = {"val_source": "carved from the official train split (stratified per class)",
                "fraction": val_fraction}
    elif raw.val_policy == "all":
        assert raw.fractions is not None
        entries = raw.official["all"]
        labels = np.array([e.label for e in entries], dtype=np.int64)
        f_train, f_val, f_test = raw.fractions
        test_mask = _stratified_pick(labels, f_test, rng)
        rest = np.flatnonzero(~test_mask)
        val_mask = np.zeros(len(entries), dtype=bool)
        val_mask[rest[_stratified_pick(labels[rest], f_val / (f_train + f_val), rng)]] = True
        splits = {"train": [e for i, e in enumerate(entries) if not test_mask[i] and not val_mask[i]],
                  "val": [e for i, e in enumerate(entries) if val_mask[i]],
                  "test": [e for i, e in enumerate(entries) if test_mask[i]]}
        info = {"val_source": "seeded stratified split of all labelled entries",
                "fractions": list(raw.fractions)}
    else:  # pragma: no cover - loaders only use the three policies above
        raise ValueError(raw.val_policy)
    info["seed"] = split_seed
    return splits, info


def assemble(name: str, protocol: str, root: Path, raw: RawDataset, *, decode_size: int,
             val_fraction: float, split_seed: int, skip_bad: bool, cache: bool = True) -> FERDataset:
    """Decode, carve val, fingerprint: the part every loader shares. ``cache=False`` neither
    reads nor writes the decoded-image cache (``reproduce --dry-run`` writes nothing)."""
    bad = BadEntries(skip_bad, name, root)
    bad.skipped.extend(raw.skipped)
    synthetic = (root / SYNTHETIC_MARKER).is_file()

    content = hashlib.sha256()
    _hash_files(content, root, raw)
    alignment = read_alignment(root)
    if alignment is not None:  # how the faces were aligned is part of what the data is
        content.update(b"\0alignment\0" + json.dumps(alignment, sort_keys=True).encode())
    content_key = content.hexdigest()  # the files alone: with the split settings, keys the decoded cache
    h = hashlib.sha256()
    h.update(json.dumps({"dataset": name, "protocol": protocol, "classes": raw.class_names,
                         "label_map": raw.label_map, "val_policy": raw.val_policy,
                         "fractions": raw.fractions, "val_fraction": val_fraction
                         if raw.val_policy == "carve" else None, "split_seed": split_seed},
                        sort_keys=True, default=str).encode())
    h.update(content_key.encode())

    # Decode every official entry once (the order is fixed by the annotation files).
    entries = [e for s in sorted(raw.official) for e in raw.official[s]]
    path = None
    if cache:  # keyed by what the rows depend on: the fingerprint's inputs, the size, Pillow
        key = h.copy()
        key.update(json.dumps({"v": DECODED_CACHE_VERSION, "size": decode_size, "pillow": Image.__version__},
                              sort_keys=True).encode())
        path = decoded_cache_path(name, root, key.hexdigest(), decode_size, synthetic=synthetic)
    # A cache file exists only for a decode that skipped nothing, so the carve of every entry is
    # the carve its rows were written in.
    carved, info = _carve(raw, val_fraction, split_seed)
    total = sum(len(carved[s]) for s in SPLITS)
    mapped = _map_decoded(path, total, decode_size) if path else None
    decoded = None
    if path and mapped is None:
        with _lock(path):  # workers that start together: one decodes, the others then map
            mapped = _map_decoded(path, total, decode_size)
            if mapped is None:
                decoded = _decode_all(entries, decode_size, bad)
                if len(decoded[1]) == len(entries):
                    mapped = _write_decoded(path, decoded[0], entries, carved, decode_size)
    splits: dict[str, Split] = {}
    if mapped is not None:
        tensor = torch.from_numpy(mapped)  # [N, 3, S, S], file-backed: every split below is a view
        start = 0
        for split_name in SPLITS:
            n = len(carved[split_name])
            splits[split_name] = _split(carved[split_name], tensor[start:start + n], raw)
            start += n
    else:
        images, kept = decoded if decoded is not None else _decode_all(entries, decode_size, bad)
        kept_ids = {id(entries[i]): j for j, i in enumerate(kept)}
        official = {s: [e for e in raw.official[s] if id(e) in kept_ids] for s in raw.official}
        carved, info = _carve(RawDataset(raw.class_names, official, [], {}, raw.val_policy,
                                         raw.fractions), val_fraction, split_seed)
        tensor = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))  # [N, 3, S, S]
        for split_name in SPLITS:
            rows = torch.tensor([kept_ids[id(e)] for e in carved[split_name]], dtype=torch.int64)
            splits[split_name] = _split(carved[split_name], tensor[rows], raw)
    empty = [k for k, v in splits.items() if len(v) == 0]
    if empty:
        raise UserError(f"{root}: {name} ({protocol}) has an empty {' and '.join(empty)} split "
                        f"(sizes {({k: len(v) for k, v in splits.items()})}); check the annotation files "
                        f"{', '.join(str(p) for p in raw.annotation_files) or ''}")
    if bad.skipped:
        h.update(("\0skipped\0" + "\n".join(bad.skipped)).encode())
    info.update({"sizes": {k: len(v) for k, v in splits.items()}, "dropped": dict(raw.dropped),
                 "labels": {k: raw.label_map[k] for k in ("rule", "layout") if k in raw.label_map},
                 "skipped": len(bad.skipped), "alignment": alignment and {
                     k: alignment.get(k) for k in ("method", "template", "size", "fit", "rule", "detector", "counts")}})
    return FERDataset(name=name, protocol=protocol, class_names=list(raw.class_names),
                      splits=splits, fingerprint=h.hexdigest()[:16], split_info=info,
                      skipped=list(bad.skipped), root=str(root), synthetic=synthetic,
                      warnings=duplicate_warnings(raw), decoded_cache=str(path) if mapped is not None else None)


def _split(entries: list[Entry], images: torch.Tensor, raw: RawDataset) -> Split:
    """A Split of ``entries`` whose decoded images are ``images`` [n, 3, S, S], row for row."""
    votes = None
    if raw.has_votes:
        votes = torch.from_numpy(np.stack([e.votes for e in entries]).astype(np.float32)) if entries \
            else torch.zeros((0, len(raw.class_names)), dtype=torch.float32)
    return Split(images=images, labels=torch.tensor([e.label for e in entries], dtype=torch.int64),
                 names=[e.name for e in entries], votes=votes)


def duplicate_warnings(raw: RawDataset) -> list[str]:
    """One line per image listed more than once (with the labels it was given), in any split."""
    first: dict[str, Entry] = {}
    out = []
    for split in sorted(raw.official):
        for e in raw.official[split]:
            if not isinstance(e.source, Path):
                continue
            key = str(e.source)
            if key in first:
                prev = first[key]
                labels = (f"with a different label ({raw.class_names[prev.label]} vs {raw.class_names[e.label]})"
                          if prev.label != e.label else "with the same label")
                out.append(f"{e.where}: image {e.name} is listed again {labels}; first at {prev.where}")
            else:
                first[key] = e
    return out


def decoded_cache_path(name: str, root: Path, key: str, size: int, *, synthetic: bool) -> Path:
    """The decoded-image cache file for a dataset whose cache key is ``key`` (hex).

    A synthetic stand-in keeps it in its own folder (``.decoded-<key>-<size>.npy``, ignored by
    the stand-in's own tree hash). A real dataset keeps it in ``$FERBENCH_CACHE/decoded``
    (default ``~/.cache/ferbench/decoded``) as ``<name>-<key>-<size>.npy``: keyed by content,
    so two copies of one dataset share a file, and the dataset folder stays read-only.
    """
    if synthetic:
        return root / f".decoded-{key[:32]}-{size}.npy"
    env = os.environ.get(CACHE_ENV)
    base = Path(env).expanduser() if env else Path.home() / ".cache" / "ferbench"
    return base / "decoded" / f"{name}-{key[:32]}-{size}.npy"


SPLITS = ("train", "val", "test")


def _map_decoded(path: Path, rows: int, size: int) -> np.ndarray | None:
    """The cache file mapped copy-on-write, uint8 [rows, 3, size, size], or None when it is
    missing, partial, unreadable or of another shape (then it is rebuilt).

    Copy-on-write (``mmap_mode="c"``): pages are shared through the page cache until written,
    and a write (no code writes to ``Split.images``; a future one must not crash) makes a
    private copy of that page, never touching the file.
    """
    try:
        arr = np.load(path, mmap_mode="c", allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    if arr.dtype != np.uint8 or arr.shape != (rows, 3, size, size):
        return None
    return arr


def _write_decoded(path: Path, images: np.ndarray, entries: list[Entry], carved: dict[str, list[Entry]],
                   size: int) -> np.ndarray | None:
    """Write ``images`` [N, S, S, 3] (``entries`` order) to ``path`` as [M, 3, S, S] in split
    order, atomically, and return it mapped; None when the folder is not writable."""
    where = {id(e): i for i, e in enumerate(entries)}
    rows = np.array([where[id(e)] for s in SPLITS for e in carved[s]], dtype=np.int64)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(rows), 3, size, size))
        for start in range(0, len(rows), 1024):  # bounded extra memory for a large set
            out[start:start + 1024] = images[rows[start:start + 1024]].transpose(0, 3, 1, 2)
        out.flush()
        del out
        os.replace(tmp, path)
    except OSError:  # a read-only cache folder just means no cache
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        return None
    return _map_decoded(path, len(rows), size)


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock beside ``path`` (``<path>.lock``); no lock where none can be
    taken (a read-only folder, a file system without flock): the rename keeps writes atomic."""
    try:
        import fcntl
        path.parent.mkdir(parents=True, exist_ok=True)
        f = open(path.with_name(path.name + ".lock"), "a")
    except (ImportError, OSError):
        yield
        return
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX)
        except OSError:
            pass
        yield


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
