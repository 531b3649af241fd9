"""Expand a table spec into cells: rows × datasets × seeds at one scale.

Everything is checked here, before any job is submitted: override keys and values (by building
each distinct model configuration on the meta device), the data root, the dataset protocol, and
where every model starts from (:func:`resolve_weights`): a pre-training stage becomes an upstream
cell, a checkpoint file is found and hashed, and a missing one is refused with its name.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from harness.run.cells import SCALES, Cell, PlannedCell, is_weights_key, split_overrides
from harness.run.codeversion import code_version
from harness.run.overrides import check_overrides
from harness.data.align import ALIGN_KNOBS
from harness.data.base import LOADER_KNOBS
from harness.errors import UserError, env
from harness.run.train.priors import pin_prior_file
from harness.specs import TableSpec
from harness.stages import load_stage
from harness.run.weights import WeightRef, file_digest
from methods.interface import Recipe

MAX_CELLS = 5_000  # a plan larger than this needs --yes
MAX_SEEDS = 1_000
SYNTHETIC_SEED = 0  # the stand-in data is one fixed dataset; training seeds vary, the data does not
SYNTHETIC_SCALE = {"tiny": "tiny", "paper": "medium"}  # stand-in size per scale preset


@dataclass(frozen=True)
class DataSource:
    """Where a table's datasets come from: a real data root, or the synthetic stand-ins."""

    root: Path | None = None  # None: generate synthetic stand-ins
    cache_dir: Path | None = None
    dry_run: bool = False  # never write to the synthetic cache (``reproduce --dry-run``)

    @property
    def synthetic(self) -> bool:
        """Whether results will come from synthetic stand-in data."""
        return self.root is None

    @classmethod
    def from_args(cls, data_root: str | None, cache_dir: str | None = None) -> "DataSource":
        """``--data-root`` or ``$FERBENCH_DATA_ROOT``; neither means synthetic stand-ins."""
        root = data_root or env("FERBENCH_DATA_ROOT")
        if root is not None and not Path(root).is_dir():
            raise UserError(f"data root {root!r} does not exist or is not a directory")
        return cls(Path(root) if root else None, Path(cache_dir) if cache_dir else None)


WEIGHTS_ENV = "FERBENCH_WEIGHTS"


@dataclass(frozen=True)
class WeightsSource:
    """Where checkpoint files are looked up, and whether synthetic stages may stand in for them."""

    root: Path | None = None  # the weights folder (``--weights-dir`` or ``$FERBENCH_WEIGHTS``)
    stand_ins: bool = False  # ``--stand-ins``: a missing file is replaced by the recipe's stand-in

    @classmethod
    def from_args(cls, weights_dir: str | None, stand_ins: bool = False) -> "WeightsSource":
        """``--weights-dir`` or ``$FERBENCH_WEIGHTS``; a folder that does not exist is an error."""
        root = weights_dir or env(WEIGHTS_ENV)
        if root is not None and not Path(root).is_dir():
            raise UserError(f"weights folder {root!r} does not exist or is not a directory")
        return cls(Path(root) if root else None, stand_ins)


def declared_weights(overrides: dict[str, Any], init: dict[str, str]) -> dict[str, str]:
    """Every weights key of a cell with its declared source, normalised: the recipe's default,
    then the overrides. ``None``/``"none"`` -> ``"none"``; a bare path -> ``"file:<path>"``."""
    out: dict[str, str] = {}
    for key, value in {**init, **{k: v for k, v in overrides.items() if is_weights_key(k)}}.items():
        if value is None or value == "none":
            out[key] = "none"
        elif not isinstance(value, str) or not value:
            raise UserError(f"{key}: {value!r} is not allowed; allowed values: stage:<id>, file:<name>, "
                            "a path to a local checkpoint, or none")
        elif value.startswith(("stage:", "file:")):
            out[key] = value
        else:
            out[key] = f"file:{value}"
    return out


def _find_file(name: str, weights: WeightsSource) -> Path | None:
    p = Path(name).expanduser()
    if p.is_absolute() or p.parent != Path("."):
        return p if p.is_file() else None
    if weights.root is not None and (weights.root / name).is_file():
        return weights.root / name
    return None


