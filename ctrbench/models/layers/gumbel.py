"""Gumbel-softmax relaxation of a categorical choice (Jang et al. 2017; FBNet, DNAS): softmax((logits + g) / tau)
with g ~ Gumbel(0, 1); `hard=True` is the straight-through form (one-hot forward, the soft sample's gradient).

Written out rather than torch.nn.functional.gumbel_softmax because that function draws its noise from the global
RNG: here the noise comes from a given generator (a seeded, reproducible search) or is passed in (a test fixes it
to check gradients by finite differences)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def gumbel_noise(shape, *, generator: torch.Generator | None = None, dtype=torch.float32) -> torch.Tensor:
    """Standard Gumbel samples -log(-log U), U ~ Uniform(0, 1) kept away from 0 and 1."""
    u = torch.rand(shape, generator=generator, dtype=dtype)
    tiny = torch.finfo(dtype).tiny
    return -torch.log(-torch.log(u.clamp(tiny, 1.0 - torch.finfo(dtype).eps)))


def gumbel_softmax(logits: torch.Tensor, tau: float, *, hard: bool = False, noise: torch.Tensor | None = None,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """A relaxed one-hot sample over the last dim of `logits`; gradients reach the logits in both forms."""
    if not tau > 0:
        raise ValueError(f"Gumbel-softmax temperature must be > 0, got {tau}")
    g = gumbel_noise(logits.shape, generator=generator, dtype=logits.dtype) if noise is None else noise
    soft = F.softmax((logits + g.to(logits.device)) / tau, dim=-1)
    if not hard:
        return soft
    one_hot = F.one_hot(soft.argmax(-1), soft.shape[-1]).to(soft.dtype)
    return one_hot - soft.detach() + soft


class ArchParameters:
    """Mixin of a DNAS supernet (a CTRModel with `alpha`, a ParameterDict of architecture logits): the logits
    train apart from the weights (on validation batches), so `dense_parameters` leaves them out."""

    def arch_parameters(self) -> list:
        return list(self.alpha.values())

    def dense_parameters(self) -> list:
        arch = {id(p) for p in self.arch_parameters()}
        return [p for p in super().dense_parameters() if id(p) not in arch]
