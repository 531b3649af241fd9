"""Decode each dataset the cells read once, before they fan out.

Workers map the decoded-image cache (:mod:`harness.data.base`); built here, in the submitting
process, it is ready when the first cell starts, instead of being built under a lock by that cell
while the others wait. The size of the largest one sizes a SLURM task's memory
(:func:`harness.run.executors.slurm_resources`).
"""
from __future__ import annotations

from harness.run.cells import Cell


def decode_once(cells: list[Cell]) -> int:
    """Load (and so cache) every distinct dataset, protocol and decode size that ``cells`` read;
    return the largest one's decoded bytes (0 for no cells). A dataset that fails to load is left
    to its cells, which record the error in the failure ledger."""
    from harness.data import load_dataset
    from harness.run.plan import cell_recipe

    seen: dict[tuple, int] = {}
    for cell in cells:
        try:
            key = (cell.dataset, cell.data_root, cell.protocol, cell_recipe(cell).img_size,
                   bool(cell.data.get("skip_bad", False)))
            if key in seen:
                continue
            seen[key] = 0
            data = load_dataset(cell.dataset, cell.data_root, protocol=cell.protocol, decode_size=key[3],
                                split_seed=0, skip_bad=key[4])
        except Exception:  # noqa: BLE001 - the cell meets the same error and records it in the ledger
            continue
        seen[key] = sum(s.images.numel() * s.images.element_size() for s in data.splits.values())
    return max(seen.values(), default=0)
