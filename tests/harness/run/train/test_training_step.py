"""The method-owned training step: named loss terms, several optimisers, layer decay."""
from __future__ import annotations

import pytest
import timm
import torch
import torch.nn as nn

from harness.run.train import runner
from harness.run.plan import DataSource, plan_table
from harness.run.train.runner import Stepper
from harness.run.train.optim import build_optimizers, optimizer_plan
from harness.specs import load_spec
from harness.store import Store
from methods.apvit import APViT
from methods.interface import Recipe, training_step
from tests.harness.conftest import write_spec


class TwoPart(nn.Module):
    """A 'generator' g and a 'discriminator' d; term "d" depends on both parts."""

    def __init__(self) -> None:
        super().__init__()
        self.g = nn.Linear(3, 3, bias=False)
        self.d = nn.Linear(3, 1, bias=False)

    def training_step(self, x, y, loss_fn):
        fake = self.g(x)
        return {"g": (fake - 1).pow(2).mean(), "d": self.d(fake).pow(2).mean()}


def _two_optimisers(**extra) -> Recipe:
    return Recipe(epochs=1, optimizer="sgd", momentum=0.0, lr=0.5, weight_decay=0.0, grad_clip=None, schedule="constant",
                  optimizers={"gen": {"params": ["g."], "losses": ["g"]},
                              "disc": {"params": ["d."], "losses": ["d"], "lr": 0.1, **extra}})


def test_each_optimiser_steps_only_its_parameters_with_its_own_terms():
    torch.manual_seed(0)
    model, x = TwoPart(), torch.randn(4, 3)
    g0, d0 = model.g.weight.detach().clone(), model.d.weight.detach().clone()
    # expected: g moves along d(term g)/dg only (term d also depends on g, but gen does not minimise it)
    ref = TwoPart()
    ref.load_state_dict(model.state_dict())
    terms = ref.training_step(x, None, None)
    grad_g = torch.autograd.grad(terms["g"], ref.g.weight, retain_graph=True)[0]
    grad_d = torch.autograd.grad(terms["d"], ref.d.weight)[0]
    assert grad_g.abs().sum() > 0 and grad_d.abs().sum() > 0

    stepper = Stepper(model, _two_optimisers(), steps_per_epoch=1)
    stepper.step(model.training_step(x, None, None))
    assert torch.allclose(model.g.weight, g0 - 0.5 * grad_g)
    assert torch.allclose(model.d.weight, d0 - 0.1 * grad_d)
    assert set(stepper.opts) == {"gen", "disc"}
    assert [p for g in stepper.opts["gen"].param_groups for p in g["params"]] == [model.g.weight]
    assert [p for g in stepper.opts["disc"].param_groups for p in g["params"]] == [model.d.weight]


def test_each_optimiser_has_its_own_schedule():
    model = TwoPart()
    stepper = Stepper(model, _two_optimisers(schedule="step", milestones=[0.5]), steps_per_epoch=4)
    for _ in range(3):
        stepper.step(model.training_step(torch.randn(2, 3), None, None))
    assert stepper.scheds["gen"].get_last_lr()[0] == pytest.approx(0.5)  # constant
    assert stepper.scheds["disc"].get_last_lr()[0] == pytest.approx(0.01)  # x0.1 after half of 4 steps


def test_unowned_or_doubly_owned_parameters_are_refused():
    recipe = Recipe(optimizers={"gen": {"params": ["g."]}})
    with pytest.raises(ValueError, match="'d.weight' is owned by no optimiser"):
        optimizer_plan(TwoPart(), recipe)
    model = TwoPart()
    model.d.requires_grad_(False)  # a frozen network needs no optimiser
    assert optimizer_plan(model, recipe)["gen"]["params"] == ["g.weight"]
    with pytest.raises(ValueError, match="owned by \\['a', 'b'\\]"):
        optimizer_plan(TwoPart(), Recipe(optimizers={"a": {"params": ["g"]}, "b": {"params": ["g.", "d."]}}))


def test_bad_optimizer_entries_name_the_key():
    with pytest.raises(ValueError, match="train.optimizers.gen: unknown key"):
        Recipe(optimizers={"gen": {"lr_max": 1.0}})
    with pytest.raises(ValueError, match="each must name its params"):
        Recipe(optimizers={"a": {"params": ["g."]}, "b": {}})


def test_default_step_is_the_recipe_loss_on_the_logits():
    model, x, y = nn.Linear(3, 2), torch.randn(4, 3), torch.tensor([0, 1, 1, 0])
    terms = training_step(model, x, y, nn.CrossEntropyLoss())
    assert list(terms) == ["loss"]
    assert torch.equal(terms["loss"], nn.functional.cross_entropy(model(x), y))


def test_layer_decay_gives_each_block_its_lr():
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, depth=3, img_size=32, num_classes=4)
    recipe = Recipe(optimizer="adamw", lr=1.0, layer_decay=0.5)
    (opt,) = build_optimizers(model, recipe).values()
    names = {id(p): n for n, p in model.named_parameters()}
    lr_of = {names[id(p)]: g["lr"] for g in opt.param_groups for p in g["params"]}
    # timm's groups: embeddings = layer 0, block i = layer i + 1, head = layer L + 1 = 4
    assert lr_of["head.weight"] == pytest.approx(1.0)
    assert lr_of["blocks.2.mlp.fc1.weight"] == pytest.approx(0.5)
    assert lr_of["blocks.0.attn.qkv.weight"] == pytest.approx(0.125)
    assert lr_of["patch_embed.proj.weight"] == pytest.approx(0.0625)
    assert len(lr_of) == sum(1 for p in model.parameters() if p.requires_grad)


@pytest.mark.slow
def test_named_terms_reach_the_record(harness_env, tmp_path, monkeypatch):
    def step(self, x, y, loss_fn):
        logits = self(x)
        return {"ce": loss_fn(logits, y), "logit_l2": 1e-3 * logits.pow(2).mean()}

    monkeypatch.setattr(APViT, "training_step", step, raising=False)
    write_spec(harness_env["tables"], "step_tab", [{"label": "apvit", "set": {"train.epochs": 2}}])
    (planned,) = plan_table(load_spec("step_tab"), source=DataSource())
    rec = runner.train_cell(planned.cell, Store(tmp_path / "r"), device="cpu")
    hist = rec["timing"]["history"]
    assert len(hist) == 2 and all(set(h["losses"]) == {"ce", "logit_l2"} for h in hist)
    assert all(h["train_loss"] == pytest.approx(sum(h["losses"].values())) for h in hist)
    assert rec["provenance"]["device"] == "cpu" and rec["provenance"]["amp"] == "off"
