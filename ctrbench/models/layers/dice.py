"""Dice (DIN, Zhou et al. 2018): a data-adaptive PReLU, p(x)·x + (1 − p(x))·α·x with p = σ(BN(x)) (FuxiCTR
Dice: BatchNorm without affine, eps 1e-9, momentum 0.01; α starts at 0), and `make_mlp`, the MLP block that
accepts "dice" beside the activations layers/mlp.py knows."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ctrbench.models.layers.mlp import MLP

ACTIVATION_NAMES = ("relu", "tanh", "sigmoid", "leaky_relu", "gelu", "silu", "prelu", "dice")


class Dice(nn.Module):
    """Dice over the last dimension of [N, dim] inputs."""

    def __init__(self, dim: int, eps: float = 1e-9):
        super().__init__()
        self.bn = nn.BatchNorm1d(dim, affine=False, eps=eps, momentum=0.01)
        self.alpha = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = torch.sigmoid(self.bn(x))
        return p * x + (1 - p) * self.alpha * x


class DiceMLP(MLP):
    """MLP with Dice activations: per hidden layer Linear -> [BatchNorm] -> Dice -> [Dropout]; 2-d input."""

    def __init__(self, input_dim: int, hidden_units: Sequence[int], output_dim: int | None = None, *,
                 dropout: float = 0.0, batch_norm: bool = False):
        super().__init__(input_dim, hidden_units, output_dim, dropout=dropout, batch_norm=batch_norm,
                         activation_factory=Dice)


def make_mlp(input_dim: int, hidden_units: Sequence[int], output_dim: int | None = None, *,
             activation: str = "relu", dropout: float = 0.0, batch_norm: bool = False) -> nn.Module:
    """layers/mlp.py's MLP, or DiceMLP when activation is "dice" (both expose input_dim/output_dim)."""
    if activation.lower() == "dice":
        return DiceMLP(input_dim, hidden_units, output_dim, dropout=dropout, batch_norm=batch_norm)
    return MLP(input_dim, hidden_units, output_dim, activation_name=activation, dropout=dropout,
               batch_norm=batch_norm)
