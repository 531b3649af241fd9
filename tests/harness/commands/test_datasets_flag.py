"""``--datasets`` on reproduce, status, collect, report and publish: a run of some columns, shown as such."""
from __future__ import annotations

import json

import pytest

from harness.cli import main
from harness.store import Store
from tests.harness.conftest import harness_env, synth_cache, write_spec  # noqa: F401  (fixtures)

pytestmark = pytest.mark.slow

COLUMNS = [{"key": "rafdb", "label": "RAF-DB"}, {"key": "sfew", "label": "SFEW"}]


def test_a_run_of_one_column_is_planned_run_and_shown_as_one(harness_env, tmp_path, capsys):
    write_spec(harness_env["tables"], "two_col", [{"label": "apvit", "set": {}}], datasets=COLUMNS)
    assert main(["reproduce", "--table", "two_col", "--datasets", "rafdb", "--executor", "debug"]) == 0
    assert "1 rows x 1 datasets (left out: sfew) x 1 seeds = 1 cells" in capsys.readouterr().err
    store = Store(harness_env["results"])
    assert [store.record(c)["cell"]["dataset"] for c in store.cell_ids()] == ["rafdb"]
    assert store.invocation("two_col")["datasets"] == ["rafdb"]

    # status, collect and report default to the run's columns; --datasets and --spec-only choose others
    assert main(["status", "--table", "two_col", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["counts"] == {"two_col": {"ok": 1}}
    assert main(["status", "--table", "two_col", "--spec-only", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["counts"] == {"two_col": {"ok": 1, "missing": 1}}
    assert main(["collect", "--table", "two_col"]) == 0
    out = capsys.readouterr().out
    assert "| rafdb " in out and "sfew" not in out
    assert main(["collect", "--table", "two_col", "--datasets", "sfew"]) == 0
    out = capsys.readouterr().out
    assert "| sfew " in out and "| missing " in out and "rafdb" not in out

    assert main(["report", "--table", "two_col", "--out", str(tmp_path / "rep")]) == 0
    page = next(p for p in (tmp_path / "rep").rglob("*.html") if "Columns left out" in p.read_text()).read_text()
    assert "Columns left out of this run" in page and "SFEW" in page
    table_md = (tmp_path / "rep" / "tables" / "two_col.md").read_text()
    assert "RAF-DB" in table_md and "SFEW" not in table_md

    assert main(["publish", "--table", "two_col", "--out", str(tmp_path / "site")]) == 0
    md = (tmp_path / "site" / "tables" / "two_col.md").read_text()
    assert "RAF-DB" in md and "SFEW" not in md


def test_unknown_columns_are_refused_naming_the_allowed_ones(harness_env, capsys):
    write_spec(harness_env["tables"], "two_col", [{"label": "apvit", "set": {}}], datasets=COLUMNS)
    assert main(["reproduce", "--table", "two_col", "--datasets", "ferplus", "--dry-run"]) == 2
    assert "ferplus is not a column of two_col; allowed values: rafdb, sfew" in capsys.readouterr().err
    assert main(["reproduce", "--table", "two_col", "--datasets", ",", "--dry-run"]) == 2
    assert "names no column" in capsys.readouterr().err
    harness_env["results"].mkdir()
    assert main(["collect", "--table", "two_col", "--datasets", "affectnet"]) == 2
    assert "affectnet is not a column of two_col; allowed values: rafdb, sfew" in capsys.readouterr().err