def _canonical(path: Path, weights: WeightsSource) -> str:
    """One spelling per file: its name in the weights folder, else its resolved path (so ``./w.pth``,
    ``w.pth`` and ``file:w.pth`` in the weights folder are one cell, not three)."""
    root = weights.root.resolve() if weights.root is not None else None
    return path.relative_to(root).as_posix() if root is not None and path.is_relative_to(root) else str(path)


def resolve_weights(declared: dict[str, str], stand_in: dict[str, str], scale: str, source: "DataSource",
                    weights: WeightsSource, where: str) -> tuple[dict[str, str], dict[str, str], list[Cell]]:
    """Resolve declared weights sources to content ids, file paths and upstream stage cells.

    Returns ``(ids, paths, stages)``: ``ids[key]`` is what enters the cell's hash
    (``stage:<id>@<cell id>``, ``file:<sha256>``, ``none``; ``standin:...`` for a stand-in),
    ``paths[key]`` the checkpoint file of ``file:`` sources, ``stages`` the upstream cells. A file
    that cannot be found is refused, naming it, unless ``weights.stand_ins`` and the recipe has a
    stand-in for that key.
    """
    ids: dict[str, str] = {}
    paths: dict[str, str] = {}
    stages: list[Cell] = []
    for key, src in sorted(declared.items()):
        kind, _, name = src.partition(":")
        stand_in_used = False
        if kind == "file":
            path = _find_file(name, weights)
            if path is not None:
                ids[key], paths[key] = str(WeightRef("file", digest=file_digest(path))), str(path.resolve())
                continue
            if not (weights.stand_ins and key in stand_in):
                where_not = (f"which is not in {weights.root}" if weights.root else
                             f"and no weights folder is given (--weights-dir or ${WEIGHTS_ENV})")
                alt = ""
                if key in stand_in:
                    alt = (", --stand-ins to run the synthetic stage " + stand_in[key].split(":", 1)[1]
                           if stand_in[key].startswith("stage:") else ", --stand-ins to train it from scratch")
                    alt += " in its place (marked as a stand-in)"
                raise UserError(f"{where}: {key} starts from the checkpoint {name!r}, {where_not}. Put the file "
                                f"there, pass --set {key}=/path/to/file{alt}, or --set {key}=none to train that "
                                "part from scratch")
            kind, _, name = stand_in[key].partition(":")
            stand_in_used = True
        if kind == "stage":
            cell = stage_cell(name, scale, source)
            if key not in load_stage(name).provides:
                raise UserError(f"{where}: {key}: stage {name!r} provides {load_stage(name).provides}, not {key}")
            ids[key] = str(WeightRef("stage", name, cell.id, stand_in_used))
            stages.append(cell)
        elif kind == "none":
            ids[key] = str(WeightRef("none", stand_in=stand_in_used))
        else:
            raise UserError(f"{where}: {key}: unknown source {src!r}; allowed: stage:<id>, file:<name>, none")
    return ids, paths, stages


@lru_cache(maxsize=None)
def export_keys(method: str) -> tuple[str, ...]:
    """The weights keys ``method``'s model hands on when it is a pre-training stage (built at tiny)."""
    import torch

    from harness.run.overrides import build_model
    from methods.interface import get_exports

    with torch.random.fork_rng():
        return tuple(sorted(get_exports(build_model(method, "tiny", {}))))


