"""DeepFM (Guo et al. 2017; BARS DeepFM): FM (linear + pairwise) and an MLP over the same embeddings."""
from __future__ import annotations

import torch

from ctrbench.models.base import CTRModel
from ctrbench.models.dnn import MLPParams
from ctrbench.models.layers.fm import fm_second_order
from ctrbench.models.layers.mlp import MLP
from ctrbench.models.lr import LinearTerm
from ctrbench.models.registry import register


@register("deepfm")
class DeepFM(CTRModel):
    """logit = linear + FM second order + MLP(embeddings)."""

    class Params(MLPParams):
        pass

    def __init__(self, spec, vocab_sizes, params=None, tables=None):
        super().__init__(spec, vocab_sizes, params, tables)
        p = self.params
        self.linear = LinearTerm(self)
        self.embedding = self.make_embedding()
        self.mlp = MLP(self.embedding.num_fields * self.embedding_dim, p.hidden_units, 1,
                       activation_name=p.hidden_activations, dropout=p.net_dropout, batch_norm=p.batch_norm)

    def forward(self, batch) -> torch.Tensor:
        emb = self.embedding(batch)
        return self.linear(batch) + fm_second_order(emb) + self.mlp(emb.flatten(1)).squeeze(1)
