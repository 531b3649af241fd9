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


def test_two_level_bootstrap_matches_explicit_loop():
    rng = np.random.default_rng(3)
    cr = rng.random((3, 200)) < 0.8
    cb = rng.random((3, 200)) < 0.7
    res = stats.two_level_bootstrap(cr, cb, n_boot=300, seed=7)
    assert res.observed == pytest.approx(100 * (cr.mean() - cb.mean()), abs=TOL)
    gen = np.random.default_rng(7)
    img = gen.integers(0, 200, size=(300, 200))
    pick = gen.integers(0, 3, size=(300, 3))
    d = cr.astype(float) - cb.astype(float)
    boot = [100 * d[np.ix_(s_, i_)].mean() for i_, s_ in zip(img, pick)]  # seeds and images drawn jointly
    se = np.std(boot, ddof=1)
    half = sps.t.ppf(0.975, 2) * se
    assert res.se == pytest.approx(se, rel=1e-9)
    assert (res.low, res.high) == pytest.approx((res.observed - half, res.observed + half), rel=1e-9)
    assert stats.two_level_bootstrap(cr, cb, n_boot=300, seed=7) == res  # seeded
    one = stats.two_level_bootstrap(cr[:1], cb[:1])
    assert np.isfinite(one.observed) and np.isnan(one.low)  # one seed: no between-seed spread, no CI


def test_seed_tests_match_scipy():
    a, b = np.array([91.2, 91.9, 90.7]), np.array([90.1, 90.5, 90.4])
    t, p = stats.seed_test(a, b)  # the primary test: paired t on seed-matched deltas
    ref = sps.ttest_rel(a, b)
    assert t == pytest.approx(ref.statistic, abs=TOL) and p == pytest.approx(ref.pvalue, abs=TOL)
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


def test_tost_and_power_match_statsmodels():
    from statsmodels.stats.power import TTestPower
    from statsmodels.stats.weightstats import DescrStatsW

    x = np.array([91.4, 91.9, 91.6, 92.2])
    assert stats.tost_pvalue(x, 91.98, 1.0) == pytest.approx(DescrStatsW(x).ttost_mean(90.98, 92.98)[0], abs=TOL)
    assert np.isnan(stats.tost_pvalue(x[:1], 91.98))
    # equivalence at alpha <=> the 90% t-CI inside the band
    lo, hi = sps.t.interval(0.90, 3, x.mean(), sps.sem(x))
    assert (stats.tost_pvalue(x, 91.98, 1.0) < 0.05) == (90.98 < lo and hi < 92.98)
    n = stats.tost_seeds_needed(x.mean(), x.std(ddof=1), 91.98, 1.0)
    assert sps.t.ppf(0.95, n - 1) * x.std(ddof=1) / np.sqrt(n) < 1.0 - abs(x.mean() - 91.98)
    assert stats.tost_seeds_needed(80.0, 1.0, 91.98) == np.inf

    tp = TTestPower()
    need = stats.seeds_needed(sd=2.0, effect=1.0)
    assert need == np.ceil(tp.solve_power(effect_size=0.5, alpha=0.05, power=0.8))
    assert stats.achieved_power(2.0, 1.0, int(need)) >= 0.8 > stats.achieved_power(2.0, 1.0, int(need) - 1)
    assert stats.min_detectable_effect(2.0, 5) == pytest.approx(2.0 * tp.solve_power(nobs=5, alpha=0.05, power=0.8))
    assert stats.seeds_needed(2.0, 0.0) == np.inf and np.isnan(stats.seeds_needed(np.nan, 1.0))
    assert stats.format_seeds(need) == f"≈ {int(need)}" and stats.format_seeds(np.inf) == "∞"


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
                is_baseline=False, our_delta=-1.0, paper_delta=-0.5, p_holm=0.01, tost_p=0.01, power=0.5)
    return stats.verdict(**{**args, **kw})


