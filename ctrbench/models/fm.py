"""Factorization machine (Rendle 2010; BARS FM): linear term + Σ_{i<j} <v_i, v_j> over field embeddings."""
from __future__ import annotations

import torch

from ctrbench.models.base import CTRModel, ModelParams
from ctrbench.models.layers.fm import fm_second_order
from ctrbench.models.lr import LinearTerm
from ctrbench.models.registry import register


@register("fm")
class FM(CTRModel):
    """FM: first-order weights plus pairwise embedding inner products."""

    class Params(ModelParams):
        pass

    def __init__(self, spec, vocab_sizes, params=None, tables=None):
        super().__init__(spec, vocab_sizes, params, tables)
        self.linear = LinearTerm(self)
        self.embedding = self.make_embedding()

    def forward(self, batch) -> torch.Tensor:
        return self.linear(batch) + fm_second_order(self.embedding(batch))
