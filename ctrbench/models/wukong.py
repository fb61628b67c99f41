"""Wukong (Zhang et al., ICML 2024): the field embeddings as tokens through stacked Wukong layers (Factorization
Machine Block ‖ Linear Compress Block, residual, LayerNorm; layers/wukong.py), flattened into an MLP head.
Paper-scale settings stack many wide layers; the defaults here are sized for 2-core CPU runs."""
from __future__ import annotations

import torch
from pydantic import Field, PositiveInt
from torch import nn

from ctrbench.models.base import CTRModel
from ctrbench.models.dnn import MLPParams
from ctrbench.models.layers.mlp import MLP
from ctrbench.models.layers.wukong import WukongLayer
from ctrbench.models.registry import register


@register("wukong")
class Wukong(CTRModel):
    """Embeddings -> Wukong layers -> MLP."""

    class Params(MLPParams):
        num_layers: int = Field(2, ge=1)
        num_fmb_tokens: int = Field(8, ge=1, description="n_F: tokens out of each FM block")
        num_lcb_tokens: int = Field(8, ge=1, description="n_L: tokens out of each linear compress block")
        fmb_rank: int = Field(8, ge=1, description="k of the optimised FM X (Xᵀ Y)")
        fmb_hidden_units: list[PositiveInt] = Field(default_factory=lambda: [256], description="FM block MLP")

    def __init__(self, spec, vocab_sizes, params=None, tables=None):
        super().__init__(spec, vocab_sizes, params, tables)
        p = self.params
        d = self.embedding_dim
        self.embedding = self.make_embedding()
        n = self.embedding.num_fields
        layers = []
        for _ in range(p.num_layers):
            layers.append(WukongLayer(n, d, p.num_fmb_tokens, p.num_lcb_tokens, p.fmb_rank, p.fmb_hidden_units,
                                      p.hidden_activations, p.net_dropout))
            n = layers[-1].num_out
        self.layers = nn.Sequential(*layers)
        self.mlp = MLP(n * d, p.hidden_units, 1, activation_name=p.hidden_activations, dropout=p.net_dropout,
                       batch_norm=p.batch_norm)

    def forward(self, batch) -> torch.Tensor:
        return self.mlp(self.layers(self.embedding(batch)).flatten(1)).squeeze(1)
