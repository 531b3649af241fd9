"""PF-ViT through timm.create_model: separator, discriminator, losses, optimisers, test-time path, weights."""
from __future__ import annotations

import pytest
import timm
import torch
import torch.nn as nn

import methods  # noqa: F401
from harness.data.labels import CANONICAL_CLASSES
from harness.run.train.runner import Stepper
from harness.run.train.optim import build_optimizers, optimizer_plan
from methods.pfvit import GENERATOR_TERMS, TokenSeparator, describe_overrides, poker_face_loss
from tests.harness.conftest import harness_env, synth_cache  # noqa: F401  (fixtures of the record test)

CE = nn.CrossEntropyLoss()


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: several GAN passes per step on a shared 2-core machine thrash with more."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny(**overrides) -> nn.Module:
    torch.manual_seed(0)
    return timm.create_model("pfvit", preset="tiny", **overrides)


def batch(y: list[int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(len(y), 3, 48, 48, generator=g), torch.tensor(y)


def test_separator_parts_sum_back_to_its_input():
    sep = TokenSeparator(96)
    nn.init.normal_(sep.fc2.weight)  # a mask far from 0.5 everywhere
    z = torch.randn(4, 65, 96)
    z_e, z_r, m = sep(z)
    assert z_e.shape == z_r.shape == m.shape == z.shape
    assert ((m > 0) & (m < 1)).all() and m.std() > 0.1  # an element-wise selection, not a constant split
    torch.testing.assert_close(z_e + z_r, z)
    torch.testing.assert_close(z_e, m * z)


@pytest.mark.parametrize("num_classes", [7, 8])
def test_discriminator_has_k_plus_one_outputs(num_classes):
    model = tiny(num_classes=num_classes)
    x, _ = batch([0, 1])
    assert model.discriminator(x).shape == (2, num_classes + 1)
    assert tiny(**{"pfvit.disc": "real_fake"}).discriminator(x).shape == (2, 1)
    assert tiny(**{"pfvit.disc": "none"}).discriminator is None


def test_poker_face_term_is_zero_for_non_neutral_samples():
    neutral = CANONICAL_CLASSES.index("neutral")
    assert describe_overrides()["pfvit.neutral"]["default"] == neutral == 0  # every loader's canonical order
    x, y = batch([neutral, 1, 2, 3])
    poker = torch.randn_like(x, requires_grad=True)
    loss = poker_face_loss(poker, x, y, neutral)
    loss.backward()
    assert loss > 0
    assert poker.grad[0].abs().sum() > 0 and poker.grad[1:].abs().sum() == 0  # only the neutral sample counts
    changed = poker.detach().clone()
    changed[1:] += 5.0  # the non-neutral samples' poker faces do not matter
    assert float(poker_face_loss(changed, x, y, neutral)) == pytest.approx(loss.item())
    assert poker_face_loss(poker, x, torch.tensor([1, 2, 3, 4]), neutral) == 0
    # through the model's step: a batch without a neutral face gives exactly 0, one with a neutral face does not
    model = tiny().train()
    assert float(model.training_step(*batch([1, 2, 3, 4]), CE)["rec_poker"]) == 0.0
    assert float(model.training_step(*batch([0, 2, 3, 4]), CE)["rec_poker"]) > 0.0
    other = tiny(**{"pfvit.neutral": 3}).train()  # a dataset whose neutral class is elsewhere
    assert float(other.training_step(*batch([1, 2, 0, 4]), CE)["rec_poker"]) == 0.0


def test_training_step_names_every_term_per_variant():
    x, y = batch([0, 1, 2, 3])
    expected = {
        (): {"ce", "rec", "rec_poker", "orth", "adv_g", "adv_d"},
        (("pfvit.disc", "none"),): {"ce", "rec", "rec_poker", "orth"},
        (("pfvit.separator", False), ("pfvit.disc", "real_fake")): {"ce", "rec", "adv_g", "adv_d"},
        (("pfvit.orth", "none"),): {"ce", "rec", "rec_poker", "orth", "adv_g", "adv_d"},
        (("pfvit.generator", "mae"), ("pfvit.mask_ratio", 0.5)): {"ce", "rec", "rec_poker", "orth", "adv_g", "adv_d"},
    }
    for overrides, names in expected.items():
        model = tiny(**dict(overrides)).train()
        terms = model.training_step(x, y, CE)
        assert set(terms) == names, overrides
        assert all(t.ndim == 0 and torch.isfinite(t) for t in terms.values())
        assert set(model.recipe.optimizers) == ({"generator"} if "adv_d" not in names else {"generator", "discriminator"})
    assert tiny(**{"pfvit.orth": "none"}).face_net is None and tiny(**{"pfvit.separator": False}).face_net is None


def test_term_weights_scale_their_terms():
    x, y = batch([0, 1, 2, 3])
    base = tiny(**{"pfvit.w_adv": 1.0}).train()  # tiny's default is 0.1
    torch.manual_seed(1)
    ref = base.training_step(x, y, CE)
    scaled = tiny(**{"pfvit.w_orth": 2.0, "pfvit.w_adv": 0.5, "pfvit.w_ce": 0.0}).train()
    torch.manual_seed(1)
    got = scaled.training_step(x, y, CE)
    assert float(got["orth"]) == pytest.approx(2 * float(ref["orth"]), rel=1e-5)
    assert float(got["adv_g"]) == pytest.approx(0.5 * float(ref["adv_g"]), rel=1e-5)
    assert float(got["ce"]) == 0.0 and float(got["adv_d"]) == pytest.approx(float(ref["adv_d"]), rel=1e-5)


def test_test_time_forward_touches_no_generator_discriminator_or_feature_network():
    model = tiny().eval()
    model.face_net.requires_grad_(True)  # only so that its parameters take gradient hooks too
    x, _ = batch([0, 1, 2])
    called: list[str] = []
    for name in ("generator", "discriminator", "face_net"):
        for sub, module in getattr(model, name).named_modules():
            module.register_forward_hook(lambda m, i, o, n=f"{name}.{sub}": called.append(n))
            for p in module.parameters(recurse=False):
                if p.requires_grad:
                    p.register_hook(lambda g, n=name: called.append(n))
    logits = model(x)
    logits.square().sum().backward()  # neither forward nor backward reaches them
    assert logits.shape == (3, 7) and called == []
    del model.generator, model.discriminator, model.face_net  # and it still runs without them, unchanged
    with torch.no_grad():
        torch.testing.assert_close(model(x), logits.detach())
    # FLOPs are counted on that path: the same as the encoder + separator + classifier alone
    from harness.run.train.flops import count_flops
    enc = count_flops(tiny().encoder, 48)["gflops"]
    full = count_flops(tiny(), 48)["gflops"]
    assert enc < full < enc * 1.05


def _owned(model: nn.Module, prefixes: tuple[str, ...]) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad and n.startswith(prefixes)}


def test_generator_and_discriminator_optimisers_step_only_their_own_parameters():
    model = tiny().train()
    plan = optimizer_plan(model, model.recipe)
    gen = _owned(model, ("encoder.", "separator.", "head.", "generator."))
    disc = _owned(model, ("discriminator.",))
    assert set(plan["generator"]["params"]) == gen and set(plan["discriminator"]["params"]) == disc
    assert plan["discriminator"]["losses"] == ("adv_d",) and set(plan["generator"]["losses"]) == set(GENERATOR_TERMS)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert {n for n in frozen if n.startswith("face_net.")} == {f"face_net.{n}" for n, _ in model.face_net.named_parameters()}
    assert "encoder.pos_embed" in frozen  # fixed sin-cos, as pre-trained
    opts = build_optimizers(model, model.recipe)
    in_opt = {name: {id(p) for g in o.param_groups for p in g["params"]} for name, o in opts.items()}
    named = dict(model.named_parameters())
    assert in_opt["generator"] == {id(named[n]) for n in gen} and in_opt["discriminator"] == {id(named[n]) for n in disc}
    assert opts["discriminator"].param_groups[0]["betas"] == (0.5, 0.999)

    # Each optimiser gets the gradient of its own terms only: adv_g reaches D in autograd and adv_d reaches
    # G (one D pass serves both), so compare the stepped gradients with autograd's per-term ones.
    x, y = batch([0, 1, 2, 3, 0, 5])
    torch.manual_seed(3)
    terms = model.training_step(x, y, CE)
    g_params = [named[n] for n in sorted(gen)]
    d_params = [named[n] for n in sorted(disc)]
    want_g = torch.autograd.grad(sum(terms[t] for t in GENERATOR_TERMS), g_params, retain_graph=True,
                                 allow_unused=True)
    want_d = torch.autograd.grad(terms["adv_d"], d_params, retain_graph=True)
    leak = torch.autograd.grad(terms["adv_g"], d_params, retain_graph=True)  # what D must not receive
    assert any(l.abs().sum() > 0 for l in leak)
    leak_g = torch.autograd.grad(terms["adv_d"], g_params, retain_graph=True, allow_unused=True)  # nor G
    assert any(l is not None and l.abs().sum() > 0 for l in leak_g)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    Stepper(model, model.recipe, steps_per_epoch=1).step(terms)
    for p, w in zip(g_params, want_g):
        torch.testing.assert_close(p.grad, w if w is not None else torch.zeros_like(p))
    for p, w in zip(d_params, want_d):
        torch.testing.assert_close(p.grad, w)
    moved = {n for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n])}
    assert moved <= gen | disc and moved & disc and moved & gen
    assert not moved & frozen


