"""Cross-dataset evaluations: the spec's ``eval_on``, class-space mapping, planning (``--dry-run``)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from harness.cli import main
from harness.data.labels import CANONICAL_CLASSES, SEVEN_CLASSES
from harness.errors import UserError
from harness.run.evals import Evaluation, cross_metrics
from harness.specs import parse_spec
from tests.harness.conftest import write_spec

CROSS_COLUMNS = [{"key": "rafdb", "label": "RAF-DB"},
                 {"key": "affectnet_8", "dataset": "affectnet", "label": "AffectNet-8", "protocol": "8class"}]


def _spec(**extra) -> dict:
    return {"id": "x", "caption": "c", "source": {"paper": "p", "table": "t", "file": "f"}, "method": "pfvit",
            "datasets": CROSS_COLUMNS, "rows": [{"label": "a"}], **extra}


def _onehot_logits(predicted: list[int], classes: int) -> np.ndarray:
    logits = np.zeros((len(predicted), classes), dtype=np.float32)
    logits[np.arange(len(predicted)), predicted] = 1.0
    return logits


def test_seven_class_model_on_eight_class_target_counts_contempt_as_errors():
    target = list(CANONICAL_CLASSES)  # 8 classes, contempt last (index 7)
    # 10 test images: 2 contempt (the model cannot predict it), 8 of the shared classes, 6 of them right.
    y_true = np.array([0, 1, 2, 3, 4, 5, 6, 0, 7, 7])
    predicted = [0, 1, 2, 3, 4, 5, 0, 1, 6, 1]  # wrong: image 6 and 7 (shared), both contempt images
    metrics, y_pred = cross_metrics(_onehot_logits(predicted, 7), y_true, list(SEVEN_CLASSES), target)
    assert metrics["accuracy"] == pytest.approx(60.0, abs=1e-9)  # 6 of 10
    assert metrics["shared_accuracy"] == pytest.approx(75.0, abs=1e-9)  # 6 of the 8 non-contempt images
    assert metrics["target_only_classes"] == ["contempt"] and metrics["shared_classes"] == list(SEVEN_CLASSES)
    assert metrics["per_class_accuracy"]["contempt"] == 0.0
    assert metrics["n_test"] == 10 and metrics["n_shared"] == 8
    assert y_pred.tolist() == predicted  # the same indices: the first seven canonical classes are shared


def test_eight_class_model_predicting_contempt_on_seven_class_target():
    # A prediction of a class the target lacks is an error; over the shared classes the model's best
    # shared class is taken.
    logits = np.array([[0.1, 0.5, 0, 0, 0, 0, 0, 0.9],   # contempt on top, happy next: truth happy
                       [0.9, 0, 0, 0, 0, 0, 0, 0.1],     # neutral: right
                       [0, 0, 0.2, 0.7, 0, 0, 0, 0.8]])  # contempt on top, surprise next: truth sad
    metrics, y_pred = cross_metrics(logits, np.array([1, 0, 2]), list(CANONICAL_CLASSES), list(SEVEN_CLASSES))
    assert y_pred.tolist() == [-1, 0, -1]
    assert metrics["accuracy"] == pytest.approx(100 / 3)
    assert metrics["shared_accuracy"] == pytest.approx(200 / 3)
    assert metrics["model_only_classes"] == ["contempt"] and metrics["target_only_classes"] == []


def test_eval_on_targets_resolve_through_the_columns():
    spec = parse_spec(_spec(eval_on=["rafdb", "affectnet_8", {"key": "sfew", "label": "SFEW"}],
                            rows=[{"label": "a", "paper_cross": {"affectnet_8": {"rafdb": 73.0}}}]), Path("x.yaml"))
    rafdb, affectnet = spec.datasets
    assert [(t.key, t.loader, t.protocol) for t in spec.eval_targets(rafdb)] == \
        [("affectnet_8", "affectnet", "8class"), ("sfew", "sfew", None)]
    assert [t.key for t in spec.eval_targets(affectnet)] == ["rafdb", "sfew"]  # never its own test set
    assert spec.paper_cross_value("a", "affectnet_8", "rafdb") == 73.0
    assert spec.paper_cross_value("a", "rafdb", "affectnet_8") is None
    own = parse_spec(_spec(datasets=[{**CROSS_COLUMNS[0], "eval_on": ["ferplus"]}, CROSS_COLUMNS[1]],
                           eval_on=["sfew"]), Path("x.yaml"))
    assert [t.key for t in own.eval_targets(own.datasets[0])] == ["ferplus"]  # a column's own list wins
    assert [t.key for t in own.eval_targets(own.datasets[1])] == ["sfew"]


@pytest.mark.parametrize("extra, message", [
    ({"eval_on": ["sfew", "sfew"]}, "names ['sfew'] twice"),
    ({"rows": [{"label": "a", "paper_cross": {"ferplus": {"rafdb": 1.0}}}]}, "'ferplus', which is not a column"),
    ({"eval_on": ["sfew"], "rows": [{"label": "a", "paper_cross": {"rafdb": {"ferplus": 1.0}}}]},
     "not a test set the column is evaluated on"),
])
def test_bad_eval_on_is_refused(extra, message):
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_spec(_spec(**extra), Path("x.yaml"))


def test_evaluation_id_hashes_content_not_location():
    ev = Evaluation(cell_id="c" * 16, method="apvit", scale="tiny", dataset="affectnet", protocol="8class", data={},
                    fingerprint="f", code_version="v", synthetic=True, data_root="/a", target="affectnet_8")
    moved = Evaluation(**{**ev.__dict__, "data_root": "/b", "target": "other"})
    assert ev.id == moved.id
    assert Evaluation(**{**ev.__dict__, "fingerprint": "g"}).id != ev.id
    assert Evaluation(**{**ev.__dict__, "code_version": "w"}).id != ev.id
    assert Evaluation.from_dict(ev.to_dict()) == ev


def write_cross_spec(tables: Path, table_id: str, eval_on: list, seeds: int = 2) -> None:
    """A tiny APViT table over two stand-ins (RAF-DB, AffectNet-8) with ``eval_on`` targets."""
    write_spec(tables, table_id, [{"label": "apvit", "set": {}}], seeds=seeds, datasets=CROSS_COLUMNS)
    path = tables / f"{table_id}.yaml"
    spec = yaml.safe_load(path.read_text())
    spec["eval_on"] = eval_on
    spec["rows"][0]["paper_cross"] = {"rafdb": {"affectnet_8": 47.8}}
    path.write_text(yaml.safe_dump(spec, sort_keys=False))


def test_dry_run_lists_the_planned_evaluations(harness_env, capsys):
    write_cross_spec(harness_env["tables"], "dry_cross", ["rafdb", "affectnet_8"])
    assert main(["reproduce", "--table", "dry_cross", "--dry-run"]) == 0
    captured = capsys.readouterr()
    lines = [line for line in captured.out.splitlines() if " eval " in line]
    assert len(lines) == 4  # 2 columns x 2 seeds, each on the other column
    assert sum("rafdb -> affectnet_8" in line for line in lines) == 2
    assert sum("affectnet_8 -> rafdb" in line for line in lines) == 2
    assert "4 cross-dataset evaluation(s)" in captured.err
    assert not harness_env["results"].exists()  # a dry run writes nothing
