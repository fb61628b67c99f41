"""DIEN's recurrent pieces (Zhou et al., AAAI 2019) on packed behaviours: the GRU of the interest extractor and
the attentional GRUs of the interest-evolving layer, stepping over each row's own behaviours only.

AUGRU: h_t = (1 − a_t·u_t) ⊙ h_{t−1} + a_t·u_t ⊙ h̃_t (the update gate scaled by the attention score);
AGRU:  h_t = (1 − a_t) ⊙ h_{t−1} + a_t ⊙ h̃_t (the update gate replaced by it).

`pack_behaviours` turns the jagged valid behaviours of left-padded rows (layers/behaviour.py `jagged`) into
time-major packed order (PyTorch's PackedSequence layout: step 0 of every row, then step 1 of the rows still
running, …, rows sorted longest first), so nothing is computed for padding and no dense [B, T, D] is built.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

KINDS = ("gru", "augru", "agru")


@dataclass
class PackedBehaviours:
    """Time-major packing of N jagged behaviours. `perm` reorders jagged entries into packed order; per packed
    entry: `step` (0 = the row's oldest behaviour) and `rank` (its row's place in `order`, the rows sorted by
    length, longest first); `batch_sizes` (host ints, one per step, as PackedSequence keeps them) and the
    `offsets` of each step."""

    perm: torch.Tensor
    step: torch.Tensor
    rank: torch.Tensor
    order: torch.Tensor
    batch_sizes: list[int]
    offsets: torch.Tensor
    num_rows: int  # rows with at least one behaviour (the first num_rows of `order`)

    def unsort(self, sorted_rows: torch.Tensor, batch_size: int) -> torch.Tensor:
        """[num_rows, H] in sorted order -> [B, H] in batch order, zero for rows without behaviours."""
        pad = sorted_rows.new_zeros(batch_size - self.num_rows, sorted_rows.shape[1])
        return torch.cat([sorted_rows, pad])[torch.argsort(self.order)]


def pack_behaviours(rows: torch.Tensor, recency: torch.Tensor, lengths: torch.Tensor,
                    host_lengths: np.ndarray | None = None) -> PackedBehaviours:
    """Packing of jagged behaviours given each one's row, its distance from the row's end and the rows' lengths
    (`host_lengths`: the same lengths on the host, which size the packing without a device read)."""
    b = lengths.shape[0]
    host = lengths.cpu().numpy() if host_lengths is None else np.asarray(host_lengths)
    lengths = lengths.to(torch.int64)
    order = torch.from_numpy(np.argsort(-host, kind="stable")).to(lengths.device)
    rank_of_row = torch.empty_like(order)
    rank_of_row[order] = torch.arange(b, device=order.device)
    step = lengths[rows] - 1 - recency
    rank = rank_of_row[rows]
    perm = torch.argsort(step * b + rank)
    step, rank = step[perm], rank[perm]
    longest = int(host.max(initial=0))
    sizes = (host[:, None] > np.arange(longest)[None, :]).sum(0)  # rows still running at each step
    offsets = torch.from_numpy(np.cumsum(sizes) - sizes).to(lengths.device)
    return PackedBehaviours(perm, step, rank, order, sizes.tolist(), offsets, int((host > 0).sum()))


class PackedGRU(nn.Module):
    """A GRU over packed behaviours [N, D] (PyTorch's GRU: same equations, gate layout and initialisation, so
    "gru" equals nn.GRU with the same weights), or attentional:
    "augru" / "agru" with one attention score per behaviour. Returns every step's state [N, H] (packed order)
    and each row's final state [num_rows, H] (sorted order; h_0 = 0). Step t updates only the rows still
    running. (PyTorch's packed nn.GRU on the CPU writes a full-size zero gradient per step in its backward,
    which made it the slowest part of DIEN here; this loop does not.)"""

    def __init__(self, input_dim: int, hidden_dim: int, kind: str = "gru"):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"unknown GRU kind {kind!r}; valid: {', '.join(KINDS)}")
        self.kind, self.hidden_dim = kind, hidden_dim
        self.x2h = nn.Linear(input_dim, 3 * hidden_dim)
        self.h2h = nn.Linear(hidden_dim, 3 * hidden_dim)
        bound = hidden_dim ** -0.5
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def forward(self, data: torch.Tensor, packing: PackedBehaviours, scores: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        if (scores is None) != (self.kind == "gru"):
            raise ValueError(f"a {self.kind!r} GRU {'needs' if scores is None else 'takes no'} attention scores")
        sizes = packing.batch_sizes
        h = data.new_zeros(packing.num_rows, self.hidden_dim)
        states, finished = [], []
        # every step's input projection in one matmul; gates are separated with view+unbind, not chunk (whose
        # backward on a split view writes a full-size zero gradient at every step)
        gates_x = self.x2h(data).view(data.shape[0], 3, self.hidden_dim).split(sizes)
        steps = scores.unsqueeze(-1).split(sizes) if scores is not None else [None] * len(sizes)
        for gx, a in zip(gates_x, steps):
            n = gx.shape[0]
            if n < h.shape[0]:  # rows n.. have ended: keep their final state
                finished.append(h[n:])
                h = h[:n]
            xr, xz, xn = gx.unbind(1)  # PyTorch's gate order (reset, "keep" z, new)
            hr, hz, hn = self.h2h(h).view(n, 3, self.hidden_dim).unbind(1)
            reset = torch.sigmoid(xr + hr)
            candidate = torch.tanh(xn + reset * hn)
            update = torch.sigmoid(-(xz + hz))  # u = 1 − z, DIEN's update gate
            if self.kind == "augru":
                update = a * update
            elif self.kind == "agru":
                update = a
            h = h + update * (candidate - h)
            states.append(h)
        finished.append(h)
        all_states = torch.cat(states) if states else data.new_zeros(0, self.hidden_dim)
        return all_states, torch.cat(finished[::-1])
