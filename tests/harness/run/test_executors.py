"""Executor pieces that need no training: dependency order, configuration, queue moves, scheduling."""
import os
import threading
from types import SimpleNamespace

import pytest

from harness.run.cells import Cell
from harness.errors import UserError
from harness.run.executors import ExecutorConfig, config_key, dependency_waves, longest_first, run_cells
from harness.store import Store
from harness.run.workqueue import WorkQueue


def _cell(seed: int, upstream=(), **model) -> Cell:
    return Cell(method="apvit", model=model, train={}, data={}, dataset="rafdb", protocol=None, scale="tiny",
                seed=seed, fingerprint="f", code_version="v", synthetic=True, data_root="/d", upstream=tuple(upstream))


def test_upstream_runs_first_and_once():
    pre = _cell(0)
    fine = [_cell(i, upstream=[pre.id]) for i in (1, 2, 3)]
    waves = dependency_waves([*fine, pre])
    assert [[c.id for c in w] for w in waves] == [[pre.id], [c.id for c in fine]]


def test_threads_do_not_oversubscribe(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    assert ExecutorConfig(max_parallel=2).cell_threads() == 4
    assert ExecutorConfig().parallel() == 8 and ExecutorConfig().cell_threads() == 1


def test_profile_and_bad_executor(tmp_path):
    prof = tmp_path / "p.yaml"
    prof.write_text("name: local\ntimeout_min: 5\nslurm_partition: gpu\n")
    cfg = ExecutorConfig.from_profile(str(prof), timeout_min=None, max_parallel=3)
    assert (cfg.timeout_min, cfg.slurm_partition, cfg.max_parallel) == (5, "gpu", 3)
    prof.write_text("partitoin: gpu\n")
    with pytest.raises(UserError, match="partitoin"):
        ExecutorConfig.from_profile(str(prof))
    with pytest.raises(UserError, match="unknown executor"):
        ExecutorConfig.from_profile(None, name="kubernetes")


def test_queue_items_are_taken_once_and_held_until_finished(tmp_path):
    q = WorkQueue(tmp_path)
    for i, cid in enumerate(["aaa", "bbb"]):
        q.put(i, {"id": cid})
    first, second = q.take(0), q.take(1)
    assert (q.cell_id(first), q.cell_id(second)) == ("aaa", "bbb") and q.take(0) is None
    assert q.held(0) == [first]
    q.finish(first)
    assert q.held(0) == [] and [q.cell_id(p) for p in q.done()] == ["aaa"]


def test_cells_run_one_seed_of_each_configuration_first_then_longest_first():
    rows = {r: [_cell(seed, **{"app.k": r}) for seed in range(3)] for r in (10, 20, 30)}
    plan = [c for r in (10, 20, 30) for c in rows[r]]  # a table's plan: row by row
    assert config_key(rows[10][0]) == config_key(rows[10][2]) != config_key(rows[20][0])
    first = longest_first(plan, {})
    assert first[:3] == [rows[10][0], rows[20][0], rows[30][0]] and first[3:6] == [rows[10][1], rows[20][1], rows[30][1]]
    timed = longest_first(plan, {config_key(rows[10][0]): 50.0, config_key(rows[30][0]): 300.0})
    assert timed == [rows[20][0], rows[20][1], rows[20][2], *rows[30], *rows[10]]  # untimed, then 300 s, 50 s


def test_queue_reorder_changes_which_item_is_taken_next(tmp_path):
    q = WorkQueue(tmp_path)
    for i, cid in enumerate(["aaa", "bbb", "ccc"]):
        q.put(i, {"id": cid})
    assert q.cell_id(q.take(0)) == "aaa"
    q.reorder(["aaa", "ccc", "bbb"])  # aaa is held already: skipped
    assert [q.cell_id(q.take(1)), q.cell_id(q.take(1))] == ["ccc", "bbb"] and q.take(1) is None


class _ThreadJob:
    """A submitit job stand-in that runs the queue worker in a thread of this process."""

    def __init__(self, fn, args) -> None:
        self.job_id, self.paths = str(os.getpid()), SimpleNamespace(stderr="-")
        self.thread = threading.Thread(target=fn, args=args)

    def done(self) -> bool:
        if self.thread.ident is None:  # started on the first poll: outside the driver's SIGINT-ignoring spawn
            self.thread.start()
        return not self.thread.is_alive()


def _schedule(tmp_path, monkeypatch, cells, run):
    """Run ``cells`` through the local executor's queue with 2 slots on 2 cores, training replaced by
    ``run(cell, threads)``; return the workers' (threads, max_cells) and the summary."""
    finished: set[str] = set()
    submits = []

    def submit(fn, queue_dir, results_dir, slot, threads, device, max_cells):
        submits.append((threads, max_cells))
        return _ThreadJob(fn, (queue_dir, results_dir, slot, threads, device, max_cells))

    def run_and_record(cell, store, threads, device):
        run(cell, threads)
        finished.add(cell.id)

    monkeypatch.setattr("os.cpu_count", lambda: 2)
    monkeypatch.setattr("harness.run.executors._make_executor", lambda cfg, store, *sizes: SimpleNamespace(submit=submit))
    monkeypatch.setattr("harness.run.workqueue.run_and_record", run_and_record)
    monkeypatch.setattr(Store, "record", lambda self, cid: {"timing": {"wall_s": 1.0}} if cid in finished else None)
    summary = run_cells(cells, Store(tmp_path), ExecutorConfig(name="local", max_parallel=2, poll_s=0.01))
    return submits, summary


def test_a_cell_starts_when_its_own_stage_ends_not_when_every_stage_has(tmp_path, monkeypatch):
    slow, fast = _cell(100, stage="slow"), _cell(101, stage="fast")
    after_fast, after_slow = _cell(1, upstream=[fast.id]), _cell(2, upstream=[slow.id])
    ran_during_slow = threading.Event()
    order = []

    def run(cell, threads):
        if cell.id == slow.id:  # the slow stage ends only once the fast stage's dependent has run
            ran_during_slow.wait(timeout=20)
        if cell.id == after_fast.id:
            ran_during_slow.set()
        order.append(cell.id)

    _, summary = _schedule(tmp_path, monkeypatch, [slow, fast, after_fast, after_slow], run)
    assert ran_during_slow.is_set()
    assert order.index(after_fast.id) < order.index(slow.id) < order.index(after_slow.id)
    assert sorted(summary.done) == sorted(c.id for c in (slow, fast, after_fast, after_slow))


def test_a_lone_stage_gets_every_core_and_its_worker_stops_after_it(tmp_path, monkeypatch):
    stage = _cell(100, stage="s")
    fine = [_cell(i, upstream=[stage.id]) for i in (1, 2, 3)]
    threads_of = {}
    submits, summary = _schedule(tmp_path, monkeypatch, [*fine, stage],
                                 lambda cell, threads: threads_of.setdefault(cell.id, threads))
    assert threads_of[stage.id] == 2 and all(threads_of[c.id] == 1 for c in fine)
    assert submits[0] == (2, 1) and set(submits[1:]) == {(1, 0)} and len(submits) == 3
    assert len(summary.done) == 4


def test_debug_executor_records_the_workers_error_without_a_debugger(tmp_path, monkeypatch):
    import pdb

    debugger, runs = [], []

    def dies(cell, store, threads, device):
        runs.append(cell.id)
        raise RuntimeError("worker died: boom")

    monkeypatch.delenv("FERBENCH_PDB", raising=False)
    monkeypatch.setattr(pdb, "post_mortem", lambda *a, **k: debugger.append(a))  # submitit's would wait on stdin
    monkeypatch.setattr("harness.run.workqueue.run_and_record", dies)
    cell, store = _cell(0), Store(tmp_path)
    summary = run_cells([cell], store, ExecutorConfig(name="debug"))
    fail = store.failure(cell.id)
    assert summary.failed == [cell.id] and (fail["error_type"], fail["message"]) == ("RuntimeError", "worker died: boom")
    assert debugger == [] and runs == [cell.id]  # no debugger, and the failed worker is not run again


def test_debug_executor_keeps_the_cells_own_error(tmp_path, monkeypatch):
    def train_cell(cell, store, threads=1, device="auto"):
        raise ValueError("the real cause")

    monkeypatch.setattr("harness.run.train.runner.train_cell", train_cell)
    cell, store = _cell(0), Store(tmp_path)
    run_cells([cell], store, ExecutorConfig(name="debug"))
    fail = store.failure(cell.id)
    assert (fail["error_type"], fail["message"]) == ("ValueError", "the real cause")  # not KeyError: SUBMITIT_FOLDER


def _foreign_claim(store, cell_id: str) -> None:
    import json

    store.cell_dir(cell_id).mkdir(parents=True, exist_ok=True)
    (store.cell_dir(cell_id) / "claim.json").write_text(json.dumps({"pid": 1, "host": "gone-host", "time": 0.0}))


def test_the_driver_says_what_it_waits_for(tmp_path, capsys):
    from harness.run.executors import _say_why_waiting
    from harness.store import Store

    store = Store(tmp_path)
    _foreign_claim(store, "c1")
    told: set = set()
    _say_why_waiting("c1", store, told)
    _say_why_waiting("c1", store, told)  # once, not every poll
    err = capsys.readouterr().err
    assert err.count("waiting for cell c1") == 1 and "gone-host" in err and "--break-stale-claims" in err


@pytest.mark.slow
def test_break_stale_claims_takes_over_another_hosts_claim(harness_env):
    from harness.cli import main
    from harness.run.plan import DataSource, plan_table
    from harness.specs import load_spec
    from harness.store import Store
    from tests.harness.conftest import write_spec

    write_spec(harness_env["tables"], "claimed", [{"label": "a", "set": {}}])
    (p,) = plan_table(load_spec("claimed"), source=DataSource())
    store = Store(harness_env["results"])
    _foreign_claim(store, p.cell.id)
    assert store.claim_state(p.cell.id)["state"] == "unverifiable"
    assert main(["reproduce", "--table", "claimed", "--executor", "debug", "--break-stale-claims"]) == 0
    assert store.record(p.cell.id) is not None


def test_a_stalled_worker_is_named(tmp_path, capsys):
    import json
    import time

    from harness.run.executors import _say_why_waiting
    from harness.store import Store

    store = Store(tmp_path)
    assert store.claim("c2", {"pid": os.getpid()})
    store.write_progress("c2", epoch=1, epochs=6)
    progress = json.loads((store.cell_dir("c2") / "progress.json").read_text())
    (store.cell_dir("c2") / "progress.json").write_text(json.dumps({**progress, "time": time.time() - 1800}))
    _say_why_waiting("c2", store, set())
    assert "no heartbeat for 30 min" in capsys.readouterr().err


def test_cells_per_gpu_places_that_many_cells_on_each_gpu(monkeypatch):
    monkeypatch.setattr("harness.run.executors.gpu_count", lambda spec: 2)
    assert ExecutorConfig(cells_per_gpu=2).parallel() == 4 and ExecutorConfig().parallel() == 2
    from harness.run.devices import worker_device

    monkeypatch.setattr("harness.run.devices.gpu_count", lambda spec: 2)
    assert [worker_device("cuda", slot) for slot in range(4)] == ["cuda:0", "cuda:1", "cuda:0", "cuda:1"]
    with pytest.raises(UserError, match="cells_per_gpu: 0"):
        ExecutorConfig.from_profile(None, cells_per_gpu=0)


def test_slurm_tasks_ask_for_cpus_and_memory_that_fit_the_data():
    from harness.run.executors import SLURM_GPU_CPUS, slurm_resources

    affectnet = 11 * 2**30  # the decoded AffectNet map at 112 px
    assert slurm_resources(ExecutorConfig(name="slurm"), 1, affectnet) == (SLURM_GPU_CPUS, 19.8)
    assert slurm_resources(ExecutorConfig(name="slurm"), 0, 0) == (1, 3.0)
    assert slurm_resources(ExecutorConfig(name="slurm", slurm_cpus_per_task=4, slurm_mem_gb=32), 1, affectnet) == (4, 32)


def test_datasets_are_decoded_once_before_the_fan_out(harness_env):
    from harness.run.plan import DataSource, plan_table, with_upstream
    from harness.run.prepare import decode_once
    from harness.specs import load_spec
    from tests.harness.conftest import write_spec

    write_spec(harness_env["tables"], "dec", [{"label": "a", "set": {}}], seeds=2)
    cells = with_upstream(plan_table(load_spec("dec"), source=DataSource()))
    before = set(harness_env["cache"].rglob("*.decoded-*")) | set(harness_env["cache"].rglob("*.npy"))
    size = decode_once(cells)
    after = set(harness_env["cache"].rglob("*.decoded-*")) | set(harness_env["cache"].rglob("*.npy"))
    assert size > 0 and len(after - before) <= 1 and after  # one dataset, one decode size: one file at most
    assert decode_once([_cell(0)]) == 0  # /d holds no dataset: left to the cell, which records the error
    assert decode_once([]) == 0
