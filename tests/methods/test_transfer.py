"""TransFER through timm.create_model: MAD, MSAD (head and token), the dropout family, B = 0, keys, weights."""
from __future__ import annotations

import pytest
import timm
import torch

import methods  # noqa: F401
from methods import apvit
from methods.interface import Recipe
from methods.layers.blocks import Attention
from methods.layers.drop import drop_one_mask
from methods.transfer import OVERRIDE_KEYS, describe_overrides, validate_overrides

X = torch.randn(8, 3, 48, 48, generator=torch.Generator().manual_seed(0))


def tiny(**overrides) -> torch.nn.Module:
    return timm.create_model("transfer", preset="tiny", **overrides)


def with_live_head(model: torch.nn.Module) -> torch.nn.Module:
    """A nonzero classifier, so the logits show every change in the features (the real one starts at zero)."""
    torch.nn.init.normal_(model.head.weight, generator=torch.Generator().manual_seed(1))
    return model


def same_weights(dst: torch.nn.Module, src: torch.nn.Module) -> torch.nn.Module:
    dst.load_state_dict(src.state_dict())
    return dst


def test_registered_and_contract():
    assert "transfer" in timm.list_models("transfer*")
    model = tiny(num_classes=8)
    assert model.num_classes == 8 and model.head.out_features == 8
    assert torch.count_nonzero(model.head.weight) == 0  # zero-initialised classifier
    assert isinstance(model.recipe, Recipe) and model.recipe.img_size == model.arch.img_size == 48


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("overrides", [{}, {"transfer.msad": "token"}, {"transfer.stage": 2}, {"transfer.stage": 4},
                                       {"transfer.drop": "dropblock"}, {"transfer.lanet_norm": "bn"}])
def test_forward_backward_tiny(batch, overrides):
    model = with_live_head(tiny(**overrides)).train()
    out = model(X[:batch])
    assert out.shape == (batch, 7)
    out.square().sum().backward()
    assert model.blocks[0].attn.qkv.weight.grad is not None
    assert model.local_cnns.branches[0].conv2.weight.grad is not None
    side = 48 // 2 ** model.settings["transfer.stage"]
    assert model.token_trace["blocks"] == [side * side + 1] * 4


def test_paper_architecture_and_recipes():
    with torch.device("meta"):
        model = timm.create_model("transfer")
        affectnet = timm.create_model("transfer", **{"transfer.recipe": "affectnet"})
    blk = model.blocks[0]
    assert len(model.blocks) == 8 and blk.attn.num_heads == 8 and blk.attn.qkv.bias is None
    assert blk.mlp.fc1.out_features == 3 * 768 and blk.norm1.eps == 1e-6
    assert model.pos_embed.shape == (1, 197, 768) and model.backbone.out_chs == 256
    assert len(model.local_cnns.branches) == 2 and model.local_cnns.branches[0].conv1.out_channels == 16
    assert model.settings["transfer.p1"] == 0.6 and model.settings["transfer.p2"] == 0.3
    r = model.recipe
    assert (r.optimizer, r.lr, r.momentum, r.weight_decay, r.batch_size, r.epochs, r.schedule, r.milestones,
            r.iterations, r.grad_clip) == ("sgd", 1e-3, 0.9, 0.0, 256, 40, "step", (0.375, 0.75), None, None)
    a = affectnet.recipe
    assert (a.lr, a.iterations, a.milestones) == (3e-4, 20_000, (0.48, 0.96))


def test_tiny_ir50_is_apvits():
    ours = {k: v.shape for k, v in tiny().backbone.state_dict().items()}
    theirs = {k: v.shape for k, v in timm.create_model("apvit", preset="tiny").backbone.state_dict().items()}
    assert ours == theirs  # one face-ID pre-training stage serves both


