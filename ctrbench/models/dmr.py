"""DMR (Lyu et al., "Deep Match to Rank Model for Personalized Click-Through Rate Prediction", AAAI 2020;
FuxiCTR/BARS DMR): per behaviour group
- Item-to-Item network: DIN attention whose query at each behaviour is ReLU(W_q [target ‖ p_t]) (p_t a learned
  position embedding, zero-initialised), softmax over the valid behaviours -> the attention-pooled behaviours;
  optionally the sum of the raw scores as the i2i relevance (FuxiCTR enable_i2i_rel, default off);
- User-to-Item network: attention with a position-only query ReLU(W_q p_t) pools the history into the user
  representation u = ReLU(W_o Σ_t softmax(a)_t e_t), and the u2i relevance is <u, target> (one scalar feature);
then an MLP over [other fields ‖ pooled behaviours ‖ relevances].

Choices: the target's embedding for the u2i product is the input embedding (the paper's separate output item
table is not built: InterFormer's DMR parameter counts exceed DIN's by ~1M, not by a second item table); no
context field (FuxiCTR's context concatenation is not runnable as published) and no auxiliary loss (it needs
negative sequences the BARS configs do not provide). A row without history pools to 0 and its u2i relevance
is <ReLU(b_o), target>. Positions count from the end of the left-padded history.
"""
from __future__ import annotations

import torch
from pydantic import Field, PositiveInt
from torch import nn

from ctrbench.models.layers.target_attention import TargetAttention, segment_softmax
from ctrbench.models.registry import register
from ctrbench.models.sequential import Activation, SequentialModel, SequentialParams


class _PositionQuery(nn.Module):
    """ReLU(W [x ‖ p_t]) per behaviour, p_t from a zero-initialised position table (x optional)."""

    def __init__(self, slots: int, pos_dim: int, in_dim: int, out_dim: int):
        super().__init__()
        self.table = nn.Parameter(torch.zeros(slots, pos_dim))
        self.proj = nn.Sequential(nn.Linear(in_dim + pos_dim, out_dim), nn.ReLU())

    def forward(self, position: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        p = self.table[position]
        return self.proj(p if x is None else torch.cat([x, p], dim=-1))


@register("dmr")
class DMR(SequentialModel):
    """Embeddings + per-group item-to-item attention and user-to-item relevance -> MLP."""

    class Params(SequentialParams):
        attention_hidden_units: list[PositiveInt] = Field(default_factory=lambda: [64, 32])
        attention_activation: Activation = "relu"
        attention_dropout: float = Field(0.0, ge=0.0, lt=1.0)
        pos_emb_dim: int = Field(8, ge=1)
        enable_u2i_rel: bool = True
        enable_i2i_rel: bool = False

    def __init__(self, spec, vocab_sizes, params=None, tables=None):
        super().__init__(spec, vocab_sizes, params, tables)
        p = self.params
        widths = self.make_behaviour_inputs()
        self.slots, self.i2i_query, self.i2i_att = [], nn.ModuleList(), nn.ModuleList()
        self.u2i_query, self.u2i_att, self.u2i_out = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        att = dict(hidden_units=p.attention_hidden_units, activation=p.attention_activation,
                   dropout=p.attention_dropout)
        out = 0
        for k, w in enumerate(widths):
            self.slots.append(self.inputs.group_slots(k))
            self.i2i_query.append(_PositionQuery(self.slots[-1], p.pos_emb_dim, w, w))
            self.i2i_att.append(TargetAttention(w, "din", softmax=True, **att))
            if p.enable_u2i_rel:
                self.u2i_query.append(_PositionQuery(self.slots[-1], p.pos_emb_dim, 0, w))
                self.u2i_att.append(TargetAttention(w, "din", softmax=True, **att))
                self.u2i_out.append(nn.Sequential(nn.Linear(w, w), nn.ReLU()))
            out += w + int(p.enable_u2i_rel) + int(p.enable_i2i_rel)
        self.mlp = self.make_head(out)

    def _group(self, k: int, fields: torch.Tensor, group) -> list[torch.Tensor]:
        p = self.params
        tokens, rows, recency, lengths, _ = group
        b, w = lengths.shape[0], tokens.shape[1]
        position = self.slots[k] - 1 - recency
        idx = torch.arange(tokens.shape[0], device=tokens.device)
        target = self.inputs.target(fields, k)

        def pool(weights: torch.Tensor) -> torch.Tensor:
            return tokens.new_zeros(b, w).index_add(0, rows, weights.unsqueeze(-1) * tokens)

        raw = self.i2i_att[k].pair_scores(self.i2i_query[k](position, target[rows]), idx, tokens)
        parts = [pool(segment_softmax(raw, rows, b) if raw.numel() else raw)]
        if p.enable_u2i_rel:
            scores = self.u2i_att[k].pair_scores(self.u2i_query[k](position), idx, tokens)
            user = self.u2i_out[k](pool(segment_softmax(scores, rows, b) if scores.numel() else scores))
            parts.append((user * target).sum(dim=1, keepdim=True))
        if p.enable_i2i_rel:
            parts.append(raw.new_zeros(b).index_add(0, rows, raw).unsqueeze(1))
        return parts

    def forward(self, batch) -> torch.Tensor:
        fields, groups = self.inputs.lookup(self.embedding, batch)
        parts = [self.inputs.others(fields).flatten(1)]
        for k in range(len(self.inputs.groups)):
            parts += self._group(k, fields, groups[k])
        return self.mlp(torch.cat(parts, dim=1)).squeeze(1)
