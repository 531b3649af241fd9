"""No load site unpickles code: a planted pickle is refused, names its file, and runs nothing."""
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch

import methods  # noqa: F401  (registers the models)
from harness.run.train.runner import _load_checkpoint
from harness.store import Store
from methods.layers.ir50 import read_state_dict


class _Planted:
    """Unpickling this creates ``marker``: the stand-in for arbitrary code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _plant(path: Path, marker: Path, wrap: str | None = None) -> Path:
    payload = {"weight": torch.zeros(2), "evil": _Planted(marker)}
    torch.save({wrap: payload} if wrap else payload, path)
    return path


def test_the_planted_file_would_run_code_if_unpickled(tmp_path):
    marker = tmp_path / "ran"
    torch.load(_plant(tmp_path / "x.pt", marker), weights_only=False)
    assert marker.exists()  # so the tests below are meaningful


def test_epoch_checkpoint(tmp_path):
    marker = tmp_path / "ran"
    store = Store(tmp_path / "results")
    cid = "0123456789abcdef"
    store.cell_dir(cid).mkdir(parents=True)
    _plant(store.checkpoint_path(cid), marker)
    assert store.resume_checkpoint(cid, _load_checkpoint) is None
    assert not marker.exists()
    log = (store.cell_dir(cid) / "history.jsonl").read_text()
    assert "checkpoint_discarded" in log and "checkpoint.pt" in log and "UnpicklingError" in log


@pytest.mark.parametrize("wrap", [None, "state_dict", "model"])
def test_weights_file_and_stage_artifact(tmp_path, wrap):
    """Weights files and stage artifacts (``weights.*``) go through one reader."""
    marker = tmp_path / "ran"
    path = _plant(tmp_path / "evil.pth", marker, wrap)
    with pytest.raises(ValueError, match=f"checkpoint {path}: not a file of tensors"):
        read_state_dict(str(path))
    with pytest.raises(ValueError, match="evil.pth"):
        timm.create_model("apvit", preset="tiny", **{"weights.ir50": str(path)})
    assert not marker.exists()


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 truncated"])
def test_empty_or_truncated_weights_are_named(tmp_path, content):
    path = tmp_path / "cut.pth"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=f"checkpoint {path}"):
        read_state_dict(str(path))


@pytest.mark.slow
def test_eval_checkpoint(tmp_path, harness_env):
    marker = tmp_path / "ran"
    path = _plant(tmp_path / "evil.pth", marker)
    out = subprocess.run([sys.executable, "-m", "harness", "eval", "apvit", "--checkpoint", str(path),
                          "--dataset", "rafdb", "--scale", "tiny", "--results", str(tmp_path / "res")],
                         capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    assert out.returncode != 0
    assert "evil.pth" in out.stdout + out.stderr
    assert not marker.exists()
