"""The runner's schedule: step milestones and iteration-based training length (Recipe.milestones / .iterations)."""
from __future__ import annotations

import pytest
import torch

from harness.run.train.optim import build_scheduler, training_length
from methods.interface import Recipe


def _lrs(recipe: Recipe, steps_per_epoch: int) -> list[float]:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=recipe.lr)
    sched = build_scheduler(opt, recipe, steps_per_epoch)
    lrs = []
    for _ in range(training_length(recipe, steps_per_epoch)[1]):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


def test_step_milestones_are_fractions_of_training():
    # TransFER: 40 epochs, x0.1 at epochs 15 and 30
    lrs = _lrs(Recipe(lr=1.0, epochs=40, schedule="step", milestones=(0.375, 0.75)), steps_per_epoch=2)
    assert lrs[29] == 1.0 and lrs[30] == pytest.approx(0.1) and lrs[59] == pytest.approx(0.1)
    assert lrs[60] == pytest.approx(0.01) and len(lrs) == 80


def test_iterations_set_the_length_and_the_schedule():
    # TransFER on AffectNet: 20K iterations, x0.1 at 9.6K and 19.2K (here scaled by 1/100)
    recipe = Recipe(lr=1.0, epochs=999, schedule="step", iterations=200, milestones=(0.48, 0.96))
    assert training_length(recipe, 30) == (7, 200)  # ceil(200 / 30) epochs, the last one cut short
    lrs = _lrs(recipe, 30)
    assert len(lrs) == 200 and lrs[95] == 1.0 and lrs[96] == pytest.approx(0.1) and lrs[192] == pytest.approx(0.01)
    cosine = Recipe(lr=1.0, schedule="cosine", iterations=50)
    assert _lrs(cosine, 7)[-1] == pytest.approx(0.0, abs=1e-3)  # the cosine ends where training ends


def test_max_iterations_caps_a_large_split_and_warmup_keeps_its_share():
    # tiny APViT: 9 epochs, 1 of warm-up, at most 2,400 steps
    recipe = Recipe(lr=1.0, epochs=9, warmup_epochs=1, schedule="cosine", max_iterations=2400)
    assert training_length(recipe, 60) == (9, 540)  # a small split: whole epochs, the cap does not bind
    assert training_length(recipe, 1111) == (3, 2400)  # the full FERPlus split: cut short
    capped = _lrs(recipe, 1111)
    assert len(capped) == 2400 and capped[-1] == pytest.approx(0.0, abs=1e-3)
    peak = max(range(2400), key=capped.__getitem__)
    assert peak == pytest.approx(2400 / 9, abs=1)  # warm-up is a ninth of training, not one 1,111-step epoch
    uncapped = _lrs(Recipe(lr=1.0, epochs=9, warmup_epochs=1, schedule="cosine"), 60)
    assert max(range(540), key=uncapped.__getitem__) == 60
    with pytest.raises(ValueError, match="train.max_iterations.*allowed values"):
        Recipe(max_iterations=0)


def test_without_milestones_step_keeps_three_equal_steps():
    lrs = _lrs(Recipe(lr=1.0, epochs=3, schedule="step"), steps_per_epoch=1)
    assert lrs == pytest.approx([1.0, 0.1, 0.01])


@pytest.mark.parametrize("kwargs, key", [
    ({"milestones": (0.75, 0.375)}, "train.milestones"),
    ({"milestones": (0.5, 1.5)}, "train.milestones"),
    ({"milestones": 0.5}, "train.milestones"),
    ({"iterations": 0}, "train.iterations"),
    ({"iterations": 2.5}, "train.iterations"),
])
def test_bad_schedule_fields_are_rejected(kwargs, key):
    with pytest.raises(ValueError, match=f"{key}.*allowed values"):
        Recipe(**kwargs)


def test_a_failure_that_cannot_be_written_is_one_line_with_its_cause(tmp_path, monkeypatch, capsys):
    import errno

    from harness.run.cells import Cell
    from harness.run.train import runner
    from harness.store import Store

    def boom(*a, **k):
        raise RuntimeError("the real cause")

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    store = Store(tmp_path)
    monkeypatch.setattr(runner, "train_cell", boom)
    monkeypatch.setattr(store, "record_failure", full)
    cell = Cell(method="apvit", model={}, train={}, data={}, dataset="rafdb", protocol=None, scale="tiny", seed=0,
                fingerprint="f", code_version="v", synthetic=True, data_root="/d")
    assert runner.run_and_record(cell, store) is None
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "the real cause" in last and "No space left on device" in last and cell.id in last


