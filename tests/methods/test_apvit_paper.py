"""APViT as published: per-dataset recipes, normalisation, LANet variants, the two inference
shortcuts (same numbers), and whole-model checkpoints in the official release's layout."""
from __future__ import annotations

import pytest
import timm
import torch
import torch.nn as nn

import methods  # noqa: F401
from methods.apvit import (APViT, ArchConfig, CANONICAL_CLASSES, OFFICIAL_CLASSES, PAPER_DATASETS,
                           _DEFAULT_POOLING, convert_official_state_dict, paper_pooling)
from methods.interface import get_recipe
from methods.layers.ir50 import Subsample
from methods.layers.pooling import topk_pool

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def test_paper_recipes_per_dataset():
    with torch.device("meta"):
        model = timm.create_model("apvit", preset="paper")
    got = {d: (r.name, r.lr, r.epochs if r.iterations is None else None, r.iterations, r.sampler)
           for d, r in model.recipes.items()}
    assert got == {"rafdb": ("rafdb", 1e-3, 40, None, "sqrt"), "ferplus": ("ferplus", 1e-3, 20, None, "sqrt"),
                   "sfew": ("sfew", 1e-3, 40, None, "sqrt"), "affectnet": ("affectnet", 5e-4, None, 6000, "heavy"),
                   "expw": ("expw", 5e-4, None, 9000, "sqrt")}
    assert get_recipe(model, "affectnet").iterations == 6000
    assert get_recipe(model, "faceid") is model.recipe and model.recipe.name == "rafdb"
    assert paper_pooling("sfew") == {"app.k": 120, "atp.r": 0.9} and paper_pooling("expw") == {"app.k": 80, "atp.r": 0.6}
    assert {d: v["k"] for d, v in PAPER_DATASETS.items()} == {"rafdb": 160, "ferplus": 160, "sfew": 120,
                                                              "affectnet": 160, "expw": 80}


def test_tiny_recipes_keep_the_tiny_budget():
    with torch.device("meta"):
        model = timm.create_model("apvit", preset="tiny")
    base = model.recipe
    for name, r in model.recipes.items():
        assert (r.lr, r.epochs, r.iterations, r.batch_size) == (base.lr, base.epochs, base.iterations, base.batch_size)
        assert r.name == name and r.sampler == ("heavy" if name == "affectnet" else base.sampler)


@pytest.mark.parametrize("name", ["apvit", "apvit_baseline", "transfer"])
def test_imagenet_normalisation_by_default(name):
    with torch.device("meta"):
        for preset in ("paper", "tiny"):
            r = timm.create_model(name, preset=preset).recipe
            assert (tuple(r.mean), tuple(r.std)) == IMAGENET
    with torch.device("meta"):
        face = timm.create_model("faceid_ir50", preset="tiny").recipe
    assert tuple(face.mean) == tuple(face.std) == (0.5, 0.5, 0.5)  # face.evoLVe's own constants


def test_lanet_code_variant_has_the_batchnorms_and_a_sigmoid():
    paper = timm.create_model("apvit", preset="tiny", **{"app.criterion": "lanet"})
    code = timm.create_model("apvit", preset="tiny", **{"app.criterion": "lanet", "app.lanet_variant": "code"})
    assert not any(isinstance(m, nn.BatchNorm1d) for m in paper.app_criterion.modules())
    bns = [n for n, m in code.app_criterion.named_modules() if isinstance(m, nn.BatchNorm1d)]
    assert bns == ["bn1", "bn2"] and "app_criterion.bn1.running_mean" in code.state_dict()
    code.eval()
    scores = code.app_criterion(torch.randn(2, 36, 64))
    assert scores.shape == (2, 36) and bool(((scores > 0) & (scores < 1)).all())
    nn.init.normal_(code.head.weight)  # zero-initialised: no gradient would reach LANet on step one
    code(torch.randn(2, 3, 48, 48)).square().sum().backward()
    assert code.app_criterion.fc1.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="app.lanet_variant.*allowed values: paper, code"):
        timm.create_model("apvit", preset="tiny", **{"app.lanet_variant": "bn"})


@pytest.mark.parametrize("stride, size", [(1, 7), (2, 14), (2, 7)])
def test_shortcut_slice_equals_maxpool_1x1(stride, size):
    x = torch.randn(2, 3, size, size)
    assert torch.equal(Subsample(stride)(x), nn.MaxPool2d(1, stride)(x))


def _reference_features(model: APViT, x: torch.Tensor) -> torch.Tensor:
    """APP as before the fold: concatenate the class token, then top-k with a prefix."""
    _, k_eff, r = model.current_keep()
    feats = model.patch_embed(model.backbone_norm(model.backbone(x)))
    scores = model.app_criterion(feats)
    tokens = torch.cat([(model.cls_token + model.pos_embed[:, :1]).expand(x.shape[0], -1, -1),
                        feats + model.pos_embed[:, 1:]], dim=1)
    tokens, _ = topk_pool(tokens, scores, k_eff, 1)
    for i, blk in enumerate(model.blocks):
        tokens = blk(tokens, r if i in model.atp_blocks else None)
    return model.norm(tokens)


def test_app_single_gather_gives_the_same_tokens():
    torch.manual_seed(0)
    model = timm.create_model("apvit", preset="tiny").eval()
    x = torch.randn(3, 3, 48, 48)
    with torch.no_grad():
        assert torch.equal(model.forward_features(x), _reference_features(model, x))
    assert model.token_trace["blocks"][0] == 1 + model.current_keep()[1]


# ---------------------------------------------------------------------------------------------
# The official release's layout (mmcls PoolingVitClassifier), written independently of the loader


