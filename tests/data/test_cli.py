"""``python -m harness data check|synth``."""
from __future__ import annotations

import json

from harness.cli import main
from tests.data.makers import make_ferplus, make_rafdb


def test_check_json(tmp_path, capsys):
    root = make_rafdb(tmp_path)
    assert main(["data", "check", "rafdb", "--root", str(root), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["splits"] == {"train": 7, "val": 1, "test": 4}
    assert out["class_counts"]["test"]["surprise"] == 1 and out["class_counts"]["train"]["happy"] + \
        out["class_counts"]["val"]["happy"] == 4
    assert isinstance(out["fingerprint"], str) and len(out["fingerprint"]) == 16


def test_check_text_and_protocol(tmp_path, capsys):
    root = make_ferplus(tmp_path)
    assert main(["data", "check", "ferplus", "--root", str(root)]) == 0
    text = capsys.readouterr().out
    assert "fingerprint" in text and "contempt" in text


def test_check_bad_input_exits_nonzero(tmp_path, capsys):
    root = make_rafdb(tmp_path)
    (root / "Image" / "aligned" / "test_00001_aligned.jpg").unlink()
    assert main(["data", "check", "rafdb", "--root", str(root)]) != 0
    assert "list_patition_label.txt:9" in capsys.readouterr().err
    assert main(["data", "check", "rafdb", "--root", str(root), "--skip-bad", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["skipped"]) == 1


def test_synth_writes_official_layout(tmp_path, capsys):
    out = tmp_path / "syn"
    assert main(["data", "synth", "rafdb", "--out", str(out), "--seed", "2",
                 "--knob", "n_train=14", "--knob", "n_test=7"]) == 0
    assert (out / "EmoLabel" / "list_patition_label.txt").read_text().count("\n") == 21
    assert main(["data", "check", "rafdb", "--root", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["synthetic"] is True
    assert main(["data", "synth", "rafdb", "--out", str(out), "--knob", "sparkle=1"]) == 2


def test_synth_refuses_an_out_that_is_a_file(tmp_path, capsys):
    existing = tmp_path / "notes.txt"
    existing.write_text("keep me\n")
    assert main(["data", "synth", "rafdb", "--out", str(existing)]) == 2
    assert f"--out {existing}: it exists and is not a folder" in capsys.readouterr().err
    assert main(["data", "synth", "rafdb", "--out", str(existing / "sub")]) == 2
    assert f"{existing} (a parent of it) exists and is not a folder" in capsys.readouterr().err
    assert existing.read_text() == "keep me\n"
