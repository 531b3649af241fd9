"""ViT block with attentive token pooling (ATP), in the old timm ``vit_small`` key layout.

Adapted from timm's ``vision_transformer.Attention``/``Block`` (timm 1.0.x) with these changes:

* ``Attention.forward`` can also return the class-token row of the pre-softmax scaled logits,
  ``q_cls . K^T * scale`` over the patch columns ([B, H, N]). With fused attention on
  (``F.scaled_dot_product_attention``, the default) the full logit matrix never exists, so only that
  row is recomputed (O(N d) per head); fused attention stays on for every block. With
  ``fused_attn = False`` (tests, FLOP cross-checks) the row is read from the explicit logits.
* ``Block.forward(x, keep_rate)`` prunes tokens after the attention residual and before the MLP
  (APViT): the block attends over all N tokens and its MLP runs on the kept ones. ``keep_rate``
  None or >= 1 means no pruning, and then nothing extra is computed.
* ``head_mask`` ([B, H]) multiplies each head's output before the output projection and
  ``token_mask`` ([B, N]) multiplies the q, k and v of each token (TransFER's MSAD, paper and
  Paddle-port readings; see :mod:`methods.layers.drop`). Both default to None, and then nothing
  extra is computed.
* Not supported (asserted by absence): LayerScale, qk-norm, attention masks, register tokens.

State-dict keys: ``norm1``, ``attn.qkv``, ``attn.proj``, ``norm2``, ``mlp.fc1``, ``mlp.fc2``.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from methods.layers.pooling import ATP_CRITERIA, atp_pool


class Attention(nn.Module):
    """Multi-head self-attention that can expose the class-token logit row."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = False) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.fused_attn = True
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(
        self,
        x: torch.Tensor,
        return_cls_logits: bool = False,
        head_mask: torch.Tensor | None = None,
        token_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x: [B, N, C] -> (out [B, N, C], cls_logits [B, H, N-1] or None).

        head_mask: [B, H] factors on each head's output; token_mask: [B, N] factors on each
        token's q, k and v. None leaves them alone.
        """
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim)  # [B, N, 3, H, d]
        if token_mask is not None:
            qkv = qkv * token_mask.to(qkv.dtype)[:, :, None, None, None]
        qkv = qkv.permute(2, 0, 3, 1, 4)  # [3, B, H, N, d]
        q, k, v = qkv.unbind(0)  # each [B, H, N, d]
        cls_logits = None
        if self.fused_attn:
            out = F.scaled_dot_product_attention(q, k, v)  # [B, H, N, d]
            if return_cls_logits:
                # Only the class-token query row is needed: recompute it, O(N d) per head.
                cls_logits = (q[:, :, :1] * self.scale) @ k[:, :, 1:].transpose(-2, -1)  # [B, H, 1, N-1]
                cls_logits = cls_logits.squeeze(2)  # [B, H, N-1]
        else:
            logits = (q * self.scale) @ k.transpose(-2, -1)  # [B, H, N, N]
            if return_cls_logits:
                cls_logits = logits[:, :, 0, 1:]  # [B, H, N-1]
            out = logits.softmax(dim=-1) @ v  # [B, H, N, d]
        if head_mask is not None:
            out = out * head_mask.to(out.dtype)[:, :, None, None]
        out = out.transpose(1, 2).reshape(B, N, C)  # [B, N, C]
        return self.proj(out), cls_logits


class Mlp(nn.Module):
    """fc1 -> GELU -> fc2."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, N, C] -> [B, N, C]."""
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block; with ``prune=True`` it applies ATP between attention and MLP."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = False,
        norm_eps: float = 1e-6,
        prune: bool = False,
        criterion: str = "sum",
    ) -> None:
        super().__init__()
        if criterion not in ATP_CRITERIA:
            raise ValueError(f"atp.criterion: unknown {criterion!r}; allowed: {sorted(ATP_CRITERIA)}")
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.prune = prune
        self.criterion = criterion

    def forward(
        self,
        x: torch.Tensor,
        keep_rate: float | None = None,
        head_mask: torch.Tensor | None = None,
        token_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x: [B, 1 + N, C] -> [B, 1 + n_keep, C]; ``n_keep = N`` unless this block prunes.

        ``head_mask`` / ``token_mask`` go to :meth:`Attention.forward` (MSAD).
        """
        do_prune = self.prune and keep_rate is not None and keep_rate < 1.0
        attn_out, cls_logits = self.attn(self.norm1(x), return_cls_logits=do_prune, head_mask=head_mask,
                                         token_mask=token_mask)
        x = x + attn_out  # [B, 1 + N, C]
        if do_prune:
            x, _ = atp_pool(x, cls_logits, keep_rate, self.criterion)  # [B, 1 + n_keep, C]
        return x + self.mlp(self.norm2(x))

    def extra_repr(self) -> str:
        return f"prune={self.prune}, criterion={self.criterion!r}" if self.prune else ""


class PatchEmbed(nn.Module):
    """Patch tokens: a conv with kernel = stride = ``patch_size`` (1: the hybrid models' 1x1
    projection of CNN features), flattened."""

    def __init__(self, in_chs: int, dim: int, patch_size: int = 1) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chs, dim, patch_size, patch_size, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, C_in, H, W] -> [B, N, dim], N = (H / p) * (W / p)."""
        return self.proj(x).flatten(2).transpose(1, 2)
