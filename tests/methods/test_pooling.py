"""APP/ATP pooling functions, criteria registries and the ATP block."""
from __future__ import annotations

import pytest
import torch

from methods.layers.blocks import Attention, Block
from methods.layers.pooling import (
    APP_CRITERIA,
    ATP_CRITERIA,
    LANet,
    atp_keep_count,
    atp_pool,
    build_app_criterion,
    soft_pool,
    topk_pool,
)


def _tokens(B=2, N=20, C=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, 1 + N, C, generator=g), torch.randn(B, N, generator=g)


@pytest.mark.parametrize("k", [1, 5, 19, 20])
def test_topk_pool_keeps_class_token_and_true_topk_in_order(k):
    x, scores = _tokens()
    kept, idx = topk_pool(x, scores, k, num_prefix_tokens=1)
    assert kept.shape == (2, 1 + k, 8)
    assert torch.equal(kept[:, 0], x[:, 0])  # class token survives, in front
    for b in range(2):
        brute = sorted(sorted(range(20), key=lambda i: -scores[b, i].item())[:k])
        assert idx[b].tolist() == brute  # true top-k, ascending (spatial order kept)
        assert torch.equal(kept[b, 1:], x[b, 1 + torch.tensor(brute)])


def test_topk_pool_rejects_bad_k_and_scores():
    x, scores = _tokens()
    with pytest.raises(ValueError, match="k=21"):
        topk_pool(x, scores, 21)
    with pytest.raises(ValueError, match="scores"):
        topk_pool(x, scores[:, :5], 3)


def test_soft_pool_keeps_every_token_and_reweights():
    x, scores = _tokens()
    out, idx = soft_pool(x, scores)
    assert out.shape == x.shape and idx.shape == (2, 20)
    assert torch.equal(out[:, 0], x[:, 0])
    w = scores / scores.abs().amax(1, keepdim=True)
    assert torch.allclose(out[:, 1:], x[:, 1:] * w.unsqueeze(-1))


def test_soft_pool_sends_gradients_to_lanet():
    x, _ = _tokens()
    lanet = LANet(8, reduction=2)
    out, _ = soft_pool(x, lanet(x[:, 1:]))
    out.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in lanet.parameters())


def test_app_criteria_values():
    f = torch.tensor([[[1.0, -2.0, 3.0], [-4.0, 0.5, 0.5]]])  # [1, 2, 3]
    assert APP_CRITERIA["abs"](f).tolist() == [[6.0, 5.0]]
    assert APP_CRITERIA["sum"](f).tolist() == [[2.0, -3.0]]
    assert APP_CRITERIA["max"](f).tolist() == [[3.0, 0.5]]
    assert build_app_criterion("lanet", 3, 1)(f).shape == (1, 2)
    with pytest.raises(ValueError, match="app.criterion"):
        build_app_criterion("median", 3)


def test_atp_criteria_values():
    logits = torch.tensor([[[1.0, -3.0], [-2.0, 2.0]]])  # [B=1, H=2, N=2]
    assert ATP_CRITERIA["sum"](logits).tolist() == [[-1.0, -1.0]]
    assert ATP_CRITERIA["max"](logits).tolist() == [[1.0, 2.0]]
    assert ATP_CRITERIA["abs"](logits).tolist() == [[3.0, 5.0]]


def test_atp_keep_count_matches_the_paper():
    def chain(n, r, blocks=4):
        out = [n]
        for _ in range(blocks):
            out.append(atp_keep_count(out[-1] + 1, r))
        return out
    assert chain(160, 0.9) == [160, 144, 129, 116, 104]  # 105 tokens before the head
    assert chain(80, 0.6) == [80, 48, 28, 16, 9]  # 10 tokens
    assert atp_keep_count(11, 0.7) == 7  # floor guarded against float error
    assert atp_keep_count(2, 0.1) == 1  # at least one patch token


def test_atp_pool_keeps_class_token():
    x, _ = _tokens(N=10)
    logits = torch.randn(2, 3, 10)
    kept, idx = atp_pool(x, logits, 0.5, "sum")
    assert kept.shape == (2, 1 + 5, 8)
    assert torch.equal(kept[:, 0], x[:, 0])
    assert torch.equal(idx, logits.sum(1).topk(5, dim=1).indices.sort(1).values)
    with pytest.raises(ValueError, match="atp.criterion"):
        atp_pool(x, logits, 0.5, "mean")


def test_fused_and_unfused_attention_agree_including_class_logits():
    torch.manual_seed(0)
    attn = Attention(16, 4)
    x = torch.randn(2, 9, 16)
    out_f, cls_f = attn(x, return_cls_logits=True)
    attn.fused_attn = False
    out_u, cls_u = attn(x, return_cls_logits=True)
    assert torch.allclose(out_f, out_u, atol=1e-5)
    assert cls_f.shape == (2, 4, 8) and torch.allclose(cls_f, cls_u, atol=1e-5)


def test_block_prunes_after_attention_and_before_mlp():
    torch.manual_seed(0)
    blk = Block(16, 4, mlp_ratio=2, prune=True).eval()
    x = torch.randn(2, 11, 16)
    full = blk(x, keep_rate=None)  # no pruning: all 11 tokens
    pruned = blk(x, keep_rate=0.5)  # attends over all 11, MLP on class + 5
    assert pruned.shape == (2, 6, 16)
    # the MLP is per token, so every kept row equals the unpruned block's row for that token
    _, cls_logits = blk.attn(blk.norm1(x), return_cls_logits=True)
    idx = cls_logits.sum(1).topk(5, dim=1).indices.sort(1).values
    for b in range(2):
        rows = torch.cat([torch.tensor([0]), 1 + idx[b]])
        assert torch.allclose(pruned[b], full[b, rows], atol=1e-5)
    assert torch.equal(blk(x, keep_rate=1.0), full)  # r = 1 is a no-op
