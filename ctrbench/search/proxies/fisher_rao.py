"""The Fisher-Rao norm term of SiGeo (specs/search.md §3.2 (ii)), as the authors' NAS-Bench code estimates it:

    FR = 2 * log( sum over parameter tensors m of |<sum_b g_bm, theta_m>| + 1e-5 )

the squared inner product of the weights with the batch-summed gradient is a rank-one estimate of
theta^T F theta (the factor 2 takes the log of that square). Gradients and weights are every trainable tensor's,
at the current weights. Higher = better (SiGeo reads a larger FR norm as a lower attainable training loss).
"""
from __future__ import annotations

import math

from ctrbench.search.proxies.base import GradientProxy, GradientStats
from ctrbench.search.registry import register_proxy

EPS = 1e-5


def fisher_rao_term(stats: GradientStats) -> float:
    total = sum(abs(float((stats.stacked(i).sum(0) * theta).sum())) for i, theta in enumerate(stats.params))
    return 2.0 * math.log(total + EPS)


@register_proxy("fisher_rao")
class FisherRao(GradientProxy):
    def from_stats(self, stats: GradientStats) -> float:
        return fisher_rao_term(stats)
