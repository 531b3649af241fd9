"""Fixtures for end-to-end harness tests: a tiny table spec on tiny synthetic data."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

# Small enough that a cell trains in a few seconds on one core; a real spec otherwise. Cells start
# from scratch unless a test asks for the face-ID stage (tests/harness/test_stages.py).
TINY_DATA = {"data.n_train": 160, "data.n_test": 70}
TINY_TRAIN = {"train.epochs": 3, "train.batch_size": 32}
SCRATCH = {"weights.ir50": "none", "weights.vit": "none"}
TINY_STAGE = {"data.identities": 8, "data.n_train": 96, "data.n_test": 32, "train.epochs": 2,
              "train.batch_size": 16}


def write_spec(directory: Path, table_id: str, rows: list[dict], seeds: int = 1,
               datasets: list[dict] | None = None, base: dict | None = None) -> Path:
    """Write a table spec YAML for tests; returns the directory."""
    spec = {"id": table_id, "caption": "test table", "reading": "test",
            "source": {"paper": "APViT", "table": "Table T", "file": "papers/apvit.txt"},
            "method": "apvit", "base": {**TINY_DATA, **TINY_TRAIN, **SCRATCH, **(base or {})},
            "datasets": datasets or [{"key": "rafdb", "label": "RAF-DB"}], "seeds": seeds,
            "baseline": rows[0]["label"], "rows": rows}
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{table_id}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return directory


def write_stage(directory: Path, overrides: dict | None = None, stage_id: str = "faceid_ir50") -> Path:
    """Write a tiny face-ID stage spec into ``<tables>/stages`` (it shadows the repository's)."""
    spec = {"id": stage_id, "purpose": "test stage", "method": "faceid_ir50", "dataset": "faceid",
            "provides": ["weights.ir50"], "set": {**TINY_STAGE, **(overrides or {})}, "seed": 0}
    (directory / "stages").mkdir(parents=True, exist_ok=True)
    path = directory / "stages" / f"{stage_id}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def synth_cache(tmp_path_factory) -> Path:
    """One synthetic-data cache for the whole session (generation is the slow part)."""
    return tmp_path_factory.mktemp("synth-cache")


@pytest.fixture
def harness_env(tmp_path, monkeypatch, synth_cache):
    """Tables dir, results dir and synthetic cache wired through the documented env vars."""
    tables = tmp_path / "tables"
    tables.mkdir()
    monkeypatch.setenv("FERBENCH_TABLES", str(tables))
    monkeypatch.setenv("FERBENCH_CACHE", str(synth_cache))
    monkeypatch.setenv("FERBENCH_RESULTS", str(tmp_path / "results"))
    monkeypatch.delenv("FERBENCH_DATA_ROOT", raising=False)
    monkeypatch.delenv("FERBENCH_INJECT_FAULT", raising=False)
    return {"tables": tables, "results": tmp_path / "results", "cache": synth_cache}
