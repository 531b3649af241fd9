"""Neural Resizer through timm.create_model: Table 2's settings, the STN, the backbones, weights, the SR stage."""
from __future__ import annotations

import pytest
import timm
import torch

import methods  # noqa: F401
from harness.run.train.flops import count_flops
from methods.interface import get_exports, training_step
from methods.layers.resizer import FaceSR, LearnedResizer, SpatialTransformer, resize
from methods.nr import BACKBONES, PRESETS, describe_overrides

X = torch.randn(3, 3, 24, 24, generator=torch.Generator().manual_seed(0))

# Table 2 of the paper, as the overrides its spec (tables/nr_tab2.yaml) writes.
TABLE2 = {
    "a": {"nr.up": "bilinear", "nr.down": "none"},
    "b": {"nr.up": "bilinear", "nr.down": "ltr"},
    "c": {"nr.up": "sr", "nr.down": "bilinear"},
    "d": {"nr.up": "sr", "nr.down": "ltr"},
    "e": {"nr.up": "sr", "nr.down": "ltr", "nr.stn": True, "nr.backbone": "swin_base_patch4_window7_224"},
}
# Published ImageNet-1k GMACs at 224 (the timm / paper model cards); fvcore counts MACs as well.
PUBLISHED_GMACS = {"vit_small_patch16_224": 4.6, "deit_small_patch16_224": 4.6, "convit_small": 5.4,
                   "xcit_small_12_p16_224": 4.8, "swin_tiny_patch4_window7_224": 4.5,
                   "swin_small_patch4_window7_224": 8.7, "swin_base_patch4_window7_224": 15.4}
# Table 1's families and Tables 2-3's Swins. Building and counting all seven at 224 takes about a
# minute on 2 cores, so the fast suite counts the two smallest, one per family of layer code the
# tables lean on (timm's VisionTransformer, which DeiT-S also is; and Swin, whose S and B are T
# deeper and wider); ConViT, XCiT, DeiT and Swin-S/B are marked slow.
FAST_FLOPS = ("vit_small_patch16_224", "swin_tiny_patch4_window7_224")


def tiny(**overrides) -> torch.nn.Module:
    return timm.create_model("nr_vit", preset="tiny", **overrides)


@pytest.mark.parametrize("setting", sorted(TABLE2))
def test_every_table2_setting_is_an_override_with_the_right_shapes(setting):
    model = tiny(**TABLE2[setting]).train()
    cfg = PRESETS["tiny"]
    assert model.resize_input(X).shape == (3, 3, cfg.target, cfg.target)
    out = model(X)
    assert out.shape == (3, 8)
    out.square().sum().backward()
    assert (model.resizer is not None) == (TABLE2[setting]["nr.down"] == "ltr")
    assert (model.sr is not None) == (TABLE2[setting]["nr.up"] == "sr")
    assert (model.stn is not None) == TABLE2[setting].get("nr.stn", False)
    if model.resizer is not None:
        assert model.resizer.head[0].weight.grad is not None  # trained jointly with the backbone
    if model.sr is not None:  # frozen (Fig. 1: f_sr takes no part in the update)
        assert not any(p.requires_grad for p in model.sr.parameters())
        assert model.recipe.init["weights.sr"] == "stage:sr_faces"  # the SR network starts from its stage at tiny


def test_vanilla_is_one_interpolation_and_sr_bilinear_goes_through_the_high_resolution():
    a, c = tiny(**TABLE2["a"]), tiny(**TABLE2["c"])
    direct = torch.nn.functional.interpolate(X, size=(32, 32), mode="bilinear", align_corners=False)
    assert torch.equal(a.resize_input(X), direct)
    sr_out = c.sr(X)
    assert sr_out.shape[-1] == PRESETS["tiny"].hr_size == 48
    assert torch.equal(c.resize_input(X), resize(sr_out, 32))


def test_stn_is_the_identity_at_initialisation():
    stn = SpatialTransformer()
    x = torch.randn(2, 3, 24, 24)
    torch.testing.assert_close(stn(x), x, atol=1e-5, rtol=0)
    # ... and a model with the STN resizes exactly what the model without it resizes
    with_stn, without = tiny(**{**TABLE2["b"], "nr.stn": True}), tiny(**TABLE2["b"])
    without.load_state_dict({k: v for k, v in with_stn.state_dict().items() if not k.startswith("stn.")})
    torch.testing.assert_close(with_stn.eval()(X), without.eval()(X), atol=1e-5, rtol=0)
    # the regressor does move once trained: its last layer gets a gradient
    with_stn.train()(X).sum().backward()
    assert with_stn.stn.theta.weight.grad.abs().sum() > 0


