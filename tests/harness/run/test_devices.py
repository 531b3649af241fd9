"""--device: auto, cpu and cuda on this machine; GPUs per worker and per SLURM task."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from harness.run import executors
from harness.run.devices import amp_dtype, gpu_count, peak_tflops, resolve_device, worker_device
from harness.errors import UserError
from harness.run.executors import ExecutorConfig, check_executor

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without a GPU")


@no_cuda
def test_auto_and_cpu_resolve_to_the_cpu_without_a_gpu():
    assert resolve_device("auto") == torch.device("cpu") == resolve_device("cpu")
    assert gpu_count("auto") == 0 and worker_device("auto", 3) == "auto"
    assert amp_dtype("auto", torch.device("cpu")) is None  # bf16 only on CUDA unless asked for
    assert amp_dtype("bf16", torch.device("cpu")) is torch.bfloat16
    assert amp_dtype("auto", torch.device("cuda", 0)) is torch.bfloat16


@no_cuda
@pytest.mark.parametrize("spec", ["cuda", "cuda:1"])
def test_cuda_is_refused_naming_the_device(spec):
    with pytest.raises(UserError, match=f"--device '{spec}': this machine has no CUDA device"):
        resolve_device(spec)
    with pytest.raises(UserError, match=spec):
        check_executor(ExecutorConfig(name="local", device=spec))


@pytest.mark.parametrize("spec", ["tpu", "gpu0", "mps"])
def test_unknown_devices_are_refused(spec):
    with pytest.raises(UserError, match="allowed: auto, cpu, cuda, cuda:N"):
        resolve_device(spec)


@no_cuda
def test_reproduce_refuses_cuda_before_anything_runs(tmp_path):
    out = subprocess.run([sys.executable, "-m", "harness", "reproduce", "--table", "apvit_tab5", "--device", "cuda",
                          "--results", str(tmp_path / "results")], capture_output=True, text=True, timeout=300)
    assert out.returncode != 0
    assert "--device 'cuda': this machine has no CUDA device" in out.stderr
    assert not (tmp_path / "results").exists()


def test_one_worker_per_gpu_each_on_its_own(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setattr("os.cpu_count", lambda: 32)
    cfg = ExecutorConfig(name="local", device="auto")
    assert cfg.parallel() == 4 and cfg.cell_threads() == 8
    assert [worker_device("auto", s) for s in range(5)] == ["cuda:0", "cuda:1", "cuda:2", "cuda:3", "cuda:0"]
    assert worker_device("cuda:2", 0) == "cuda:2"  # a named device is every worker's
    assert ExecutorConfig(name="local", device="cpu").parallel() == 32


def test_slurm_asks_for_one_gpu_per_task_on_a_gpu_partition(monkeypatch, tmp_path):
    from harness.store import Store

    monkeypatch.setattr(executors, "partition_has_gpus", lambda partition: partition == "gpu")
    fake_srun = tmp_path / "bin" / "srun"  # submitit's executor only looks for it; nothing is submitted
    fake_srun.parent.mkdir()
    fake_srun.write_text("#!/bin/sh\nexit 0\n")
    fake_srun.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_srun.parent}:{os.environ['PATH']}")
    store = Store(tmp_path / "r")
    gpu = executors._make_executor(ExecutorConfig(name="slurm", slurm_partition="gpu"), store)
    cpu = executors._make_executor(ExecutorConfig(name="slurm", slurm_partition="cpu"), store)
    forced_cpu = executors._make_executor(ExecutorConfig(name="slurm", slurm_partition="gpu", device="cpu"), store)
    assert gpu.parameters.get("gpus_per_node") == 1
    assert "gpus_per_node" not in cpu.parameters and "gpus_per_node" not in forced_cpu.parameters
    assert (gpu.parameters["cpus_per_task"], cpu.parameters["cpus_per_task"]) == (executors.SLURM_GPU_CPUS, 1)
    assert (gpu.parameters["mem"], cpu.parameters["mem"]) == ("6144M", "3072M")


def test_partition_gpus_come_from_sinfo_gres(monkeypatch, tmp_path):
    fake = tmp_path / "sinfo"
    fake.write_text("#!/bin/sh\ncase \"$*\" in *gpu*) echo 'gpu:h100:8(S:0-1)';; *) echo '(null)';; esac\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    assert executors.partition_has_gpus("gpu") is True
    assert executors.partition_has_gpus("cpu") is False


def test_peak_table_knows_the_lent_gpus():
    assert peak_tflops("NVIDIA H100 80GB HBM3", "bf16") == 989.0
    assert peak_tflops("NVIDIA H100 PCIe", "bf16") == 756.0
    assert peak_tflops("NVIDIA H200", "bf16") == 989.0
    assert peak_tflops("Some Future Accelerator", "bf16") is None


@pytest.mark.parametrize("visible, want", [(None, "0,1"), ("3,5", "3,5"), ("GPU-1a2b,GPU-3c4d", "GPU-1a2b,GPU-3c4d")])
def test_local_workers_see_the_gpus_this_process_sees(monkeypatch, tmp_path, visible, want):
    """submitit's local executor hides every GPU from its jobs unless told otherwise: a real job reports
    the CUDA_VISIBLE_DEVICES it ran with."""
    from harness.store import Store

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    if visible is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    ex = executors._make_executor(ExecutorConfig(name="local", device="auto"), Store(tmp_path / "r"))
    assert ex.submit(os.getenv, "CUDA_VISIBLE_DEVICES").result() == want
    cpu = executors._make_executor(ExecutorConfig(name="local", device="cpu"), Store(tmp_path / "c"))
    assert cpu.submit(os.getenv, "CUDA_VISIBLE_DEVICES").result() == ""
