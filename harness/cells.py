"""Cells: one (row, dataset, seed, scale) of a table, resolved to a content-hashed run config.

A cell's id hashes everything that can change its result: the model name and overrides, the
training and data overrides, the dataset's fingerprint and protocol, the scale preset, the seed
and the version of the code that trains it. Table and row labels are *not* part of it, so the
same configuration in two tables (APViT's full model is in Tables 1, 5 and 6) runs once.

Override keys live in one namespace shared by table specs, ``--set`` and model constructors:

* ``train.<field>`` -- a field of :class:`methods.interface.Recipe` (``train.epochs: 2``);
* ``data.<knob>`` -- a knob of the synthetic stand-in generator (``data.occlusion: 0``);
* ``weights.<part>`` -- where a part of the model starts from: ``stage:<id>`` (a pre-training
  stage, :mod:`harness.stages`), ``file:<name>`` (a checkpoint in the weights folder), a path, or
  ``none`` (from scratch). The method's recipe (:attr:`~methods.interface.Recipe.init`) gives the
  default; the harness resolves it, the model only ever receives a local file path;
* anything else -- a model override, validated by the model's own constructor.
"""
from __future__ import annotations

import ast
import dataclasses
import hashlib
import inspect
import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import timm
import torch

import methods  # noqa: F401  (importing it registers the FER models with timm)
from harness.checks import train_problems
from harness.data.align import ALIGN_KNOBS
from harness.data.synth import make_knobs
from harness.errors import UserError
from harness.priors import loss_problem
from methods.interface import Recipe, get_recipe

SCALES = ("tiny", "paper")
SLOT_FIELDS = ("method", "model", "train", "data", "dataset", "protocol", "scale", "seed")
ROOT = Path(__file__).resolve().parent.parent

# The training path: a change here changes every cell's code version.
TRAINING_SOURCES = ("harness/runner.py", "harness/flops.py", "harness/data", "harness/priors.py",
                    "methods/interface.py", "methods/losses.py", "methods/layers")


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace: the byte string that ids are hashed from."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def short_hash(obj: Any, n: int = 16) -> str:
    """First ``n`` hex digits of the SHA-256 of ``canonical_json(obj)``."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:n]


def _hash_files(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in sorted(paths):
        h.update(str(p.relative_to(ROOT)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


@lru_cache(maxsize=None)
def code_version(method: str) -> str:
    """Hash of the source that defines ``method`` and of the training path (not the git commit)."""
    files: list[Path] = []
    for rel in TRAINING_SOURCES:
        p = ROOT / rel
        files += sorted(p.rglob("*.py")) if p.is_dir() else [p] if p.exists() else []
    entry = timm.models.model_entrypoint(method)
    files += family_sources(Path(inspect.getsourcefile(entry)).resolve())
    return _hash_files(list(dict.fromkeys(files)))


def family_sources(path: Path) -> list[Path]:
    """A method family's file and the ``methods`` modules it imports (PF-ViT builds on ``methods/mae.py``),
    so that a change to any of them makes the family's results stale."""
    files = [path]
    for node in ast.walk(ast.parse(path.read_text())):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                 [node.module] + [f"{node.module}.{a.name}" for a in node.names]
                 if isinstance(node, ast.ImportFrom) and node.module else [])
        for name in names:
            if name.startswith("methods."):
                candidate = ROOT / (name.replace(".", "/") + ".py")
                if candidate.is_file():
                    files.append(candidate.resolve())
    return files


