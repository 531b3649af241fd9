"""Run one cell: train with the method's recipe, select on validation, test once, write a record.

The model is selected by *validation* accuracy (the split carved from training by the data
loaders); the test split is evaluated exactly once, on the selected weights. The public APViT,
TransFER and MAE code select on the test set; we do not (see the report's methods notes).
Validation runs in the configuration that is tested: a model with a training-progress hook (a
keep schedule, ``app.schedule: decay``) is validated at progress 1.0, i.e. at the schedule's
final k and r, not at the k and r training has reached in that epoch. ``train.epochs: 0`` trains
nothing (``train.iterations`` is then ignored): the weights as loaded are validated and tested
once (``python -m harness eval``; ``metrics.selection`` is then ``"none"``).

Seeds control everything: Python, numpy and torch are seeded from the cell's seed, data order
and augmentation draw from generators seeded by ``(seed, epoch)``, so a run resumed from its
epoch checkpoint continues exactly as the uninterrupted run would have. On CPU with a fixed
thread count the same cell gives the same predictions bit for bit.

What a step costs besides the model (:mod:`harness.data.batches` for the data path): a step's
loss terms stay on the device and are read once per epoch (a GPU never waits for them); validation and the
per-epoch test pass run back to back with their logits kept on the device and copied once;
checkpoints are written by wall time (after the first epoch of a run, then every
:data:`CHECKPOINT_EVERY_S`, and after the last) from a host snapshot on a background thread; the
best state is a host copy, kept in memory; FLOPs are counted once per model configuration
(:func:`harness.run.train.flops.cached_flops`). On CUDA, conv-bearing models run
``channels_last`` under ``cudnn.benchmark``, optimisers are torch's fused ones, and
``train.compile`` compiles the model (:func:`speed_settings`); none of these applies on the CPU,
where results stay bit for bit those of the code before them.

:class:`CellJob` is what executors submit: a ``submitit`` checkpointable whose ``checkpoint``
re-submits itself on preemption or timeout; the resubmitted job resumes from the last epoch
checkpoint and its record says so.
"""
from __future__ import annotations

import copy
import math
import os
import threading
import platform
import random
import signal
import socket
import subprocess
import sys
import time
import traceback
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import submitit
import torch
import torch.nn as nn
from timm.data import Mixup
from timm.loss import SoftTargetCrossEntropy

from harness.errors import UserError
from harness.run.cells import Cell
from harness.run import tracking
from harness.run.devices import amp_dtype, device_name, resolve_device
from harness.run.overrides import apply_train_overrides, build_model
from harness.store import Store
from harness.run.train.optim import build_optimizers, build_scheduler, optimizer_plan, training_length
from harness.run.weights import WeightRef, file_digest
from methods.interface import Recipe, get_exports, get_recipe, set_progress, training_step

