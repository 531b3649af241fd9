"""The contract every registered FERbench model keeps with the harness, in timm's test style.

Parametrised over ``timm.list_models()`` restricted to our families (entry points defined in
``methods.*``; importing ``methods`` registers them), never over a hand-kept list, so a new model
is tested the moment it is registered. For each model:

* it builds on the meta device at every preset (no memory, no compute: how the harness validates
  overrides) and the ``tiny`` preset is the smaller one;
* at ``tiny``, on the CPU: the eval forward gives ``[B, num_classes]`` logits and one training
  step (:func:`methods.interface.training_step`, the path the runner and the throughput benchmark
  take) gives finite named terms whose gradients reach every trainable parameter through the
  optimiser that owns it (``Recipe.optimizers``), at batch 1 and 2;
* the FLOP counter the runner records costs with counts a positive number;
* its state dict loads strictly into a fresh model of the same name and preset, which then
  computes the same logits (the runner's checkpoints and best-epoch weights);
* for every pre-training stage its recipes start from (``init``/``stand_in`` = ``stage:<id>``):
  the stage's model exports the weights key, and the consumer built with that file (the way the
  runner hands it over, ``weights.<key>=<path>``) holds the exported tensors.
"""
from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

import pytest
import timm
import torch
from timm.models import model_entrypoint
from torch import nn

import methods  # registers the models
from harness.run.train.flops import count_flops
from harness.stages import list_stages, load_stage
from methods.interface import Recipe, get_exports, get_recipe, training_step
from methods.losses import build_loss

MODELS = sorted(n for n in timm.list_models() if model_entrypoint(n).__module__.startswith("methods."))
PRESETS = ("tiny", "paper")
BATCHES = (1, 2)

# Cases that fail the contract today: (test, case id) -> reason. Strict xfails, so a fix shows.
KNOWN_FAILURES: dict[tuple[str, str], str] = {
    ("step", "faceid_ir50-1"): "FaceIDIR50's embedding ends in BatchNorm1d over [B, E]: a training step at batch 1 "
                               "raises 'Expected more than 1 value per channel' (train.batch_size 1 is allowed)",
}


def cases(test: str, *args: tuple[Any, ...] | str) -> list[Any]:
    """One ``pytest.param`` per case (a model, or a tuple starting with one); a strict xfail if known to fail."""
    out = []
    for item in args:
        values = item if isinstance(item, tuple) else (item,)
        case_id = "-".join(map(str, values))
        reason = KNOWN_FAILURES.get((test, case_id))
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        out.append(pytest.param(*values, marks=marks, id=case_id))
    return out


def build(name: str, preset: str = "tiny", seed: int = 0, **overrides: Any) -> nn.Module:
    torch.manual_seed(seed)
    return timm.create_model(name, preset=preset, **overrides)


def loss_for(model: nn.Module, recipe: Recipe) -> nn.Module:
    """The recipe's loss, a data-derived prior replaced by a uniform one (as the throughput benchmark does)."""
    kwargs = dict(recipe.loss_kwargs)
    if "prior" in kwargs:
        k = model.num_classes
        kwargs["prior"] = torch.full((k, k), 1.0 / k)
    return build_loss(recipe.loss, **kwargs)


