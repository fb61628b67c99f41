"""Logistic regression (BARS LR): a learned weight per feature value (a 1-d embedding) summed, plus a bias."""
from __future__ import annotations

import torch
from torch import nn

from ctrbench.models.base import CTRModel, ModelParams
from ctrbench.models.registry import register


class LinearTerm(nn.Module):
    """Σ_f w_f(x_f) + b over every field (FuxiCTR LogisticRegression): the first-order part of FM/DeepFM."""

    def __init__(self, model: CTRModel):
        super().__init__()
        self.embedding = model.make_embedding(1)
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, batch) -> torch.Tensor:
        return self.embedding(batch).sum(dim=(1, 2)) + self.bias


@register("lr")
class LR(CTRModel):
    """Logistic regression."""

    class Params(ModelParams):
        pass

    def __init__(self, spec, vocab_sizes, params=None, tables=None):
        super().__init__(spec, vocab_sizes, params, tables)
        self.linear = LinearTerm(self)

    def forward(self, batch) -> torch.Tensor:
        return self.linear(batch)
