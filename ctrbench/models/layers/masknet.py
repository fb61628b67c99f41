"""MaskNet merge of k parallel behaviour sequences into one (InterFormer §4 (b)):
MaskNet(S) = MLP_lce(S ⊙ MLP_mask(S)) per position.

Choice (spec §4 Q6): the k sequences are stacked per position along the feature axis ([B, T, k·d]; left
padding aligns them on their most recent ends), MLP_mask is MaskNet's instance-guided mask (Linear -> ReLU ->
Linear, k·d -> hidden (k·d by default) -> k·d), and MLP_lce is one Linear(k·d, d) compressing the stacked features back to d.
"""
from __future__ import annotations

import torch
from torch import nn

from ctrbench.models.layers.mlp import init_linear


class MaskNetMerge(nn.Module):
    """[B, T, k, d] -> [B, T, d]."""

    def __init__(self, num_sequences: int, dim: int, hidden: int | None = None):
        super().__init__()
        kd = num_sequences * dim
        hidden = hidden or kd
        self.num_sequences, self.dim = num_sequences, dim
        self.mask = nn.Sequential(nn.Linear(kd, hidden), nn.ReLU(), nn.Linear(hidden, kd))
        self.lce = nn.Linear(kd, dim)
        for lin in (self.mask[0], self.mask[2], self.lce):
            init_linear(lin)
        nn.init.ones_(self.mask[2].bias)  # start near the identity mask

    def forward(self, stacked: torch.Tensor) -> torch.Tensor:
        b, t, k, d = stacked.shape
        if (k, d) != (self.num_sequences, self.dim):
            raise ValueError(f"MaskNetMerge built for {self.num_sequences} sequences of width {self.dim}, got {k}×{d}")
        flat = stacked.reshape(b, t, k * d)
        return self.lce(flat * self.mask(flat))