def batch(model: nn.Module, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A normalised image batch at the recipe's size and labels 0, 1, ... (0 is neutral in every loader)."""
    s = get_recipe(model).img_size
    x = torch.randn(n, 3, s, s, generator=torch.Generator().manual_seed(seed))
    return x, torch.arange(n) % model.num_classes


def test_every_family_file_is_found():
    root = Path(methods.__file__).parent
    registering = {".".join(("methods", *p.relative_to(root).with_suffix("").parts))
                   for p in root.rglob("*.py") if "@register_model" in p.read_text()}
    assert registering and {model_entrypoint(n).__module__ for n in MODELS} == registering
    assert "vit_small_patch16_224" in timm.list_models() and "vit_small_patch16_224" not in MODELS


@pytest.mark.parametrize("name, preset", cases("meta", *[(n, p) for n in MODELS for p in PRESETS]))
def test_builds_on_meta_device(name, preset):
    with torch.device("meta"):
        model = timm.create_model(name, preset=preset)
    params = list(model.parameters())
    assert params and all(p.is_meta for p in params)
    recipe = get_recipe(model)
    assert isinstance(recipe, Recipe) and recipe.img_size >= 8
    assert isinstance(model.num_classes, int) and model.num_classes >= 2
    for r in (getattr(model, "recipes", None) or {}).values():
        assert isinstance(r, Recipe)


@pytest.mark.parametrize("name", cases("smaller", *MODELS))
def test_tiny_is_smaller_than_paper(name):
    with torch.device("meta"):
        tiny, paper = (timm.create_model(name, preset=p) for p in ("tiny", "paper"))
    size = {p: sum(t.numel() for t in m.parameters()) for p, m in (("tiny", tiny), ("paper", paper))}
    assert size["tiny"] < size["paper"]
    assert get_recipe(tiny).img_size <= get_recipe(paper).img_size


def owners(model: nn.Module, recipe: Recipe) -> dict[str, dict[str, Any]]:
    """Each optimiser of the recipe with the trainable parameters it owns (name prefixes; none = all)
    and the terms it minimises (none = all), as ``methods.interface`` defines them."""
    specs = recipe.optimizers or {"main": {}}
    out = {name: {"params": {}, "losses": tuple(spec.get("losses", ()))} for name, spec in specs.items()}
    for pname, p in model.named_parameters():
        if not p.requires_grad:
            continue
        own = [o for o, spec in specs.items()
               if not spec.get("params") or any(pname.startswith(pre) for pre in spec["params"])]
        assert len(own) == 1, f"trainable parameter {pname} is owned by {own or 'no optimiser'}"
        out[own[0]]["params"][pname] = p
    return out


@pytest.mark.parametrize("name, n", cases("step", *[(m, b) for m in MODELS for b in BATCHES]))
def test_forward_and_training_step_tiny(name, n):
    model = build(name)
    recipe = get_recipe(model)
    x, y = batch(model, n)

    with torch.no_grad():
        logits = model.eval()(x)
    assert logits.shape == (n, model.num_classes) and torch.isfinite(logits).all()

    model.train()
    terms = training_step(model, x, y, loss_for(model, recipe))
    assert terms and all(t.dim() == 0 and torch.isfinite(t) for t in terms.values()), terms
    plan = owners(model, recipe)
    assert any(o["params"] for o in plan.values())
    for i, (opt, o) in enumerate(plan.items()):
        picked = [terms[t] for t in o["losses"] if t in terms] if o["losses"] else list(terms.values())
        assert picked, f"optimiser {opt} minimises {o['losses']}, the step returned {sorted(terms)}"
        grads = torch.autograd.grad(torch.stack(picked).sum(), list(o["params"].values()), allow_unused=True,
                                    retain_graph=i < len(plan) - 1)
        dead = [p for p, g in zip(o["params"], grads) if g is None]
        assert not dead, f"optimiser {opt}: no gradient reaches {dead}"
        assert all(torch.isfinite(g).all() for g in grads)
        assert any(g.abs().sum() > 0 for g in grads), f"optimiser {opt}: every gradient is zero"


@pytest.mark.parametrize("name", cases("flops", *MODELS))
def test_flops_positive_tiny(name):
    model = build(name).train()
    flops = count_flops(model, get_recipe(model).img_size)
    assert flops["gflops"] > 0 and math.isfinite(flops["gflops"])
    assert flops["params_m"] == pytest.approx(sum(p.numel() for p in model.parameters()) / 1e6)
    assert model.training  # counted in eval mode, then restored


@pytest.mark.parametrize("name", cases("state_dict", *MODELS))
def test_state_dict_loads_into_a_fresh_model(name):
    src, dst = build(name, seed=1).eval(), build(name, seed=2).eval()
    with torch.no_grad():  # "train" it: several heads start at zero, which would hide a head that does not load
        g = torch.Generator().manual_seed(3)
        for p in src.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.02)
    x, _ = batch(src, 2)
    with torch.no_grad():
        want = src(x)
        assert not torch.equal(dst(x), want)
        dst.load_state_dict(src.state_dict(), strict=True)
        assert torch.equal(dst(x), want)


