"""MAE-ViT: masking, the encoder on visible patches, the masked normalised-pixel loss, sin-cos
positions, layer decay through the harness's optimiser builder, strict checkpoint loading, FLOPs."""
from __future__ import annotations

import io
import json
import math
from contextlib import redirect_stdout

import numpy as np
import pytest
import timm
import torch
import torch.nn as nn

import methods  # noqa: F401  (registers the models)
from harness.run.train.flops import count_flops
from harness.run.train.optim import build_optimizers, optimizer_plan
from methods.interface import get_recipe
from methods.layers.vit import num_visible, patchify, random_masking, sincos_pos_embed, unpatchify
from methods.mae import VARIANTS, MaskedAutoencoderViT, masked_patch_loss

X = torch.randn(4, 3, 48, 48, generator=torch.Generator().manual_seed(0))
Y = torch.tensor([0, 1, 2, 3])


def pretrain(**overrides) -> MaskedAutoencoderViT:
    return timm.create_model("mae_pretrain_vit_base", preset="tiny", num_classes=5, **overrides)


@pytest.mark.parametrize("n, ratio", [(36, 0.75), (196, 0.75), (10, 0.75), (49, 0.5), (36, 0.3), (36, 0.0)])
def test_masking_keeps_round_share_of_patches_per_image(n, ratio):
    x = torch.arange(n, dtype=torch.float32).view(1, n, 1).expand(3, n, 2)  # feature = patch index
    kept, mask, restore = random_masking(x, ratio, torch.Generator().manual_seed(1))
    k = math.floor((1 - ratio) * n + 0.5)
    assert kept.shape == (3, k, 2) and k == num_visible(n, ratio)
    assert mask.shape == (3, n) and mask.sum(1).tolist() == [n - k] * 3
    for b in range(3):  # the kept tokens are exactly the unmasked patches, each once
        assert sorted(kept[b, :, 0].long().tolist()) == torch.nonzero(mask[b] == 0).flatten().tolist()
    assert torch.equal(torch.gather(torch.argsort(restore, 1), 1, restore), torch.arange(n).expand(3, n))


def test_masks_differ_between_images():
    _, mask, _ = random_masking(torch.zeros(8, 36, 4), 0.75, torch.Generator().manual_seed(0))
    assert len({tuple(m.tolist()) for m in mask}) > 1


def test_encoder_sees_only_the_visible_patches():
    model = pretrain().eval()
    seen = []
    model.blocks[0].register_forward_pre_hook(lambda m, args: seen.append(args[0].shape))
    latent, mask, _ = model.forward_encoder(X, 0.75, torch.Generator().manual_seed(3))
    grid, p = model.arch.grid, model.arch.patch_size
    assert seen == [(4, 1 + 9, 64)] and latent.shape == (4, 10, 64) and model.encoder_trace["tokens"] == 10
    # Scribble over every masked patch: the encoder's output does not change.
    noisy = unpatchify(torch.where(mask.bool().unsqueeze(-1), torch.randn(4, grid * grid, p * p * 3),
                                   patchify(X, p)), p)
    latent2, mask2, _ = model.forward_encoder(noisy, 0.75, torch.Generator().manual_seed(3))
    assert torch.equal(mask, mask2) and torch.allclose(latent, latent2, atol=1e-6)
    # ... while scribbling over one visible patch does.
    visible = torch.nonzero(mask[0] == 0)[0, 0]
    patches = patchify(X, p).clone()
    patches[0, visible] += 1.0
    latent3, _, _ = model.forward_encoder(unpatchify(patches, p), 0.75, torch.Generator().manual_seed(3))
    assert not torch.allclose(latent[0], latent3[0])


def test_patchify_round_trip():
    assert torch.equal(unpatchify(patchify(X, 8), 8), X)
    assert patchify(X, 8).shape == (4, 36, 192)


def test_loss_is_on_masked_patches_only_with_normalised_targets():
    target = torch.randn(2, 6, 12) * 3 + 5
    mask = torch.tensor([[1, 1, 0, 0, 0, 0], [0, 1, 0, 1, 0, 0]], dtype=torch.float32)
    norm = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6) ** 0.5
    pred = torch.where(mask.bool().unsqueeze(-1), norm, torch.randn(2, 6, 12) * 100)  # wrong where visible
    assert masked_patch_loss(pred, target, mask, norm_pix=True).item() == pytest.approx(0.0, abs=1e-6)
    assert masked_patch_loss(pred, target, mask, norm_pix=False).item() > 1.0  # raw pixels are not the target
    wrong_masked = pred.clone()
    wrong_masked[0, 0] += 2.0  # one masked patch off by 2 everywhere: 4 / 4 masked patches
    assert masked_patch_loss(wrong_masked, target, mask).item() == pytest.approx(1.0, rel=1e-4)
    raw = torch.where(mask.bool().unsqueeze(-1), target, torch.zeros_like(target))
    assert masked_patch_loss(raw, target, mask, norm_pix=False).item() == pytest.approx(0.0, abs=1e-6)


