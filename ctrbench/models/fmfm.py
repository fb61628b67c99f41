"""FmFM (Sun et al., "FM²: Field-matrixed Factorization Machines", WWW 2021; FuxiCTR/BARS FmFM): the linear term
plus Σ_{i<j} <e_i M_{ij}, e_j> with a learned d×d matrix per field pair ("matrixed"; "vectorized" = a
diagonal M_{ij}, i.e. FvFM). Sequences enter mean-pooled, as for every non-sequential model here."""
from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from ctrbench.models.base import CTRModel, ModelParams
from ctrbench.models.lr import LinearTerm
from ctrbench.models.registry import register


class FieldMatrixedInteraction(nn.Module):
    """[B, F, d] -> [B]: Σ_{i<j} e_iᵀ M_ij e_j (M_ij d×d, or diagonal when vectorized)."""

    def __init__(self, num_fields: int, dim: int, kind: Literal["matrixed", "vectorized"] = "matrixed"):
        super().__init__()
        rows, cols = torch.triu_indices(num_fields, num_fields, offset=1)
        self.register_buffer("left", rows, persistent=False)
        self.register_buffer("right", cols, persistent=False)
        self.kind = kind
        pairs = rows.numel()
        if kind == "matrixed":
            w = torch.empty(pairs, dim, dim)
            for m in w:
                nn.init.xavier_normal_(m)
        else:
            w = torch.empty(pairs, dim)
            nn.init.xavier_normal_(w)
        self.weight = nn.Parameter(w)

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        left, right = emb[:, self.left], emb[:, self.right]
        if self.kind == "matrixed":
            left = torch.einsum("bpd,pde->bpe", left, self.weight)
        else:
            left = left * self.weight
        return (left * right).sum(dim=(1, 2))


@register("fmfm")
class FmFM(CTRModel):
    """logit = linear term + field-matrixed pairwise interactions."""

    class Params(ModelParams):
        field_interaction_type: Literal["matrixed", "vectorized"] = "matrixed"

    def __init__(self, spec, vocab_sizes, params=None, tables=None):
        super().__init__(spec, vocab_sizes, params, tables)
        self.linear = LinearTerm(self)
        self.embedding = self.make_embedding()
        self.interaction = FieldMatrixedInteraction(self.embedding.num_fields, self.embedding_dim,
                                                    self.params.field_interaction_type)

    def forward(self, batch) -> torch.Tensor:
        return self.linear(batch) + self.interaction(self.embedding(batch))
