"""Latency of APViT's configurations and the Table 14 models, batch 1 and 32, tiny and paper presets.

Every benchmark times ``Bench.step`` (one forward, ``no_grad``, eval mode, fixed threads; CUDA
synchronised on a GPU) with ``benchmark.pedantic``, one call per round after warm-up rounds, and
puts FLOPs, the token trace and the environment in ``extra_info``: ``harness.measure.latency`` reads them
back for the report. Run ``make bench``; compare runs with ``--benchmark-compare``.
"""
from __future__ import annotations

import pytest
import torch

from harness.measure import latency
from tests.benchmarks.cases import BATCHES, CASES, PRESETS, QUICK_PAPER, ROUNDS


# Quick mode (benchmarking disabled) times nothing and runs on one thread: on a shared 2-core
# machine two intra-op threads can stall for a scheduler quantum per op.
def _skip_in_quick_mode(quick: bool, preset: str, case_id: str, batch: int) -> None:
    if quick and preset == "paper" and (case_id, batch) not in QUICK_PAPER:
        pytest.skip("benchmarking disabled (quick mode): paper preset runs only "
                    f"{sorted(QUICK_PAPER)} once; `make bench` runs every case")


@pytest.mark.parametrize("batch", BATCHES, ids=lambda b: f"b{b}")
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
@pytest.mark.parametrize("preset", PRESETS)
def test_latency(benchmark, quick, bench_threads, bench_device, preset, case, batch):
    _skip_in_quick_mode(quick, preset, case.id, batch)
    bench = latency.prepare(case.model, preset, case.overrides, batch=batch, threads=1 if quick else bench_threads,
                            device=bench_device)
    info = bench.info()
    assert info["gflops"] and info["gflops"] > 0
    assert info["tokens_before_head"] == bench.token_trace["before_head"]
    benchmark.group = f"{preset} batch {batch}"
    benchmark.extra_info.update(info, kind="latency", label=case.label, family=case.family,
                                is_baseline=case.is_baseline)
    rounds, warmup = ROUNDS[(preset, batch)]
    benchmark.pedantic(bench.step, rounds=rounds, warmup_rounds=warmup, iterations=1)
    assert bench.model.token_trace["before_head"] == info["tokens_before_head"]  # the timed forward pruned as counted


@pytest.mark.parametrize("batch", BATCHES, ids=lambda b: f"b{b}")
@pytest.mark.parametrize("preset", PRESETS)
def test_selection_overhead(benchmark, quick, bench_threads, bench_device, preset, batch):
    """APViT (160, 0.9): the selection steps alone (criteria, top-k, sort, gather) per round."""
    _skip_in_quick_mode(quick, preset, "apvit-160-0.9", batch)
    bench = latency.prepare("apvit", preset, {}, batch=batch, threads=1 if quick else bench_threads,
                            device=bench_device)
    rounds, warmup = ROUNDS[(preset, batch)]
    result = latency.selection_overhead(bench, reps=5 if quick else 30,
                                        rounds=1 if quick else max(3, rounds // 2), warmup=0 if quick else 1)
    parts = latency.selection_parts(bench)
    assert set(result["parts_ms"]) == set(parts) and any(p.startswith("atp[") for p in parts)
    benchmark.group = f"selection {preset} batch {batch}"
    benchmark.extra_info.update(bench.info(), kind="selection", label="APViT (160, 0.9) selection only",
                                family=None, is_baseline=False, selection_share=result["share"],
                                forward_ms=result["forward_ms"], selection_parts_ms=result["parts_ms"])

    def run_selection() -> None:
        with torch.no_grad():
            for fn in parts.values():
                fn()

    benchmark.pedantic(run_selection, rounds=30, warmup_rounds=3, iterations=1)
    if not quick and preset == "paper" and batch == 32:
        assert result["share"] < latency.SELECTION_SHARE_LIMIT, result
