"""Pre-training stages: declared as data, run once as upstream cells, named by their dependents."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import timm
import torch

from harness.cli import main
from harness.report.collect import collect_spec
from harness.errors import UserError
from harness.run.plan import DataSource, WeightsSource, plan_table, resolve_weights, with_upstream
from harness.specs import load_spec
from harness.store import Store
from tests.harness.conftest import write_spec, write_stage

STAGE = {"weights.ir50": "stage:faceid_ir50"}


def _plan(table_id: str, **kw):
    return plan_table(load_spec(table_id), source=DataSource(), **kw)


def test_cells_name_their_stage_and_a_changed_stage_gives_new_ids(harness_env):
    write_stage(harness_env["tables"])
    write_spec(harness_env["tables"], "st_tab", [{"label": "a", "set": {}}, {"label": "b", "set": {"head": "gap"}}],
               seeds=2, base=STAGE)
    planned = _plan("st_tab")
    cells = with_upstream(planned)
    (stage,) = [c for c in cells if c.stage]
    assert cells[0] is stage and len(cells) == 5  # the stage once, first, for four cells
    assert all(p.cell.upstream == (stage.id,) for p in planned)
    assert all(p.cell.weights == {"weights.ir50": f"stage:faceid_ir50@{stage.id}", "weights.vit": "none"}
               for p in planned)

    write_stage(harness_env["tables"], {"train.epochs": 3})  # a changed stage config
    replanned = _plan("st_tab")
    assert {p.cell.id for p in replanned}.isdisjoint({p.cell.id for p in planned})
    assert [p.cell.slot() for p in replanned] == [p.cell.slot() for p in planned]  # same slots: stale


def test_unknown_stage_and_wrong_key_are_rejected(harness_env):
    write_stage(harness_env["tables"])
    write_spec(harness_env["tables"], "bad_stage", [{"label": "a", "set": {"weights.ir50": "stage:nope"}}])
    with pytest.raises(UserError, match="unknown pre-training stage 'nope'.*faceid_ir50"):
        _plan("bad_stage")
    write_spec(harness_env["tables"], "bad_key", [{"label": "a", "set": {"weights.vit": "stage:faceid_ir50"}}])
    with pytest.raises(UserError, match="provides.*weights.ir50.*not weights.vit"):
        _plan("bad_key")


def test_paper_scale_without_weights_is_refused_naming_the_file(capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("FERBENCH_TABLES", raising=False)
    monkeypatch.delenv("FERBENCH_WEIGHTS", raising=False)
    argv = ["reproduce", "--table", "apvit_tab5", "--scale", "paper", "--dry-run", "--results", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "backbone_ir50_ms1m_epoch120.pth" in err and "--stand-ins" in err and "weights.ir50=none" in err


def test_weights_folder_files_are_found_and_hashed(tmp_path, monkeypatch, harness_env):
    weights = tmp_path / "weights"
    weights.mkdir()
    write_spec(harness_env["tables"], "file_tab", [{"label": "a", "set": {}}],
               base={"weights.ir50": "file:ir50.pth"})
    with pytest.raises(UserError, match="'ir50.pth', which is not in"):
        _plan("file_tab", weights=WeightsSource(weights))
    torch.save(timm.create_model("faceid_ir50", preset="tiny").exports()["weights.ir50"], weights / "ir50.pth")
    (p,) = _plan("file_tab", weights=WeightsSource(weights))
    assert p.cell.weights["weights.ir50"].startswith("file:") and p.cell.weight_paths["weights.ir50"].endswith("ir50.pth")
    torch.save({"other": torch.zeros(1)}, weights / "ir50.pth")  # new content: a new cell id
    (q,) = _plan("file_tab", weights=WeightsSource(weights))
    assert q.cell.id != p.cell.id and q.cell.slot() == p.cell.slot()


def test_stand_ins_replace_missing_files_and_say_so(harness_env):
    write_stage(harness_env["tables"])
    ir50 = {"weights.ir50": "file:backbone_ir50_ms1m_epoch120.pth"}
    stand_in = {"weights.ir50": "stage:faceid_ir50"}
    ids, paths, stages = resolve_weights(ir50, stand_in, "tiny", DataSource(), WeightsSource(None, True), "here")
    assert ids == {"weights.ir50": f"standin:stage:faceid_ir50@{stages[0].id}"} and not paths
    with pytest.raises(UserError, match="backbone_ir50_ms1m_epoch120.pth"):  # stand-ins only on request
        resolve_weights(ir50, stand_in, "tiny", DataSource(), WeightsSource(None, False), "here")
    with pytest.raises(UserError, match="'vit.pth', and no weights folder"):  # nothing stands in for this one
        resolve_weights({"weights.vit": "file:vit.pth"}, stand_in, "tiny", DataSource(), WeightsSource(None, True),
                        "here")


def test_stage_checkpoint_loads_strictly_into_the_model(tmp_path):
    stage = timm.create_model("faceid_ir50", preset="tiny", num_classes=5)
    path = tmp_path / "weights.ir50.pt"
    torch.save(stage.exports()["weights.ir50"], path)
    model = timm.create_model("apvit", preset="tiny", **{"weights.ir50": str(path)})
    report = model.weight_reports["weights.ir50"]
    # APViT cuts the IR-50 after stage 3: stage 4's unit is ignored and reported, all else loaded.
    assert report.loaded and set(report.ignored) == {k for k in stage.exports()["weights.ir50"] if k.startswith("body.4.")}
    for k in report.loaded:
        assert torch.equal(model.backbone.state_dict()[k], stage.backbone.state_dict()[k]), k
    transfer4 = timm.create_model("transfer", preset="tiny", **{"transfer.stage": 4, "weights.ir50": str(path)})
    assert not transfer4.weight_reports["weights.ir50"].ignored  # TransFER's stage-4 cut uses every unit
    paper = timm.create_model("faceid_ir50", preset="paper", num_classes=5)
    torch.save(paper.exports()["weights.ir50"], path)
    with pytest.raises(ValueError, match="shape mismatch"):
        timm.create_model("apvit", preset="tiny", **{"weights.ir50": str(path)})


@pytest.mark.slow
def test_stage_runs_once_and_records_name_its_checkpoint(harness_env, capsys):
    write_stage(harness_env["tables"])
    write_spec(harness_env["tables"], "once_a", [{"label": "a", "set": {}}, {"label": "b", "set": {"head": "gap"}}],
               base=STAGE)
    write_spec(harness_env["tables"], "once_b", [{"label": "c", "set": {"atp.criterion": "max"}}], base=STAGE)
    assert main(["reproduce", "--table", "once_a"]) == 0
    assert "3 done, 0 cached, 0 failed" in capsys.readouterr().err  # the stage and two cells
    assert main(["reproduce", "--table", "once_b"]) == 0
    assert "1 done, 1 cached, 0 failed" in capsys.readouterr().err  # another table: the stage is cached
    store = Store(harness_env["results"])
    planned = _plan("once_a") + _plan("once_b")
    (stage_id,) = {p.cell.upstream[0] for p in planned}
    stage_rec = store.record(stage_id)
    # no table reports a stage's accuracy, so its epochs skip the test pass that fine-tuning cells record
    assert [h["test_accuracy"] for h in stage_rec["timing"]["history"]] == [None] * stage_rec["timing"]["epochs"]
    assert stage_rec["metrics"]["test_selected_accuracy"] is None
    art = stage_rec["artifacts"]["weights.ir50"]
    assert (store.cell_dir(stage_id) / art["file"]).is_file()
    for p in planned:
        start = store.record(p.cell.id)["started_from"]["weights.ir50"]
        assert start["kind"] == "stage" and start["stage"] == "faceid_ir50" and start["cell"] == stage_id
        assert start["sha256"] == art["sha256"][:16] and "loaded" in start["load"]
        assert all(h["test_accuracy"] is not None for h in store.record(p.cell.id)["timing"]["history"])
    frame = collect_spec(load_spec("once_a"), store)
    assert frame["status"].eq("ok").all() and frame["started_from"].str.contains(f"stage faceid_ir50 \\(cell {stage_id}").all()


@pytest.mark.slow
def test_failed_stage_is_ledgered_on_its_dependents(harness_env, monkeypatch, capsys):
    write_stage(harness_env["tables"], {"train.epochs": 3})
    write_spec(harness_env["tables"], "fail_st", [{"label": "a", "set": {}}, {"label": "b", "set": {"head": "gap"}}],
               base=STAGE)
    (stage,) = [c for c in with_upstream(_plan("fail_st")) if c.stage]
    monkeypatch.setenv("FERBENCH_INJECT_FAULT", f"{stage.id}=raise")
    assert main(["reproduce", "--table", "fail_st"]) == 1
    assert "0 done, 0 cached, 3 failed" in capsys.readouterr().err
    store = Store(harness_env["results"])
    ledger = {f["cell_id"]: f for f in store.ledger()}
    assert ledger[stage.id]["error_type"] == "InjectedFault"
    for p in _plan("fail_st"):
        entry = ledger[p.cell.id]
        assert entry["error_type"] == "UpstreamFailed"
        assert f"faceid_ir50 (cell {stage.id}) failed (InjectedFault" in entry["message"]


@pytest.mark.slow
def test_concurrent_invocations_of_two_tables_train_the_stage_once(harness_env):
    write_stage(harness_env["tables"], {"train.epochs": 4})
    write_spec(harness_env["tables"], "conc_a", [{"label": "a", "set": {}}], seeds=2, base=STAGE)
    write_spec(harness_env["tables"], "conc_b", [{"label": "b", "set": {"head": "gap"}}], seeds=2, base=STAGE)
    procs = [subprocess.Popen([sys.executable, "-m", "harness", "reproduce", "--table", t, "--max-parallel", "1",
                               "--threads", "1"], stderr=subprocess.PIPE, text=True, env=os.environ.copy())
             for t in ("conc_a", "conc_b")]
    outs = [p.communicate(timeout=600)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    done = [int(o.split(" done,")[0].rsplit(" ", 1)[-1]) for o in outs]
    assert sum(done) == 5, outs  # four cells and one stage, each trained exactly once
    assert sum("computed by another invocation" in o for o in outs) == 1, outs


@pytest.mark.parametrize("stage_id", ["../../elsewhere/evil", "{tmp}/elsewhere/evil", "sub/../evil", "evil.yaml", ""])
def test_stage_ids_are_names_never_paths(harness_env, tmp_path, stage_id):
    """``stage:../../elsewhere/evil`` must not load a YAML file from outside the stages folders."""
    write_stage(harness_env["tables"])
    (tmp_path / "elsewhere").mkdir()  # a valid stage file, outside: tables/stages/../../elsewhere/evil.yaml
    write_stage(harness_env["tables"], stage_id="evil").rename(tmp_path / "elsewhere" / "evil.yaml")
    (harness_env["tables"] / "stages" / "sub").mkdir()
    stage_id = stage_id.format(tmp=tmp_path)
    write_spec(harness_env["tables"], "path_stage", [{"label": "a", "set": {"weights.ir50": f"stage:{stage_id}"}}])
    with pytest.raises(UserError, match=r"is not a pre-training stage name.*known stages: .*faceid_ir50"):
        _plan("path_stage")


def test_stage_yaml_follows_the_table_specs_rules(harness_env):
    path = write_stage(harness_env["tables"])
    path.write_text(path.read_text() + "seed: 3\n")  # a repeated key: which seed?
    write_spec(harness_env["tables"], "dup", [{"label": "a", "set": {}}], base=STAGE)
    with pytest.raises(UserError, match="seed"):
        _plan("dup")


def test_a_stage_trains_on_real_faces_when_the_data_root_holds_them(harness_env, tmp_path):
    from harness.run.plan import stage_cell
    from tests.data.makers import make_ferplus

    path = write_stage(harness_env["tables"])
    path.write_text(path.read_text() + "real_datasets: [affectnet, ferplus]\n")
    synthetic = stage_cell("faceid_ir50", "tiny", DataSource())
    assert synthetic.synthetic and synthetic.dataset == "faceid"
    root = tmp_path / "data"
    make_ferplus(root / "ferplus")
    real = stage_cell("faceid_ir50", "tiny", DataSource(root))
    assert not real.synthetic and real.dataset == "ferplus" and real.data_root == str(root / "ferplus")
    assert real.data == {} and real.id != synthetic.id  # the stand-in's knobs do not apply to real data
    (tmp_path / "other").mkdir()
    assert stage_cell("faceid_ir50", "tiny", DataSource(tmp_path / "other")).synthetic  # no real copy there
