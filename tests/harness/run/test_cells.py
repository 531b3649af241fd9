"""Cells: content hashes, staleness keys, override validation."""

import pytest

from harness.run.cells import Cell, split_overrides
from harness.run.overrides import apply_train_overrides, check_overrides
from harness.errors import UserError
from methods.interface import Recipe


def _cell(**kw) -> Cell:
    base = dict(method="apvit", model={"app.k": 160}, train={}, data={}, dataset="rafdb", protocol=None,
                scale="tiny", seed=0, fingerprint="f1", code_version="v1", synthetic=True, data_root="/a")
    return Cell(**{**base, **kw})


def test_id_covers_everything_that_changes_a_result():
    c = _cell()
    for change in [dict(model={"app.k": 120}), dict(seed=1), dict(scale="paper"), dict(fingerprint="f2"),
                   dict(code_version="v2"), dict(train={"epochs": 2}), dict(dataset="affectnet")]:
        assert _cell(**change).id != c.id, change
    assert _cell(data_root="/elsewhere").id == c.id  # where the data lives is not what it is


def test_slot_ignores_code_and_data_versions():
    assert _cell(code_version="v2", fingerprint="f2", data_root="/b").slot() == _cell().slot()
    assert _cell(seed=1).slot() != _cell().slot()


def test_slot_of_a_stored_cell_matches():
    from harness.report.collect import slot_key

    c = _cell()
    assert slot_key(c.to_dict()) == c.slot()


def test_roundtrip():
    c = _cell(upstream=("abc",))
    assert Cell.from_dict(c.to_dict()) == c


def test_split_and_train_overrides():
    m, t, d = split_overrides({"app.k": 1, "train.epochs": 3, "data.occlusion": 0.0})
    assert (m, t, d) == ({"app.k": 1}, {"epochs": 3}, {"occlusion": 0.0})
    assert apply_train_overrides(Recipe(), t).epochs == 3
    with pytest.raises(ValueError, match="train.epoch"):
        apply_train_overrides(Recipe(), {"epoch": 3})


@pytest.mark.parametrize("overrides, needle", [
    ({"app.kk": 3}, "app.kk"), ({"app.k": 500}, "app.k"), ({"atp.r": 1.5}, "atp.r"),
    ({"app.criterion": "median"}, "app.criterion"), ({"train.lrr": 1}, "train.lrr")])
def test_check_overrides_names_key_and_place(overrides, needle):
    with pytest.raises(UserError) as err:
        check_overrides("apvit", "tiny", overrides, "tables/x.yaml: row 2")
    assert "tables/x.yaml: row 2" in str(err.value) and needle in str(err.value)
