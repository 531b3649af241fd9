"""APViT models through timm.create_model: contract, presets, schedules, token trace, weights."""
from __future__ import annotations

import pytest
import timm
import torch

import methods  # noqa: F401
from methods.apvit import OVERRIDE_KEYS, atp_block_indices, describe_overrides, validate_overrides, vit_stage_arch
from methods.interface import Recipe

MODELS = timm.list_models("apvit*")


def test_registered_models():
    assert {"apvit", "apvit_baseline", "apvit_hybrid_deit_tiny", "apvit_deit_tiny"} <= set(MODELS)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("batch", [1, 2])
def test_forward_backward_tiny(name, batch):
    model = timm.create_model(name, preset="tiny")
    size = model.recipe.img_size
    out = model(torch.randn(batch, 3, size, size))
    assert out.shape == (batch, 7)
    out.square().sum().backward()  # head is zero-initialised: use a loss with nonzero upstream grads
    assert model.head.weight.grad is not None
    assert model.blocks[0].attn.qkv.weight.grad is not None
    trace = model.token_trace
    assert len(trace["blocks"]) == len(model.blocks) and trace["before_head"] <= trace["blocks"][0]


@pytest.mark.parametrize("name", MODELS)
def test_model_contract(name):
    # paper-preset builds of every model are covered by tests/harness/test_flops.py
    model = timm.create_model(name, preset="tiny", num_classes=8)
    assert model.num_classes == 8 and model.head.out_features == 8
    assert isinstance(model.recipe, Recipe) and callable(model.set_progress)
    assert torch.count_nonzero(model.head.weight) == 0  # zero-initialised classifier
    assert model.recipe.img_size == model.arch.img_size


def test_paper_architecture_and_recipe():
    model = timm.create_model("apvit").eval()
    blk = model.blocks[0]
    assert len(model.blocks) == 8 and blk.attn.num_heads == 8 and blk.attn.qkv.bias is None
    assert blk.mlp.fc1.out_features == 3 * 768 and blk.norm1.eps == 1e-6
    assert model.patch_embed.proj.kernel_size == (1, 1) and model.patch_embed.proj.bias is not None
    assert model.pos_embed.shape == (1, 197, 768) and model.grid == 196
    assert model.atp_blocks == (4, 5, 6, 7) and atp_block_indices("last_quarter", 8) == (6, 7)
    r = model.recipe
    assert (r.optimizer, r.lr, r.momentum, r.weight_decay, r.grad_clip, r.schedule, r.epochs, r.batch_size,
            r.img_size, r.augment, r.sampler, r.loss) == ("sgd", 1e-3, 0.9, 5e-4, 10.0, "cosine", 40, 128, 112,
                                                        "apvit", "sqrt", "ce")
    assert set(r.no_weight_decay) == {"pos_embed", "cls_token"}
    # the paper-preset token traces (k=160, r=0.9 -> 105; k=80, r=0.6 -> 10) are checked in
    # tests/harness/test_flops.py, which runs those forwards anyway


def test_k196_r1_is_exactly_the_baseline():
    torch.manual_seed(0)
    pooled = timm.create_model("apvit", preset="tiny", **{"app.k": 196, "atp.r": 1.0}).eval()
    base = timm.create_model("apvit_baseline", preset="tiny").eval()
    base.load_state_dict(pooled.state_dict())
    torch.nn.init.normal_(base.head.weight)
    pooled.head.weight.data.copy_(base.head.weight)
    x = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        assert torch.equal(pooled(x), base(x))
    assert pooled.token_trace["blocks"] == [37] * 4 and pooled.token_trace["before_head"] == 37
    assert pooled.token_trace["app_active"] is False and pooled.token_trace["atp_blocks"] == []


