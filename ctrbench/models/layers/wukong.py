"""Wukong's interaction layer (Zhang et al., "Wukong: Towards a Scaling Law for Large-Scale Recommendation",
ICML 2024), on field tokens [B, n, d]:

- Factorization Machine Block: FMB(X) = reshape(MLP(LayerNorm(flatten(X (Xᵀ Y))))) -> n_F tokens; X (Xᵀ Y)
  with a learned Y ∈ R^{n×k} is the paper's optimised FM (the n×n interaction matrix X Xᵀ projected to rank k).
- Linear Compress Block: LCB(X) = W X -> n_L tokens (a learned mix of the tokens; layers/lce.py's LCE, no bias).
- Layer: LayerNorm_d(concat(FMB(X), LCB(X)) + residual(X)), the residual an LCE when n ≠ n_F + n_L.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ctrbench.models.layers.lce import LCE
from ctrbench.models.layers.mlp import MLP


class FactorizationMachineBlock(nn.Module):
    """[B, n, d] -> [B, n_out, d]."""

    def __init__(self, num_in: int, num_out: int, dim: int, rank: int, hidden_units: Sequence[int] = (),
                 activation: str = "relu", dropout: float = 0.0):
        super().__init__()
        self.num_out, self.dim = num_out, dim
        self.proj = nn.Parameter(torch.empty(num_in, rank))
        nn.init.xavier_normal_(self.proj)
        self.norm = nn.LayerNorm(num_in * rank)
        self.mlp = MLP(num_in * rank, hidden_units, num_out * dim, activation_name=activation, dropout=dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inter = x @ torch.einsum("bnd,nk->bdk", x, self.proj)  # X (Xᵀ Y): [B, n, k]
        return self.mlp(self.norm(inter.flatten(1))).view(x.shape[0], self.num_out, self.dim)


class WukongLayer(nn.Module):
    """[B, n, d] -> [B, n_fmb + n_lcb, d]."""

    def __init__(self, num_in: int, dim: int, num_fmb: int, num_lcb: int, rank: int,
                 hidden_units: Sequence[int] = (), activation: str = "relu", dropout: float = 0.0):
        super().__init__()
        self.fmb = FactorizationMachineBlock(num_in, num_fmb, dim, rank, hidden_units, activation, dropout)
        self.lcb = LCE(num_in, num_lcb, bias=False)
        self.residual = nn.Identity() if num_in == num_fmb + num_lcb else LCE(num_in, num_fmb + num_lcb, bias=False)
        self.norm = nn.LayerNorm(dim)
        self.num_out = num_fmb + num_lcb

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(torch.cat([self.fmb(x), self.lcb(x)], dim=1) + self.residual(x))
