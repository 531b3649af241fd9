"""Training throughput: images per second and model FLOP utilisation of the training step.

``python -m harness throughput MODEL`` (and the ``make bench`` case) times the runner's own
training step -- :func:`methods.interface.training_step`, then :class:`harness.run.train.runner.Stepper` --
on the device the runner would use, two ways:

* ``device batch``: the same batch, already augmented and on the device, every step: the model's
  ceiling;
* ``real data``: batches of the synthetic RAF-DB stand-in through the runner's data path (uint8
  batch on the host, moved to the device, augmented there with the recipe's pipeline).

When the second is clearly slower than the first, the data pipeline is the bottleneck.

Model FLOP utilisation (MFU) = achieved model FLOP/s over the device's peak. Achieved model
FLOPs per image = 3 x the forward's multiply-adds (fvcore, the harness's convention, one
multiply-add = one "FLOP") x 2 (a multiply-add is two floating-point operations, the convention
of vendor peaks): the backward costs about twice the forward. The peak comes from
:data:`harness.run.devices.PEAK_TFLOPS` (bf16 with AMP, fp32 without) or ``--peak-tflops``.
"""
from __future__ import annotations

import dataclasses
import math
import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch

from harness.run.overrides import build_model
from harness.run.devices import amp_dtype, device_name, peak_tflops, resolve_device
from harness.errors import UserError
from methods.interface import Recipe, get_recipe, training_step


@dataclass
class StepTimes:
    """Seconds per training step after warm-up."""

    seconds: list[float]

    @property
    def median_s(self) -> float:
        """Median step time."""
        return statistics.median(self.seconds)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(step: Callable[[], None], steps: int, warmup: int, device: torch.device) -> StepTimes:
    for _ in range(warmup):
        step()
    _sync(device)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return StepTimes(times)


def _real_batches(recipe: Recipe, batch: int, device: torch.device, n: int, data_root: str | None):
    """``n`` training batches of the synthetic RAF-DB stand-in (or ``data_root``'s RAF-DB) through the
    runner's data path, cycling over epochs."""
    from harness.data import build_transform, iterate_batches, load_dataset
    from harness.data.synth import synthetic_root
    from harness.run.train.runner import on_device

    root = data_root or synthetic_root("rafdb", scale="tiny")
    split = load_dataset("rafdb", root, decode_size=recipe.img_size).splits["train"]
    if len(split.labels) < batch:
        raise UserError(f"throughput: the RAF-DB training split has {len(split.labels)} images, fewer than "
                        f"--batch {batch}")
    tf = on_device(build_transform(recipe.augment, recipe.img_size, train=True, mean=recipe.mean, std=recipe.std),
                   device)
    epoch = 0
    while True:
        for x, y, _ in iterate_batches(split, batch_size=batch, transform=tf, seed=0, epoch=epoch, shuffle=True,
                                       drop_last=True):
            yield x, y.to(device, non_blocking=True)
        epoch += 1


