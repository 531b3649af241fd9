"""FLOP counting with fvcore, in the convention the APViT paper reports (one multiply-add = one FLOP).

One counter (fvcore's ``FlopCountAnalysis``), one set of extra handles, eval mode, one input size
for every method. fvcore counts one fused multiply-add as one FLOP, so its "GFLOPs" are GMACs;
papers that cite fvcore (APViT) use that convention, and so does every number here
(``flop_convention`` in the result says so).

Handles added with ``set_op_handle`` (fvcore has none for these and would count them as zero):

* ``aten::scaled_dot_product_attention``: ``L*S*(E + Ev)`` per batch-head, i.e. the same as the
  two matmuls (q.k^T and attn.v) an unfused attention is counted with, so fused attention can stay on;
* ``aten::_native_multi_head_attention`` (the eval-mode fast path of ``nn.MultiheadAttention``):
  input and output projections plus the two attention matmuls.

Everything else fvcore does not count is reported, not guessed into the total: ``uncounted_ops``
(op name -> number of calls) and ``uncounted_share``, an estimate of the FLOPs they would add at
one FLOP per output element, relative to counted + estimated. The estimate covers the ops in
:data:`ESTIMATED_OPS` (activations, residual adds, PReLU, pooling, top-k, sort, softmax ...);
any other uncounted op is listed in ``uncounted_not_estimated``. Ops fvcore ignores on purpose
(gather, cat, reshape, slicing ...) move data and are not part of either. One trace does all of
it: the estimating handles file their numbers under separate ``~op`` keys.
"""
from __future__ import annotations

import math
import warnings
import json
from collections import Counter
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from fvcore.nn import FlopCountAnalysis
from fvcore.nn.jit_handles import get_shape

FLOP_CONVENTION = "fvcore: one multiply-add = one FLOP (the numbers are MACs), as in the APViT paper"
UNCOUNTED_SHARE_MEASURE = (
    "estimate: one FLOP per output element of each uncounted elementwise/reduction/pooling/top-k op "
    "(harness.flops.ESTIMATED_OPS), divided by (counted + that estimate); ops in uncounted_not_estimated "
    "and data-movement ops fvcore ignores (gather, cat, views) are not included"
)


def sdpa_flop_jit(inputs: list[Any], outputs: list[Any]) -> int:
    """FLOPs of ``scaled_dot_product_attention(q, k, v)``: q [*, L, E], k [*, S, E], v [*, S, Ev].

    ``prod(*) * L * S * (E + Ev)``: q.k^T plus attn.v, as fvcore counts the unfused matmuls
    (softmax and scaling are elementwise and not counted there either).
    """
    q, k, v = (get_shape(t) for t in inputs[:3])
    batch = math.prod(q[:-2])
    return batch * q[-2] * k[-2] * (q[-1] + v[-1])


def native_mha_flop_jit(inputs: list[Any], outputs: list[Any]) -> int:
    """FLOPs of ``aten::_native_multi_head_attention``: query [B, L, E], key/value [B, S, E].

    Projections ``(L + 2 S) E^2 + L E^2`` plus attention ``2 L S E``, per batch element.
    """
    q, k = get_shape(inputs[0]), get_shape(inputs[1])
    batch, L, E = math.prod(q[:-2]), q[-2], q[-1]
    S = k[-2]
    return batch * ((L + 2 * S) * E * E + L * E * E + 2 * L * S * E)


EXTRA_HANDLES = {
    "aten::scaled_dot_product_attention": sdpa_flop_jit,
    "aten::_native_multi_head_attention": native_mha_flop_jit,
}


# Ops fvcore does not count whose cost the uncounted-share estimate includes (one FLOP per output
# element); in-place variants are listed separately because the trace names them separately.
_ELEMENTWISE = ("add", "sub", "rsub", "mul", "div", "neg", "abs", "exp", "log", "sqrt", "rsqrt", "pow",
                "sigmoid", "tanh", "gelu", "silu", "relu6", "hardswish", "hardsigmoid", "leaky_relu",
                "prelu", "elu", "erf", "sign", "where", "minimum", "maximum", "clamp_min", "square")
ESTIMATED_OPS: tuple[str, ...] = tuple(
    f"aten::{op}{suffix}" for op in _ELEMENTWISE for suffix in ("", "_")
) + tuple(f"aten::{op}" for op in (
    "softmax", "log_softmax", "sum", "mean", "amax", "amin", "topk", "sort", "argsort", "cumsum",
    "max_pool2d", "avg_pool2d", "adaptive_max_pool2d", "avg_pool1d", "linalg_vector_norm", "norm", "argmax",
))


def _estimating_handle(op: str, calls: Counter) -> Any:
    key = "~" + op.split("::")[-1]

    def handle(inputs: list[Any], outputs: list[Any]) -> Counter:
        calls[op] += 1
        shape = get_shape(outputs[0]) if outputs else None
        return Counter({key: math.prod(shape) if shape else 0})
    return handle


