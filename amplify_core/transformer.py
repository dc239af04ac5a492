"""Transformer blocks shared by the three models: pre-norm attention with an optional KV cache.

The cache is a pair of tensors (keys, values) of shape (batch, heads, length, head_dim) per layer; a
call with ``cache`` appends the new keys/values and returns the grown cache. That form (concatenation,
no in-place writes) exports to ONNX with a dynamic length axis.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

KV = tuple[torch.Tensor, torch.Tensor]


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float = 0.0):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)
        self.dropout = dropout

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        return x.view(b, n, self.heads, d // self.heads).transpose(1, 2)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                cache: KV | None = None) -> tuple[torch.Tensor, KV]:
        """``mask``: bool (queries, keys), True = may attend. Returns output and (keys, values)."""
        source = x if context is None else context
        k, v = self.kv(source).chunk(2, dim=-1)
        q, k, v = self._split(self.q(x)), self._split(k), self._split(v)
        if cache is not None:
            k = torch.cat([cache[0], k], dim=2)
            v = torch.cat([cache[1], v], dim=2)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                           dropout_p=self.dropout if self.training else 0.0)
        b, h, n, dh = y.shape
        return self.out(y.transpose(1, 2).reshape(b, n, h * dh)), (k, v)


class MLP(nn.Sequential):
    def __init__(self, dim: int, dropout: float = 0.0, ratio: int = 4):
        super().__init__(nn.Linear(dim, ratio * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(ratio * dim, dim))


class Block(nn.Module):
    """Pre-norm block: self-attention (optional), cross-attention (optional), MLP."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0, self_attention: bool = True,
                 cross_attention: bool = False):
        super().__init__()
        self.self_attn = Attention(dim, heads, dropout) if self_attention else None
        self.norm1 = nn.LayerNorm(dim) if self_attention else None
        self.cross_attn = Attention(dim, heads, dropout) if cross_attention else None
        self.norm2 = nn.LayerNorm(dim) if cross_attention else None
        self.norm3 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, context: torch.Tensor | None = None,
                cache: KV | None = None) -> tuple[torch.Tensor, KV | None]:
        new_cache = None
        if self.self_attn is not None:
            y, new_cache = self.self_attn(self.norm1(x), mask=mask, cache=cache)
            x = x + self.drop(y)
        if self.cross_attn is not None:
            x = x + self.drop(self.cross_attn(self.norm2(x), context=context)[0])
        return x + self.drop(self.mlp(self.norm3(x))), new_cache


def causal_mask(n: int, device=None) -> torch.Tensor:
    return torch.ones(n, n, dtype=torch.bool, device=device).tril()
