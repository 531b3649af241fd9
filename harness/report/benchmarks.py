"""Reading stored latency results: pytest-benchmark JSON into one frame, with FLOPs-vs-latency ratios.

The timing itself lives in :mod:`harness.measure.latency`; the report only reads what it wrote.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from harness.errors import UserError

RATIO_TOLERANCE = 0.05  # latency ratio may exceed the FLOPs ratio by this much before it is flagged

# Columns of the benchmark frame, in order (``load_benchmark_json``); ratio columns come last.
FRAME_COLUMNS = (
    "name", "machine", "kind", "preset", "batch", "threads", "device", "model", "overrides", "family",
    "is_baseline", "gflops", "tokens_before_head", "median_ms", "iqr_ms", "rounds", "ms_per_image",
    "mean_ms", "min_ms", "max_ms", "stddev_ms", "selection_share", "test", "datetime", "commit", "torch",
    "source",
)
RATIO_COLUMNS = ("latency_ratio", "flops_ratio", "latency_worse")


def machine_id(node: str, cpu: str, gpu: str | None = None) -> str:
    """``"<hostname> | <CPU model>[ | <GPU>]"``: the key timings are grouped by."""
    return " | ".join([node or "unknown", cpu or "unknown"] + ([gpu] if gpu else []))


def _json_files(paths: Iterable[str | os.PathLike]) -> list[Path]:
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(p.rglob("*.json"))
        elif p.is_file():
            files.append(p)
        else:
            raise UserError(f"{p}: no such benchmark file or folder")
    return files


def _rows_of(path: Path, data: dict[str, Any]) -> list[dict[str, Any]]:
    mi = data.get("machine_info") or {}
    cpu = (mi.get("cpu") or {}).get("brand_raw") or mi.get("processor") or ""
    fallback_machine = machine_id(mi.get("node", ""), cpu)
    commit = (data.get("commit_info") or {}).get("id")
    rows = []
    for b in data.get("benchmarks") or []:
        st, ex = b.get("stats") or {}, b.get("extra_info") or {}
        if "median" not in st or ex.get("kind") == "throughput":  # training throughput: not a latency
            continue
        env = ex.get("env") or {}
        batch = ex.get("batch")
        median_ms = 1000.0 * st["median"]
        rows.append({
            "name": ex.get("label") or b.get("name"),
            "machine": env.get("machine_id") or fallback_machine,
            "kind": ex.get("kind", "latency"),
            "preset": ex.get("preset"), "batch": batch, "threads": ex.get("threads", env.get("threads")),
            "device": ex.get("device", env.get("device")), "model": ex.get("model"),
            "overrides": json.dumps(ex.get("overrides"), sort_keys=True) if ex.get("overrides") is not None else None,
            "family": ex.get("family"), "is_baseline": bool(ex.get("is_baseline", False)),
            "gflops": ex.get("gflops"), "tokens_before_head": ex.get("tokens_before_head"),
            "median_ms": median_ms, "iqr_ms": 1000.0 * st.get("iqr", float("nan")), "rounds": st.get("rounds"),
            "ms_per_image": median_ms / batch if batch else None,
            "mean_ms": 1000.0 * st.get("mean", float("nan")), "min_ms": 1000.0 * st.get("min", float("nan")),
            "max_ms": 1000.0 * st.get("max", float("nan")), "stddev_ms": 1000.0 * st.get("stddev", float("nan")),
            "selection_share": ex.get("selection_share"),
            "test": b.get("fullname") or b.get("name"), "datetime": data.get("datetime"), "commit": commit,
            "torch": env.get("torch"), "source": str(path),
        })
    return rows


def load_benchmark_json(paths: Iterable[str | os.PathLike]) -> pd.DataFrame:
    """Read pytest-benchmark JSON files (or folders of them, searched recursively) into one frame.

    One row per benchmark, columns :data:`FRAME_COLUMNS` then :data:`RATIO_COLUMNS` (see
    :func:`add_ratios`); times in ms (pytest-benchmark stores seconds), ``machine`` from the
    suite's ``extra_info["env"]["machine_id"]``, else from the file's ``machine_info`` (hostname
    and CPU brand). When several files hold the same test on the same machine (autosaved runs),
    the newest run (``datetime``) is kept. JSON files that are not pytest-benchmark output are
    skipped; unreadable JSON raises :class:`UserError`.
    """
    rows: list[dict[str, Any]] = []
    for path in _json_files(paths):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise UserError(f"{path}: not readable as JSON ({err})") from None
        if isinstance(data, dict) and "benchmarks" in data:
            rows += _rows_of(path, data)
    frame = pd.DataFrame(rows, columns=list(FRAME_COLUMNS))
    if not frame.empty:
        frame = (frame.sort_values("datetime", kind="stable", na_position="first")
                 .drop_duplicates(["machine", "test"], keep="last").reset_index(drop=True))
    return add_ratios(frame)


def add_ratios(frame: pd.DataFrame, tolerance: float = RATIO_TOLERANCE) -> pd.DataFrame:
    """Add ``latency_ratio``, ``flops_ratio`` and ``latency_worse`` to latency rows.

    A row's baseline is the row with ``is_baseline`` of the same machine, preset, batch, threads
    and ``family`` (same architecture, pooling off); rows without one get NaN. ``latency_ratio`` =
    median / baseline median, ``flops_ratio`` = gflops / baseline gflops, and ``latency_worse`` is
    True when ``latency_ratio > flops_ratio + tolerance``. Timings of different machines are never
    compared.
    """
    out = frame.copy()
    for c in RATIO_COLUMNS:
        out[c] = pd.Series(dtype="object" if c == "latency_worse" else "float64", index=out.index)
    if out.empty:
        return out
    keys = ["machine", "preset", "batch", "threads", "family"]
    lat = out[(out["kind"] == "latency") & out["family"].notna()]
    base = lat[lat["is_baseline"].astype(bool)].drop_duplicates(keys, keep="last").set_index(keys)
    for idx, row in lat.iterrows():
        key = tuple(row[k] for k in keys)
        if key not in base.index:
            continue
        b = base.loc[key]
        lr = row["median_ms"] / b["median_ms"]
        fr = (float(row["gflops"]) / float(b["gflops"])
              if pd.notna(row["gflops"]) and pd.notna(b["gflops"]) and b["gflops"] else math.nan)
        out.at[idx, "latency_ratio"] = lr
        out.at[idx, "flops_ratio"] = fr
        out.at[idx, "latency_worse"] = bool(math.isfinite(fr) and lr > fr + tolerance)
    return out
