"""``reproduce --until-ci W --max-seeds N``: seeds added by precision, in rounds, up to a cap."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from harness import stats
from harness.cli import main
from harness.report.collect import collect_tables
from harness.stats.power import next_seed_counts
from harness.store import Store
from tests.harness.conftest import write_spec


def _comps(rows: dict[tuple[str, str], float]) -> pd.DataFrame:
    """A comparisons frame whose delta CIs have the given half-widths (NaN: fewer than 2 seeds)."""
    return pd.DataFrame([{"row": r, "dataset": d, "diff_ci_low": -h, "diff_ci_high": h}
                         for (r, d), h in rows.items()])


def test_only_rows_above_the_width_get_seeds_and_the_baseline_follows_the_neediest():
    counts = {("base", "rafdb"): 3, ("a", "rafdb"): 3, ("b", "rafdb"): 3, ("c", "rafdb"): 3}
    comps = _comps({("a", "rafdb"): 0.8, ("b", "rafdb"): 2.0, ("c", "rafdb"): 1.2})
    need, halves = next_seed_counts(comps, counts, width=1.0, max_seeds=10, baseline="base")
    # a is precise enough; b needs (2.0 / 1.0)^2 x 3 = 12 -> capped at 10; c needs 1.44 x 3 -> 5
    assert need == {("b", "rafdb"): 10, ("c", "rafdb"): 5, ("base", "rafdb"): 10}
    assert halves["a | rafdb"] == 0.8
    # at the cap nothing more is asked, whatever the width
    capped = {**counts, ("b", "rafdb"): 10, ("c", "rafdb"): 10, ("base", "rafdb"): 10}
    assert next_seed_counts(comps, capped, width=1.0, max_seeds=10, baseline="base")[0] == {}
    # one seed: no CI yet, so one more seed at least
    one = next_seed_counts(_comps({("a", "rafdb"): np.nan}), {("a", "rafdb"): 1, ("base", "rafdb"): 1},
                           width=1.0, max_seeds=4, baseline="base")[0]
    assert one == {("a", "rafdb"): 2, ("base", "rafdb"): 2}


def test_budget_flags_are_checked_before_anything_runs(harness_env, capsys):
    write_spec(harness_env["tables"], "bud_bad", [{"label": "base", "set": {}}, {"label": "x", "set": {"head": "heavy"}}])
    for argv, msg in ((["--until-ci", "1"], "go together"), (["--until-ci", "0", "--max-seeds", "3"], "> 0"),
                      (["--until-ci", "1", "--max-seeds", "1"], "at least")):
        assert main(["reproduce", "--table", "bud_bad", "--dry-run", *argv]) != 0
        assert msg in capsys.readouterr().err


@pytest.mark.slow
def test_until_ci_adds_seeds_only_where_needed_and_stops_at_the_cap(harness_env, capsys):
    # "same" is the baseline's configuration (its delta is exactly 0: CI width 0); "heavy" differs.
    rows = [{"label": "base", "set": {}}, {"label": "same", "set": {}}, {"label": "heavy", "set": {"train.sampler": "heavy"}}]
    write_spec(harness_env["tables"], "bud_tab", rows, seeds=2)
    assert main(["reproduce", "--table", "bud_tab", "--executor", "debug",
                 "--until-ci", "0.01", "--max-seeds", "3"]) == 0
    err = capsys.readouterr().err
    assert "round 1" in err and "heavy / rafdb: 3 seeds" in err and "same / rafdb" not in err.split("round 1")[1].split("\n")[0]
    assert "at the cap of 3: heavy / rafdb" in err

    budget = json.loads((harness_env["results"] / "budgets" / "bud_tab.json").read_text())
    assert budget["width"] == 0.01 and budget["max_seeds"] == 3 and len(budget["rounds"]) == 2
    assert budget["rounds"][-1]["seeds"] == {"base | rafdb": 3, "same | rafdb": 2, "heavy | rafdb": 3}
    assert len(Store(harness_env["results"]).cell_ids()) == 6  # base = same (one config): 3 + heavy: 3

    frame = collect_tables(["bud_tab"], harness_env["results"])
    assert frame.groupby("row")["seed"].nunique().to_dict() == {"base": 3, "same": 3, "heavy": 3}
    cells = stats.analyse(frame, n_boot=100, aso_iterations=0).cells.set_index("row")
    assert "cap of 3 seeds reached" in cells.loc["heavy", "seeds_reason"]
    assert cells.loc["same", "our_delta"] == 0.0 and "≤ ±0.01 reached" in cells.loc["same", "seeds_reason"]

    # a second call replays the rounds from the cache: nothing is trained again
    assert main(["reproduce", "--table", "bud_tab", "--executor", "debug", "--until-ci", "0.01", "--max-seeds", "3"]) == 0
    assert "0 done, 4 cached" in capsys.readouterr().err
    assert len(Store(harness_env["results"]).cell_ids()) == 6
