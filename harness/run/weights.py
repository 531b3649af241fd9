"""Where a part of a model starts from, by content: the ``weights.*`` reference of a cell.

A cell's :attr:`~harness.run.cells.Cell.weights` maps each ``weights.<part>`` key to a reference string
that enters the cell's hash. :class:`WeightRef` owns that format; the planner writes it, the
runner and the commands read it, and nothing else takes it apart:

* ``stage:<stage id>@<cell id>`` -- the artifact of a pre-training stage's cell;
* ``file:<sha256[:16]>`` -- a checkpoint file, by content (its path is not hashed);
* ``none`` -- from scratch;
* ``standin:`` in front -- a synthetic stage (or scratch) standing in for a missing file.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.store import file_sha256

KINDS = ("stage", "file", "none")
_STAND_IN = "standin:"


@dataclass(frozen=True)
class WeightRef:
    """One parsed weights reference (see the module docstring for the string form)."""

    kind: str  # stage | file | none
    stage: str = ""  # the stage id (kind "stage")
    digest: str = ""  # the stage's cell id (kind "stage") or the file's sha256[:16] (kind "file")
    stand_in: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown weights reference kind {self.kind!r}; allowed: {', '.join(KINDS)}")

    @classmethod
    def parse(cls, ref: str) -> "WeightRef":
        """The inverse of ``str(ref)``; ``ValueError`` for anything else."""
        stand_in = ref.startswith(_STAND_IN)
        kind, _, rest = ref.removeprefix(_STAND_IN).partition(":")
        if kind == "stage":
            stage, _, cid = rest.partition("@")
            return cls("stage", stage, cid, stand_in)
        if kind == "file":
            return cls("file", "", rest, stand_in)
        if kind == "none" and not rest:
            return cls("none", stand_in=stand_in)
        raise ValueError(f"not a weights reference: {ref!r}")

    def __str__(self) -> str:
        body = {"stage": f"stage:{self.stage}@{self.digest}", "file": f"file:{self.digest}", "none": "none"}[self.kind]
        return (_STAND_IN if self.stand_in else "") + body

    @property
    def label(self) -> str:
        """What a person reads: ``stage:<id>``, ``file:<digest>`` or ``none`` (no cell id)."""
        return str(self).split("@")[0]


def file_digest(path: Path) -> str | None:
    """First 16 hex digits of a file's SHA-256 (None if it cannot be read)."""
    digest = file_sha256(path)
    return digest[:16] if digest else None