def test_mad_drops_exactly_one_branch_per_selected_sample_and_nothing_at_eval():
    model = tiny(**{"transfer.branches": 3, "transfer.p1": 0.5, "transfer.msad": "none"})
    seen: dict = {}
    model.local_cnns.register_forward_hook(lambda m, args, out: seen.update(x=args[0], m_out=out[1]))
    torch.manual_seed(0)
    model.train()(X)
    keep = model.drop_trace["mad"]  # [B, 3]
    zeros = (keep == 0).sum(1)
    assert set(zeros.tolist()) == {0, 1} and keep.shape == (8, 3)  # some samples selected, one branch each
    raw = model.local_cnns.attention_maps(seen["x"])  # [B, 3, h, w]
    assert torch.equal(seen["m_out"], (raw * keep[:, :, None, None]).amax(1, keepdim=True))
    model.eval()(X)
    assert model.drop_trace["mad"] is None
    assert torch.equal(seen["m_out"], model.local_cnns.attention_maps(seen["x"]).amax(1, keepdim=True))


def test_drop_one_mask():
    torch.manual_seed(0)
    keep = drop_one_mask(1000, 8, 0.3)
    zeros = (keep == 0).sum(1)
    assert zeros.max() == 1 and 250 < zeros.sum() < 350  # one of eight, in about 30% of the samples
    assert torch.equal(drop_one_mask(4, 8, 0.0), torch.ones(4, 8))


def _identity_attention(heads: int = 8, dim: int = 64) -> Attention:
    attn = Attention(dim, heads)
    with torch.no_grad():
        attn.proj.weight.copy_(torch.eye(dim))  # proj = identity: the output shows each head's slice
        attn.proj.bias.zero_()
    return attn


def test_msad_head_zeroes_exactly_one_heads_output():
    attn, x = _identity_attention(), torch.randn(2, 10, 64)
    head_mask = torch.ones(2, 8)
    head_mask[0, 5] = 0
    full, _ = attn(x)
    out, _ = attn(x, head_mask=head_mask)
    d = 8
    assert torch.all(out[0, :, 5 * d:6 * d] == 0)
    assert torch.equal(out[0, :, :5 * d], full[0, :, :5 * d]) and torch.equal(out[1], full[1])


def test_msad_head_in_the_model_one_head_per_sample_and_block():
    model = tiny(**{"transfer.p2": 1.0})
    calls = []
    for blk in model.blocks:
        blk.attn.register_forward_hook(lambda m, args, kwargs, out: calls.append(kwargs["head_mask"]), with_kwargs=True)
    torch.manual_seed(0)
    model.train()(X)
    masks = model.drop_trace["msad_head"]
    assert len(masks) == 4 and all(torch.equal(a, b) for a, b in zip(masks, calls))  # what each block used
    for mask in masks:
        assert mask.shape == (8, 8) and torch.equal((mask == 0).sum(1), torch.ones(8, dtype=torch.long))
    assert not all(torch.equal(masks[0], m) for m in masks[1:])  # every block draws its own
    assert model.drop_trace["msad_token"] == [None] * 4
    model.eval()(X)
    assert model.drop_trace["msad_head"] == [None] * 4


def test_msad_token_zeroes_qkv_of_one_position_in_0_to_H_minus_1():
    model = tiny(**{"transfer.msad": "token", "transfer.p2": 1.0})
    torch.manual_seed(0)
    model.train()(X)
    for mask in model.drop_trace["msad_token"]:  # [B, 37]
        assert mask.shape == (8, 37) and torch.equal((mask == 0).sum(1), torch.ones(8, dtype=torch.long))
        assert torch.all(mask[:, 8:] == 1)  # only positions 0..7 (class token = 0) can be hit
    # with no qkv bias, zeroing q/k/v of token j is zeroing token j's input to the attention
    attn, x = _identity_attention(), torch.randn(2, 10, 64)
    token_mask = torch.ones(2, 10)
    token_mask[1, 0] = 0
    x_zeroed = x.clone()
    x_zeroed[1, 0] = 0
    assert torch.allclose(attn(x, token_mask=token_mask)[0], attn(x_zeroed)[0], atol=1e-6)


