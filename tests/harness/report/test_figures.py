"""Figures: each builds from hand-made frames, saves SVG + PNG, and says None when empty."""
from __future__ import annotations

import time

import pandas as pd
import pytest

from harness import stats

from harness.report import figures
from harness.specs import load_spec
from tests.harness.report_frames import frame_for_spec


@pytest.fixture(scope="module")
def fig5():
    spec = load_spec("apvit_fig5")
    frame = frame_for_spec(spec, seeds=(0, 1), n_samples=100)
    return frame, stats.analyse(frame, n_boot=50)


def _saved(fig, tmp_path, name):
    assert fig is not None
    paths = figures.save(fig, tmp_path, name)
    for p in paths.values():
        assert p.is_file() and p.stat().st_size > 1000
    assert paths["svg"].read_text().lstrip().startswith("<?xml")
    return paths


def test_delta_and_confusion(fig5, tmp_path):
    frame, a = fig5
    _saved(figures.delta_figure(a.cells, "apvit_fig5"), tmp_path, "delta")
    _saved(figures.confusion_figure(frame, "apvit_fig5", "k=160, r=0.9"), tmp_path, "confusion")


def test_heatmap_has_the_grid(fig5, tmp_path):
    _, a = fig5
    fig = figures.heatmap_figure(a.cells, "apvit_fig5", "atp.r", "app.k")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["196", "160", "120", "80", "40"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1.0", "0.9", "0.8", "0.7", "0.6"]
    texts = [t.get_text() for t in ax.texts]
    assert any("[66.94]" in t for t in texts) and any("[66.48]" in t for t in texts)
    _saved(fig, tmp_path, "heatmap")


def test_cost_figure_shows_paper_and_ours(tmp_path):
    spec = load_spec("apvit_tab13")
    a = stats.analyse(frame_for_spec(spec), n_boot=50)
    fig = figures.cost_figure(a.cells, "apvit_tab13")
    labels = {t.get_text() for t in fig.axes[0].texts}
    assert {"TransFER", "MViT", "APViT (10, 0.6)"} <= labels
    _saved(fig, tmp_path, "cost")


def test_latency_figure_from_a_benchmark_frame(tmp_path):
    bench = pd.DataFrame({"name": ["apvit", "apvit_baseline", "apvit_deit_tiny"], "machine": ["cpu", "cpu", "h100"],
                          "median_ms": [40.0, 51.0, 3.2], "iqr_ms": [1.0, 2.0, 0.1], "rounds": [10, 10, 50],
                          "batch": [1, 1, 1], "gflops": [12.67, 15.3, 0.96]})
    fig = figures.latency_figure(bench)
    assert fig.axes[0].get_legend().get_title().get_text() == "machine"
    _saved(fig, tmp_path, "latency")
    assert figures.latency_figure(bench.iloc[0:0]) is None
    assert figures.latency_figure(bench.drop(columns="gflops")) is None


def test_empty_inputs_give_none(fig5):
    frame, a = fig5
    assert figures.delta_figure(a.cells, "nope") is None
    assert figures.cost_figure(a.cells.iloc[0:0], "apvit_fig5") is None
    assert figures.heatmap_figure(a.cells, "apvit_fig5", "x.missing", "app.k") is None
    assert figures.confusion_figure(frame, "apvit_fig5", "no such row") is None


def test_figures_are_quick(fig5, tmp_path):
    _, a = fig5
    t = time.perf_counter()
    figures.save(figures.delta_figure(a.cells, "apvit_fig5"), tmp_path, "d")
    assert time.perf_counter() - t < 10


def test_pareto_figure_panels_and_front(tmp_path):
    import numpy as np

    comp = pd.DataFrame({
        "method": ["A", "B", "C"], "dataset_label": ["D1"] * 3, "mean": [80.0, 85.0, 82.0],
        "ci_low": [79.0, 84.0, 81.0], "ci_high": [81.0, 86.0, 83.0], "paper_value": [88.0, 90.0, np.nan],
        "gflops": [1.0, 3.0, 4.0], "paper_gflops": [12.0, 15.0, np.nan], "synthetic": [True] * 3,
        "latency_b1_ms": [100.0, 200.0, np.nan]})
    # C costs more than B and is less accurate: off the front.
    assert list(figures._pareto_front(comp["gflops"].to_numpy(), comp["mean"].to_numpy())) == [0, 1]
    fig = figures.pareto_figure(comp)
    assert len([a for a in fig.axes if a.get_visible()]) == 2 and fig.axes[0].get_xscale() == "log"
    assert "synthetic" in fig._suptitle.get_text()
    _saved(fig, tmp_path, "pareto")
    no_latency = figures.pareto_figure(comp.assign(latency_b1_ms=np.nan))
    assert len(no_latency.axes) == 1
    assert figures.pareto_figure(comp.iloc[0:0]) is None


def test_training_curves_show_every_named_term(tmp_path):
    from tests.harness.report_frames import make_frame

    frame = make_frame(seeds=(0, 1))
    frame["history"] = [[{"epoch": e, "losses": {"ce": 2.0 - e / 4 + s / 10, "adv": 0.5 + s / 10},
                          "val_accuracy": 40.0 + 5 * e} for e in range(3)] for s in frame["seed"]]
    fig = figures.training_curves_figure(frame, "apvit_tab5")
    _saved(fig, tmp_path, "training")
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[:3] == ["RAF-DB: loss: adv", "RAF-DB: loss: ce", "RAF-DB: val accuracy (%)"]
    assert len(titles) == 6  # 2 datasets x (2 terms + val accuracy)
    ce = fig.axes[1].get_lines()[0].get_ydata()
    assert list(ce) == pytest.approx([2.05, 1.80, 1.55])  # mean over the two seeds, per epoch
    one_epoch = frame.assign(history=[[{"epoch": 0, "losses": {"loss": 1.0}, "val_accuracy": 50}]] * len(frame))
    assert figures.training_curves_figure(one_epoch, "apvit_tab5") is None