def test_learned_resizer_layout_and_untrained_skip():
    ltr = LearnedResizer(32, blocks=2, filters=16)
    assert len(ltr.blocks) == 2 and ltr.head[0].kernel_size == (7, 7) and ltr.tail.kernel_size == (7, 7)
    x = torch.randn(2, 3, 48, 48)
    torch.nn.init.zeros_(ltr.tail.weight)
    torch.nn.init.zeros_(ltr.tail.bias)  # main path silenced: only the bilinear image skip is left
    torch.testing.assert_close(ltr(x), resize(x, 32))


def test_face_sr_starts_near_bicubic():
    sr = FaceSR(scale=2, channels=8, blocks=1)
    torch.nn.init.zeros_(sr.up[0].weight)
    torch.nn.init.zeros_(sr.up[0].bias)
    x = torch.randn(2, 3, 12, 12)
    torch.testing.assert_close(sr(x), resize(x, 24, "bicubic"))


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_every_backbone_builds_through_timm_at_tiny(name):
    model = tiny(**{"nr.backbone": name, **TABLE2["a"]})
    assert model.backbone.pretrained_cfg["architecture"] == name  # a timm model of that family
    assert type(model.backbone).__module__.startswith("timm.models.")
    assert model(X[:2]).shape == (2, 8)
    assert sum(p.numel() for p in model.parameters()) < 1.5e6  # reduced depth and width


@pytest.mark.parametrize("name", [pytest.param(n, marks=() if n in FAST_FLOPS else pytest.mark.slow)
                                  for n in PUBLISHED_GMACS])
def test_every_backbone_counts_its_published_flops_at_paper(name):
    model = timm.create_model("nr_vit", preset="paper", **{"nr.backbone": name, **TABLE2["a"]})
    flops = count_flops(model, PRESETS["paper"].img_size)
    assert flops["gflops"] == pytest.approx(PUBLISHED_GMACS[name], rel=0.07)
    assert model.recipe.img_size == 48 and model.cfg.target == 224  # FERPlus's 48x48 reaches a 224 backbone


def test_paper_recipe_and_where_training_starts():
    with torch.device("meta"):
        d = timm.create_model("nr_vit", preset="paper", **TABLE2["d"])
        a = timm.create_model("nr_vit", preset="paper", **TABLE2["a"])
    r = d.recipe
    assert (r.optimizer, r.lr, r.epochs, r.batch_size, r.schedule, r.lr_gamma) == ("adam", 1e-4, 100, 64, "step", 0.75)
    assert r.milestones == pytest.approx([i / 10 for i in range(1, 10)])  # "one quarter every 10 epochs"
    assert r.init == {"weights.backbone": "file:swin_small_patch4_window7_224.pth", "weights.sr": "file:nr_face_sr_x8.pth"}
    assert r.stand_in == {"weights.backbone": "stage:generic_swin_s", "weights.sr": "stage:sr_faces"}
    assert set(a.recipe.init) == {"weights.backbone"}  # no SR network, no weights.sr


@pytest.mark.parametrize("overrides, needle", [
    ({"nr.backbone": "resnet50"}, "nr.backbone: 'resnet50' is not allowed"),
    ({"nr.up": "nearest"}, "allowed values: bilinear, bicubic, sr"),
    ({"nr.down": "none", "nr.up": "sr"}, "nr.down: none is not allowed with nr.up: sr"),
    ({"nr.stn": 1}, "nr.stn: 1 is not allowed; allowed values: true, false"),
    ({"nr.ltr_blocks": 9}, "nr.ltr_blocks"),
    ({"weights.sr": "x.pth", "nr.up": "bilinear"}, "weights.sr: the model has no SR network"),
    ({"nr.k": 3}, "unknown override key(s) nr.k"),
])
def test_bad_overrides_name_the_key(overrides, needle):
    with pytest.raises(ValueError, match=None) as err:
        tiny(**overrides)
    assert needle in str(err.value)


def test_describe_overrides_lists_every_key_with_its_default():
    keys = describe_overrides("nr_vit", "tiny")
    assert keys["nr.up"]["default"] == "sr" and keys["nr.down"]["default"] == "ltr"
    assert keys["nr.ltr_blocks"]["default"] == 1 and keys["nr.ltr_filters"]["default"] == 8
    assert describe_overrides("nr_vit", "paper")["nr.ltr_filters"]["default"] == 16  # the reference configuration
    assert tiny(**TABLE2["b"]).resizer.tail.in_channels == 8
    assert tiny(**TABLE2["b"], **{"nr.ltr_filters": 16}).resizer.tail.in_channels == 16