def measure(model: str, preset: str = "paper", overrides: dict[str, Any] | None = None, *, batch: int = 128,
            amp: str = "auto", device: str = "auto", steps: int = 10, warmup: int = 3,
            peak: float | None = None, real_data: bool = True, data_root: str | None = None,
            threads: int | None = None) -> dict[str, Any]:
    """Time the training step of ``model`` at ``preset``; returns one JSON-ready dict (see module doc)."""
    from harness.run.train.flops import count_flops
    from harness.run.train.runner import Stepper, autocast
    from methods.losses import build_loss

    if batch < 1 or steps < 1 or warmup < 0:
        raise UserError(f"throughput: --batch {batch} and --steps {steps} must be >= 1, --warmup {warmup} >= 0")
    dev = resolve_device(device)
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    # weights.* keys only say where training starts; the step costs the same from scratch
    net = build_model(model, preset, {k: v for k, v in (overrides or {}).items() if not k.startswith("weights.")})
    recipe = dataclasses.replace(get_recipe(net), amp=amp)
    dtype = amp_dtype(recipe.amp, dev)
    macs = count_flops(net, recipe.img_size)["gflops"] * 1e9  # per image, forward, multiply-adds
    net.to(dev).train()
    stepper = Stepper(net, recipe, steps_per_epoch=1_000_000)
    kwargs = dict(recipe.loss_kwargs)
    if "prior" in kwargs:  # a data-derived prior costs the same as a uniform one
        k = getattr(net, "num_classes", 7)
        kwargs["prior"] = torch.full((k, k), 1.0 / k)
    loss_fn = build_loss(recipe.loss, **kwargs).to(dev)

    def step_on(x: torch.Tensor, y: torch.Tensor) -> None:
        with autocast(dev, dtype):
            terms = training_step(net, x, y, loss_fn)
        stepper.step(terms)

    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(batch, 3, recipe.img_size, recipe.img_size, generator=g).to(dev)
    y0 = torch.randint(0, getattr(net, "num_classes", 7), (batch,), generator=g).to(dev)
    on_device = _time(lambda: step_on(x0, y0), steps, warmup, dev)
    out: dict[str, Any] = {"model": model, "preset": preset, "overrides": overrides or {}, "batch": batch,
                           "img_size": recipe.img_size, "device": str(dev), "device_name": device_name(dev),
                           "amp": "bf16" if dtype is not None else "off", "steps": steps, "warmup": warmup,
                           "threads": torch.get_num_threads(), "gflops_forward": macs / 1e9,
                           "flop_convention": "gflops_forward: fvcore, one multiply-add = one FLOP; "
                                              "model FLOP/s and MFU: 3 x forward x 2 FLOPs per multiply-add"}
    out.update(_rates("device_batch", on_device, batch, macs))
    if real_data:
        batches = _real_batches(recipe, batch, dev, steps + warmup, data_root)
        out.update(_rates("real_data", _time(lambda: step_on(*next(batches)), steps, warmup, dev), batch, macs))
        out["data_overhead"] = out["real_data_step_s"] / out["device_batch_step_s"] - 1.0
    precision = "bf16" if dtype is not None else "fp32"
    known = peak_tflops(out["device_name"], precision)
    out["peak_tflops"] = peak or known
    out["peak_source"] = "--peak-tflops" if peak else (f"harness.run.devices.PEAK_TFLOPS ({precision})" if known else None)
    peak = out["peak_tflops"]
    for k in ("device_batch", "real_data"):
        if f"{k}_model_tflops" in out:
            out[f"{k}_mfu"] = out[f"{k}_model_tflops"] / peak if peak else None
    return out


def _rates(prefix: str, times: StepTimes, batch: int, macs: float) -> dict[str, float]:
    step = times.median_s
    images = batch / step
    return {f"{prefix}_step_s": step, f"{prefix}_images_per_s": images,
            f"{prefix}_model_tflops": images * macs * 3 * 2 / 1e12}


def summary_line(r: dict[str, Any]) -> str:
    """One human line of a :func:`measure` result."""
    def mfu(k: str) -> str:
        v = r.get(f"{k}_mfu")
        return f"MFU {v:.1%}" if v is not None and math.isfinite(v) else "MFU n/a (unknown peak: --peak-tflops)"

    parts = [f"{r['model']} ({r['preset']}) batch {r['batch']} on {r['device_name']} ({r['device']}), AMP {r['amp']}:",
             f"device batch {r['device_batch_images_per_s']:.1f} img/s ({r['device_batch_step_s'] * 1e3:.0f} ms/step, "
             f"{mfu('device_batch')})"]
    if "real_data_step_s" in r:
        parts.append(f"real data {r['real_data_images_per_s']:.1f} img/s ({r['real_data_step_s'] * 1e3:.0f} ms/step, "
                     f"{mfu('real_data')}; data overhead {r['data_overhead']:+.0%})")
    return " ".join(parts)
