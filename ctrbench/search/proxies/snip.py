"""SNIP (Lee et al., ICLR 2019, as a NAS proxy in Abdelfattah et al. 2021): the connection saliency summed over
every parameter, sum |theta * dL/dtheta|, with the gradient of the mean loss over the proxy batches. Higher = better.
"""
from __future__ import annotations

from ctrbench.search.proxies.base import GradientProxy, GradientStats
from ctrbench.search.registry import register_proxy


@register_proxy("snip")
class Snip(GradientProxy):
    def from_stats(self, stats: GradientStats) -> float:
        return sum(float((stats.mean_grad(i) * theta).abs().sum()) for i, theta in enumerate(stats.params))