def tiny_recipes(model: nn.Module) -> list[Recipe]:
    return [get_recipe(model), *(getattr(model, "recipes", None) or {}).values()]


def stage_edges() -> list[tuple[str, str, str]]:
    """``(consumer, weights key, stage id)`` for each stage a model's ``tiny`` recipes start from (or stand in with)."""
    edges = set()
    for name in MODELS:
        with torch.device("meta"):
            model = timm.create_model(name, preset="tiny")
        for r in tiny_recipes(model):
            for key, src in [*r.init.items(), *r.stand_in.items()]:
                if src.startswith("stage:"):
                    edges.add((name, key, src.removeprefix("stage:")))
    return sorted(edges)


EDGES = stage_edges()


def model_overrides(stage_set: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in stage_set.items() if not k.startswith(("train.", "data."))}


@pytest.mark.parametrize("stage_id", list_stages())
def test_stage_model_exports_what_the_stage_provides(stage_id):
    spec = load_stage(stage_id)
    assert spec.method in MODELS
    exports = get_exports(build(spec.method, **model_overrides(spec.set)))
    assert set(spec.provides) <= set(exports), f"{spec.method} exports {sorted(exports)}"
    for key in spec.provides:
        assert exports[key] and all(isinstance(v, torch.Tensor) for v in exports[key].values())


def test_every_consumer_names_a_declared_stage():
    assert EDGES, "no model starts from a pre-training stage"
    assert {stage for _, _, stage in EDGES} <= set(list_stages())


def _digest(t: torch.Tensor) -> tuple[tuple[int, ...], str]:
    return tuple(t.shape), hashlib.sha1(t.detach().cpu().contiguous().numpy().tobytes()).hexdigest()


def _random_tensors(state: dict[str, torch.Tensor]) -> dict[tuple[tuple[int, ...], str], str]:
    """Digest -> key of the floating tensors that are not constant (the seeded, random-initialised ones)."""
    return {_digest(v): k for k, v in state.items()
            if v.is_floating_point() and v.numel() > 1 and not torch.all(v == v.flatten()[0])}


@pytest.mark.parametrize("consumer, key, stage_id", cases("exports", *EDGES))
def test_stage_exports_load_into_the_consumer(consumer, key, stage_id, tmp_path):
    spec = load_stage(stage_id)
    assert key in spec.provides
    exported = get_exports(build(spec.method, seed=1, **model_overrides(spec.set)))[key]
    path = tmp_path / f"{key}.pt"
    torch.save(exported, path)  # what the runner stores as the stage's artifact

    fresh = {_digest(v) for v in build(consumer, seed=2).state_dict().values()}
    loaded = {_digest(v) for v in build(consumer, seed=2, **{key: str(path)}).state_dict().values()}
    wanted = {d: k for d, k in _random_tensors(exported).items() if d not in fresh}
    assert wanted, f"{stage_id}'s {key} holds no tensor that tells it from a fresh {consumer}"
    found = [k for d, k in wanted.items() if d in loaded]
    assert len(found) >= len(wanted) / 2, (f"{consumer} built with {key} from {stage_id} holds {len(found)} of the "
                                           f"{len(wanted)} exported tensors; missing e.g. "
                                           f"{sorted(set(wanted.values()) - set(found))[:5]}")
