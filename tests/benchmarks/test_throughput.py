"""Training throughput of APViT (images/s, model FLOP utilisation), with and without AMP.

``make bench`` runs the paper preset at batch 128 on the benchmark device
($FERBENCH_BENCH_DEVICE; a GPU is where this case means something: on a 2-core CPU one paper-scale
step at batch 128 takes minutes, so there it runs the tiny preset at batch 32). The measured rates
go to ``extra_info``; pytest-benchmark's own time is that of the whole measurement.
"""
from __future__ import annotations

import pytest

from harness.measure import throughput
@pytest.mark.parametrize("amp", ["bf16", "off"])
def test_training_throughput(benchmark, quick, bench_threads, bench_device, amp):
    gpu = bench_device.startswith("cuda")
    if not gpu and amp == "bf16" and quick:
        pytest.skip("bf16 autocast on a CPU is slow and not what the case measures; run it on a GPU")
    preset, batch = ("paper", 128) if gpu else ("tiny", 32)
    steps, warmup = (1, 0) if quick else (10, 3)
    result = benchmark.pedantic(throughput.measure, args=("apvit", preset), rounds=1, iterations=1,
                                kwargs=dict(batch=batch, amp=amp, device=bench_device, steps=steps, warmup=warmup,
                                            threads=1 if quick else bench_threads))
    benchmark.extra_info.update(result, kind="throughput")
    assert result["device_batch_images_per_s"] > 0 and result["real_data_images_per_s"] > 0
    assert result["amp"] == ("bf16" if amp == "bf16" else "off")
    print("\n" + throughput.summary_line(result))
