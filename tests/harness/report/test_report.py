"""The HTML report: pages, provenance, ledgers, exports, self-containment, escaping, the CLI."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness import stats

from harness.report import build as report
from harness.cli import main
from harness.specs import load_spec, parse_spec
from tests.harness.report_frames import frame_for_spec, make_frame


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    specs = [load_spec("apvit_tab5"), load_spec("apvit_tab7")]
    failed = {("MAX / SUM", "rafdb", 1): "RuntimeError: out of memory"}
    stale = {("SUM / SUM", "affectnet", 2)}
    frame = pd.concat([frame_for_spec(specs[0], failed=failed, stale=stale, n_samples=200),
                       frame_for_spec(specs[1], synthetic=True, n_samples=200)], ignore_index=True)
    out = tmp_path_factory.mktemp("report")
    index = report.build_report(frame, specs, out)
    return frame, specs, out, index


def test_pages_tables_figures_and_exports_exist(built):
    _, specs, out, index = built
    assert index == out / "index.html"
    for s in specs:
        assert (out / f"{s.id}.html").is_file()
        for ext in ("md", "tex", "html"):
            assert (out / "tables" / f"{s.id}.{ext}").is_file()
    assert (out / "figures" / "apvit_tab5" / "delta.svg").is_file()
    assert (out / "figures" / "apvit_tab5" / "confusion.png").is_file()
    for f in ("frame.csv", "frame.parquet", "cells.csv", "summary.csv", "comparisons.csv"):
        assert (out / "data" / f).is_file()
    assert (out / "report.css").is_file()


def test_tab5_page_has_all_cells_pvalues_verdicts_and_tau(built):
    _, _, out, _ = built
    html = (out / "apvit_tab5.html").read_text()
    for label in ("LANet / SUM", "MAX / SUM", "SUM / SUM", "ABS / SUM", "ABS / ABS", "ABS / MAX"):
        assert html.count(f">{label}<") >= 2  # the regenerated table and the comparisons
    for paper in ("91.23", "91.36", "91.72", "91.98", "91.33", "91.39", "66.28", "66.51", "66.66", "66.94", "66.34", "66.54"):
        assert f">{paper}<" in html
    assert "p Holm" in html and "Kendall τ" in html
    assert re.search(r"\d+\.\d\d ± \d+\.\d\d", html)
    assert any(v in html for v in ("reproduced", "direction holds"))
    assert "RuntimeError: out of memory" in html


def test_index_has_provenance_ledger_notes_and_definitions(built):
    frame, _, out, _ = built
    html = (out / "index.html").read_text()
    assert frame["git_commit"].iloc[0] in html and "working tree dirty" in html
    assert "sha256:rafdb-fp" in html and "Test CPU &lt;x86&gt;" in html
    assert "Failure ledger (1)" in html and "Stale cells (1)" in html
    assert "blocks 4-7" in html and "multiply-add as one FLOP" in html and "Test-set selection is avoided" in html
    for name, text in stats.VERDICTS.items():
        assert name in html
    assert "pooled over seeds" in html and "Holm" in html and "α = 0.05" in html
    assert 'class="banner synthetic-banner"' in html and "apvit_tab7" in html


def test_synthetic_cells_are_marked_and_reference_rows_shown(built):
    _, _, out, _ = built
    html = (out / "apvit_tab7.html").read_text()
    assert "synthetic-banner" in html and 'class="data' in html and "synthetic" in html
    assert html.count(">ref.<") == 2 * 16  # every other method but TransFER (reproduced), on both datasets
    assert "TransFER*" in html and "90.91" in html
    tab5 = (out / "apvit_tab5.html").read_text()
    assert "synthetic-banner" in (out / "index.html").read_text()
    assert "This table's results come from synthetic" not in tab5


def test_report_is_self_contained(built):
    _, specs, out, _ = built
    for page in ["index.html", "claims.html"] + [f"{s.id}.html" for s in specs]:
        html = (out / page).read_text()
        refs = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert refs
        for ref in refs:
            assert not re.match(r"^(https?:)?//", ref), f"{page}: external resource {ref}"
            if not ref.startswith("#"):
                assert (out / ref.split("#")[0]).is_file(), f"{page}: {ref} is missing"
        assert "@import" not in html and "url(http" not in html


def test_index_compares_the_methods_and_ranks_them(built):
    _, _, out, _ = built
    html = (out / "index.html").read_text()
    assert 'id="methods"' in html and 'id="methods_table"' in html
    assert "dt_src_b64" not in html and "_itables_" in html  # DataTables inlined by itables' offline mode
    for needle in ("APViT", "TransFER", "91.98", "66.91", "90.91", "66.23", "not measured", 'href="apvit_tab7.html"'):
        assert needle in html, needle
    comp = pd.read_csv(out / "data" / "methods.csv")
    assert list(comp["method"]) == ["APViT", "APViT", "TransFER", "TransFER"]
    assert list(comp["paper_value"]) == [91.98, 66.91, 90.91, 66.23] and (comp["n"] == 3).all()
    assert (out / "figures" / "comparison" / "pareto.svg").is_file()
    # Two methods on two datasets x three seeds: Demšar's procedure picks Wilcoxon (no CD diagram).
    assert "wilcoxon test over 6 blocks" in html and "No critical-difference diagram" in html
    assert len(pd.read_csv(out / "data" / "ranking_blocks.csv")) == 6


def test_claims_ledger_lists_every_paper_value_with_counts(built):
    _, specs, out, _ = built
    expected = sum(1 for s in specs for r in s.rows for d in s.datasets
                   if not r.reference and r.paper.get(d.key, "not reported") != "not reported")
    claims = pd.read_csv(out / "data" / "claims.csv")
    assert len(claims) == expected and set(claims["table_id"]) == {"apvit_tab5", "apvit_tab7"}
    assert set(claims["verdict"]) <= set(stats.VERDICTS) and "reference" not in set(claims["verdict"])
    html = (out / "claims.html").read_text()
    assert f"APViT: {expected} claims, " in html and f"All claims ({expected})" in html
    assert 'href="apvit_tab5.html#table"' in html and 'href="claims.html"' in (out / "apvit_tab5.html").read_text()


def test_exported_parquet_rebuilds_the_same_statistics(built, tmp_path):
    frame, specs, out, _ = built
    back = report.read_exported(out / "data" / "frame.parquet")
    assert isinstance(back["y_pred"].dropna().iloc[0], np.ndarray)
    assert isinstance(back["overrides"].iloc[0], dict)
    a1 = stats.analyse(frame, n_boot=100).cells
    a2 = stats.analyse(back, n_boot=100).cells
    cols = ["mean", "ci_low", "ci_high", "mcnemar_p", "p_holm", "diff_ci_low"]
    pd.testing.assert_frame_equal(a1[cols], a2[cols])
    assert list(a1["verdict"]) == list(a2["verdict"])
    csv = pd.read_csv(out / "data" / "frame.csv")
    assert "y_true" not in csv and len(csv) == len(frame)


def test_autoescape_and_benchmarks(tmp_path):
    data = {"id": "evil", "caption": "<script>alert(1)</script>", "source": {"paper": "p", "table": "t", "file": "f"},
            "reading": "a < b & c", "method": "apvit", "datasets": [{"key": "rafdb", "label": "RAF-DB"}],
            "baseline": "base", "rows": [{"label": "base", "paper": {"rafdb": 90.0}},
                                         {"label": "<img src=x onerror=alert(1)>", "paper": {"rafdb": 91.0}}]}
    spec = parse_spec(data, Path("evil.yaml"))
    frame = make_frame("evil", [("base", {"rafdb": 90.0}, {"rafdb": 85.0}),
                                ("<img src=x onerror=alert(1)>", {"rafdb": 91.0}, {"rafdb": 88.0})],
                       baseline="base", datasets={"rafdb": "RAF-DB"}, n_samples=100)
    bench = pd.DataFrame({"name": ["<b>m</b>"], "machine": ["cpu"], "median_ms": [10.0], "iqr_ms": [1.0],
                          "rounds": [5], "batch": [1], "gflops": [1.0]})
    index = report.build_report(frame, [spec], tmp_path, benchmarks=bench)
    page = (tmp_path / "evil.html").read_text()
    assert "<script>alert" not in page and "&lt;script&gt;" in page
    assert "<img src=x" not in page and "a &lt; b &amp; c" in page
    claims = (tmp_path / "claims.html").read_text()  # the interactive ledger escapes too (itables allow_html)
    assert "<img src=x" not in claims and "&lt;img src=x" in claims
    html = index.read_text()
    assert "Latency" in html and "&lt;b&gt;m&lt;/b&gt;" in html and "figures/latency/latency.svg" in html
    assert (tmp_path / "data" / "benchmarks.csv").is_file()


def test_no_results_still_builds(tmp_path):
    spec = load_spec("apvit_tab4")
    frame = make_frame("apvit_tab4", [("Constant", {"rafdb": 91.98}, {"rafdb": 80.0})], baseline="Constant",
                       datasets={"rafdb": "RAF-DB"}, failed={("Constant", "rafdb", s): "x" for s in (0, 1, 2)})
    index = report.build_report(frame, [spec], tmp_path)
    assert "no result" in (tmp_path / "apvit_tab4.html").read_text()
    assert index.is_file()


def test_cli_builds_from_exported_frame_and_store(built, tmp_path, capsys, monkeypatch):
    frame, _, out, _ = built
    rc = main(["report", "--frame", str(out / "data" / "frame.parquet"), "--table", "apvit_tab5",
               "--out", str(tmp_path / "r1")])
    assert rc == 0 and capsys.readouterr().out.strip() == str(tmp_path / "r1" / "index.html")
    # the default path: every table with results in the store
    import harness.report.collect as collect

    monkeypatch.setattr(collect, "tables_with_results", lambda results, configs=None: ["apvit_tab5"])
    monkeypatch.setattr(collect, "collect_tables",
                        lambda ids, results, scale=None, configs=None: frame[frame["table_id"].isin(ids)])
    (tmp_path / "results").mkdir()
    monkeypatch.setenv("FERBENCH_REPORTS", str(tmp_path / "r2"))
    rc = main(["report", "--results", str(tmp_path / "results"), "--out", str(tmp_path / "r2")])
    assert rc == 0 and (tmp_path / "r2" / "apvit_tab5.html").is_file()
    assert not (tmp_path / "r2" / "apvit_tab7.html").exists()


def test_cli_bad_input_is_a_user_error(tmp_path, capsys):
    assert main(["report", "--results", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["report", "--frame", str(tmp_path / "x.csv")]) == 2
    assert main(["report", "--frame", str(tmp_path / "x.parquet"), "--table", "apvit_tab55"]) == 2


def test_empty_frame_builds_a_report_of_paper_values(tmp_path):
    index = report.build_report(pd.DataFrame(), [load_spec("apvit_tab7")], tmp_path)
    page = (tmp_path / "apvit_tab7.html").read_text()
    assert index.is_file() and ">91.98<" in page and "No figures" in page
    assert "synthetic-banner" not in index.read_text()


def test_cli_report_moves_in_only_a_complete_report(built, tmp_path, capsys, monkeypatch):
    _, _, out, _ = built
    argv = ["report", "--frame", str(out / "data" / "frame.parquet"), "--table", "apvit_tab5"]
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    (old / "index.html").write_text("previous report")
    (old / "notes.txt").write_text("mine")

    def full_disk(frame, data_dir):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(report, "export_frame", full_disk)  # mid-way: pages written, data not
    for target in (old, new):
        with pytest.raises(OSError, match="No space"):
            main([*argv, "--out", str(target)])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old"]  # nothing half-built, beside or in place
    assert sorted(p.name for p in old.iterdir()) == ["index.html", "notes.txt"]
    assert (old / "index.html").read_text() == "previous report"
    monkeypatch.undo()
    assert main([*argv, "--out", str(old)]) == 0 and capsys.readouterr().out.strip() == str(old / "index.html")
    assert "apvit_tab5" in (old / "index.html").read_text() and (old / "notes.txt").read_text() == "mine"
    assert (old / "data" / "frame.csv").is_file() and sorted(p.name for p in tmp_path.iterdir()) == ["old"]


def test_csv_exports_neutralise_spreadsheet_formulas(tmp_path):
    label = "=HYPERLINK(\"http://x\",\"y\")"
    data = {"id": "csvx", "caption": "c", "source": {"paper": "p", "table": "t", "file": "f"}, "reading": "r",
            "method": "apvit", "datasets": [{"key": "rafdb", "label": "@RAF"}], "baseline": "base",
            "rows": [{"label": "base", "paper": {"rafdb": 90.0}}, {"label": label, "paper": {"rafdb": 91.0}}]}
    frame = make_frame("csvx", [("base", {"rafdb": 90.0}, {"rafdb": 85.0}), (label, {"rafdb": 91.0}, {"rafdb": 80.0})],
                       baseline="base", datasets={"rafdb": "@RAF"}, n_samples=100)
    bench = pd.DataFrame({"name": ["+cmd"], "machine": ["-m"], "median_ms": [-1.5], "iqr_ms": [1.0], "rounds": [5],
                          "batch": [1], "gflops": [1.0]})
    report.build_report(frame, [parse_spec(data, Path("csvx.yaml"))], tmp_path, benchmarks=bench)
    for name in ("frame.csv", "cells.csv", "claims.csv", "comparisons.csv"):
        text = (tmp_path / "data" / name).read_text()
        assert "'=HYPERLINK" in text and ",=HYPERLINK" not in text and "\"=HYPERLINK" not in text, name
    back = pd.read_csv(tmp_path / "data" / "benchmarks.csv")
    assert (back.loc[0, "name"], back.loc[0, "machine"], back.loc[0, "median_ms"]) == ("'+cmd", "'-m", -1.5)
    cells = pd.read_csv(tmp_path / "data" / "cells.csv")
    assert set(cells["dataset_label"]) == {"'@RAF"} and (cells["diff"] < 0).any()  # a negative number stays one


@pytest.mark.parametrize("content", ["not parquet", "foreign"])
def test_report_from_a_foreign_frame_is_a_clear_error(tmp_path, capsys, content):
    from harness.cli import main

    path = tmp_path / "frame.parquet"
    if content == "foreign":
        pd.DataFrame({"x": [1, 2]}).to_parquet(path)
    else:
        path.write_text(content)
    assert main(["report", "--frame", str(path), "--out", str(tmp_path / "rep")]) == 2
    err = capsys.readouterr().err
    assert f"--frame {path}" in err and ("not a Parquet file" in err or "no column table_id" in err)
    assert not (tmp_path / "rep" / "index.html").exists()


def test_a_report_whose_inputs_have_not_changed_is_left_as_it_is(built, tmp_path, capsys):
    _, _, out, _ = built
    argv = ["report", "--frame", str(out / "data" / "frame.parquet"), "--table", "apvit_tab5", "--out",
            str(tmp_path / "r")]
    assert main(argv) == 0
    index = tmp_path / "r" / "index.html"
    built_at = index.stat().st_mtime_ns
    capsys.readouterr()
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "up to date" in captured.err and captured.out.strip() == str(index)
    assert index.stat().st_mtime_ns == built_at
    assert main([*argv, "--seed-test", "welch"]) == 0  # another option: built again
    assert "up to date" not in capsys.readouterr().err and index.stat().st_mtime_ns != built_at
