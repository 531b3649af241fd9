"""Executor pieces that need no training: dependency order, configuration, queue moves."""
import pytest

from harness.cells import Cell
from harness.errors import UserError
from harness.executors import ExecutorConfig, config_key, dependency_waves, longest_first
from harness.workqueue import WorkQueue


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