def test_verdict_rule():
    assert _v() == stats.REPRODUCED
    assert _v(tost_p=0.2) == stats.DIRECTION_HOLDS
    assert _v(tost_p=0.2, our_delta=1.0) == stats.DIRECTION_REVERSED
    assert _v(our_delta=1.0) == stats.DIRECTION_REVERSED  # a reversal is never "reproduced"
    # not significant: underpowered -> inconclusive, powered -> not reproduced
    assert _v(tost_p=0.2, p_holm=0.2) == stats.INCONCLUSIVE
    assert _v(tost_p=0.2, p_holm=0.2, power=0.9) == stats.NOT_REPRODUCED
    # the CI excludes the paper's value: not reproduced whatever the power
    assert _v(tost_p=0.2, p_holm=0.2, paper_value=95.0) == stats.NOT_REPRODUCED
    # a wide CI that contains the paper's value is not "reproduced" (TOST fails)
    assert _v(tost_p=0.4, p_holm=0.5, ci_low=80.0, ci_high=100.0, is_baseline=True,
              our_delta=np.nan, paper_delta=np.nan) == stats.INCONCLUSIVE
    # n = 1: no CI, no TOST; the direction can still hold
    assert _v(n=1, ci_low=np.nan, ci_high=np.nan, tost_p=np.nan) == stats.DIRECTION_HOLDS
    assert _v(n=1, ci_low=np.nan, ci_high=np.nan, tost_p=np.nan, p_holm=np.nan, power=np.nan) == stats.INCONCLUSIVE
    # synthetic: never "reproduced"; only the effect verdicts
    assert _v(synthetic=True, tost_p=0.01, p_holm=0.5) == stats.INCONCLUSIVE
    assert _v(synthetic=True) == stats.DIRECTION_HOLDS
    assert _v(synthetic=True, p_holm=0.5, power=0.95) == stats.NOT_REPRODUCED
    assert _v(synthetic=True, is_baseline=True, our_delta=np.nan, paper_delta=np.nan) == stats.NOT_COMPARABLE
    assert _v(paper_value=np.nan, paper_delta=np.nan, tost_p=np.nan) == stats.NOT_COMPARABLE
    assert _v(n=0) == stats.NO_RESULT
    assert _v(reference=True, n=0) == stats.REFERENCE
    assert set(stats.VERDICTS) == {stats.REPRODUCED, stats.DIRECTION_HOLDS, stats.DIRECTION_REVERSED,
                                   stats.NOT_REPRODUCED, stats.INCONCLUSIVE, stats.NOT_COMPARABLE,
                                   stats.NO_RESULT, stats.REFERENCE}


def test_analyse_frame_end_to_end():
    frame = make_frame(seeds=tuple(range(6)), n_samples=2000)
    a = stats.analyse(frame, n_boot=200, aso_iterations=0)
    cells = a.cells
    assert len(cells) == 12
    lanet = cells[(cells.row == "LANet / SUM") & (cells.dataset == "rafdb")].iloc[0]
    ok = frame[(frame.row == "LANet / SUM") & (frame.dataset == "rafdb")]
    assert lanet.n == 6 and lanet["mean"] == pytest.approx(ok.accuracy.mean(), abs=TOL)
    # Holm over the table's 10 primary (seed-level) p-values
    raw = a.comparisons["seed_p"].to_numpy(float)
    np.testing.assert_allclose(a.comparisons["p_holm"], multipletests(raw, method="holm")[1], atol=TOL)
    # LANet is 10 points below the baseline in every seed: significant, paper's sign -> direction holds
    assert lanet.verdict == stats.DIRECTION_HOLDS and lanet.marker == "***"
    assert lanet.diff_ci_low < lanet.our_delta < lanet.diff_ci_high < 0
    assert lanet.ci_method == "two-level bootstrap" and lanet.n_pairs == 6 and len(lanet.mcnemar_seed_p) == 6
    # every non-baseline row has a seeds-needed figure and a minimum detectable effect
    rows = cells[~cells.is_baseline]
    assert np.isfinite(rows.seeds_needed).all() and np.isfinite(rows.mde).all() and (rows.seeds_needed >= 2).all()
    assert (rows.power_target_source[rows.paper_delta.notna()] == "paper").all()
    base = cells[cells.is_baseline]
    assert set(base.verdict) <= {stats.NOT_REPRODUCED, stats.INCONCLUSIVE, stats.REPRODUCED}
    assert base["our_delta"].isna().all()
    # ABS / MAX on AffectNet has no paper value: no claim, no value to reproduce
    assert cells[(cells.row == "ABS / MAX") & (cells.dataset == "affectnet")].verdict.iloc[0] == stats.NOT_COMPARABLE
    s = a.summary.set_index("dataset")
    assert s.loc["rafdb", "kendall_n"] == 6 and -1 <= s.loc["rafdb", "kendall_tau"] <= 1
    assert s.loc["rafdb", "sign_n"] == 5 and s.loc["rafdb", "sign_fraction"] == 1.0
    # test-set selection: make_frame's best-on-test epoch is 1.5 points above the honest number
    sel = a.selection.set_index("dataset")
    assert sel.loc["rafdb", "test_selected"] - sel.loc["rafdb", "honest"] == pytest.approx(1.5)
    assert sel.loc["rafdb", "best_seed_test_selected"] > sel.loc["rafdb", "best_seed"] > sel.loc["rafdb", "honest"]


