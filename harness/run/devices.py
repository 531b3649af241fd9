"""Where training runs: device names, mixed precision, and the peak throughput of known devices.

``--device auto|cpu|cuda[:N]``: ``auto`` is the first CUDA device when one is present, else the
CPU. A CUDA device this machine does not have is refused before anything runs, with its name.
"""
from __future__ import annotations

import os
import shlex
from typing import Any

import torch

from harness.errors import UserError

# Dense peak tensor throughput in TFLOP/s (one multiply-add = 2 FLOPs here, the vendors'
# convention) by device-name fragment, for model FLOP utilisation. bf16 without sparsity; fp32
# is the non-tensor-core figure. ``--peak-tflops`` overrides the table for other devices.
PEAK_TFLOPS: dict[str, dict[str, float]] = {
    "H200": {"bf16": 989.0, "fp32": 67.0},
    "H100 PCIe": {"bf16": 756.0, "fp32": 51.0},
    "H100": {"bf16": 989.0, "fp32": 67.0},  # SXM
    "A100": {"bf16": 312.0, "fp32": 19.5},
    "L40S": {"bf16": 362.0, "fp32": 91.6},
    "A10G": {"bf16": 70.0, "fp32": 31.2},
    "V100": {"bf16": 125.0, "fp32": 15.7},  # fp16 tensor cores; V100 has no bf16
    "RTX 4090": {"bf16": 165.0, "fp32": 82.6},
}


def resolve_device(spec: str = "auto") -> torch.device:
    """``auto`` | ``cpu`` | ``cuda`` | ``cuda:N`` -> a device this machine has, or :class:`UserError`."""
    text = str(spec).strip().lower()
    if text == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(text)
    except RuntimeError:
        raise UserError(f"--device {spec!r} is not a device; allowed: auto, cpu, cuda, cuda:N") from None
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise UserError(f"--device {spec!r}: only cpu and cuda devices are supported; allowed: auto, cpu, cuda, cuda:N")
    if not torch.cuda.is_available():
        raise UserError(f"--device {spec!r}: this machine has no CUDA device "
                        f"(torch {torch.__version__}, CUDA build {torch.version.cuda or 'none'}); use --device cpu or auto")
    index = device.index if device.index is not None else 0
    if index >= torch.cuda.device_count():
        raise UserError(f"--device {spec!r}: this machine has {torch.cuda.device_count()} CUDA device(s) "
                        f"(cuda:0..cuda:{torch.cuda.device_count() - 1})")
    return torch.device("cuda", index)


def gpu_count(spec: str = "auto") -> int:
    """How many GPUs cells may use for ``--device spec`` (0 when it resolves to the CPU)."""
    device = resolve_device(spec)
    if device.type != "cuda":
        return 0
    return torch.cuda.device_count() if str(spec).strip().lower() in ("auto", "cuda") else 1


def local_gpu_parameters(spec: str) -> dict[str, Any]:
    """submitit ``LocalExecutor`` parameters that let its workers see the GPUs this process sees.

    submitit sets ``CUDA_VISIBLE_DEVICES`` for every local job from ``gpus_per_node``, which is 0
    by default: without these parameters a worker sees no GPU at all, and ``--device cuda``
    fails in it. The workers get every GPU visible here (``--device cuda:N`` names one by its
    index among them); none when ``spec`` resolves to the CPU.
    """
    n = gpu_count(spec) and torch.cuda.device_count()
    if not n:
        return {}
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return {"gpus_per_node": n}
    ids = [v.strip() for v in visible.split(",") if v.strip()]
    if all(v.isdigit() for v in ids):
        return {"gpus_per_node": len(ids), "visible_gpus": [int(v) for v in ids]}
    return {"setup": [f"export CUDA_VISIBLE_DEVICES={shlex.quote(visible)}"]}  # UUIDs or MIG names


def worker_device(spec: str, slot: int) -> str:
    """The device of local worker ``slot``: its own GPU (round robin) for ``auto``/``cuda``."""
    n = gpu_count(spec)
    if n <= 1 or str(spec).strip().lower() not in ("auto", "cuda"):
        return spec
    return f"cuda:{slot % n}"


def amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of a recipe's ``amp`` on ``device`` (None = full precision)."""
    if amp == "off" or (amp == "auto" and device.type != "cuda"):
        return None
    return torch.bfloat16


def device_name(device: torch.device) -> str:
    """A human name: the GPU's model, or the CPU's (from /proc/cpuinfo where there is one)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return os.uname().machine


def peak_tflops(name: str, precision: str) -> float | None:
    """The table's peak for a device name (``bf16`` or ``fp32``), or None for an unknown device."""
    for fragment, peaks in PEAK_TFLOPS.items():
        if fragment.lower() in name.lower():
            return peaks.get(precision)
    return None
