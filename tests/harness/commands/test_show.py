"""``harness show``: a table's cells resolved, as YAML, through the real CLI."""
from __future__ import annotations

import pytest
import yaml

from harness.cli import main
from harness.store import Store
from tests.harness.conftest import harness_env, synth_cache, write_spec  # noqa: F401  (fixtures)

pytestmark = pytest.mark.slow

ROWS = [{"label": "base", "set": {"app.k": 196, "atp.r": 1.0}}, {"label": "apvit", "set": {}}]


def test_show_resolves_the_cells_the_run_trained(harness_env, capsys):
    write_spec(harness_env["tables"], "show_tab", ROWS, seeds=2)
    assert main(["reproduce", "--table", "show_tab", "--executor", "debug", "--seeds", "1",
                 "--set", "train.lr=0.002"]) == 0
    capsys.readouterr()
    assert main(["show", "--table", "show_tab", "--row", "base"]) == 0
    (cell,) = yaml.safe_load(capsys.readouterr().out)  # the run's one seed, not the spec's two
    store = Store(harness_env["results"])
    rec = store.record(cell["cell"])
    assert cell["status"] == "ok" and rec is not None and rec["cell"]["model"]["app.k"] == 196
    assert cell["model"]["app.k"] == 196 and cell["model"]["atp.r"] == 1.0 and cell["seed"] == 0
    assert cell["train"]["lr"] == 0.002 and cell["recipe"]["lr"] == 0.002  # the recipe after --set
    assert cell["recipe"]["epochs"] == cell["train"]["epochs"] == rec["cell"]["train"]["epochs"]
    assert cell["data"]["synthetic"] is True and cell["data"]["fingerprint"] == rec["cell"]["fingerprint"]
    assert cell["column"] == "rafdb" and cell["data"]["loader"] == "rafdb"

    # another configuration than the recorded run's: the spec's seeds, not yet run
    assert main(["show", "--table", "show_tab", "--spec-only", "--seed", "1"]) == 0
    cells = yaml.safe_load(capsys.readouterr().out)
    assert [c["row"] for c in cells] == ["base", "apvit"] and {c["status"] for c in cells} == {"missing"}
    assert all("lr" not in c["train"] for c in cells)


@pytest.mark.parametrize("argv, message", [
    (["--table", "no_such_table"], "no_such_table"),
    (["--table", "show_tab", "--row", "nope"], "--row 'nope' is not in this plan; allowed values: base, apvit"),
    (["--table", "show_tab", "--dataset", "sfew"], "--dataset 'sfew' is not in this plan; allowed values: rafdb"),
    (["--table", "show_tab", "--seed", "5"], "--seed 5 is not in this plan; allowed values: 0"),
])
def test_bad_requests_are_clean_errors(harness_env, capsys, argv, message):
    write_spec(harness_env["tables"], "show_tab", ROWS)
    assert main(["show", *argv]) == 2
    assert message in capsys.readouterr().err
