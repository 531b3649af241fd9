"""End-to-end check that submitit can run jobs on the local single-node SLURM (scripts/slurm_local.sh start).

Skips (with the reason) when the SLURM client tools are missing or no node is usable.

The local cluster has no accounting (no slurmdbd): `sacct` exits 1 with "Slurm accounting storage is
disabled". submitit's SlurmInfoWatcher only uses sacct (no squeue fallback); it logs
"Bypassing sacct error ..., status may be inaccurate" and the job state stays "UNKNOWN". `job.done()` is
still correct for jobs that write a result pickle (success *or* a raised exception), but a job killed
without writing one would make `job.result()` wait forever -- hence the bounded waits below.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

pytestmark = pytest.mark.slurm

JOB_TIMEOUT_S = 45
# responsive, schedulable nodes (a busy node is fine: jobs queue); "idle*", "down", "drain" etc. are not
USABLE_STATES = {"idle", "mixed", "allocated", "completing"}


def _cluster_or_skip() -> str:
    """Return the partition to use, or skip the test with a clear reason (probed once per session)."""
    global _PROBE
    if _PROBE is None:
        try:
            _PROBE = ("ok", _probe_cluster())
        except pytest.skip.Exception as e:
            _PROBE = ("skip", str(e))
    kind, value = _PROBE
    if kind == "skip":
        pytest.skip(value)
    return value


_PROBE: tuple[str, str] | None = None


def _probe_cluster() -> str:
    for tool in ("sbatch", "sinfo", "scancel"):
        if shutil.which(tool) is None:
            pytest.skip(f"`{tool}` not found: SLURM client tools are not installed (apt-get install slurm-wlm)")
    try:
        out = subprocess.run(
            ["sinfo", "-h", "-N", "-o", "%P %T"], capture_output=True, text=True, timeout=15, check=False
        )
    except subprocess.TimeoutExpired:
        pytest.skip("`sinfo` timed out: no SLURM controller answering (run scripts/slurm_local.sh start)")
    if out.returncode != 0:
        pytest.skip(
            f"`sinfo` failed ({out.stderr.strip() or out.returncode}): SLURM cluster not up "
            "(run scripts/slurm_local.sh start)"
        )
    rows = [line.split() for line in out.stdout.splitlines() if line.strip()]
    usable = [(p, s) for p, s in rows if s in USABLE_STATES]
    if not usable:
        pytest.skip(f"no usable (idle/mixed/allocated) SLURM node (sinfo: {rows or 'empty'}); run scripts/slurm_local.sh start")
    wanted = os.environ.get("FERBENCH_SLURM_PARTITION")
    partitions = {p.rstrip("*") for p, _ in usable}
    if wanted:
        if wanted not in partitions:
            pytest.skip(f"partition {wanted!r} has no usable node (usable partitions: {sorted(partitions)})")
        return wanted
    defaults = [p.rstrip("*") for p, _ in usable if p.endswith("*")]
    return defaults[0] if defaults else sorted(partitions)[0]


def _wait(jobs, timeout_s: float = JOB_TIMEOUT_S) -> None:
    """Wait for submitit jobs with a deadline (sacct is unavailable, so state alone can't tell us a job died)."""
    deadline = time.monotonic() + timeout_s
    while not all(job.done() for job in jobs):
        if time.monotonic() > deadline:
            details = []
            for job in jobs:
                try:
                    q = subprocess.run(
                        ["squeue", "-h", "-j", str(job.job_id).split("_")[0], "-o", "%i %T %r"],
                        capture_output=True, text=True, timeout=10, check=False,
                    ).stdout.strip()
                except Exception as e:  # pragma: no cover - diagnostics only
                    q = repr(e)
                details.append(f"{job.job_id}: squeue={q!r} stderr={job.stderr()!r}")
                job.cancel(check=False)
            pytest.fail(f"SLURM jobs not done after {timeout_s}s:\n" + "\n".join(details))
        time.sleep(0.5)


def _square_plus_host(x: int) -> tuple[int, str | None]:
    return x * x, os.environ.get("SLURM_JOB_ID")


def _executor(tmp_path, partition: str):
    submitit = pytest.importorskip("submitit")
    executor = submitit.AutoExecutor(folder=tmp_path / "submitit", cluster="slurm")
    executor.update_parameters(slurm_partition=partition, timeout_min=5, cpus_per_task=1, mem_gb=1)
    return executor


def test_submitit_single_job(tmp_path):
    partition = _cluster_or_skip()
    executor = _executor(tmp_path, partition)
    job = executor.submit(_square_plus_host, 7)
    _wait([job])
    value, slurm_job_id = job.result()
    assert value == 49
    assert slurm_job_id == str(job.job_id)


def test_submitit_job_array(tmp_path):
    partition = _cluster_or_skip()
    executor = _executor(tmp_path, partition)
    jobs = executor.map_array(_square_plus_host, [2, 3])
    assert len(jobs) == 2
    _wait(jobs)
    assert [job.result()[0] for job in jobs] == [4, 9]


class _CountTo:
    """Checkpointable counter: records the progress value at every (re)start so resumption is observable."""

    def __init__(self) -> None:
        self.progress = 0
        self.starts: list[int] = []

    def __call__(self, n: int) -> tuple[int, list[int], str | None]:
        self.starts.append(self.progress)
        while self.progress < n:
            time.sleep(0.5)
            self.progress += 1
            print(f"progress {self.progress}", flush=True)
        return self.progress, self.starts, os.environ.get("SLURM_RESTART_COUNT")

    def checkpoint(self, *args, **kwargs):
        submitit = pytest.importorskip("submitit")
        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)


def test_submitit_checkpoint_requeue(tmp_path):
    """Preemption as submitit simulates it (scancel --signal SIGTERM, then USR2): checkpoint, requeue, resume.

    A requeued job may only restart after AuthInfo cred_expire seconds (120 s by default, 10 s in slurm_local.sh).
    """
    partition = _cluster_or_skip()
    executor = _executor(tmp_path, partition)
    job = executor.submit(_CountTo(), 16)
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while "progress 2" not in (job.stdout() or ""):
        if job.done() or time.monotonic() > deadline:
            job.cancel(check=False)
            pytest.fail(f"job {job.job_id} did not start counting; stderr={job.stderr()!r}")
        time.sleep(0.5)
    job._interrupt()  # what submitit's own tests do: SIGTERM (bypassed) then SIGUSR2 -> checkpoint + scontrol requeue
    _wait([job], timeout_s=60)
    progress, starts, restarts = job.result()
    assert progress == 16
    assert len(starts) == 2 and starts[0] == 0 and starts[1] >= 2, starts  # resumed from the checkpoint
    assert restarts == "1"
