"""The MLP block of FuxiCTR (MLP_Block): per hidden layer Linear -> [BatchNorm] -> activation -> [Dropout]."""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "leaky_relu": nn.LeakyReLU,
               "gelu": nn.GELU, "silu": nn.SiLU, "prelu": nn.PReLU}


def activation(name: str) -> nn.Module:
    """An activation module by (case-insensitive) name."""
    try:
        return ACTIVATIONS[name.lower()]()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; valid: {', '.join(sorted(ACTIVATIONS))}") from None


def init_linear(layer: nn.Linear) -> None:
    """FuxiCTR's initialisation of dense layers: Xavier-normal weights, zero bias."""
    nn.init.xavier_normal_(layer.weight)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


class MLP(nn.Module):
    """Hidden layers `hidden_units` and, when `output_dim` is set, a final plain Linear to it. Each hidden
    activation is activation_factory(units) when that is given (e.g. Dice), else `activation_name`'s."""

    def __init__(
        self,
        input_dim: int,
        hidden_units: Sequence[int],
        output_dim: int | None = None,
        *,
        activation_name: str = "relu",
        dropout: float = 0.0,
        batch_norm: bool = False,
        output_bias: bool = True,
        activation_factory: Callable[[int], nn.Module] | None = None,
    ):
        super().__init__()
        layers: list[nn.Module] = []
        dim = input_dim
        for units in hidden_units:
            lin = nn.Linear(dim, units)
            init_linear(lin)
            layers.append(lin)
            if batch_norm:
                layers.append(nn.BatchNorm1d(units))
            layers.append(activation_factory(units) if activation_factory else activation(activation_name))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            dim = units
        if output_dim is not None:
            out = nn.Linear(dim, output_dim, bias=output_bias)
            init_linear(out)
            layers.append(out)
            dim = output_dim
        self.net = nn.Sequential(*layers)
        self.input_dim, self.output_dim = input_dim, dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
