"""Linear Compressed Embedding (InterFormer App. A.2) and self-gating: the token-axis compression primitive
of InterFormer's Cross Arch and DHEN's concat ensemble.

Tokens are rows here: X [B, N, d]. LCE(X) = Wᵀ X with a learned W ∈ R^{N×M} mixes the N tokens into M
(the paper's X W with features as columns). `TokenMLP` adds hidden layers along the token axis (the main
text's "MLP: R^{d×n} -> R^{d×n_sum}"); with no hidden layers it is exactly LCE.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from ctrbench.models.layers.mlp import activation, init_linear


class LCE(nn.Module):
    """[B, N, d] -> [B, M, d]: M learned linear combinations of the N tokens (plus a per-output-token bias)."""

    def __init__(self, num_in: int, num_out: int, bias: bool = True):
        super().__init__()
        self.num_in, self.num_out = num_in, num_out
        self.weight = nn.Parameter(torch.empty(num_out, num_in))
        nn.init.xavier_normal_(self.weight)
        self.bias = nn.Parameter(torch.zeros(num_out, 1)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != self.num_in:
            raise ValueError(f"LCE built for {self.num_in} tokens, got {x.shape[1]}")
        out = torch.einsum("mn,bnd->bmd", self.weight, x)
        return out if self.bias is None else out + self.bias


class TokenMLP(nn.Module):
    """An MLP along the token axis, applied to every embedding coordinate: [B, N, d] -> [B, M, d].
    `hidden` = token counts of the hidden layers ([] = LCE)."""

    def __init__(self, num_in: int, num_out: int, hidden: Sequence[int] = (), activation_name: str = "silu"):
        super().__init__()
        layers: list[nn.Module] = []
        n = num_in
        for h in hidden:
            layers += [LCE(n, h), _TokenAct(activation_name)]
            n = h
        layers.append(LCE(n, num_out))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class _TokenAct(nn.Module):
    def __init__(self, name: str):
        super().__init__()
        self.act = activation(name)

    def forward(self, x):
        return self.act(x)


GATING = ("self", "paper")


class SelfGating(nn.Module):
    """InterFormer's Gating on tokens [B, N, d] with a per-token Linear(d, d) shared across tokens.

    "paper": σ(X ⊙ Linear(X)), exactly as printed (outputs lie in (0, 1));
    "self":  X ⊙ σ(Linear(X)), the conventional self-gate (keeps sign and scale of X) — spec §4 Q3.
    """

    def __init__(self, dim: int, kind: Literal["self", "paper"] = "self"):
        super().__init__()
        if kind not in GATING:
            raise ValueError(f"unknown gating {kind!r}; valid: {', '.join(GATING)}")
        self.kind = kind
        self.linear = nn.Linear(dim, dim)
        init_linear(self.linear)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "paper":
            return torch.sigmoid(x * self.linear(x))
        return x * torch.sigmoid(self.linear(x))
