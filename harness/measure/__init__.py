"""Timing: latency (pytest-benchmark rounds) and training throughput."""
