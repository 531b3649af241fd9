"""Optimisers and schedules of a cell, from its method's recipe: parameter groups (weight decay,
layer-wise lr decay, one optimiser per named group of parameters), the training length and the
per-step lr schedule."""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn as nn

from methods.interface import Recipe


def _decay_groups(named: list[tuple[str, nn.Parameter]], no_weight_decay: tuple[str, ...],
                  weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on every parameter except those whose name contains a ``no_weight_decay`` entry.

    APViT's public config exempts only the position embedding and class token (norms and biases
    are decayed); the paper is silent, so we follow the code.
    """
    decay = [p for n, p in named if not any(s in n for s in no_weight_decay)]
    no_decay = [p for n, p in named if any(s in n for s in no_weight_decay)]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _layer_decay_groups(model: nn.Module, names: set[str], recipe: Recipe, weight_decay: float
                        ) -> list[dict[str, Any]]:
    """timm's layer-wise lr decay groups restricted to ``names``; each group's lr is pre-scaled."""
    from timm.optim import param_groups_layer_decay

    if not callable(getattr(model, "group_matcher", None)):
        raise ValueError(f"train.layer_decay needs a model with timm's group_matcher; "
                         f"{type(model).__name__} has none")
    by_id = {id(p): n for n, p in model.named_parameters()}
    groups = []
    for g in param_groups_layer_decay(model, weight_decay=weight_decay, layer_decay=recipe.layer_decay,
                                      no_weight_decay_list=list(recipe.no_weight_decay)):
        params = [p for p in g["params"] if by_id[id(p)] in names]
        if params:
            groups.append({"params": params, "weight_decay": g["weight_decay"], "lr_scale": g["lr_scale"]})
    return groups


def _owner_of(name: str, prefixes: dict[str, tuple[str, ...]]) -> list[str]:
    return [opt for opt, pre in prefixes.items() if not pre or any(name.startswith(p) for p in pre)]


def optimizer_plan(model: nn.Module, recipe: Recipe) -> dict[str, dict[str, Any]]:
    """Each named optimiser's settings (the recipe's, overridden by its ``optimizers`` entry) and the
    names of the trainable parameters it owns. Raises ``ValueError`` naming a parameter that no
    optimiser, or two, would step."""
    specs = recipe.optimizers or {"main": {}}
    prefixes = {name: tuple(spec.get("params", ())) for name, spec in specs.items()}
    owned: dict[str, list[str]] = {name: [] for name in specs}
    for pname, p in model.named_parameters():
        if not p.requires_grad:
            continue
        owners = _owner_of(pname, prefixes)
        if len(owners) != 1:
            raise ValueError(f"train.optimizers: parameter {pname!r} is owned by "
                             f"{owners or 'no optimiser'}; each trainable parameter needs exactly one "
                             f"(freeze a network with requires_grad_(False))")
        owned[owners[0]].append(pname)
    plan = {}
    for name, spec in specs.items():
        settings = {k: spec.get(k, getattr(recipe, k)) for k in
                    ("optimizer", "lr", "momentum", "weight_decay", "schedule", "milestones", "warmup_epochs",
                     "grad_clip")}
        settings.update(betas=tuple(spec.get("betas", (0.9, 0.999))), losses=tuple(spec.get("losses", ())),
                        params=owned[name])
        plan[name] = settings
    return plan


def fused_kwargs(params: list[torch.Tensor]) -> dict[str, bool]:
    """``{"fused": True}`` when every parameter is a floating-point CUDA tensor (torch's fused
    kernels: one launch per step instead of one per tensor); on the CPU torch's default, so CPU
    results stay bit for bit."""
    return {"fused": True} if params and all(p.is_cuda and p.is_floating_point() for p in params) else {}


def build_optimizers(model: nn.Module, recipe: Recipe, fused: bool = True) -> dict[str, torch.optim.Optimizer]:
    """One optimiser per entry of :func:`optimizer_plan`, over the parameters it owns; torch's fused
    kernels where :func:`fused_kwargs` allows them, unless ``fused`` is False."""
    named = dict(model.named_parameters())
    opts = {}
    for name, s in optimizer_plan(model, recipe).items():
        if recipe.layer_decay is not None:
            groups = _layer_decay_groups(model, set(s["params"]), recipe, s["weight_decay"])
        else:
            groups = _decay_groups([(n, named[n]) for n in s["params"]], recipe.no_weight_decay, s["weight_decay"])
        for g in groups:
            g["lr"] = s["lr"] * g.get("lr_scale", 1.0)
        kernels = fused_kwargs([p for g in groups for p in g["params"]]) if fused else {}
        if s["optimizer"] == "sgd":
            opts[name] = torch.optim.SGD(groups, lr=s["lr"], momentum=s["momentum"], **kernels)
        elif s["optimizer"] == "adam":
            opts[name] = torch.optim.Adam(groups, lr=s["lr"], betas=s["betas"], **kernels)
        elif s["optimizer"] == "adamw":
            opts[name] = torch.optim.AdamW(groups, lr=s["lr"], betas=s["betas"], **kernels)
        else:
            raise ValueError(f"train.optimizer={s['optimizer']!r}; allowed: sgd, adam, adamw")
    return opts


def build_optimizer(model: nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    """The recipe's single optimiser (a recipe without named ``optimizers``)."""
    opts = build_optimizers(model, recipe)
    if len(opts) != 1:
        raise ValueError(f"the recipe has {len(opts)} optimisers ({', '.join(opts)}); use build_optimizers")
    return next(iter(opts.values()))


