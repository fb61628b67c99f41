"""SiGeo (Zheng et al., arXiv 2311.13169): ZiCo plus the Fisher-Rao norm minus the current training loss,

    SiGeo = lambda1 * ZiCo + lambda2 * FR - lambda3 * L_train          (higher = better)

in the two variants of specs/search.md §9.4, which can rank differently:

- `sigeo` (the paper variant): the ZiCo term of `zico.py` over every trainable tensor and all entries with a
  nonzero gradient std, the FR term of `fisher_rao.py`, L_train the mean loss over the proxy batches (the `loss`
  proxy negated); gradients at the given weights, no optimizer step. lambda = (1, 50, 1), the paper's values at
  warm-up > 0% (lambda1 is not stated in the paper; the code uses 1). With lambda2 = lambda3 = 0 it is ZiCo.
- `sigeo_ref` (the authors' RecSys code, NasRec-SiGeo `compute_zero_shot_metric`): only the final linear layer
  (`model.head_parameters()`) takes gradients; per batch forward, BCE, backward, gradient clipping at norm 5,
  an Adagrad step (lr 0.04, eps 1e-2; the script's cosine schedule is constant over 4 steps and left out), so the
  head trains while it is scored; per tensor the unbiased std over the batches and, as `torch.nonzero(std)[0]`
  does there, only the first entry with a nonzero std (`first_nonzero_only=False` takes them all); FR =
  log(|sum over tensors <sum_b g_b, theta>| + 1e-10) with theta after the last step; L_train the last batch's
  loss; lambda = (1, 1, 0), the scripts' coefficients. The model's weights are restored afterwards.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from ctrbench.search.proxies.base import GradientProxy, GradientStats, Proxy, ProxyError, batch_loss, preserved
from ctrbench.search.proxies.fisher_rao import fisher_rao_term
from ctrbench.search.proxies.loss import mean_loss
from ctrbench.search.proxies.zico import zico_term
from ctrbench.search.registry import register_proxy


def _lambdas(lambda1: float, lambda2: float, lambda3: float) -> tuple[float, float, float]:
    lam = (float(lambda1), float(lambda2), float(lambda3))
    if not all(math.isfinite(x) for x in lam):
        raise ProxyError(f"SiGeo's lambdas must be finite, got {lam}")
    return lam


@register_proxy("sigeo")
class SiGeo(GradientProxy):
    """The paper variant."""

    min_batches = 2

    def __init__(self, lambda1: float = 1.0, lambda2: float = 50.0, lambda3: float = 1.0):
        self.lambdas = _lambdas(lambda1, lambda2, lambda3)

    def from_stats(self, stats: GradientStats) -> float:
        l1, l2, l3 = self.lambdas
        score = l1 * zico_term(stats)
        if l2:
            score += l2 * fisher_rao_term(stats)
        if l3:
            score -= l3 * mean_loss(stats)
        return score


@register_proxy("sigeo_ref")
class SiGeoReference(Proxy):
    """The reference-code variant (head-only gradients, optimizer steps between the batches)."""

    min_batches = 2

    def __init__(self, lambda1: float = 1.0, lambda2: float = 1.0, lambda3: float = 0.0, lr: float = 0.04,
                 eps: float = 1e-2, clip: float = 5.0, first_nonzero_only: bool = True):
        self.lambdas = _lambdas(lambda1, lambda2, lambda3)
        if not (lr > 0 and eps > 0 and clip > 0):
            raise ProxyError(f"sigeo_ref needs lr, eps and clip > 0, got {lr}, {eps}, {clip}")
        self.lr, self.eps, self.clip, self.first_nonzero_only = lr, eps, clip, first_nonzero_only

    def head_trace(self, model: nn.Module, batches: Sequence) -> tuple[list[list[torch.Tensor]], list, list[float]]:
        """(per-batch flattened head gradients after clipping, head weights after the last step, batch losses);
        the model is restored afterwards."""
        head_of = getattr(model, "head_parameters", None)
        if head_of is None:
            raise ProxyError(f"sigeo_ref scores the final linear layer; {type(model).__name__} has no "
                             "head_parameters()")
        head = list(head_of())
        grads, losses = [], []
        with preserved(model, params=True):
            model.train()
            for p in model.parameters():
                p.requires_grad_(False)
            for p in head:
                p.requires_grad_(True)
                p.grad = None
            opt = torch.optim.Adagrad(head, lr=self.lr, eps=self.eps)
            for batch in batches:
                opt.zero_grad(set_to_none=True)
                loss = batch_loss(model, batch)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(head, self.clip)
                opt.step()
                grads.append([p.grad.detach().double().flatten().clone() for p in head])
                losses.append(float(loss.detach()))
            theta = [p.detach().double().flatten().clone() for p in head]
        return grads, theta, losses

    def zico_term(self, grads: list[list[torch.Tensor]]) -> float:
        total = 0.0
        for i in range(len(grads[0])):
            g = torch.stack([gb[i] for gb in grads])
            std, mean_abs = g.std(0, unbiased=True), g.abs().mean(0)
            nonzero = torch.nonzero(std).flatten()
            if nonzero.numel() == 0:
                continue
            pick = nonzero[:1] if self.first_nonzero_only else nonzero
            total += math.log(float((mean_abs[pick] / std[pick]).sum()))
        return total

    def score(self, model: nn.Module, batches: Sequence) -> float:
        self.check_batches(batches)
        grads, theta, losses = self.head_trace(model, batches)
        l1, l2, l3 = self.lambdas
        summed = [torch.stack([gb[i] for gb in grads]).sum(0) for i in range(len(theta))]
        fr = math.log(abs(sum(float(g @ t) for g, t in zip(summed, theta))) + 1e-10)
        return l1 * self.zico_term(grads) + l2 * fr - l3 * losses[-1]