def stage_cell(stage_id: str, scale: str, source: "DataSource") -> Cell:
    """The cell of a pre-training stage at a scale: on the first of its ``real_datasets`` that the data
    root holds (its id then includes that data's fingerprint), else on its synthetic stand-in."""
    spec = load_stage(stage_id)
    where = f"stage {stage_id}"
    recipe = check_overrides(spec.method, scale, spec.set, where)
    model_o, train_o, data_o = split_overrides(spec.set)
    starts = {k: v for k, v in declared_weights(model_o, recipe.init).items() if v.startswith("stage:")}
    if starts:  # a stage's weights are resolved by nobody: a stage cannot start from a stage (nor itself)
        raise UserError(f"{where}: {', '.join(f'{k}={v}' for k, v in sorted(starts.items()))}: a pre-training "
                        "stage starts from a file or from scratch (none), never from a stage")
    missing = sorted(set(spec.provides) - set(export_keys(spec.method)))
    if missing:
        raise UserError(f"{where}: provides {', '.join(missing)}, which {spec.method} does not export "
                        f"(it exports {', '.join(export_keys(spec.method)) or 'nothing'})")
    real = next((d for d in spec.real_datasets if source.root is not None and (source.root / d).is_dir()), None)
    if real is not None:  # the generator's knobs describe the stand-in; a real copy has none
        data_o = {k: v for k, v in data_o.items() if k in (*ALIGN_KNOBS, *LOADER_KNOBS)}
        dataset, protocol, where_from = real, None, source
    else:
        dataset, protocol = spec.dataset, spec.protocol
        where_from = DataSource(None, source.cache_dir, dry_run=source.dry_run)
    root, fingerprint, synthetic = _resolve_dataset(where_from, dataset, dataset, protocol, scale,
                                                    tuple(sorted(data_o.items())))
    return Cell(method=spec.method, model=model_o, train=train_o, data=data_o, dataset=dataset,
                protocol=protocol, scale=scale, seed=spec.seed, fingerprint=fingerprint,
                code_version=code_version(spec.method), synthetic=synthetic, data_root=root, stage=stage_id)


@lru_cache(maxsize=None)
def _resolve_dataset(source: DataSource, key: str, name: str, protocol: str | None, scale: str,
                     knobs: tuple[tuple[str, Any], ...]) -> tuple[str, str, bool]:
    from harness.data import load_dataset, synthetic_root
    from harness.data.align import aligned_root, check_alignment
    from harness.data.base import limit_train

    knobs_d = dict(knobs)
    align = {k: knobs_d.pop(k) for k in ALIGN_KNOBS if k in knobs_d}  # data.align: the aligned copy
    limit = knobs_d.pop("train_limit", None)  # applied when the cell loads its data (runner)
    skip_bad = bool(knobs_d.pop("skip_bad", False))
    if source.synthetic:
        root = synthetic_root(name, scale=SYNTHETIC_SCALE[scale], seed=SYNTHETIC_SEED, cache_dir=source.cache_dir,
                              write_cache=not source.dry_run, **knobs_d)
        root = aligned_root(name, root, cache_dir=source.cache_dir, **align)
    else:
        if knobs_d:
            raise UserError(f"data.* overrides {sorted(knobs_d)} apply to synthetic data only")
        # a column's own folder, else its loader's: one dataset read under two protocols needs one
        # copy under the data root; an aligned column never falls back to the copy as shipped
        names = tuple(dict.fromkeys((key,) if align.get("align") else (key, name)))
        root = next((source.root / d for d in names if (source.root / d).is_dir()), None)
        if root is None:
            tried = " or ".join(str(source.root / d) for d in names)
            hint = f"; write the aligned copy with `python -m harness data align {name}`" if align.get("align") else ""
            raise UserError(f"dataset {key!r}: {tried} does not exist (data root {source.root}){hint}")
        check_alignment(root, **align)
    ds = load_dataset(name, root, protocol=protocol, decode_size=32, split_seed=0, cache=not source.dry_run,
                      skip_bad=skip_bad)
    if limit is not None:
        limit_train(ds, limit)  # refused here, not in every cell, when the split is smaller
    return str(root), ds.fingerprint, ds.synthetic


def declared_model(method: str, scale: str, overrides: dict[str, Any], where: str,
                   dataset: str | None = None) -> tuple[dict[str, Any], Recipe]:
    """A cell's model overrides as hashed (validated, with every weights key's declared source) and
    its recipe (``dataset``'s, where the method has per-dataset recipes)."""
    recipe = check_overrides(method, scale, overrides, where, dataset)
    model_o, _, _ = split_overrides(overrides)
    model_o = {**{k: v for k, v in model_o.items() if not is_weights_key(k)}, **declared_weights(model_o, recipe.init)}
    return model_o, recipe