def test_k_is_rescaled_from_the_paper_grid_at_tiny():
    model = timm.create_model("apvit", preset="tiny", **{"app.k": 160, "atp.r": 0.9}).eval()
    assert model.grid == 36
    with torch.no_grad():
        model(torch.randn(1, 3, 48, 48))
    trace = model.token_trace
    assert trace["app_k"] == 29 and trace["app_k_paper"] == 160  # round(160 * 36 / 196 = 29.4)
    assert trace["blocks"] == [30, 30, 30, 27] and trace["before_head"] == 24


def test_gap_head_and_soft_mode_keep_shapes():
    x = torch.randn(2, 3, 48, 48)
    gap = timm.create_model("apvit", preset="tiny", head="gap")
    assert gap(x).shape == (2, 7)
    soft = timm.create_model("apvit", preset="tiny", **{"app.mode": "soft", "app.criterion": "lanet", "atp.r": 1.0})
    soft(x)
    assert soft.token_trace["blocks"] == [37] * 4


def test_keep_schedule_decays_linearly():
    model = timm.create_model("apvit", preset="tiny", **{"app.k": 80, "atp.r": 0.6, "app.schedule": "decay"})
    assert model.current_keep() == (196.0, 36, 1.0)  # progress starts at 0: nothing pooled
    x = torch.randn(1, 3, 48, 48)
    model(x)
    assert model.token_trace["before_head"] == 37
    model.set_progress(0.5)
    k_paper, k_eff, r = model.current_keep()
    assert k_paper == 138.0 and k_eff == 25 and r == pytest.approx(0.8)  # round(138 * 36 / 196 = 25.3)
    model.set_progress(1.0)
    assert model.current_keep() == (80.0, 15, 0.6)  # round(14.69)
    model(x)
    assert model.token_trace["app_k_paper"] == 80.0 and model.token_trace["blocks"] == [16, 16, 16, 10]
    r_const = timm.create_model("apvit", preset="tiny", **{"app.k": 80, "app.schedule": "decay",
                                                           "atp.schedule": "constant"})
    r_const.set_progress(0.25)
    assert r_const.current_keep() == (167.0, 31, 0.9)  # round(167 * 36 / 196 = 30.7); r constant
    const = timm.create_model("apvit", preset="tiny")
    const.set_progress(0.3)
    assert const.current_keep() == (160.0, 29, 0.9)


