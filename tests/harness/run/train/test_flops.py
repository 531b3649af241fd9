"""FLOP counting (fvcore, multiply-add = 1 FLOP) against APViT's published numbers, and the CLI."""
from __future__ import annotations

import json

import pytest
import timm
import torch
import torch.nn as nn

import methods  # noqa: F401
from harness.cli import main
from harness.run.train.flops import count_flops

_CACHE: dict[tuple, dict] = {}


def flops(name: str, **overrides) -> dict:
    """count_flops of a paper-preset model, cached across tests (paper builds are the slow part)."""
    key = (name, tuple(sorted(overrides.items())))
    if key not in _CACHE:
        model = timm.create_model(name, preset="paper", **overrides)
        _CACHE[key] = count_flops(model, model.recipe.img_size)
    return _CACHE[key]


BASELINE = {"app.k": 196, "atp.r": 1.0}


@pytest.mark.parametrize("name, overrides, paper_gflops", [
    ("apvit_baseline", {}, 15.30),  # Table 13 (TransFER-sized baseline)
    ("apvit", {}, 12.67),  # Table 13, (160, 0.9)
    ("apvit", {"app.k": 10, "atp.r": 0.6}, 5.89),  # Table 13, (10, 0.6)
    ("apvit_hybrid_deit_tiny", BASELINE, 6.72),  # Table 14
    ("apvit_hybrid_deit_tiny", {}, 6.10),  # Table 14, k=120, r=0.9
    ("apvit_deit_tiny", {"atp.r": 1.0}, 1.26),  # Table 14, 224x224
    ("apvit_deit_tiny", {}, 0.96),  # Table 14, r=0.8
])
def test_gflops_match_the_paper(name, overrides, paper_gflops):
    assert flops(name, **overrides)["gflops"] == pytest.approx(paper_gflops, rel=0.005)


@pytest.mark.parametrize("overrides, paper_ratio", [
    ({"app.k": 196}, 0.94),  # ATP only
    ({"atp.r": 1.0}, 0.88),  # APP only (the GAP head's extra mean is uncounted: same FLOPs)
    ({}, 0.83),  # both
])
def test_table1_flops_ratios(overrides, paper_ratio):
    ratio = flops("apvit", **overrides)["gflops"] / flops("apvit_baseline")["gflops"]
    assert ratio == pytest.approx(paper_ratio, abs=0.005)  # the paper rounds to whole percent


def test_report_fields_and_token_counts():
    result = flops("apvit")
    assert result["tokens_per_block"] == [161] * 5 + [145, 130, 117] and result["tokens_before_head"] == 105
    assert result["params_m"] == pytest.approx(65.21, abs=0.01)
    assert "multiply-add" in result["flop_convention"]
    assert {"aten::prelu", "aten::add", "aten::topk"} <= set(result["uncounted_ops"])
    assert 0 < result["uncounted_share"] < 0.01 and result["uncounted_share_measure"]
    assert result["uncounted_not_estimated"] == []
    assert result["gflops_by_operator"]["scaled_dot_product_attention"] > 0


def test_fused_attention_counts_like_unfused():
    model = timm.create_model("apvit", preset="tiny", **BASELINE)
    fused = count_flops(model, 48)["gflops"]
    for blk in model.blocks:
        blk.attn.fused_attn = False
    unfused = count_flops(model, 48)
    assert "aten::scaled_dot_product_attention" not in unfused["uncounted_ops"]
    assert fused == pytest.approx(unfused["gflops"], rel=1e-12)


def test_counting_restores_mode_and_progress_and_counts_end_of_schedule():
    model = timm.create_model("apvit", preset="tiny", **{"app.schedule": "decay"}).train()
    model.set_progress(0.2)
    result = count_flops(model, 48)
    assert model.training and model.progress == 0.2
    assert result["tokens_before_head"] == 24  # the targets (k=160 -> 29, r=0.9), not the progress-0.2 ones


def test_native_multi_head_attention_is_counted():
    class Wrap(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Linear(3, 32)
            self.mha = nn.MultiheadAttention(32, 4, batch_first=True)

        def forward(self, x):
            t = self.embed(x.flatten(2).transpose(1, 2))  # [1, L, 32]
            return self.mha(t, t, t, need_weights=False)[0]

    result = count_flops(Wrap(), 3)  # eval mode: nn.MultiheadAttention takes its fused fast path
    L, E = 9, 32
    expected = L * 3 * E + 4 * L * E * E + 2 * L * L * E  # embed + q/k/v/out projections + 2 matmuls
    assert result["gflops"] * 1e9 == pytest.approx(expected)
    assert result["uncounted_ops"] == {}


def test_cli_json(capsys):
    assert main(["flops", "apvit", "--set", "app.k=80", "--set", "atp.r=0.6", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["tokens_before_head"] == 10  # the paper's figure for k=80, r=0.6
    assert record["tokens_per_block"] == [81] * 5 + [49, 29, 17]
    assert record["overrides"] == {"app.k": 80, "atp.r": 0.6} and record["preset"] == "paper"
    for key in ("gflops", "params_m", "uncounted_ops"):
        assert key in record


def test_transfer_matches_apvit_table13(capsys):
    # APViT Table 13 gives TransFER 15.30 GFLOPs; its B = 2 LANets on the 14x14 map add ~2 MFLOPs
    assert main(["flops", "transfer", "--preset", "paper", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["gflops"] == pytest.approx(15.30, rel=0.005)
    assert record["tokens_per_block"] == [197] * 8 and record["uncounted_not_estimated"] == []
    assert {"aten::sigmoid", "aten::amax", "aten::mul"} <= set(record["uncounted_ops"])  # LANet maps, max, X x M
    # Table 2's prose: stage 4 "gives a comparative performance ... but with more parameters"
    with torch.device("meta"):
        stage4 = timm.create_model("transfer", **{"transfer.stage": 4})
    assert sum(p.numel() for p in stage4.parameters()) / 1e6 > record["params_m"]


def test_cli_tiny_preset(capsys):
    assert main(["flops", "apvit", "--preset", "tiny", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["input_size"] == 48 and record["tokens_before_head"] == 24


@pytest.mark.parametrize("argv, message", [
    (["flops", "nope"], "unknown model"),
    (["flops", "apvit", "--preset", "tiny", "--set", "app.k=500"], "app.k"),
    (["flops", "apvit", "--preset", "tiny", "--set", "bogus.key=1"], "bogus.key"),
    (["flops", "apvit", "--preset", "tiny", "--set", "app.k"], "key=value"),
    (["flops", "apvit", "--preset", "tiny", "--input-size", "40"], "input size 40"),
])
def test_cli_bad_input(capsys, argv, message):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_test_time_parameters_leave_out_pfvits_training_only_parts():
    import timm

    import methods  # noqa: F401
    from harness.run.train.flops import count_flops

    torch.manual_seed(0)
    model = timm.create_model("pfvit", preset="tiny")
    cost = count_flops(model, model.recipe.img_size)
    inference = sum(p.numel() for part in (model.encoder, model.separator, model.head) for p in part.parameters())
    assert cost["params_test_m"] == pytest.approx(inference / 1e6)
    assert cost["params_m"] > 3 * cost["params_test_m"]  # G, D and the frozen network are most of the module
    plain = timm.create_model("apvit", preset="tiny")
    plain_cost = count_flops(plain, plain.recipe.img_size)
    assert plain_cost["params_test_m"] == pytest.approx(plain_cost["params_m"])
