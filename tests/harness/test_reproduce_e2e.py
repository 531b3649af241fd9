"""End to end: real (tiny) tables through the real local executor, with faults."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from harness.cli import main
from harness.run.plan import DataSource, plan_table
from harness.specs import load_spec
from harness.store import Store
from tests.harness.conftest import write_spec

pytestmark = pytest.mark.slow


def _cells_by_row(table_id: str) -> dict[str, str]:
    return {p.row: p.cell.id for p in plan_table(load_spec(table_id), source=DataSource())}


def test_reproduce_runs_missing_cells_then_caches(harness_env, capsys):
    write_spec(harness_env["tables"], "e2e_tab", [{"label": "base", "set": {"app.k": 196, "atp.r": 1.0}},
                                                  {"label": "apvit", "set": {}}], seeds=2)
    assert main(["reproduce", "--table", "e2e_tab", "--executor", "local"]) == 0
    err = capsys.readouterr().err
    assert "4 done, 0 cached, 0 failed" in err and "SYNTHETIC" in err
    store = Store(harness_env["results"])
    records = [store.record(cid) for cid in store.cell_ids()]
    assert len(records) == 4 and all(r is not None for r in records)
    rec = records[0]
    assert rec["data"]["synthetic"] is True and rec["metrics"]["selection"] == "val"
    assert rec["provenance"]["git_commit"] and rec["cost"]["gflops"] > 0
    assert len(rec["metrics"]["confusion"]) == 7 and rec["timing"]["steps"] > 0

    t0 = time.time()
    assert main(["reproduce", "--table", "e2e_tab"]) == 0
    assert "0 done, 4 cached, 0 failed" in capsys.readouterr().err
    assert time.time() - t0 < 15

    assert main(["collect", "--table", "e2e_tab"]) == 0
    out = capsys.readouterr().out
    assert "synthetic stand-in" in out and out.count("| ok ") == 4


def test_same_cell_is_bit_reproducible(harness_env, tmp_path):
    write_spec(harness_env["tables"], "det_tab", [{"label": "apvit", "set": {}}])
    preds = []
    for store_dir in (tmp_path / "a", tmp_path / "b"):
        assert main(["reproduce", "--table", "det_tab", "--executor", "debug", "--results", str(store_dir)]) == 0
        store = Store(store_dir)
        (cid,) = store.cell_ids()
        preds.append(store.predictions(cid))
    assert np.array_equal(preds[0]["logits"], preds[1]["logits"])
    assert np.array_equal(preds[0]["y_pred"], preds[1]["y_pred"])


def test_faults_are_ledgered_and_retry_failed_reruns_only_them(harness_env, monkeypatch, capsys):
    rows = [{"label": "ok", "set": {}},
            {"label": "raises", "set": {"head": "gap"}},
            {"label": "killed", "set": {"app.criterion": "max"}},
            {"label": "nan", "set": {"train.lr": 1.0e+30}},
            {"label": "preempted", "set": {"atp.criterion": "max"}}]
    write_spec(harness_env["tables"], "fault_tab", rows)
    ids = _cells_by_row("fault_tab")
    monkeypatch.setenv("FERBENCH_INJECT_FAULT", f"{ids['raises']}=raise,{ids['killed']}=kill,"
                                                f"{ids['preempted']}=preempt")
    assert main(["reproduce", "--table", "fault_tab", "--max-parallel", "2"]) == 1
    assert "2 done, 0 cached, 3 failed" in capsys.readouterr().err
    store = Store(harness_env["results"])
    ledger = {f["cell_id"]: f for f in store.ledger()}
    assert set(ledger) == {ids["raises"], ids["killed"], ids["nan"]}
    assert ledger[ids["raises"]]["error_type"] == "InjectedFault"
    assert "InjectedFault" in ledger[ids["raises"]]["traceback_tail"]
    assert ledger[ids["nan"]]["error_type"] == "NonFiniteLoss" and "loss is" in ledger[ids["nan"]]["message"]
    assert ledger[ids["killed"]]["error_type"] in {"Killed", "UncompletedJobError"}
    assert all(os.path.exists(f["log_path"]) for f in ledger.values())
    for row in ("raises", "killed", "nan"):
        assert store.record(ids[row]) is None
    resumed = store.record(ids["preempted"])
    assert resumed["resumed_from_epoch"] == 1  # preempted at epoch 1, requeued, resumed from its checkpoint
    assert store.record(ids["ok"])["resumed_from_epoch"] is None

    assert main(["status", "--table", "fault_tab"]) == 0
    out = capsys.readouterr().out
    assert "failure ledger" in out and "InjectedFault" in out and "NonFiniteLoss" in out

    # Without --retry-failed nothing runs; with it, only the three failed cells do.
    assert main(["reproduce", "--table", "fault_tab"]) == 0
    assert "0 done, 2 cached, 0 failed, 3 failed earlier" in capsys.readouterr().err
    monkeypatch.delenv("FERBENCH_INJECT_FAULT")
    assert main(["reproduce", "--table", "fault_tab", "--retry-failed"]) == 1
    assert "2 done, 2 cached, 1 failed" in capsys.readouterr().err
    assert store.failure(ids["nan"])["attempts"] == 2

    # A truncated record is detected and only its cell runs again.
    path = store.cell_dir(ids["ok"]) / "record.json"
    path.write_text(path.read_text()[: len(path.read_text()) // 2])
    assert main(["reproduce", "--table", "fault_tab"]) == 0
    assert "1 done, 3 cached, 0 failed, 1 failed earlier" in capsys.readouterr().err
    assert store.record(ids["ok"]) is not None and store.corrupt_files(ids["ok"])


def test_concurrent_invocations_compute_each_cell_once(harness_env):
    write_spec(harness_env["tables"], "conc_tab", [{"label": "a", "set": {}}, {"label": "b", "set": {"head": "gap"}}],
               seeds=2)
    cmd = [sys.executable, "-m", "harness", "reproduce", "--table", "conc_tab", "--max-parallel", "1", "--threads", "1"]
    procs = [subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=os.environ.copy()) for _ in range(2)]
    outs = [p.communicate(timeout=600)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    done = [int(o.split(" done,")[0].rsplit(" ", 1)[-1]) for o in outs]
    assert sum(done) == 4, outs  # every cell trained exactly once across both invocations
    store = Store(harness_env["results"])
    assert all(store.record(c) is not None for c in store.cell_ids())
    assert not list(store.root.glob("cells/*/claim.json"))


@pytest.mark.parametrize("argv, needle", [
    (["reproduce", "--table", "apvit_tab55"], "Did you mean apvit_tab5"),
    (["reproduce", "--table", "apvit_tab5", "--set", "app.kay=3"], "app.kay"),
    (["reproduce", "--table", "apvit_tab5", "--set", "atp.r=2"], "atp.r"),
    (["reproduce", "--table", "apvit_tab5", "--data-root", "/nonexistent/fer"], "/nonexistent/fer"),
    (["reproduce", "--table", "apvit_tab5", "--executor", "slurmm"], "unknown executor 'slurmm'"),
])
def test_bad_input_is_rejected_before_submission(argv, needle, capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("FERBENCH_TABLES", raising=False)
    assert main([*argv, "--results", str(tmp_path / "r"), "--dry-run"]) == 2
    assert needle in capsys.readouterr().err
    assert not (tmp_path / "r" / "cells").exists() or not any((tmp_path / "r" / "cells").iterdir())


def test_slurm_without_sbatch_is_rejected(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert main(["reproduce", "--table", "apvit_tab5", "--executor", "slurm", "--results", str(tmp_path)]) == 2
    assert "sbatch" in capsys.readouterr().err


def test_detach_returns_at_once_and_status_follows(harness_env, capsys):
    write_spec(harness_env["tables"], "detach_tab", [{"label": "a", "set": {}}])
    t0 = time.time()
    assert main(["reproduce", "--table", "detach_tab", "--detach"]) == 0
    assert time.time() - t0 < 20 and "detached" in capsys.readouterr().out
    store = Store(harness_env["results"])
    deadline = time.time() + 300
    while time.time() < deadline and not any(store.record(c) for c in store.cell_ids()):
        time.sleep(2)
    assert main(["status", "--table", "detach_tab", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["counts"]["detach_tab"] == {"ok": 1}


def test_a_cell_left_by_a_cancelled_invocation_is_run_not_abandoned(harness_env):
    from harness.run.executors import ExecutorConfig, run_cells

    write_spec(harness_env["tables"], "adopt_tab", [{"label": "a", "set": {}}])
    (planned,) = plan_table(load_spec("adopt_tab"), source=DataSource())
    store = Store(harness_env["results"])
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(4)"])  # "another invocation"
    assert store.claim(planned.cell.id, {"pid": other.pid})
    summary = run_cells([planned.cell], store, ExecutorConfig(name="debug", poll_s=0.2))
    other.wait()
    # It waited while the other invocation lived, then, finding neither a result nor a failure
    # (the other was cancelled), claimed the cell and trained it itself.
    assert summary.done == [planned.cell.id] and not summary.failed
    assert store.record(planned.cell.id) is not None and store.failure(planned.cell.id) is None
