"""Run tracking: each cell's training curves as TensorBoard event files, and in MLflow on request.

The runner opens a :class:`Tracker` for the cell it trains and hands it, once an epoch, what it
has just put in the cell's history: every named loss term (the epoch's mean), the validation and
the per-epoch test accuracy, the learning rate of every parameter group of every optimiser, and
the training throughput (images/s, over the epoch's training loop: validation and test are not in
it). At the end it hands over the record (selected model's test and validation accuracy).

Event files go to ``<results>/cells/<cell id>/tensorboard/`` (:func:`events_dir`), written by
tensorboard's own writer (``torch.utils.tensorboard.SummaryWriter``); the step of every scalar is
the epoch, as in the record's ``timing.history``. A cell resumed from its epoch checkpoint starts
its writer with ``purge_step`` at that epoch, so TensorBoard drops what an interrupted attempt
wrote for the epochs trained again. With ``$FERBENCH_MLFLOW`` set (``reproduce --mlflow URI``
sets it for the workers it starts), the same scalars go to one MLflow run per cell, whose
parameters are the cell id and its configuration; a resumed cell continues its run.

Tracking observes and never steers: it reads Python numbers the runner already has (no
host-device synchronisation of its own), draws no randomness, and a tracker that cannot work (no
``tensorboard`` or ``mlflow`` installed, a full disk, an unreachable server) is switched off with
one warning while training goes on. So it is not part of a cell's code version
(:mod:`harness.run.codeversion` skips this module and the runner's statements on ``track``).
"""
from __future__ import annotations

import json
import logging
import os
import re
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from harness.errors import UserError, env
from harness.run.cells import Cell
from harness.store import Store

EVENTS_DIR = "tensorboard"  # beside record.json in the cell's folder
MLFLOW_ENV = "FERBENCH_MLFLOW"
MLFLOW_EXPERIMENT = "ferbench"
MLFLOW_INSTALL = "pip install 'ferbench[tracking]' (or pip install mlflow)"
MLFLOW_CELL_TAG = "ferbench.cell_id"
log = logging.getLogger("ferbench.tracking")
_warned: set[str] = set()


def _warn_once(key: str, message: str) -> None:
    """One warning per process and reason: a worker runs many cells, and each would repeat it."""
    if key not in _warned:
        _warned.add(key)
        log.warning(message)


def events_dir(store: Store, cell_id: str) -> Path:
    """The folder of a cell's TensorBoard event files (``tensorboard --logdir`` it)."""
    return store.cell_dir(cell_id) / EVENTS_DIR


def has_events(folder: Path) -> bool:
    """Whether ``folder`` holds at least one TensorBoard event file."""
    return folder.is_dir() and any(folder.glob("events.out.tfevents.*"))


def check_mlflow(uri: str | None, flag: str = "--mlflow") -> None:
    """Raise :class:`UserError` when MLflow tracking is asked for (``uri``) but mlflow is missing."""
    if not uri:
        return
    import importlib.util

    if importlib.util.find_spec("mlflow") is None:
        raise UserError(f"{flag} needs mlflow: {MLFLOW_INSTALL}")


@contextmanager
def mlflow_for_workers(uri: str | None) -> Iterator[None]:
    """Within the block, the cells this process runs or starts (local workers, SLURM jobs, which
    inherit the environment) log to MLflow at ``uri``; nothing changes for ``None``.

    An environment variable, not a cell field or a runner argument: the tracking URI must not
    enter a cell's identity or code version.
    """
    if not uri:
        yield
        return
    before = os.environ.get(MLFLOW_ENV)
    os.environ[MLFLOW_ENV] = uri
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(MLFLOW_ENV, None)
        else:
            os.environ[MLFLOW_ENV] = before


class _Sink(Protocol):
    name: str

    def log(self, step: int, scalars: dict[str, float]) -> None: ...

    def close(self, status: str) -> None: ...


