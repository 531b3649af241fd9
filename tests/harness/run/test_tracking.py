"""Run tracking: a real tiny cell's curves read back from its TensorBoard event files, the report's
links to them, training without tensorboard, and ``--mlflow``."""
from __future__ import annotations

import importlib.util
import logging
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from harness.cli import main
from harness.report.build import build_report
from harness.report.collect import collect_tables
from harness.run import tracking
from harness.run.cells import Cell
from harness.run.plan import DataSource, plan_table
from harness.run.tracking import events_dir
from harness.specs import load_spec
from harness.store import Store
from tests.harness.conftest import write_spec

HAS_MLFLOW = importlib.util.find_spec("mlflow") is not None
TABLE = "trk_tab"


def _scalars(folder: Path) -> EventAccumulator:
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})  # 0: keep every event
    acc.Reload()
    return acc


def _series(acc: EventAccumulator, tag: str) -> tuple[list[int], list[float]]:
    events = acc.Scalars(tag)
    return [e.step for e in events], [e.value for e in events]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, synth_cache):
    """One tiny cell trained through the real local executor (worker processes), shared by the tests."""
    root = tmp_path_factory.mktemp("tracking")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FERBENCH_TABLES", str(root / "tables"))
        mp.setenv("FERBENCH_CACHE", str(synth_cache))
        mp.setenv("FERBENCH_RESULTS", str(root / "results"))
        for name in ("FERBENCH_DATA_ROOT", "FERBENCH_INJECT_FAULT", tracking.MLFLOW_ENV):
            mp.delenv(name, raising=False)
        write_spec(root / "tables", TABLE, [{"label": "apvit", "set": {}}])
        assert main(["reproduce", "--table", TABLE, "--executor", "local", "--threads", "1"]) == 0
        store = Store(root / "results")
        (cid,) = store.cell_ids()
        yield {"root": root, "results": root / "results", "store": store, "cell_id": cid,
               "record": store.record(cid)}


@pytest.mark.slow
def test_a_cell_writes_every_curve_as_tensorboard_events(trained):
    store, cid, rec = trained["store"], trained["cell_id"], trained["record"]
    hist, epochs = rec["timing"]["history"], rec["timing"]["epochs"]
    assert epochs == len(hist) == 3
    acc = _scalars(events_dir(store, cid))
    tags = set(acc.Tags()["scalars"])
    every_epoch = list(range(epochs))

    for term in hist[0]["losses"]:  # every named loss term, as the history aggregates it
        steps, values = _series(acc, f"loss/{term}")
        assert steps == every_epoch
        assert values == pytest.approx([h["losses"][term] for h in hist], rel=1e-6)
    steps, val = _series(acc, "accuracy/val")
    assert steps == every_epoch and val == pytest.approx([h["val_accuracy"] for h in hist], rel=1e-6)
    steps, test = _series(acc, "accuracy/test")
    assert steps == every_epoch and test == pytest.approx([h["test_accuracy"] for h in hist], rel=1e-6)
    assert test[-1] == pytest.approx(hist[-1]["test_accuracy"], rel=1e-6)
    assert max(test) == pytest.approx(rec["metrics"]["test_selected_accuracy"], rel=1e-6)

    lrs = sorted(t for t in tags if t.startswith("lr/"))
    assert lrs and all(t.startswith("lr/main/") for t in lrs)  # apvit: one optimiser, its parameter groups
    for tag in lrs:
        steps, values = _series(acc, tag)
        assert steps == every_epoch and all(v >= 0 for v in values)
    steps, speed = _series(acc, "throughput/train_images_per_s")
    assert steps == every_epoch and all(v > 0 for v in speed)
    assert _series(acc, "final/test_accuracy")[1] == pytest.approx([rec["metrics"]["accuracy"]], rel=1e-6)

    # tracking is not part of the cell: planning the same table again gives the same id
    (planned,) = plan_table(load_spec(TABLE), source=DataSource())
    assert planned.cell.id == cid == rec["cell"]["id"] == Cell.from_dict(rec["cell"]).id


@pytest.mark.slow
def test_the_report_links_each_cells_event_folder(trained, tmp_path):
    folder = str(events_dir(trained["store"], trained["cell_id"]).resolve())
    frame = collect_tables([TABLE], trained["results"])
    assert frame["tensorboard"].tolist() == [folder]
    build_report(frame, [load_spec(TABLE)], tmp_path / "report", comparison=False)
    html = (tmp_path / "report" / f"{TABLE}.html").read_text()
    assert f'href="{Path(folder).as_uri()}"' in html
    assert f"tensorboard --logdir {folder}" in html and trained["cell_id"] in html


