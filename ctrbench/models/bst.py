"""BST (Chen et al., "Behavior Sequence Transformer", DLP-KDD 2019; FuxiCTR/BARS BST): per behaviour group a
transformer over [history ‖ target] with position embeddings, pooled, then an MLP with the other fields.

As FuxiCTR builds it: each token is the group's field embeddings concatenated (g·d) and its position embedding
concatenated after them (d more; a learned table initialised with sinusoids, one row per slot of the
left-padded [history ‖ target], so a position is the distance from the target, as in the paper's
pos = t(target) − t(item)); post-norm transformer layers with a LeakyReLU FFN of the model width (the paper's
choice); pooling "mean" over the valid tokens and the target (default), "sum", or "target" (its output only).
Padded slots are masked out of the attention and the pooling; the target is always valid, so an empty history
still pools to something finite.
"""
from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field
from torch import nn

from ctrbench.models.base import require_heads
from ctrbench.models.layers.transformer import SequenceEncoder
from ctrbench.models.registry import register
from ctrbench.models.sequential import SequentialModel, SequentialParams


def sinusoid_table(rows: int, dim: int) -> torch.Tensor:
    """[rows, dim] sine/cosine position encodings (Vaswani et al.)."""
    pos = torch.arange(rows, dtype=torch.float32).unsqueeze(1)
    div = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(rows, dim)
    table[:, 0::2] = torch.sin(pos * div)
    table[:, 1::2] = torch.cos(pos * div)[:, : dim // 2]
    return table


@register("bst")
class BST(SequentialModel):
    """Embeddings + per-group transformer over [history ‖ target] -> pooled -> MLP."""

    class Params(SequentialParams):
        num_heads: int = Field(2, ge=1)
        num_layers: int = Field(1, ge=1, description="stacked transformer layers")
        ffn_dim: int | None = Field(None, gt=0, description="FFN width; None = the model width (FuxiCTR)")
        attention_dropout: float = Field(0.0, ge=0.0, lt=1.0)
        use_position_emb: bool = True
        seq_pooling: Literal["mean", "sum", "target"] = "mean"

        def check_dataset(self, spec) -> None:
            d = self.resolved_dim(spec)
            for w in self.group_widths(spec):
                width = w + (d if self.use_position_emb else 0)
                require_heads("num_heads", width, self.num_heads, "transformer width")

    def __init__(self, spec, vocab_sizes, params=None, tables=None):
        super().__init__(spec, vocab_sizes, params, tables)
        p = self.params
        d = self.embedding_dim
        widths = self.make_behaviour_inputs()
        self.positions = nn.ParameterList()
        self.encoders = nn.ModuleList()
        out = 0
        for k, w in enumerate(widths):
            width = w + (d if p.use_position_emb else 0)
            if p.use_position_emb:
                self.positions.append(nn.Parameter(sinusoid_table(self.inputs.group_slots(k) + 1, d)))
            self.encoders.append(SequenceEncoder(width, p.num_heads, p.num_layers, p.ffn_dim, p.attention_dropout,
                                                 "leaky_relu"))
            out += width
        self.mlp = self.make_head(out)

    def _group(self, k: int, fields: torch.Tensor, group) -> torch.Tensor:
        tokens, rows, recency, lengths, host = group
        b = lengths.shape[0]
        # the target is the newest token of [history ‖ target]: distance 0 from the end, the history one further
        tokens = torch.cat([tokens, self.inputs.target(fields, k)])
        rows = torch.cat([rows, torch.arange(b, device=rows.device)])
        recency = torch.cat([recency + 1, recency.new_zeros(b)])
        n = lengths + 1
        if self.params.use_position_emb:
            table = self.positions[k]
            tokens = torch.cat([tokens, table[table.shape[0] - 1 - recency]], dim=-1)
        out = self.encoders[k](tokens, rows, recency, n, host_lengths=host + 1)
        if self.params.seq_pooling == "target":
            return out[-b:]
        total = out.new_zeros(b, out.shape[1]).index_add(0, rows, out)
        return total if self.params.seq_pooling == "sum" else total / n.unsqueeze(1).to(total.dtype)

    def forward(self, batch) -> torch.Tensor:
        fields, groups = self.inputs.lookup(self.embedding, batch)
        parts = [self.inputs.others(fields).flatten(1)]
        parts += [self._group(k, fields, groups[k]) for k in range(len(self.inputs.groups))]
        return self.mlp(torch.cat(parts, dim=1)).squeeze(1)