SMALL = ArchConfig(img_size=32, ir50_widths=(8, 16, 32), ir50_depths=(1, 2, 2), ir50_stem=8, embed_dim=32,
                   depth=2, num_heads=2)


def to_official(state: dict[str, torch.Tensor], depths: tuple[int, ...]) -> dict[str, torch.Tensor]:
    """Our state dict -> the official checkpoint's names and shapes."""
    starts = [sum(depths[:i]) for i in range(len(depths))]
    out = {}
    for key, v in state.items():
        if key.startswith("backbone.body."):
            unit, rest = key.split(".", 3)[2:]
            stage = max(i for i, s in enumerate(starts) if s <= int(unit))
            out[f"extractor.body.{stage}.{int(unit) - starts[stage]}.{rest}"] = v
        elif key.startswith("backbone."):
            out["extractor." + key[len("backbone."):]] = v
        elif key.startswith("patch_embed.proj."):
            out["vit.projs.0." + key.rsplit(".", 1)[1]] = v
        elif key == "pos_embed":
            out["vit.cls_pos_embed"], out["vit.patch_pos_embed"] = v[:, :1], v[:, 1:]
        elif key.startswith("app_criterion.fc"):
            conv = "LA_conv1" if ".fc1." in key else "LA_conv2"
            out[f"vit.attn_f.{conv}.{key.rsplit('.', 1)[1]}"] = v[:, :, None, None] if v.dim() == 2 else v
        elif key.startswith("app_criterion."):
            out["vit.attn_f." + key[len("app_criterion."):]] = v
        elif key.startswith("head."):
            n = v.shape[0]
            inv = torch.tensor([CANONICAL_CLASSES.index(c) for c in OFFICIAL_CLASSES[:n]])
            out["head.fc." + key.rsplit(".", 1)[1]] = v[inv]  # official order
        else:
            out["vit." + key] = v
    return out


def _small(seed: int, **pooling) -> APViT:
    torch.manual_seed(seed)
    model = APViT(SMALL, {**_DEFAULT_POOLING, "app.k": 120, **pooling})
    with torch.no_grad():
        for p in model.parameters():
            p.normal_()  # the head too (zero-initialised otherwise)
    return model


def test_official_checkpoint_loads_strictly_and_permutes_the_head(tmp_path):
    src = _small(0, **{"app.criterion": "lanet", "app.lanet_variant": "code"}).eval()
    official = to_official(src.state_dict(), SMALL.ir50_depths)
    assert {"extractor.body.1.1.res_layer.1.weight", "vit.projs.0.weight", "vit.cls_pos_embed",
            "vit.attn_f.LA_conv1.weight", "vit.attn_f.bn2.running_var", "head.fc.weight"} <= set(official)
    path = tmp_path / "apvit_official.pth"
    torch.save({"meta": {"epoch": 40}, "state_dict": official}, path)  # an mmcv checkpoint
    dst = _small(1, **{"app.criterion": "lanet", "app.lanet_variant": "code"}).eval()
    report = dst.load_model_checkpoint(str(path))
    assert len(report.loaded) == len(src.state_dict())
    assert all(torch.equal(v, dst.state_dict()[k]) for k, v in src.state_dict().items())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(src(x), dst(x))
    # row "anger" of the official head is our class "anger"
    assert torch.equal(dst.head.weight[CANONICAL_CLASSES.index("anger")],
                       official["head.fc.weight"][OFFICIAL_CLASSES.index("anger")])


def test_official_checkpoint_with_a_renamed_key_fails_naming_it(tmp_path):
    official = to_official(_small(0).state_dict(), SMALL.ir50_depths)
    official["vit.blocks.0.attn.qkv_w"] = official.pop("vit.blocks.0.attn.qkv.weight")
    official["vit.alpha"] = torch.tensor(1.0)  # sum_batch_mean's parameter: no counterpart here
    path = tmp_path / "renamed.pth"
    torch.save({"state_dict": official}, path)
    with pytest.raises(ValueError) as err:
        _small(1).load_model_checkpoint(str(path))
    msg = str(err.value)
    assert "unexpected key vit.blocks.0.attn.qkv_w" in msg and "unexpected key vit.alpha" in msg
    assert "missing key vit.blocks.0.attn.qkv.weight" in msg


def test_official_layout_shapes_match_the_paper_model():
    with torch.device("meta"):
        model = timm.create_model("apvit", preset="paper")
    ours = model.state_dict()
    official = to_official(ours, model.arch.ir50_depths)
    assert official["vit.patch_pos_embed"].shape == (1, 196, 768) and official["vit.projs.0.weight"].shape == (768, 256, 1, 1)
    assert "extractor.body.2.13.res_layer.4.running_var" in official  # stage 3 (index 2), 14 units
    converted, origin = convert_official_state_dict(official, model.arch.ir50_depths)
    assert set(converted) == set(ours)
    assert all(tuple(converted[k].shape) == tuple(ours[k].shape) for k in ours)
    assert origin["backbone.body.20.res_layer.1.weight"] == "extractor.body.2.13.res_layer.1.weight"


def test_canonical_order_is_the_harness_order():
    from harness.data.labels import CANONICAL_CLASSES as HARNESS

    assert CANONICAL_CLASSES == HARNESS and sorted(OFFICIAL_CLASSES) == sorted(HARNESS)


def test_weights_model_through_create_model(tmp_path):
    src = timm.create_model("apvit", preset="tiny")
    path = tmp_path / "ours.pth"
    torch.save(src.state_dict(), path)
    dst = timm.create_model("apvit", preset="tiny", **{"weights.model": str(path)})
    assert "weights.model" in dst.weight_reports
    assert all(torch.equal(v, dst.state_dict()[k]) for k, v in src.state_dict().items())
