"""``python -m harness predict IMAGE|FOLDER ... --out FILE.csv``: class probabilities for image files.

The model is either a stored cell::

    --cell ID
    --table T --row LABEL --dataset KEY --seed N [--scale S]

(the second names the cell that ``collect``/``status`` show for that table: the spec under the
``--set``/``--seeds``/columns its last ``reproduce`` recorded, at that run's scale unless
``--scale`` says otherwise), or a checkpoint file with the model it belongs to::

    --checkpoint FILE --model NAME [--preset tiny|paper] [--set KEY=VALUE ...]

A cell is loaded from the selected weights the store keeps beside its record (``model.pt``, the
best validation epoch's, checked against the record's checksum); a record without them cannot be
predicted from. A checkpoint is a state dict of the whole model
(``torch.save(model.state_dict())``, or a dict holding one under ``model`` or ``state_dict``),
loaded strictly: any missing or unexpected key, or a shape that differs, is refused and listed.
Its class count is read from the checkpoint's classifier, so a 7-class and an 8-class model of
the same family both load.

Each image goes through the cell's own test-time path: decoded as the loaders decode (grey
replicated to RGB, resized to the recipe's ``img_size`` with Pillow's bilinear filter), then the
evaluation transform (``train.mean``/``train.std`` normalisation), in batches of the runner's
evaluation size unless ``--batch`` says otherwise, at the recipe's mixed precision on CUDA. With
``--align mtcnn`` each image is first aligned by :func:`harness.data.align.align_image` at the
size the cell's data was aligned to (112 px when it was not aligned, the ``data align``
default); an image with no face found falls back to the centre crop, as in a dataset.

A folder is searched recursively for ``.png .jpg .jpeg .bmp .tif .tiff .webp`` files (sorted by
path); an image named on the command line must have one of those suffixes. The CSV has one row
per image: ``path``, ``predicted`` (the class name), then one probability column per class in
the harness's canonical order (:data:`harness.data.labels.CANONICAL_CLASSES`, the first seven
for a 7-class model), the softmax of the logits; with ``--align`` a last column
``align_status`` (``aligned``, ``several_faces``, ``no_face``, ``fallback``).
"""
from __future__ import annotations

import argparse
import csv
import io
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from harness.commands.common import (add_results_flag, check_model_preset, check_output_file, nonnegative_int,
                                     positive_int)
from harness.data.base import IMAGE_SUFFIXES
from harness.errors import UserError
from harness.run.cellmodel import load_strict, read_state_dict

if TYPE_CHECKING:
    import numpy as np
    import torch

    from harness.data.align import Face
    from harness.store import Store