def test_backbone_and_sr_weights_load_strictly(tmp_path):
    src = tiny(**TABLE2["d"])
    torch.save(src.backbone.state_dict(), tmp_path / "backbone.pth")
    torch.save(src.sr.state_dict(), tmp_path / "sr.pth")
    dst = tiny(**TABLE2["d"], **{"weights.backbone": str(tmp_path / "backbone.pth"), "weights.sr": str(tmp_path / "sr.pth")})
    for key in ("backbone.layers.0.blocks.0.attn.qkv.weight", "sr.head.weight"):
        assert torch.equal(dst.state_dict()[key], src.state_dict()[key])
    assert set(dst.weight_reports["weights.backbone"].ignored) == {"head.fc.weight", "head.fc.bias"}
    mlp = tiny(**TABLE2["d"], **{"nr.head": "mlp", "weights.backbone": str(tmp_path / "backbone.pth")})
    assert not mlp.backbone.state_dict().get("head.fc.weight")  # nr.head: mlp builds the backbone without one
    # a checkpoint with a classifier (timm's linear head, or an ImageNet file) loads but for it
    torch.save(tiny(**TABLE2["d"]).backbone.state_dict(), tmp_path / "with_head.pth")
    for head in ("mlp", "linear"):
        report = tiny(**TABLE2["d"], **{"nr.head": head, "weights.backbone": str(tmp_path / "with_head.pth")})
        assert set(report.weight_reports["weights.backbone"].ignored) == {"head.fc.weight", "head.fc.bias"}
    # another family's checkpoint is refused, listing the keys
    torch.save(tiny(**{"nr.backbone": "vit_small_patch16_224"}).backbone.state_dict(), tmp_path / "vit.pth")
    with pytest.raises(ValueError, match="missing key layers.0"):
        tiny(**{"weights.backbone": str(tmp_path / "vit.pth")})


def test_sr_stage_trains_sr_by_l1_and_a_detached_probe_and_exports_weights_sr():
    stage = timm.create_model("nr_sr", preset="tiny", num_classes=5)
    hr = torch.rand(4, 3, 48, 48)
    y = torch.tensor([0, 1, 2, 3])
    terms = training_step(stage, hr, y, torch.nn.CrossEntropyLoss())
    assert set(terms) == {"l1", "probe"}
    terms["probe"].backward(retain_graph=True)
    assert stage.sr.head.weight.grad is None  # the probe's term reaches the probe only
    terms["l1"].backward()
    assert stage.sr.head.weight.grad is not None
    assert stage(hr).shape == (4, 5)  # forward: the probe's logits, for the record's accuracy
    exported = get_exports(stage)["weights.sr"]
    consumer = tiny(**TABLE2["d"])
    consumer.sr.load_state_dict(exported)  # the layout nr_vit's weights.sr loads
    assert stage.recipe.img_size == PRESETS["tiny"].hr_size


def test_paper_schedule_multiplies_the_lr_by_three_quarters_every_tenth():
    from harness.run.train.optim import build_scheduler

    with torch.device("meta"):
        recipe = timm.create_model("nr_vit", preset="paper", **TABLE2["a"]).recipe
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=recipe.lr)
    sched = build_scheduler(opt, recipe, steps_per_epoch=1)  # 100 epochs of one step
    lrs = []
    for _ in range(100):
        lrs.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    assert lrs[9] == pytest.approx(1e-4) and lrs[10] == pytest.approx(0.75e-4)
    assert lrs[99] == pytest.approx(1e-4 * 0.75 ** 9)


