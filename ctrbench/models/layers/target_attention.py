"""Target attention of DIN (Zhou et al. 2018; FuxiCTR DIN_Attention) and the simpler scores DIEN can use.

The activation unit scores each behaviour k against the target q with MLP([q, k, q − k, q ⊙ k]) -> 1, then
either weights the behaviours by the raw scores (DIN's default: no softmax, keeps the intensity of interest)
or by a softmax over the valid ones. The MLP runs on the valid (row, slot) pairs only, so its cost follows the
real history lengths and padding never reaches its BatchNorm/Dice statistics. A row with no valid behaviour
gets all-zero weights and a zero output (finite, no 0/0).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ctrbench.models.layers.dice import make_mlp

SCORES = ("din", "bilinear", "dot")


def segment_softmax(scores: torch.Tensor, rows: torch.Tensor, num_rows: int) -> torch.Tensor:
    """Softmax of jagged scores [N] within each row (rows [N] = each score's row index)."""
    top = scores.detach().new_full((num_rows,), float("-inf")).scatter_reduce(0, rows, scores.detach(), "amax")
    e = torch.exp(scores - top[rows])
    return e / e.new_zeros(num_rows).index_add(0, rows, e)[rows]


def masked_softmax(scores: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Softmax over the valid entries of each row of [B, T]; padded entries and all-padding rows get 0."""
    filled = scores.masked_fill(~valid, torch.finfo(scores.dtype).min)
    return torch.softmax(filled, dim=-1) * valid.to(scores.dtype)


class TargetAttention(nn.Module):
    """scores(q [B, D], keys [B, T, D], valid [B, T]) -> [B, T]; forward -> (Σ_t w_t·keys_t [B, D], w [B, T]);
    pool_jagged does the same pooling on the valid behaviours only ([N, D] tokens with their rows).

    kind "din": the activation unit above; "bilinear": kᵀ W q (W starts at the identity; DIEN's default in
    FuxiCTR); "dot": kᵀ q. `softmax` normalises over the valid slots; without it the scores are masked only.
    """

    def __init__(self, dim: int, kind: str = "din", hidden_units: Sequence[int] = (64, 32),
                 activation: str = "dice", dropout: float = 0.0, softmax: bool = False):
        super().__init__()
        if kind not in SCORES:
            raise ValueError(f"unknown attention score {kind!r}; valid: {', '.join(SCORES)}")
        self.kind, self.softmax, self.dim = kind, softmax, dim
        self.mlp = make_mlp(4 * dim, hidden_units, 1, activation=activation, dropout=dropout) if kind == "din" else None
        self.weight = nn.Parameter(torch.eye(dim)) if kind == "bilinear" else None

    def pair_scores(self, query: torch.Tensor, rows: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """Raw scores [N] of N (target, behaviour) pairs: targets query[rows] ([B, D] indexed), behaviours k [N, D]."""
        if k.shape[0] == 0:
            return k.new_zeros(0)
        if self.kind == "din":
            return self._din_mlp(query, rows, k).squeeze(-1)
        q = query[rows]
        if self.kind == "bilinear":
            return ((k @ self.weight) * q).sum(-1)
        return (k * q).sum(-1)

    def _din_mlp(self, query: torch.Tensor, rows: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """MLP([q, k, q − k, q ⊙ k]) without building the 4D-wide input: the first Linear's blocks are folded,
        W·[q, k, q−k, q⊙k] = (W_1 + W_3)·q + (W_2 − W_3)·k + W_4·(q⊙k) (the same function, half the FLOPs)."""
        first, rest = self.mlp.net[0], self.mlp.net[1:]
        d = self.dim
        w = first.weight
        h = F.linear(query, w[:, :d] + w[:, 2 * d:3 * d], first.bias)[rows]
        h = h + F.linear(k, w[:, d:2 * d] - w[:, 2 * d:3 * d]) + F.linear(query[rows] * k, w[:, 3 * d:])
        return rest(h)

    def weights_jagged(self, query: torch.Tensor, tokens: torch.Tensor, rows: torch.Tensor,
                       token_query: torch.Tensor | None = None) -> torch.Tensor:
        """Attention weights [N] of jagged behaviours tokens [N, D] of rows [N] against query [B, D] (softmax
        within each row when `softmax`); `token_query` [N, D] gives each behaviour its own query instead
        (DMIN's position-aware query)."""
        if token_query is None:
            w = self.pair_scores(query, rows, tokens)
        else:
            idx = torch.arange(tokens.shape[0], device=tokens.device)
            w = self.pair_scores(token_query, idx, tokens)
        return segment_softmax(w, rows, query.shape[0]) if self.softmax and w.numel() else w

    def pool_jagged(self, query: torch.Tensor, tokens: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Attention pooling over jagged behaviours -> [B, D] (a row without behaviours pools to 0)."""
        w = self.weights_jagged(query, tokens, rows)
        return tokens.new_zeros(query.shape[0], tokens.shape[1]).index_add(0, rows, w.unsqueeze(-1) * tokens)

    def scores(self, query: torch.Tensor, keys: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        if self.kind == "din":
            rows, slots = valid.nonzero(as_tuple=True)
            out = keys.new_zeros(valid.shape)
            if rows.numel():
                out = out.index_put((rows, slots), self.pair_scores(query, rows, keys[rows, slots]))
        elif self.kind == "bilinear":
            out = torch.einsum("btd,de,be->bt", keys, self.weight, query)
        else:
            out = torch.einsum("btd,bd->bt", keys, query)
        return masked_softmax(out, valid) if self.softmax else out * valid.to(out.dtype)

    def forward(self, query: torch.Tensor, keys: torch.Tensor, valid: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        w = self.scores(query, keys, valid)
        return torch.einsum("bt,btd->bd", w, keys), w
