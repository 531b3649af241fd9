"""The small training interface between a method and the harness.

The harness builds every model with ``timm.create_model(name, preset=..., **overrides)``
and learns everything else it needs from two attributes the model carries:

* ``model.recipe`` -- a :class:`Recipe`: how to train it at the preset it was built for;
* ``model.recipes`` -- optional: a dict from a dataset (its loader name, ``"affectnet"``) to the
  :class:`Recipe` for that dataset (a paper's per-dataset settings); the harness trains a cell
  with its dataset's entry, or ``model.recipe`` when there is none (:func:`get_recipe`);
* ``model.set_progress(p)`` -- optional; called by the trainer with the fraction of training
  done (0.0 .. 1.0) so that keep schedules and similar curricula can follow it;
* ``model.exports()`` -- optional; what a *pre-training stage* hands on to the models that
  fine-tune from it: a dict from a weights key (``"weights.ir50"``) to a state dict in the layout
  that key's loader reads;
* ``model.training_step(x, y, loss_fn)`` -- optional; one batch's *named loss terms*, a dict
  ``{name: scalar tensor}`` (already weighted). Without it the step is
  ``{"loss": loss_fn(model(x), y)}`` (:func:`training_step`). ``x`` is the augmented batch on
  the training device, ``y`` its int64 labels, ``loss_fn`` the recipe's loss
  (``methods.losses``). Every term is logged per epoch in the record;
* several optimisers: ``Recipe.optimizers`` maps an optimiser's name to the parameters it owns
  (name prefixes), the terms it minimises and what differs from the recipe's settings
  (:data:`OPTIMIZER_KEYS`). Each optimiser minimises the sum of its terms and gets gradients for
  its own parameters only (a GAN's generator and discriminator step from one forward pass);
  each has its own lr schedule. Without any, one optimiser ``"main"`` owns every trainable
  parameter and minimises every term;
* pictures for the report, optional: ``model.kept_patches(x)`` -- which patches survive each
  token-pruning step (``[(stage, kept [B, grid] bool), ...]``); ``model.generate(x)`` -- named
  images a generator makes of x (``{name: [B, 3, H, W]}``, in the input's normalised space);
* layer-wise lr decay (``Recipe.layer_decay``) uses timm's ``param_groups_layer_decay``, i.e. the
  model's ``group_matcher`` (every timm ViT has one).

Where training starts is part of the recipe (:attr:`Recipe.init`): for each weights key of the
model, either a checkpoint file name (``"file:<name>"``, looked up in the user's weights folder),
an upstream pre-training stage (``"stage:<id>"``, declared in ``tables/stages/``) or ``"none"``
(from scratch). The harness resolves these; the model only ever sees local file paths.

Nothing here imports the harness.
"""
from __future__ import annotations

import math
from dataclasses import MISSING, asdict, dataclass, field
from typing import Any

import torch
import torch.nn as nn
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD


def allowed(default: Any = MISSING, *, factory: Any = MISSING, **limits: Any) -> Any:
    """A dataclass field whose allowed values are data: ``ge``/``gt``/``le``/``lt`` bounds or ``choices``.

    The harness checks every ``train.*`` override against them before anything runs.
    """
    return field(default=default, default_factory=factory, metadata={"allowed": limits})


