"""Evaluating the test split every epoch (to measure test-set selection) changes nothing else."""
from __future__ import annotations

import numpy as np
import pytest

from harness.run.train import runner
from harness.run.plan import DataSource, plan_table
from harness.specs import load_spec
from harness.store import Store
from tests.harness.conftest import write_spec

pytestmark = pytest.mark.slow


def test_per_epoch_test_accuracy_leaves_selection_and_honest_number_unchanged(harness_env, tmp_path, monkeypatch):
    write_spec(harness_env["tables"], "sel_tab", [{"label": "apvit", "set": {}}])
    (planned,) = plan_table(load_spec("sel_tab"), source=DataSource())
    with_test = runner.train_cell(planned.cell, Store(tmp_path / "a"))
    calls = []

    def validation_only(cell, val, test):
        calls.append(1)
        return [val]

    monkeypatch.setattr(runner, "epoch_eval_splits", validation_only)  # never evaluates the test split
    without = runner.train_cell(planned.cell, Store(tmp_path / "b"))
    assert len(calls) == with_test["timing"]["epochs"]

    a, b = Store(tmp_path / "a").predictions(planned.cell.id), Store(tmp_path / "b").predictions(planned.cell.id)
    assert np.array_equal(a["logits"], b["logits"]) and np.array_equal(a["y_pred"], b["y_pred"])
    for key in ("accuracy", "val_accuracy", "selected_epoch", "confusion"):
        assert with_test["metrics"][key] == without["metrics"][key]
    hist = with_test["timing"]["history"]
    assert [h["val_accuracy"] for h in hist] == [h["val_accuracy"] for h in without["timing"]["history"]]
    # the test-selected number is the best epoch on test, recorded beside the honest one
    tests = [h["test_accuracy"] for h in hist]
    assert all(0 <= t <= 100 for t in tests)
    assert with_test["metrics"]["test_selected_accuracy"] == max(tests)
    assert with_test["metrics"]["test_selected_epoch"] == int(np.argmax(tests))
    assert with_test["metrics"]["test_selected_accuracy"] >= tests[with_test["metrics"]["selected_epoch"]]
    assert without["metrics"]["test_selected_accuracy"] is None
