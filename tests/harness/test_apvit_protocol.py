"""APViT at paper scale as published (per-dataset recipes in the built cells), selection under a
keep schedule, and ``python -m harness eval`` records beside trained rows."""
from __future__ import annotations

import pytest
import timm
import torch

import harness.run.train.optim as optim
import harness.run.train.runner as runner
from harness.cli import main
from harness.report.collect import collect_spec
from harness.run.plan import DataSource, cell_recipe, plan_table
from harness.specs import TABLES_DIR, load_spec
from harness.store import Store
from tests.harness.conftest import write_spec


def test_tab1_paper_cells_carry_the_papers_recipe_per_dataset(synth_cache):
    spec = load_spec("apvit_tab1", TABLES_DIR)
    small = {"data.n_train": 60, "data.n_test": 30, "weights.ir50": "none", "weights.vit": "none"}
    planned = plan_table(spec, scale="paper", seeds=1, source=DataSource(None, synth_cache), extra=small)
    seen = {}
    for p in planned:
        r = cell_recipe(p.cell)
        seen.setdefault(p.dataset, set()).add((r.name, r.lr, r.epochs if r.iterations is None else None,
                                               r.iterations, r.sampler, r.batch_size))
    assert seen == {"rafdb": {("rafdb", 1e-3, 40, None, "sqrt", 128)},
                    "affectnet": {("affectnet", 5e-4, None, 6000, "heavy", 128)}}
    assert len(planned) == len(spec.rows) * 2


def test_validation_under_decay_runs_at_the_final_k_and_r(harness_env, monkeypatch):
    write_spec(harness_env["tables"], "decay_tab", [{"label": "decay", "set": {"app.schedule": "decay"}}],
               base={"train.epochs": 2})
    (planned,) = plan_table(load_spec("decay_tab"), source=DataSource())
    seen_eval, seen_train = [], []
    predict_splits = runner.predict_splits

    def spy(model, splits, transform, batch_size, *args, **where):
        seen_eval.extend([model.current_keep()] * len(splits))  # one per split evaluated
        return predict_splits(model, splits, transform, batch_size, *args, **where)

    set_progress = runner.set_progress

    def spy_progress(model, p):
        seen_train.append(p)
        set_progress(model, p)

    monkeypatch.setattr(runner, "predict_splits", spy)
    monkeypatch.setattr(runner, "set_progress", spy_progress)
    record = runner.train_cell(planned.cell, Store(harness_env["results"]))
    steps = [p for p in seen_train if p < 1.0]  # one per optimizer step: training walked the schedule
    assert len(steps) == record["timing"]["steps"] and steps[0] == 0.0 and steps == sorted(steps)
    # every validation (2 epochs), every recorded per-epoch test and the final test: k 160, r 0.9
    assert len(seen_eval) == 5 and {(k, r) for k, _, r in seen_eval} == {(160.0, 0.9)}
    assert record["metrics"]["selection"] == "val"


def test_eval_writes_a_record_that_collect_shows_beside_trained_rows(harness_env, tmp_path, capsys):
    torch.manual_seed(0)
    ckpt = tmp_path / "released.pth"
    torch.save(timm.create_model("apvit", preset="tiny").state_dict(), ckpt)
    write_spec(harness_env["tables"], "rel_tab", [
        {"label": "trained here", "set": {"train.epochs": 1}},
        {"label": "released checkpoint", "set": {"weights.model": str(ckpt), "train.epochs": 0}},
    ])
    argv = ["eval", "apvit", "--checkpoint", str(ckpt), "--dataset", "rafdb", "--scale", "tiny",
            "--set", "data.n_train=160", "--set", "data.n_test=70", "--set", "train.batch_size=32",
            "--set", "weights.ir50=none", "--set", "weights.vit=none"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and "weights.model" in out and "train.epochs: 0" in out
    assert main(["reproduce", "--table", "rel_tab", "--executor", "debug"]) == 0
    assert "1 done, 1 cached" in capsys.readouterr().err  # the row names the eval's record
    df = collect_spec(load_spec("rel_tab"), Store(harness_env["results"])).set_index("row")
    assert set(df["status"]) == {"ok"}
    released, trained = df.loc["released checkpoint"], df.loc["trained here"]
    assert released["selection"] == "none" and trained["selection"] == "val"
    assert "0 epochs" in released["recipe"] and "1 epochs" in trained["recipe"]
    assert released["started_from"].startswith("weights.ir50: scratch; weights.model: released.pth")
    assert released["steps"] == 0 and 0 <= released["accuracy"] <= 100
    from harness.report.build import started_from

    shown = started_from(df.reset_index()).set_index("row")["recipe"]  # the table page's recipe column
    assert shown["released checkpoint"].startswith("rafdb: adamw lr 0.001 (cosine") and ", 0 epochs" in shown["released checkpoint"]
    assert shown["trained here"].startswith("rafdb: adamw lr 0.001 (cosine") and ", 1 epochs" in shown["trained here"]


def test_eval_with_a_mismatched_checkpoint_fails_listing_keys(harness_env, tmp_path, capsys):
    bad = tmp_path / "bad.pth"
    state = timm.create_model("apvit", preset="tiny").state_dict()
    state["blocks.0.attn.qkv_renamed.weight"] = state.pop("blocks.0.attn.qkv.weight")
    torch.save(state, bad)
    argv = ["eval", "apvit", "--checkpoint", str(bad), "--dataset", "rafdb", "--scale", "tiny",
            "--set", "data.n_train=160", "--set", "data.n_test=70", "--set", "weights.ir50=none", "--set", "weights.vit=none"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "unexpected key blocks.0.attn.qkv_renamed.weight" in err and "missing key blocks.0.attn.qkv.weight" in err


@pytest.mark.parametrize("epochs, iterations, expected", [(0, 500, (0, 0)), (3, None, (3, 30)), (3, 25, (3, 25))])
def test_zero_epochs_trains_nothing(epochs, iterations, expected):
    from methods.interface import Recipe

    assert optim.training_length(Recipe(epochs=epochs, iterations=iterations), 10) == expected
