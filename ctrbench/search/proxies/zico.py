"""ZiCo (Li et al., ICLR 2023): the gradient signal-to-noise ratio, summed in log space over layers.

    ZiCo = sum over parameter tensors m of log( sum over entries j of E_b|g_bj| / std_b(g_bj) )

over the entries whose gradient varies across the batches (std > 0; numpy's std, ddof 0, as the ZiCo and
NASLib-SiGeo code take it); a tensor with no such entry adds nothing. Every trainable parameter tensor is a
"layer" (the weights of the paper's convolutions and linear layers, and here also the lookup tables, norms and
biases; specs/search.md §9.4a: "every trainable layer"). Needs >= 2 batches. Higher = better.
"""
from __future__ import annotations

from ctrbench.search.proxies.base import GradientProxy, GradientStats, log_or_skip
from ctrbench.search.registry import register_proxy


def zico_term(stats: GradientStats) -> float:
    total = 0.0
    for i in range(len(stats.params)):
        g = stats.stacked(i)
        std = g.std(0, unbiased=False)
        varying = std != 0
        term = log_or_skip((g.abs().mean(0)[varying] / std[varying]).sum()) if bool(varying.any()) else None
        total += 0.0 if term is None else term
    return total


@register_proxy("zico")
class ZiCo(GradientProxy):
    min_batches = 2

    def from_stats(self, stats: GradientStats) -> float:
        return zico_term(stats)
