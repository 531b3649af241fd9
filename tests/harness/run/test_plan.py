"""Planning refuses what would fail (or mislead) later: typos, stage loops, giant plans."""
from __future__ import annotations

import pytest
import timm
import torch

from harness.cli import main
from harness.errors import UserError
from harness.run.plan import MAX_SEEDS, DataSource, WeightsSource, plan_table
from harness.specs import load_spec
from harness.store import default_results_dir
from tests.harness.conftest import write_spec, write_stage


def _plan(table_id: str, **kw):
    return plan_table(load_spec(table_id), source=DataSource(), **kw)


@pytest.mark.parametrize("key, value, hint", [("weights.vlt", "none", "did you mean weights.vit"),
                                              ("weights.bogus", "/nowhere/x.pth", "weights.bogus")])
def test_an_unknown_weights_key_is_refused_at_planning(harness_env, key, value, hint):
    write_spec(harness_env["tables"], "typo", [{"label": "a", "set": {key: value}}])
    with pytest.raises(UserError, match=f"unknown override key.*{hint}"):
        _plan("typo")


def test_one_weights_file_spelled_three_ways_is_one_cell(tmp_path, harness_env):
    weights = tmp_path / "w"
    weights.mkdir()
    torch.save(timm.create_model("faceid_ir50", preset="tiny").exports()["weights.ir50"], weights / "ir50.pth")
    ids = set()
    for spelling in ("file:ir50.pth", str(weights / "ir50.pth"), str(weights / ".." / "w" / "ir50.pth")):
        write_spec(harness_env["tables"], "spell", [{"label": "a", "set": {"weights.ir50": spelling}}])
        (p,) = _plan("spell", weights=WeightsSource(weights))
        ids.add(p.cell.id)
    assert len(ids) == 1


def test_a_stage_that_starts_from_a_stage_is_refused(harness_env):
    """faceid_ir50 takes no weights key; a stage of a model that does may not start from a stage,
    itself included (nothing would resolve it: it used to fail at run time)."""
    path = write_stage(harness_env["tables"], {"weights.ir50": "stage:loop", "weights.vit": "none"}, stage_id="loop")
    path.write_text(path.read_text().replace("method: faceid_ir50", "method: apvit"))
    write_spec(harness_env["tables"], "loop_tab", [{"label": "a", "set": {"weights.ir50": "stage:loop"}}])
    with pytest.raises(UserError, match="stage loop: weights.ir50=stage:loop: .*never from a stage"):
        _plan("loop_tab")


def test_a_stage_providing_what_its_model_does_not_export_is_refused(harness_env):
    path = write_stage(harness_env["tables"])
    path.write_text(path.read_text().replace("- weights.ir50", "- weights.ir50\n- weights.vit"))
    write_spec(harness_env["tables"], "prov", [{"label": "a", "set": {"weights.ir50": "stage:faceid_ir50"}}])
    with pytest.raises(UserError, match="provides weights.vit, which faceid_ir50 does not export"):
        _plan("prov")


def test_giant_plans_are_refused_before_planning(harness_env):
    write_spec(harness_env["tables"], "big", [{"label": "a", "set": {}}, {"label": "b", "set": {"head": "gap"}}])
    with pytest.raises(UserError, match=f"at most {MAX_SEEDS} seeds"):
        _plan("big", seeds=MAX_SEEDS + 1)
    with pytest.raises(UserError, match="up to 6 cells, more than 5; pass --yes"):
        _plan("big", seeds=3, max_cells=5)
    assert len(_plan("big", seeds=3, max_cells=6)) == 6


def test_reproduce_refuses_a_seed_count_typo(harness_env, capsys):
    write_spec(harness_env["tables"], "many", [{"label": "a", "set": {}}])
    assert main(["reproduce", "--table", "many", "--seeds", str(MAX_SEEDS + 1), "--dry-run"]) == 2
    assert f"at most {MAX_SEEDS} seeds" in capsys.readouterr().err


def test_empty_environment_variables_count_as_unset(monkeypatch):
    monkeypatch.setenv("FERBENCH_RESULTS", "")
    assert str(default_results_dir()) == "results"
    monkeypatch.setenv("FERBENCH_DATA_ROOT", "")
    assert DataSource.from_args(None).synthetic
