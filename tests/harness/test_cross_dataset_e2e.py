"""End to end: a tiny cross-dataset table through `reproduce` (real local executor) and `report`."""
from __future__ import annotations

import json

import re

import numpy as np
import pytest
import yaml

from harness.cli import main
from harness.run.evals import EvalStore
from harness.store import Store
from tests.harness.run.test_evals import write_cross_spec

pytestmark = pytest.mark.slow


def _summary(err: str) -> tuple[str, str]:
    """(cells, evaluations) of reproduce's summary line."""
    m = re.search(r"e2e_cross: (\d+ done, \d+ cached, \d+ failed) in [\d.]+s; evaluations: ([^(]+?) \(total", err)
    return (m.group(1), m.group(2)) if m else ("", "")


def _records(results) -> dict[str, dict]:
    estore = EvalStore(results)
    return {eid: estore.record(eid) for eid in estore.eval_ids()}


def test_cross_dataset_table_runs_caches_and_reports(harness_env, tmp_path, capsys):
    write_cross_spec(harness_env["tables"], "e2e_cross", ["rafdb", "affectnet_8"])
    assert main(["reproduce", "--table", "e2e_cross", "--executor", "local"]) == 0
    err = capsys.readouterr().err
    assert _summary(err) == ("4 done, 0 cached, 0 failed", "4 done, 0 cached, 0 failed"), err

    results = harness_env["results"]
    records = _records(results)
    assert len(records) == 4 and all(r is not None for r in records.values())
    estore = EvalStore(results)
    to_affectnet = [r for r in records.values() if r["evaluation"]["dataset"] == "affectnet"]
    assert len(to_affectnet) == 2
    for rec in to_affectnet:  # a 7-class RAF-DB model on AffectNet-8: contempt is an error
        m = rec["metrics"]
        assert rec["model_class_names"] == rec["class_names"][:7] and rec["class_names"][7] == "contempt"
        assert m["target_only_classes"] == ["contempt"] and m["per_class_accuracy"]["contempt"] == 0.0
        arrays = estore.predictions(rec["eval_id"])
        y_true, y_pred = arrays["y_true"].astype(int), arrays["y_pred"].astype(int)
        assert (y_true == 7).any() and not (y_pred == 7).any()
        assert m["accuracy"] == pytest.approx((y_true == y_pred).mean() * 100)
        shared = y_true != 7
        assert m["shared_accuracy"] == pytest.approx((y_true[shared] == y_pred[shared]).mean() * 100)
        assert m["shared_accuracy"] > m["accuracy"] or m["shared_accuracy"] == 0
        # the evaluated model is the stored cell's: its own record says which
        assert Store(results).record(rec["evaluation"]["cell_id"])["cell"]["dataset"] == "rafdb"

    mtimes = {eid: (estore.eval_dir(eid) / "record.json").stat().st_mtime_ns for eid in records}
    assert main(["reproduce", "--table", "e2e_cross"]) == 0
    err = capsys.readouterr().err
    assert _summary(err) == ("0 done, 4 cached, 0 failed", "0 done, 4 cached, 0 failed"), err
    assert {eid: (estore.eval_dir(eid) / "record.json").stat().st_mtime_ns for eid in records} == mtimes

    # A new target adds its evaluations only: no cell trains again.
    path = harness_env["tables"] / "e2e_cross.yaml"
    spec = yaml.safe_load(path.read_text())
    spec["eval_on"].append({"key": "sfew", "label": "SFEW"})
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    assert main(["reproduce", "--table", "e2e_cross"]) == 0
    assert _summary(capsys.readouterr().err) == ("0 done, 4 cached, 0 failed", "4 done, 4 cached, 0 failed")
    assert len(EvalStore(results).eval_ids()) == 8

    assert main(["status", "--table", "e2e_cross", "--json"]) == 0  # evaluations counted apart from cells
    status = json.loads(capsys.readouterr().out)
    assert status["counts"]["e2e_cross"] == {"ok": 4} and status["evaluations"]["e2e_cross"] == {"ok": 8}

    assert main(["collect", "--table", "e2e_cross"]) == 0
    out = capsys.readouterr().out
    assert out.count("rafdb→affectnet_8") == 2 and out.count("affectnet_8→sfew") == 2

    out_dir = tmp_path / "report"
    # --no-pictures: the pictures (another feature) are not what this test is about, and cost seconds
    assert main(["report", "--table", "e2e_cross", "--out", str(out_dir), "--no-pictures"]) == 0
    page = (out_dir / "e2e_cross.html").read_text()
    section = page[page.index('id="cross-dataset"'):]
    section = section[:section.index("</section>")]
    assert "trained on ↓ / tested on →" in section and "cross-matrix" in section
    assert "<tr><th>RAF-DB</th><td" in section and "<tr><th>AffectNet-8</th><td" in section  # trained on
    assert "<th>SFEW</th></tr></thead>" in section  # a tested-on column of no trained model
    cis = re.findall(r"\d+\.\d\d \[-?\d+\.\d\d, \d+\.\d\d\]† \(n=2\)", section)
    assert len(cis) == 7  # 2 in domain + 4 cross + 1 shared-class line, each a mean with its 95% CI over 2 seeds
    assert "shared classes (7, without contempt)" in section  # RAF-DB's model on AffectNet-8
    assert "paper: 47.80" in section and "synthetic stand-in" in section
    assert np.isfinite(float(re.search(r"(\d+\.\d\d) \[", section).group(1)))
