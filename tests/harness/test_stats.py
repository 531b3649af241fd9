"""Statistics against scipy/statsmodels reference values on fixed inputs, and the verdict rule."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests

from harness import stats
from tests.harness.report_frames import make_frame

TOL = 1e-9


def test_summarise_matches_scipy_t_interval():
    x = np.array([91.2, 91.9, 90.7, 91.4])
    s = stats.summarise(x)
    lo, hi = sps.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=sps.sem(x))
    assert s.n == 4
    assert s.mean == pytest.approx(x.mean(), abs=TOL)
    assert s.std == pytest.approx(np.std(x, ddof=1), abs=TOL)
    assert s.ci_low == pytest.approx(lo, abs=TOL) and s.ci_high == pytest.approx(hi, abs=TOL)


def test_summarise_single_seed_has_no_ci_and_empty_is_nan():
    s = stats.summarise([88.0])
    assert s.n == 1 and s.mean == 88.0
    assert np.isnan(s.std) and np.isnan(s.ci_low) and np.isnan(s.ci_high)
    e = stats.summarise([np.nan, np.nan])
    assert e.n == 0 and np.isnan(e.mean)


def test_summarise_identical_values_gives_zero_width_ci():
    s = stats.summarise([90.0, 90.0, 90.0])
    assert s.ci_low == s.ci_high == 90.0


def test_mcnemar_pooled_matches_statsmodels_on_summed_table():
    rng = np.random.default_rng(1)
    yt = [rng.integers(0, 7, 300) for _ in range(3)]
    pr = [np.where(rng.random(300) < 0.8, y, (y + 1) % 7) for y in yt]
    pb = [np.where(rng.random(300) < 0.7, y, (y + 2) % 7) for y in yt]
    res = stats.mcnemar_pooled(yt, pr, pb)
    table = np.zeros((2, 2), int)
    for y, a, b in zip(yt, pr, pb):
        ra, rb = a == y, b == y
        table += [[np.sum(ra & rb), np.sum(ra & ~rb)], [np.sum(~ra & rb), np.sum(~ra & ~rb)]]
    ref = mcnemar(table, exact=True)
    assert (res.b, res.c) == (table[0, 1], table[1, 0])
    assert res.pvalue == pytest.approx(ref.pvalue, abs=TOL)
    # the exact test is the two-sided binomial test of b out of b + c
    assert res.pvalue == pytest.approx(sps.binomtest(res.b, res.b + res.c, 0.5).pvalue, abs=TOL)


def test_mcnemar_identical_predictions_is_one():
    y = np.arange(50) % 7
    p = (y + (np.arange(50) % 3 == 0)) % 7
    res = stats.mcnemar_pooled([y], [p], [p.copy()])
    assert (res.b, res.c, res.pvalue) == (0, 0, 1.0)
    assert mcnemar([[40, 0], [0, 10]], exact=True).pvalue == 1.0


def test_paired_bootstrap_matches_explicit_loop():
    rng = np.random.default_rng(3)
    cr = rng.random((2, 200)) < 0.8
    cb = rng.random((2, 200)) < 0.7
    obs, lo, hi = stats.paired_bootstrap_diff(cr, cb, n_boot=500, seed=7)
    assert obs == pytest.approx(100 * (cr.mean() - cb.mean()), abs=TOL)
    gen = np.random.default_rng(7)
    idx = gen.integers(0, 200, size=(500, 200))
    boot = [100 * (cr[:, i].mean() - cb[:, i].mean()) for i in idx]
    ref_lo, ref_hi = np.percentile(boot, [2.5, 97.5])
    assert lo == pytest.approx(ref_lo, abs=TOL) and hi == pytest.approx(ref_hi, abs=TOL)
    # seeded: same answer twice
    assert stats.paired_bootstrap_diff(cr, cb, n_boot=500, seed=7) == (obs, lo, hi)


def test_paired_bootstrap_identical_is_degenerate_zero():
    c = np.ones((3, 10), bool)
    assert stats.paired_bootstrap_diff(c, c) == (0.0, 0.0, 0.0)


def test_seed_tests_match_scipy():
    a, b = np.array([91.2, 91.9, 90.7]), np.array([90.1, 90.5, 90.4])
    t, p = stats.seed_test(a, b, "welch")
    ref = sps.ttest_ind(a, b, equal_var=False)
    assert t == pytest.approx(ref.statistic, abs=TOL) and p == pytest.approx(ref.pvalue, abs=TOL)
    a5, b5 = np.array([1.0, 2.5, 3.1, 4.7, 5.2]), np.array([0.7, 2.0, 3.3, 4.0, 4.1])
    w, pw = stats.seed_test(a5, b5, "wilcoxon")
    refw = sps.wilcoxon(a5, b5)
    assert w == pytest.approx(refw.statistic, abs=TOL) and pw == pytest.approx(refw.pvalue, abs=TOL)
    assert all(np.isnan(stats.seed_test(a[:1], b)))  # n = 1: no seed-level test
    assert stats.seed_test(np.full(3, 90.0), np.full(3, 90.0)) == (0.0, 1.0)
    with pytest.raises(ValueError):
        stats.seed_test(a, b, "anova")


def test_holm_matches_statsmodels_and_keeps_nan():
    p = np.array([0.01, np.nan, 0.04, 0.03, 0.2])
    out = stats.holm(p)
    ref = multipletests(p[[0, 2, 3, 4]], method="holm")[1]
    assert np.isnan(out[1])
    np.testing.assert_allclose(out[[0, 2, 3, 4]], ref, atol=TOL, rtol=0)


def test_kendall_tau_matches_scipy_and_skips_missing():
    paper = [91.23, 91.36, 91.72, 91.98, np.nan, 91.39]
    ours = [80.0, 83.0, 82.0, 90.0, 85.0, 86.0]
    tau, p, n = stats.kendall_tau(paper, ours)
    ref = sps.kendalltau([91.23, 91.36, 91.72, 91.98, 91.39], [80.0, 83.0, 82.0, 90.0, 86.0])
    assert n == 5
    assert tau == pytest.approx(ref.statistic, abs=TOL) and p == pytest.approx(ref.pvalue, abs=TOL)
    assert np.isnan(stats.kendall_tau([1.0], [2.0])[0])


def _v(**kw):
    args = dict(reference=False, n=3, synthetic=False, paper_value=91.0, ci_low=90.0, ci_high=92.0,
                is_baseline=False, our_delta=-1.0, paper_delta=-0.5, p_holm=0.01)
    return stats.verdict(**{**args, **kw})


def test_verdict_rule():
    assert _v() == stats.REPRODUCED
    assert _v(paper_value=95.0) == stats.DIRECTION_HOLDS
    assert _v(paper_value=95.0, p_holm=0.2) == stats.NOT_REPRODUCED
    assert _v(paper_value=95.0, our_delta=1.0) == stats.NOT_REPRODUCED
    # n = 1: no CI, so never "reproduced"; the direction can still hold
    assert _v(n=1, ci_low=np.nan, ci_high=np.nan) == stats.DIRECTION_HOLDS
    assert _v(n=1, ci_low=np.nan, ci_high=np.nan, p_holm=0.5) == stats.NOT_REPRODUCED
    # synthetic: only the direction rule applies
    assert _v(synthetic=True) == stats.DIRECTION_HOLDS
    assert _v(synthetic=True, p_holm=0.5) == stats.NOT_COMPARABLE
    assert _v(paper_value=np.nan, paper_delta=np.nan) == stats.NOT_COMPARABLE
    assert _v(n=0) == stats.NO_RESULT
    assert _v(reference=True, n=0) == stats.REFERENCE
    assert _v(is_baseline=True, paper_value=95.0) == stats.NOT_REPRODUCED
    assert set(stats.VERDICTS) == {stats.REPRODUCED, stats.DIRECTION_HOLDS, stats.NOT_REPRODUCED,
                                   stats.NOT_COMPARABLE, stats.NO_RESULT, stats.REFERENCE}


def test_analyse_frame_end_to_end():
    frame = make_frame()
    a = stats.analyse(frame, n_boot=200)
    cells = a.cells
    assert len(cells) == 12
    lanet = cells[(cells.row == "LANet / SUM") & (cells.dataset == "rafdb")].iloc[0]
    ok = frame[(frame.row == "LANet / SUM") & (frame.dataset == "rafdb")]
    assert lanet.n == 3 and lanet["mean"] == pytest.approx(ok.accuracy.mean(), abs=TOL)
    # Holm over the table's 10 comparisons
    raw = a.comparisons["mcnemar_p"].to_numpy(float)
    np.testing.assert_allclose(a.comparisons["p_holm"], multipletests(raw, method="holm")[1], atol=TOL)
    # LANet is 10 points below the baseline: significant, paper's sign -> direction holds
    assert lanet.verdict == stats.DIRECTION_HOLDS and lanet.marker == "***"
    base = cells[cells.is_baseline]
    inside = (base.ci_low <= base.paper_value) & (base.paper_value <= base.ci_high)
    expected = np.where(inside, stats.REPRODUCED, stats.NOT_REPRODUCED)
    assert list(base["verdict"]) == list(expected) and base["our_delta"].isna().all()
    # ABS / MAX on AffectNet has no paper value
    assert cells[(cells.row == "ABS / MAX") & (cells.dataset == "affectnet")].verdict.iloc[0] == stats.NOT_COMPARABLE
    s = a.summary.set_index("dataset")
    assert s.loc["rafdb", "kendall_n"] == 6 and -1 <= s.loc["rafdb", "kendall_tau"] <= 1
    assert s.loc["rafdb", "sign_n"] == 5 and s.loc["rafdb", "sign_fraction"] == 1.0


def test_analyse_edge_cases_failed_rows_single_seed_missing_baseline():
    failed = {("MAX / SUM", ds, s): "CUDA OOM" for ds in ("rafdb", "affectnet") for s in (0, 1, 2)}
    frame = make_frame(failed=failed, seeds=(0,))
    a = stats.analyse(frame, n_boot=100)
    c = a.cells.set_index(["row", "dataset"])
    assert c.loc[("MAX / SUM", "rafdb"), "verdict"] == stats.NO_RESULT
    assert c.loc[("MAX / SUM", "rafdb"), "n_failed"] == 1
    one = c.loc[("LANet / SUM", "rafdb")]
    assert one.n == 1 and np.isnan(one.ci_low) and one.verdict in (stats.DIRECTION_HOLDS, stats.NOT_REPRODUCED)
    assert np.isnan(a.comparisons.set_index(["row", "dataset"]).loc[("LANet / SUM", "rafdb"), "seed_p"])
    # no baseline row at all: comparisons carry a note, verdicts fall back to the CI rule
    nb = stats.analyse(make_frame(baseline=None), n_boot=100)
    assert (nb.comparisons["note"] == "no baseline row").all()
    assert set(nb.cells["verdict"]) <= {stats.REPRODUCED, stats.NOT_REPRODUCED, stats.NOT_COMPARABLE}


def test_analyse_identical_rows_and_synthetic():
    rows = [("A", {"rafdb": 90.0}, {"rafdb": 80.0}), ("B", {"rafdb": 91.0}, {"rafdb": 80.0})]
    frame = make_frame(rows=rows, baseline="A", datasets={"rafdb": "RAF-DB"}, synthetic=True)
    # make B's predictions identical to A's
    for s in (0, 1, 2):
        a_idx = frame.index[(frame.row == "A") & (frame.seed == s)][0]
        b_idx = frame.index[(frame.row == "B") & (frame.seed == s)][0]
        frame.at[b_idx, "y_pred"] = frame.at[a_idx, "y_pred"].copy()
        frame.at[b_idx, "accuracy"] = frame.at[a_idx, "accuracy"]
    a = stats.analyse(frame, n_boot=100)
    b = a.cells.set_index("row").loc["B"]
    assert b.mcnemar_p == 1.0 and b.p_holm == 1.0 and b["diff"] == 0.0 and b.seed_p == 1.0
    assert b.verdict == stats.NOT_COMPARABLE
    assert a.cells.set_index("row").loc["A", "verdict"] == stats.NOT_COMPARABLE


def test_reference_rows_carry_paper_values_only():
    rows = [("TransFER", {"rafdb": 90.91}, {"rafdb": 0.0}), ("APViT", {"rafdb": 91.98}, {"rafdb": 88.0})]
    frame = make_frame(rows=rows, baseline=None, datasets={"rafdb": "RAF-DB"}, reference={"TransFER"})
    a = stats.analyse(frame, n_boot=100)
    c = a.cells.set_index("row")
    assert c.loc["TransFER", "verdict"] == stats.REFERENCE and c.loc["TransFER", "n"] == 0
    assert len(a.comparisons) == 1


def test_statistics_text_mentions_choices():
    text = " ".join(t for _, t in stats.statistics_text())
    for word in ("McNemar", "pooled", "Holm", "Kendall", "bootstrap", "Welch", "n = 1"):
        assert word in text


def test_wilcoxon_option_uses_seed_matched_accuracies():
    frame = make_frame(seeds=(0, 1, 2, 3, 4, 5), n_samples=100)
    a = stats.analyse(frame, n_boot=50, seed_method="wilcoxon")
    row = a.comparisons.set_index(["row", "dataset"]).loc[("LANet / SUM", "rafdb")]
    acc = frame[frame.dataset == "rafdb"].pivot_table(index="seed", columns="row", values="accuracy")
    ref = sps.wilcoxon(acc["LANet / SUM"], acc["ABS / SUM"])
    assert row.seed_p == pytest.approx(ref.pvalue, abs=TOL)
    assert "Wilcoxon" in " ".join(t for _, t in stats.statistics_text(a.params))