@pytest.mark.parametrize("extra", [{}, {"pfvit.generator": "mae", "pfvit.mask_ratio": 0.5}])
def test_orthogonality_on_a_sample_is_the_term_of_those_samples(extra):
    """``pfvit.orth_samples: n`` measures orth on the batch's first n samples, whatever the rest holds."""
    whole = tiny(**extra, **{"pfvit.orth_samples": 0}).eval()  # eval: no drop path
    sample = tiny(**extra, **{"pfvit.orth_samples": 3}).eval()
    sample.load_state_dict(whole.state_dict())
    x, y = batch([0, 1, 2, 3, 4, 5])
    with torch.no_grad():
        torch.manual_seed(1)  # the same masks for the first rows (a [3, N] draw is a [6, N] draw's first rows)
        want = whole.training_step(x[:3], y[:3], CE)["orth"]
        torch.manual_seed(1)
        got = sample.training_step(x, y, CE)["orth"]
        assert float(got) == pytest.approx(float(want), rel=1e-5)
        assert float(whole.training_step(x, y, CE)["orth"]) != pytest.approx(float(want), rel=1e-5)
    assert tiny().settings["pfvit.orth_samples"] == 8
    assert timm.create_model("pfvit", preset="paper", **{"pfvit.disc": "none"}).settings["pfvit.orth_samples"] == 0


