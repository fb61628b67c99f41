"""Masked average pooling of a left-padded sequence (FuxiCTR MaskedAveragePooling): mean over the
non-padding positions, an all-padding row pools to zero."""
from __future__ import annotations

import torch
from torch import nn


def masked_average_pool(emb: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """emb [B, T, d], mask [B, T] (True/1 = real token) -> [B, d]."""
    mask = mask.to(emb.dtype)
    total = torch.einsum("btd,bt->bd", emb, mask)
    count = mask.sum(dim=1, keepdim=True)
    return total / count.clamp_min(1.0)


class MaskedAveragePooling(nn.Module):
    """Module wrapper of `masked_average_pool`."""

    def forward(self, emb: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return masked_average_pool(emb, mask)
