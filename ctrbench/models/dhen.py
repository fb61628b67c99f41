"""DHEN baseline (Zhang et al. 2022; the non-sequential row of InterFormer's table): all field embeddings
(sequences mean-pooled, as every non-sequential model here sees them) as tokens -> stacked DHEN layers
(dot-product + DCN modules by default) -> flatten -> MLP -> logit."""
from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from ctrbench.models.base import CTRModel
from ctrbench.models.dnn import MLPParams
from ctrbench.models.layers.dhen import DHEN as DHENStack
from ctrbench.models.layers.mlp import MLP
from ctrbench.models.registry import register


@register("dhen")
class DHEN(CTRModel):
    """Embeddings -> DHEN layers -> MLP."""

    class Params(MLPParams):
        num_layers: int = Field(2, ge=1, description="DHEN layers (the paper searched {1, 2, 3})")
        modules: list[Literal["dot", "dcn"]] = Field(default_factory=lambda: ["dot", "dcn"], min_length=1)
        ensemble: Literal["concat", "sum"] = "concat"
        cross_layers: int = Field(1, ge=1, description="DCN cross layers inside one DCN module")
        low_rank: int | None = Field(32, gt=0, description="DCN low rank (InterFormer's DCNv2 setting: 32); None = full")

    def __init__(self, spec, vocab_sizes, params=None, tables=None):
        super().__init__(spec, vocab_sizes, params, tables)
        p = self.params
        self.embedding = self.make_embedding()
        m, d = self.embedding.num_fields, self.embedding_dim
        self.dhen = DHENStack(m, d, p.num_layers, p.modules, p.ensemble, p.cross_layers, p.low_rank)
        self.mlp = MLP(m * d, p.hidden_units, 1, activation_name=p.hidden_activations, dropout=p.net_dropout,
                       batch_norm=p.batch_norm)

    def forward(self, batch) -> torch.Tensor:
        return self.mlp(self.dhen(self.embedding(batch)).flatten(1)).squeeze(1)
