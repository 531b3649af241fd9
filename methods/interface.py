"""The small training interface between a method and the harness.

The harness builds every model with ``timm.create_model(name, preset=..., **overrides)``
and learns everything else it needs from two attributes the model carries:

* ``model.recipe`` -- a :class:`Recipe`: how to train it at the preset it was built for;
* ``model.set_progress(p)`` -- optional; called by the trainer with the fraction of training
  done (0.0 .. 1.0) so that keep schedules and similar curricula can follow it;
* ``model.exports()`` -- optional; what a *pre-training stage* hands on to the models that
  fine-tune from it: a dict from a weights key (``"weights.ir50"``) to a state dict in the layout
  that key's loader reads.

Where training starts is part of the recipe (:attr:`Recipe.init`): for each weights key of the
model, either a checkpoint file name (``"file:<name>"``, looked up in the user's weights folder),
an upstream pre-training stage (``"stage:<id>"``, declared in ``tables/stages/``) or ``"none"``
(from scratch). The harness resolves these; the model only ever sees local file paths.

Nothing here imports the harness.
"""
from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, field
from typing import Any

import torch.nn as nn


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

    optimizer: str = allowed("sgd", choices=("sgd", "adam", "adamw"))
    lr: float = allowed(1e-3, gt=0)
    momentum: float = allowed(0.9, ge=0, lt=1)
    weight_decay: float = allowed(5e-4, ge=0)
    no_weight_decay: tuple[str, ...] = ()  # parameter-name substrings exempt from weight decay
    epochs: int = allowed(40, ge=1)
    batch_size: int = allowed(128, ge=1)
    grad_clip: float | None = allowed(10.0, gt=0)  # L2 norm; None disables
    schedule: str = allowed("cosine", choices=("cosine", "step", "constant"))
    # step schedule: fractions of training at which the lr is multiplied by 0.1; () = three equal steps
    milestones: tuple[float, ...] = ()
    # training length in optimizer steps; None = ``epochs`` whole epochs. When set, the last
    # epoch is cut short and ``epochs`` is ignored.
    iterations: int | None = None
    warmup_epochs: int = allowed(0, ge=0)
    img_size: int = allowed(112, ge=8)
    augment: str = "apvit"  # name of a train-time pipeline in harness.data.transforms
    loss: str = "ce"  # name in methods.losses
    loss_kwargs: dict[str, Any] = field(default_factory=dict)
    sampler: str = allowed("none", choices=("none", "sqrt", "heavy"))  # class-balanced oversampling
    # Where training starts, per weights key: "file:<name>" | "stage:<id>" | "none" (see module doc).
    init: dict[str, str] = field(default_factory=dict)
    # What stands in for a missing "file:" init when the user asks for stand-ins (--stand-ins).
    stand_in: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        ms = self.milestones
        if (not isinstance(ms, (list, tuple)) or not all(isinstance(m, (int, float)) and 0 < m < 1 for m in ms)
                or list(ms) != sorted(ms)):
            raise ValueError(f"train.milestones: {ms!r} is not allowed; allowed values: increasing fractions in (0, 1)")
        if self.iterations is not None and (isinstance(self.iterations, bool) or not isinstance(self.iterations, int)
                                            or self.iterations < 1):
            raise ValueError(f"train.iterations: {self.iterations!r} is not allowed; allowed values: an integer >= 1 or None")

    def to_dict(self) -> dict[str, Any]:
        """Return the recipe as a JSON-serialisable dict."""
        d = asdict(self)
        d["no_weight_decay"] = list(self.no_weight_decay)
        d["milestones"] = list(self.milestones)
        return d


def get_recipe(model: nn.Module) -> Recipe:
    """Return the training recipe a model was built with (a default one if it has none)."""
    return getattr(model, "recipe", Recipe())


def get_exports(model: nn.Module) -> dict[str, dict[str, Any]]:
    """The state dicts a pre-training stage hands on, by weights key (empty for ordinary models)."""
    hook = getattr(model, "exports", None)
    return dict(hook()) if callable(hook) else {}


def set_progress(model: nn.Module, progress: float) -> None:
    """Tell a model how far training has got (0..1); a no-op for models without schedules."""
    hook = getattr(model, "set_progress", None)
    if callable(hook):
        hook(float(min(max(progress, 0.0), 1.0)))
