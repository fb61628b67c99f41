"""xDeepFM (Lian et al., KDD 2018; FuxiCTR/BARS xDeepFM): logit = linear term + CIN (layers/cin.py, pooled maps
through a Linear) + MLP over the flattened embeddings. InterFormer's setting: CIN size 32."""
from __future__ import annotations

import torch
from pydantic import Field, PositiveInt
from torch import nn

from ctrbench.models.base import CTRModel
from ctrbench.models.dnn import MLPParams
from ctrbench.models.layers.cin import CIN
from ctrbench.models.layers.mlp import MLP, init_linear
from ctrbench.models.lr import LinearTerm
from ctrbench.models.registry import register


@register("xdeepfm")
class XDeepFM(CTRModel):
    """Linear + CIN + DNN."""

    class Params(MLPParams):
        cin_hidden_units: list[PositiveInt] = Field(default_factory=lambda: [32, 32], min_length=1)

    def __init__(self, spec, vocab_sizes, params=None, tables=None):
        super().__init__(spec, vocab_sizes, params, tables)
        p = self.params
        self.linear = LinearTerm(self)
        self.embedding = self.make_embedding()
        f = self.embedding.num_fields
        self.cin = CIN(f, p.cin_hidden_units)
        self.cin_fc = nn.Linear(self.cin.output_dim, 1)
        init_linear(self.cin_fc)
        self.mlp = MLP(f * self.embedding_dim, p.hidden_units, 1, activation_name=p.hidden_activations,
                       dropout=p.net_dropout, batch_norm=p.batch_norm) if p.hidden_units else None

    def forward(self, batch) -> torch.Tensor:
        emb = self.embedding(batch)
        logit = self.linear(batch) + self.cin_fc(self.cin(emb)).squeeze(1)
        if self.mlp is not None:
            logit = logit + self.mlp(emb.flatten(1)).squeeze(1)
        return logit