@dataclass(frozen=True)
class Recipe:
    """Training hyper-parameters of one method at one preset, as plain data.

    ``augment`` names a pipeline of ``harness.data.transforms`` and ``loss`` one of
    ``methods.losses``; the harness checks those names against its registries.
    """

    # Which of a method's named recipes this is ("rafdb", "affectnet", ...), for the record and
    # the report; "" for a method with a single recipe.
    name: str = ""
    optimizer: str = allowed("sgd", choices=("sgd", "adam", "adamw"))
    lr: float = allowed(1e-3, gt=0)
    momentum: float = allowed(0.9, ge=0, lt=1)
    weight_decay: float = allowed(5e-4, ge=0)
    no_weight_decay: tuple[str, ...] = ()  # parameter-name substrings exempt from weight decay
    epochs: int = allowed(40, ge=0)  # 0: evaluate the starting weights, train nothing (`eval`)
    batch_size: int = allowed(128, ge=1)
    grad_clip: float | None = allowed(10.0, gt=0)  # L2 norm; None disables
    # plateau: the lr times lr_gamma when validation accuracy has not improved for plateau_epochs
    # epochs (torch's ReduceLROnPlateau, stepped once an epoch; no warm-up)
    schedule: str = allowed("cosine", choices=("cosine", "step", "constant", "plateau"))
    plateau_epochs: int = allowed(30, ge=1)
    # step schedule: fractions of training at which the lr is multiplied by lr_gamma; () = three equal steps
    milestones: tuple[float, ...] = ()
    lr_gamma: float = allowed(0.1, gt=0, le=1)  # step schedule: the lr's factor at each milestone
    # training length in optimizer steps; None = ``epochs`` whole epochs. When set, the last
    # epoch is cut short and ``epochs`` is ignored.
    iterations: int | None = None
    # A cap on ``epochs`` whole epochs, in optimizer steps (None: no cap): a tiny preset's compute
    # budget, so that a large real split costs what a small one does. Under the cap the last epoch
    # is cut short and warm-up keeps its share of training (warmup_epochs / epochs).
    max_iterations: int | None = None
    # Gradient accumulation: each optimizer step sums the gradients of accum_steps batches of
    # batch_size, so the effective batch is batch_size * accum_steps; lengths and schedules count
    # optimizer steps.
    accum_steps: int = allowed(1, ge=1)
    # timm's Mixup / CutMix on training batches (0 = off) with its label smoothing; the targets are
    # then soft and the loss is timm's SoftTargetCrossEntropy (train.loss must be ce). For models
    # whose loss is plain classification (no training_step of their own).
    mixup: float = allowed(0.0, ge=0)
    cutmix: float = allowed(0.0, ge=0)
    mix_smoothing: float = allowed(0.0, ge=0, lt=1)
    warmup_epochs: int = allowed(0, ge=0)
    img_size: int = allowed(112, ge=8)
    augment: str = "apvit"  # name of a train-time pipeline in harness.data.transforms
    loss: str = "ce"  # name in methods.losses
    loss_kwargs: dict[str, Any] = field(default_factory=dict)
    sampler: str = allowed("none", choices=("none", "sqrt", "heavy"))  # class-balanced oversampling
    # Input normalisation, (x / 255 - mean) / std per RGB channel, in training and evaluation.
    # The ImageNet constants (timm's) are what the APViT and TransFER configs use; a method whose
    # pre-training used others (face.evoLVe's 0.5 / 0.5, MAE's own) states them in its recipe.
    mean: tuple[float, ...] = IMAGENET_DEFAULT_MEAN
    std: tuple[float, ...] = IMAGENET_DEFAULT_STD
    # Where training starts, per weights key: "file:<name>" | "stage:<id>" | "none" (see module doc).
    init: dict[str, str] = field(default_factory=dict)
    # What stands in for a missing "file:" init when the user asks for stand-ins (--stand-ins).
    stand_in: dict[str, str] = field(default_factory=dict)
    # Named optimisers: {name: {"params": [prefixes], "losses": [terms], "lr": ..., ...}}; {} = one
    # optimiser "main" over every trainable parameter and term (see the module doc).
    optimizers: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Layer-wise lr decay (BEiT / MAE fine-tuning): block i of L gets lr * layer_decay ** (L - i);
    # None = off. Needs a model with timm's ``group_matcher``.
    layer_decay: float | None = allowed(None, gt=0, le=1)
    # Mixed precision: "auto" = bf16 autocast on CUDA, off on CPU; "bf16" forces it; "off".
    amp: str = allowed("auto", choices=("auto", "bf16", "off"))
    # torch.compile over the model ("default" or "max-autotune" mode); "off" = eager. Numerics move
    # within float tolerance, so a changed value is a different cell (it is a train.* key).
    compile: str = allowed("off", choices=("off", "default", "max-autotune"))

    def __post_init__(self) -> None:
        ms = self.milestones
        if (not isinstance(ms, (list, tuple)) or not all(isinstance(m, (int, float)) and 0 < m < 1 for m in ms)
                or list(ms) != sorted(ms)):
            raise ValueError(f"train.milestones: {ms!r} is not allowed; allowed values: increasing fractions in (0, 1)")
        for key in ("iterations", "max_iterations"):
            v = getattr(self, key)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ValueError(f"train.{key}: {v!r} is not allowed; allowed values: an integer >= 1 or None")
        check_optimizers(self.optimizers)
        for key, values, low in (("train.mean", self.mean, -math.inf), ("train.std", self.std, 0.0)):
            if (not isinstance(values, (list, tuple)) or len(values) != 3
                    or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > low for v in values)):
                raise ValueError(f"{key}: {values!r} is not allowed; allowed values: three numbers (RGB)"
                                 + (", each > 0" if low == 0.0 else ""))

    def summary(self) -> str:
        """One line for reports: name, optimiser, lr, length, batch, sampler."""
        return recipe_summary(self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        """Return the recipe as a JSON-serialisable dict."""
        d = asdict(self)
        d["no_weight_decay"] = list(self.no_weight_decay)
        d["milestones"] = list(self.milestones)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d


# What an entry of ``Recipe.optimizers`` may say; absent keys take the recipe's own value.
OPTIMIZER_KEYS = ("params", "losses", "optimizer", "lr", "momentum", "weight_decay", "schedule",
                  "milestones", "warmup_epochs", "grad_clip", "betas")


def check_optimizers(optimizers: Any) -> None:
    """Raise ``ValueError`` naming the key if ``Recipe.optimizers`` is malformed."""
    if not isinstance(optimizers, dict):
        raise ValueError(f"train.optimizers: {optimizers!r} is not allowed; allowed values: a mapping "
                         "from an optimiser's name to its settings")
    for name, spec in optimizers.items():
        if not isinstance(spec, dict):
            raise ValueError(f"train.optimizers.{name}: {spec!r} is not allowed; allowed values: a mapping")
        unknown = sorted(set(spec) - set(OPTIMIZER_KEYS))
        if unknown:
            raise ValueError(f"train.optimizers.{name}: unknown key(s) {unknown}; allowed: {', '.join(OPTIMIZER_KEYS)}")
        for key in ("params", "losses"):
            v = spec.get(key, [])
            if not isinstance(v, (list, tuple)) or not all(isinstance(i, str) for i in v):
                raise ValueError(f"train.optimizers.{name}.{key}: {v!r} is not allowed; allowed values: a list of names")
    if len(optimizers) > 1 and any(not spec.get("params") for spec in optimizers.values()):
        raise ValueError("train.optimizers: with several optimisers each must name its params")


def recipe_summary(d: dict[str, Any]) -> str:
    """:meth:`Recipe.summary` of a recipe stored as a dict (a record's ``recipe``)."""
    length = (f"{d['iterations']:,} iterations" if d.get("iterations") is not None
              else f"{d.get('epochs')} epochs" + (f" (at most {d['max_iterations']:,} steps)"
                                                  if d.get("max_iterations") is not None else ""))
    head = f"{d['name']}: " if d.get("name") else ""
    accum = d.get("accum_steps") or 1
    batch = f"batch {d.get('batch_size')}" + (f" x {accum} accumulated" if accum > 1 else "")
    mixing = (f", mixup {d['mixup']:g} / cutmix {d.get('cutmix', 0):g} / smoothing {d.get('mix_smoothing', 0):g}"
              if d.get("mixup") or d.get("cutmix") else "")
    return (f"{head}{d.get('optimizer')} lr {d.get('lr'):g} {_schedule_text(d)}, {length}, {batch}, "
            f"sampler {d.get('sampler')}, augment {d.get('augment')}{mixing}")


def _schedule_text(d: dict[str, Any]) -> str:
    """The lr schedule in a few words: ``(cosine, warm-up 1 epoch)``, ``(x0.1 at 1/3, 2/3 of training)``."""
    kind, gamma = d.get("schedule", "cosine"), d.get("lr_gamma", 0.1)
    if kind == "step":
        steps = ", ".join(f"{m:g}" for m in d.get("milestones") or ()) or "1/3, 2/3"
        text = f"x{gamma:g} at {steps} of training"
    elif kind == "plateau":
        text = f"x{gamma:g} after {d.get('plateau_epochs')} epochs without a better validation accuracy"
    else:
        text = kind
    warm = d.get("warmup_epochs") or 0
    return f"({text}" + (f", warm-up {warm} epoch{'s' if warm > 1 else ''})" if warm else ")")


def get_recipe(model: nn.Module, dataset: str | None = None) -> Recipe:
    """The training recipe of a model for ``dataset``: its ``recipes[dataset]`` entry if it has one,
    else the recipe it was built with (a default one if it has none)."""
    per_dataset = getattr(model, "recipes", None) or {}
    if dataset is not None and dataset in per_dataset:
        return per_dataset[dataset]
    return getattr(model, "recipe", Recipe())


def get_exports(model: nn.Module) -> dict[str, dict[str, Any]]:
    """The state dicts a pre-training stage hands on, by weights key (empty for ordinary models)."""
    hook = getattr(model, "exports", None)
    return dict(hook()) if callable(hook) else {}


def training_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: nn.Module) -> dict[str, torch.Tensor]:
    """One batch's named loss terms: the model's own ``training_step`` or ``{"loss": loss_fn(model(x), y)}``."""
    hook = getattr(model, "training_step", None)
    if callable(hook):
        terms = hook(x, y, loss_fn)
        if not isinstance(terms, dict) or not terms:
            raise TypeError(f"{type(model).__name__}.training_step must return a non-empty dict of named losses")
        return terms
    return {"loss": loss_fn(model(x), y)}


