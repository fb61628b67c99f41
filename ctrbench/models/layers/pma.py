"""Pooling by Multihead Attention (Set Transformer; InterFormer's S_PMA): k learnable seed queries attend over
[prefix tokens | left-padded sequence] through the `interleaved_attention` kernel module, giving k summary
tokens per row. Seeds carry no position (no rotary embedding)."""
from __future__ import annotations

import torch
from torch import nn

from ctrbench.kernels.interleaved_attention.module import InterleavedMultiheadAttention


class PMA(nn.Module):
    """S [B, P+T, d] (P always-valid prefix tokens, then a left-padded sequence) -> [B, num_seeds, d].
    A row with no valid token (P = 0 and length 0) gives the output projection's bias."""

    def __init__(self, dim: int, num_seeds: int, num_heads: int, num_prefix: int, backend: str | None = None):
        super().__init__()
        self.num_seeds = num_seeds
        self.seeds = nn.Parameter(torch.randn(num_seeds, dim) / dim ** 0.5)
        self.attn = InterleavedMultiheadAttention(dim, num_heads, num_prefix=num_prefix, rope=False, backend=backend)

    def forward(self, seq: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.attn(seq, lengths, queries=self.seeds)