ALIGN_SIZE = 112  # the side ``data align`` and ``data.align`` use when no size is given


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``predict`` command."""
    p = sub.add_parser("predict", help="class probabilities for image files, from a stored cell or a checkpoint",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", metavar="IMAGE_OR_FOLDER", help="image files and/or folders (recursive)")
    p.add_argument("--out", required=True, help="the CSV to write")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    cell = p.add_argument_group("a stored cell")
    cell.add_argument("--cell", default=None, metavar="ID", help="cell id (as collect, status and the store show it)")
    cell.add_argument("--table", default=None, help="table id: with --row, --dataset and --seed, the cell it shows")
    cell.add_argument("--row", default=None, metavar="LABEL", help="row label of --table")
    cell.add_argument("--dataset", default=None, metavar="KEY", help="column (dataset key) of --table")
    cell.add_argument("--seed", type=nonnegative_int, default=None, help="seed of the cell in --table")
    cell.add_argument("--scale", default=None, choices=("tiny", "paper"),
                      help="scale of the cell in --table (default: that of the table's last reproduce)")
    ck = p.add_argument_group("a checkpoint")
    ck.add_argument("--checkpoint", default=None, metavar="FILE", help="state dict of the whole model")
    ck.add_argument("--model", default=None, metavar="NAME", help="registered model name, e.g. apvit")
    ck.add_argument("--preset", default="paper", choices=("paper", "tiny"), help="model preset (default paper)")
    ck.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                    help="model or train.* override the checkpoint was trained with (repeatable)")
    p.add_argument("--align", default=None, choices=("mtcnn",), help="align each face first (facenet-pytorch MTCNN)")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    p.add_argument("--batch", type=positive_int, default=None,
                   help="images per forward pass (default: the batch the runner evaluates with)")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="CPU threads (default: torch's); the cell's own count gives its logits bit for bit")
    add_results_flag(p)
    p.set_defaults(func=run)


@dataclass
class Predictor:
    """A model ready for inference and the test-time settings of the cell it stands for."""

    model: torch.nn.Module  # in eval mode, on the CPU
    class_names: list[str]
    img_size: int
    augment: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    amp: str  # the recipe's ``amp`` field
    batch_size: int  # the runner's evaluation batch
    align_size: int
    aligned_as: str | None  # how the cell's data was aligned ("mtcnn"), if it was
    what: str  # names the model in messages


def run(args: argparse.Namespace) -> int:
    """Check every input, build the model, predict in batches, write the CSV."""
    import torch
    from tqdm import tqdm

    from harness.data import build_transform
    from harness.run.devices import amp_dtype, resolve_device
    from methods.interface import set_progress

    modes = [m for m, given in (("--cell", args.cell), ("--table", args.table), ("--checkpoint", args.checkpoint))
             if given is not None]
    if len(modes) != 1:
        raise UserError(f"predict needs one model source: --cell ID, --table T --row LABEL --dataset KEY --seed N, "
                        f"or --checkpoint FILE --model NAME; got {' and '.join(modes) or 'none'}")
    _check_mode_flags(args, modes[0])
    out = check_output_file(args.out, (".csv",), force=args.force)
    files = image_files(args.inputs)
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if modes[0] == "--checkpoint":
        predictor = checkpoint_predictor(Path(args.checkpoint), args.model, args.preset, args.sets)
    else:
        from harness.store import Store

        store = Store(args.results, create=False)
        cid = args.cell if args.cell is not None else table_cell_id(
            store, args.table, args.row, args.dataset, args.seed, args.scale)
        predictor = cell_predictor(store, cid)
    if predictor.aligned_as and args.align is None:
        print(f"note: {predictor.what} was trained and tested on faces aligned with {predictor.aligned_as} at "
              f"{predictor.align_size}px; pass --align {predictor.aligned_as} to align these images the same way",
              file=sys.stderr)
    detector = None
    if args.align:
        from harness.data.align import MTCNNDetector

        detector = MTCNNDetector()
    batch = args.batch or predictor.batch_size
    model = predictor.model.to(device)
    set_progress(model, 1.0)  # the runner tests at the end of any keep schedule
    transform = build_transform(predictor.augment, predictor.img_size, train=False, mean=predictor.mean,
                                std=predictor.std)
    amp = amp_dtype(predictor.amp, device)
    rows: list[list[Any]] = []
    with tqdm(total=len(files), unit="img", desc=f"predict {predictor.what}", file=sys.stderr) as bar:
        for start in range(0, len(files), batch):
            chunk = files[start:start + batch]
            images, statuses = decode_images(chunk, predictor, detector)
            logits = predict_logits(model, images, transform, batch, device, amp)  # [B, C]
            probs = torch.softmax(torch.from_numpy(logits).double(), dim=1).numpy()  # [B, C]
            for path, k, p, status in zip(chunk, logits.argmax(1), probs, statuses):
                rows.append([str(path), predictor.class_names[int(k)], *(float(v) for v in p),
                             *([status] if detector else [])])
            bar.update(len(chunk))
    write_csv(out, ["path", "predicted", *predictor.class_names, *(["align_status"] if detector else [])], rows)
    print(f"{out}: {len(rows)} image(s) predicted by {predictor.what} ({len(predictor.class_names)} classes, "
          f"device {device})")
    return 0


def _check_mode_flags(args: argparse.Namespace, mode: str) -> None:
    """Refuse flags of another model source (a --model beside --cell would be silently ignored)."""
    own = {"--cell": (), "--table": ("row", "dataset", "seed", "scale"),
           "--checkpoint": ("model", "sets")}[mode]
    foreign = [f"--{name.removesuffix('s') if name == 'sets' else name}"
               for name in ("row", "dataset", "seed", "scale", "model", "sets")
               if name not in own and getattr(args, name) not in (None, [])]
    if foreign:
        why = "a checkpoint names no cell" if mode == "--checkpoint" else "a cell names its own model and data"
        raise UserError(f"{', '.join(foreign)} cannot go with {mode}; {why}")
    if mode == "--table":
        missing = [f"--{n}" for n in ("row", "dataset", "seed") if getattr(args, n) is None]
        if missing:
            raise UserError(f"--table needs {', '.join(missing)} to name one cell")
    if mode == "--checkpoint" and args.model is None:
        raise UserError("--checkpoint needs --model NAME (the registered model the checkpoint belongs to)")


def image_files(inputs: list[str]) -> list[Path]:
    """The image files named by ``inputs`` (files as given, folders searched recursively, sorted).

    Every file's header is read here, so a file that is not an image is refused, by name, before
    a model is built.
    """
    from PIL import Image, UnidentifiedImageError

    allowed = " ".join(IMAGE_SUFFIXES)
    files: list[Path] = []
    for text in inputs:
        path = Path(text).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise UserError(f"{path}: folder holds no image files (searched recursively for {allowed})")
            files.extend(found)
        elif path.is_file():
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                raise UserError(f"{path} is not an image file: allowed suffixes {allowed}")
            files.append(path)
        else:
            raise UserError(f"{path} does not exist")
    for path in files:
        try:
            with Image.open(path):
                pass
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
            raise UserError(f"{path} is not an image Pillow can read ({type(err).__name__}: {err})") from None
    return files


def table_cell_id(store: Store, table: str, row: str, dataset: str, seed: int, scale: str | None) -> str:
    """The id of the cell ``collect`` shows for (table, row, dataset, seed[, scale]) under the
    table's recorded run configuration; a cell with no result is refused."""
    from harness.commands.common import run_configs
    from harness.report.collect import collect_tables
    from harness.specs import load_spec

    spec = load_spec(table)
    rows = [r.label for r in spec.rows]
    if row not in rows:
        raise UserError(f"--row {row!r} is not a row of {table}; allowed values: {', '.join(rows)}")
    columns = [c.key for c in spec.datasets]
    if dataset not in columns:
        raise UserError(f"--dataset {dataset!r} is not a column of {table}; allowed values: {', '.join(columns)}")
    scale = scale or (store.invocation(table) or {}).get("scale")
    configs = run_configs(store.root, [table], argparse.Namespace())
    frame = collect_tables([table], store.root, scale=scale, configs=configs)
    at = (f"{table}: row {row!r}, dataset {dataset!r}, seed {seed}" + (f", scale {scale}" if scale else ""))
    if frame.empty or not ((frame["row"] == row) & (frame["dataset"] == dataset)).any():
        raise UserError(f"{at}: the table's last run left this column out; run it with "
                        f"`python -m harness reproduce --table {table} --datasets {dataset}`")
    hits = frame[(frame["row"] == row) & (frame["dataset"] == dataset) & (frame["seed"] == seed)]
    if (hits["status"] == "reference").any():
        raise UserError(f"{at}: row {row!r} is a reference row (a number from a paper); it has no cell")
    rerun = f"`python -m harness reproduce --table {table}" + (f" --scale {scale}`" if scale else "`")
    if hits.empty:
        seeds = sorted(frame.loc[(frame["row"] == row) & (frame["dataset"] == dataset), "seed"].unique())
        raise UserError(f"{at}: the table's run has seeds {seeds[0]}..{seeds[-1]}; {rerun[:-1]} --seeds "
                        f"{seed + 1}` adds seed {seed}")
    done = hits[hits["status"].isin(["ok", "stale"])]
    if done.empty:
        raise UserError(f"{at}: no result in {store.root} ({', '.join(sorted(set(hits['status'])))}); run {rerun}")
    if done["scale"].nunique() > 1:
        raise UserError(f"{at}: results at scales {', '.join(sorted(done['scale'].unique()))}; pass --scale")
    hit = done.iloc[0]
    if hit["status"] == "stale":
        print(f"note: {at}: the stored result (cell {hit['cell_id']}) is stale (trained by other code or on other "
              "data); predicting with it anyway", file=sys.stderr)
    return str(hit["cell_id"])