def test_training_step_terms_and_probe_isolation():
    model = pretrain().train()
    torch.manual_seed(7)
    terms = model.training_step(X, Y, nn.CrossEntropyLoss())
    assert set(terms) == {"mae", "probe"}
    torch.manual_seed(7)  # the same mask, recomputed through the public pieces
    latent, mask, restore = model.forward_encoder(X, 0.75)
    expected = masked_patch_loss(model.forward_decoder(latent, restore), patchify(X, 8), mask, norm_pix=True)
    assert terms["mae"].item() == pytest.approx(expected.item(), rel=1e-5)
    terms["probe"].backward(retain_graph=True)  # the probe's loss never reaches the encoder
    assert model.probe.weight.grad is not None and model.blocks[0].attn.qkv.weight.grad is None
    terms["mae"].backward()
    assert model.blocks[0].attn.qkv.weight.grad is not None and model.decoder_pred.weight.grad is not None
    assert model.pos_embed.grad is None and model.decoder_pos_embed.grad is None  # fixed
    assert model.eval()(X).shape == (4, 5)


def test_recipe_optimisers_cover_every_trainable_parameter():
    for preset in ("tiny", "paper"):
        with torch.device("meta"):
            model = timm.create_model("mae_pretrain_vit_base", preset=preset)
        plan = optimizer_plan(model, model.recipe)  # raises if a parameter had no owner, or two
        assert plan["mae"]["betas"] == (0.9, 0.95) and plan["probe"]["params"] == ["probe.weight", "probe.bias"]
    paper = model.recipe
    assert (paper.epochs, paper.warmup_epochs, paper.weight_decay, paper.optimizer) == (300, 40, 0.05, "adamw")
    # the authors' effective batch, 128, with MAE's lr rule (base 1.5e-4 x batch / 256)
    assert paper.batch_size * paper.accum_steps == 128 and paper.lr == pytest.approx(1.5e-4 * 128 / 256)


