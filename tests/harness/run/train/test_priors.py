"""The prior D of PDLS / F-PDLS: from FERPlus votes, from a file, checked before anything runs."""
from __future__ import annotations

import json

import numpy as np
import pytest

from harness.cli import main
from harness.data import load_dataset
from harness.data.labels import CANONICAL_CLASSES
from harness.run.train.priors import loss_problem, resolve_loss_kwargs, resolve_prior
from methods.interface import Recipe
from tests.data.makers import make_ferplus, make_rafdb
from tests.harness.conftest import write_spec

# (usage, image name, votes in fer2013new.csv column order, grey value). Columns: neutral,
# happiness, surprise, sadness, anger, disgust, fear, contempt, unknown, NF.
ROWS = [
    ("Training", "fer0.png", [0, 8, 2, 0, 0, 0, 0, 0, 0, 0], 10),   # happy: neutral 0, happy .8, surprise .2
    ("Training", "fer1.png", [2, 6, 0, 0, 0, 0, 0, 0, 2, 0], 20),   # happy: unknown dropped -> .25 / .75
    ("Training", "fer2.png", [1, 0, 0, 6, 0, 0, 3, 0, 0, 0], 30),   # sad: neutral .1, sad .6, fear .3
    ("PublicTest", "fer3.png", [0, 6, 0, 0, 4, 0, 0, 0, 0, 0], 40),  # happy, in val: not in D
    ("PrivateTest", "fer4.png", [0, 6, 4, 0, 0, 0, 0, 0, 0, 0], 50),  # happy, in test: not in D
]
C = {name: i for i, name in enumerate(CANONICAL_CLASSES)}


def _votes_d() -> np.ndarray:
    """D worked out by hand from ROWS: the two happy rows averaged, the sad row, one-hot elsewhere."""
    d = np.eye(8)
    d[C["happy"]] = 0
    d[C["happy"], [C["neutral"], C["happy"], C["surprise"]]] = [(0 + 0.25) / 2, (0.8 + 0.75) / 2, (0.2 + 0) / 2]
    d[C["sad"]] = 0
    d[C["sad"], [C["neutral"], C["sad"], C["fear"]]] = [0.1, 0.6, 0.3]
    return d


@pytest.fixture
def ferplus(tmp_path):
    return load_dataset("ferplus", make_ferplus(tmp_path / "ferplus", rows=ROWS), decode_size=16)


def test_votes_prior_is_the_mean_vote_distribution_of_training_images(ferplus):
    recipe = Recipe(loss="fpdls", loss_kwargs={"alpha": 0.8, "gamma": 2.0, "prior": "votes"})
    kwargs, info = resolve_loss_kwargs(recipe, ferplus)
    d = kwargs["prior"].numpy()
    assert d.shape == (8, 8)
    np.testing.assert_allclose(d.sum(1), 1.0, atol=1e-6)
    np.testing.assert_allclose(d, _votes_d(), atol=1e-6)
    assert kwargs["alpha"] == 0.8 and kwargs["gamma"] == 2.0
    assert info["source"] == "votes" and info["split"] == "train"
    assert info["samples_per_class"][C["happy"]] == 2 and info["samples_per_class"][C["sad"]] == 1
    assert "surprise" in info["empty_rows"] and "happy" not in info["empty_rows"]
    np.testing.assert_allclose(np.array(info["matrix"]), _votes_d(), atol=1e-6)  # the record keeps D itself
    assert info["classes"] == list(CANONICAL_CLASSES)


def test_no_prior_no_provenance(ferplus):
    assert resolve_loss_kwargs(Recipe(loss="focal", loss_kwargs={"gamma": 1.0}), ferplus) == ({"gamma": 1.0}, None)


@pytest.mark.parametrize("suffix", [".npy", ".csv"])
def test_file_prior(ferplus, tmp_path, suffix):
    d = np.full((8, 8), 0.05) + np.eye(8) * 0.6
    path = tmp_path / f"prior{suffix}"
    np.save(path, d) if suffix == ".npy" else np.savetxt(path, d, delimiter=",")
    got, info = resolve_prior(f"file:{path}", ferplus)
    np.testing.assert_allclose(got.numpy(), d, atol=1e-6)
    assert info["source"] == "file" and info["path"] == str(path) and len(info["sha256"]) == 64

    np.save(tmp_path / "small.npy", np.eye(7))
    with pytest.raises(ValueError, match=r"small.npy.*\[7, 7\] but dataset 'ferplus' has 8 classes"):
        resolve_prior(f"file:{tmp_path / 'small.npy'}", ferplus)


def test_votes_on_a_dataset_without_votes(tmp_path):
    rafdb = load_dataset("rafdb", make_rafdb(tmp_path / "rafdb"), decode_size=16)
    with pytest.raises(ValueError, match=r"prior=votes: dataset 'rafdb' has no annotator votes.*file:<path>"):
        resolve_prior("votes", rafdb)


