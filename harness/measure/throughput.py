"""Training throughput: images per second and model FLOP utilisation of the training step.

``python -m harness throughput MODEL`` (the ``make bench`` case, and ``scripts/gpu_bench.py`` stage
by stage) times the runner's own training step -- :func:`methods.interface.training_step`, then
:class:`harness.run.train.runner.Stepper` -- on the device the runner would use, two ways:

* ``device batch``: the same batch, already augmented and on the device, every step: the model's
  ceiling;
* ``real data``: batches of the synthetic RAF-DB stand-in (or ``--data-root``'s RAF-DB) through a
  data path (below).

When the second is clearly slower than the first, the data path is the bottleneck.

:class:`Speed` says which of the GPU path's pieces a measurement uses; :data:`STAGES` names the
cumulative steps from the path as it was to the runner's:

* A -- the path before: each batch gathered on the host and copied from pageable memory as it is
  needed, augmentation draws made and copied per batch, every loss term read on the host every
  step, NCHW eager, per-tensor optimiser kernels;
* B -- + the sync-free data path (:mod:`harness.data.batches`: the split resident on the device,
  draws taken ahead and packed into one copy, loss terms read once per epoch);
* C -- + ``channels_last`` and ``cudnn.benchmark``;
* D -- + fused optimisers: the runner's path with ``train.compile: off``;
* E -- + ``torch.compile`` (``train.compile: default``).

Timing: ``warmup`` untimed steps (long enough for ``cudnn.benchmark`` and compilation to settle),
then ``steps`` steps between two CUDA events (wall clock on the CPU): no synchronisation between
timed steps. Model FLOP utilisation (MFU) = achieved model FLOP/s over the device's peak.
Achieved model FLOPs per image = 3 x the forward's multiply-adds (fvcore, the harness's
convention, one multiply-add = one "FLOP") x 2 (a multiply-add is two floating-point operations,
the convention of vendor peaks): the backward costs about twice the forward. The peak comes from
:data:`harness.run.devices.PEAK_TFLOPS` (bf16 with AMP, fp32 without, dense) or ``--peak-tflops``.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch

from harness.errors import UserError
from harness.run.devices import amp_dtype, device_name, peak_tflops, resolve_device
from harness.run.overrides import build_model
from methods.interface import Recipe, get_recipe, training_step

FLOP_CONVENTION = ("gflops_forward: fvcore, one multiply-add = one FLOP; model FLOP/s and MFU: 3 x forward x 2 "
                   "FLOPs per multiply-add, over the dense peak")


@dataclass(frozen=True)
class Speed:
    """Which pieces of the GPU path a measurement uses (the default: what the runner does)."""

    data: str = "resident"  # "host": the path before (see the module doc)
    layout: bool = True  # channels_last + cudnn.benchmark
    fused: bool = True  # fused optimiser kernels
    compile: str = "off"  # train.compile


STAGES: dict[str, Speed] = {
    "A": Speed(data="host", layout=False, fused=False),
    "B": Speed(layout=False, fused=False),
    "C": Speed(fused=False),
    "D": Speed(),
    "E": Speed(compile="default"),
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(step: Callable[[], None], steps: int, warmup: int, device: torch.device) -> float:
    """Mean seconds per call of ``step`` over ``steps`` calls after ``warmup`` untimed ones; CUDA events
    around the whole run, no synchronisation between calls."""
    for _ in range(warmup):
        step()
    _sync(device)
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(steps):
            step()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3 / steps
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - t0) / steps


def _stand_in_split(recipe: Recipe, batch: int, data_root: str | None):
    from harness.data import load_dataset
    from harness.data.synth import synthetic_root

    root = data_root or synthetic_root("rafdb", scale="tiny")
    split = load_dataset("rafdb", root, decode_size=recipe.img_size).splits["train"]
    if len(split.labels) < batch:
        raise UserError(f"throughput: the RAF-DB training split has {len(split.labels)} images, fewer than "
                        f"--batch {batch}")
    return split


def real_batches(recipe: Recipe, batch: int, device: torch.device, data: str, data_root: str | None
                 ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless training batches of RAF-DB (the stand-in by default) on ``device`` through the data
    path ``data`` ("resident": the runner's; "host": the path before, see the module doc)."""
    from harness.data import build_transform, iterate_batches
    from harness.data.batches import resident

    split = _stand_in_split(recipe, batch, data_root)
    tf = build_transform(recipe.augment, recipe.img_size, train=True, mean=recipe.mean, std=recipe.std)
    if data == "resident":
        split, where = resident(split, device), device
    else:  # host batches, each moved when the step needs it, then augmented there with its own draws
        tf, where = (lambda x8, g, tf=tf: tf(x8.to(device), g)), None
    epoch = 0
    while True:
        for x, y, _ in iterate_batches(split, batch_size=batch, transform=tf, seed=0, epoch=epoch, shuffle=True,
                                       drop_last=True, device=where):
            yield x, y.to(device)
        epoch += 1