def plan_table(spec: TableSpec, *, scale: str = "tiny", seeds: int | None = None,
               source: DataSource = DataSource(), extra: dict[str, Any] | None = None,
               weights: WeightsSource = WeightsSource(),
               row_seeds: dict[tuple[str, str], int] | None = None,
               max_cells: int = MAX_CELLS) -> list[PlannedCell]:
    """Every cell of a table, validated. ``extra`` overrides apply to every row (``--set``);
    ``row_seeds`` gives some (row label, dataset) cells more seeds than ``seeds`` (``--until-ci``).
    More than ``max_cells`` cells or :data:`MAX_SEEDS` seeds a cell is refused before anything is
    planned (a typo such as ``--seeds 1000000`` would otherwise plan for minutes).

    A cell that starts from a pre-training stage lists the stage's cell id in ``upstream``;
    :func:`with_upstream` adds the stage cells themselves to a list of cells to run.
    """
    if scale not in SCALES:
        raise UserError(f"unknown scale {scale!r}; allowed: {', '.join(SCALES)}")
    n_seeds = seeds or spec.seeds
    most_seeds = max([n_seeds, *(row_seeds or {}).values()])
    if most_seeds > MAX_SEEDS:
        raise UserError(f"{most_seeds} seeds: at most {MAX_SEEDS} seeds a cell (a seed is one training run)")
    n_cells = sum(not r.reference for r in spec.rows) * len(spec.datasets) * most_seeds
    if n_cells > max_cells:
        raise UserError(f"{spec.path}: the plan would have up to {n_cells} cells, more than {max_cells}; "
                        "pass --yes to plan it anyway")
    planned: list[PlannedCell] = []
    columns: dict[tuple, str] = {}  # one dataset as two columns must differ in its data (data.align)
    for col in spec.datasets:
        same = columns.setdefault((col.loader, col.protocol, repr(sorted(split_overrides(
            {**spec.base, **spec.scale_set.get(scale, {}), **col.set})[2].items()))), col.key)
        if same != col.key:
            raise UserError(f"{spec.path}: columns {same!r} and {col.key!r} both read {col.loader!r} with the "
                            "same protocol and data.* overrides; give one a data.align override")
    for i, row in enumerate(spec.rows):
        if row.reference:
            continue
        for col in spec.datasets:
            method, overrides = spec.resolved(row, col, scale)
            overrides = {**overrides, **(extra or {})}
            where = f"{spec.path}: row {i + 1} ({row.label!r}), {col.key}"
            model_o, recipe = declared_model(method, scale, overrides, where, col.loader)
            _, train_o, data_o = split_overrides(overrides)
            train_o = pin_prior_file(train_o)  # a prior file's content is part of the cell's id
            ids, paths, stages = resolve_weights({k: v for k, v in model_o.items() if is_weights_key(k)},
                                                 recipe.stand_in, scale, source, weights, where)
            model_o = {**model_o, **{k: f"file:{_canonical(Path(path), weights)}" for k, path in paths.items()}}
            root, fingerprint, synthetic = _resolve_dataset(source, col.key, col.loader, col.protocol, scale,
                                                            tuple(sorted(data_o.items())))
            for seed in range((row_seeds or {}).get((row.label, col.key), n_seeds)):
                cell = Cell(method=method, model=model_o, train=train_o, data=data_o, dataset=col.loader,
                            protocol=col.protocol, scale=scale, seed=seed, fingerprint=fingerprint,
                            code_version=code_version(method), synthetic=synthetic, data_root=root,
                            upstream=tuple(c.id for c in stages), weights=ids, weight_paths=paths)
                planned.append(PlannedCell(spec.id, row.label, i, col.key, seed, cell, tuple(stages)))
    return planned


def cell_recipe(cell: Cell) -> Recipe:
    """The recipe a cell trains with: its method's (per-dataset) recipe at its scale, ``train.*`` applied."""
    overrides = {**cell.model, **{f"train.{k}": v for k, v in cell.train.items()}}
    return check_overrides(cell.method, cell.scale, overrides, f"cell {cell.id}", cell.dataset)


def with_upstream(planned: list[PlannedCell]) -> list[Cell]:
    """The cells to run for ``planned``: every distinct upstream stage first, then the cells."""
    stages = {s.id: s for p in planned for s in p.stages}
    cells = {p.cell.id: p.cell for p in planned}
    return list(stages.values()) + list(cells.values())


def parse_sets(items: list[str] | None) -> dict[str, Any]:
    """``["app.k=160", "head=gap"]`` -> ``{"app.k": 160, "head": "gap"}`` (values parsed as YAML)."""
    import yaml

    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set {item!r}: expected key=value")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as err:
            raise UserError(f"--set {item!r}: value is not valid YAML ({err})") from None
    return out
