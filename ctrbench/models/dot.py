"""DOT, the "dot product" row of InterFormer's table (its Interaction Arch option "inner product"): DLRM's dot
interaction used as a whole model. Our reading (the paper names the baseline only): every field embedding is a
token (numeric fields as FuxiCTR's value-scaled vectors, sequences mean-pooled), the strictly-upper triangle of
the token Gram matrix gives the pairwise inner products, and an MLP reads [flattened embeddings ‖ products]
(DLRM keeps its dense vector beside the products, IPNN its linear signals); `include_embeddings: false` reads
the products alone. The paper's parameter counts fit this (DOT ≈ the embedding tables + a small MLP: 4.23M on
Amazon, 41.54M on TaobaoAds, 41.29M on KuaiVideo). It differs from `dlrm` (bottom MLP over raw numerics)
only in how numeric fields enter and in keeping every embedding beside the products."""
from __future__ import annotations

import torch

from ctrbench.models.base import CTRModel
from ctrbench.models.dnn import MLPParams
from ctrbench.models.layers.interaction import DotInteraction
from ctrbench.models.layers.mlp import MLP
from ctrbench.models.registry import register


@register("dot")
class DOT(CTRModel):
    """Embeddings -> pairwise inner products (‖ embeddings) -> MLP."""

    class Params(MLPParams):
        include_embeddings: bool = True

    def __init__(self, spec, vocab_sizes, params=None, tables=None):
        super().__init__(spec, vocab_sizes, params, tables)
        p = self.params
        self.embedding = self.make_embedding()
        f = self.embedding.num_fields
        if f < 2:
            raise ValueError(f"DOT needs at least 2 fields, {spec.name} has {f}")
        self.interact = DotInteraction(f)
        d_in = self.interact.output_dim + (f * self.embedding_dim if p.include_embeddings else 0)
        self.mlp = MLP(d_in, p.hidden_units, 1, activation_name=p.hidden_activations, dropout=p.net_dropout,
                       batch_norm=p.batch_norm)

    def forward(self, batch) -> torch.Tensor:
        emb = self.embedding(batch)
        h = self.interact(emb)
        if self.params.include_embeddings:
            h = torch.cat([emb.flatten(1), h], dim=1)
        return self.mlp(h).squeeze(1)
