"""A stored cell's model: its selected weights (``model.pt``) loaded strictly into today's model.

Shared by ``predict`` (class probabilities for image files) and the cross-dataset evaluations
(:mod:`harness.run.evaluate`): both rebuild the model the cell trained, with no starting point
(every ``weights.*`` key is replaced by the selected weights), and load the weights the record
keeps beside it, checked against the checksum the record holds. torch is imported on use, so
importing this module costs nothing to a command that never loads a model.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import UserError

if TYPE_CHECKING:
    import torch

    from harness.run.cells import Cell
    from harness.store import Store

LISTED = 6  # keys named per kind in a checkpoint mismatch message


@dataclass
class CellModel:
    """A stored cell's model with its selected weights, in eval mode on the CPU, and its record."""

    model: torch.nn.Module
    record: dict[str, Any]
    cell: Cell
    what: str  # names the model in messages


def load_cell_model(store: Store, cell_id: str) -> CellModel:
    """The model of stored cell ``cell_id`` holding its selected weights; ``UserError`` when the
    cell is unknown, has no result, keeps no weights, or its weights do not match their checksum."""
    from harness.run.cells import Cell, is_weights_key
    from harness.run.codeversion import code_version
    from harness.run.overrides import build_model
    from harness.store import MODEL_WEIGHTS, file_sha256

    rec = store.record(cell_id)
    if rec is None:
        if store.cell(cell_id) is None:
            raise UserError(f"unknown cell {cell_id!r}: {store.root} has no such cell "
                            "(`python -m harness collect` lists the cells of a table)")
        raise UserError(f"cell {cell_id} has no result in {store.root} yet (see `python -m harness status`)")
    cell = Cell.from_dict(rec["cell"])
    weights = rec.get("weights_file")
    if weights is None:
        raise UserError(f"cell {cell_id}'s record keeps no weights (no {MODEL_WEIGHTS}): the runner that "
                        "wrote it kept test predictions only; a cell trained again keeps them")
    if file_sha256(store.cell_dir(cell_id) / weights["file"]) != weights["sha256"]:
        raise UserError(f"cell {cell_id}: {store.cell_dir(cell_id) / weights['file']} is missing or does not match "
                        "the checksum its record holds")
    if cell.code_version != code_version(cell.method):
        print(f"note: cell {cell_id} was trained by other code than this checkout's; its weights are loaded into "
              "today's model", file=sys.stderr)
    names = list(rec["class_names"])
    # Every starting point is replaced by the selected weights: build from nothing, then load them.
    model_o = {k: (None if is_weights_key(k) else v) for k, v in cell.model.items()}
    what = f"cell {cell_id} ({cell.method}, {cell.scale}, {cell.dataset})"
    state = read_state_dict(store.cell_dir(cell_id) / weights["file"])
    model = build_model(cell.method, cell.scale, {**model_o, "num_classes": len(names)})
    load_strict(model, state, what)
    return CellModel(model=model, record=rec, cell=cell, what=what)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from ``path``: the file's mapping of tensors, or the one under ``model``/``state_dict``."""
    import torch

    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    try:
        # weights_only: tensors and plain containers only, so a planted file cannot run code
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a file that is not a checkpoint
        raise UserError(f"checkpoint {path} cannot be read: not a file torch.save wrote, or one holding more than "
                        f"tensors and plain containers ({type(err).__name__})") from None
    for candidate in (obj, *(obj.get(k) for k in ("model", "state_dict") if isinstance(obj, dict))):
        if isinstance(candidate, dict) and candidate and all(torch.is_tensor(v) for v in candidate.values()):
            return candidate
    raise UserError(f"checkpoint {path} holds no state dict (a mapping of names to tensors, at the top or under "
                    "'model' or 'state_dict')")


def load_strict(model: torch.nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """Load ``state`` into ``model``; any missing or unexpected key or differing shape is refused, listed."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} (checkpoint {list(state[k].shape)}, model {list(own[k].shape)})"
              for k in own if k in state and state[k].shape != own[k].shape]
    problems = [f"{len(keys)} {kind}: {', '.join(keys[:LISTED])}{', ...' if len(keys) > LISTED else ''}"
                for kind, keys in (("missing keys", missing), ("unexpected keys", unexpected),
                                   ("shape mismatches", shapes)) if keys]
    if problems:
        raise UserError(f"{what}: the weights do not match the model: {'; '.join(problems)}")
    model.load_state_dict(state, strict=True)
    model.eval()
