"""Method plugins: the example family (examples/ferbench_example), installed as a package into a
temporary folder, is found through its entry point and benchmarked end to end like a built-in one."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness.conftest import synth_cache  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "ferbench_example"


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """``pip install`` of a copy of the example package into a fresh target folder (no network)."""
    work = tmp_path_factory.mktemp("plugin")
    shutil.copytree(EXAMPLE, work / "src", ignore=shutil.ignore_patterns("build", "*.egg-info"))
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(work / "site"), str(work / "src")], check=True)
    return work / "site"


def harness(*argv: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *argv], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)


def test_an_installed_plugin_is_listed_validated_and_benchmarked(installed, tmp_path, synth_cache):
    env = {**os.environ, "PYTHONPATH": str(installed), "FERBENCH_CACHE": str(synth_cache),
           "FERBENCH_RESULTS": str(tmp_path / "results"),
           "FERBENCH_TABLES": os.pathsep.join([str(EXAMPLE / "tables"), str(REPO / "tables")])}
    env.pop("FERBENCH_DATA_ROOT", None)
    models = harness("models", env=env)
    assert models.returncode == 0 and "smallcnn: SmallCNN: an example method family" in models.stdout
    keys = harness("keys", "smallcnn", "--preset", "tiny", env=env)
    assert keys.returncode == 0 and "cnn.width" in keys.stdout and "int >= 8" in keys.stdout

    tables = harness("tables", env=env)  # the plugin's table beside the repository's
    assert "smallcnn_width" in tables.stdout and "apvit_tab5" in tables.stdout
    bad = harness("reproduce", "--table", "smallcnn_width", "--set", "cnn.width=4", "--dry-run", env=env)
    assert bad.returncode == 2 and "cnn.width: 4 is not allowed; allowed values: int >= 8" in bad.stderr

    run = harness("reproduce", "--table", "smallcnn_width", "--executor", "local", env=env)
    assert run.returncode == 0, run.stderr
    assert "2 done, 0 cached, 0 failed" in run.stderr
    collected = harness("collect", "--table", "smallcnn_width", env=env)
    assert collected.returncode == 0 and collected.stdout.count("| ok ") == 2
    assert "width 16" in collected.stdout and "width 8" in collected.stdout

    # the plugin's code is part of its cells' code version: a comment keeps them, a statement does not
    family = installed / "ferbench_example" / "smallcnn.py"
    family.write_text(family.read_text() + "\n# a comment\n")
    assert '"ok": 2' in harness("status", "--table", "smallcnn_width", "--json", env=env).stdout
    family.write_text(family.read_text().replace("mean(dim=(2, 3))", "mean(dim=(3, 2))"))
    assert '"stale": 2' in harness("status", "--table", "smallcnn_width", "--json", env=env).stdout


def test_without_the_package_the_family_is_unknown(tmp_path):
    env = {**os.environ, "FERBENCH_TABLES": str(EXAMPLE / "tables"), "FERBENCH_RESULTS": str(tmp_path / "r")}
    env.pop("PYTHONPATH", None)
    run = harness("reproduce", "--table", "smallcnn_width", "--dry-run", env=env)
    assert run.returncode == 2 and "unknown method 'smallcnn'" in run.stderr