def _quiet(analysis: FlopCountAnalysis) -> FlopCountAnalysis:
    return analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")


def count_flops(model: nn.Module, input_size: int, batch: int = 1) -> dict[str, Any]:
    """Count a model's FLOPs with fvcore on a ``[batch, 3, input_size, input_size]`` input, eval mode.

    The model is counted as deployed: in eval mode and, if it has a keep schedule
    (``set_progress``), at the end of it (progress 1.0); both are restored afterwards. Returns
    ``gflops`` (per image, multiply-add = 1 FLOP, see ``flop_convention``), ``gflops_by_operator``,
    ``params_m`` (every parameter of the module), ``params_test_m`` (those of the modules the
    test-time forward runs), ``tokens_per_block`` (tokens entering each block, class token included) and
    ``tokens_before_head`` from the model's ``token_trace`` (None for models without one),
    ``uncounted_ops`` (op -> calls), ``uncounted_share`` (+ ``uncounted_share_measure``) and
    ``uncounted_not_estimated`` (uncounted ops the share does not cover).
    """
    if batch < 1 or input_size < 1:
        raise ValueError(f"count_flops: batch ({batch}) and input_size ({input_size}) must be >= 1")
    was_training = model.training
    progress = getattr(model, "progress", None)
    has_schedule = callable(getattr(model, "set_progress", None))
    model.eval()
    if has_schedule:
        model.set_progress(1.0)
    called: set[nn.Module] = set()  # the modules the test-time forward runs
    hooks = [m.register_forward_pre_hook(lambda mod, _: called.add(mod)) for m in model.modules()]
    try:
        x = torch.randn(batch, 3, input_size, input_size, device=next(model.parameters(), torch.empty(0)).device)
        calls: Counter = Counter()
        estimating = {op: _estimating_handle(op, calls) for op in ESTIMATED_OPS}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with torch.no_grad():
                analysis = _quiet(FlopCountAnalysis(model, x).set_op_handle(**estimating, **EXTRA_HANDLES))
                by_op = analysis.by_operator()
                not_estimated = analysis.unsupported_ops()
        estimate = sum(v for op, v in by_op.items() if op.startswith("~"))
        by_op = {op: v for op, v in by_op.items() if not op.startswith("~")}
        total = sum(by_op.values())
        uncounted = dict(sorted((calls + not_estimated).items()))
        trace = getattr(model, "token_trace", None) or {}
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
        if has_schedule and progress is not None:
            model.set_progress(progress)
    # a module counts when it or a submodule ran: a parent called through another method
    # (encoder.forward_features) still owns what the run used (its class token, positions)
    ran = {name for name, m in model.named_modules() if m in called}
    used = {".".join(n.split(".")[:i]) for n in ran for i in range(n.count(".") + 2)}
    test_params = {id(p): p.numel() for name, m in model.named_modules() if name in used
                   for p in m.parameters(recurse=False)}
    return {
        "gflops": total / batch / 1e9,
        "flop_convention": FLOP_CONVENTION,
        "gflops_by_operator": {op: v / batch / 1e9 for op, v in sorted(by_op.items())},
        "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
        # what inference uses; below params_m for models with training-only parts (PF-ViT's
        # generator, discriminator and frozen feature network)
        "params_test_m": sum(test_params.values()) / 1e6,
        "input_size": input_size,
        "batch": batch,
        "tokens_per_block": trace.get("blocks"),
        "tokens_before_head": trace.get("before_head"),
        "uncounted_ops": uncounted,
        "uncounted_share": estimate / (total + estimate) if total + estimate else 0.0,
        "uncounted_share_measure": UNCOUNTED_SHARE_MEASURE,
        "uncounted_not_estimated": sorted(not_estimated),
    }


COST_KEYS = ("gflops", "params_m", "params_test_m", "tokens_per_block", "tokens_before_head", "flop_convention")


def cached_flops(model: nn.Module, input_size: int, cache_dir: Path, key: dict[str, Any]) -> dict[str, Any]:
    """A result record's cost fields (:data:`COST_KEYS` of :func:`count_flops`), counted once per model
    configuration ``key`` (method, scale, non-weights overrides, classes, input size, code version:
    weights do not change a count) and kept as JSON in ``cache_dir``; an unreadable entry is counted
    again. A compiled model is counted through its eager forward (fvcore traces it)."""
    from harness.run.cells import short_hash
    from harness.store import atomic_write_json

    path = Path(cache_dir) / f"{short_hash(key)}.json"
    try:
        cost = json.loads(path.read_text())
        if isinstance(cost, dict) and set(cost) == set(COST_KEYS):
            return cost
    except (OSError, ValueError):
        pass
    compiled = getattr(model, "_compiled_call_impl", None)  # set by nn.Module.compile
    model._compiled_call_impl = None
    try:
        flops = count_flops(model, input_size)
    finally:
        model._compiled_call_impl = compiled
    cost = {k: flops.get(k) for k in COST_KEYS}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, cost)
    except OSError:  # a read-only store still gets its numbers, just not cached
        pass
    return cost
