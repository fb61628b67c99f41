"""AutoInt's interacting layer (Song et al., CIKM 2019; FuxiCTR MultiHeadSelfAttention): multi-head
self-attention across the field embeddings, a residual (projected when the width changes), ReLU.

out = ReLU(MHA(X) + W_res·X) with per-head Q, K, V projections and no output projection (the heads'
outputs are concatenated); softmax(QKᵀ) unscaled unless use_scale (FuxiCTR default: unscaled);
optional LayerNorm before the ReLU.
"""
from __future__ import annotations

import torch
from torch import nn


class InteractingLayer(nn.Module):
    """[B, F, input_dim] -> [B, F, attention_dim]."""

    def __init__(self, input_dim: int, attention_dim: int, num_heads: int = 1, dropout: float = 0.0,
                 use_residual: bool = True, use_scale: bool = False, layer_norm: bool = False):
        super().__init__()
        if attention_dim % num_heads:
            raise ValueError(f"attention_dim {attention_dim} is not divisible by num_heads={num_heads}")
        self.num_heads, self.head_dim, self.use_scale = num_heads, attention_dim // num_heads, use_scale
        self.qkv = nn.Linear(input_dim, 3 * attention_dim, bias=False)
        for w in self.qkv.weight.data.split(attention_dim):
            nn.init.xavier_normal_(w)
        self.residual = None
        if use_residual:
            self.residual = nn.Identity() if input_dim == attention_dim else nn.Linear(input_dim, attention_dim, bias=False)
            if isinstance(self.residual, nn.Linear):
                nn.init.xavier_normal_(self.residual.weight)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(attention_dim) if layer_norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, f, _ = x.shape
        q, k, v = self.qkv(x).view(b, f, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        scores = q @ k.transpose(-1, -2)
        if self.use_scale:
            scores = scores / self.head_dim ** 0.5
        out = (self.dropout(scores.softmax(dim=-1)) @ v).transpose(1, 2).reshape(b, f, -1)
        if self.residual is not None:
            out = out + self.residual(x)
        if self.norm is not None:
            out = self.norm(out)
        return torch.relu(out)