def test_zero_branches_is_the_plain_hybrid_vit():
    # APViT's network with pooling off is the plain hybrid ViT; give it TransFER-tiny's 8 heads
    arch = apvit.ArchConfig(**{**apvit._TINY_HYBRID, "num_heads": 8})
    pooling = {key: d["default"] for key, d in apvit.describe_overrides().items()} | {"app.k": 196, "atp.r": 1.0}
    plain = with_live_head(apvit.APViT(arch, pooling))
    ours = same_weights(tiny(**{"transfer.branches": 0, "transfer.msad": "none"}), plain)
    with torch.no_grad():
        assert torch.equal(ours.eval()(X), plain.eval()(X))
        assert torch.equal(ours.train()(X), plain.train()(X))  # nothing to drop
        with_msad = same_weights(tiny(**{"transfer.branches": 0}), plain)
        assert torch.equal(with_msad.eval()(X), plain.eval()(X))  # MSAD is off at eval


@pytest.mark.parametrize("drop", ["mad", "dropout", "dropblock", "spatial_dropout"])
def test_every_drop_acts_in_training_only(drop):
    settings = {"transfer.branches": 2, "transfer.p1": 0.9, "transfer.msad": "none"}
    reference = with_live_head(tiny(**settings, **{"transfer.drop": "none"}))
    model = same_weights(tiny(**settings, **{"transfer.drop": drop}), reference)
    with torch.no_grad():
        assert torch.equal(model.eval()(X), reference.eval()(X))  # nothing dropped or rescaled at eval
        torch.manual_seed(0)
        assert not torch.allclose(model.train()(X), reference.train()(X))


def test_msad_acts_in_training_only():
    reference = with_live_head(tiny(**{"transfer.msad": "none", "transfer.drop": "none"}))
    for mode in ("head", "token"):
        model = same_weights(tiny(**{"transfer.msad": mode, "transfer.p2": 1.0, "transfer.drop": "none"}), reference)
        with torch.no_grad():
            assert torch.equal(model.eval()(X), reference.eval()(X))
            assert not torch.allclose(model.train()(X), reference.train()(X))


def test_dropblock_size_is_stated_on_the_paper_grid():
    assert tiny(**{"transfer.drop": "dropblock"}).local_cnns.drop.block_size == 3  # 7 * 6 / 14 = 3.0
    assert tiny(**{"transfer.drop": "dropblock", "transfer.dropblock_size": 9}).dropblock_size == 4  # 3.86
    with torch.device("meta"):
        assert timm.create_model("transfer", **{"transfer.drop": "dropblock"}).dropblock_size == 7


@pytest.mark.parametrize("overrides, key", [
    ({"transfer.stage": 5}, "transfer.stage"),
    ({"transfer.stage": True}, "transfer.stage"),
    ({"transfer.branches": 9}, "transfer.branches"),
    ({"transfer.branches": -1}, "transfer.branches"),
    ({"transfer.drop": "cutout"}, "transfer.drop"),
    ({"transfer.p1": 1.5}, "transfer.p1"),
    ({"transfer.p2": "high"}, "transfer.p2"),
    ({"transfer.msad": "heads"}, "transfer.msad"),
    ({"transfer.dropblock_size": 0}, "transfer.dropblock_size"),
    ({"transfer.lanet_norm": "ln"}, "transfer.lanet_norm"),
    ({"transfer.recipe": "ferplus"}, "transfer.recipe"),
    ({"weights.ir50": 3}, "weights.ir50"),
    ({"weights.ir50": "/no/such/file.pth"}, "weights.ir50"),
])
def test_bad_values_name_the_key_and_the_allowed_values(overrides, key):
    with pytest.raises(ValueError) as err:
        tiny(**overrides)
    assert key in str(err.value) and "allowed values" in str(err.value)


