"""Parameter count: the number of trainable parameters (a baseline every zero-cost study reports; larger models
tend to score better on short budgets). Higher = better."""
from __future__ import annotations

from typing import Sequence

from torch import nn

from ctrbench.search.proxies.base import Proxy
from ctrbench.search.registry import register_proxy


@register_proxy("params")
class ParamCount(Proxy):
    def score(self, model: nn.Module, batches: Sequence) -> float:
        return float(sum(p.numel() for p in model.parameters() if p.requires_grad))
