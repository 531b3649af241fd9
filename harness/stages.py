"""Pre-training stages: upstream cells that other cells start from, declared as data.

A stage is written like a table row, in ``tables/stages/<id>.yaml``: a registered model
(``method``), the dataset it trains on, overrides (``set``: model, ``train.*`` and ``data.*`` keys,
as in a table), a seed, and the weights keys it ``provides``. It becomes an ordinary
:class:`~harness.run.cells.Cell` (with ``stage`` set), content-hashed like every cell, so it runs
once in the store however many cells, tables or concurrent invocations need it, and a change to
its config gives it a new id, which makes every cell that starts from it stale.

Cells name a stage through a weights key (``weights.ir50: stage:faceid_ir50``, in a spec, in
``--set`` or as the default of a method's recipe, :attr:`methods.interface.Recipe.init`). The
stage's model hands its weights on through ``model.exports()``; the store keeps them as files
of the stage's record, checksummed like its predictions.

Stages train on the synthetic generator's data (they are stand-ins for the papers' large
pre-training sets, which FERbench never downloads); with real data, users pass the papers'
checkpoints as files instead (``--weights-dir``).
"""
from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness.errors import UserError
from harness.specs import TABLES_DIR, load_yaml, tables_dirs


STAGE_ID = re.compile(r"[A-Za-z0-9_]+")  # a stage id is a file name in a stages folder, never a path


class StageSpec(BaseModel):
    """One pre-training stage."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    purpose: str
    method: str
    dataset: str  # the synthetic stand-in it trains on
    protocol: str | None = None
    # Real datasets it trains on instead, the first that the invocation's data root holds (its
    # training split; a self-supervised stage never reads the labels): MAE on the FER faces themselves.
    real_datasets: list[str] = Field(default_factory=list)
    provides: list[str]
    set: dict[str, Any] = Field(default_factory=dict)
    seed: int = 0


def stages_dirs() -> list[Path]:
    """Where stages are declared: each tables folder's ``stages/`` (``$FERBENCH_TABLES``), then the repository's."""
    return list(dict.fromkeys([*(d / "stages" for d in tables_dirs()), TABLES_DIR / "stages"]))


def list_stages() -> list[str]:
    """The ids of every declared stage, sorted (files whose name is no stage id are not stages)."""
    return sorted({p.stem for d in stages_dirs() for p in d.glob("*.yaml") if STAGE_ID.fullmatch(p.stem)})


@lru_cache(maxsize=None)
def _load(path: Path, mtime_ns: int, size: int) -> StageSpec:
    data = load_yaml(path)  # the table specs' rules: repeated keys, depth and alias limits
    try:
        spec = StageSpec.model_validate(data)
    except ValidationError as err:
        lines = [f"  {'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors()]
        raise UserError(f"{path}: invalid stage spec\n" + "\n".join(lines)) from None
    if spec.id != path.stem:
        raise UserError(f"{path}: id {spec.id!r} does not match the file name {path.stem!r}")
    return spec


def load_stage(stage_id: str) -> StageSpec:
    """Load ``tables/stages/<stage_id>.yaml``; an unknown id lists the known ones.

    A stage id is a name (letters, digits, ``_``) of a file in a stages folder, never a path: a
    ``stage:../elsewhere/x`` reads nothing.
    """
    if not STAGE_ID.fullmatch(stage_id):
        raise UserError(f"{stage_id!r} is not a pre-training stage name (letters, digits and _, the name of a "
                        f"file in {', '.join(map(str, stages_dirs()))}, without .yaml); "
                        f"known stages: {', '.join(list_stages()) or 'none'}")
    for d in stages_dirs():
        path = d / f"{stage_id}.yaml"
        if path.is_file():
            return _load(path, path.stat().st_mtime_ns, path.stat().st_size)
    raise UserError(f"unknown pre-training stage {stage_id!r} (looked in {', '.join(map(str, stages_dirs()))}); "
                    f"known stages: {', '.join(list_stages()) or 'none'}")
