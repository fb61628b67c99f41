"""AutoInt+ (Song et al., CIKM 2019; FuxiCTR/BARS AutoInt with a DNN): interacting layers (multi-head
self-attention across fields, layers/autoint.py) -> flatten -> Linear, plus an MLP over the flattened
embeddings (the "+"), plus optionally the linear term (FuxiCTR use_wide)."""
from __future__ import annotations

import torch
from pydantic import Field, field_validator
from torch import nn

from ctrbench.models.base import CTRModel
from ctrbench.models.dnn import MLPParams
from ctrbench.models.layers.autoint import InteractingLayer
from ctrbench.models.layers.mlp import MLP, init_linear
from ctrbench.models.lr import LinearTerm
from ctrbench.models.registry import register


@register("autoint_plus")
class AutoIntPlus(CTRModel):
    """Self-attentive interacting layers + DNN (+ linear)."""

    class Params(MLPParams):
        attention_layers: int = Field(2, ge=1)
        num_heads: int = Field(2, ge=1)
        attention_dim: int = Field(16, ge=1, description="width of each layer's output (all heads together)")

        @field_validator("attention_dim")
        @classmethod
        def _splits_into_heads(cls, v, info):
            heads = info.data.get("num_heads")
            if heads and v % heads:
                raise ValueError(f"attention_dim {v} is not divisible by num_heads={heads}")
            return v
        use_residual: bool = True
        use_scale: bool = False
        layer_norm: bool = False
        use_wide: bool = False

    def __init__(self, spec, vocab_sizes, params=None, tables=None):
        super().__init__(spec, vocab_sizes, params, tables)
        p = self.params
        self.embedding = self.make_embedding()
        f, d = self.embedding.num_fields, self.embedding_dim
        self.attention = nn.Sequential(*[
            InteractingLayer(d if i == 0 else p.attention_dim, p.attention_dim, p.num_heads, p.net_dropout,
                             p.use_residual, p.use_scale, p.layer_norm) for i in range(p.attention_layers)])
        self.fc = nn.Linear(f * p.attention_dim, 1)
        init_linear(self.fc)
        self.mlp = MLP(f * d, p.hidden_units, 1, activation_name=p.hidden_activations, dropout=p.net_dropout,
                       batch_norm=p.batch_norm) if p.hidden_units else None
        self.linear = LinearTerm(self) if p.use_wide else None

    def forward(self, batch) -> torch.Tensor:
        emb = self.embedding(batch)
        logit = self.fc(self.attention(emb).flatten(1)).squeeze(1)
        if self.mlp is not None:
            logit = logit + self.mlp(emb.flatten(1)).squeeze(1)
        if self.linear is not None:
            logit = logit + self.linear(batch)
        return logit
