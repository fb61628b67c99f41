"""Gradient norm (Abdelfattah et al., ICLR 2021; NAS-Bench-Suite-Zero's grad_norm): the sum over parameter
tensors of the L2 norm of the gradient of the mean loss over the proxy batches. Higher = better."""
from __future__ import annotations

from ctrbench.search.proxies.base import GradientProxy, GradientStats
from ctrbench.search.registry import register_proxy


@register_proxy("grad_norm")
class GradNorm(GradientProxy):
    def from_stats(self, stats: GradientStats) -> float:
        return sum(float(stats.mean_grad(i).norm()) for i in range(len(stats.params)))