def test_overrides_are_checked():
    with pytest.raises(ValueError, match="pfvit.mask_ratio: 0.5 needs pfvit.generator: mae"):
        tiny(**{"pfvit.mask_ratio": 0.5})
    with pytest.raises(ValueError, match="pfvit.disc: 'gan' is not allowed; allowed values: emotion, real_fake, none"):
        tiny(**{"pfvit.disc": "gan"})
    with pytest.raises(ValueError, match="pfvit.separator: 1 is not allowed"):
        tiny(**{"pfvit.separator": 1})
    with pytest.raises(ValueError, match="pfvit.w_orth: -1 is not allowed"):
        tiny(**{"pfvit.w_orth": -1})
    with pytest.raises(ValueError, match="pfvit.neutral: 7 is not allowed; allowed values: a class index 0..6"):
        tiny(**{"pfvit.neutral": 7})
    with pytest.raises(ValueError, match="unknown override key"):
        tiny(**{"app.k": 10})
    with pytest.raises(ValueError, match="weights.ir50: '/x.pth' is not used"):
        tiny(**{"pfvit.orth": "none", "weights.ir50": "/x.pth"})


def test_recipe_inits_follow_the_orthogonality_network():
    assert tiny().recipe.init == {"weights.vit": "stage:mae_faces", "weights.mae_decoder": "stage:mae_faces",
                                  "weights.ir50": "stage:faceid_ir50"}
    assert tiny(**{"pfvit.orth": "imagenet"}).recipe.init["weights.ir50"] == "stage:generic_ir50"
    assert tiny(**{"pfvit.orth": "none"}).recipe.init["weights.ir50"] == "none"
    with torch.device("meta"):
        paper = timm.create_model("pfvit")
    r = paper.recipe
    assert (r.optimizer, r.lr, r.batch_size, r.img_size) == ("adam", 2e-5, 32, 224)
    assert r.optimizers["discriminator"]["lr"] == 1e-4
    assert r.init["weights.ir50"] == "file:backbone_ir50_ms1m_epoch120.pth"
    assert r.stand_in["weights.ir50"] == "stage:faceid_ir50"
    assert len(paper.encoder.blocks) == 12 and paper.encoder.embed_dim == 768
    assert len(paper.generator.decoder_blocks) == 8 and paper.generator.decoder_embed.out_features == 512


