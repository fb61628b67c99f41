"""InterFormer's personalised FFN (PFFN, §4 / App. A): a per-sample d×d matrix W_b generated from the
non-sequence summary X_sum (n_sum tokens of width d) and applied to every sequence token (a batched matmul).

Generators (spec §4 Q4):
- "low_rank" (the appendix, literally): W_b = X_sumᵀ W with a learned W ∈ R^{n_sum×d}, so W_b has rank ≤ n_sum;
- "mlp": W_b = reshape(Linear(flatten X_sum)) — a full d×d matrix from all summary tokens (the main text's "f").
The block around it follows Meta's production form (BMM + GELU + RMSNorm, KernelEvolve) with a residual:
    PFFNBlock(S) = RMSNorm(S + GELU(S W_bᵀ)) (post-norm) or S + GELU(RMSNorm(S) W_bᵀ) (pre-norm).
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

FORMS = ("low_rank", "mlp")


class PFFN(nn.Module):
    """S [B, N, d], X_sum [B, n_sum, d] -> S W_bᵀ [B, N, d] with W_b = f(X_sum_b) [d, d]."""

    def __init__(self, num_summary: int, dim: int, form: Literal["low_rank", "mlp"] = "low_rank"):
        super().__init__()
        if form not in FORMS:
            raise ValueError(f"unknown PFFN form {form!r}; valid: {', '.join(FORMS)}")
        self.num_summary, self.dim, self.form = num_summary, dim, form
        if form == "low_rank":
            # xavier over (n_sum, d): W_b entries ~ Σ_j x_j w_j keep the token scale
            self.weight = nn.Parameter(torch.randn(num_summary, dim) / num_summary ** 0.5)
        else:
            self.gen = nn.Linear(num_summary * dim, dim * dim)
            nn.init.normal_(self.gen.weight, std=1.0 / (num_summary * dim) ** 0.5 / dim ** 0.5)
            nn.init.zeros_(self.gen.bias)

    def matrix(self, summary: torch.Tensor) -> torch.Tensor:
        """The per-sample W_b [B, d, d] (rows = output coordinates)."""
        if summary.shape[1:] != (self.num_summary, self.dim):
            raise ValueError(f"PFFN expects a summary [B, {self.num_summary}, {self.dim}], got {tuple(summary.shape)}")
        if self.form == "low_rank":
            # paper: W_PFFN = X_sum W, X_sum ∈ R^{d×n_sum} (columns = summary tokens), W ∈ R^{n_sum×d}
            return torch.einsum("bja,jc->bac", summary, self.weight)
        return self.gen(summary.flatten(1)).view(-1, self.dim, self.dim)

    def forward(self, seq: torch.Tensor, summary: torch.Tensor) -> torch.Tensor:
        return torch.bmm(seq, self.matrix(summary).transpose(1, 2))


class PFFNBlock(nn.Module):
    """post-norm: RMSNorm(S + GELU(PFFN(X_sum, S))); pre-norm: S + GELU(PFFN(X_sum, RMSNorm(S)))."""

    def __init__(self, num_summary: int, dim: int, form: Literal["low_rank", "mlp"] = "low_rank",
                 pre_norm: bool = False):
        super().__init__()
        self.pffn = PFFN(num_summary, dim, form)
        self.norm = nn.RMSNorm(dim)
        self.pre_norm = pre_norm

    def forward(self, seq: torch.Tensor, summary: torch.Tensor) -> torch.Tensor:
        if self.pre_norm:
            return seq + F.gelu(self.pffn(self.norm(seq), summary))
        return self.norm(seq + F.gelu(self.pffn(seq, summary)))