def kept_patches(model: nn.Module, x: torch.Tensor) -> list[tuple[str, torch.Tensor]] | None:
    """The model's ``kept_patches(x)`` (which patches each pruning step keeps), or None without the hook."""
    hook = getattr(model, "kept_patches", None)
    return hook(x) if callable(hook) else None


def generated_images(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor] | None:
    """The model's ``generate(x)`` (named images its generator makes), or None without the hook."""
    hook = getattr(model, "generate", None)
    return hook(x) if callable(hook) else None


def set_progress(model: nn.Module, progress: float) -> None:
    """Tell a model how far training has got (0..1); a no-op for models without schedules."""
    hook = getattr(model, "set_progress", None)
    if callable(hook):
        hook(float(min(max(progress, 0.0), 1.0)))


def model_family(model_name: str):
    """The module (method family) that registered ``model_name`` with timm; ``ValueError`` if none did."""
    import sys

    import timm

    if not timm.is_model(model_name):
        raise ValueError(f"unknown model {model_name!r}")
    return sys.modules[timm.models.model_entrypoint(model_name).__module__]


def model_presets(model_name: str) -> tuple[str, ...]:
    """The presets ``model_name`` can be built at: its family's ``PRESETS`` (a tuple or a dict of them),
    else the preset keys of its ``PRESET_CFGS``."""
    family = model_family(model_name)
    presets = getattr(family, "PRESETS", None)
    if presets is None:
        cfgs = getattr(family, "PRESET_CFGS", {})
        presets = cfgs.get(model_name, cfgs)
    return tuple(presets)


def describe_overrides(model_name: str, preset: str) -> dict[str, dict[str, Any]]:
    """Every override key ``model_name`` takes at ``preset``: ``{key: {"allowed", "doc", "default"}}``,
    from the family's own ``describe_overrides`` (its validation, not a hand-kept list; none: no keys)."""
    describe = getattr(model_family(model_name), "describe_overrides", None)
    return describe(model_name, preset) if describe is not None else {}  # a family without override keys


def recipe_fields(recipe: Recipe) -> dict[str, dict[str, Any]]:
    """Every ``train.*`` key: ``{name: {"allowed": limits or the field's type, "default": recipe's value}}``."""
    from dataclasses import fields

    return {f.name: {"allowed": f.metadata.get("allowed") or str(f.type), "default": getattr(recipe, f.name)}
            for f in fields(recipe)}
