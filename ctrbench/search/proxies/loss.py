"""The current training loss (specs/search.md §3.2 (iii)): minus the mean of the model's loss over the proxy
batches at its current (inherited or warmed) weights, in train mode. Negated so that higher = better."""
from __future__ import annotations

from ctrbench.search.proxies.base import GradientProxy, GradientStats
from ctrbench.search.registry import register_proxy


def mean_loss(stats: GradientStats) -> float:
    return sum(stats.losses) / len(stats.losses)


@register_proxy("loss")
class TrainingLoss(GradientProxy):
    def from_stats(self, stats: GradientStats) -> float:
        return -mean_loss(stats)
