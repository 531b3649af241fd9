"""`models` and `keys`: generated from the registry and the models' own validation."""
from __future__ import annotations

import json

import pytest
import timm

from harness.cli import main


def _json(capsys, *argv: str) -> dict:
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def test_models_lists_every_registered_model_by_family_with_presets(capsys):
    import methods  # noqa: F401

    fams = _json(capsys, "models", "--json")
    listed = {m for fam in fams.values() for m in fam["models"]}
    assert listed == set(timm.list_models(module=list(fams)))
    assert fams["nr"]["presets"] == ["paper", "tiny"] and fams["faceid"]["presets"] == ["paper", "tiny"]
    assert "Neural Resizer" in fams["nr"]["paper"] or "resizer" in fams["nr"]["paper"].lower()


def test_keys_are_the_models_own_with_preset_defaults(capsys):
    from methods.nr import OVERRIDE_KEYS

    paper = _json(capsys, "keys", "nr_vit", "--preset", "paper", "--json")
    tiny = _json(capsys, "keys", "nr_vit", "--preset", "tiny", "--json")
    assert set(paper["model"]) == set(OVERRIDE_KEYS)  # every key the model validates, none hand-listed
    assert paper["model"]["nr.ltr_filters"]["default"] == 16 and tiny["model"]["nr.ltr_filters"]["default"] == 8
    assert paper["train"]["train.epochs"]["default"] == 100 and tiny["train"]["train.epochs"]["default"] == 12
    assert "fpdls" in paper["train"]["train.loss"]["allowed"] and "transfer" in paper["train"]["train.augment"]["allowed"]
    assert {"data.train_limit", "data.skip_bad", "data.align", "data.occlusion"} <= set(paper["data"])


@pytest.mark.parametrize("argv, needle", [
    (["keys", "no_such_model"], "unknown model 'no_such_model'"),
    (["keys", "apvit", "--preset", "huge"], "allowed values: paper, tiny"),
])
def test_keys_refuses_unknown_models_and_presets(argv, needle, capsys):
    assert main(argv) == 2
    assert needle in capsys.readouterr().err
