"""DCN-V2 cross networks (Wang et al. 2021): x_{l+1} = x_0 ⊙ (W_l x_l + b_l) + x_l, full-rank or low-rank
(W = U Vᵀ), and the mixture of low-rank experts (FuxiCTR CrossNetMix, vectorised over experts)."""
from __future__ import annotations

import torch
from torch import nn

from ctrbench.models.layers.mlp import init_linear


class CrossNetV2(nn.Module):
    """`num_layers` cross layers on [B, D]; `low_rank=r` factorises each W_l as U_l V_lᵀ (D×r, r×D)."""

    def __init__(self, input_dim: int, num_layers: int, low_rank: int | None = None):
        super().__init__()
        self.input_dim, self.num_layers, self.low_rank = input_dim, num_layers, low_rank
        if low_rank is None:
            self.layers = nn.ModuleList(nn.Linear(input_dim, input_dim) for _ in range(num_layers))
            for layer in self.layers:
                init_linear(layer)
        else:
            self.layers = nn.ModuleList(
                nn.Sequential(nn.Linear(input_dim, low_rank, bias=False), nn.Linear(low_rank, input_dim))
                for _ in range(num_layers)
            )
            for layer in self.layers:
                for lin in layer:
                    init_linear(lin)

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        x = x0
        for layer in self.layers:
            x = x0 * layer(x) + x
        return x


class CrossNetMix(nn.Module):
    """DCN-Mix: per layer, E low-rank experts x_0 ⊙ (U_e tanh(C_e tanh(V_eᵀ x_l)) + b) mixed by a softmax gate
    over E, plus the residual x_l (FuxiCTR CrossNetMix)."""

    def __init__(self, input_dim: int, num_layers: int, low_rank: int = 32, num_experts: int = 4):
        super().__init__()
        self.input_dim, self.num_layers, self.low_rank, self.num_experts = input_dim, num_layers, low_rank, num_experts

        def xavier(*shape):
            p = nn.Parameter(torch.empty(num_layers, num_experts, *shape))
            for i in range(num_layers):
                for e in range(num_experts):
                    nn.init.xavier_normal_(p.data[i, e])
            return p

        self.U = xavier(input_dim, low_rank)
        self.V = xavier(input_dim, low_rank)
        self.C = xavier(low_rank, low_rank)
        self.gate = nn.Parameter(torch.empty(num_layers, input_dim, num_experts))
        for i in range(num_layers):
            nn.init.xavier_normal_(self.gate.data[i])
        self.bias = nn.Parameter(torch.zeros(num_layers, input_dim))

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        x = x0
        for i in range(self.num_layers):
            v = torch.tanh(torch.einsum("bd,edr->ber", x, self.V[i]))  # [B, E, r]
            v = torch.tanh(torch.einsum("ber,eqr->beq", v, self.C[i]))  # C_e @ v
            uv = torch.einsum("beq,edq->bed", v, self.U[i]) + self.bias[i]  # [B, E, D]
            experts = x0.unsqueeze(1) * uv
            weights = torch.softmax(x @ self.gate[i], dim=1)  # [B, E]
            x = torch.einsum("bed,be->bd", experts, weights) + x
        return x