def _mae_reference_pos_embed(grid: int, dim: int) -> np.ndarray:
    """MAE's 2-D sin-cos table from its definition: [col half | row half], each [sin | cos]."""
    omega = 1.0 / 10000 ** (np.arange(dim // 4) / (dim / 4.0))
    rows, cols = np.meshgrid(np.arange(grid), np.arange(grid), indexing="ij")

    def half(pos):
        out = np.outer(pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    return np.concatenate([np.zeros((1, dim)), np.concatenate([half(cols), half(rows)], axis=1)], axis=0)


@pytest.mark.parametrize("grid, dim", [(6, 64), (14, 768), (3, 8)])
def test_sincos_pos_embed_is_maes(grid, dim):
    ours = sincos_pos_embed(grid, dim).numpy()
    assert ours.shape == (1 + grid * grid, dim)
    np.testing.assert_allclose(ours, _mae_reference_pos_embed(grid, dim), atol=1e-5)
    assert torch.equal(pretrain().pos_embed[0], sincos_pos_embed(6, 64))


def test_layer_decay_gives_each_block_its_lr():
    model = timm.create_model("mae_vit_base", preset="tiny", **{"mae.pretrain": "none"})
    recipe = get_recipe(model).__class__(**{**get_recipe(model).__dict__, "layer_decay": 0.65})
    (opt,) = build_optimizers(model, recipe).values()
    names = {id(p): n for n, p in model.named_parameters()}
    lr_of = {names[id(p)]: g["lr"] for g in opt.param_groups for p in g["params"]}
    depth, lr = len(model.blocks), recipe.lr
    for i in range(depth):  # MAE's rule: block i gets lr * decay ** (depth - i); embeddings one step less
        for name in (f"blocks.{i}.attn.qkv.weight", f"blocks.{i}.norm1.bias", f"blocks.{i}.mlp.fc2.weight"):
            assert lr_of[name] == pytest.approx(lr * 0.65 ** (depth - i))
    for name in ("patch_embed.proj.weight", "cls_token", "pos_embed"):
        assert lr_of[name] == pytest.approx(lr * 0.65 ** (depth + 1))
    for name in ("norm.weight", "head.weight", "head.bias"):
        assert lr_of[name] == pytest.approx(lr)
    assert len(lr_of) == sum(1 for p in model.parameters() if p.requires_grad)


def _save(obj, path):
    torch.save(obj, path)
    return str(path)


def test_loads_our_stage_export_strictly(tmp_path):
    stage = pretrain()
    path = _save(stage.exports()["weights.vit"], tmp_path / "stage.pt")
    model = timm.create_model("mae_vit_base", preset="tiny", **{"weights.vit": path})
    assert torch.equal(model.blocks[3].mlp.fc1.weight, stage.blocks[3].mlp.fc1.weight)
    assert torch.equal(model.pos_embed, stage.pos_embed)  # the fixed sin-cos table starts the learned one
    assert not any(k.startswith(("decoder_", "mask_token", "probe")) for k in stage.exports()["weights.vit"])
    report = model.weight_reports["weights.vit"]
    assert len(report.loaded) == len([k for k in model.state_dict() if not k.startswith("head.")])


def test_loads_an_official_mae_checkpoint(tmp_path):
    stage = pretrain()
    full = {k: v for k, v in stage.state_dict().items() if not k.startswith("probe.")}  # MAE's own keys
    assert {"mask_token", "decoder_embed.weight", "decoder_pos_embed", "decoder_pred.bias"} <= set(full)
    path = _save({"model": full, "epoch": 299}, tmp_path / "mae_pretrain_vit_base.pth")
    model = timm.create_model("mae_vit_base", preset="tiny", **{"weights.vit": path})
    report = model.weight_reports["weights.vit"]
    assert "mask_token" in report.ignored and "decoder_blocks.0.attn.qkv.weight" in report.ignored
    assert torch.equal(model.blocks[0].attn.qkv.weight, stage.blocks[0].attn.qkv.weight)
    avg = timm.create_model("mae_vit_base", preset="tiny", **{"weights.vit": path, "mae.pool": "avg"})
    assert "norm.weight" in avg.weight_reports["weights.vit"].ignored  # MAE's global pool: a fresh fc_norm


def test_loads_a_timm_vit_checkpoint(tmp_path):
    ref = timm.models.vision_transformer.VisionTransformer(img_size=48, patch_size=8, embed_dim=64, depth=4,
                                                           num_heads=4, num_classes=1000)
    path = _save({"model": ref.state_dict()}, tmp_path / "deit.pth")  # DeiT's container, head included
    model = timm.create_model("mae_vit_base", preset="tiny", num_classes=7, **{"weights.vit": path})
    assert "head.weight" in model.weight_reports["weights.vit"].ignored
    assert torch.equal(model.norm.weight, ref.norm.weight)


def test_one_wrong_shape_fails_naming_the_key(tmp_path):
    state = pretrain().exports()["weights.vit"]
    state["blocks.2.mlp.fc1.weight"] = torch.zeros(10, 64)
    path = _save(state, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match=r"shape mismatch blocks\.2\.mlp\.fc1\.weight") as err:
        timm.create_model("mae_vit_base", preset="tiny", **{"weights.vit": path})
    assert "blocks.1" not in str(err.value)  # only the bad key is listed
    del state["blocks.2.mlp.fc1.weight"]
    state["dist_token"] = torch.zeros(1, 1, 64)
    with pytest.raises(ValueError, match=r"unexpected key dist_token[\s\S]*missing key blocks\.2\.mlp\.fc1\.weight"):
        timm.create_model("mae_vit_base", preset="tiny", **{"weights.vit": _save(state, tmp_path / "b2.pt")})
    with pytest.raises(ValueError, match="pos_embed"):  # a checkpoint for another grid
        timm.create_model("mae_vit_small", preset="tiny",
                          **{"weights.vit": _save(timm.create_model("mae_pretrain_vit_small", preset="paper")
                                                  .exports()["weights.vit"], tmp_path / "p.pt")})


def test_override_keys_are_checked():
    with pytest.raises(ValueError, match=r"mae\.mask_ratio: 1\.0 is not allowed"):
        pretrain(**{"mae.mask_ratio": 1.0})
    with pytest.raises(ValueError, match=r"unknown override key\(s\) mae\.mask_ratio"):
        timm.create_model("mae_vit_base", preset="tiny", **{"mae.mask_ratio": 0.5})
    with pytest.raises(ValueError, match="mae.pretrain: 'imagenet' is not allowed"):
        timm.create_model("mae_vit_base", preset="tiny", **{"mae.pretrain": "imagenet"})


def test_recipes_and_where_fine_tuning_starts():
    with torch.device("meta"):
        base = timm.create_model("mae_vit_base")
        small = timm.create_model("mae_vit_small")
        small_deit = timm.create_model("mae_vit_small", **{"mae.supervised": "deit"})
        tiny_sup = timm.create_model("mae_vit_base", preset="tiny", **{"mae.pretrain": "supervised_in1k"})
        maes = timm.create_model("mae_vit_base", **{"mae.recipe": "mae"})
        tiny = timm.create_model("mae_vit_base", preset="tiny")
    r = base.recipe
    assert (r.optimizer, r.lr, r.batch_size, r.schedule, r.augment) == ("adam", 1e-4, 32, "step", "mae")
    assert get_recipe(base, "affectnet").sampler == "heavy" and get_recipe(base, "rafdb").sampler == "none"
    assert get_recipe(tiny, "affectnet").sampler == "sqrt" and get_recipe(tiny, "rafdb").sampler == "none"
    assert r.init == {"weights.vit": "file:mae_faces_vit_base.pth"} and r.stand_in == {"weights.vit": "stage:mae_faces"}
    assert small.recipe.init == {"weights.vit": "file:vit_small_patch16_224.augreg_in1k.pth"}  # AugReg
    assert small_deit.recipe.init == {"weights.vit": "file:deit_small_patch16_224-cd65a155.pth"}
    assert tiny_sup.recipe.init == {"weights.vit": "stage:sup_generic"}
    assert maes.recipe.layer_decay == 0.65 and maes.recipe.optimizer == "adamw"
    # "same as MAE" at the authors' effective batch 32 (16 x 2) and MAE's lr rule, with MAE's mixing
    m = maes.recipe
    assert (m.batch_size, m.accum_steps, m.lr) == (16, 2, pytest.approx(5e-4 * 32 / 256))
    assert (m.mixup, m.cutmix, m.mix_smoothing) == (0.8, 1.0, 0.1)
    # the public script: 120 epochs, x0.1 at 35, 65, 95, and no drop path
    assert (r.epochs, r.milestones, r.lr_gamma) == (120, (35 / 120, 65 / 120, 95 / 120), 0.1)
    assert max(getattr(b.drop_path1, "drop_prob", 0.0) for b in base.blocks) == 0.0
    assert max(getattr(b.drop_path1, "drop_prob", 0.0) for b in maes.blocks) == pytest.approx(0.1)
    assert small.patch_embed.proj.kernel_size == (16, 16)  # not the public code's 32


def test_variants_are_timms_vit_16s():
    """Same parameter names and shapes as timm's ViT-T/S/B/16 (so the same network, FLOPs included)."""
    for variant in VARIANTS:
        with torch.device("meta"):
            ours = timm.create_model(f"mae_vit_{variant}", preset="paper")
            ref = timm.create_model(f"vit_{variant}_patch16_224", pretrained=False, num_classes=7)
        assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in ref.state_dict().items()}
        assert type(ours).forward_features is type(ref).forward_features  # timm's forward, unchanged


@pytest.mark.slow
def test_flops_command_is_the_classification_forward():
    from harness.cli import main

    for variant, gflops in (("base", 17.582), ("small", 4.608), ("tiny", 1.258)):  # fvcore's ViT-B/S/T/16 at 224
        out = io.StringIO()
        with redirect_stdout(out):
            assert main(["flops", f"mae_vit_{variant}", "--preset", "paper", "--json"]) == 0
        got = json.loads(out.getvalue())
        ref = count_flops(timm.create_model(f"vit_{variant}_patch16_224", pretrained=False, num_classes=7), 224)
        assert got["gflops"] == ref["gflops"] == pytest.approx(gflops, abs=1e-3)
        assert got["tokens_before_head"] == 197  # no masking, no decoder


def test_norm_pix_takes_yaml_booleans_only():
    model = timm.create_model("mae_pretrain_vit_tiny", preset="tiny", **{"mae.norm_pix": False})
    assert model.norm_pix is False  # before, true/false were refused and 1/0 accepted
    with pytest.raises(ValueError, match="mae.norm_pix: 1 is not allowed; allowed values: true, false"):
        timm.create_model("mae_pretrain_vit_tiny", preset="tiny", **{"mae.norm_pix": 1})


@pytest.mark.parametrize("table", ["mae_tab1", "mae_tab2"])
def test_specs_read_affectnet_as_the_8_class_protocol(table):
    from harness.specs import load_spec

    spec = load_spec(table)
    (affectnet,) = [c for c in spec.datasets if c.key == "affectnet"]
    assert affectnet.protocol == "8class"  # the PF-ViT paper quotes 61.73 / 62.42 as AffectNet-8
    if table == "mae_tab1":
        assert spec.paper_value("MAE / AffectNet", "ferplus") == 89.00  # the prose, without augmentation
        assert spec.paper_value("MAE / IN1K", "ferplus") is None