def split_overrides(overrides: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Split one override dict into ``(model, train, data)`` parts; prefixes are stripped."""
    model, train, data = {}, {}, {}
    for key, value in overrides.items():
        if key.startswith("train."):
            train[key[len("train."):]] = value
        elif key.startswith("data."):
            data[key[len("data."):]] = value
        else:
            model[key] = value
    return model, train, data


def apply_train_overrides(recipe: Recipe, train: dict[str, Any]) -> Recipe:
    """Return ``recipe`` with ``train.*`` overrides applied; unknown fields are an error."""
    fields = {f.name: f for f in dataclasses.fields(Recipe)}
    unknown = sorted(set(train) - set(fields))
    if unknown:
        raise ValueError(f"unknown override key(s) {['train.' + k for k in unknown]}; "
                         f"allowed train.* keys: {sorted('train.' + k for k in fields)}")
    problems = train_problems(train)
    if problems:
        raise ValueError("; ".join(problems))
    values = {k: tuple(v) if k == "no_weight_decay" else v for k, v in train.items()}
    return dataclasses.replace(recipe, **values)


def build_model(method: str, scale: str, model_overrides: dict[str, Any], **kwargs: Any) -> torch.nn.Module:
    """Build a registered model at a preset; the single place the harness calls timm."""
    if method not in timm.list_models():
        near = [m for m in timm.list_models() if m.split("_")[0] == method.split("_")[0]]
        raise UserError(f"unknown method {method!r}; FERbench models: {sorted(near) or 'see timm.list_models()'}")
    return timm.create_model(method, preset=scale, **model_overrides, **kwargs)


def is_weights_key(key: str) -> bool:
    """Whether an override key says where a part of the model starts from (``weights.*``)."""
    return key.startswith("weights.")


def check_overrides(method: str, scale: str, overrides: dict[str, Any], where: str,
                    dataset: str | None = None) -> Recipe:
    """Validate every override by building the model on the meta device (no memory, no compute).

    Returns the recipe (``dataset``'s, :func:`methods.interface.get_recipe`) with ``train.*``
    overrides applied. ``weights.*`` values are references
    the planner resolves (see :func:`harness.plan.resolve_weights`): the model is built without
    them. Errors are re-raised as :class:`UserError` prefixed with ``where`` (file and row),
    keeping the model's own message, which names the key and its allowed values.
    """
    model_o, train_o, data_o = split_overrides(overrides)
    model_o = {k: (None if is_weights_key(k) else v) for k, v in model_o.items()}
    try:
        knobs = {k: v for k, v in data_o.items() if k not in ALIGN_KNOBS}
        if knobs:
            make_knobs(**knobs)  # types and ranges of the synthetic generator's knobs
        return _recipe(method, scale, canonical_json(model_o), canonical_json(train_o), dataset)
    except UserError as err:
        raise UserError(f"{where}: {err}") from None
    except (ValueError, TypeError, KeyError) as err:
        raise UserError(f"{where}: {err}") from None


@lru_cache(maxsize=256)
def _recipe(method: str, scale: str, model_json: str, train_json: str, dataset: str | None = None) -> Recipe:
    with torch.device("meta"):
        model = build_model(method, scale, json.loads(model_json))
    recipe = apply_train_overrides(get_recipe(model, dataset), json.loads(train_json))
    problem = loss_problem(recipe.loss, recipe.loss_kwargs, dataset)  # alpha, gamma, the prior's source
    if problem:
        raise ValueError(problem)
    return recipe


@dataclass(frozen=True)
class Cell:
    """A fully resolved run configuration. Plain data: it pickles and serialises to JSON."""

    method: str
    model: dict[str, Any]
    train: dict[str, Any]
    data: dict[str, Any]
    dataset: str
    protocol: str | None
    scale: str
    seed: int
    fingerprint: str
    code_version: str
    synthetic: bool
    data_root: str  # where the data lives now; not hashed, the fingerprint stands for the content
    upstream: tuple[str, ...] = ()  # ids of the cells (pre-training stages) this one starts from
    # What each weights key starts from, by content: "stage:<id>@<cell id>", "file:<sha256>" or
    # "none"; "standin:" in front marks a synthetic stage standing in for a missing file.
    weights: dict[str, str] = field(default_factory=dict)
    weight_paths: dict[str, str] = field(default_factory=dict)  # files, where they are now; not hashed
    stage: str | None = None  # the stage id, when this cell is a pre-training stage

    def identity(self) -> dict[str, Any]:
        """Everything that determines the result (the hashed part)."""
        d = dataclasses.asdict(self)
        d.pop("data_root")
        d.pop("weight_paths")
        return d

    @property
    def id(self) -> str:
        """Content hash of :meth:`identity`."""
        return short_hash(self.identity())

    def slot(self) -> str:
        """What a table cell asks for, whatever the code version, data fingerprint or data location.

        Two cells with the same slot but different ids are the same experiment run by different
        code or on changed data: the older result is *stale*.
        """
        return canonical_json({k: getattr(self, k) for k in SLOT_FIELDS})

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form, with ``id``."""
        return {**dataclasses.asdict(self), "id": self.id}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Cell":
        """Inverse of :meth:`to_dict`."""
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        kw["upstream"] = tuple(kw.get("upstream", ()))
        return cls(**kw)


@dataclass(frozen=True)
class PlannedCell:
    """A cell as it appears in a table: which row, which column."""

    table_id: str
    row: str
    row_index: int
    dataset: str
    seed: int
    cell: Cell = field(compare=False)
    stages: tuple[Cell, ...] = field(default=(), compare=False)  # upstream pre-training stage cells
