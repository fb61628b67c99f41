"""A DHEN-style stack with one interaction module per layer (the space of Meta's ranking AutoML, specs/search.md
§4.2, our reading of a secondary source): field tokens [B, m, d] -> layers x_{l+1} = Norm(Module_l(x_l) + x_l)
-> flatten -> MLP -> logit. A layer's module is one of
- "dot": DLRM pairwise inner products -> Linear back to m tokens (layers/dhen.py's DotModule; `width` unused);
- "attention": AutoInt self-attention to `width`, projected back to d;
- "linear": an MLP over the flattened tokens, m·d -> width -> m·d;
- "dcn": a DCNv2 cross layer over the flattened tokens with rank `width`;
- "conv": a 1-D convolution over the field axis (kernel 3, d -> width channels), then width -> d (kernel 1);
- "none": the layer is the identity (no norm either).
`layer_norm` toggles Norm (a LayerNorm over d); `init_scale` multiplies every interaction weight after its
initialisation. These module internals are ctrbench choices; the paper's are not public."""
from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, PositiveInt, model_validator
from torch import nn

from ctrbench.models.base import CTRModel
from ctrbench.models.dnn import MLPParams
from ctrbench.models.layers.autoint import InteractingLayer
from ctrbench.models.layers.dhen import DCNModule, DotModule
from ctrbench.models.layers.mlp import MLP
from ctrbench.models.registry import register

MODULES = ("dot", "attention", "linear", "dcn", "conv", "none")
Module = Literal["dot", "attention", "linear", "dcn", "conv", "none"]


class AttentionModule(nn.Module):
    """[B, m, d] -> [B, m, d]: AutoInt self-attention to `width`, a Linear back to d."""

    def __init__(self, dim: int, width: int):
        super().__init__()
        self.attention = InteractingLayer(dim, width)
        self.proj = nn.Linear(width, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.attention(x))


class LinearModule(nn.Module):
    """[B, m, d] -> [B, m, d]: an MLP m·d -> width -> m·d over the flattened tokens."""

    def __init__(self, num_tokens: int, dim: int, width: int):
        super().__init__()
        self.mlp = MLP(num_tokens * dim, [width], num_tokens * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x.flatten(1)).view_as(x)


class ConvModule(nn.Module):
    """[B, m, d] -> [B, m, d]: Conv1d over the field axis (d -> width channels, kernel 3), ReLU, Conv1d back."""

    def __init__(self, dim: int, width: int):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv1d(dim, width, 3, padding=1), nn.ReLU(), nn.Conv1d(width, dim, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x.transpose(1, 2)).transpose(1, 2)


def make_module(kind: str, num_tokens: int, dim: int, width: int) -> nn.Module:
    if kind == "dot":
        return DotModule(num_tokens, dim)
    if kind == "attention":
        return AttentionModule(dim, width)
    if kind == "linear":
        return LinearModule(num_tokens, dim, width)
    if kind == "dcn":
        return DCNModule(num_tokens, dim, 1, width)
    if kind == "conv":
        return ConvModule(dim, width)
    raise ValueError(f"unknown DHEN-stack module {kind!r}; valid: {', '.join(MODULES)}")


class StackLayer(nn.Module):
    """x -> Norm(module(x) + x); the identity for "none"."""

    def __init__(self, kind: str, num_tokens: int, dim: int, width: int, layer_norm: bool, init_scale: float):
        super().__init__()
        self.module = None if kind == "none" else make_module(kind, num_tokens, dim, width)
        self.norm = nn.LayerNorm(dim) if layer_norm and self.module is not None else nn.Identity()
        if self.module is not None:
            with torch.no_grad():
                for name, w in self.module.named_parameters():
                    if name.endswith("weight"):
                        w.mul_(init_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.module is None else self.norm(self.module(x) + x)


@register("dhen_stack")
class DHENStackModel(CTRModel):
    """Embeddings -> one chosen interaction module per layer -> MLP (the `dhen` search space's model)."""

    class Params(MLPParams):
        layers: list[Module] = Field(default_factory=lambda: ["dot", "dcn"], min_length=1, max_length=8,
                                     description="the interaction module of each layer")
        widths: list[PositiveInt] = Field(default_factory=lambda: [64, 64],
                                          description="each layer's module width (attention, linear, DCN rank, conv)")
        layer_norm: bool = True
        init_scale: float = Field(1.0, gt=0, allow_inf_nan=False, description="multiplies interaction weights at init")

        @model_validator(mode="after")
        def _one_width_per_layer(self):
            if len(self.widths) != len(self.layers):
                raise ValueError(f"widths has {len(self.widths)} entries; layers has {len(self.layers)}")
            return self

    def __init__(self, spec, vocab_sizes, params=None, tables=None):
        super().__init__(spec, vocab_sizes, params, tables)
        p = self.params
        self.embedding = self.make_embedding()
        m, d = self.embedding.num_fields, self.embedding_dim
        self.layers = nn.ModuleList(StackLayer(k, m, d, w, p.layer_norm, p.init_scale)
                                    for k, w in zip(p.layers, p.widths))
        self.mlp = MLP(m * d, p.hidden_units, 1, activation_name=p.hidden_activations, dropout=p.net_dropout,
                       batch_norm=p.batch_norm)

    def forward(self, batch) -> torch.Tensor:
        x = self.embedding(batch)
        for layer in self.layers:
            x = layer(x)
        return self.mlp(x.flatten(1)).squeeze(1)
