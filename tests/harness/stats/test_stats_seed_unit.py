"""Verdicts whose unit is the training run: hand-made frames and simulated tables.

The frames are built with ``make_frame`` (per-seed true accuracies, independent per-image draws);
the simulations draw whole tables from a model with a known delta and a known between-seed SD.
"""
from __future__ import annotations

import numpy as np
import pytest

from harness import stats
from tests.harness.report_frames import make_frame

RAF = {"rafdb": "RAF-DB"}


def _cells(rows, *, seeds, synthetic=True, n_samples=3000, rng_seed=0):
    frame = make_frame("t", rows, baseline="base", datasets=RAF, seeds=seeds, synthetic=synthetic,
                       n_samples=n_samples, rng_seed=rng_seed)
    return stats.analyse(frame, n_boot=300, aso_iterations=0).cells.set_index("row")


@pytest.mark.parametrize("synthetic", [True, False])
def test_wildly_disagreeing_seeds_with_tiny_mcnemar_p_get_no_positive_verdict(synthetic):
    # The LANet / SUM on the RAF-DB stand-in: per-seed 65.5 / 46.3 / 38.7 vs 62.3 / 53.3 / 46.8.
    rows = [("base", {"rafdb": 91.98}, {"rafdb": [62.3, 53.3, 46.8]}),
            ("lanet", {"rafdb": 91.23}, {"rafdb": [65.5, 46.3, 38.7]})]
    c = _cells(rows, seeds=(0, 1, 2), synthetic=synthetic).loc["lanet"]
    assert c.mcnemar_p < 1e-3  # these trained models do differ on this test set...
    assert c.p_holm > 0.3  # ...but three runs say nothing about the training procedures
    assert c.verdict not in stats.POSITIVE_VERDICTS and c.marker == ""
    assert c.verdict == (stats.INCONCLUSIVE if synthetic else stats.NOT_REPRODUCED)
    assert c.diff_ci_low < 0 < c.diff_ci_high  # the seed-aware interval spans zero
    assert c.seeds_needed > 3


def test_consistent_seeds_with_a_real_effect_hold_their_direction():
    rows = [("base", {"rafdb": 91.0}, {"rafdb": [55.0, 55.3, 54.9, 55.2]}),
            ("better", {"rafdb": 92.0}, {"rafdb": [59.0, 59.4, 58.8, 59.1]})]
    c = _cells(rows, seeds=(0, 1, 2, 3), n_samples=20000).loc["better"]
    assert c.verdict == stats.DIRECTION_HOLDS and c.p_holm < 0.05 and c.marker
    assert 0 < c.diff_ci_low < c.our_delta < c.diff_ci_high


def test_underpowered_row_is_inconclusive_with_a_seed_count():
    rows = [("base", {"rafdb": 91.0}, {"rafdb": [55.0, 53.0, 57.0]}),
            ("noisy", {"rafdb": 91.5}, {"rafdb": [57.0, 50.0, 60.0]})]
    c = _cells(rows, seeds=(0, 1, 2)).loc["noisy"]
    assert c.p_holm > 0.05 and c.power < 0.8
    assert c.verdict == stats.INCONCLUSIVE
    assert c.power_target == pytest.approx(0.5) and c.power_target_source == "paper"
    assert c.seeds_needed == stats.seeds_needed(c.diff_sd, 0.5) and c.seeds_needed > 100
    assert c.verdict_note == f"≈ {int(c.seeds_needed)} seeds needed"
    assert c.mde > 0.5  # three seeds could only have detected a much larger effect


def test_wide_ci_real_data_cell_is_not_reproduced_but_a_tight_one_is():
    rows = [("base", {"rafdb": 91.0}, {"rafdb": [91.1, 90.9, 91.0, 91.1, 90.9]}),
            ("wide", {"rafdb": 91.0}, {"rafdb": [84.0, 97.0, 91.0, 88.0, 95.0]})]
    c = _cells(rows, seeds=tuple(range(5)), synthetic=False, n_samples=40000)
    wide, base = c.loc["wide"], c.loc["base"]
    assert wide.ci_low < 91.0 < wide.ci_high  # the old rule ("paper value inside our CI") said reproduced
    assert wide.tost_p > 0.05 and wide.verdict == stats.INCONCLUSIVE
    assert base.tost_p < 0.05 and base.verdict == stats.REPRODUCED
    # the same seeds on synthetic data are never "reproduced"
    s = _cells(rows, seeds=tuple(range(5)), synthetic=True, n_samples=40000).loc["base"]
    assert s.verdict == stats.NOT_COMPARABLE


