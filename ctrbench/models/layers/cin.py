"""Compressed Interaction Network (xDeepFM, Lian et al., KDD 2018; FuxiCTR CompressedInteractionNet).

Layer k: Z = X⁰ ∘ X^{k−1} (every field pair's Hadamard product, [B, F·H_{k−1}, d]), X^k = W_k Z (a 1×1
convolution over the pair axis, H_k feature maps; no activation, as FuxiCTR); each layer's maps are sum-pooled
over d, and the pooled vectors of all layers are concatenated -> [B, Σ H_k].
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class CIN(nn.Module):
    """[B, F, d] field embeddings -> [B, sum(hidden_units)] pooled CIN feature maps."""

    def __init__(self, num_fields: int, hidden_units: Sequence[int]):
        super().__init__()
        if not hidden_units:
            raise ValueError("CIN needs at least one layer")
        self.num_fields = num_fields
        self.layers = nn.ModuleList()
        prev = num_fields
        for units in hidden_units:
            conv = nn.Conv1d(num_fields * prev, units, kernel_size=1)
            nn.init.xavier_normal_(conv.weight)  # FuxiCTR's init of every Linear/Conv1d: Xavier-normal, zero bias
            nn.init.zeros_(conv.bias)
            self.layers.append(conv)
            prev = units
        self.output_dim = sum(hidden_units)

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        b, f, d = x0.shape
        if f != self.num_fields:
            raise ValueError(f"CIN built for {self.num_fields} fields, got {f}")
        pooled, x = [], x0
        for conv in self.layers:
            z = torch.einsum("bhd,bmd->bhmd", x0, x).reshape(b, -1, d)
            x = conv(z)
            pooled.append(x.sum(dim=-1))
        return torch.cat(pooled, dim=-1)