def test_tiny_trains_like_tiny_mae_vit():
    """The headline compares the two rows: same encoder, epochs, batch and encoder lr at tiny."""
    with torch.device("meta"):
        mae = timm.create_model("mae_vit_base", preset="tiny")
        pf = timm.create_model("pfvit", preset="tiny")
    for field in ("optimizer", "lr", "epochs", "batch_size", "img_size", "augment"):
        assert getattr(pf.recipe, field) == getattr(mae.recipe, field), field
    assert pf.recipe.optimizers["discriminator"]["lr"] == 1e-3
    # the adversarial weight is the tiny preset's only other difference (1 keeps it at the majority class)
    assert pf.settings["pfvit.w_adv"] == describe_overrides("pfvit", "tiny")["pfvit.w_adv"]["default"] == 0.1
    assert describe_overrides()["pfvit.w_adv"]["default"] == 1.0
    assert tiny(**{"pfvit.w_adv": 1.0}).settings["pfvit.w_adv"] == 1.0
    assert pf.encoder.patch_embed.proj.weight.shape == mae.patch_embed.proj.weight.shape
    assert len(pf.encoder.blocks) == len(mae.blocks)


def test_stage_exports_load_strictly(tmp_path):
    torch.manual_seed(0)
    mae = timm.create_model("mae_pretrain_vit_base", preset="tiny")
    faceid = timm.create_model("faceid_ir50", preset="tiny", num_classes=5)
    paths = {}
    for key, state in {**mae.exports(), **faceid.exports()}.items():
        paths[key] = str(tmp_path / f"{key}.pt")
        torch.save(state, paths[key])
    model = tiny(**paths)
    assert set(model.weight_reports) == {"weights.vit", "weights.mae_decoder", "weights.ir50"}
    torch.testing.assert_close(model.encoder.blocks[1].attn.qkv.weight, mae.blocks[1].attn.qkv.weight)
    torch.testing.assert_close(model.generator.decoder_pred.weight, mae.decoder_pred.weight)
    torch.testing.assert_close(model.generator.mask_token, mae.mask_token)
    torch.testing.assert_close(model.discriminator.blocks[0].mlp.fc1.weight, mae.decoder_blocks[0].mlp.fc1.weight)
    torch.testing.assert_close(model.face_net.body[0].res_layer[1].weight, faceid.backbone.body[0].res_layer[1].weight)
    assert not any(p.requires_grad for p in model.face_net.parameters())
    report = model.weight_reports["weights.mae_decoder"]
    assert "discriminator:decoder_pred.weight" in report.ignored and not any(k.startswith("fusion") for k in report.loaded)
    bad = {k: v for k, v in mae.exports()["weights.mae_decoder"].items() if not k.startswith("decoder_norm")}
    torch.save(bad, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="missing key decoder_norm.weight"):
        tiny(**{"weights.mae_decoder": str(tmp_path / "bad.pt")})


