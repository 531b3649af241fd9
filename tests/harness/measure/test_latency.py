"""harness.measure.latency: the timing protocol, selection overhead, pytest-benchmark JSON ingestion,
latency-vs-FLOPs ratios, the ``latency`` command and the report's latency section."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch
from pytest_benchmark.stats import Stats

from harness.measure import latency
from harness.report import benchmarks

from harness.report import render
from harness.cli import main
from harness.errors import UserError

PROTOCOL_KEYS = {"median_ms", "iqr_ms", "rounds", "batch", "threads", "gflops", "warmup", "tokens_per_block",
                 "tokens_before_head", "token_trace", "env", "model", "preset", "overrides", "ms_per_image"}


def test_measure_follows_the_protocol():
    r = latency.measure("apvit", "tiny", {"app.k": 80}, batch=2, threads=1, rounds=4, warmup=1)
    assert PROTOCOL_KEYS <= set(r)
    assert (r["batch"], r["threads"], r["rounds"], r["warmup"]) == (2, 1, 4, 1)
    assert len(r["times_ms"]) == 4 and r["min_ms"] <= r["median_ms"] <= r["max_ms"]
    assert r["ms_per_image"] == pytest.approx(r["median_ms"] / 2)
    assert r["gflops"] > 0 and r["token_trace"]["app_k"] < r["token_trace"]["grid"]
    assert r["tokens_before_head"] == r["token_trace"]["before_head"]
    env = r["env"]
    assert env["threads"] == 1 and env["torch"] == torch.__version__ and env["device"] == "cpu"
    assert env["machine_id"].startswith(env["node"]) and env["cpu_model"] in env["machine_id"]
    fa = env["fused_attention"]
    assert fa["sdpa_available"] is True and fa["model_fused_attn"] == "all" and isinstance(fa["sdpa_backend"], str)
    json.dumps(r)  # JSON-safe as a whole


def test_step_runs_in_eval_mode_without_grad_and_at_the_end_of_the_keep_schedule():
    bench = latency.prepare("apvit", "tiny", {"app.schedule": "decay"}, batch=1, threads=1)
    seen = []
    bench.model.head.register_forward_hook(lambda m, i, o: seen.append((torch.is_grad_enabled(), m.training)))
    bench.step()
    assert seen == [(False, False)]
    assert bench.model.progress == 1.0 and bench.token_trace["app_k_paper"] == 160.0
    assert torch.get_num_threads() == 1


def test_flops_are_counted_once_per_configuration():
    a = latency.prepare("apvit", "tiny", {"app.k": 120}, batch=1, threads=1)
    b = latency.prepare("apvit", "tiny", {"app.k": 120}, batch=8, threads=1)
    assert a.flops == b.flops and a.token_trace == b.token_trace
    assert b.inputs.shape == (8, 3, 48, 48)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6, 7, 9, 10, 13])
def test_quartiles_match_pytest_benchmark(n):
    data = [float((i * 7919) % 23) for i in range(n)]
    stats = Stats()
    for d in data:
        stats.update(d)
    q1, q3 = latency.quartiles(data)
    assert (q1, q3) == pytest.approx((stats.q1, stats.q3))
    assert latency.summarise(data)["iqr_ms"] == pytest.approx(1000 * stats.iqr)


@pytest.mark.parametrize("kwargs, match", [
    ({"batch": 0}, "batch"), ({"threads": 0}, "threads"), ({"device": "cuda"}, "CUDA"),
    ({"overrides": {"app.k": 999}}, "app.k"), ({"overrides": {"nope": 1}}, "nope"),
])
def test_bad_input_is_a_user_error(kwargs, match):
    if match == "CUDA" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(UserError, match=match):
        latency.prepare("apvit", "tiny", **kwargs)


def test_unknown_model_is_a_user_error():
    with pytest.raises(UserError, match="unknown method"):
        latency.prepare("no_such_model", "tiny")


def test_selection_parts_cover_app_and_every_pruning_block():
    bench = latency.prepare("apvit", "tiny", {}, batch=2, threads=1)
    parts = latency.selection_parts(bench)
    blocks = bench.model.atp_blocks
    assert list(parts) == ["app.criterion", "app.pool"] + [f"atp[{i}].{p}" for i in blocks for p in ("cls_logits", "pool")]
    kept, idx = parts["app.pool"]()
    assert kept.shape[1] == 1 + bench.token_trace["app_k"]
    r = latency.selection_overhead(bench, reps=3, rounds=2, warmup=0)
    assert set(r["parts_ms"]) == set(parts)
    assert r["selection_ms"] == pytest.approx(sum(r["parts_ms"].values()))
    assert r["share"] == pytest.approx(r["selection_ms"] / r["forward_ms"])


def test_selection_parts_follow_the_configuration():
    soft = latency.selection_parts(latency.prepare("apvit", "tiny", {"app.mode": "soft", "atp.r": 1.0}, threads=1))
    assert list(soft) == ["app.criterion", "app.pool"]
    base = latency.prepare("apvit_baseline", "tiny", {}, threads=1)
    assert latency.selection_parts(base) == {}
    plain = latency.Bench("m", "tiny", {}, 1, 1, torch.device("cpu"), torch.nn.Linear(2, 2), torch.zeros(1, 2),
                          None, None)
    with pytest.raises(UserError, match="no token selection"):
        latency.selection_parts(plain)


# --- pytest-benchmark JSON ----------------------------------------------------------------------


def _bench(name: str, median_s: float, *, label: str, family: str | None, baseline: bool, gflops: float,
           batch: int = 32, machine: str | None = "box | CPU X", kind: str = "latency") -> dict:
    extra = {"label": label, "family": family, "is_baseline": baseline, "gflops": gflops, "batch": batch,
             "preset": "paper", "threads": 2, "kind": kind, "model": "apvit", "overrides": {},
             "tokens_before_head": 105}
    if kind == "selection":
        extra["selection_share"] = 0.012
    if machine:
        extra["env"] = {"machine_id": machine, "torch": "2.x"}
    return {"group": None, "name": name, "fullname": f"tests/benchmarks/test_latency.py::{name}", "params": {},
            "param": None, "extra_info": extra, "options": {},
            "stats": {"min": median_s * 0.9, "max": median_s * 1.2, "mean": median_s, "stddev": 0.01,
                      "rounds": 5, "median": median_s, "iqr": 0.02, "q1": median_s - 0.01, "q3": median_s + 0.01,
                      "iqr_outliers": 0, "stddev_outliers": 0, "outliers": "0;0", "ld15iqr": median_s,
                      "hd15iqr": median_s, "ops": 1 / median_s, "total": 5 * median_s, "iterations": 1}}


def _file(path: Path, benchmarks: list[dict], when: str, node: str = "box") -> Path:
    data = {"machine_info": {"node": node, "processor": "x86_64", "machine": "x86_64", "cpu": {"brand_raw": "CPU X"}},
            "commit_info": {"id": "abc123", "dirty": False}, "benchmarks": benchmarks, "datetime": when,
            "version": "5.3.1"}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


@pytest.fixture
def bench_dir(tmp_path) -> Path:
    d = tmp_path / "results" / "benchmarks" / "Linux-CPython-3.11-64bit"
    _file(d / "0001_old.json", [_bench("test_latency[paper-baseline-b32]", 9.0, label="baseline",
                                       family="apvit", baseline=True, gflops=15.3)], "2026-01-01T00:00:00")
    _file(d / "0002_new.json", [
        _bench("test_latency[paper-baseline-b32]", 6.0, label="baseline", family="apvit", baseline=True, gflops=15.3),
        _bench("test_latency[paper-apvit-160-0.9-b32]", 5.1, label="APViT (160, 0.9)", family="apvit",
               baseline=False, gflops=12.7),
        _bench("test_latency[paper-apvit-80-0.6-b32]", 4.8, label="APViT (80, 0.6)", family="apvit",
               baseline=False, gflops=7.0),
        _bench("test_selection_overhead[paper-b32]", 0.05, label="selection", family=None, baseline=False,
               gflops=12.7, kind="selection"),
    ], "2026-01-02T00:00:00")
    # Another machine, no env in extra_info: machine comes from machine_info; never compared with "box".
    _file(tmp_path / "results" / "benchmarks" / "other" / "0001.json", [
        _bench("test_latency[paper-apvit-160-0.9-b32]", 1.0, label="APViT (160, 0.9)", family="apvit",
               baseline=False, gflops=12.7, machine=None)], "2026-01-03T00:00:00", node="gpu-node")
    (tmp_path / "results" / "benchmarks" / "notes.json").write_text('{"not": "a benchmark"}')
    return tmp_path / "results" / "benchmarks"


def test_load_benchmark_json(bench_dir):
    f = benchmarks.load_benchmark_json([bench_dir])
    assert list(f.columns) == list(benchmarks.FRAME_COLUMNS) + list(benchmarks.RATIO_COLUMNS)
    assert len(f) == 5  # the old baseline run is superseded by the newer one; notes.json skipped
    assert set(f["machine"]) == {"box | CPU X", "gpu-node | CPU X"}
    base = f[(f["name"] == "baseline")].iloc[0]
    assert base["median_ms"] == pytest.approx(6000.0) and base["iqr_ms"] == pytest.approx(20.0)
    assert base["rounds"] == 5 and base["batch"] == 32 and base["ms_per_image"] == pytest.approx(6000 / 32)
    a = f[(f["name"] == "APViT (160, 0.9)") & (f["machine"] == "box | CPU X")].iloc[0]
    assert a["latency_ratio"] == pytest.approx(0.85) and a["flops_ratio"] == pytest.approx(12.7 / 15.3)
    assert a["latency_worse"] is False  # 0.85 <= 0.83 + 0.05
    b = f[f["name"] == "APViT (80, 0.6)"].iloc[0]
    assert b["latency_worse"] is True  # 0.80 > 0.46 + 0.05
    other = f[f["machine"] == "gpu-node | CPU X"].iloc[0]
    assert math.isnan(other["latency_ratio"]) and pd.isna(other["latency_worse"])  # no baseline on that machine
    sel = f[f["kind"] == "selection"].iloc[0]
    assert math.isnan(sel["latency_ratio"])


def test_ratio_flag_tolerance():
    rows = pd.DataFrame({
        "name": ["b", "at", "over"], "machine": "m", "kind": "latency", "preset": "paper", "batch": 1,
        "threads": 2, "family": "f", "is_baseline": [True, False, False], "gflops": [10.0, 8.0, 8.0],
        "median_ms": [100.0, 85.0, 85.5]})
    f = benchmarks.add_ratios(rows)
    assert list(f["latency_worse"]) == [False, False, True]  # 0.85 = 0.80 + 0.05 is not flagged
    assert list(benchmarks.add_ratios(rows, tolerance=0.0)["latency_worse"]) == [False, True, True]
    other_batch = rows.assign(batch=[1, 32, 32])
    assert benchmarks.add_ratios(other_batch)["latency_ratio"].isna().tolist() == [False, True, True]


def test_bad_json_is_a_user_error(tmp_path):
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(UserError, match="x.json"):
        benchmarks.load_benchmark_json([tmp_path])
    with pytest.raises(UserError, match="no such"):
        benchmarks.load_benchmark_json([tmp_path / "missing"])
    assert benchmarks.load_benchmark_json([]).empty


def test_latency_table_says_when_latency_lags_flops(bench_dir):
    t = render.benchmarks_frame(benchmarks.load_benchmark_json([bench_dir]))
    assert list(t["machine"]) == sorted(t["machine"])  # grouped by machine
    notes = dict(zip(t["name"] + " @ " + t["machine"], t["Note"]))
    assert notes["APViT (80, 0.6) @ box | CPU X"].startswith("⚠ latency ratio 0.80 is worse than the FLOPs ratio 0.46")
    assert notes["APViT (160, 0.9) @ box | CPU X"] == "" and notes["baseline @ box | CPU X"] == "baseline"
    assert notes["selection @ box | CPU X"] == "selection only: 1.20% of the forward"
    assert {"median (ms)", "IQR (ms)", "rounds", "latency ratio", "FLOPs ratio"} <= set(t.columns)


# --- commands -----------------------------------------------------------------------------------


def test_latency_command_prints_one_json_object(capsys):
    rc = main(["latency", "apvit", "--preset", "tiny", "--set", "app.k=80", "--batch", "2", "--threads", "1",
               "--rounds", "3", "--warmup", "1", "--selection", "--json"])
    out = capsys.readouterr().out.strip().splitlines()
    assert rc == 0 and len(out) == 1
    r = json.loads(out[0])
    assert {"median_ms", "iqr_ms", "rounds", "batch", "threads", "gflops"} <= set(r)
    assert (r["rounds"], r["batch"], r["threads"], r["overrides"]) == (3, 2, 1, {"app.k": 80})
    assert 0 < r["selection"]["share"] < 1


@pytest.mark.parametrize("argv, match", [
    (["nope"], "unknown method"), (["apvit", "--set", "app.k=999"], "app.k"), (["apvit", "--set", "app.k"], "key=value"),
    (["apvit", "--batch", "0"], "batch"), (["apvit", "--rounds", "0"], "rounds"), (["apvit", "--set", "a=["], "YAML"),
])
def test_latency_command_bad_input(capsys, argv, match):
    assert main(["latency", *argv[:1], "--preset", "tiny", *argv[1:], "--json"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and match in err


def test_report_reads_benchmarks_alone(bench_dir, tmp_path, capsys):
    results = bench_dir.parent
    assert main(["report", "--results", str(results), "--out", str(tmp_path / "rep")]) == 0
    html = (tmp_path / "rep" / "index.html").read_text()
    assert "Latency" in html and "APViT (80, 0.6)" in html and "⚠ latency ratio" in html
    assert "gpu-node | CPU X" in html and (tmp_path / "rep" / "figures" / "latency" / "latency.svg").is_file()
    # an explicit JSON file works too
    assert main(["report", "--results", str(results), "--out", str(tmp_path / "rep2"),
                 "--benchmarks", str(next(bench_dir.rglob("0002_new.json")))]) == 0
    assert "APViT (160, 0.9)" in (tmp_path / "rep2" / "index.html").read_text()


def test_report_without_tables_or_benchmarks_is_a_user_error(tmp_path, capsys):
    (tmp_path / "results").mkdir()
    assert main(["report", "--results", str(tmp_path / "results"), "--out", str(tmp_path / "rep")]) == 2
    assert "make bench" in capsys.readouterr().err
