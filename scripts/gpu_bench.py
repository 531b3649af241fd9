"""The GPU path, stage by stage, in one run that fits a lent GPU's few minutes.

    python scripts/gpu_bench.py --out DIR [--budget-s 420] [--device cuda] [--quick]

Writes ``DIR/<n>-<name>.json`` after every stage (so a run cut off by its time limit still
returns what it measured) and ``DIR/summary.json`` at the end. Stages, in order of what they tell:

1. versions (torch, CUDA, cuDNN, the device);
2. APViT, paper preset, batch 128, bf16: stages A-E of :data:`harness.measure.throughput.STAGES`
   (the data path before -> sync-free -> channels_last + cudnn.benchmark -> fused optimiser ->
   torch.compile), each with the device-batch and real-data rates, MFU and peak memory;
3. the loss after 20 steps, eager against compiled (agreement within bf16 tolerance);
4. F: evaluation images/s at batch 128-1024;
5. G: a 5-step profile of A and E (top kernels, forward time of the IR-50 against the ViT blocks);
6. MAE-ViT-B (224 px) and the Neural Resizer's setting (e) (Swin-B, STN, SR up-scaler, learned
   down-scaler) at stages A, D and E;
7. two processes training the tiny APViT on one GPU against one (``reproduce --cells-per-gpu 2``).

A stage that would start after ``--budget-s`` is written as skipped. ``--quick`` runs every stage
at the tiny preset with a few steps (a CPU check that the script works; the numbers mean nothing).
Timing and MFU conventions: :mod:`harness.measure.throughput`.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

NR_E = {"nr.backbone": "swin_base_patch4_window7_224", "nr.stn": True, "nr.up": "sr", "nr.down": "ltr"}


def versions(device: str) -> dict[str, Any]:
    import torch

    from harness.run.devices import device_name, resolve_device

    dev = resolve_device(device)
    return {"torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
            "device": str(dev), "device_name": device_name(dev), "python": sys.version.split()[0]}


def two_on_one_gpu(device: str, quick: bool) -> dict[str, Any]:
    """Tiny APViT training images/s: one process alone, then two at once on the same device."""
    cmd = [sys.executable, "-m", "harness", "throughput", "apvit", "--preset", "tiny", "--batch", "64",
           "--device", device, "--json", "--steps", "3" if quick else "200", "--warmup", "1" if quick else "20"]

    def run(n: int) -> list[dict[str, Any]]:
        procs = [subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True) for _ in range(n)]
        return [json.loads(p.communicate()[0]) for p in procs]

    one, two = run(1), run(2)
    rate = lambda r: r["real_data_images_per_s"]  # noqa: E731
    return {"one_images_per_s": rate(one[0]), "two_images_per_s": [rate(r) for r in two],
            "aggregate_gain": sum(rate(r) for r in two) / rate(one[0])}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="folder for the JSON files")
    p.add_argument("--budget-s", type=float, default=420.0, help="start no stage after this many seconds")
    p.add_argument("--device", default="cuda")
    p.add_argument("--quick", action="store_true", help="tiny preset, few steps: check the script on a CPU")
    args = p.parse_args()

    import methods  # noqa: F401  (registers the models)
    from harness.measure import throughput as tp

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    preset = "tiny" if args.quick else "paper"
    batch = 8 if args.quick else 128
    steps, warmup = (2, 1) if args.quick else (30, 10)
    run = dict(device=args.device, amp="off" if args.quick else "bf16")
    summary: dict[str, Any] = {}

    def stage(name: str, fn: Callable[[], Any]) -> None:
        n = len(summary) + 1
        if time.time() - t0 > args.budget_s:
            result: Any = {"skipped": f"time budget {args.budget_s:.0f} s spent"}
        else:
            s0 = time.time()
            try:
                result = fn()
            except Exception as err:  # noqa: BLE001 - one stage's failure is a result; the rest still run
                result = {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()[-2000:]}
            if isinstance(result, dict):
                result["stage_wall_s"] = time.time() - s0
        summary[name] = result
        (out / f"{n:02d}-{name}.json").write_text(json.dumps(result, indent=1, default=str))
        print(f"[{time.time() - t0:6.0f} s] {name}: " + (tp.summary_line(result) if "device_batch_step_s" in result
                                                        else json.dumps(result, default=str)[:300]), flush=True)

    stage("versions", lambda: versions(args.device))
    for s in "ABCDE":
        stage(f"apvit_{s}", lambda s=s: tp.measure("apvit", preset, batch=batch, steps=steps, warmup=warmup,
                                                     speed=tp.STAGES[s], **run))
    stage("apvit_loss_eager_vs_compiled", lambda: _agreement(tp, preset, run, 2 if args.quick else 20))
    stage("apvit_F_eval", lambda: tp.eval_rates("apvit", preset, batches=(8, 16) if args.quick
                                                else (128, 256, 512, 1024), steps=steps, warmup=warmup, **run))
    for s in "AE":
        stage(f"apvit_G_profile_{s}", lambda s=s: tp.profile_steps("apvit", preset, batch=batch, steps=5,
                                                                    warmup=warmup, speed=tp.STAGES[s], **run))
    for model, overrides in (("mae_vit_base" if not args.quick else "mae_vit_tiny", {}), ("nr_vit", NR_E)):
        for s in "ADE":
            stage(f"{model}_{s}", lambda s=s, model=model, overrides=overrides: tp.measure(
                model, preset, overrides, batch=batch if not args.quick else 4, steps=steps, warmup=warmup,
                speed=tp.STAGES[s], **run))
    stage("two_cells_on_one_gpu", lambda: two_on_one_gpu(args.device, args.quick))
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    return 0


def _agreement(tp: Any, preset: str, run: dict[str, Any], steps: int) -> dict[str, Any]:
    eager = tp.loss_after("apvit", preset, steps=steps, **run)
    compiled = tp.loss_after("apvit", preset, steps=steps, speed=tp.STAGES["E"], **run)
    rel = abs(compiled - eager) / max(abs(eager), 1e-12)
    # bf16 keeps 8 significant bits: 2^-8 relative rounding per op; 20 steps of a whole model drift
    # further, so "agree" is within 2% here (fp32 runs agree far closer)
    return {"steps": steps, "eager": eager, "compiled": compiled, "relative_difference": rel, "agree": rel <= 0.02}


if __name__ == "__main__":
    raise SystemExit(main())
