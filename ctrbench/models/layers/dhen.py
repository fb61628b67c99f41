"""DHEN (Zhang et al. 2022, "Deep and Hierarchical Ensemble Network"), as InterFormer restates it:
X_{l+1} = Norm( Ensemble_i Interaction_i(X_l) + ShortCut(X_l) ), on field tokens [B, m, d].

Every interaction module maps m tokens to m tokens, so layers stack and the shortcut is the identity:
- "dot": the m(m-1)/2 pairwise inner products <x_i, x_j> (i < j), then a Linear to m·d (DHEN's dot-product
  module, which turns the Gram entries back into tokens);
- "dcn": DCNv2 cross layers x_{k+1} = x_0 ⊙ (W x_k + b) + x_k on the flattened tokens (optionally low rank).
Choices where the papers are silent (spec §4 Q2): Ensemble "concat" stacks the module outputs along the token
axis and compresses them back to m tokens with an LCE (a learned per-token mix), "sum" adds them; Norm is a
LayerNorm over d per token; ShortCut is the identity.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from ctrbench.models.layers.cross import CrossNetV2
from ctrbench.models.layers.interaction import DotInteraction
from ctrbench.models.layers.lce import LCE
from ctrbench.models.layers.mlp import init_linear

MODULES = ("dot", "dcn")
ENSEMBLES = ("concat", "sum")


class DotModule(nn.Module):
    """[B, m, d] -> [B, m, d]: pairwise inner products (strict upper triangle) -> Linear -> m tokens."""

    def __init__(self, num_tokens: int, dim: int):
        super().__init__()
        if num_tokens < 2:
            raise ValueError(f"the dot module needs at least 2 tokens, got {num_tokens}")
        self.num_tokens, self.dim = num_tokens, dim
        self.dot = DotInteraction(num_tokens)
        self.proj = nn.Linear(self.dot.output_dim, num_tokens * dim)
        init_linear(self.proj)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.dot(x)).view(x.shape[0], self.num_tokens, self.dim)


class DCNModule(nn.Module):
    """[B, m, d] -> [B, m, d]: DCNv2 cross layers over the flattened tokens."""

    def __init__(self, num_tokens: int, dim: int, num_layers: int = 1, low_rank: int | None = None):
        super().__init__()
        self.num_tokens, self.dim = num_tokens, dim
        self.cross = CrossNetV2(num_tokens * dim, num_layers, low_rank)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cross(x.flatten(1)).view_as(x)


class DHENLayer(nn.Module):
    """One DHEN layer over m tokens of width d (see the module docstring)."""

    def __init__(self, num_tokens: int, dim: int, modules: Sequence[str] = MODULES,
                 ensemble: Literal["concat", "sum"] = "concat", cross_layers: int = 1, low_rank: int | None = None):
        super().__init__()
        if not modules:
            raise ValueError("a DHEN layer needs at least one interaction module")
        bad = [m for m in modules if m not in MODULES]
        if bad:
            raise ValueError(f"unknown DHEN module {bad[0]!r}; valid: {', '.join(MODULES)}")
        if ensemble not in ENSEMBLES:
            raise ValueError(f"unknown DHEN ensemble {ensemble!r}; valid: {', '.join(ENSEMBLES)}")
        self.ensemble = ensemble
        self.interactions = nn.ModuleList(
            DotModule(num_tokens, dim) if m == "dot" else DCNModule(num_tokens, dim, cross_layers, low_rank)
            for m in modules
        )
        self.mix = LCE(len(modules) * num_tokens, num_tokens) if ensemble == "concat" and len(modules) > 1 else None
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [m(x) for m in self.interactions]
        if len(outs) == 1:
            z = outs[0]
        elif self.mix is not None:
            z = self.mix(torch.cat(outs, dim=1))
        else:
            z = torch.stack(outs).sum(0)
        return self.norm(z + x)


class DHEN(nn.Module):
    """`num_layers` stacked DHEN layers: [B, m, d] -> [B, m, d]."""

    def __init__(self, num_tokens: int, dim: int, num_layers: int = 1, modules: Sequence[str] = MODULES,
                 ensemble: Literal["concat", "sum"] = "concat", cross_layers: int = 1, low_rank: int | None = None):
        super().__init__()
        self.layers = nn.ModuleList(DHENLayer(num_tokens, dim, modules, ensemble, cross_layers, low_rank)
                                    for _ in range(num_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x