def test_code_schedule_is_steplr_15_of_100_epochs_times_a_quarter():
    from harness.run.train.optim import build_scheduler

    with torch.device("meta"):
        recipe = timm.create_model("nr_vit", preset="paper", **TABLE2["a"], **{"nr.schedule": "code"}).recipe
        tiny_recipe = timm.create_model("nr_vit", preset="tiny", **TABLE2["a"], **{"nr.schedule": "code"}).recipe
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=recipe.lr)
    sched = build_scheduler(opt, recipe, steps_per_epoch=1)  # 100 epochs of one step
    lrs = []
    for _ in range(recipe.epochs):
        lrs.append(sched.get_last_lr()[0] / recipe.lr)
        opt.step()
        sched.step()
    # the public code's StepLR(step_size=15, gamma=0.25) over its 100 epochs: x0.25 at 15, 30, ..., 90
    assert recipe.epochs == 100 and lrs == pytest.approx([0.25 ** (epoch // 15) for epoch in range(100)])
    # tiny keeps the shape over its shorter run: the same fractions and factor
    assert (tiny_recipe.milestones, tiny_recipe.lr_gamma) == (recipe.milestones, recipe.lr_gamma)


def test_head_is_the_public_codes_mlp_at_paper_and_timms_linear_at_tiny():
    mlp, linear = tiny(**{"nr.head": "mlp"}), tiny()
    layers = [type(m).__name__ for m in mlp.head]
    assert layers == ["Linear", "BatchNorm1d", "ReLU", "Dropout", "Linear"] and mlp.head[3].p == 0.5
    assert mlp.head[0].out_features == PRESETS["tiny"].head_hidden and mlp.head[-1].out_features == 8
    assert linear.head is None and linear.backbone.head.fc.out_features == 8
    with torch.device("meta"):
        paper = timm.create_model("nr_vit", preset="paper", **TABLE2["e"])
    assert paper.head[0].in_features == 1024 and paper.head[0].out_features == 512  # Swin-B: 1024 -> 512
    for model in (mlp.eval(), linear.eval()):
        assert model(X).shape == (3, 8)


def test_table3_vanilla_rows_use_the_proposed_backbone_and_losses_take_the_codes_alphas():
    from harness.specs import load_spec

    spec = load_spec("nr_tab3")
    rows = {row.label: row for row in spec.rows}
    vanilla = [r for label, r in rows.items() if label.endswith("/ Vanilla")]
    assert len(vanilla) == 3 and all(r.set["nr.backbone"] == "swin_base_patch4_window7_224" for r in vanilla)
    assert all(r.set["nr.backbone"] == "swin_tiny_patch4_window7_224" for label, r in rows.items() if "Swin-T reading" in label)
    for label, row in rows.items():
        kwargs = row.set["train.loss_kwargs"]
        if label.startswith("PDLS"):
            assert kwargs["alpha"] == 0.5
        if label.startswith("F-PDLS"):
            assert kwargs["alpha"] == 0.8 and kwargs["gamma"] == 2.0
    tab2 = load_spec("nr_tab2")
    table2 = {row.label[:3]: tab2.resolved(row)[1] for row in tab2.rows}
    assert table2["(a)"]["train.loss"] == "ce" and table2["(b)"]["train.loss"] == "fpdls"


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_tiny_backbones_start_from_their_generic_stage_whose_export_loads_strictly(name, tmp_path):
    from harness.stages import load_stage

    model = tiny(**{"nr.backbone": name, **TABLE2["a"]})
    stage_id = model.recipe.init["weights.backbone"].removeprefix("stage:")
    spec = load_stage(stage_id)  # tables/stages/<id>.yaml exists and validates
    assert (spec.method, spec.dataset, spec.provides) == ("nr_backbone", "imagenet", ["weights.backbone"])
    assert spec.set["nr.backbone"] in BACKBONES
    # the stage trains the very architecture the fine-tuning model builds (ViT-S and DeiT-S share one)
    stage = timm.create_model(spec.method, preset="tiny", num_classes=30, **spec.set)
    assert stage.recipe.img_size == PRESETS["tiny"].target  # the backbone's own input size
    assert stage(torch.rand(2, 3, 32, 32)).shape == (2, 30)
    path = tmp_path / "weights.backbone.pt"
    torch.save(get_exports(stage)["weights.backbone"], path)
    loaded = tiny(**{"nr.backbone": name, **TABLE2["a"], "weights.backbone": str(path)})
    report = loaded.weight_reports["weights.backbone"]
    assert report.ignored and all(".".join(k.split(".")[:1]) == "head" for k in report.ignored)  # only the classifier
    for k in report.loaded:
        assert torch.equal(loaded.backbone.state_dict()[k], stage.backbone.state_dict()[k]), k


def test_backbone_stage_rejects_other_keys_and_its_export_refuses_another_size(tmp_path):
    with pytest.raises(ValueError, match="allowed keys: nr.backbone"):
        timm.create_model("nr_backbone", preset="tiny", **{"nr.up": "sr"})
    with pytest.raises(ValueError, match="nr.backbone: 'resnet50' is not allowed"):
        timm.create_model("nr_backbone", preset="tiny", **{"nr.backbone": "resnet50"})
    swin_b = timm.create_model("nr_backbone", preset="tiny", num_classes=30,
                               **{"nr.backbone": "swin_base_patch4_window7_224"})
    torch.save(get_exports(swin_b)["weights.backbone"], tmp_path / "b.pt")
    with pytest.raises(ValueError, match="shape"):  # Swin-B's stage does not load into Swin-S
        tiny(**{"weights.backbone": str(tmp_path / "b.pt")})