@pytest.mark.parametrize("loss, kwargs, dataset, needle", [
    ("fpdls", {"alpha": 0.8, "gamma": 2.0, "prior": "votes"}, "ferplus", None),
    ("fpdls", {"prior": "votes"}, None, None),  # stage checks and table bases know no dataset yet
    ("fpdsl", {}, "ferplus", "train.loss='fpdsl': allowed values: ce, focal, fpdls, label_smoothing, pdls"),
    ("fpdls", {"alpha": 2, "prior": "votes"}, "ferplus", r"alpha=2 is not allowed; allowed values: a number in \[0, 1\]"),
    ("fpdls", {"gamma": -0.5, "prior": "votes"}, "ferplus", "gamma=-0.5 is not allowed"),
    ("fpdls", {"prior": "vote"}, "ferplus", "train.loss_kwargs.prior='vote' is not allowed; allowed values: votes, file:<path>"),
    ("fpdls", {"prior": "votes"}, "rafdb", "dataset 'rafdb' has no annotator votes"),
    ("fpdls", {"prior": "file:/nonexistent/d.npy"}, "rafdb", "/nonexistent/d.npy does not exist"),
    ("pdls", {"alpha": 0.8}, "ferplus", "prior is required"),
    ("ce", {"alpha": 0.8}, "ferplus", r"unknown keyword argument\(s\) \['alpha'\]; allowed: none"),
])
def test_loss_problems_before_anything_runs(loss, kwargs, dataset, needle):
    problem = loss_problem(loss, kwargs, dataset)
    if needle is None:
        assert problem is None
    else:
        assert problem is not None and __import__("re").search(needle, problem), problem


def test_bad_loss_override_is_refused_naming_row_and_key(harness_env, capsys):
    write_spec(harness_env["tables"], "badloss_tab", [
        {"label": "ce", "set": {}},
        {"label": "fpdls", "set": {"train.loss": "fpdls", "train.loss_kwargs": {"alpha": 1.2, "prior": "votes"}}}],
        datasets=[{"key": "ferplus", "label": "FERPlus"}])
    assert main(["reproduce", "--table", "badloss_tab", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "row 2 ('fpdls')" in err and "alpha=1.2" in err and "[0, 1]" in err


def test_apvit_row_with_fpdls_runs_and_records_its_prior(harness_env):
    """One YAML row turns APViT's loss into F-PDLS on the FERPlus stand-in; the record keeps D."""
    write_spec(harness_env["tables"], "loss_tab", [
        {"label": "F-PDLS", "set": {"train.loss": "fpdls",
                                    "train.loss_kwargs": {"alpha": 0.8, "gamma": 2.0, "prior": "votes"}}}],
        datasets=[{"key": "ferplus", "label": "FERPlus"}], base={"train.epochs": 1})
    assert main(["reproduce", "--table", "loss_tab", "--executor", "debug"]) == 0
    (path,) = (harness_env["results"] / "cells").glob("*/record.json")
    record = json.loads(path.read_text())
    prior = record["recipe"]["loss_prior"]
    assert record["recipe"]["loss"] == "fpdls" and prior["source"] == "votes"
    d = np.array(prior["matrix"])
    np.testing.assert_allclose(d.sum(1), 1.0, atol=1e-5)
    assert np.isfinite(record["timing"]["final_train_loss"])
    # D is the stand-in's training votes, recomputed here from the loader
    data = load_dataset("ferplus", record["cell"]["data_root"], decode_size=16)
    train = data.splits["train"]
    happy = train.labels == C["happy"]
    np.testing.assert_allclose(d[C["happy"]], train.votes[happy].double().mean(0).numpy(), atol=1e-5)


def test_a_prior_file_is_pinned_by_content(harness_env, tmp_path, ferplus):
    from harness.run.plan import DataSource, plan_table
    from harness.specs import load_spec

    path = tmp_path / "d.npy"
    np.save(path, np.full((8, 8), 1 / 8))
    write_spec(harness_env["tables"], "pin_tab", [
        {"label": "PDLS", "set": {"train.loss": "pdls", "train.loss_kwargs": {"prior": f"file:{path}"}}}],
        datasets=[{"key": "ferplus", "label": "FERPlus"}])
    (first,) = plan_table(load_spec("pin_tab"), source=DataSource())
    pinned = first.cell.train["loss_kwargs"]["prior"]
    assert pinned.startswith(f"file:{path.resolve()}@sha256:")
    assert resolve_prior(pinned, ferplus)[1]["sha256"].startswith(pinned.rsplit(":", 1)[1])

    np.save(path, np.eye(8))  # the user edits the matrix: a new cell, and the old one refuses to run
    (second,) = plan_table(load_spec("pin_tab"), source=DataSource())
    assert second.cell.id != first.cell.id
    with pytest.raises(ValueError, match="changed since the cell was planned"):
        resolve_prior(pinned, ferplus)