@pytest.mark.slow
def test_without_tensorboard_the_cell_trains_the_same_and_says_so_once(trained, tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # its import now raises ImportError
    monkeypatch.setattr(tracking, "_warned", set())
    results = tmp_path / "untracked"
    with caplog.at_level(logging.WARNING, logger="ferbench.tracking"):
        assert main(["reproduce", "--table", TABLE, "--executor", "debug", "--threads", "1",
                     "--results", str(results)]) == 0
    store, cid = Store(results), trained["cell_id"]
    assert store.cell_ids() == [cid] and not events_dir(store, cid).exists()
    said = [r for r in caplog.records if "no TensorBoard event files" in r.getMessage()]
    assert len(said) == 1 and "tensorboard is not installed" in said[0].getMessage()
    # the tracked run (local worker) and this one predict the same, bit for bit
    tracked, untracked = trained["store"].predictions(cid), store.predictions(cid)
    assert np.array_equal(tracked["logits"], untracked["logits"])
    assert store.record(cid)["timing"]["history"] == trained["record"]["timing"]["history"]


def _cell() -> Cell:
    return Cell(method="apvit", model={}, train={"epochs": 4}, data={}, dataset="rafdb", protocol=None,
                scale="tiny", seed=0, fingerprint="f", code_version="v", synthetic=True, data_root="/d")


def test_a_resumed_cell_supersedes_the_epochs_it_trains_again(tmp_path):
    store, cell = Store(tmp_path / "results"), _cell()
    first = tracking.open_run(cell, store, first_epoch=0)
    for epoch in range(3):
        first.log(epoch, {"accuracy/val": 10.0 + epoch})
    first.close("KILLED")  # the attempt was preempted after epoch 2, checkpointed after epoch 1
    again = tracking.open_run(cell, store, first_epoch=2)
    for epoch in range(2, 4):
        again.log(epoch, {"accuracy/val": 20.0 + epoch})
    again.close()
    assert _series(_scalars(events_dir(store, cell.id)), "accuracy/val") == ([0, 1, 2, 3], [10.0, 11.0, 22.0, 23.0])


def test_a_failing_tracker_is_dropped_with_one_warning(tmp_path, monkeypatch, caplog):
    class Broken:
        name = "broken"

        def log(self, step, scalars):
            raise OSError(28, "No space left on device")

        def close(self, status):
            pass

    monkeypatch.setattr(tracking, "_warned", set())
    tracker = tracking.Tracker([Broken()])
    with caplog.at_level(logging.WARNING, logger="ferbench.tracking"):
        tracker.log(0, {"accuracy/val": 1.0})
        tracker.log(1, {"accuracy/val": 2.0})
    assert tracker.active == [] and len(caplog.records) == 1 and "training goes on" in caplog.text


@pytest.mark.skipif(HAS_MLFLOW, reason="mlflow is installed")
def test_mlflow_flag_without_mlflow_is_a_clean_error(harness_env, capsys):
    write_spec(harness_env["tables"], "mlf_tab", [{"label": "apvit", "set": {}}])
    assert main(["reproduce", "--table", "mlf_tab", "--mlflow", (harness_env["results"] / "mlruns").as_uri()]) == 2
    err = capsys.readouterr().err
    assert "--mlflow needs mlflow: pip install" in err and "Traceback" not in err
    assert not harness_env["results"].exists()  # refused before anything was planned or written


@pytest.mark.slow
@pytest.mark.skipif(not HAS_MLFLOW, reason="needs mlflow (pip install 'ferbench[tracking]')")
def test_mlflow_gets_one_run_per_cell_with_its_configuration(harness_env, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # a folder store, so the test needs no server
    write_spec(harness_env["tables"], "mlf_tab", [{"label": "apvit", "set": {}}])
    uri = (tmp_path / "mlruns").as_uri()
    assert main(["reproduce", "--table", "mlf_tab", "--executor", "debug", "--mlflow", uri]) == 0
    assert tracking.MLFLOW_ENV not in os.environ  # set for the workers only
    store = Store(harness_env["results"])
    (cid,) = store.cell_ids()
    rec = store.record(cid)
    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name(tracking.MLFLOW_EXPERIMENT).experiment_id])
    assert run.info.status == "FINISHED" and run.data.tags[tracking.MLFLOW_CELL_TAG] == cid
    params = run.data.params
    assert params["cell_id"] == cid and params["method"] == "apvit" and params["train.epochs"] == "3"
    assert params["code_version"] == rec["cell"]["code_version"]
    val = client.get_metric_history(run.info.run_id, "accuracy/val")
    assert [m.step for m in sorted(val, key=lambda m: m.step)] == list(range(rec["timing"]["epochs"]))
    assert run.data.metrics["final/test_accuracy"] == pytest.approx(rec["metrics"]["accuracy"])