def cell_predictor(store: Store, cell_id: str) -> Predictor:
    """The stored cell ``cell_id``'s model with its selected weights, and its test-time settings."""
    from harness.run.cellmodel import load_cell_model

    loaded = load_cell_model(store, cell_id)
    rec = loaded.record
    recipe = rec["recipe"]
    alignment = rec["data"].get("split_info", {}).get("alignment") or {}
    return Predictor(model=loaded.model, class_names=list(rec["class_names"]), img_size=recipe["img_size"],
                     augment=recipe["augment"], mean=tuple(recipe["mean"]), std=tuple(recipe["std"]),
                     amp=recipe.get("amp", "auto"), batch_size=recipe["batch_size"] * 2,
                     align_size=alignment.get("size") or ALIGN_SIZE, aligned_as=alignment.get("method"),
                     what=loaded.what)


def checkpoint_predictor(path: Path, model_name: str, preset: str, sets: list[str]) -> Predictor:
    """``model_name`` at ``preset`` with ``sets`` overrides, holding the weights of ``path``."""
    from harness.data.labels import CANONICAL_CLASSES
    from harness.run.cells import is_weights_key, split_overrides
    from harness.run.overrides import build_model, check_overrides
    from harness.run.plan import parse_sets

    check_model_preset(model_name, preset)
    overrides = parse_sets(sets)
    refused = sorted(k for k in overrides if is_weights_key(k) or k.startswith("data."))
    if refused:
        raise UserError(f"--set {', '.join(refused)}: not allowed with --checkpoint (the checkpoint holds every "
                        "weight; data.* keys describe training data)")
    recipe = check_overrides(model_name, preset, overrides, f"predict --model {model_name} --preset {preset}")
    model_o, _, _ = split_overrides(overrides)
    state = read_state_dict(path)
    what = f"{path.name} ({model_name}, {preset})"
    model = build_model(model_name, preset, model_o)
    classes = model.num_classes if "num_classes" in model_o else checkpoint_classes(model, state)
    if classes != model.num_classes:
        model = build_model(model_name, preset, {**model_o, "num_classes": classes})
    load_strict(model, state, f"checkpoint {path} for {model_name} ({preset})")
    if classes > len(CANONICAL_CLASSES):
        raise UserError(f"checkpoint {path}: its {model_name} head has {classes} outputs; predict names the "
                        f"classes of expression models (at most {len(CANONICAL_CLASSES)}: "
                        f"{', '.join(CANONICAL_CLASSES)})")
    return Predictor(model=model, class_names=list(CANONICAL_CLASSES[:classes]), img_size=recipe.img_size,
                     augment=recipe.augment, mean=tuple(recipe.mean), std=tuple(recipe.std), amp=recipe.amp,
                     batch_size=recipe.batch_size * 2, align_size=ALIGN_SIZE, aligned_as=None, what=what)


