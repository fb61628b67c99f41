"""DCN-V2 (Wang et al. 2021; BARS/FuxiCTR DCNv2): a cross network and an MLP over the flat embeddings,
stacked (MLP on the cross output), parallel (both on the input, concatenated), both, or cross only;
full-rank, low-rank (W = U Vᵀ) or a mixture of low-rank experts (DCN-Mix)."""
from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, PositiveInt, model_validator
from torch import nn

from ctrbench.models.base import CTRModel, ModelParams
from ctrbench.models.layers.cross import CrossNetMix, CrossNetV2
from ctrbench.models.layers.mlp import MLP, init_linear
from ctrbench.models.registry import register


@register("dcnv2")
class DCNv2(CTRModel):
    """DCN-V2 with FuxiCTR's model_structure choices."""

    class Params(ModelParams):
        model_structure: Literal["crossnet_only", "stacked", "parallel", "stacked_parallel"] = "parallel"
        num_cross_layers: int = Field(3, ge=1)
        low_rank: int | None = Field(None, gt=0, description="rank r of W = U Vᵀ; None = full rank")
        num_experts: int = Field(1, ge=1, description="> 1: mixture of low-rank experts (needs low_rank)")
        stacked_dnn_hidden_units: list[PositiveInt] = Field(default_factory=lambda: [400, 400])
        parallel_dnn_hidden_units: list[PositiveInt] = Field(default_factory=lambda: [400, 400])
        hidden_activations: Literal["relu", "tanh", "sigmoid", "leaky_relu", "gelu", "silu", "prelu"] = "relu"
        net_dropout: float = Field(0.1, ge=0.0, lt=1.0)
        batch_norm: bool = False

        @model_validator(mode="after")
        def _experts_need_rank(self):
            if self.num_experts > 1 and self.low_rank is None:
                raise ValueError("num_experts > 1 (DCN-Mix) needs low_rank")
            return self

    def __init__(self, spec, vocab_sizes, params=None, tables=None):
        super().__init__(spec, vocab_sizes, params, tables)
        p = self.params
        self.embedding = self.make_embedding()
        d_in = self.embedding.num_fields * self.embedding_dim
        if p.num_experts > 1:
            self.crossnet = CrossNetMix(d_in, p.num_cross_layers, p.low_rank, p.num_experts)
        else:
            self.crossnet = CrossNetV2(d_in, p.num_cross_layers, p.low_rank)
        mlp = dict(activation_name=p.hidden_activations, dropout=p.net_dropout, batch_norm=p.batch_norm)
        s = p.model_structure
        self.stacked = MLP(d_in, p.stacked_dnn_hidden_units, **mlp) if s in ("stacked", "stacked_parallel") else None
        self.parallel = MLP(d_in, p.parallel_dnn_hidden_units, **mlp) if s in ("parallel", "stacked_parallel") else None
        if s == "crossnet_only":
            final = d_in
        elif s == "stacked":
            final = self.stacked.output_dim
        elif s == "parallel":
            final = d_in + self.parallel.output_dim
        else:
            final = self.stacked.output_dim + self.parallel.output_dim
        self.fc = nn.Linear(final, 1)
        init_linear(self.fc)

    def forward(self, batch) -> torch.Tensor:
        x = self.embedding(batch).flatten(1)
        cross = self.crossnet(x)
        s = self.params.model_structure
        if s == "crossnet_only":
            h = cross
        elif s == "stacked":
            h = self.stacked(cross)
        elif s == "parallel":
            h = torch.cat([cross, self.parallel(x)], dim=1)
        else:
            h = torch.cat([self.stacked(cross), self.parallel(x)], dim=1)
        return self.fc(h).squeeze(1)
