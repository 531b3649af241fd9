"""Override validation and model building: the torch side of a cell's configuration.

:func:`check_overrides` validates a row's overrides by building the model on the meta device;
:func:`build_model` is the single place the harness calls timm; :func:`apply_train_overrides`
applies ``train.*`` keys to a method's recipe. See :mod:`harness.run.cells` for the key namespace.
"""
from __future__ import annotations

import dataclasses
import json
from functools import lru_cache
from typing import Any

import timm
import torch

import methods  # noqa: F401  (importing it registers the FER models with timm)
from harness.run.cells import canonical_json, is_weights_key, split_overrides
from harness.checks import value_problems
from harness.data.align import ALIGN_KNOBS
from harness.data.base import LOADER_KNOBS, train_limit_problem
from harness.data.synth import make_knobs
from harness.data.transforms import PIPELINES
from harness.errors import UserError
from harness.run.train.priors import loss_problem
from methods.interface import Recipe, get_recipe
from methods.losses import LOSSES


def train_problems(train: dict[str, Any], prefix: str = "train.") -> list[str]:
    """Problems of ``train.*`` values (field name -> value) against :class:`Recipe`'s ranges."""
    return value_problems(Recipe, train, prefix, {"augment": tuple(PIPELINES), "loss": tuple(sorted(LOSSES))})


def apply_train_overrides(recipe: Recipe, train: dict[str, Any]) -> Recipe:
    """Return ``recipe`` with ``train.*`` overrides applied; unknown fields are an error."""
    fields = {f.name: f for f in dataclasses.fields(Recipe)}
    unknown = sorted(set(train) - set(fields))
    if unknown:
        raise ValueError(f"unknown override key(s) {['train.' + k for k in unknown]}; "
                         f"allowed train.* keys: {sorted('train.' + k for k in fields)}")
    problems = train_problems(train)
    if problems:
        raise ValueError("; ".join(problems))
    values = {k: tuple(v) if k == "no_weight_decay" else v for k, v in train.items()}
    return dataclasses.replace(recipe, **values)


def build_model(method: str, scale: str, model_overrides: dict[str, Any], *, check_every_key: bool = False,
                **kwargs: Any) -> torch.nn.Module:
    """Build a registered model at a preset; the single place the harness calls timm.

    ``check_every_key`` calls the model's entry point itself: ``timm.create_model`` drops keys
    whose value is None, so a ``weights.<typo>: none`` would never reach the model's own check.
    """
    if method not in timm.list_models():
        near = [m for m in timm.list_models() if m.split("_")[0] == method.split("_")[0]]
        raise UserError(f"unknown method {method!r}; FERbench models: {sorted(near) or 'see timm.list_models()'}")
    if check_every_key:
        return timm.models.model_entrypoint(method)(preset=scale, **model_overrides, **kwargs)
    return timm.create_model(method, preset=scale, **model_overrides, **kwargs)


def check_overrides(method: str, scale: str, overrides: dict[str, Any], where: str,
                    dataset: str | None = None) -> Recipe:
    """Validate every override by building the model on the meta device (no memory, no compute).

    Returns the recipe (``dataset``'s, :func:`methods.interface.get_recipe`) with ``train.*``
    overrides applied. ``weights.*`` values are references
    the planner resolves (see :func:`harness.run.plan.resolve_weights`): the model is built without
    them. Errors are re-raised as :class:`UserError` prefixed with ``where`` (file and row),
    keeping the model's own message, which names the key and its allowed values.
    """
    model_o, train_o, data_o = split_overrides(overrides)
    model_o = {k: (None if is_weights_key(k) else v) for k, v in model_o.items()}
    try:
        knobs = {k: v for k, v in data_o.items() if k not in (*ALIGN_KNOBS, *LOADER_KNOBS)}
        if knobs:
            make_knobs(**knobs)  # types and ranges of the synthetic generator's knobs
        if "train_limit" in data_o and (problem := train_limit_problem(data_o["train_limit"])):
            raise ValueError(problem)
        if not isinstance(data_o.get("skip_bad", False), bool):
            raise ValueError(f"data.skip_bad={data_o['skip_bad']!r}: allowed values: true, false")
        return _recipe(method, scale, canonical_json(model_o), canonical_json(train_o), dataset)
    except UserError as err:
        raise UserError(f"{where}: {err}") from None
    except (ValueError, TypeError, KeyError) as err:
        raise UserError(f"{where}: {err}") from None


@lru_cache(maxsize=256)
def _recipe(method: str, scale: str, model_json: str, train_json: str, dataset: str | None = None) -> Recipe:
    with torch.device("meta"):
        model = build_model(method, scale, json.loads(model_json), check_every_key=True)
    recipe = apply_train_overrides(get_recipe(model, dataset), json.loads(train_json))
    problem = loss_problem(recipe.loss, recipe.loss_kwargs, dataset)  # alpha, gamma, the prior's source
    if problem:
        raise ValueError(problem)
    return recipe
