"""Executor pieces that need no training: dependency order, configuration, queue moves."""
import pytest

from harness.cells import Cell
from harness.errors import UserError
from harness.executors import ExecutorConfig, dependency_waves
from harness.workqueue import WorkQueue


def _cell(seed: int, upstream=()) -> Cell:
    return Cell(method="apvit", model={}, train={}, data={}, dataset="rafdb", protocol=None, scale="tiny",
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
