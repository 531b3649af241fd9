"""The throughput measurement: rates, the FLOP convention of MFU, and bad input."""
from __future__ import annotations

import math

import pytest

from harness.measure import throughput
from harness.errors import UserError


def test_rates_follow_the_step_time_and_the_flop_convention(harness_env):
    r = throughput.measure("apvit", "tiny", batch=8, device="cpu", amp="off", steps=2, warmup=0, peak=1.0,
                           threads=1)
    for k in ("device_batch", "real_data"):
        assert r[f"{k}_images_per_s"] == pytest.approx(8 / r[f"{k}_step_s"])
        # model FLOPs = 3 x forward multiply-adds x 2 FLOPs each, per image
        assert r[f"{k}_model_tflops"] == pytest.approx(r[f"{k}_images_per_s"] * r["gflops_forward"] * 6 / 1e3)
        assert r[f"{k}_mfu"] == pytest.approx(r[f"{k}_model_tflops"] / 1.0)
    assert r["peak_source"] == "--peak-tflops" and r["amp"] == "off" and r["device"] == "cpu"
    assert r["data_overhead"] == pytest.approx(r["real_data_step_s"] / r["device_batch_step_s"] - 1)
    assert "real data" in throughput.summary_line(r)


def test_unknown_peak_gives_no_mfu(harness_env):
    r = throughput.measure("apvit", "tiny", batch=4, device="cpu", steps=1, warmup=0, real_data=False, threads=1)
    assert r["peak_tflops"] is None and r["device_batch_mfu"] is None and "real_data_step_s" not in r
    assert "unknown peak" in throughput.summary_line(r)


def test_bad_arguments_are_refused():
    with pytest.raises(UserError, match="--batch 0"):
        throughput.measure("apvit", "tiny", batch=0)


@pytest.mark.parametrize("stage", ["A", "D"])
def test_every_stage_of_the_gpu_path_runs_on_the_cpu(harness_env, stage):
    r = throughput.measure("apvit", "tiny", batch=8, device="cpu", amp="off", steps=2, warmup=1, threads=1,
                           speed=throughput.STAGES[stage])
    assert r["real_data_images_per_s"] > 0 and r["speed"]["data"] == ("host" if stage == "A" else "resident")
    assert r["settings"]["channels_last"] is False  # CUDA only
    assert r["peak_memory_gb"] is None


def test_eval_rates_profile_and_the_loss_after_fixed_steps(harness_env):
    rates = throughput.eval_rates("apvit", "tiny", batches=(4, 8), device="cpu", amp="off", steps=1, warmup=0)
    assert set(rates["images_per_s"]) == {"4", "8"} and all(v > 0 for v in rates["images_per_s"].values())
    a = throughput.loss_after("apvit", "tiny", steps=2, batch=4, device="cpu", amp="off")
    assert math.isfinite(a) and a == throughput.loss_after("apvit", "tiny", steps=2, batch=4, device="cpu", amp="off")
    prof = throughput.profile_steps("apvit", "tiny", batch=4, device="cpu", amp="off", steps=1, warmup=0, top=5)
    assert len(prof["top_kernels"]) == 5 and all(k["ms"] >= 0 for k in prof["top_kernels"])
    assert {"backbone", "blocks"} <= set(prof["forward_by_module"])  # the IR-50 vs the ViT
