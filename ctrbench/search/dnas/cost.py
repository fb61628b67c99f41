"""The DNAS cost term (specs/search.md §9.8; ctrbench choice, not from the paper): the expected FLOPs of the
supernet's architecture distribution, E[F] = fixed + Σ_blocks Σ_ops p(op) · FLOPs(op), from the same analytic
per-module FLOPs that the discretised model reports, so E[F] is exactly that model's FLOPs for one-hot p.

Forms, with coefficient λ and reference FLOPs F_ref (default: the most expensive point of the supernet):
  linear   loss + λ · E[F] / F_ref           (the DNAS reference's linear variant, on a normalised scale)
  log      loss + λ · log(E[F] / F_ref)      (FBNet / the reference's log cost, added rather than multiplied)
"""
from __future__ import annotations

from typing import Literal

import torch

CostForm = Literal["linear", "log"]


def expected_flops(probs: dict[str, torch.Tensor], op_costs: dict[str, torch.Tensor], fixed: float) -> torch.Tensor:
    """E[F] of per-slot probabilities [num_blocks, n_ops] against per-op FLOPs [n_ops] (differentiable in probs)."""
    if set(probs) != set(op_costs):
        raise ValueError(f"probabilities for slots {sorted(probs)} but costs for {sorted(op_costs)}")
    total = torch.as_tensor(float(fixed), dtype=torch.float64)
    for slot, p in probs.items():
        c = op_costs[slot].to(dtype=torch.float64, device=p.device)
        if p.shape[-1] != c.shape[0]:
            raise ValueError(f"slot {slot!r}: {p.shape[-1]} probabilities per block but {c.shape[0]} op costs")
        total = total.to(p.device) + (p.double() @ c).sum()
    return total


def max_flops(op_costs: dict[str, torch.Tensor], blocks: int, fixed: float) -> float:
    """The FLOPs of the most expensive point (every block's costliest module in each slot)."""
    return float(fixed) + blocks * sum(float(c.max()) for c in op_costs.values())


def cost_term(exp_flops: torch.Tensor, form: CostForm, coefficient: float, reference: float) -> torch.Tensor:
    """The penalty added to the architecture loss."""
    if not reference > 0:
        raise ValueError(f"the cost term's reference FLOPs must be > 0, got {reference}")
    ratio = exp_flops / reference
    if form == "linear":
        return coefficient * ratio
    if form == "log":
        return coefficient * torch.log(ratio)
    raise ValueError(f"unknown cost form {form!r}; valid: linear, log")