def _setup(model: str, preset: str, overrides: dict[str, Any] | None, amp: str, dev: torch.device, speed: Speed):
    from harness.run.train.flops import count_flops
    from harness.run.train.runner import Stepper, speed_settings
    from methods.losses import build_loss

    torch.manual_seed(0)
    # weights.* keys only say where training starts; the step costs the same from scratch
    net = build_model(model, preset, {k: v for k, v in (overrides or {}).items() if not k.startswith("weights.")})
    recipe = dataclasses.replace(get_recipe(net), amp=amp, compile=speed.compile)
    macs = count_flops(net, recipe.img_size)["gflops"] * 1e9  # per image, forward, multiply-adds
    net.to(dev).train()
    stepper = Stepper(net, recipe, steps_per_epoch=1_000_000, fused=speed.fused)  # stages A-C: not fused
    settings = speed_settings(net, recipe, dev, layout=speed.layout, fused=stepper.fused)
    kwargs = dict(recipe.loss_kwargs)
    if "prior" in kwargs:  # a data-derived prior costs the same as a uniform one
        k = getattr(net, "num_classes", 7)
        kwargs["prior"] = torch.full((k, k), 1.0 / k)
    loss_fn = build_loss(recipe.loss, **kwargs).to(dev)
    fmt = torch.channels_last if settings["channels_last"] else None
    return net, recipe, macs, stepper, loss_fn, fmt, settings


