"""Fixtures of the latency suite: thread count, device, and quick-mode skipping.

``make bench`` runs this folder with ``--benchmark-enable``; the normal test run has
benchmarking disabled (pyproject's addopts), so every benchmark body runs once, untimed -- the
suite's quick mode, which keeps the benchmark code from rotting.
"""
from __future__ import annotations

import os

import pytest

from harness.measure.latency import default_threads


@pytest.fixture(scope="session")
def bench_threads() -> int:
    """Intra-op threads for every benchmark: $FERBENCH_BENCH_THREADS, else all available CPUs."""
    return int(os.environ.get("FERBENCH_BENCH_THREADS") or default_threads())


@pytest.fixture(scope="session")
def bench_device() -> str:
    """Device to time on: $FERBENCH_BENCH_DEVICE (``cpu`` or ``cuda``), default ``cpu``."""
    return os.environ.get("FERBENCH_BENCH_DEVICE", "cpu")


@pytest.fixture
def quick(benchmark) -> bool:
    """True when benchmarking is disabled: bodies run once, untimed."""
    return bool(benchmark.disabled)
