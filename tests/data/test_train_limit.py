"""data.train_limit: a seeded, stratified subsample of the training split, for any dataset."""
import pytest
import torch

from harness.data import load_dataset
from harness.data.base import limit_train, stratified_subset, train_limit_problem
from harness.errors import UserError
from harness.run.overrides import check_overrides
from harness.run.plan import DataSource, plan_table
from harness.specs import load_spec
from tests.data.makers import make_ferplus
from tests.harness.conftest import harness_env, synth_cache, write_spec  # noqa: F401  (fixtures)


def test_the_subset_keeps_every_class_in_proportion_and_is_seeded():
    labels = torch.tensor([0] * 60 + [1] * 30 + [2] * 10)
    rows = stratified_subset(labels, 20, seed=0)
    assert torch.bincount(labels[rows]).tolist() == [12, 6, 2]
    assert len(set(rows.tolist())) == 20 and torch.equal(rows, torch.sort(rows).values)
    assert torch.equal(rows, stratified_subset(labels, 20, seed=0))
    assert not torch.equal(rows, stratified_subset(labels, 20, seed=1))
    assert torch.bincount(labels[stratified_subset(labels, 7)], minlength=3).sum() == 7  # remainders filled


def test_only_the_training_split_is_cut(tmp_path):
    ds = load_dataset("ferplus", make_ferplus(tmp_path), decode_size=8)
    cut = limit_train(ds, 2)
    assert len(cut.splits["train"]) == 2 and cut.split_info["train_limit"] == {"kept": 2, "of": 3}
    for split in ("val", "test"):
        assert cut.splits[split] is ds.splits[split]
    assert set(cut.splits["train"].names) <= set(ds.splits["train"].names)
    assert cut.splits["train"].votes.shape == (2, 8)
    assert len(limit_train(ds, 0.5).splits["train"]) == 2  # round(0.5 * 3)
    with pytest.raises(UserError, match="only 3 training images"):
        limit_train(ds, 4)


@pytest.mark.parametrize("value, ok", [(6000, True), (0.25, True), (0, False), (1.0, False), (True, False),
                                       ("6000", False), (-3, False)])
def test_values(value, ok):
    assert (train_limit_problem(value) is None) == ok
    if not ok:
        with pytest.raises(UserError, match="train_limit"):
            check_overrides("apvit", "tiny", {"data.train_limit": value}, "x")


def _real_data_only(path):
    """Drop the synthetic generator's knobs that write_spec puts in every spec's base."""
    import yaml

    spec = yaml.safe_load(path.read_text())
    for knob in ("data.n_train", "data.n_test"):
        spec["base"].pop(knob)
    path.write_text(yaml.safe_dump(spec, sort_keys=False))


def test_real_data_takes_it_and_it_is_part_of_the_cell(tmp_path, harness_env):
    root = tmp_path / "data"
    make_ferplus(root / "ferplus")
    ids = {}
    for limit in (None, 2, 3):
        sets = {} if limit is None else {"data.train_limit": limit}
        write_spec(harness_env["tables"], "lim", [{"label": "a", "set": sets}],
                   datasets=[{"key": "ferplus", "label": "FERPlus"}])
        _real_data_only(harness_env["tables"] / "lim.yaml")
        (p,) = plan_table(load_spec("lim"), source=DataSource(root))
        ids[limit] = p.cell.id
    assert len(set(ids.values())) == 3
    write_spec(harness_env["tables"], "lim", [{"label": "a", "set": {"data.train_limit": 9}}],
               datasets=[{"key": "ferplus", "label": "FERPlus"}])
    _real_data_only(harness_env["tables"] / "lim.yaml")
    with pytest.raises(UserError, match="only 3 training images"):
        plan_table(load_spec("lim"), source=DataSource(root))


def test_reproduce_skip_bad_plans_without_the_bad_entries(tmp_path, harness_env, capsys):
    from harness.cli import main
    from tests.data.makers import ferplus_rows

    root = tmp_path / "data"
    rows = ferplus_rows()
    rows[1] = (rows[1][0], rows[1][1], ["x"] * 10, rows[1][3])  # votes that are not numbers
    make_ferplus(root / "ferplus", rows=rows)
    write_spec(harness_env["tables"], "bad", [{"label": "a", "set": {}}], datasets=[{"key": "ferplus", "label": "F"}])
    _real_data_only(harness_env["tables"] / "bad.yaml")
    argv = ["reproduce", "--table", "bad", "--data-root", str(root), "--dry-run"]
    assert main(argv) == 2
    assert "pass --skip-bad to `reproduce`" in capsys.readouterr().err
    assert main([*argv, "--skip-bad"]) == 0
    (p,) = plan_table(load_spec("bad"), source=DataSource(root), extra={"data.skip_bad": True})
    assert p.cell.data["skip_bad"] is True