def test_accumulating_two_half_batches_takes_the_step_of_the_whole_batch():
    from harness.run.train.runner import Stepper

    x, y = torch.randn(16, 5, generator=torch.Generator().manual_seed(0)), torch.arange(16) % 3
    loss_fn = torch.nn.CrossEntropyLoss()

    def trained(accum: int) -> torch.Tensor:
        torch.manual_seed(0)
        model = torch.nn.Linear(5, 3)
        recipe = Recipe(optimizer="sgd", lr=0.5, momentum=0.0, weight_decay=0.0, schedule="constant", grad_clip=None,
                        batch_size=16 // accum, accum_steps=accum)
        stepper = Stepper(model, recipe, steps_per_epoch=1)
        stepped = [stepper.step({"loss": loss_fn(model(xb), yb)}) for xb, yb in zip(x.chunk(accum), y.chunk(accum))]
        assert stepped == [False] * (accum - 1) + [True]
        return model.weight.detach().clone()

    assert torch.allclose(trained(2), trained(1), atol=1e-6)
    assert not torch.allclose(trained(1), torch.nn.Linear(5, 3).weight)  # it did step


def test_mixup_is_timms_with_soft_targets_and_refused_where_the_loss_needs_hard_labels():
    from harness.errors import UserError
    from harness.run.train.runner import mixer

    recipe = Recipe(batch_size=8, mixup=0.8, cutmix=1.0, mix_smoothing=0.1)
    mix = mixer(recipe, torch.nn.Linear(4, 7), num_classes=7)
    assert (mix.mixup_alpha, mix.cutmix_alpha, mix.label_smoothing) == (0.8, 1.0, 0.1)
    x, y = mix(torch.rand(8, 3, 16, 16), torch.arange(8) % 7)
    assert y.shape == (8, 7) and torch.allclose(y.sum(1), torch.ones(8)) and (y < 1).all()
    assert mixer(Recipe(), torch.nn.Linear(4, 7), 7) is None
    with pytest.raises(UserError, match="train.loss: fpdls is not allowed"):
        mixer(Recipe(batch_size=8, mixup=0.8, loss="fpdls"), torch.nn.Linear(4, 7), 7)

    class OwnLoss(torch.nn.Linear):
        def training_step(self, x, y, loss_fn):
            return {"loss": loss_fn(self(x), y)}

    with pytest.raises(UserError, match="computes its own loss terms"):
        mixer(Recipe(batch_size=8, cutmix=1.0), OwnLoss(4, 7), 7)


def test_plateau_divides_the_lr_after_that_many_epochs_without_improvement():
    from harness.run.train.runner import Stepper

    model = torch.nn.Linear(2, 2)
    recipe = Recipe(optimizer="adam", lr=1.0, schedule="plateau", lr_gamma=0.1, plateau_epochs=30, grad_clip=None)
    stepper = Stepper(model, recipe, steps_per_epoch=1)
    x, y = torch.randn(4, 2), torch.tensor([0, 1, 0, 1])
    lrs = []
    for epoch in range(62):
        stepper.step({"loss": torch.nn.functional.cross_entropy(model(x), y)})  # per step: the lr stays
        stepper.end_epoch(50.0 if epoch == 0 else 40.0)  # the best epoch is the first
        lrs.append(stepper.lr())
    # 30 epochs without improvement (1..30): divided by 10 after epoch 30, and again 30 epochs later
    assert lrs[29] == 1.0 and lrs[30] == pytest.approx(0.1) and lrs[59] == pytest.approx(0.1)
    assert lrs[60] == pytest.approx(0.01)


def test_pfvit_paper_recipe_is_the_papers_plateau_and_scaling_with_flipping():
    import timm

    import methods  # noqa: F401

    with torch.device("meta"):
        recipe = timm.create_model("pfvit", preset="paper").recipe
    assert (recipe.schedule, recipe.lr_gamma, recipe.plateau_epochs, recipe.augment) == ("plateau", 0.1, 30, "scale_flip")