# --- simulated tables ----------------------------------------------------------------------------


def _simulate(rng, n_seeds: int, n_img: int, seed_sd: float, delta: float, seed_z=None):
    """One table's row and baseline correctness [seeds, images] with a known delta (points).

    Images have a shared difficulty (the same for every seed, row and baseline) and a small
    row-specific effect; each run's accuracy is shifted by a seed effect of SD ``seed_sd`` points
    (or ``seed_sd * seed_z`` when fixed deviations are given). The true delta over seeds and images
    is ``delta`` (no clipping happens at these values).
    """
    hard = rng.uniform(-0.25, 0.25, n_img)
    row_img = rng.uniform(-0.05, 0.05, n_img)
    if seed_z is None:
        u_row, u_base = rng.normal(0, seed_sd / 100, (2, n_seeds))
    else:
        u_row, u_base = seed_sd / 100 * np.asarray(seed_z[0]), seed_sd / 100 * np.asarray(seed_z[1])
    p_row = 0.6 + delta / 100 + u_row[:, None] + hard + row_img
    p_base = 0.6 + u_base[:, None] + hard
    return rng.random((n_seeds, n_img)) < p_row, rng.random((n_seeds, n_img)) < p_base


@pytest.mark.parametrize("n_seeds", [3, 5])
def test_two_level_bootstrap_covers_the_true_delta_at_its_nominal_rate(n_seeds):
    rng = np.random.default_rng(12)
    delta, covered = 2.0, 0
    for _ in range(200):
        cr, cb = _simulate(rng, n_seeds, 300, seed_sd=2.0, delta=delta)
        ci = stats.two_level_bootstrap(cr, cb, n_boot=200, seed=int(rng.integers(2**31)))
        covered += ci.low <= delta <= ci.high
    assert covered / 200 >= 0.90


def test_ci_width_grows_with_between_seed_sd_while_mcnemar_p_does_not():
    rng = np.random.default_rng(5)
    z = ([1.0, 0.0, -1.0], [-1.0, 0.0, 1.0])  # fixed seed deviations: the mean delta stays 3 points
    widths, mcnemar_p = [], []
    for sd in (0.5, 3.0, 8.0):
        cr, cb = _simulate(rng, 3, 3000, seed_sd=sd, delta=3.0, seed_z=z)
        ci = stats.two_level_bootstrap(cr, cb, n_boot=300)
        widths.append(ci.high - ci.low)
        mcnemar_p.append(stats.mcnemar_pooled([np.ones(3000, int)] * 3, list(cr.astype(int)),
                                              list(cb.astype(int))).pvalue)
    assert widths[0] < widths[1] < widths[2] and widths[2] > 3 * widths[0]
    assert max(mcnemar_p) < 1e-3  # pooled McNemar is blind to the spread between runs
    assert ci.low < 0 < ci.high  # at SD 8 the seed-aware interval spans zero


def test_rebuilt_tab5_report_has_no_positive_verdict_without_seed_level_significance(tmp_path):
    from harness.report import build as report
    from harness.specs import load_spec
    from tests.harness.report_frames import frame_for_spec

    spec = load_spec("apvit_tab5")
    frame = frame_for_spec(spec, synthetic=True, n_samples=1500, rng_seed=3)
    a = stats.analyse(frame, n_boot=200, aso_iterations=0)
    report.build_report(frame, [spec], tmp_path, analysis=a)
    rows = a.cells[~a.cells.is_baseline]
    positive = rows.verdict.isin(stats.POSITIVE_VERDICTS)
    assert (rows.loc[positive, "p_holm"] < stats.ALPHA).all()
    assert not rows.loc[rows.p_holm >= stats.ALPHA, "verdict"].isin(stats.POSITIVE_VERDICTS).any()
    assert np.isfinite(rows.seeds_needed).all() and len(rows) == 10
    page = (tmp_path / "apvit_tab5.html").read_text()
    assert "seeds needed" in page or rows.verdict.ne(stats.INCONCLUSIVE).all()
    assert "What test-set selection would report" in page and "(+1.50)" in page  # make_frame's test gain
    assert "Seeds per cell" in page and "3 seeds (fixed count)" in page
    assert "inconclusive" in (tmp_path / "index.html").read_text()