class _TensorBoard:
    """Scalars into event files, flushed at every call (an epoch) so a killed worker loses none."""

    name = "tensorboard"

    def __init__(self, folder: Path, first_step: int, config: dict[str, Any]) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(folder), purge_step=first_step)
        self.writer.add_text("cell", "```\n" + json.dumps(config, indent=1, sort_keys=True, default=str) + "\n```",
                             first_step)

    def log(self, step: int, scalars: dict[str, float]) -> None:
        for tag, value in scalars.items():
            self.writer.add_scalar(tag, value, step)
        self.writer.flush()

    def close(self, status: str) -> None:
        self.writer.close()


_MLFLOW_KEY = re.compile(r"[^\w\-. /]")  # MLflow's allowed key characters


def _mlflow_params(cell: Cell) -> dict[str, str]:
    """The cell id and its configuration as flat MLflow parameters (``train.lr``, ``app.k``, ...)."""
    d = cell.to_dict()
    params: dict[str, Any] = {"cell_id": cell.id}
    for key in ("method", "dataset", "protocol", "scale", "seed", "code_version", "fingerprint", "synthetic",
                "stage"):
        params[key] = d[key]
    for prefix in ("model", "train", "data", "weights"):
        params.update({f"{prefix}.{k}": v for k, v in sorted(d[prefix].items())})
    return {_MLFLOW_KEY.sub("_", k)[:250]: str(v)[:500] for k, v in params.items()}  # MLflow's length limits


class _MLflow:
    """One MLflow run per cell, found again by its cell-id tag when the cell resumes."""

    name = "mlflow"

    def __init__(self, uri: str, cell: Cell) -> None:
        from mlflow.entities import Param, RunStatus
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=uri)
        exp = self.client.get_experiment_by_name(MLFLOW_EXPERIMENT)
        if exp is None:
            try:
                exp_id = self.client.create_experiment(MLFLOW_EXPERIMENT)
            except Exception:  # another worker created it meanwhile
                exp_id = self.client.get_experiment_by_name(MLFLOW_EXPERIMENT).experiment_id
        else:
            exp_id = exp.experiment_id
        runs = self.client.search_runs([exp_id], filter_string=f"tags.`{MLFLOW_CELL_TAG}` = '{cell.id}'",
                                       max_results=1, order_by=["attributes.start_time DESC"])
        finished = RunStatus.to_string(RunStatus.FINISHED)
        if runs and runs[0].info.status != finished:
            self.run_id = runs[0].info.run_id
            self.client.update_run(self.run_id, status=RunStatus.to_string(RunStatus.RUNNING))
        else:
            name = f"{cell.stage or cell.method} {cell.dataset} seed {cell.seed} {cell.id[:8]}"
            self.run_id = self.client.create_run(exp_id, run_name=name, tags={MLFLOW_CELL_TAG: cell.id}).info.run_id
            self.client.log_batch(self.run_id, params=[Param(k, v) for k, v in _mlflow_params(cell).items()])

    def log(self, step: int, scalars: dict[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(_MLFLOW_KEY.sub("_", k), v, now, step)
                                                    for k, v in scalars.items()])

    def close(self, status: str) -> None:
        self.client.set_terminated(self.run_id, status=status)


def _close_all(sinks: list[_Sink], status: str) -> None:
    for sink in sinks:
        try:
            sink.close(status)
        except Exception as err:  # noqa: BLE001 - closing a tracker is never worth an error
            _warn_once(f"{sink.name}-close", f"run tracking: closing {sink.name} failed ({type(err).__name__}: {err})")
    sinks.clear()


