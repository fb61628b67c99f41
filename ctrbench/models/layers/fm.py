"""Factorization-machine second-order term (Rendle 2010) in its O(F·d) form."""
from __future__ import annotations

import torch
from torch import nn


def fm_second_order(emb: torch.Tensor) -> torch.Tensor:
    """Σ_{i<j} <e_i, e_j> for emb [B, F, d] -> [B], as 0.5·Σ_d((Σ_i e_i)² − Σ_i e_i²)."""
    square_of_sum = emb.sum(dim=1).pow(2)
    sum_of_square = emb.pow(2).sum(dim=1)
    return 0.5 * (square_of_sum - sum_of_square).sum(dim=1)


class FMInteraction(nn.Module):
    """Module wrapper of `fm_second_order` (FuxiCTR's InnerProductInteraction, output 'product_sum')."""

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        return fm_second_order(emb)