HEARTBEAT_S = 60.0  # seconds between progress heartbeats inside an epoch
# Seconds between epoch checkpoints (a run's first epoch and its last are always written); a
# preempted or killed run repeats at most this much training. $FERBENCH_CHECKPOINT_S overrides it.
CHECKPOINT_EVERY_S = 300.0
PACKAGES = ("torch", "torchvision", "timm", "fvcore", "numpy", "submitit", "pandas", "scipy")


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or infinite; the cell fails instead of recording garbage."""


class UpstreamMissing(RuntimeError):
    """A pre-training stage this cell starts from has no valid result, or a weights file changed."""


class InjectedFault(RuntimeError):
    """A fault requested by ``FERBENCH_INJECT_FAULT`` (used by the fault-tolerance tests)."""


def _injected_fault(cell_id: str) -> str | None:
    """``FERBENCH_INJECT_FAULT="<cell id>=raise|kill|preempt,..."`` asks a cell to fail on purpose.

    It lets the end-to-end tests exercise crashes, SIGKILL and preemption through the real
    executor; it is never set in normal use.
    """
    for item in os.environ.get("FERBENCH_INJECT_FAULT", "").split(","):
        cid, _, kind = item.partition("=")
        if cid and cell_id.startswith(cid):
            return kind
    return None


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _epoch_seed(seed: int, epoch: int) -> int:
    return seed * 100_003 + epoch


def mixer(recipe: Recipe, model: nn.Module, num_classes: int) -> Mixup | None:
    """timm's Mixup/CutMix for ``recipe`` (None when both are off); ``UserError`` when the recipe's
    loss or the model cannot take soft targets."""
    if not (recipe.mixup or recipe.cutmix):
        return None
    if recipe.loss != "ce":
        raise UserError(f"train.mixup / train.cutmix make soft targets, trained with soft-target cross-entropy; "
                        f"train.loss: {recipe.loss} is not allowed with them; allowed values: ce")
    if callable(getattr(model, "training_step", None)):
        raise UserError(f"train.mixup / train.cutmix: {type(model).__name__} computes its own loss terms from hard "
                        "labels; allowed values for this model: 0")
    if recipe.batch_size % 2:
        raise UserError(f"train.batch_size: {recipe.batch_size} with mixup or cutmix must be even (timm's Mixup)")
    return Mixup(mixup_alpha=recipe.mixup, cutmix_alpha=recipe.cutmix, label_smoothing=recipe.mix_smoothing,
                 num_classes=num_classes)


class Stepper:
    """The optimisers of one cell, their schedules, and how one batch's named terms update them.

    Each optimiser minimises the sum of its terms (all terms when it names none) and receives the
    gradients of that sum with respect to its own parameters only, so several optimisers (a
    generator and a discriminator) step from one forward pass.
    """

    def __init__(self, model: nn.Module, recipe: Recipe, steps_per_epoch: int, fused: bool = True) -> None:
        self.accum, self.micro = recipe.accum_steps, 0
        self.plan = optimizer_plan(model, recipe)
        self.opts = build_optimizers(model, recipe, fused)
        self.scheds = {n: build_scheduler(o, recipe, steps_per_epoch, **{k: self.plan[n][k] for k in
                                          ("schedule", "milestones", "warmup_epochs")})
                       for n, o in self.opts.items()}
        named = dict(model.named_parameters())
        self.params = {n: [named[p] for p in s["params"]] for n, s in self.plan.items()}

    @property
    def fused(self) -> bool:
        """Whether the optimisers run torch's fused kernels (what the record's provenance says)."""
        return any(o.defaults.get("fused") for o in self.opts.values())

    def lr(self) -> float:
        """The first optimiser's current lr (for messages)."""
        return next(iter(self.opts.values())).param_groups[0]["lr"]

    def step(self, terms: dict[str, torch.Tensor]) -> bool:
        """Backward each optimiser's objective into its own parameters; every ``accum_steps``-th
        batch clip, step and advance the schedules. True when the optimisers stepped."""
        objectives = []
        for name, s in self.plan.items():
            picked = [terms[t] for t in s["losses"] if t in terms] if s["losses"] else list(terms.values())
            if s["losses"] and not picked:
                raise ValueError(f"optimiser {name!r} minimises {list(s['losses'])} but the step returned "
                                 f"{sorted(terms)}")
            obj = picked[0] if len(picked) == 1 else torch.stack(picked).sum()
            objectives.append((name, obj / self.accum if self.accum > 1 else obj))  # the mean over the group
        if self.micro == 0:
            for o in self.opts.values():
                o.zero_grad(set_to_none=True)
        if len(objectives) == 1:
            objectives[0][1].backward()
        else:
            for i, (name, obj) in enumerate(objectives):
                torch.autograd.backward(obj, inputs=self.params[name], retain_graph=i < len(objectives) - 1)
        self.micro += 1
        if self.micro < self.accum:
            return False
        self.micro = 0
        for name, o in self.opts.items():
            if self.plan[name]["grad_clip"]:
                nn.utils.clip_grad_norm_(self.params[name], self.plan[name]["grad_clip"])
            o.step()
            if not isinstance(self.scheds[name], torch.optim.lr_scheduler.ReduceLROnPlateau):
                self.scheds[name].step()
        return True

    def end_epoch(self, val_accuracy: float) -> None:
        """Step the once-an-epoch schedules (``plateau``) with the epoch's validation accuracy."""
        for sched in self.scheds.values():
            if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
                sched.step(val_accuracy)

    def state_dict(self) -> dict[str, Any]:
        """Optimiser and schedule states, by optimiser name."""
        return {"opts": {n: o.state_dict() for n, o in self.opts.items()},
                "scheds": {n: s.state_dict() for n, s in self.scheds.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; the optimiser names must match."""
        if set(state["opts"]) != set(self.opts):
            raise ValueError(f"checkpoint optimisers {sorted(state['opts'])} != {sorted(self.opts)}")
        for n in self.opts:
            self.opts[n].load_state_dict(state["opts"][n])
            self.scheds[n].load_state_dict(state["scheds"][n])


def autocast(device: torch.device, dtype: torch.dtype | None):
    """``torch.autocast`` on ``device`` in ``dtype``, or a no-op context for full precision."""
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def eval_batch_size(train_batch: int, device: torch.device) -> int:
    """Evaluation batch: twice the training batch (on the CPU exactly that, so results stay bit for
    bit), at least 256 on a GPU."""
    return 2 * train_batch if device.type == "cpu" else max(2 * train_batch, 256)


@torch.no_grad()
def predict_splits(model: nn.Module, splits: list, transform, batch_size: int, device: torch.device | None = None,
                   amp: torch.dtype | None = None, memory_format: torch.memory_format | None = None
                   ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Logits and labels of each split, in its order, in one pass: ([N, C], [N]) per split on the
    host. Logits stay on the device until every split is done, then come over in one copy."""
    from harness.data import iterate_batches

    device = device or torch.device("cpu")
    model.eval()
    compiled = getattr(model, "_compiled_call_impl", None) is not None  # nn.Module.compile
    logits, labels, sizes = [], [], []
    for split in splits:
        n = 0
        for x, y, _ in iterate_batches(split, batch_size=batch_size, transform=transform, seed=0, epoch=0,
                                       shuffle=False, device=device):
            b = len(y)
            if compiled and b < batch_size:  # a full batch: no recompilation for the last one (eval mode:
                x = torch.cat([x, x.new_zeros(batch_size - b, *x.shape[1:])])  # samples do not mix)
            if memory_format is not None:
                x = x.contiguous(memory_format=memory_format)
            with autocast(device, amp):
                logits.append(model(x)[:b].float())
            labels.append(y)
            n += b
        sizes.append(n)
    all_logits, all_labels = torch.cat(logits).cpu().numpy(), torch.cat(labels).cpu().numpy()
    bounds = np.cumsum([0, *sizes])
    return [(all_logits[a:b], all_labels[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]


def predict(model: nn.Module, split, transform, batch_size: int, device: torch.device | None = None,
            amp: torch.dtype | None = None, memory_format: torch.memory_format | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels of a whole split, in the split's order. Returns ([N, C], [N]) on the host."""
    return predict_splits(model, [split], transform, batch_size, device, amp, memory_format)[0]


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy in %."""
    return float((logits.argmax(1) == labels).mean() * 100)


MAX_CONFUSION_CLASSES = 64  # a face-ID stage has hundreds of classes: no confusion matrix for those


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, class_names: list[str]) -> dict[str, Any]:
    """Accuracy and mean class accuracy in %, per-class accuracy, confusion matrix (rows = truth)."""
    c = len(class_names)
    confusion = np.bincount(y_true.astype(np.int64) * c + y_pred, minlength=c * c).reshape(c, c)
    support = confusion.sum(1)
    per_class = np.where(support > 0, np.diag(confusion) / np.maximum(support, 1), np.nan) * 100
    return {"accuracy": float((y_true == y_pred).mean() * 100),
            "mean_class_accuracy": float(np.nanmean(per_class)),
            "per_class_accuracy": {n: (None if np.isnan(a) else float(a)) for n, a in zip(class_names, per_class)},
            "confusion": confusion.tolist() if c <= MAX_CONFUSION_CLASSES else None}


def selection_on_test(history: list[dict[str, Any]]) -> dict[str, Any]:
    """What the public APViT/TransFER/MAE code would report: the best epoch *on the test set*."""
    scored = [h for h in history if h.get("test_accuracy") is not None]
    if not scored:
        return {"test_selected_accuracy": None, "test_selected_epoch": None}
    best = max(scored, key=lambda h: h["test_accuracy"])
    return {"test_selected_accuracy": best["test_accuracy"], "test_selected_epoch": best["epoch"]}


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10,
                             cwd=Path(__file__).resolve().parent)  # git finds the repository above
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def provenance(threads: int, device: torch.device | None = None, amp: torch.dtype | None = None) -> dict[str, Any]:
    """Where and with what a result was computed."""
    cpu = platform.processor()
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                   if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    packages = {}
    for p in PACKAGES:
        try:
            packages[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            packages[p] = None
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {"git_commit": _git("rev-parse", "HEAD"), "git_dirty": bool(status) if status is not None else None,
            "packages": packages, "python": platform.python_version(), "platform": platform.platform(),
            "cpu": cpu, "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "device": str(device or "cpu"), "device_name": device_name(device or torch.device("cpu")),
            "amp": str(amp).removeprefix("torch.") if amp is not None else "off",
            "threads": threads, "hostname": socket.gethostname()}


def resolve_start(cell: Cell, store: Store) -> tuple[dict[str, str | None], dict[str, dict[str, Any]]]:
    """Local paths for the cell's weights keys, and what each started from (for the record).

    A stage's weights are the artifact of its record in the store; a file must still have the
    content it had when the cell was planned (its digest is part of the cell's id).
    """
    paths: dict[str, str | None] = {}
    started: dict[str, dict[str, Any]] = {}
    for key, text in sorted(cell.weights.items()):
        ref = WeightRef.parse(text)
        entry: dict[str, Any] = {"declared": cell.model.get(key), "kind": ref.kind, "stand_in": ref.stand_in}
        if ref.kind == "none":
            paths[key] = None
        elif ref.kind == "file":
            path = Path(cell.weight_paths[key])
            digest = file_digest(path)
            if digest != ref.digest:
                raise UpstreamMissing(f"{key}: {path} is missing or changed since the cell was planned "
                                      f"(sha256 {digest} != {ref.digest}); plan the table again")
            paths[key] = str(path)
            entry.update(path=str(path), sha256=ref.digest)
        else:  # stage
            cid = ref.digest
            rec = store.record(cid)
            art = (rec or {}).get("artifacts", {}).get(key)
            if art is None:
                raise UpstreamMissing(f"{key}: pre-training stage {ref.stage} (cell {cid}) has no result with {key}")
            paths[key] = str(store.cell_dir(cid) / art["file"])
            entry.update(stage=ref.stage, cell=cid, sha256=art["sha256"][:16],
                         stage_test_accuracy=rec["metrics"]["accuracy"])
        started[key] = entry
    return paths, started


def _load_data(cell: Cell, decode_size: int):
    from harness.data import load_dataset
    from harness.data.base import limit_train

    data = load_dataset(cell.dataset, cell.data_root, protocol=cell.protocol, decode_size=decode_size,
                        split_seed=0, skip_bad=cell.data.get("skip_bad", False))
    return limit_train(data, cell.data["train_limit"]) if "train_limit" in cell.data else data


def epoch_eval_splits(cell: Cell, val_split, test_split) -> list:
    """What each epoch evaluates: validation (for selection) and, for a fine-tuning cell, the test
    split, recorded to measure test-set selection and never used. A pre-training stage's accuracy is
    in no table, so its epochs skip the test pass (for an MAE stage's linear probe that pass was
    over a third of the stage's time).

    Both run in eval mode under no_grad and draw from no generator that training uses, so the
    selected model and the honest number are the same with or without the test pass
    (``tests/harness/run/train/test_runner_test_selection.py`` checks)."""
    return [val_split] if cell.stage else [val_split, test_split]


def host_copy(obj: Any) -> Any:
    """``obj`` (a state dict, possibly nested) with every tensor copied to host memory."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: host_copy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(host_copy(v) for v in obj)
    return copy.deepcopy(obj)


def speed_settings(model: nn.Module, recipe: Recipe, device: torch.device, layout: bool = True,
                   fused: bool = False) -> dict[str, Any]:
    """Apply the GPU speed settings to ``model`` and say which hold (for the record's provenance).

    On CUDA, with ``layout``: ``channels_last`` for a model with convolutions (IR-50 is
    43% of APViT's FLOPs) and ``cudnn.benchmark``. ``train.compile`` compiles the model in place
    (``nn.Module.compile``: state-dict keys and custom training steps unchanged) on any device.
    Fused optimisers are the optimiser builder's choice; ``fused`` is what it chose
    (:attr:`Stepper.fused`), reported beside the rest.
    """
    cuda = device.type == "cuda" and layout
    convs = any(isinstance(m, nn.Conv2d) for m in model.modules())
    torch.backends.cudnn.benchmark = cuda
    if cuda and convs:
        model.to(memory_format=torch.channels_last)
    if recipe.compile != "off":
        model.compile(mode=recipe.compile)
    return {"channels_last": cuda and convs, "cudnn_benchmark": cuda, "compile": recipe.compile,
            "fused_optimizer": fused}


class CheckpointWriter:
    """Epoch checkpoints by wall time, written off the training thread.

    :meth:`due` is true after a run's first epoch, after the last, and once ``every_s`` seconds have
    passed since the previous one; :meth:`save` takes a host snapshot on the calling thread (the
    live tensors keep changing) and serialises and writes it on a background thread. An error in the
    writer is raised by the next :meth:`save` or by :meth:`close`.
    """

    def __init__(self, store: Store, cell_id: str, every_s: float | None = None) -> None:
        self.store, self.cell_id = store, cell_id
        self.every_s = float(os.environ.get("FERBENCH_CHECKPOINT_S", CHECKPOINT_EVERY_S)) if every_s is None \
            else every_s
        self.last: float | None = None
        self.thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def due(self, last_epoch: bool) -> bool:
        """Whether the epoch just finished is checkpointed."""
        return last_epoch or self.last is None or time.time() - self.last >= self.every_s

    def save(self, model: nn.Module, stepper: "Stepper", state: dict[str, Any]) -> None:
        """Snapshot ``model``, ``stepper`` and ``state`` now; write them in the background."""
        self.close()
        snapshot = {"model": host_copy(model.state_dict()), "optim": host_copy(stepper.state_dict()),
                    "state": {**state, "history": list(state["history"])}}  # best_state: already a host copy
        self.last = time.time()
        self.thread = threading.Thread(target=self._write, args=(snapshot,), name=f"checkpoint-{self.cell_id}",
                                       daemon=True)
        self.thread.start()

    def _write(self, snapshot: dict[str, Any]) -> None:
        try:
            self.store.save_checkpoint(self.cell_id, _tensor_bytes(snapshot))
        except BaseException as err:  # raised on the training thread by the next save or close
            self.error = err

    def close(self) -> None:
        """Wait for the write in flight; raise its error, if any."""
        if self.thread is not None:
            self.thread.join()
            self.thread = None
        if self.error is not None:
            err, self.error = self.error, None
            raise err


class LossMeter:
    """An epoch's named loss terms, kept on the device and read on the host once, at its end.

    :meth:`add` keeps the step's terms as one detached device tensor (no host sync in the step);
    :meth:`epoch_means` copies the epoch's [steps, terms] at once, adds them up in Python floats in
    step order (the sums training recorded before) and fails the cell on a non-finite term, naming
    the epoch, step and lr of the first step that produced one.
    """

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch
        self.names: list[str] | None = None
        self.steps: list[tuple[int, float]] = []  # (step, lr) on the host
        self.values: list[torch.Tensor] = []  # [T] per step, on the device

    def add(self, terms: dict[str, torch.Tensor], step: int, lr: float) -> None:
        """Keep this step's terms (the same names every step)."""
        self.names = self.names or list(terms)
        self.values.append(torch.stack([v.detach().float() for v in terms.values()]))
        self.steps.append((step, lr))

    def epoch_means(self) -> dict[str, float]:
        """The epoch's mean per term; :class:`NonFiniteLoss` if any term was NaN or infinite."""
        if not self.values:
            return {}
        rows = torch.stack(self.values).tolist()  # [S, T]: the epoch's one host sync
        sums = dict.fromkeys(self.names, 0.0)
        for (step, lr), row in zip(self.steps, rows):
            for k, v in zip(self.names, row):
                if not math.isfinite(v):
                    raise NonFiniteLoss(f"training loss is {v} (term {k!r}) at epoch {self.epoch}, step {step} "
                                        f"(lr {lr:.3g}); the cell is failed, not recorded")
                sums[k] += v
        return {k: v / len(rows) for k, v in sums.items()}


def train_cell(cell: Cell, store: Store, *, threads: int = 1, device: str = "auto") -> dict[str, Any]:
    """Train on ``device``, select on validation, test once, and write the record. Returns the record."""
    from harness.data import build_transform, iterate_batches, num_batches
    from harness.data.batches import resident
    from harness.run.train.flops import cached_flops
    from harness.run.train.priors import resolve_loss_kwargs
    from methods.losses import build_loss

    t_start = time.time()
    dev = resolve_device(device)
    torch.set_num_threads(threads)
    seed_everything(cell.seed)
    fault = _injected_fault(cell.id)

    weight_paths, started_from = resolve_start(cell, store)
    model_o = {**cell.model, **weight_paths}
    model = build_model(cell.method, cell.scale, model_o)
    recipe = apply_train_overrides(get_recipe(model, cell.dataset), cell.train)
    data = _load_data(cell, recipe.img_size)
    if model.num_classes != data.num_classes:
        model = build_model(cell.method, cell.scale, model_o, num_classes=data.num_classes)
    for key, report in getattr(model, "weight_reports", {}).items():
        started_from.setdefault(key, {})["load"] = report.summary()
    train_split, val_split, test_split = (resident(data.splits[k], dev) for k in ("train", "val", "test"))
    train_tf = build_transform(recipe.augment, recipe.img_size, train=True, mean=recipe.mean, std=recipe.std)
    eval_tf = build_transform(recipe.augment, recipe.img_size, train=False, mean=recipe.mean, std=recipe.std)
    amp = amp_dtype(recipe.amp, dev)
    model.to(dev)
    eval_batch = eval_batch_size(recipe.batch_size, dev)
    loss_kwargs, loss_prior = resolve_loss_kwargs(recipe, data)  # prior: votes / file: -> the [K, K] matrix
    loss_fn = build_loss(recipe.loss, **loss_kwargs).to(dev)  # a prior is a buffer of the loss
    batches = num_batches(train_split, batch_size=recipe.batch_size, sampler=recipe.sampler, drop_last=True)
    if 0 < batches < recipe.accum_steps and recipe.epochs:
        raise UserError(f"train.accum_steps: {recipe.accum_steps} batches of {recipe.batch_size} make one optimizer "
                        f"step, but an epoch of {cell.dataset}'s training split has {batches} batches; "
                        f"allowed values here: at most {batches}")
    steps_per_epoch = max(batches // recipe.accum_steps, 1)  # optimizer steps; a partial group is dropped
    stepper = Stepper(model, recipe, steps_per_epoch)
    speed = speed_settings(model, recipe, dev, fused=stepper.fused)
    fmt = torch.channels_last if speed["channels_last"] else None
    where = {"device": dev, "amp": amp, "memory_format": fmt}
    mix = mixer(recipe, model, data.num_classes)
    if mix is not None:
        loss_fn = SoftTargetCrossEntropy()

    state = {"epoch": 0, "step": 0, "best_val": -1.0, "best_epoch": -1, "best_state": None,
             "history": [], "train_s": 0.0, "resumed_from_epoch": None}
    ck = store.resume_checkpoint(cell.id, _load_checkpoint)  # a corrupt one is discarded and logged
    if ck is not None:
        model.load_state_dict(ck["model"])
        stepper.load_state_dict(ck["optim"])
        state = ck["state"]
        state["resumed_from_epoch"] = state["epoch"]
    setup_s = time.time() - t_start
    # Observation only: statements on `track` are not part of the code version (harness.run.codeversion).
    track = tracking.open_run(cell, store, first_epoch=state["epoch"])
    writer = CheckpointWriter(store, cell.id)
    timing = {"eval_s": 0.0, "checkpoint_s": 0.0}

    epochs, total_steps = training_length(recipe, steps_per_epoch)
    last_loss = float("nan")
    while state["epoch"] < epochs:
        epoch = state["epoch"]
        t0 = time.time()
        store.write_progress(cell.id, epoch=epoch, epochs=epochs, step=state["step"])
        beat = time.time()
        if fault and epoch == min(1, epochs - 1):
            writer.close()  # the tests then find the previous epoch's checkpoint on disk
            if fault == "raise":
                raise InjectedFault(f"injected failure in cell {cell.id} at epoch {epoch}")
            if fault == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            if fault == "preempt" and state["resumed_from_epoch"] is None:
                os.kill(os.getpid(), signal.SIGUSR2)  # submitit's preemption signal
                time.sleep(30)  # the handler checkpoints and exits before this returns
        torch.manual_seed(_epoch_seed(cell.seed, epoch))  # anything in the model that draws randomness
        np.random.seed(_epoch_seed(cell.seed, epoch) % 2**32)  # timm's Mixup draws from numpy
        model.train()
        meter = LossMeter(epoch)
        n_steps = 0
        for i, (x, y, _) in enumerate(iterate_batches(train_split, batch_size=recipe.batch_size, transform=train_tf,
                                                      seed=cell.seed, epoch=epoch, shuffle=True,
                                                      sampler=recipe.sampler, drop_last=True, device=dev)):
            if i >= steps_per_epoch * recipe.accum_steps:
                break  # the last, incomplete accumulation group of the epoch
            set_progress(model, state["step"] / max(total_steps, 1))
            if fmt is not None:
                x = x.contiguous(memory_format=fmt)
            if mix is not None:
                x, y = mix(x, y)  # soft targets [B, K]
            with autocast(dev, amp):
                terms = training_step(model, x, y, loss_fn)
            meter.add(terms, state["step"], stepper.lr())
            state["step"] += int(stepper.step(terms))
            n_steps += 1
            if time.time() - beat > HEARTBEAT_S:  # so that a long epoch is not taken for a stopped worker
                store.write_progress(cell.id, epoch=epoch, epochs=epochs, step=state["step"])
                beat = time.time()
            if state["step"] >= total_steps:
                break  # recipe.iterations reached inside the last epoch
        epoch_losses = meter.epoch_means()
        track.throughput(epoch, images=n_steps * recipe.batch_size, seconds=time.time() - t0)
        last_loss = sum(epoch_losses.values()) if epoch_losses else float("nan")
        t_eval = time.time()
        set_progress(model, 1.0)  # validate what will be tested: a keep schedule's final k and r
        evals = predict_splits(model, epoch_eval_splits(cell, val_split, test_split), eval_tf, eval_batch, **where)
        val_acc = accuracy(*evals[0])
        timing["eval_s"] += time.time() - t_eval
        stepper.end_epoch(val_acc)
        if val_acc > state["best_val"]:
            state.update(best_val=val_acc, best_epoch=epoch, best_state=host_copy(model.state_dict()))
        state["train_s"] += time.time() - t0
        state["history"].append({"epoch": epoch, "train_loss": last_loss, "losses": epoch_losses,
                                 "val_accuracy": val_acc,
                                 "test_accuracy": accuracy(*evals[1]) if len(evals) > 1 else None})
        track.epoch(epoch, state["history"][-1], stepper.opts)
        state["epoch"] = epoch + 1
        if writer.due(last_epoch=state["epoch"] >= epochs):
            t_ck = time.time()
            writer.save(model, stepper, state)
            timing["checkpoint_s"] += time.time() - t_ck
    t_ck = time.time()
    writer.close()
    timing["checkpoint_s"] += time.time() - t_ck

    if state["best_state"] is None:  # nothing trained (train.epochs 0): the loaded weights are the model
        set_progress(model, 1.0)
        state.update(best_val=accuracy(*predict(model, val_split, eval_tf, eval_batch, **where)),
                     best_state=host_copy(model.state_dict()))
    t_eval = time.time()
    model.load_state_dict(state["best_state"])
    set_progress(model, 1.0)
    logits, y_true = predict(model, test_split, eval_tf, eval_batch, **where)
    y_pred = logits.argmax(1)
    eval_s = time.time() - t_eval
    flops = cached_flops(model, recipe.img_size, store.root / "cache" / "flops",
                         key={"method": cell.method, "scale": cell.scale, "code_version": cell.code_version,
                              "num_classes": data.num_classes, "img_size": recipe.img_size,
                              "model": {k: v for k, v in cell.model.items() if not k.startswith("weights.")}})
    metrics = classification_metrics(y_true, y_pred, data.class_names)
    metrics.update(val_accuracy=state["best_val"], selected_epoch=state["best_epoch"],
                   selection="val" if state["history"] else "none",
                   **selection_on_test(state["history"]))
    record = {
        "cell": cell.to_dict(),
        "metrics": metrics,
        "class_names": list(data.class_names),
        "cost": flops,
        "timing": {"train_s": state["train_s"], "eval_s": eval_s, "setup_s": setup_s,
                   "epoch_eval_s": timing["eval_s"], "checkpoint_s": timing["checkpoint_s"],
                   "epochs": epochs, "steps": state["step"], "final_train_loss": last_loss,
                   "history": state["history"]},
        "recipe": {**recipe.to_dict(), "loss_prior": loss_prior},  # the prior's source and the matrix D
        "data": {"fingerprint": data.fingerprint, "split_info": data.split_info, "skipped": data.skipped,
                 "synthetic": data.synthetic, "sizes": {k: len(v.labels) for k, v in data.splits.items()},
                 "on_device": train_split.images.device.type != "cpu"},
        "resumed_from_epoch": state["resumed_from_epoch"],
        "started_from": started_from,
        "provenance": {**provenance(threads, dev, amp), "dataset_fingerprint": data.fingerprint, "speed": speed},
    }
    record["timing"].update(wall_s=time.time() - t_start, finished_at=time.time())
    store.write_result(cell.id, record, {"y_true": y_true.astype(np.int16), "y_pred": y_pred.astype(np.int16),
                                         "logits": logits.astype(np.float32)},
                       artifacts={k: _tensor_bytes(v) for k, v in get_exports(model).items()},
                       weights=_tensor_bytes(state["best_state"]))
    track.finish(record)
    return record


def _tensor_bytes(obj: Any) -> bytes:
    import io

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _load_checkpoint(blob: bytes) -> dict[str, Any]:
    """Decode an epoch checkpoint; raise if it is not one (the store then discards it)."""
    import io

    # weights_only: tensors and plain containers only, so a planted file cannot run code
    ck = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    if not isinstance(ck, dict) or not {"model", "optim", "state"} <= set(ck) \
            or not isinstance(ck["state"].get("epoch"), int):
        raise ValueError("not an epoch checkpoint (keys model, optim, state)")
    return ck


def job_log_path() -> str | None:
    """The stderr log of the submitit job running this code, if any (None outside a job, and under
    the debug executor, whose environment lacks ``SUBMITIT_FOLDER``)."""
    try:
        return str(submitit.JobEnvironment().paths.stderr)
    except Exception:  # a log path is never worth losing the error being recorded
        return None


def run_and_record(cell: Cell, store: Store, *, threads: int = 1, device: str = "auto") -> dict[str, Any] | None:
    """Train a cell; on an exception write its ledger entry (and return None) instead of raising.

    Recording in the worker keeps the ledger complete when the submitting process has detached.
    A process killed outright cannot record anything: the executor does it for it.
    """
    try:
        return train_cell(cell, store, threads=threads, device=device)
    except Exception as err:
        tb = traceback.format_exc()
        print(tb, file=sys.stderr, flush=True)
        try:
            store.record_failure(cell.id, error_type=type(err).__name__, message=str(err), traceback_tail=tb,
                                 log_path=job_log_path())
        except OSError as disk:  # a full or read-only disk: say so in one line, keep the cause
            print(f"cell {cell.id} failed ({type(err).__name__}: {err}) and its failure could not be written to "
                  f"{store.root}: {disk.strerror or disk}", file=sys.stderr, flush=True)
        return None


class CellJob(submitit.helpers.Checkpointable):
    """Run one cell as one job: ``CellJob()(cell_dict, results_dir, threads, device)`` (SLURM arrays).

    On preemption or timeout submitit calls :meth:`checkpoint`, which re-submits the same call;
    training state is already on disk (one checkpoint per epoch), so the new job resumes.
    """

    def __call__(self, cell: dict[str, Any], results_dir: str, threads: int = 1, device: str = "auto") -> bool:
        return run_and_record(Cell.from_dict(cell), Store(results_dir), threads=threads, device=device) is not None
