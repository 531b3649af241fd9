"""Regenerated tables: the paper's layout, cell conventions, and the three export formats."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from harness import stats

from harness.report import render
from harness.specs import load_spec, parse_spec
from tests.harness.report_frames import frame_for_spec, make_frame


@pytest.fixture(scope="module")
def tab5():
    spec = load_spec("apvit_tab5")
    failed = {("MAX / SUM", ds, s): "boom" for ds in ("rafdb", "affectnet") for s in (0, 1, 2)}
    frame = frame_for_spec(spec, failed=failed)
    return spec, stats.analyse(frame, n_boot=100)


def test_layout_follows_the_spec(tab5):
    spec, a = tab5
    t = render.table_frame(a.cells, spec)
    assert list(t.index) == [r.label for r in spec.rows]
    assert list(dict.fromkeys(t.columns.get_level_values(0))) == ["RAF-DB", "AffectNet"]
    assert list(t["RAF-DB"].columns) == list(render.SUBCOLUMNS)
    # paper values are the spec's, to two decimals
    assert t.loc["LANet / SUM", ("RAF-DB", "Paper")] == "91.23"
    assert t.loc["ABS / SUM", ("AffectNet", "Paper")] == "66.94"
    assert t.loc["ABS / SUM", ("RAF-DB", "Δ base")] == "baseline"


def test_cell_text_matches_the_statistics(tab5):
    spec, a = tab5
    t = render.table_frame(a.cells, spec)
    c = a.cells.set_index(["row", "dataset"]).loc[("LANet / SUM", "rafdb")]
    half = (c.ci_high - c.ci_low) / 2
    assert t.loc["LANet / SUM", ("RAF-DB", "Ours")] == f"{c['mean']:.2f} ± {half:.2f}"
    assert t.loc["LANet / SUM", ("RAF-DB", "Verdict")] == render.format_verdict(c)
    assert render.format_verdict(c).startswith(c.verdict)
    assert t.loc["LANet / SUM", ("RAF-DB", "Δ paper")] == f"{c['mean'] - 91.23:+.2f}".replace("-", "−")
    base = t.loc["LANet / SUM", ("RAF-DB", "Δ base")]
    assert base.endswith(c.marker) and "[−0.75]" in base
    assert t.loc["MAX / SUM", ("RAF-DB", "Ours")] == "failed"
    assert t.loc["MAX / SUM", ("RAF-DB", "Verdict")] == stats.NO_RESULT


def test_single_seed_synthetic_and_reference_cells():
    spec = load_spec("apvit_tab13")
    a = stats.analyse(frame_for_spec(spec, seeds=(0,), synthetic=True), n_boot=50)
    t = render.table_frame(a.cells, spec)
    assert t.loc["APViT (160, 0.9)", ("RAF-DB", "Ours")].endswith(f"{render.SYNTHETIC_MARK} (n=1, no CI)")
    assert t.loc["KTN", ("RAF-DB", "Ours")] == "ref."
    assert t.loc["KTN", ("RAF-DB", "Verdict")] == stats.REFERENCE
    assert t.loc["KTN", ("GFLOPs", "Paper")] == "7.60"
    assert t.loc["TransFER", ("RAF-DB", "Ours")].endswith("(n=1, no CI)")  # reproduced, not a reference
    assert t.loc["APViT (160, 0.9)", ("GFLOPs", "Ours")] != ""


def test_flops_column_is_relative_to_the_baseline():
    spec = load_spec("apvit_tab1")
    a = stats.analyse(frame_for_spec(spec), n_boot=50)
    t = render.table_frame(a.cells, spec)
    assert t.loc["APP / ATP / CLT", ("FLOPs", "Paper")] == "83%"
    assert t.loc["– / – / CLT", ("FLOPs", "Ours")] == "100%"
    g = a.cells.set_index(["row", "dataset"])["gflops"]
    expect = 100 * g[("APP / ATP / CLT", "rafdb")] / g[("– / – / CLT", "rafdb")]
    assert t.loc["APP / ATP / CLT", ("FLOPs", "Ours")] == f"{expect:.0f}%"


def test_rows_without_results_still_appear(tab5):
    spec, a = tab5
    t = render.table_frame(a.cells.iloc[0:0], spec)
    assert len(t) == 6 and (t[("RAF-DB", "Ours")] == "missing").all()


def _weird_spec():
    data = {"id": "weird", "caption": "c", "source": {"paper": "p", "table": "t", "file": "f"},
            "method": "apvit", "datasets": [{"key": "rafdb", "label": "RAF_DB & co"}], "baseline": "A_1",
            "rows": [{"label": "A_1", "paper": {"rafdb": 90.0}}, {"label": "<b>B</b> 50%", "paper": {"rafdb": 91.0}}]}
    return parse_spec(data, Path("weird.yaml"))


def test_exports_escape_and_use_booktabs():
    spec = _weird_spec()
    frame = make_frame("weird", [("A_1", {"rafdb": 90.0}, {"rafdb": 85.0}), ("<b>B</b> 50%", {"rafdb": 91.0}, {"rafdb": 88.0})],
                       baseline="A_1", datasets={"rafdb": "RAF_DB & co"})
    t = render.table_frame(stats.analyse(frame, n_boot=50).cells, spec)
    md = render.to_markdown(t)
    assert md.splitlines()[0].startswith("| Row") and r"RAF\_DB & co · Ours" in md
    assert "<b>" not in md and "&lt;b&gt;B&lt;/b&gt; 50%" in md  # Markdown keeps no raw HTML from labels
    tex = render.to_latex(t, "cap", "tab:weird")
    for token in (r"\toprule", r"\midrule", r"\bottomrule", r"$\pm$", r"A\_1", r"RAF\_DB \& co", r"50\%",
                  r"\caption{cap}", r"\label{tab:weird}"):
        assert token in tex
    assert "±" not in tex and "Δ" not in tex
    html = render.to_html(t, "weird")
    assert "&lt;b&gt;B&lt;/b&gt;" in html and "<b>B</b>" not in html
    assert 'class="paper-table"' in html and "v-" in html


def test_summary_and_comparison_frames(tab5):
    spec, a = tab5
    s = render.summary_frame(a.summary, a.cells)
    assert list(s["Dataset"]) == ["RAF-DB", "AffectNet"]
    assert set(stats.VERDICTS) <= set(s.columns)
    c = render.comparisons_frame(a.cells, spec.id)
    assert len(c) == 10 and "p Holm" in c
    failed = c[c["Row"] == "MAX / SUM"]
    assert (failed["Note"] == "row has no ok seed").all()


def test_formatting_helpers():
    assert render._num(np.nan) == "" and render._num(-1.234, signed=True) == "−1.23"
    assert render._p(0.00001) == "<1e-4" and render._p(np.nan) == "–"