def test_unknown_key_and_preset_list_what_is_allowed():
    with pytest.raises(ValueError, match="allowed keys: transfer.stage"):
        tiny(**{"app.k": 160})
    with pytest.raises(ValueError, match="allowed values: paper, tiny"):
        timm.create_model("transfer", preset="huge")
    described = describe_overrides("transfer", "tiny")
    assert set(described) == set(OVERRIDE_KEYS) and described["transfer.msad"]["default"] == "head"
    assert validate_overrides({"transfer.p1": 1}) == {"transfer.p1": 1.0}


def test_weights_load_strictly(tmp_path):
    src = tiny()
    ir50 = dict(src.backbone.state_dict()) | {"output_layer.1.weight": torch.zeros(3)}
    torch.save(ir50, tmp_path / "ir50.pth")
    vit = {k: v for k, v in src.state_dict().items() if k.startswith(("cls_token", "pos_embed", "blocks.", "norm."))}
    vit["head.weight"] = torch.zeros(1000, 64)
    torch.save({"model": vit}, tmp_path / "vit.pth")
    model = tiny(**{"weights.ir50": str(tmp_path / "ir50.pth"), "weights.vit": str(tmp_path / "vit.pth")})
    assert torch.equal(model.backbone.input_layer[0].weight, src.backbone.input_layer[0].weight)
    assert torch.equal(model.blocks[2].attn.qkv.weight, src.blocks[2].attn.qkv.weight)
    assert list(model.weight_reports["weights.ir50"].ignored) == ["output_layer.1.weight"]
    assert list(model.weight_reports["weights.vit"].ignored) == ["head.weight"]
    with pytest.raises(ValueError, match="missing key body.4"):  # stage 4 needs a unit a 3-stage checkpoint lacks
        tiny(**{"transfer.stage": 4, "weights.ir50": str(tmp_path / "ir50.pth")})


def test_paper_recipe_is_the_papers_and_the_code_reading_is_the_paddle_ports():
    with torch.device("meta"):
        paper = timm.create_model("transfer", preset="paper").recipe
        code = timm.create_model("transfer", preset="paper", **{"transfer.reading": "code"}).recipe
        code_affectnet = timm.create_model("transfer", preset="paper", **{"transfer.reading": "code",
                                                                          "transfer.recipe": "affectnet"}).recipe
    assert (paper.augment, paper.sampler, paper.weight_decay, paper.lr, paper.batch_size) == ("transfer", "heavy", 0.0, 1e-3, 256)
    assert (code.augment, code.sampler, code.weight_decay, code.lr, code.batch_size) == ("transfer_paddle", "none", 1e-4, 1e-4, 64)
    assert code.milestones == paper.milestones == (15 / 40, 30 / 40) and code.momentum == 0.9
    assert code_affectnet.iterations == 20_000 and code_affectnet.weight_decay == 1e-4


@pytest.mark.parametrize("stage", [2, 4])
def test_vit_weights_meet_another_stems_grid_through_resampled_position_embeddings(tmp_path, stage):
    """Table 2's stage-2 and stage-4 rows start from the same ViT as stage 3: its position
    embedding is resized to their token grid (reported), everything else loads as it is."""
    src = tiny()
    vit = {k: v for k, v in src.state_dict().items() if k.startswith(("cls_token", "pos_embed", "blocks.", "norm."))}
    torch.save(vit, tmp_path / "vit.pth")
    model = tiny(**{"transfer.stage": stage, "weights.vit": str(tmp_path / "vit.pth")})
    report = model.weight_reports["weights.vit"]
    assert model.pos_embed.shape[1] == model.grid + 1 != src.pos_embed.shape[1]
    assert "pos_embed" in report.resampled and "pos_embed" in report.summary()
    assert torch.equal(model.pos_embed[:, :1], src.pos_embed[:, :1])  # the class token's entry is kept
    assert torch.equal(model.blocks[0].attn.qkv.weight, src.blocks[0].attn.qkv.weight)
    assert model(X).shape == (8, 7)
    assert "pos_embed" not in tiny(**{"weights.vit": str(tmp_path / "vit.pth")}).weight_reports["weights.vit"].resampled
