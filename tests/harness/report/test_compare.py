"""Methods compared: the comparison spec, the comparison frame, the ranking and the claims ledger."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import yaml

from harness import stats

from harness.report import compare
from harness.errors import UserError
from harness.specs import list_specs, load_spec, parse_spec
from tests.harness.report_frames import frame_for_spec, make_frame


def _bench() -> pd.DataFrame:
    return pd.DataFrame({
        "name": ["APViT b1", "APViT b32", "TransFER b1", "TransFER other machine", "APViT tiny"],
        "machine": ["m1", "m1", "m1", "m2", "m1"], "kind": ["latency"] * 5,
        "preset": ["paper", "paper", "paper", "paper", "tiny"], "batch": [1, 32, 1, 1, 1],
        "model": ["apvit", "apvit", "transfer", "transfer", "apvit"], "overrides": ["{}"] * 5,
        "median_ms": [150.0, 5000.0, 230.0, 99.0, 3.0], "gflops": [12.67, 12.67, 15.3, 15.3, 0.1]})


def test_repository_comparison_is_valid_and_not_a_table():
    spec = compare.load_comparison()  # checks every table, row and dataset it names
    assert spec is not None and [m.key for m in spec.methods] == ["apvit", "transfer", "mae_vit", "pfvit", "nr"]
    # every method has an entry with a FERPlus column
    ferplus = {m.key for m in spec.methods for e in m.entries if "ferplus" in (e.datasets or
               [d.key for d in load_spec(e.table).datasets])}
    assert ferplus == {"apvit", "transfer", "mae_vit", "pfvit", "nr"}
    assert "methods" not in list_specs() and "comparison" not in list_specs()


def test_bad_comparison_names_file_method_and_entry(tmp_path):
    specs = {s: load_spec(s) for s in ("apvit_tab7", "apvit_tab13")}
    good = {"id": "methods", "caption": "c", "methods": [
        {"key": "apvit", "label": "APViT", "paper": "p", "entries": [{"table": "apvit_tab7", "row": "APViT* (ours)"}]}]}
    path = tmp_path / "comparison" / "methods.yaml"
    assert compare.parse_comparison(good, path, specs).methods[0].label == "APViT"
    for change, needle in [
        ({"row": "APViT"}, "has no row 'APViT'"),
        ({"table": "apvit_tab77"}, "unknown table 'apvit_tab77'"),
        ({"row": "MViT*"}, "reference row"),
        ({"datasets": ["ferplus"]}, "no dataset 'ferplus'"),
    ]:
        bad = yaml.safe_load(yaml.safe_dump(good))
        bad["methods"][0]["entries"][0].update(change)
        with pytest.raises(UserError, match="method 'apvit', entries\\[0\\]") as err:
            compare.parse_comparison(bad, path, specs)
        assert needle in str(err.value)
    with pytest.raises(UserError, match="unknown key"):
        compare.parse_comparison({**good, "colour": "red"}, path, specs)


def _two_methods(seeds=(0, 1, 2)):
    specs = [load_spec("apvit_tab7"), load_spec("apvit_tab13")]
    frame = pd.concat([frame_for_spec(s, n_samples=200, seeds=seeds) for s in specs], ignore_index=True)
    return specs, frame, stats.analyse(frame, n_boot=50, aso_iterations=0).cells


def test_comparison_frame_has_ours_paper_cost_and_latency():
    specs, frame, cells = _two_methods()
    comp = compare.comparison_frame(compare.load_comparison(), frame, cells, _bench())
    assert list(comp["method"]) == ["APViT", "APViT", "TransFER", "TransFER"]
    assert list(comp["table_id"]) == ["apvit_tab7"] * 4  # the first entry that ran
    apvit_raf = comp.iloc[0]
    assert apvit_raf["paper_value"] == 91.98 and apvit_raf["seeds"] == [0, 1, 2] and apvit_raf["n"] == 3
    assert apvit_raf["ci_low"] < apvit_raf["mean"] < apvit_raf["ci_high"]
    assert apvit_raf["paper_gflops"] == 12.67  # from Table 13's row, though the value comes from Table 7
    assert np.isfinite(apvit_raf["gflops"]) and apvit_raf["params_m"] == 30.0
    assert (apvit_raf["latency_b1_ms"], apvit_raf["latency_b32_ms"], apvit_raf["latency_machine"]) == (150.0, 5000.0, "m1")
    tr = comp.iloc[2]
    assert tr["paper_value"] == 90.91 and tr["paper_gflops"] == 15.30
    assert tr["latency_b1_ms"] == 230.0 and np.isnan(tr["latency_b32_ms"])  # m2's timing is not mixed in
    assert set(comp["latency_machine"]) == {"m1"}  # the machine that timed both methods
    assert set(comp["verdict"]) <= set(stats.VERDICTS)


def test_comparison_falls_back_to_an_entry_that_ran():
    specs, frame, _ = _two_methods()
    frame = frame[~((frame["table_id"] == "apvit_tab7") & (frame["dataset"] == "rafdb"))
                  | frame["row"].str.contains("DLP")]
    cells = stats.analyse(frame, n_boot=50, aso_iterations=0).cells
    comp = compare.comparison_frame(compare.load_comparison(), frame, cells)
    raf = comp[comp["dataset"] == "rafdb"]
    assert list(raf["table_id"]) == ["apvit_tab13", "apvit_tab13"] and (raf["n"] == 3).all()
    assert np.isnan(comp["latency_b1_ms"]).all() and (comp["latency_machine"] == "").all()


def _three_method_spec(tmp_path: Path) -> compare.ComparisonSpec:
    data = {"id": "methods", "caption": "three", "methods": [
        {"key": k, "label": k.upper(), "paper": "P (2020)", "entries": [{"table": "t3", "row": k}]}
        for k in ("a", "b", "c")]}
    return compare.parse_comparison(data, tmp_path / "methods.yaml")


def test_ranking_friedman_nemenyi_with_cd_diagram(tmp_path):
    spec = _three_method_spec(tmp_path)
    # C is best on every (dataset, seed) block, A worst.
    frame = make_frame("t3", [("a", {"d1": 80.0, "d2": 60.0}, {"d1": [70, 71, 72], "d2": [50, 52, 51]}),
                              ("b", {"d1": 82.0, "d2": 62.0}, {"d1": [80, 81, 82], "d2": [60, 61, 62]}),
                              ("c", {"d1": 84.0, "d2": 64.0}, {"d1": [90, 91, 92], "d2": [70, 71, 72]})],
                       baseline=None, datasets={"d1": "D1", "d2": "D2"}, n_samples=400)
    cells = stats.analyse(frame, n_boot=50, aso_iterations=0).cells
    comp = compare.comparison_frame(spec, frame, cells)
    r = compare.rank_methods(comp, frame)
    assert r.ran and r.omnibus == "friedman" and r.posthoc == "nemenyi" and r.pvalue < 0.05
    assert r.blocks.shape == (6, 3)
    assert list(r.ranks.sort_values("meanrank")["method"]) == ["C", "B", "A"]
    assert "Friedman" in r.report
    fig = compare.cd_figure(r)
    try:
        check_cd_figure(fig, r)
    finally:
        plt.close(fig)


def check_cd_figure(fig, r: compare.Ranking) -> None:
    """The critical-difference diagram of ``r`` (mean ranks 3, 2, 1 for A, B, C): a rank axis, each
    method's label joined to its mean rank, the CD bar at the CD's length, no bar joining A and C."""
    (ax,) = fig.axes
    text = {t.get_text(): t.get_position() for t in ax.texts}
    assert set(text) == {"1", "2", "3", "A", "B", "C", "CD"}
    x1, x3 = text["1"][0], text["3"][0]
    assert x3 < x1  # best rank on the right

    def x_of(rank: float) -> float:
        return x3 + (3 - rank) / 2 * (x1 - x3)

    lines = [np.column_stack([ln.get_xdata(), ln.get_ydata()]).astype(float) for ln in ax.get_lines()]
    meanrank = dict(zip(r.ranks["method"], r.ranks["meanrank"]))
    assert meanrank == {"A": 3.0, "B": 2.0, "C": 1.0}
    for method, rank in meanrank.items():
        # the polyline from the axis at the method's mean rank to its label
        joined = [ln for ln in lines if len(ln) == 3 and np.isclose(ln[-1, 1], text[method][1])
                  and abs(ln[-1, 0] - text[method][0]) < 0.05]
        assert len(joined) == 1 and np.isclose(joined[0][0, 0], x_of(rank)), method
    cd = r.result.cd
    assert 1 < cd < 2  # A-C (2 ranks apart) differ, neighbours (1 apart) do not
    flat = [ln for ln in lines if len(ln) == 2 and np.ptp(ln[:, 1]) == 0]
    widths = [np.ptp(ln[:, 0]) for ln in flat]
    assert any(np.isclose(w, cd * (x1 - x3) / 2) for w in widths), "no CD bar of the CD's length"
    spanning = [ln for ln in flat if ln[:, 0].min() <= x3 + 1e-6 and ln[:, 0].max() >= x1 - 1e-6]
    assert len(spanning) == 1, "a bar joins A and C (or the rank axis is missing)"  # the rank axis only
    assert fig._suptitle is None  # real data: no stand-in note


def test_cd_figure_notes_stand_in_data_and_needs_three_methods(tmp_path):
    spec = _three_method_spec(tmp_path)
    frame = make_frame("t3", [(k, {"d1": 80.0, "d2": 60.0}, {"d1": [70 + i, 71 + i, 72], "d2": [50 + i, 52, 51 + i]})
                              for i, k in enumerate("abc")],
                       baseline=None, datasets={"d1": "D1", "d2": "D2"}, n_samples=400)
    cells = stats.analyse(frame, n_boot=20, aso_iterations=0).cells
    r = compare.rank_methods(compare.comparison_frame(spec, frame, cells), frame)
    assert r.ran
    fig = compare.cd_figure(dataclasses.replace(r, synthetic=True))
    assert fig._suptitle is not None and fig._suptitle.get_text() == "synthetic stand-in data"
    assert {t.get_text() for t in fig.axes[0].texts} >= {"A", "B", "C"}
    plt.close(fig)
    assert compare.cd_figure(dataclasses.replace(r, blocks=r.blocks.iloc[:, :2])) is None
    assert compare.cd_figure(dataclasses.replace(r, ran=False)) is None


def test_ranking_needs_matching_seeds_on_two_datasets(tmp_path):
    spec = _three_method_spec(tmp_path)
    frame = make_frame("t3", [(k, {"d1": 80.0}, {"d1": 70.0}) for k in "abc"], baseline=None,
                       datasets={"d1": "D1"}, n_samples=100)
    cells = stats.analyse(frame, n_boot=50, aso_iterations=0).cells
    r = compare.rank_methods(compare.comparison_frame(spec, frame, cells), frame)
    assert not r.ran and "1 datasets" in r.reason
    # Different seeds per method: no common block.
    f2 = pd.concat([make_frame("t3", [(k, {"d1": 80.0, "d2": 70.0}, {"d1": 70.0, "d2": 60.0})], baseline=None,
                               datasets={"d1": "D1", "d2": "D2"}, seeds=(i, i + 10), n_samples=100, rng_seed=i)
                    for i, k in enumerate("abc")], ignore_index=True)
    r2 = compare.rank_methods(compare.comparison_frame(spec, f2, stats.analyse(f2, n_boot=20, aso_iterations=0).cells), f2)
    assert not r2.ran and "0 blocks" in r2.reason


def test_claims_ledger_and_counts():
    specs, frame, cells = _two_methods()
    tab5 = load_spec("apvit_tab5")
    ledger = compare.claims_ledger(cells, specs + [tab5])
    # Table 7: APViT and TransFER on two datasets; Table 13: three rows on RAF-DB. Reference rows are not claims.
    assert len(ledger) == 4 + 3
    assert not ledger["row"].isin(["MViT*", "KTN"]).any()
    counts = compare.claims_counts(ledger)
    assert list(counts["paper"]) == ["APViT (Xue et al., IEEE TAFFC 2022)"]
    c = counts.iloc[0]
    assert c["claims"] == 7 and c["with_result"] == 7 and sum(c[v] for v in stats.VERDICTS) == 7
    assert c["text"].startswith("APViT: 7 claims, ")


def test_comparison_needs_no_results_to_list_methods():
    spec = compare.load_comparison()
    empty = stats.analyse(pd.DataFrame()).cells
    assert compare.comparison_frame(spec, pd.DataFrame(), empty).empty
    bad = parse_spec({"id": "x", "caption": "c", "source": {"paper": "p", "table": "t", "file": "f"}, "method": "apvit",
                      "datasets": [{"key": "rafdb", "label": "RAF-DB"}], "rows": [{"label": "r", "paper": {"rafdb": 1.0}}]},
                     Path("x.yaml"))
    assert compare.claims_ledger(empty, [bad]).empty
