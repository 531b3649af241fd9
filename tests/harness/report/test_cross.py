"""The cross-dataset matrix: seed-level statistics of evaluation rows and the table page's HTML."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from harness import stats
from harness.report.cross import cross_matrices


def _frame() -> pd.DataFrame:
    common = {"table_id": "t", "row": "m", "row_index": 0, "reference": False, "status": "ok", "synthetic": True,
              "paper_value": np.nan}
    rows = [{**common, "dataset": "rafdb", "dataset_label": "RAF-DB", "seed": s, "accuracy": a}
            for s, a in enumerate([80.0, 82.0])]
    rows += [{**common, "kind": "eval", "dataset": "rafdb→affectnet_8", "dataset_label": "RAF-DB → AffectNet-8",
              "trained_on": "rafdb", "tested_on": "affectnet_8", "trained_label": "RAF-DB",
              "tested_label": "AffectNet-8", "seed": s, "accuracy": a, "shared_accuracy": sh,
              "shared_classes": "neutral, happy, sad, surprise, fear, disgust, anger",
              "target_only_classes": "contempt", "paper_value": 47.8}
             for s, (a, sh) in enumerate([(40.0, 45.0), (44.0, 49.0)])]
    return pd.DataFrame(rows)


def test_cross_dataset_stats_summarise_seeds_for_both_accuracies():
    table = stats.cross_dataset_stats(_frame()).set_index(["trained_on", "tested_on"])
    cross, domain = table.loc[("rafdb", "affectnet_8")], table.loc[("rafdb", "rafdb")]
    assert cross["n"] == 2 and cross["mean"] == pytest.approx(42.0) and cross["shared_mean"] == pytest.approx(47.0)
    s = stats.summarise([40.0, 44.0])
    assert (cross["ci_low"], cross["ci_high"]) == pytest.approx((s.ci_low, s.ci_high))
    assert cross["target_only_classes"] == "contempt" and cross["paper_value"] == 47.8 and not cross["in_domain"]
    assert domain["in_domain"] and domain["shared_mean"] == domain["mean"] == pytest.approx(81.0)


def test_no_evaluation_rows_no_matrix():
    frame = _frame()
    assert stats.cross_dataset_stats(frame[frame["kind"] != "eval"].drop(columns="kind")).empty
    spec = SimpleNamespace(id="t", datasets=[SimpleNamespace(key="rafdb")])
    assert cross_matrices(frame[frame["kind"] != "eval"].drop(columns="kind"), pd.DataFrame(), spec) == []


def test_matrix_shows_ci_shared_classes_and_paper_value():
    spec = SimpleNamespace(id="t", datasets=[SimpleNamespace(key="rafdb")])
    (m,) = cross_matrices(_frame(), pd.DataFrame(), spec)
    s = stats.summarise([40.0, 44.0])
    html = str(m["html"])
    assert m["row"] == "m" and m["synthetic"]
    assert "<th>RAF-DB</th><th>AffectNet-8</th>" in html  # tested on: its own column first
    assert f"42.00 [{s.ci_low:.2f}, {s.ci_high:.2f}]† (n=2)" in html
    assert "shared classes (7, without contempt): 47.00 [" in html and "paper: 47.80" in html