def training_length(recipe: Recipe, steps_per_epoch: int) -> tuple[int, int]:
    """``(epochs, optimizer steps)``: ``recipe.iterations`` steps (the last epoch cut short) if set, else whole
    epochs, at most ``recipe.max_iterations`` steps; ``epochs == 0`` means no training at all, whatever
    ``iterations`` says (evaluation only)."""
    if recipe.epochs == 0:
        return 0, 0
    steps = recipe.iterations
    if steps is None:
        steps = recipe.epochs * steps_per_epoch
        if recipe.max_iterations is None or steps <= recipe.max_iterations:
            return recipe.epochs, steps
        steps = recipe.max_iterations
    return math.ceil(steps / steps_per_epoch), steps


def warmup_steps(recipe: Recipe, steps_per_epoch: int, warmup_epochs: int | None = None) -> int:
    """Linear warm-up length in steps: ``warmup_epochs`` epochs, or the same share of training when
    ``max_iterations`` cut it short; always fewer than all steps."""
    warmup_epochs = recipe.warmup_epochs if warmup_epochs is None else warmup_epochs
    total = max(training_length(recipe, steps_per_epoch)[1], 1)
    warm = warmup_epochs * steps_per_epoch
    if recipe.iterations is None and recipe.epochs and total < recipe.epochs * steps_per_epoch:
        warm = round(total * warmup_epochs / recipe.epochs)
    return min(warm, total - 1)


def build_scheduler(opt: torch.optim.Optimizer, recipe: Recipe, steps_per_epoch: int, **settings: Any):
    """Per-step schedule: optional linear warm-up, then cosine to 0, step decay or constant; or
    ``plateau``, torch's ``ReduceLROnPlateau`` on the validation accuracy, stepped once an epoch.

    ``step`` multiplies the lr by ``lr_gamma`` (0.1) at ``milestones`` (fractions of all steps, warm-up
    included), or, with none given, at each third of the steps after warm-up. ``settings``
    (``schedule``, ``milestones``, ``warmup_epochs``) override the recipe's for one optimiser.
    """
    schedule = settings.get("schedule", recipe.schedule)
    milestones = settings.get("milestones", recipe.milestones)
    total = max(training_length(recipe, steps_per_epoch)[1], 1)
    warm = warmup_steps(recipe, steps_per_epoch, settings.get("warmup_epochs"))
    lrs = torch.optim.lr_scheduler
    if schedule == "plateau":  # stepped once an epoch with the validation accuracy (Stepper.end_epoch)
        # torch reduces once more than `patience` epochs went without improvement
        return lrs.ReduceLROnPlateau(opt, mode="max", factor=recipe.lr_gamma, patience=recipe.plateau_epochs - 1,
                                     threshold=0.0)
    if schedule == "cosine":
        main = lrs.CosineAnnealingLR(opt, T_max=total - warm)
    elif schedule == "step" and milestones:
        main = lrs.MultiStepLR(opt, milestones=[max(round(f * total) - warm, 1) for f in milestones],
                               gamma=recipe.lr_gamma)
    elif schedule == "step":
        main = lrs.StepLR(opt, step_size=max((total - warm) // 3, 1), gamma=recipe.lr_gamma)
    elif schedule == "constant":
        main = lrs.ConstantLR(opt, factor=1.0)
    else:
        raise ValueError(f"train.schedule={schedule!r}; allowed: cosine, step, constant, plateau")
    if warm <= 0:
        return main
    return lrs.SequentialLR(opt, [lrs.LinearLR(opt, start_factor=0.01, total_iters=warm), main], [warm])
