"""The prior matrix D of PDLS / F-PDLS (``methods.losses``), resolved from data.

A loss only ever sees a ``[K, K]`` tensor. In a table spec or ``--set`` the prior is data:

* ``prior: votes`` -- row k is the mean annotator-vote distribution of the *training* images
  labelled k (the FERPlus loader keeps each image's votes, ``Split.votes``). Validation and test
  images never enter it. A class with no training image gets a one-hot row (it is never used:
  D is indexed by training labels only);
* ``prior: file:<path>`` -- a ``.npy`` or ``.csv`` (comma-separated, no header) ``[K, K]``
  matrix the user gives, rows in the dataset's canonical class order
  (``harness.data.labels.CANONICAL_CLASSES``). The planner pins the file's content into the
  cell (:func:`pin_prior_file`), so an edited matrix is a new cell, never a silently reused one;
* ``prior: [[...], ...]`` -- the matrix itself, inline.

:func:`resolve_loss_kwargs` turns a recipe's ``loss_kwargs`` into the loss's keyword arguments
and a provenance entry for the record (the source, the file's SHA-256, the matrix itself);
:func:`loss_problem` checks a recipe's loss and its arguments before anything runs. A dataset
without votes asked for ``votes`` is refused there, naming the dataset and the alternatives.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from methods.losses import LOSSES, build_loss, check_prior, loss_arguments

PRIOR_SOURCES = ("votes", "file:<path>", "an inline [K, K] list")
PIN = "@sha256:"  # what the planner appends to a prior file's path (its content's digest)
# Loaders whose datasets carry per-image vote distributions (``RawDataset.has_votes``).
VOTE_DATASETS = ("ferplus",)


def _alternatives() -> str:
    return ("give the matrix as prior: file:<path> (a .npy or .csv [K, K], rows summing to 1) or inline, "
            "or train with loss ce / label_smoothing / focal, which need no prior")


def parse_prior(value: Any, key: str = "train.loss_kwargs.prior") -> tuple[str, Any]:
    """``(kind, argument)`` of a prior as written: ``("votes", None)``, ``("file", Path)`` or
    ``("inline", value)``; ``ValueError`` naming ``key`` and the allowed values otherwise.

    A planned cell's file carries its digest (``file:<path>@sha256:<hex>``, :func:`pin_prior_file`);
    it is dropped here and checked by :func:`resolve_prior`.
    """
    if isinstance(value, str):
        if value == "votes":
            return "votes", None
        path = value[len("file:"):].split(PIN)[0].strip()
        if value.startswith("file:") and path:
            return "file", Path(path).expanduser()
    elif isinstance(value, (list, tuple)) and value and all(isinstance(r, (list, tuple)) for r in value):
        return "inline", value
    raise ValueError(f"{key}={value!r} is not allowed; allowed values: {', '.join(PRIOR_SOURCES)}")


def pin_prior_file(train: dict[str, Any]) -> dict[str, Any]:
    """``train.*`` overrides with a ``file:`` prior made absolute and pinned to its content.

    The planner calls it, so a cell's id hashes the matrix, not only its path: an edited file
    makes a new cell instead of silently reusing results (weights files work the same way), and
    the runner refuses a file that changed after planning. A missing file is left as written (the
    up-front check reports it).
    """
    kwargs = train.get("loss_kwargs")
    if not isinstance(kwargs, dict) or not isinstance(kwargs.get("prior"), str):
        return train
    try:
        kind, path = parse_prior(kwargs["prior"])
    except ValueError:
        return train
    if kind != "file" or not path.is_file():
        return train
    pinned = f"file:{path.resolve()}{PIN}{_file_sha256(path)[:16]}"
    return {**train, "loss_kwargs": {**kwargs, "prior": pinned}}


def load_prior_file(path: Path, key: str = "train.loss_kwargs.prior") -> np.ndarray:
    """Read a ``.npy`` or ``.csv`` prior file as a float64 array (validated by the caller)."""
    if not path.is_file():
        raise ValueError(f"{key}: prior file {path} does not exist")
    try:
        if path.suffix == ".npy":
            arr = np.load(path, allow_pickle=False)
        elif path.suffix == ".csv":
            arr = np.loadtxt(path, delimiter=",", ndmin=2)
        else:
            raise ValueError(f"{key}: prior file {path}: allowed formats: .npy, .csv")
    except (OSError, ValueError) as err:
        if str(err).startswith(key):
            raise
        raise ValueError(f"{key}: prior file {path} cannot be read as a [K, K] matrix ({err})") from None
    return np.asarray(arr, dtype=np.float64)


def vote_prior(labels: torch.Tensor, votes: torch.Tensor, num_classes: int) -> tuple[np.ndarray, list[int]]:
    """Row k = mean vote distribution of the samples labelled k; one-hot for a class without any.

    labels: [N] int64, votes: [N, K] rows summing to 1 -> (D [K, K] float64, samples per class).
    """
    y = labels.numpy().astype(np.int64)
    v = votes.numpy().astype(np.float64)
    counts = np.bincount(y, minlength=num_classes)
    sums = np.zeros((num_classes, num_classes))
    np.add.at(sums, y, v)
    d = np.eye(num_classes)
    seen = counts > 0
    d[seen] = sums[seen] / counts[seen, None]
    return d, counts.tolist()


def _file_sha256(path: Path) -> str:
    from harness.store import file_sha256

    return file_sha256(path) or ""


def resolve_prior(value: Any, data, key: str = "train.loss_kwargs.prior") -> tuple[torch.Tensor, dict[str, Any]]:
    """The prior ``value`` (as written) for a loaded dataset: ``(D [K, K], provenance)``.

    ``data`` is a :class:`harness.data.FERDataset`; D's K must be its number of classes.
    """
    kind, arg = parse_prior(value, key)
    k = data.num_classes
    info: dict[str, Any] = {"source": kind, "written": value if kind != "inline" else "inline"}
    if kind == "votes":
        train = data.splits["train"]
        if train.votes is None:
            raise ValueError(f"{key}=votes: dataset {data.name!r} has no annotator votes (only "
                             f"{', '.join(VOTE_DATASETS)} ship them); {_alternatives()}")
        matrix, counts = vote_prior(train.labels, train.votes, k)
        info.update(split="train", samples_per_class=counts,
                    empty_rows=[data.class_names[i] for i, n in enumerate(counts) if n == 0])
    elif kind == "file":
        matrix = load_prior_file(arg, key)
        info.update(path=str(arg.resolve()), sha256=_file_sha256(arg))
        pinned = str(value).partition(PIN)[2]
        if pinned and not info["sha256"].startswith(pinned):
            raise ValueError(f"{key}: prior file {arg} changed since the cell was planned (sha256 "
                             f"{info['sha256'][:16]} != {pinned}); plan the table again")
    else:
        matrix = np.asarray(arg, dtype=np.float64)
    where = f"{key} ({info.get('path', kind)})"
    d = check_prior(matrix, where)
    if d.shape[0] != k:
        raise ValueError(f"{where}: D is [{d.shape[0]}, {d.shape[0]}] but dataset {data.name!r} has {k} classes "
                         f"({', '.join(data.class_names)}); rows and columns follow that order")
    info.update(classes=list(data.class_names), matrix=d.double().tolist())
    return d, info


def resolve_loss_kwargs(recipe, data) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """A recipe's ``loss_kwargs`` as the loss's keyword arguments, and the prior's provenance.

    ``recipe`` is a :class:`methods.interface.Recipe`, ``data`` the cell's loaded dataset. Returns
    ``(kwargs, None)`` when the loss takes no prior.
    """
    kwargs = dict(recipe.loss_kwargs)
    if kwargs.get("prior") is None:
        return kwargs, None
    kwargs["prior"], info = resolve_prior(kwargs["prior"], data)
    return kwargs, info


def loss_problem(loss: str, loss_kwargs: dict[str, Any], dataset: str | None = None) -> str | None:
    """What is wrong with a recipe's loss and arguments, before any data is loaded; None if nothing.

    The loss is built with a stand-in prior (the uniform 2x2 matrix) so that its own checks
    (alpha, gamma, unknown arguments, a missing prior) speak; the prior string is parsed, a file
    read and validated, and ``votes`` refused for a ``dataset`` (loader name) without votes.
    """
    if loss not in LOSSES:
        return f"train.loss={loss!r}: allowed values: {', '.join(sorted(LOSSES))}"
    if not isinstance(loss_kwargs, dict):
        return f"train.loss_kwargs={loss_kwargs!r}: expected a mapping"
    kwargs = dict(loss_kwargs)
    try:
        if "prior" in kwargs and "prior" in loss_arguments(loss):
            kind, arg = parse_prior(kwargs["prior"])
            if kind == "votes" and dataset is not None and dataset not in VOTE_DATASETS:
                return (f"train.loss_kwargs.prior=votes: dataset {dataset!r} has no annotator votes (only "
                        f"{', '.join(VOTE_DATASETS)} ship them); {_alternatives()}")
            if kind == "file":
                check_prior(load_prior_file(arg), f"train.loss_kwargs.prior ({arg})")
            elif kind == "inline":
                check_prior(arg, "train.loss_kwargs.prior")
            kwargs["prior"] = torch.full((2, 2), 0.5)
        build_loss(loss, **kwargs)
    except ValueError as err:
        msg = str(err)
        return msg if msg.startswith("train.") else f"train.loss={loss!r}, train.loss_kwargs: {msg}"
    return None
