"""EntropyWeightedFusion: nn.Module around torch.ops.ctrbench.entropy_weighted_fusion (CETNet's fusion)."""
from __future__ import annotations

import math

import torch
from torch import nn

from ctrbench.kernels.entropy_fusion.op import entropy_weighted_fusion, to_logit
from ctrbench.kernels.entropy_fusion.reference import SPACES


class EntropyWeightedFusion(nn.Module):
    """Fuses K member logits [B, K] into one prediction per row, weighting confident members up.

    tau is stored as log(tau) so a learned temperature stays positive; `learnable_tau=False` keeps it as a
    buffer. forward returns (fused, weights) with fused in `space`; `logit(fused)` converts it for
    BCE-with-logits.
    """

    def __init__(
        self,
        tau: float = 1.0,
        learnable_tau: bool = True,
        space: str = "prob",
        detach_weights: bool = False,
        eps: float = 1e-6,
        backend: str | None = None,
    ):
        super().__init__()
        if not (tau > 0 and math.isfinite(tau)):
            raise ValueError(f"EntropyWeightedFusion: tau must be finite and > 0, got {tau}")
        if space not in SPACES:
            raise ValueError(f"EntropyWeightedFusion: space must be one of {SPACES}, got {space!r}")
        log_tau = torch.tensor(math.log(tau), dtype=torch.float32)
        if learnable_tau:
            self.log_tau = nn.Parameter(log_tau)
        else:
            self.register_buffer("log_tau", log_tau)
        self.space, self.detach_weights, self.eps, self.backend = space, detach_weights, eps, backend

    @property
    def tau(self) -> torch.Tensor:
        return self.log_tau.exp()

    def forward(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tau = self.tau.to(torch.float64 if logits.dtype == torch.float64 else torch.float32)
        return entropy_weighted_fusion(logits, tau, self.space, self.detach_weights, self.eps, self.backend)

    def logit(self, fused: torch.Tensor) -> torch.Tensor:
        return to_logit(fused, self.space, self.eps)

    def extra_repr(self) -> str:
        return (f"space={self.space!r}, tau={float(self.tau):.4g}, learnable_tau={isinstance(self.log_tau, nn.Parameter)}, "
                f"detach_weights={self.detach_weights}, eps={self.eps}, backend={self.backend!r}")
