"""The results store: atomic records, corruption detection, claims, the failure ledger."""
import json
import os
import subprocess
import sys

import numpy as np

from harness.store import Store


def _arrays():
    return {"y_true": np.array([0, 1, 2]), "y_pred": np.array([0, 1, 1])}


def _record(cell_id: str = "c1", accuracy: float = 66.7) -> dict:
    """A record with every field the store's readers need (as the runner writes it)."""
    cell = {"id": cell_id, "method": "apvit", "model": {}, "train": {}, "data": {}, "dataset": "rafdb",
            "protocol": None, "scale": "tiny", "seed": 0, "code_version": "v", "synthetic": True, "fingerprint": "f"}
    return {"cell": cell, "metrics": {"accuracy": accuracy, "mean_class_accuracy": accuracy, "per_class_accuracy": {},
                                      "confusion": []},
            "class_names": ["a"], "data": {"synthetic": True}, "provenance": {},
            "timing": {"train_s": 1.0, "eval_s": 0.1, "epochs": 1, "steps": 2, "final_train_loss": 0.5}}


def test_record_roundtrip_and_cleanup(tmp_path):
    s = Store(tmp_path)
    s.checkpoint_path("c1").parent.mkdir(parents=True)
    s.checkpoint_path("c1").write_bytes(b"state")
    s.record_failure("c1", error_type="X", message="m", traceback_tail="t", log_path=None)
    s.write_result("c1", _record(), _arrays())
    rec = s.record("c1")
    assert rec["metrics"]["accuracy"] == 66.7 and rec["cell_id"] == "c1"
    assert np.array_equal(s.predictions("c1")["y_pred"], [0, 1, 1])
    assert not s.checkpoint_path("c1").exists() and s.failure("c1") is None
    assert not list(tmp_path.rglob("*.tmp"))


def test_truncated_record_is_detected_and_moved_aside(tmp_path):
    s = Store(tmp_path)
    s.write_result("c1", _record(), _arrays())
    path = s.cell_dir("c1") / "record.json"
    path.write_text(path.read_text()[:20])
    assert s.record("c1") is None
    assert not path.exists() and len(s.corrupt_files("c1")) == 1


def test_predictions_checksum_mismatch_invalidates(tmp_path):
    s = Store(tmp_path)
    s.write_result("c1", _record(), _arrays())
    (s.cell_dir("c1") / "predictions.npz").write_bytes(b"garbage")
    assert s.record("c1") is None


def test_claims_are_exclusive_and_dead_claims_are_broken(tmp_path):
    s = Store(tmp_path)
    assert s.claim("c1", {"pid": os.getpid()})
    assert not s.claim("c1", {"pid": os.getpid()})  # held by a live process
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    s.release("c1")
    assert s.claim("c1", {"pid": int(dead.stdout)})  # the owner has exited
    assert not s.claim_alive("c1")
    assert s.claim("c1", {"pid": os.getpid()})
    assert json.loads((s.cell_dir("c1") / "claim.json").read_text())["pid"] == os.getpid()


def test_ledger_counts_attempts(tmp_path):
    s = Store(tmp_path)
    s.record_failure("c1", error_type="ValueError", message="boom", traceback_tail="tb", log_path="/x.err")
    e = s.record_failure("c1", error_type="ValueError", message="boom", traceback_tail="tb", log_path="/x.err")
    assert e["attempts"] == 2 and [f["cell_id"] for f in s.ledger()] == ["c1"]


def test_corrupt_checkpoint_falls_back_to_the_previous_one(tmp_path):
    s = Store(tmp_path)
    s.save_checkpoint("c1", b"epoch-1")
    s.save_checkpoint("c1", b"epoch-2")
    s.checkpoint_path("c1").write_bytes(b"garbage")

    def load(blob: bytes) -> str:
        if not blob.startswith(b"epoch"):
            raise ValueError("not a checkpoint")
        return blob.decode()

    assert s.resume_checkpoint("c1", load) == "epoch-1"
    events = [e["event"] for e in s.history("c1")]
    assert events == ["checkpoint_discarded", "start"]
    assert list(s.cell_dir("c1").glob("checkpoint.pt.corrupt-*"))


