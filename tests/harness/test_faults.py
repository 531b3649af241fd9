"""The fault suite (issue 20): every fault and bad input ends in a clear error or a ledger entry.

Everything goes through the real CLI (``harness.cli.main`` in-process, or ``python -m harness``
in a subprocess where signals are involved) and the real local executor, on tiny synthetic
stand-ins (a cell trains in a few seconds). Trainings are counted from each cell's training log
(``history.jsonl``: one line per start and per finish), so "computed twice" is measurable.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from harness.cli import main
from harness.run.plan import DataSource, plan_table
from harness.specs import load_spec
from harness.store import Store, pid_alive
from tests.data.makers import make_rafdb
from tests.harness.conftest import write_spec

TINY = {"data.n_train": 120, "data.n_test": 50, "train.epochs": 2, "train.batch_size": 32}
ROWS3 = [{"label": "a", "set": {}}, {"label": "b", "set": {"head": "gap"}},
         {"label": "c", "set": {"app.criterion": "max"}}]


def _spec(env, table_id="ft", rows=None, **over) -> Path:
    rows = rows or [{"label": "a", "set": {}, "paper": {"rafdb": 90.0}}]
    write_spec(env["tables"], table_id, [{"label": rows[0].get("label", "x")}], base={**TINY, **over.pop("base", {})})
    path = env["tables"] / f"{table_id}.yaml"
    data = yaml.safe_load(path.read_text())
    data.update(rows=rows, **over)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _fabricate(env, table_id="ft") -> Store:
    """A store holding a valid result for every planned cell, without training (fake metrics)."""
    store = Store(env["results"])
    for i, p in enumerate(plan_table(load_spec(table_id), source=DataSource())):
        store.write_cell(p.cell.to_dict())
        y = np.arange(50) % 7
        pred = np.where(np.arange(50) % (3 + i) == 0, (y + 1) % 7, y)
        store.write_result(p.cell.id, {
            "cell": p.cell.to_dict(), "class_names": [f"c{k}" for k in range(7)], "provenance": {},
            "metrics": {"accuracy": float((y == pred).mean() * 100), "mean_class_accuracy": 50.0,
                        "per_class_accuracy": {}, "confusion": [[0] * 7] * 7, "val_accuracy": 50.0},
            "data": {"synthetic": True}, "cost": {"gflops": 0.1, "params_m": 1.0},
            "timing": {"train_s": 1.0, "eval_s": 0.1, "epochs": 2, "steps": 4, "final_train_loss": 1.0}},
            {"y_true": y.astype(np.int16), "y_pred": pred.astype(np.int16), "logits": np.zeros((50, 7), np.float32)})
    return store


def _cli(capsys, *argv) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def descendants(pid: int) -> list[int]:
    """Every descendant of ``pid``, from /proc (the driver's local workers and their children)."""
    parents: dict[int, list[int]] = {}
    for proc in Path("/proc").iterdir():
        try:
            parents.setdefault(int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1]), []).append(int(proc.name))
        except (OSError, ValueError, IndexError):
            continue
    out, todo = [], [pid]
    while todo:
        kids = parents.get(todo.pop(), [])
        out += kids
        todo += kids
    return out


def _trainings(store: Store) -> dict[str, list[dict]]:
    return {cid: store.history(cid) for cid in store.cell_ids()}


# ---- 1. driver signals ------------------------------------------------------------------------
def _start(env, *extra, new_session=False) -> subprocess.Popen:
    """``reproduce`` in a subprocess; its stderr goes to a file (``proc.log``), not a pipe that
    orphaned workers would hold open, so ``proc.wait()`` returns when the driver itself exits."""
    cmd = [sys.executable, "-m", "harness", "reproduce", "--table", "ft", "--max-parallel", "2", "--threads", "1",
           *extra]
    log = env["results"].parent / f"driver-{time.time_ns()}.log"
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=f, text=True, env=os.environ.copy(),
                                start_new_session=new_session)
    proc.log = log
    return proc


