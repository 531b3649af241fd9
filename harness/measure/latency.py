"""Latency protocol shared by ``python -m harness latency`` and the pytest-benchmark suite.

One protocol, three stages, each a plain function:

* :func:`prepare` builds a model at a preset (``harness.run.overrides.build_model``), puts it in eval
  mode at the end of its keep schedule (as deployed, as FLOPs are counted), fixes the intra-op
  thread count with ``torch.set_num_threads``, draws a fixed-seed input and counts FLOPs with
  :func:`harness.run.train.flops.count_flops`. It returns a :class:`Bench` whose ``step()`` is one timed
  call: a forward under ``torch.no_grad`` followed by ``torch.cuda.synchronize`` on a GPU.
* :func:`time_rounds` runs ``warmup`` untimed calls, then ``rounds`` timed ones (one call per
  round); :func:`summarise` reduces them to median, IQR (quartiles computed as pytest-benchmark
  computes them) and the rest. :func:`measure` chains the three; the suite hands ``Bench.step``
  to ``benchmark.pedantic`` with the same rounds and warm-up instead.
* :func:`selection_overhead` times APViT's token selection on its own -- APP criterion, ATP
  class-token logit row, ATP criterion, top-k, sort and gather -- on tensors captured from a real
  forward (same shapes, same values), and divides by the forward time.

The environment recorded with every measurement (:func:`environment`): CPU model, logical CPUs,
intra-/inter-op threads, torch version, device (and GPU name), the 1-minute load average when
the model was prepared (``load_avg_1m``: timings on a busy machine are not trustworthy), and the
fused-attention state:
whether ``F.scaled_dot_product_attention`` exists, which backend torch's dispatcher picks for it
on this device for a small unmasked probe (``FLASH_ATTENTION`` on recent CPUs), the global CUDA
SDPA backend switches (flash / mem-efficient / math; they exist without CUDA too), and whether
the model's attention modules run fused (``fused_attn``: all / none / mixed / n/a).
``machine_id`` is ``"<hostname> | <CPU model>"`` (``| <GPU>`` on a GPU): timings are compared only
within one machine id.

:mod:`harness.report.benchmarks` reads what the suite writes (pytest-benchmark JSON) into the
frame the report takes, with each pruned variant's latency ratio beside its FLOPs ratio.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from harness.errors import UserError
from harness.report.benchmarks import machine_id
from harness.run.train.flops import count_flops

DEFAULT_ROUNDS = 10
DEFAULT_WARMUP = 2
SELECTION_SHARE_LIMIT = 0.03  # selection overhead target: < 3% of the forward (paper scale, batch 32)


# ---------------------------------------------------------------------------------------------
# Environment


def default_threads() -> int:
    """CPUs this process may run on (the suite's and the CLI's default thread count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else ``platform.processor()``, else ``unknown``."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _sdpa_backend(device: torch.device) -> str | None:
    """Backend ``F.scaled_dot_product_attention`` picks on ``device`` for a small unmasked probe
    (``FLASH_ATTENTION``, ``EFFICIENT_ATTENTION``, ``MATH``, ...), as torch's dispatcher decides it."""
    if not hasattr(F, "scaled_dot_product_attention"):
        return None
    try:
        from torch.nn.attention import SDPBackend

        q = torch.randn(1, 2, 8, 16, device=device)
        return SDPBackend(torch._fused_sdp_choice(q, q, q)).name
    except (AttributeError, ImportError, RuntimeError, ValueError):
        return "unknown"


def _model_fused_attn(model: torch.nn.Module | None) -> str:
    flags = [bool(m.fused_attn) for m in model.modules() if hasattr(m, "fused_attn")] if model is not None else []
    if not flags:
        return "n/a"
    return "all" if all(flags) else "none" if not any(flags) else "mixed"


def environment(threads: int | None = None, device: str | torch.device = "cpu",
                model: torch.nn.Module | None = None) -> dict[str, Any]:
    """What a timing depends on besides the model: see the module docstring for every field."""
    device = torch.device(device)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    cpu = cpu_model()
    node = platform.node()
    return {
        "machine_id": machine_id(node, cpu, gpu),
        "node": node,
        "cpu_model": cpu,
        "logical_cpus": os.cpu_count(),
        "threads": torch.get_num_threads() if threads is None else threads,
        "interop_threads": torch.get_num_interop_threads(),
        "torch": torch.__version__,
        "device": str(device),
        "gpu": gpu,
        "fused_attention": {
            "sdpa_available": hasattr(F, "scaled_dot_product_attention"),
            "sdpa_backend": _sdpa_backend(device),
            "model_fused_attn": _model_fused_attn(model),
            "cuda_flash_sdp_enabled": torch.backends.cuda.flash_sdp_enabled(),
            "cuda_mem_efficient_sdp_enabled": torch.backends.cuda.mem_efficient_sdp_enabled(),
            "cuda_math_sdp_enabled": torch.backends.cuda.math_sdp_enabled(),
        },
        "mkldnn": torch.backends.mkldnn.is_available(),
        # Other processes on the machine distort timings (two intra-op threads on a busy 2-core
        # machine can wait a scheduler quantum per op): record the load when the bench starts.
        "load_avg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


# ---------------------------------------------------------------------------------------------
# Protocol


_FLOPS_CACHE: dict[str, dict[str, Any]] = {}


def _key(model_name: str, preset: str, overrides: dict[str, Any]) -> str:
    return json.dumps([model_name, preset, overrides], sort_keys=True, default=str)


@dataclass
class Bench:
    """A model ready to time: ``step()`` is one round; ``info()`` is what goes to ``extra_info``."""

    model_name: str
    preset: str
    overrides: dict[str, Any]
    batch: int
    threads: int
    device: torch.device
    model: torch.nn.Module
    inputs: torch.Tensor
    flops: dict[str, Any] | None
    token_trace: dict[str, Any] | None
    env: dict[str, Any] = field(default_factory=dict)

    def step(self) -> None:
        """One timed call: forward under ``no_grad``; wait for the GPU when on one."""
        with torch.no_grad():
            self.model(self.inputs)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def info(self) -> dict[str, Any]:
        """JSON-safe description: model, preset, overrides, batch, threads, FLOPs, token trace, env."""
        f = self.flops or {}
        return {
            "model": self.model_name, "preset": self.preset, "overrides": dict(self.overrides),
            "batch": self.batch, "threads": self.threads, "device": str(self.device),
            "gflops": f.get("gflops"), "flop_convention": f.get("flop_convention"),
            "params_m": f.get("params_m"), "input_size": int(self.inputs.shape[-1]),
            "tokens_per_block": f.get("tokens_per_block"), "tokens_before_head": f.get("tokens_before_head"),
            "token_trace": self.token_trace, "env": self.env,
        }


def prepare(model_name: str, preset: str = "paper", overrides: dict[str, Any] | None = None, *,
            batch: int = 1, threads: int | None = None, device: str = "cpu", seed: int = 0,
            count: bool = True) -> Bench:
    """Build ``model_name`` at ``preset`` with ``overrides`` and make it ready to time.

    Eval mode, keep schedule at its end (``set_progress(1.0)``), ``threads`` intra-op threads
    (default: :func:`default_threads`), a ``[batch, 3, S, S]`` standard-normal input drawn with
    ``seed`` (S = the recipe's image size). With ``count`` the FLOPs (fvcore, per image, batch 1)
    and the token trace are computed once per (model, preset, overrides) in this process and
    cached. Bad names, overrides, batch or threads raise :class:`UserError`.
    """
    from harness.run.overrides import build_model

    overrides = dict(overrides or {})
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise UserError(f"batch {batch!r}: must be an integer >= 1")
    threads = default_threads() if threads is None else threads
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise UserError(f"threads {threads!r}: must be an integer >= 1")
    try:
        dev = torch.device(device)
    except RuntimeError as err:
        raise UserError(f"device {device!r}: {err}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {device!r}: CUDA is not available on this machine")
    torch.set_num_threads(threads)
    try:
        model = build_model(model_name, preset, overrides)
    except (ValueError, TypeError) as err:
        raise UserError(f"{model_name} ({preset}): {err}") from None
    model.eval()
    if callable(getattr(model, "set_progress", None)):
        model.set_progress(1.0)
    size = int(getattr(getattr(model, "recipe", None), "img_size", 0) or model.pretrained_cfg["input_size"][-1])
    flops = trace = None
    if count:
        key = _key(model_name, preset, overrides)
        if key not in _FLOPS_CACHE:
            result = count_flops(model, size)
            tt = getattr(model, "token_trace", None)
            _FLOPS_CACHE[key] = {**result, "token_trace": dict(tt) if tt else None}
        cached = dict(_FLOPS_CACHE[key])
        trace = cached.pop("token_trace")
        flops = cached
    model.to(dev)
    gen = torch.Generator().manual_seed(seed)
    inputs = torch.randn(batch, 3, size, size, generator=gen).to(dev)
    return Bench(model_name, preset, overrides, batch, threads, dev, model, inputs, flops, trace,
                 environment(threads, dev, model))


def time_rounds(step: Callable[[], None], rounds: int = DEFAULT_ROUNDS, warmup: int = DEFAULT_WARMUP) -> list[float]:
    """Call ``step`` ``warmup`` times untimed, then ``rounds`` times timed; seconds per round."""
    if rounds < 1 or warmup < 0:
        raise UserError(f"rounds ({rounds}) must be >= 1 and warm-up rounds ({warmup}) >= 0")
    for _ in range(warmup):
        step()
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return times


def quartiles(data: list[float]) -> tuple[float, float]:
    """(Q1, Q3) as pytest-benchmark computes them (Wikipedia methods 2 and 3), so IQRs agree."""
    d = sorted(data)
    n = len(d)
    if n == 1:
        return d[0], d[0]
    if n % 2 == 0:
        return statistics.median(d[: n // 2]), statistics.median(d[n // 2:])
    m, q = n // 4, n % 4
    if q == 1:
        return 0.25 * d[m - 1] + 0.75 * d[m], 0.75 * d[3 * m] + 0.25 * d[3 * m + 1]
    return 0.75 * d[m] + 0.25 * d[m + 1], 0.25 * d[3 * m + 1] + 0.75 * d[3 * m + 2]


def summarise(times_s: list[float], batch: int = 1) -> dict[str, Any]:
    """Round times (s) -> median_ms, iqr_ms, q1_ms, q3_ms, mean_ms, min_ms, max_ms, stddev_ms,
    rounds, ms_per_image and the raw ``times_ms``."""
    ms = [1000.0 * t for t in times_s]
    q1, q3 = quartiles(ms)
    median = statistics.median(ms)
    return {
        "median_ms": median, "iqr_ms": q3 - q1, "q1_ms": q1, "q3_ms": q3, "mean_ms": statistics.fmean(ms),
        "min_ms": min(ms), "max_ms": max(ms), "stddev_ms": statistics.stdev(ms) if len(ms) > 1 else 0.0,
        "rounds": len(ms), "ms_per_image": median / batch, "times_ms": ms,
    }


def measure(model_name: str, preset: str = "paper", overrides: dict[str, Any] | None = None, *,
            batch: int = 1, threads: int | None = None, rounds: int = DEFAULT_ROUNDS,
            warmup: int = DEFAULT_WARMUP, device: str = "cpu", seed: int = 0) -> dict[str, Any]:
    """Time one configuration with the suite's protocol; one flat JSON-safe dict.

    Keys: model, preset, overrides, batch, threads, device, input_size, warmup, every key of
    :func:`summarise` (median_ms, iqr_ms, rounds, ...), gflops (+ flop_convention, params_m),
    tokens_per_block, tokens_before_head, token_trace and env (:func:`environment`).
    """
    bench = prepare(model_name, preset, overrides, batch=batch, threads=threads, device=device, seed=seed)
    times = time_rounds(bench.step, rounds, warmup)
    return {**bench.info(), "warmup": warmup, **summarise(times, batch)}


def profile(bench: Bench, rounds: int = 1, row_limit: int = 20) -> str:
    """``torch.profiler`` table of ``rounds`` calls of ``bench.step`` (self CPU time order)."""
    bench.step()  # warm-up outside the profile
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(rounds):
            bench.step()
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=row_limit)


# ---------------------------------------------------------------------------------------------
# Selection overhead


def _median_ms(fn: Callable[[], Any], reps: int) -> float:
    fn()
    return summarise(time_rounds(fn, rounds=reps, warmup=1))["median_ms"]


def selection_parts(bench: Bench) -> dict[str, Callable[[], Any]]:
    """The token-selection steps of an APViT forward, as closures over captured real tensors.

    One forward of ``bench`` with hooks captures the projected patch features (APP input) and
    the input of every pruning block. Returned (name -> zero-argument callable), in forward order:
    ``app.criterion`` (score on [B, N, D]), ``app.pool`` (top-k + sort + gather, or the soft
    re-weighting) when APP is on, then per pruning block i ``atp[i].cls_logits`` (the recomputed
    class-token logit row, O(N d) per head, [B, H, N-1]) and ``atp[i].pool`` (head reduction +
    top-k + sort + gather) when ATP is on. Anything else (projections, attention, MLP) is not
    selection and is left out. Models without APP/ATP raise :class:`UserError`.
    """
    from methods.layers.pooling import atp_pool, soft_pool, topk_pool

    model = bench.model
    if not all(hasattr(model, a) for a in ("current_keep", "app_criterion", "atp_blocks", "patch_embed")):
        raise UserError(f"{bench.model_name}: no token selection (APP/ATP) to time")
    _, k_eff, r = model.current_keep()
    captured: dict[str, torch.Tensor] = {}
    hooks = [model.patch_embed.register_forward_hook(lambda m, i, o: captured.__setitem__("feats", o))]
    for i in model.atp_blocks:
        hooks.append(model.blocks[i].register_forward_pre_hook(
            lambda m, args, i=i: captured.__setitem__(f"block{i}", args[0])))
    try:
        bench.step()
    finally:
        for h in hooks:
            h.remove()
    parts: dict[str, Callable[[], Any]] = {}
    with torch.no_grad():
        feats = captured["feats"]  # [B, N, D]
        B, N, _ = feats.shape
        tokens = torch.cat([(model.cls_token + model.pos_embed[:, :1]).expand(B, -1, -1),
                            feats + model.pos_embed[:, 1:]], dim=1)  # [B, 1 + N, D]
        if k_eff < N:
            scores = model.app_criterion(feats)  # [B, N]
            parts["app.criterion"] = lambda: model.app_criterion(feats)
            if model.pooling["app.mode"] == "hard":
                parts["app.pool"] = lambda: topk_pool(tokens, scores, k_eff, model.num_prefix_tokens)
            else:
                parts["app.pool"] = lambda: soft_pool(tokens, scores, model.num_prefix_tokens)
        for i in model.atp_blocks if r < 1.0 else ():
            blk, x = model.blocks[i], captured[f"block{i}"]  # x: [B, T, C]
            attn = blk.attn
            T = x.shape[1]
            qkv = attn.qkv(blk.norm1(x)).reshape(B, T, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
            q, k = qkv[0], qkv[1]  # [B, H, T, d]
            x_res = x + attn(blk.norm1(x))[0]  # [B, T, C], what the block pools
            logits = ((q[:, :, :1] * attn.scale) @ k[:, :, 1:].transpose(-2, -1)).squeeze(2)  # [B, H, T-1]
            parts[f"atp[{i}].cls_logits"] = (
                lambda q=q, k=k, s=attn.scale: ((q[:, :, :1] * s) @ k[:, :, 1:].transpose(-2, -1)).squeeze(2))
            parts[f"atp[{i}].pool"] = (
                lambda x_res=x_res, logits=logits, c=blk.criterion: atp_pool(x_res, logits, r, c))
    return parts


def selection_overhead(bench: Bench, forward_ms: float | None = None, reps: int = 20,
                       rounds: int = 3, warmup: int = 1) -> dict[str, Any]:
    """Time the selection steps of ``bench`` (see :func:`selection_parts`) against its forward.

    Each part is timed alone, ``reps`` rounds after one warm-up call, under ``no_grad``; its median
    is kept. ``selection_ms`` is their sum; ``forward_ms`` is the median forward (measured here
    with ``rounds``/``warmup`` unless given); ``share = selection_ms / forward_ms``. Timing a part
    alone leaves out the cost of interleaving it with the rest (cache effects); it also leaves out
    nothing that runs only because of selection, since every selection op is in some part.
    """
    parts = selection_parts(bench)
    with torch.no_grad():
        part_ms = {name: _median_ms(fn, reps) for name, fn in parts.items()}
    if forward_ms is None:
        forward_ms = summarise(time_rounds(bench.step, rounds, warmup))["median_ms"]
    selection_ms = sum(part_ms.values())
    return {"selection_ms": selection_ms, "forward_ms": forward_ms, "share": selection_ms / forward_ms,
            "parts_ms": part_ms, "reps": reps, "batch": bench.batch, "threads": bench.threads,
            "preset": bench.preset, "model": bench.model_name, "overrides": dict(bench.overrides)}


# ---------------------------------------------------------------------------------------------
# pytest-benchmark JSON -> frame