def test_claim_stays_alive_while_a_worker_lives(tmp_path):
    s = Store(tmp_path)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert s.claim("c1", {"pid": os.getpid()})
        s.add_claim_workers(["c1"], worker.pid)
        claim = json.loads((s.cell_dir("c1") / "claim.json").read_text())
        claim["pid"] = int(dead.stdout)  # the driver is gone ...
        (s.cell_dir("c1") / "claim.json").write_text(json.dumps(claim))
        assert s.claim_alive("c1")  # ... but its worker is not
        assert not s.claim("c1", {"pid": os.getpid()})
    finally:
        worker.kill()
        worker.wait()
    assert not s.claim_alive("c1")


def test_malformed_claim_is_respected_briefly_then_moved_aside(tmp_path):
    s = Store(tmp_path)
    path = s.cell_dir("c1") / "claim.json"
    path.parent.mkdir(parents=True)
    path.write_text("")
    assert s.claim_alive("c1")  # may be being written right now
    os.utime(path, (0, 0))
    assert not s.claim_alive("c1") and list(path.parent.glob("claim.json.corrupt-*"))


def _write_claim(s: Store, cid: str, **owner) -> None:
    s.cell_dir(cid).mkdir(parents=True, exist_ok=True)
    (s.cell_dir(cid) / "claim.json").write_text(json.dumps({"time": 0.0, **owner}))


def test_a_reused_pid_is_not_the_claims_owner(tmp_path):
    """The claim names this pid, but a process that started at another time: not alive, taken over."""
    from harness.store import process_start

    s = Store(tmp_path)
    me = os.getpid()
    _write_claim(s, "c1", pid=me, host=os.uname().nodename, start=(process_start(me) or 0) + 12345)
    assert not s.claim_alive("c1")
    assert s.claim("c1", {"pid": me})
    assert s.claim_alive("c1")  # our own claim, with our start time


def test_another_hosts_claim_is_reported_and_taken_over_only_when_asked(tmp_path, capsys):
    from harness.cli import main

    s = Store(tmp_path)
    _write_claim(s, "c2", pid=123, host="elsewhere-node-7")
    assert s.claim_alive("c2") and not s.claim("c2", {"pid": os.getpid()})
    state = s.claim_state("c2")
    assert state["state"] == "unverifiable" and state["age_s"] > 1e6 and state["owner"]["host"] == "elsewhere-node-7"
    assert s.claim("c2", {"pid": os.getpid()}, take_unverifiable=True)
    assert s.claim_owner("c2")["pid"] == os.getpid()


def test_a_silent_worker_is_reported_as_stalled(tmp_path):
    import time

    s = Store(tmp_path)
    assert s.claim("c3", {"pid": os.getpid()})
    s.write_progress("c3", epoch=2, epochs=6)
    progress = json.loads((s.cell_dir("c3") / "progress.json").read_text())
    (s.cell_dir("c3") / "progress.json").write_text(json.dumps({**progress, "time": time.time() - 3600}))
    state = s.claim_state("c3")
    assert state["state"] == "alive" and state["stalled"] and state["heartbeat_age_s"] > 3000


def test_a_full_disk_leaves_no_finish_without_a_record(tmp_path, monkeypatch):
    import errno

    import harness.store as store_mod

    s = Store(tmp_path)
    real = store_mod.atomic_write_bytes

    def full(path, data):
        if path.name == "record.json":
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, data)

    monkeypatch.setattr(store_mod, "atomic_write_bytes", full)
    s.log_event("c9", "start")
    try:
        s.write_result("c9", _record("c9"), _arrays())
    except OSError as err:
        assert err.errno == errno.ENOSPC
    assert s.record("c9") is None
    assert [e["event"] for e in s.history("c9")] == ["start"]
    monkeypatch.setattr(store_mod, "atomic_write_bytes", real)
    s.write_result("c9", _record("c9"), _arrays())
    assert [e["event"] for e in s.history("c9")] == ["start", "finish"]
    assert s.record("c9")["training_log"][-1]["event"] == "finish"