@pytest.mark.slow
def test_each_loss_term_is_in_the_records_history(harness_env, tmp_path):
    from harness.run.train import runner
    from harness.run.plan import DataSource, plan_table
    from harness.specs import load_spec
    from harness.store import Store
    from tests.harness.conftest import write_spec

    scratch = {"weights.vit": "none", "weights.mae_decoder": "none", "train.epochs": 2}
    write_spec(harness_env["tables"], "pfvit_step", [{"label": "PF-ViT", "method": "pfvit", "set": scratch}])
    (planned,) = plan_table(load_spec("pfvit_step"), source=DataSource())
    rec = runner.train_cell(planned.cell, Store(tmp_path / "r"), device="cpu")
    hist = rec["timing"]["history"]
    assert len(hist) == 2
    assert all(set(h["losses"]) == {"ce", "rec", "rec_poker", "orth", "adv_g", "adv_d"} for h in hist)
    assert all(h["losses"]["rec_poker"] > 0 for h in hist)  # the stand-in has neutral faces in every epoch
    # the record's cost is the test-time path's
    assert rec["cost"]["tokens_before_head"] == 37  # a 6x6 grid of 8x8 patches at 48 pixels, and the class token


@pytest.mark.parametrize("fusion, reaches", [("separate", True), ("sum", False)])
def test_reconstruction_alone_trains_the_separator_only_when_g_sees_z_e_and_z_r_apart(fusion, reaches):
    """The paper's cross-fusion takes z_e, z_r and the mask tokens as three sequences: ``rec`` then
    constrains the separator. G(z_e + z_r) = G(z) cancels the separator's mask: no gradient."""
    model = tiny(**{"pfvit.fusion": fusion, "pfvit.disc": "none", "pfvit.orth": "none"})
    x, y = batch([0, 1, 2, 3])
    terms = model.training_step(x, y, nn.CrossEntropyLoss())
    terms["rec"].backward()
    grads = [p.grad for p in model.separator.parameters()]
    norm = sum(float(g.abs().sum()) for g in grads if g is not None)
    assert (norm > 1e-8) is reaches


def test_separator_tables_first_row_is_pfvit_without_separator_or_discriminator():
    from harness.specs import load_spec

    spec = load_spec("pfvit_separator")
    method, overrides = spec.resolved(spec.rows[0])
    assert method == "pfvit" and overrides["pfvit.separator"] is False and overrides["pfvit.disc"] == "none"
    terms = tiny(**{k: v for k, v in overrides.items() if k.startswith("pfvit.")}).training_step(
        *batch([0, 1]), nn.CrossEntropyLoss())
    assert set(terms) == {"ce", "rec"}  # CE + reconstruction: "PF-ViT degrades to the original MAE"


def test_imagenet_orthogonality_needs_a_file_at_paper_and_stands_in_only_on_request():
    with torch.device("meta"):
        paper = timm.create_model("pfvit", preset="paper", **{"pfvit.orth": "imagenet"}).recipe
    assert paper.init["weights.ir50"] == "file:ir50_imagenet.pth"  # refused when missing, like every file
    assert paper.stand_in["weights.ir50"] == "stage:generic_ir50"  # only under --stand-ins
    assert tiny(**{"pfvit.orth": "imagenet"}).recipe.init["weights.ir50"] == "stage:generic_ir50"


def test_test_mask_ratio_hides_patches_at_test_time_only():
    """``pfvit.test_mask_ratio`` masks the encoder's input in forward (validation and test), not in training."""
    whole = tiny(**{"pfvit.generator": "mae"}).eval()
    masked = tiny(**{"pfvit.generator": "mae", "pfvit.test_mask_ratio": 0.5}).eval()
    masked.load_state_dict(whole.state_dict())
    x, y = batch([0, 1, 2, 3])
    with torch.no_grad():
        torch.manual_seed(2)
        a = masked(x)
        torch.manual_seed(3)
        b = masked(x)
        assert a.shape == whole(x).shape and a.shape[0] == 4
        assert not torch.allclose(a, whole(x)) and not torch.allclose(a, b)  # a fresh random half each pass
        torch.manual_seed(1)
        want = whole.training_step(x, y, CE)["ce"]
        torch.manual_seed(1)
        assert float(masked.training_step(x, y, CE)["ce"]) == pytest.approx(float(want), rel=1e-5)
    with pytest.raises(ValueError, match="pfvit.test_mask_ratio"):
        tiny(**{"pfvit.test_mask_ratio": 1.0})