def _finish(proc: subprocess.Popen, timeout: float) -> str:
    proc.wait(timeout=timeout)
    return proc.log.read_text()


def _wait_mid_run(store: Store, proc: subprocess.Popen, timeout: float = 240) -> None:
    """Until one cell has a result and another is training (its first epoch checkpoint written)."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        ids = store.cell_ids()
        done = [c for c in ids if (store.cell_dir(c) / "record.json").exists()]
        training = [c for c in ids if c not in done and store.checkpoint_path(c).exists()]
        if done and training:
            return
        time.sleep(0.2)
    raise AssertionError(f"never mid-run (rc {proc.poll()})")


@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGTERM", "Ctrl-C"])
def test_signal_cancels_workers_and_rerun_trains_each_cell_once(harness_env, how):
    _spec(harness_env, rows=ROWS3, base={"train.epochs": 8})  # a few seconds per cell
    store = Store(harness_env["results"])
    proc = _start(harness_env, new_session=how == "Ctrl-C")
    _wait_mid_run(store, proc)
    tree = descendants(proc.pid)
    assert tree, "the local workers are child processes of the driver"
    if how == "SIGTERM":
        proc.send_signal(signal.SIGTERM)
    else:  # a terminal sends SIGINT to the whole foreground process group
        os.killpg(proc.pid, signal.SIGINT)
    err = _finish(proc, 60)
    assert proc.returncode == (143 if how == "SIGTERM" else 130), err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    (line,) = [l for l in err.splitlines() if "reproduce cancelled" in l]
    assert "stopped" in line and "resume with: python -m harness reproduce --table ft" in line
    time.sleep(3)
    assert not [p for p in tree if pid_alive(p)], "no orphan worker after a few seconds"
    t_rerun = time.time()  # an immediate re-run
    assert not list(store.root.glob("cells/*/claim.json")), "claims released"
    finished = {c for c in store.cell_ids() if store.record(c) is not None}
    assert finished, "the finished result is kept"
    kept = {c: (store.cell_dir(c) / "record.json").read_bytes() for c in finished}

    rerun = _start(harness_env)
    err2 = _finish(rerun, 400)
    assert rerun.returncode == 0, err2
    assert all(store.record(c) is not None for c in store.cell_ids()) and len(store.cell_ids()) == 3
    assert all((store.cell_dir(c) / "record.json").read_bytes() == b for c, b in kept.items())
    for cid, events in _trainings(store).items():
        assert sum(e["event"] == "finish" for e in events) == 1, (cid, events)  # no cell trained twice
        if cid in finished:
            assert not [e for e in events if e["event"] == "start" and e["time"] >= t_rerun]


@pytest.mark.slow
def test_killed_driver_keeps_claims_while_its_workers_live(harness_env):
    """SIGKILL leaves the workers running: a second run waits for them instead of training beside them."""
    _spec(harness_env, rows=ROWS3[:2], base={"train.epochs": 6})
    store = Store(harness_env["results"])
    proc = _start(harness_env)
    deadline = time.time() + 240
    while time.time() < deadline and not any(store.checkpoint_path(c).exists() for c in store.cell_ids()):
        time.sleep(0.2)
    workers = descendants(proc.pid)
    proc.kill()
    proc.wait()
    claims = {p.parent.name: json.loads(p.read_text()) for p in store.root.glob("cells/*/claim.json")}
    assert claims and all(c["workers"] for c in claims.values()), claims
    pending = [c for c in claims if store.record(c) is None]
    assert all(store.claim_alive(c) for c in pending), (claims, [w for w in workers if pid_alive(w)])
    second = _start(harness_env)
    err = _finish(second, 400)
    assert second.returncode == 0, err
    assert "0 done" in err, (err, {c: store.history(c) for c in claims})  # the orphans computed every cell
    for cid, events in _trainings(store).items():
        assert sum(e["event"] == "finish" for e in events) == 1, (cid, events)
        assert len({e["pid"] for e in events if e["event"] == "start"}) == 1, (cid, events)
    deadline = time.time() + 30
    while time.time() < deadline and any(pid_alive(p) for p in workers):
        time.sleep(0.5)


# ---- 2. one run configuration -----------------------------------------------------------------
@pytest.mark.slow
def test_status_collect_report_see_the_last_reproduce_configuration(harness_env, capsys, tmp_path):
    _spec(harness_env)
    rc, _, err = _cli(capsys, "reproduce", "--table", "ft", "--set", "train.epochs=1", "--max-parallel", "1")
    assert rc == 0 and "1 done" in err
    rc, out, _ = _cli(capsys, "status", "--table", "ft")
    assert rc == 0 and "ft: 1 ok" in out
    rc, out, _ = _cli(capsys, "collect", "--table", "ft")
    assert rc == 0 and "| ok " in out
    rc, out, _ = _cli(capsys, "report", "--table", "ft", "--out", str(tmp_path / "rep"))
    md = (tmp_path / "rep" / "tables" / "ft.md").read_text()
    assert rc == 0 and "missing" not in md
    rc, out, _ = _cli(capsys, "status", "--table", "ft", "--spec-only")  # the spec as written: not run
    assert rc == 0 and "ft: 1 missing" in out


@pytest.mark.parametrize("seeds", ["0", "-1", "two"])
def test_seed_count_must_be_positive(harness_env, capsys, seeds):
    _spec(harness_env)
    with pytest.raises(SystemExit) as exc:
        main(["reproduce", "--table", "ft", "--seeds", seeds, "--dry-run"])
    assert exc.value.code == 2 and "--seeds" in capsys.readouterr().err


# ---- 3. every value validated before anything runs --------------------------------------------
@pytest.mark.parametrize("item, needle", [
    ("train.lr=-1", "train.lr=-1: allowed: > 0"),
    ("train.epochs=-1", "train.epochs=-1: allowed: >= 0"),  # 0 is meaningful: evaluate only
    ("train.sampler=sqrtt", "allowed values: none, sqrt, heavy"),
    ("train.optimizer=adamx", "allowed values: sgd, adam, adamw"),
    ("train.augment=fancy", "allowed values: apvit"),
    ("train.batch_size=abc", "expected an integer"),
    ("data.occlusion=7", "data.occlusion=7: allowed: >= 0 and <= 1"),
    ("data.n_train=-5", "data.n_train=-5: allowed: >= 0"),
    ("data.label_noise=.nan", "expected a finite number"),
])
def test_bad_set_values_are_rejected_before_anything_runs(harness_env, capsys, item, needle):
    _spec(harness_env)
    cache_before = sorted(p.name for p in harness_env["cache"].rglob("*"))
    rc, _, err = _cli(capsys, "reproduce", "--table", "ft", "--set", item, "--dry-run")
    assert rc == 2 and "--set" in err and needle in err and "Traceback" not in err
    assert sorted(p.name for p in harness_env["cache"].rglob("*")) == cache_before


def test_bad_row_value_names_file_row_and_key(harness_env, capsys):
    path = _spec(harness_env, rows=[{"label": "a", "set": {}}, {"label": "neg lr", "set": {"train.lr": -1}}])
    rc, _, err = _cli(capsys, "reproduce", "--table", "ft", "--dry-run")
    assert rc == 2 and str(path) in err and "row 2 ('neg lr')" in err and "train.lr=-1: allowed: > 0" in err


def test_dry_run_never_writes_to_the_cache(harness_env, capsys, tmp_path):
    _spec(harness_env)
    cache = tmp_path / "fresh-cache"
    rc, out, _ = _cli(capsys, "reproduce", "--table", "ft", "--dry-run", "--cache-dir", str(cache))
    assert rc == 0 and len(out.split()[0]) == 16  # a cell id is printed
    assert not cache.exists() or not any(cache.rglob("*"))


# ---- 4. a store that survives garbage ---------------------------------------------------------
@pytest.mark.parametrize("name, garbage", [
    ("cell.json", "{not json"), ("cell.json", "[1, 2]"),
    ("record.json", '{"schema": 1}'), ("record.json", "[]"), ("record.json", '{"schema": 1, "cell_id": "x"'),
    ("failure.json", '{"attempts": "x"}'), ("failure.json", "\x00\x01"),
    ("progress.json", '{"epoch": "one"}'),
])
def test_malformed_store_file_is_moved_aside_never_a_crash(harness_env, capsys, tmp_path, name, garbage):
    _spec(harness_env)
    store = _fabricate(harness_env)
    (cid,) = store.cell_ids()
    if name == "progress.json":  # read for a cell that is being computed
        (store.cell_dir(cid) / "record.json").unlink()
        assert store.claim(cid, {"pid": os.getpid()})
    (store.cell_dir(cid) / name).write_text(garbage)
    for argv in (["status"], ["collect", "--table", "ft"], ["report", "--table", "ft", "--out", str(tmp_path / "r")]):
        rc, out, err = _cli(capsys, *argv)
        assert rc in (0, 2) and "Traceback" not in err, (argv, err)
    assert not (store.cell_dir(cid) / name).exists() or name == "cell.json"  # cell.json is rewritten when planned
    assert list(store.cell_dir(cid).glob(f"{name}.corrupt-*"))
    if name == "record.json":  # treated as missing, never "cached"
        rc, _, err = _cli(capsys, "reproduce", "--table", "ft", "--dry-run")
        assert store.record(cid) is None


@pytest.mark.slow
def test_garbage_record_recomputes_and_garbage_claim_does_not_hang(harness_env, capsys):
    _spec(harness_env)
    store = _fabricate(harness_env)
    (cid,) = store.cell_ids()
    (store.cell_dir(cid) / "record.json").write_text('{"schema": 1}')
    claim = store.cell_dir(cid) / "claim.json"
    claim.write_text("")  # a claim whose writer died between O_EXCL and its first byte
    os.utime(claim, (time.time() - 3600,) * 2)
    rc, _, err = _cli(capsys, "reproduce", "--table", "ft", "--max-parallel", "1")
    assert rc == 0 and "1 done, 0 cached" in err
    assert store.record(cid) is not None


@pytest.mark.slow
def test_corrupt_checkpoint_is_discarded_and_the_record_says_so(harness_env, capsys):
    _spec(harness_env)
    (p,) = plan_table(load_spec("ft"), source=DataSource())
    store = Store(harness_env["results"])
    store.checkpoint_path(p.cell.id).parent.mkdir(parents=True)
    store.checkpoint_path(p.cell.id).write_bytes(b"PK\x03\x04 truncated")
    rc, _, err = _cli(capsys, "reproduce", "--table", "ft", "--max-parallel", "1")
    assert rc == 0 and "1 done" in err
    rec = store.record(p.cell.id)
    (discarded,) = rec["checkpoints_discarded"]
    assert discarded["file"] == "checkpoint.pt" and "does not load" in discarded["reason"]
    assert rec["resumed_from_epoch"] is None  # restarted from scratch


@pytest.mark.parametrize("fault", ["not-writable", "full"])
def test_unwritable_or_full_store_is_one_clear_error_before_training(harness_env, capsys, monkeypatch, fault):
    _spec(harness_env)
    harness_env["results"].mkdir()
    if fault == "not-writable":  # (root ignores permissions: a file where the cells folder belongs)
        (harness_env["results"] / "cells").write_text("")
    else:
        monkeypatch.setattr("harness.store.MIN_FREE_BYTES", 2**62)
    rc, _, err = _cli(capsys, "reproduce", "--table", "ft")
    assert rc == 2 and "Traceback" not in err
    assert ("full disk" if fault == "full" else "cannot be created") in err
    assert not (harness_env["results"] / "logs").exists()  # nothing was submitted


# ---- 5. tables that cannot lie ----------------------------------------------------------------
@pytest.mark.parametrize("edit, needle", [
    (lambda t: t + "seeds: 2\n", "duplicate key 'seeds' at line"),
    (lambda t: t.replace("rafdb: 90.0", "rafdb: .nan"), "finite number or 'not reported'"),
    (lambda t: t.replace("rafdb: 90.0", "rafdb: .inf"), "finite number or 'not reported'"),
    (lambda t: t.replace("- key: rafdb\n  label: RAF-DB\n", "- key: rafdb\n  label: A\n- key: rafdb\n  label: B\n"),
     "duplicate dataset keys ['rafdb']"),
    (lambda t: t[:t.index("rows:")] + "rows: []\n", "at least one row"),
])
def test_spec_errors_name_file_and_line(harness_env, capsys, edit, needle):
    path = _spec(harness_env)
    path.write_text(edit(path.read_text()))
    rc, _, err = _cli(capsys, "reproduce", "--table", "ft", "--dry-run")
    assert rc == 2 and str(path) in err and needle in err and "line" in err


@pytest.mark.parametrize("template", ["{app_k.__class__}", "k={0}", "k={app_k!r}", "k={app_k:{app_k}}", "{nope}"])
def test_label_templates_are_named_fields_with_plain_specs(harness_env, capsys, template):
    _spec(harness_env, rows=[{"generate": {"zip": {"app.k": [160, 120]}, "label": template}}], baseline=None)
    rc, _, err = _cli(capsys, "reproduce", "--table", "ft", "--dry-run")
    assert rc == 2 and "label template" in err and "Traceback" not in err


def test_label_template_plain_spec_still_works(harness_env, capsys):
    _spec(harness_env, rows=[{"generate": {"zip": {"atp.r": [0.9, 0.6]}, "label": "r={atp_r:.2f}"}}], baseline=None)
    assert [r.label for r in load_spec("ft").rows] == ["r=0.90", "r=0.60"]


def test_report_escapes_latex_caption_and_markdown_labels(harness_env, capsys, tmp_path):
    label = "<img src=x onerror=alert(1)> | A_1"
    _spec(harness_env, rows=[{"label": label, "set": {}, "paper": {"rafdb": 90.0}}], caption="Accuracy (%) of A_B & C #1")
    _fabricate(harness_env)
    rc, _, err = _cli(capsys, "report", "--table", "ft", "--out", str(tmp_path / "rep"))
    assert rc == 0, err
    tex = (tmp_path / "rep" / "tables" / "ft.tex").read_text()
    assert r"\caption{Accuracy (\%) of A\_B \& C \#1}" in tex
    md = (tmp_path / "rep" / "tables" / "ft.md").read_text()
    assert "<img" not in md and r"\| A\_1" in md and len(md.splitlines()[2].split(" | ")) == 6


# ---- 6. data and paths ------------------------------------------------------------------------
def test_data_check_fails_on_an_empty_split(tmp_path, capsys):
    root = make_rafdb(tmp_path / "raf", lines=[(f"train_{i:05d}.jpg", 4 + i % 2) for i in range(1, 9)])
    rc, _, err = _cli(capsys, "data", "check", "rafdb", "--root", str(root))
    assert rc == 2 and "empty test split" in err


def test_data_check_fails_on_an_empty_list_file(tmp_path, capsys):
    root = make_rafdb(tmp_path / "raf")
    (root / "EmoLabel" / "list_patition_label.txt").write_text("")
    rc, _, err = _cli(capsys, "data", "check", "rafdb", "--root", str(root))
    assert rc == 2 and "empty" in err


def test_data_check_warns_on_duplicate_images(tmp_path, capsys):
    root = make_rafdb(tmp_path / "raf")
    with open(root / "EmoLabel" / "list_patition_label.txt", "a") as f:
        f.write("train_00001.jpg 3\n")
    rc, _, err = _cli(capsys, "data", "check", "rafdb", "--root", str(root))
    assert rc == 0 and "warning:" in err and "train_00001.jpg is listed again with a different label" in err


def test_list_file_with_bad_encoding_is_a_clear_error(tmp_path, capsys):
    root = make_rafdb(tmp_path / "raf")
    with open(root / "EmoLabel" / "list_patition_label.txt", "ab") as f:
        f.write(b"train_\xe9\xff.jpg 3\n")
    rc, _, err = _cli(capsys, "data", "check", "rafdb", "--root", str(root))
    assert rc == 2 and "list_patition_label.txt:13: not UTF-8 text" in err


@pytest.mark.parametrize("table_id", ["../elsewhere/x", "/abs/x", "ft.yaml"])
def test_table_ids_name_specs_in_the_tables_folder_only(harness_env, capsys, table_id):
    rc, _, err = _cli(capsys, "reproduce", "--table", table_id, "--dry-run")
    assert rc == 2 and "is not an id" in err


def test_output_paths_are_checked_before_work(harness_env, capsys, tmp_path):
    _spec(harness_env)
    _fabricate(harness_env)
    existing = tmp_path / "frame.csv"
    existing.write_text("precious")
    (tmp_path / "afile").write_text("x")
    cases = [(["report", "--table", "ft", "--out", str(tmp_path / "afile")], "is not a folder"),
             (["collect", "--table", "ft", "--out", str(tmp_path)], "is a folder"),
             (["collect", "--table", "ft", "--out", str(existing)], "exists; pass --force"),
             (["collect", "--table", "ft", "--out", str(tmp_path / "f.xlsx")], "unknown file type"),
             (["status", "--results", str(tmp_path / "nope")], "does not exist")]
    for argv, needle in cases:
        rc, _, err = _cli(capsys, *argv)
        assert rc == 2 and needle in err, (argv, err)
    assert existing.read_text() == "precious" and not (tmp_path / "nope").exists()
    rc, _, _ = _cli(capsys, "collect", "--table", "ft", "--out", str(existing), "--force")
    assert rc == 0 and existing.read_text().startswith("table_id")


def test_collect_csv_neutralises_spreadsheet_formulas(harness_env, capsys, tmp_path):
    _spec(harness_env, rows=[{"label": "=HYPERLINK(\"http://x\",\"y\")", "set": {}, "paper": {"rafdb": 90.0}}])
    _fabricate(harness_env)
    out = tmp_path / "frame.csv"
    rc, _, err = _cli(capsys, "collect", "--table", "ft", "--out", str(out))
    assert rc == 0, err
    back = pd.read_csv(out)
    assert back["row"].tolist() == ["'=HYPERLINK(\"http://x\",\"y\")"] and back["table_id"].tolist() == ["ft"]
    assert back["seed"].tolist() == [0] and back["paper_value"].tolist() == [90.0]  # numbers stay numbers


# ---- 7. errors keep their cause -----------------------------------------------------------------
def test_eval_prints_the_real_error_and_never_waits_on_a_debugger(harness_env, tmp_path):
    import timm
    import torch

    bad = tmp_path / "bad.pth"
    state = timm.create_model("apvit", preset="tiny").state_dict()
    state["blocks.0.attn.qkv_renamed.weight"] = state.pop("blocks.0.attn.qkv.weight")
    torch.save(state, bad)
    cmd = [sys.executable, "-m", "harness", "eval", "apvit", "--checkpoint", str(bad), "--dataset", "rafdb",
           "--scale", "tiny", "--set", "data.n_train=64", "--set", "data.n_test=32", "--set", "weights.ir50=none",
           "--set", "weights.vit=none", "--threads", "1"]
    with open(tmp_path / "out.log", "w") as out, open(tmp_path / "err.log", "w") as err:
        # stdin open and empty: a debugger waiting on it would never return
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=out, stderr=err, env=os.environ.copy())
        try:
            rc = proc.wait(timeout=240)
        finally:
            proc.kill()
            proc.stdin.close()
    printed = (tmp_path / "err.log").read_text()
    failed = printed[printed.index("eval failed: "):]
    assert rc == 1 and "(Pdb)" not in (tmp_path / "out.log").read_text()
    assert "KeyError" not in failed and "unexpected key blocks.0.attn.qkv_renamed.weight" in failed
    (entry,) = Store(harness_env["results"]).ledger()
    assert "missing key blocks.0.attn.qkv.weight" in entry["message"] and entry["error_type"] != "KeyError"