def measure(model: str, preset: str = "paper", overrides: dict[str, Any] | None = None, *, batch: int = 128,
            amp: str = "auto", device: str = "auto", steps: int = 10, warmup: int = 3,
            peak: float | None = None, real_data: bool = True, data_root: str | None = None,
            threads: int | None = None, speed: Speed = Speed()) -> dict[str, Any]:
    """Time the training step of ``model`` at ``preset`` with ``speed``'s pieces; returns one
    JSON-ready dict (see the module doc)."""
    if batch < 1 or steps < 1 or warmup < 0:
        raise UserError(f"throughput: --batch {batch} and --steps {steps} must be >= 1, --warmup {warmup} >= 0")
    if speed.data not in ("resident", "host"):
        raise UserError(f"throughput: data path {speed.data!r}; allowed values: resident, host")
    dev = resolve_device(device)
    if threads:
        torch.set_num_threads(threads)
    net, recipe, macs, stepper, loss_fn, fmt, settings = _setup(model, preset, overrides, amp, dev, speed)
    dtype = amp_dtype(recipe.amp, dev)
    from harness.run.train.runner import autocast

    kept: list[torch.Tensor] = []

    def step_on(x: torch.Tensor, y: torch.Tensor) -> None:
        if fmt is not None:
            x = x.contiguous(memory_format=fmt)
        with autocast(dev, dtype):
            terms = training_step(net, x, y, loss_fn)
        if speed.data == "host":
            [float(v.detach()) for v in terms.values()]  # the path before read every term every step
        else:
            kept.append(torch.stack([v.detach().float() for v in terms.values()]))  # read once per epoch
        stepper.step(terms)

    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(batch, 3, recipe.img_size, recipe.img_size, generator=g).to(dev)
    y0 = torch.randint(0, getattr(net, "num_classes", 7), (batch,), generator=g).to(dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    out: dict[str, Any] = {"model": model, "preset": preset, "overrides": overrides or {}, "batch": batch,
                           "img_size": recipe.img_size, "device": str(dev), "device_name": device_name(dev),
                           "amp": "bf16" if dtype is not None else "off", "steps": steps, "warmup": warmup,
                           "threads": torch.get_num_threads(), "gflops_forward": macs / 1e9,
                           "speed": dataclasses.asdict(speed), "settings": settings,
                           "flop_convention": FLOP_CONVENTION}
    out.update(_rates("device_batch", time_steps(lambda: step_on(x0, y0), steps, warmup, dev), batch, macs))
    if real_data:
        batches = real_batches(recipe, batch, dev, speed.data, data_root)
        out.update(_rates("real_data", time_steps(lambda: step_on(*next(batches)), steps, warmup, dev), batch, macs))
        out["data_overhead"] = out["real_data_step_s"] / out["device_batch_step_s"] - 1.0
    kept.clear()
    out["peak_memory_gb"] = torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" else None
    precision = "bf16" if dtype is not None else "fp32"
    known = peak_tflops(out["device_name"], precision)
    out["peak_tflops"] = peak or known
    out["peak_source"] = "--peak-tflops" if peak else (f"harness.run.devices.PEAK_TFLOPS ({precision})" if known else None)
    peak = out["peak_tflops"]
    for k in ("device_batch", "real_data"):
        if f"{k}_model_tflops" in out:
            out[f"{k}_mfu"] = out[f"{k}_model_tflops"] / peak if peak else None
    return out


def eval_rates(model: str, preset: str = "paper", overrides: dict[str, Any] | None = None, *,
               batches: tuple[int, ...] = (128, 256, 512, 1024), amp: str = "auto", device: str = "auto",
               steps: int = 10, warmup: int = 3, speed: Speed = Speed()) -> dict[str, Any]:
    """Evaluation images/s (eval mode, no grad, the runner's settings) at each batch size; a batch
    that runs out of device memory is recorded as such."""
    from harness.run.train.runner import autocast

    dev = resolve_device(device)
    net, recipe, _, _, _, fmt, _ = _setup(model, preset, overrides, amp, dev, speed)
    dtype = amp_dtype(recipe.amp, dev)
    net.eval()
    out: dict[str, Any] = {"model": model, "preset": preset, "device_name": device_name(dev), "images_per_s": {}}
    for b in batches:
        x = torch.randn(b, 3, recipe.img_size, recipe.img_size, device=dev)
        if fmt is not None:
            x = x.contiguous(memory_format=fmt)

        @torch.no_grad()
        def forward() -> None:
            with autocast(dev, dtype):
                net(x)

        try:
            out["images_per_s"][str(b)] = b / time_steps(forward, steps, warmup, dev)
        except torch.OutOfMemoryError:
            out["images_per_s"][str(b)] = "out of memory"
            torch.cuda.empty_cache()
    return out


def loss_after(model: str, preset: str = "paper", overrides: dict[str, Any] | None = None, *, steps: int = 20,
               batch: int = 32, amp: str = "auto", device: str = "auto", speed: Speed = Speed()) -> float:
    """The training loss after ``steps`` steps on fixed random batches from a fixed initialisation:
    equal between eager and compiled runs up to float (bf16 with AMP) rounding."""
    from harness.run.train.runner import autocast

    dev = resolve_device(device)
    net, recipe, _, stepper, loss_fn, fmt, _ = _setup(model, preset, overrides, amp, dev, speed)
    dtype = amp_dtype(recipe.amp, dev)
    g = torch.Generator().manual_seed(1)
    loss = float("nan")
    for _ in range(steps):
        x = torch.randn(batch, 3, recipe.img_size, recipe.img_size, generator=g).to(dev)
        y = torch.randint(0, getattr(net, "num_classes", 7), (batch,), generator=g).to(dev)
        if fmt is not None:
            x = x.contiguous(memory_format=fmt)
        with autocast(dev, dtype):
            terms = training_step(net, x, y, loss_fn)
        loss = float(sum(v.detach().float() for v in terms.values()))
        stepper.step(terms)
    return loss


def profile_steps(model: str, preset: str = "paper", overrides: dict[str, Any] | None = None, *, batch: int = 128,
                  amp: str = "auto", device: str = "auto", steps: int = 5, warmup: int = 3, top: int = 15,
                  speed: Speed = Speed()) -> dict[str, Any]:
    """A ``torch.profiler`` trace of ``steps`` training steps: the ``top`` kernels by device time and
    the forward's time per top-level child module (IR-50 backbone vs ViT blocks, ...)."""
    from torch.profiler import ProfilerActivity, profile, record_function

    from harness.run.train.runner import autocast

    dev = resolve_device(device)
    net, recipe, _, stepper, loss_fn, fmt, _ = _setup(model, preset, overrides, amp, dev, speed)
    dtype = amp_dtype(recipe.amp, dev)
    x = torch.randn(batch, 3, recipe.img_size, recipe.img_size, device=dev)
    x = x.contiguous(memory_format=fmt) if fmt is not None else x
    y = torch.randint(0, getattr(net, "num_classes", 7), (batch,), device=dev)
    ranges: dict[int, Any] = {}
    hooks = []
    # one profiler range per top-level child's forward (per element of a ModuleList the model loops over)
    parts = [(n, m) for n, c in net.named_children() for m in (c if isinstance(c, torch.nn.ModuleList) else [c])]
    for name, child in parts:
        def enter(module: torch.nn.Module, _: Any, name: str = name) -> None:
            ranges[id(module)] = record_function(f"module:{name}").__enter__()

        def leave(module: torch.nn.Module, *_: Any) -> None:
            ranges.pop(id(module)).__exit__(None, None, None)

        hooks += [child.register_forward_pre_hook(enter), child.register_forward_hook(leave)]

    def step() -> None:
        with autocast(dev, dtype):
            terms = training_step(net, x, y, loss_fn)
        stepper.step(terms)

    for _ in range(warmup):
        step()
    _sync(dev)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(steps):
            step()
        _sync(dev)
    for h in hooks:
        h.remove()
    events = prof.key_averages()
    dev_time = "self_device_time_total" if dev.type == "cuda" else "self_cpu_time_total"
    kernels = sorted((e for e in events if not e.key.startswith("module:")), key=lambda e: getattr(e, dev_time),
                     reverse=True)[:top]
    total = "device_time_total" if dev.type == "cuda" else "cpu_time_total"
    return {"model": model, "preset": preset, "steps": steps, "time_unit": "ms per step",
            "top_kernels": [{"name": e.key[:120], "ms": getattr(e, dev_time) / 1e3 / steps, "calls": e.count // steps}
                            for e in kernels],
            "forward_by_module": {e.key.removeprefix("module:"): getattr(e, total) / 1e3 / steps
                                  for e in events if e.key.startswith("module:")}}


def _rates(prefix: str, step_s: float, batch: int, macs: float) -> dict[str, float]:
    images = batch / step_s
    return {f"{prefix}_step_s": step_s, f"{prefix}_images_per_s": images,
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