def checkpoint_classes(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> int:
    """The class count of ``state``: the model's own, unless every shape difference is the
    classifier's first dimension (then the checkpoint's)."""
    n = model.num_classes
    own = model.state_dict()
    counts = set()
    for key, value in state.items():
        mine = own.get(key)
        if mine is None or mine.shape == value.shape:
            continue
        if mine.ndim == value.ndim >= 1 and mine.shape[0] == n and mine.shape[1:] == value.shape[1:]:
            counts.add(int(value.shape[0]))
        else:
            return n  # an architecture mismatch, which load_strict reports
    return counts.pop() if len(counts) == 1 else n


def decode_images(paths: list[Path], predictor: Predictor, detector: Callable[[np.ndarray], list[Face]] | None
                  ) -> tuple[torch.Tensor, list[str]]:
    """Images as the loaders decode them: uint8 [B, 3, S, S] at the recipe's ``img_size``, and each
    one's alignment status ("" without a detector)."""
    import numpy as np
    import torch
    from PIL import Image

    from harness.data.align import align_image
    from harness.data.base import Entry, decode_image

    decoded, statuses = [], []
    for path in paths:
        source: Path | np.ndarray = path
        status = ""
        if detector is not None:
            try:
                with Image.open(path) as img:
                    pixels = np.asarray(img.convert("RGB"))  # [H, W, 3]
            except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
                raise UserError(f"{path}: cannot decode image: {err}") from None
            source, manifest = align_image(pixels, predictor.align_size, detector=detector)
            status = manifest["status"]
        decoded.append(decode_image(Entry(name=str(path), label=-1, source=source, where=str(path)),
                                    predictor.img_size))  # [S, S, 3]
        statuses.append(status)
    images = torch.from_numpy(np.ascontiguousarray(np.stack(decoded).transpose(0, 3, 1, 2)))  # [B, 3, S, S]
    return images, statuses


def predict_logits(model: torch.nn.Module, images: torch.Tensor, transform: Callable, batch: int,
                   device: torch.device, amp: torch.dtype | None) -> np.ndarray:
    """Logits float32 [B, C] of uint8 images [B, 3, S, S] through the runner's evaluation path
    (:func:`harness.run.train.runner.predict`: eval mode, ``transform`` on ``device``, autocast)."""
    import torch

    from harness.data.base import Split
    from harness.run.train.runner import predict

    split = Split(images=images, labels=torch.zeros(len(images), dtype=torch.int64),
                  names=[str(i) for i in range(len(images))])
    logits, _ = predict(model, split, transform, batch, device=device, amp=amp)
    return logits


def write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    """Write the table at once, through a temporary file (no half-written CSV on an interrupt)."""
    from harness.store import atomic_write_bytes

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    atomic_write_bytes(path, buf.getvalue().encode())