class Tracker:
    """The trackers of one cell while it trains. Every method is safe to call: a tracker that
    fails is dropped with one warning, and training never sees it.

    A tracker left open (the cell raised) is closed as failed when it is garbage collected.
    """

    def __init__(self, sinks: list[_Sink]) -> None:
        self._sinks = sinks
        self._closer = weakref.finalize(self, _close_all, sinks, "FAILED")

    @property
    def active(self) -> list[str]:
        """Names of the trackers still writing (``tensorboard``, ``mlflow``)."""
        return [s.name for s in self._sinks]

    def log(self, step: int, scalars: dict[str, float | None]) -> None:
        """Log ``scalars`` (tag -> value; None and non-numbers are left out) at ``step`` (an epoch)."""
        values = {k: float(v) for k, v in scalars.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        for sink in list(self._sinks):
            try:
                sink.log(step, values)
            except Exception as err:  # noqa: BLE001 - a full disk or a lost server must not fail training
                self._sinks.remove(sink)
                _warn_once(f"{sink.name}-log", f"run tracking: {sink.name} stopped for this cell "
                                               f"({type(err).__name__}: {err}); training goes on")

    def throughput(self, epoch: int, images: int, seconds: float) -> None:
        """The training loop's throughput in epoch ``epoch``: ``images`` in ``seconds``."""
        if seconds > 0 and images:
            self.log(epoch, {"throughput/train_images_per_s": images / seconds})

    def epoch(self, epoch: int, entry: dict[str, Any], optimizers: dict[str, Any]) -> None:
        """One epoch's history ``entry`` (the record's ``timing.history`` item: ``losses``,
        ``train_loss``, ``val_accuracy``, ``test_accuracy``) and the lr each parameter group of
        each optimiser (``name -> torch optimiser``) holds at the end of the epoch."""
        losses = entry.get("losses") or {}
        scalars: dict[str, float | None] = {f"loss/{k}": v for k, v in losses.items()}
        if len(losses) > 1:
            scalars["loss/total"] = entry.get("train_loss")
        scalars["accuracy/val"] = entry.get("val_accuracy")
        scalars["accuracy/test"] = entry.get("test_accuracy")
        for name, opt in optimizers.items():
            for i, group in enumerate(opt.param_groups):
                scalars[f"lr/{name}/{i}"] = float(group["lr"])  # a plain float, or a CPU tensor
        self.log(epoch, scalars)

    def finish(self, record: dict[str, Any]) -> None:
        """The selected model's numbers from the cell's ``record``, then close as finished."""
        m = record.get("metrics", {})
        self.log(int(record.get("timing", {}).get("epochs", 0)),
                 {"final/test_accuracy": m.get("accuracy"), "final/test_mean_class_accuracy":
                  m.get("mean_class_accuracy"), "final/val_accuracy": m.get("val_accuracy")})
        self.close("FINISHED")

    def close(self, status: str = "FINISHED") -> None:
        """Flush and close every tracker; ``status`` is the MLflow run's (FINISHED, FAILED, KILLED)."""
        self._closer.detach()
        _close_all(self._sinks, status)


def open_run(cell: Cell, store: Store, *, first_epoch: int = 0, mlflow_uri: str | None = None) -> Tracker:
    """The trackers of ``cell``: TensorBoard event files under :func:`events_dir` when tensorboard is
    installed, and MLflow at ``mlflow_uri`` (default ``$FERBENCH_MLFLOW``) when set and installed.

    ``first_epoch`` is the epoch training starts (or resumes) at: what older event files hold
    from it on is superseded.
    """
    sinks: list[_Sink] = []
    try:
        sinks.append(_TensorBoard(events_dir(store, cell.id), first_epoch, cell.to_dict()))  # it makes the folder
    except ImportError:
        _warn_once("tensorboard-import", "run tracking: tensorboard is not installed, so no TensorBoard event "
                                         "files are written (pip install tensorboard); training goes on")
    except Exception as err:  # noqa: BLE001 - tracking never stops a cell
        _warn_once("tensorboard-open", f"run tracking: no TensorBoard event files for cell {cell.id} "
                                       f"({type(err).__name__}: {err}); training goes on")
    uri = mlflow_uri or env(MLFLOW_ENV)
    if uri:
        try:
            sinks.append(_MLflow(uri, cell))
        except ImportError:
            _warn_once("mlflow-import", f"run tracking: ${MLFLOW_ENV} is set but mlflow is not installed "
                                        f"({MLFLOW_INSTALL}); nothing is logged to MLflow")
        except Exception as err:  # noqa: BLE001 - an unreachable server must not fail the cell
            _warn_once("mlflow-open", f"run tracking: MLflow at {uri} is not logged to ({type(err).__name__}: "
                                      f"{err}); training goes on")
    return Tracker(sinks)