def test_analyse_edge_cases_failed_rows_single_seed_missing_baseline():
    failed = {("MAX / SUM", ds, s): "CUDA OOM" for ds in ("rafdb", "affectnet") for s in (0, 1, 2)}
    frame = make_frame(failed=failed, seeds=(0,))
    a = stats.analyse(frame, n_boot=100, aso_iterations=0)
    c = a.cells.set_index(["row", "dataset"])
    assert c.loc[("MAX / SUM", "rafdb"), "verdict"] == stats.NO_RESULT
    assert c.loc[("MAX / SUM", "rafdb"), "n_failed"] == 1
    one = c.loc[("LANet / SUM", "rafdb")]
    # one seed: no seed-level test and no SD, so the effect question stays open
    assert one.n == 1 and np.isnan(one.ci_low) and one.verdict == stats.INCONCLUSIVE
    assert "1 matched seed" in one.verdict_note
    assert np.isnan(a.comparisons.set_index(["row", "dataset"]).loc[("LANet / SUM", "rafdb"), "seed_p"])
    # no baseline row at all: comparisons carry a note, verdicts fall back to the CI rule
    nb = stats.analyse(make_frame(baseline=None), n_boot=100, aso_iterations=0)
    assert (nb.comparisons["note"] == "no baseline row").all()
    assert set(nb.cells["verdict"]) <= {stats.REPRODUCED, stats.NOT_REPRODUCED, stats.INCONCLUSIVE,
                                        stats.NOT_COMPARABLE}


def test_analyse_identical_rows_and_synthetic():
    rows = [("A", {"rafdb": 90.0}, {"rafdb": 80.0}), ("B", {"rafdb": 91.0}, {"rafdb": 80.0})]
    frame = make_frame(rows=rows, baseline="A", datasets={"rafdb": "RAF-DB"}, synthetic=True)
    # make B's predictions identical to A's
    for s in (0, 1, 2):
        a_idx = frame.index[(frame.row == "A") & (frame.seed == s)][0]
        b_idx = frame.index[(frame.row == "B") & (frame.seed == s)][0]
        frame.at[b_idx, "y_pred"] = frame.at[a_idx, "y_pred"].copy()
        frame.at[b_idx, "accuracy"] = frame.at[a_idx, "accuracy"]
    a = stats.analyse(frame, n_boot=100, aso_iterations=0)
    b = a.cells.set_index("row").loc["B"]
    assert b.mcnemar_p == 1.0 and b.p_holm == 1.0 and b["diff"] == 0.0 and b.seed_p == 1.0
    # identical models: zero SD of the deltas, so any paper delta is detectable -> the effect is absent
    assert b.power == 1.0 and b.verdict == stats.NOT_REPRODUCED
    assert a.cells.set_index("row").loc["A", "verdict"] == stats.NOT_COMPARABLE


def test_reference_rows_carry_paper_values_only():
    rows = [("TransFER", {"rafdb": 90.91}, {"rafdb": 0.0}), ("APViT", {"rafdb": 91.98}, {"rafdb": 88.0})]
    frame = make_frame(rows=rows, baseline=None, datasets={"rafdb": "RAF-DB"}, reference={"TransFER"})
    a = stats.analyse(frame, n_boot=100, aso_iterations=0)
    c = a.cells.set_index("row")
    assert c.loc["TransFER", "verdict"] == stats.REFERENCE and c.loc["TransFER", "n"] == 0
    assert len(a.comparisons) == 1


def test_statistics_text_mentions_choices():
    text = " ".join(t for _, t in stats.statistics_text())
    for word in ("McNemar", "pooled", "Holm", "Kendall", "two-level bootstrap", "paired t-test", "n = 1",
                 "TOST", "power", "training run", "best epoch on the test set"):
        assert word in text


def test_wilcoxon_option_uses_seed_matched_accuracies():
    frame = make_frame(seeds=(0, 1, 2, 3, 4, 5), n_samples=100)
    a = stats.analyse(frame, n_boot=50, seed_method="wilcoxon", aso_iterations=0)
    row = a.comparisons.set_index(["row", "dataset"]).loc[("LANet / SUM", "rafdb")]
    acc = frame[frame.dataset == "rafdb"].pivot_table(index="seed", columns="row", values="accuracy")
    ref = sps.wilcoxon(acc["LANet / SUM"], acc["ABS / SUM"])
    assert row.seed_p == pytest.approx(ref.pvalue, abs=TOL)
    assert "Wilcoxon" in " ".join(t for _, t in stats.statistics_text(a.params))