@pytest.mark.parametrize("overrides, key", [
    ({"app.kk": 3}, "app.kk"),
    ({"app.k": 197}, "app.k"),
    ({"app.k": 0}, "app.k"),
    ({"app.k": 12.5}, "app.k"),
    ({"atp.r": 0.0}, "atp.r"),
    ({"atp.r": 1.2}, "atp.r"),
    ({"app.criterion": "median"}, "app.criterion"),
    ({"atp.criterion": "lanet"}, "atp.criterion"),
    ({"app.mode": "medium"}, "app.mode"),
    ({"head": "cls"}, "head"),
    ({"app.schedule": "cosine"}, "app.schedule"),
    ({"atp.blocks": [2, 9]}, "atp.blocks"),
    ({"weights.vit": "/nonexistent/vit.pth"}, "weights.vit"),
])
def test_bad_overrides_name_the_key(overrides, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        timm.create_model("apvit", preset="tiny", **overrides)


def test_bad_preset_and_overrides_listing():
    with pytest.raises(ValueError, match="preset"):
        timm.create_model("apvit", preset="huge")
    assert set(describe_overrides("apvit")) == set(OVERRIDE_KEYS)
    assert describe_overrides("apvit_deit_tiny", "tiny")["atp.r"]["default"] == 0.8
    assert validate_overrides({"atp.blocks": [7, 6]}) == {"atp.blocks": (6, 7)}


def _vit_state(model):
    keep = ("cls_token", "pos_embed", "blocks.", "norm.")
    state = {k: v.clone() for k, v in model.state_dict().items() if k.startswith(keep)}
    state["head.weight"] = torch.zeros(1000, model.arch.embed_dim)  # ImageNet head: ignored
    state["patch_embed.proj.weight"] = torch.zeros(model.arch.embed_dim, 3, 16, 16)  # ignored for hybrids
    return state


def test_vit_checkpoint_loads_strictly(tmp_path):
    src = timm.create_model("apvit", preset="tiny")
    torch.save({"model": _vit_state(src)}, tmp_path / "vit.pth")
    model = timm.create_model("apvit", preset="tiny", **{"weights.vit": str(tmp_path / "vit.pth")})
    assert torch.equal(model.blocks[3].attn.qkv.weight, src.blocks[3].attn.qkv.weight)
    assert torch.equal(model.pos_embed, src.pos_embed)
    report = model.weight_reports["weights.vit"]
    assert set(report.ignored) == {"head.weight", "patch_embed.proj.weight"}


def test_vit_stage_exports_what_apvit_loads(tmp_path):
    stage = timm.create_model("sup_pretrain_apvit_vit", preset="tiny")
    torch.save(stage.exports()["weights.vit"], tmp_path / "vit.pth")
    for name in ("apvit", "apvit_baseline"):
        model = timm.create_model(name, preset="tiny", **{"weights.vit": str(tmp_path / "vit.pth")})
        assert set(model.weight_reports["weights.vit"].ignored) == {"patch_embed.proj.weight", "patch_embed.proj.bias"}
        assert torch.equal(model.blocks[2].mlp.fc1.weight, stage.blocks[2].mlp.fc1.weight)
        assert torch.equal(model.pos_embed, stage.pos_embed)  # the stage's grid is APViT's token grid
    paper = vit_stage_arch("paper")
    assert (paper.img_size // paper.patch_size, paper.embed_dim, paper.depth, paper.qkv_bias) == (14, 768, 8, False)
    recipe = timm.create_model("apvit", preset="tiny").recipe
    assert recipe.init == {"weights.ir50": "stage:faceid_ir50", "weights.vit": "stage:sup_generic_apvit"}


def test_vit_checkpoint_with_wrong_shape_is_rejected(tmp_path):
    state = _vit_state(timm.create_model("apvit", preset="tiny"))
    state["pos_embed"] = torch.zeros(1, 50, 64)  # a 7x7 grid checkpoint for a 6x6 model
    state["blocks.0.attn.qkv.weight"] = torch.zeros(10, 64)
    torch.save(state, tmp_path / "vit.pth")
    with pytest.raises(ValueError) as err:
        timm.create_model("apvit", preset="tiny", **{"weights.vit": str(tmp_path / "vit.pth")})
    assert "pos_embed: checkpoint (1, 50, 64) vs model (1, 37, 64)" in str(err.value)
    assert "blocks.0.attn.qkv.weight" in str(err.value)


def test_ir50_checkpoint_through_create_model(tmp_path):
    src = timm.create_model("apvit", preset="tiny")
    state = dict(src.backbone.state_dict())
    state["output_layer.1.weight"] = torch.zeros(3)
    torch.save(state, tmp_path / "ir50.pth")
    model = timm.create_model("apvit", preset="tiny", **{"weights.ir50": str(tmp_path / "ir50.pth")})
    assert torch.equal(model.backbone.input_layer[0].weight, src.backbone.input_layer[0].weight)
    assert list(model.weight_reports["weights.ir50"].ignored) == ["output_layer.1.weight"]
    with pytest.raises(ValueError, match="weights.ir50"):
        timm.create_model("apvit_deit_tiny", preset="tiny", **{"weights.ir50": str(tmp_path / "ir50.pth")})


def test_lanet_is_trained_in_hard_mode():
    x = torch.randn(2, 3, 48, 48)
    for mode in ("hard", "soft"):
        model = timm.create_model("apvit", preset="tiny", **{"app.criterion": "lanet", "app.mode": mode})
        torch.nn.init.normal_(model.head.weight)  # the zero-initialised head would block every gradient
        model(x).square().sum().backward()
        assert model.token_trace["app_k"] == (29 if mode == "hard" else 36)
        assert model.app_criterion.fc2.weight.grad.abs().sum() > 0  # through the map multiplication
