"""IR-50 in the face.evoLVe layout: shapes, key names, strict checkpoint loading."""
from __future__ import annotations

import pytest
import torch

from methods.layers.ir50 import IR50, load_ir50_checkpoint

SMALL = dict(widths=(4, 8, 16, 32), depths=(1, 2, 2, 1))


def test_paper_cut_gives_256x14x14_and_face_evolve_keys():
    model = IR50(num_stages=3).eval()
    assert model.num_units == 3 + 4 + 14 and model.out_chs == 256
    with torch.no_grad():
        assert model(torch.randn(1, 3, 112, 112)).shape == (1, 256, 14, 14)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes["input_layer.0.weight"] == (64, 3, 3, 3)
    assert shapes["input_layer.2.weight"] == (64,)  # PReLU
    assert "body.0.shortcut_layer.0.weight" not in shapes  # MaxPool2d(1, 2) shortcut
    assert shapes["body.0.res_layer.0.running_var"] == (64,)  # BN first
    assert shapes["body.0.res_layer.1.weight"] == (64, 64, 3, 3)
    assert shapes["body.3.shortcut_layer.0.weight"] == (128, 64, 1, 1)  # first unit of stage 2
    assert shapes["body.20.res_layer.4.weight"] == (256,)
    assert not any(k.startswith(("body.21.", "output_layer")) for k in shapes)
    assert model.body[3].res_layer[3].stride == (2, 2)  # second conv carries the stride


def _full_checkpoint(path, extra_output_layer=True):
    state = IR50(num_stages=4, **SMALL).state_dict()
    if extra_output_layer:
        state["output_layer.3.weight"] = torch.zeros(4, 32)
    torch.save(state, path)
    return state


def test_truncated_load_ignores_stage4_and_output_layer_explicitly(tmp_path):
    state = _full_checkpoint(tmp_path / "ir50.pth")
    model = IR50(num_stages=3, **SMALL)
    report = load_ir50_checkpoint(model, str(tmp_path / "ir50.pth"))
    assert "output_layer.3.weight" in report.ignored
    assert any(k.startswith("body.5.") for k in report.ignored)  # the stage-4 unit
    assert not any(k.startswith("body.5.") for k in report.loaded)
    assert torch.equal(model.state_dict()["body.4.res_layer.1.weight"], state["body.4.res_layer.1.weight"])


def test_missing_num_batches_tracked_is_tolerated_and_reported(tmp_path):
    state = {k: v for k, v in IR50(num_stages=3, **SMALL).state_dict().items()
             if not k.endswith("num_batches_tracked")}
    torch.save({"state_dict": state}, tmp_path / "old.pth")
    report = load_ir50_checkpoint(IR50(num_stages=3, **SMALL), str(tmp_path / "old.pth"))
    assert report.missing_buffers and not report.ignored


def test_wrong_shape_is_rejected_with_key_and_shapes(tmp_path):
    state = IR50(num_stages=3, **SMALL).state_dict()
    state["body.1.res_layer.1.weight"] = torch.zeros(8, 8, 1, 1)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match=r"body\.1\.res_layer\.1\.weight.*\(8, 8, 1, 1\)"):
        load_ir50_checkpoint(IR50(num_stages=3, **SMALL), str(tmp_path / "bad.pth"))


def test_missing_key_is_rejected(tmp_path):
    state = IR50(num_stages=3, **SMALL).state_dict()
    del state["input_layer.2.weight"]
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="missing key input_layer.2.weight"):
        load_ir50_checkpoint(IR50(num_stages=3, **SMALL), str(tmp_path / "bad.pth"))
