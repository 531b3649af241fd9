"""The GPU data path: draws taken ahead in order, one packed copy, device-resident splits.

A CPU machine has no CUDA; the "meta" device (shapes only) stands in for it where the order of
work is what is tested, and the CUDA-only checks skip with the reason.
"""
from __future__ import annotations

import pytest
import torch

from harness.data import build_transform, iterate_batches
from harness.data.base import Split
from harness.data.batches import resident
from harness.data.transforms import Pipeline, pack_params, params_to, unpack_params

CUDA = torch.cuda.is_available()


def _split(n: int = 23, size: int = 20) -> Split:
    g = torch.Generator().manual_seed(0)
    return Split(images=torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g),
                 labels=torch.randint(0, 3, (n,), generator=g), names=[str(i) for i in range(n)])


def test_packed_params_come_back_exactly_in_their_shapes_and_dtypes():
    g = torch.Generator().manual_seed(1)
    params = {"theta": torch.randn(5, 2, 3, generator=g), "order": torch.argsort(torch.rand(5, 4, generator=g), 1),
              "use_grey": torch.rand(5, generator=g) < 0.5, "noise": torch.randn(0), "boxes": [(0, 1, 2, 3, 4)]}
    flat, layout = pack_params(params)
    assert flat.dtype == torch.float32 and flat.dim() == 1 and flat.numel() == 30 + 20 + 5
    back = unpack_params(flat, layout)
    for k in ("theta", "order", "use_grey", "noise"):
        assert back[k].dtype == params[k].dtype and torch.equal(back[k], params[k])
    assert params_to(params, torch.device("cpu")) is params  # nothing moves on the CPU
    on_meta = params_to(params, torch.device("meta"))
    assert on_meta["boxes"] == params["boxes"] and on_meta["theta"].device.type == "meta"
    with pytest.raises(TypeError, match="float32, int64 or bool"):
        pack_params({"x": torch.zeros(2, dtype=torch.float64)})


def test_a_pipeline_is_its_draws_then_its_device_work():
    images = _split().images[:8]
    t = build_transform("apvit", 16, train=True)
    assert isinstance(t, Pipeline)
    whole = t(images, torch.Generator().manual_seed(4))
    g = torch.Generator().manual_seed(4)
    halves = t.apply(images, t.draw(8, g))
    assert torch.equal(whole, halves)


def test_batches_on_another_device_are_drawn_ahead_in_the_same_order():
    """Off the CPU, batch k+1's draws are taken before batch k is used: the draws still happen in
    batch order, each batch gets its own, and the generator ends where the CPU path leaves it."""
    drawn, applied = [], []

    def draw(b, g):
        drawn.append(b)
        return {"k": len(drawn) - 1, "u": torch.rand(b, generator=g)}

    def apply(images, params):
        applied.append(params["k"])
        return images.float()

    pipeline = Pipeline(draw, apply)
    split = _split()
    out = list(iterate_batches(split, batch_size=5, transform=pipeline, seed=3, epoch=1, shuffle=True,
                               device="meta"))
    assert applied == [0, 1, 2, 3, 4] and drawn == [5, 5, 5, 5, 3]
    assert all(x.device.type == "meta" and y.device.type == "meta" and i.device.type == "cpu" for x, y, i in out)
    cpu = list(iterate_batches(split, batch_size=5, transform=pipeline, seed=3, epoch=1, shuffle=True))
    assert [i.tolist() for *_, i in out] == [i.tolist() for *_, i in cpu]  # the same order of samples
    assert [len(x) for x, *_ in out] == [5, 5, 5, 5, 3]


def test_a_split_stays_on_the_host_without_cuda():
    split = _split()
    assert resident(split, "cpu") is split


@pytest.mark.skipif(not CUDA, reason="needs a CUDA device (none on this machine)")
def test_a_training_step_on_cuda_never_waits_for_the_host():
    """After a warm-up, steps of the runner's loop (resident split, drawn-ahead augmentation, the
    model's step, the optimiser, the loss meter) run under sync debug mode "error"; the batches
    are the CPU path's up to float rounding."""
    import methods  # noqa: F401  (registers the models)
    from harness.run.overrides import build_model
    from harness.run.train.runner import LossMeter, Stepper
    from methods.interface import get_recipe, training_step
    from methods.losses import build_loss

    dev = torch.device("cuda")
    split = _split(n=64, size=56)
    model = build_model("apvit", "tiny", {}, num_classes=3).to(dev).train()
    recipe = get_recipe(model)
    stepper, meter = Stepper(model, recipe, steps_per_epoch=100), LossMeter(epoch=0)
    loss_fn = build_loss(recipe.loss).to(dev)
    t = build_transform(recipe.augment, recipe.img_size, train=True)
    on_gpu = resident(split, dev)
    assert on_gpu.images.device.type == "cuda"
    batches = iterate_batches(on_gpu, batch_size=8, transform=t, seed=0, epoch=0, shuffle=True, drop_last=True,
                              device=dev)
    for i, (x, y, _) in enumerate(batches):
        if i == 3:
            torch.cuda.set_sync_debug_mode("error")
        try:
            terms = training_step(model, x, y, loss_fn)
            meter.add(terms, i, stepper.lr())
            stepper.step(terms)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    assert set(meter.epoch_means()) == set(terms)
    cpu = [x for x, *_ in iterate_batches(split, batch_size=8, transform=t, seed=0, epoch=0, shuffle=True)]
    gpu = [x.cpu() for x, *_ in iterate_batches(on_gpu, batch_size=8, transform=t, seed=0, epoch=0, shuffle=True,
                                                device=dev)]
    assert all(torch.allclose(a, b, atol=1e-3) for a, b in zip(cpu, gpu))
