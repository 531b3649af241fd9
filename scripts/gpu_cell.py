"""One whole APViT cell trained end to end through the real executor, and where its time went.

    python scripts/gpu_cell.py --out DIR [--scale paper] [--device cuda] [--timeout-min 9]

Plans a one-row table (APViT's full model, k 160 / r 0.9, on the synthetic RAF-DB stand-in at
the preset's 112 px, one seed) in a temporary tables folder, runs it with ``reproduce`` (40 epochs
at ``paper``) and writes ``DIR/cell.json``: wall time, its split into set-up, training, per-epoch
evaluation, checkpoints and the final test, the accuracy, and the record's speed settings. The
weights start from scratch (``weights.*: none``): a cell's cost does not depend on where its
weights start, and no pre-training stage runs first. ``--scale tiny`` checks the script on a CPU.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
SPEC = {"id": "gpu_cell", "caption": "One APViT cell, timed.", "reading": "scripts/gpu_cell.py",
        "source": {"paper": "APViT", "table": "Table 5", "file": "papers/apvit.txt"}, "method": "apvit",
        "base": {"weights.ir50": "none", "weights.vit": "none"},
        "datasets": [{"key": "rafdb", "label": "RAF-DB"}], "seeds": 1, "baseline": "APViT",
        "rows": [{"label": "APViT", "set": {"app.k": 160, "atp.r": 0.9}}]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--scale", default="paper", choices=("paper", "tiny"))
    p.add_argument("--device", default="cuda")
    p.add_argument("--timeout-min", type=float, default=9.0)
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="gpu-cell-"))
    (work / "tables").mkdir()
    (work / "tables" / "gpu_cell.yaml").write_text(yaml.safe_dump(SPEC, sort_keys=False))
    env = {**os.environ, "FERBENCH_TABLES": str(work / "tables"), "FERBENCH_CACHE": str(work / "cache")}
    results = work / "results"
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-m", "harness", "reproduce", "--table", "gpu_cell", "--scale", args.scale,
                           "--device", args.device, "--results", str(results), "--timeout-min", str(args.timeout_min)],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.time() - t0
    report = {"command_wall_s": wall, "returncode": proc.returncode, "stderr_tail": proc.stderr[-3000:]}
    for rec_path in sorted(results.glob("cells/*/record.json")):
        rec = json.loads(rec_path.read_text())
        t = rec["timing"]
        report.update(cell=rec["cell"]["id"], accuracy=rec["metrics"]["accuracy"], epochs=t["epochs"],
                      steps=t["steps"], wall_s=t["wall_s"], setup_s=t["setup_s"],
                      training_s=t["train_s"] - t.get("epoch_eval_s", 0.0),
                      epoch_eval_s=t.get("epoch_eval_s"), checkpoint_s=t.get("checkpoint_s"), final_test_s=t["eval_s"],
                      speed=rec["provenance"].get("speed"), device_name=rec["provenance"]["device_name"],
                      train_images=t["steps"] * rec["recipe"]["batch_size"],
                      training_images_per_s=t["steps"] * rec["recipe"]["batch_size"] / max(t["train_s"], 1e-9))
    (out / "cell.json").write_text(json.dumps(report, indent=1))
    print(json.dumps({k: v for k, v in report.items() if k != "stderr_tail"}, indent=1))
    return proc.returncode


if __name__ == "__main__":
    raise SystemExit(main())
