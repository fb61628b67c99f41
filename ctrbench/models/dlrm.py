"""DLRM (Naumov et al. 2019; FuxiCTR DLRM): bottom MLP maps the dense features to one embedding-sized
vector, pairwise dot interaction among it and the sparse embeddings, top MLP over [dense vector, interactions]."""
from __future__ import annotations

from typing import Literal

import torch
from torch import nn
from pydantic import Field, PositiveInt

from ctrbench.models.base import CTRModel, ModelParams
from ctrbench.models.layers.interaction import DotInteraction
from ctrbench.models.layers.mlp import MLP
from ctrbench.models.registry import register


@register("dlrm")
class DLRM(CTRModel):
    """DLRM with dot (or concatenation) interaction."""

    class Params(ModelParams):
        embedding_init: Literal["normal", "uniform_rows"] = "uniform_rows"  # DLRM reference init
        bottom_mlp_units: list[PositiveInt] = Field(default_factory=lambda: [64, 64])
        top_mlp_units: list[PositiveInt] = Field(default_factory=lambda: [400, 400])
        hidden_activations: Literal["relu", "tanh", "sigmoid", "leaky_relu", "gelu", "silu", "prelu"] = "relu"
        interaction_op: Literal["dot", "cat"] = "dot"
        net_dropout: float = Field(0.1, ge=0.0, lt=1.0)
        batch_norm: bool = False

    def __init__(self, spec, vocab_sizes, params=None, tables=None):
        super().__init__(spec, vocab_sizes, params, tables)
        p = self.params
        d = self.embedding_dim
        self.embedding = self.make_embedding(include_numeric=False)
        n_dense = len(spec.numeric)
        mlp = dict(activation_name=p.hidden_activations, dropout=p.net_dropout, batch_norm=p.batch_norm)
        self.bottom = MLP(n_dense, p.bottom_mlp_units, d, **mlp) if n_dense else None
        self.dense_norm = nn.BatchNorm1d(n_dense, affine=False) if n_dense and p.numeric_norm else None
        n_fields = self.embedding.num_fields + (1 if n_dense else 0)
        if p.interaction_op == "dot":
            self.interact = DotInteraction(n_fields)
            top_in = self.interact.output_dim + (d if n_dense else 0)
        else:
            self.interact = None
            top_in = n_fields * d
        self.top = MLP(top_in, p.top_mlp_units, 1, **mlp)

    def forward(self, batch) -> torch.Tensor:
        emb = self.embedding(batch)
        dense = None
        if self.bottom is not None:
            dense = self.bottom(batch.dense if self.dense_norm is None else self.dense_norm(batch.dense))
            emb = torch.cat([dense.unsqueeze(1), emb], dim=1)
        if self.interact is None:
            h = emb.flatten(1)
        else:
            h = self.interact(emb)
            if dense is not None:
                h = torch.cat([dense, h], dim=1)
        return self.top(h).squeeze(1)
