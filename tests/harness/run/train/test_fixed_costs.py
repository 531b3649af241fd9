"""The runner's fixed costs: checkpoints by wall time off the training thread, loss terms read once
per epoch, FLOPs counted once per model configuration."""
from __future__ import annotations

import json
import math
import shutil

import pytest
import torch

from harness.run.train import flops as flops_mod
from harness.run.train.runner import CheckpointWriter, LossMeter, NonFiniteLoss, Stepper, _load_checkpoint, host_copy
from harness.store import Store
from methods.interface import Recipe


def _model_and_stepper() -> tuple[torch.nn.Module, Stepper]:
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.LazyLinear(2))
    model(torch.zeros(1, 3, 8, 8))
    return model, Stepper(model, Recipe(optimizer="adam", lr=0.1), steps_per_epoch=10)


def test_checkpoints_follow_wall_time_and_hold_the_state_of_when_they_were_taken(tmp_path, monkeypatch):
    store = Store(tmp_path)
    model, stepper = _model_and_stepper()
    clock = [1000.0]
    monkeypatch.setattr("harness.run.train.runner.time.time", lambda: clock[0])
    writer = CheckpointWriter(store, "c1", every_s=300)
    assert writer.due(last_epoch=False)  # a run's first epoch is always written
    state = {"epoch": 1, "step": 10, "history": [{"epoch": 0}], "best_state": host_copy(model.state_dict())}
    writer.save(model, stepper, state)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)  # training goes on while the checkpoint is written
    state["history"].append({"epoch": 1})
    clock[0] += 299
    assert not writer.due(last_epoch=False) and writer.due(last_epoch=True)
    clock[0] += 1
    assert writer.due(last_epoch=False)
    writer.close()
    ck = _load_checkpoint(store.checkpoint_path("c1").read_bytes())
    assert all(torch.equal(ck["model"][k], before[k]) for k in before)
    assert ck["state"]["history"] == [{"epoch": 0}] and ck["state"]["epoch"] == 1
    assert set(ck["optim"]["opts"]) == {"main"}


def test_a_failed_checkpoint_write_fails_the_training_thread(tmp_path, monkeypatch):
    store = Store(tmp_path)
    model, stepper = _model_and_stepper()

    def full_disk(cell_id, blob):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store, "save_checkpoint", full_disk)
    writer = CheckpointWriter(store, "c1", every_s=0)
    writer.save(model, stepper, {"epoch": 1, "history": []})
    with pytest.raises(OSError, match="No space left"):
        writer.close()
    writer.close()  # reported once


def test_loss_terms_are_summed_as_python_floats_and_a_nan_names_its_step():
    meter = LossMeter(epoch=2)
    values = [0.1, 0.7, 1 / 3]
    for step, v in enumerate(values):
        meter.add({"ce": torch.tensor(v), "aux": torch.tensor(2 * v, dtype=torch.bfloat16)}, step, 0.01)
    means = meter.epoch_means()
    expect_ce = sum(float(torch.tensor(v)) for v in values) / 3  # what a per-step float() read summed
    assert means["ce"] == expect_ce and math.isclose(means["aux"], 2 * sum(values) / 3, rel_tol=1e-2)
    bad = LossMeter(epoch=4)
    bad.add({"ce": torch.tensor(1.0)}, 7, 0.5)
    bad.add({"ce": torch.tensor(float("nan"))}, 8, 0.25)
    with pytest.raises(NonFiniteLoss, match=r"epoch 4, step 8 \(lr 0.25\)"):
        bad.epoch_means()
    assert LossMeter(epoch=0).epoch_means() == {}


def test_flops_are_counted_once_per_configuration(tmp_path, monkeypatch):
    model, _ = _model_and_stepper()
    key = {"method": "m", "img_size": 8}
    first = flops_mod.cached_flops(model, 8, tmp_path, key)
    assert first["gflops"] > 0 and set(first) == set(flops_mod.COST_KEYS)
    monkeypatch.setattr(flops_mod, "count_flops", lambda *a, **k: pytest.fail("counted again"))
    assert flops_mod.cached_flops(model, 8, tmp_path, key) == first
    (entry,) = tmp_path.glob("*.json")
    entry.write_text("{not json")
    monkeypatch.undo()
    assert flops_mod.cached_flops(model, 8, tmp_path, key) == first  # an unreadable entry is counted again
    assert json.loads(entry.read_text()) == first
    assert flops_mod.cached_flops(model, 8, tmp_path, {**key, "img_size": 16}) is not None
    assert len(list(tmp_path.glob("*.json"))) == 2


@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None,
                    reason="torch.compile on the CPU needs a C++ compiler (none on this machine)")
def test_speed_settings_leave_the_cpu_path_alone_and_compile_in_place():
    import dataclasses

    from harness.run.train.runner import speed_settings

    model, _ = _model_and_stepper()
    x = torch.randn(2, 3, 8, 8)
    eager = model(x)
    keys = list(model.state_dict())
    settings = speed_settings(model, dataclasses.replace(Recipe(), compile="default"), torch.device("cpu"))
    assert settings == {"channels_last": False, "cudnn_benchmark": False, "compile": "default",
                        "fused_optimizer": False}
    assert list(model.state_dict()) == keys  # checkpoints and best states keep their keys
    assert torch.allclose(model(x), eager, atol=1e-5)
    from harness.run.overrides import apply_train_overrides

    with pytest.raises(ValueError, match="train.compile='fast': allowed values: off, default, max-autotune"):
        apply_train_overrides(Recipe(), {"compile": "fast"})
