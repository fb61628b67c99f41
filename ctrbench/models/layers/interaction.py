"""DLRM's dot interaction: the strictly upper triangle of the field Gram matrix E·Eᵀ."""
from __future__ import annotations

import torch
from torch import nn


class DotInteraction(nn.Module):
    """emb [B, F, d] -> [B, F(F-1)/2] pairwise inner products <e_i, e_j>, i < j (one bmm + one gather)."""

    def __init__(self, num_fields: int):
        super().__init__()
        self.num_fields = num_fields
        rows, cols = torch.triu_indices(num_fields, num_fields, offset=1)
        self.register_buffer("flat_index", rows * num_fields + cols, persistent=False)

    @property
    def output_dim(self) -> int:
        return self.num_fields * (self.num_fields - 1) // 2

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        if emb.shape[1] != self.num_fields:
            raise ValueError(f"DotInteraction built for {self.num_fields} fields, got {emb.shape[1]}")
        gram = torch.bmm(emb, emb.transpose(1, 2))  # [B, F, F]
        return gram.flatten(1).index_select(1, self.flat_index)
