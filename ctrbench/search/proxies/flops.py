"""FLOPs per example of the forward pass (the model's analytic `flops()` where it has one, as NASRec subnets do;
else ctrbench.flops' count of one forward over the first batch, divided by its rows). Higher = better (the
baseline reading of zero-cost studies: more compute, better model)."""
from __future__ import annotations

from typing import Sequence

from torch import nn

from ctrbench.search.proxies.base import Proxy
from ctrbench.search.registry import register_proxy


@register_proxy("flops")
class Flops(Proxy):
    def score(self, model: nn.Module, batches: Sequence) -> float:
        analytic = getattr(model, "flops", None)
        if callable(analytic):
            return float(analytic())
        from ctrbench.flops import count_flops

        self.check_batches(batches)
        return count_flops(model, batches[0], train=False) / batches[0].batch_size
