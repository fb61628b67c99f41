"""DMIN (Xiao et al., "Deep Multi-Interest Network for Click-through Rate Prediction", CIKM 2020; FuxiCTR/BARS
DMIN): per behaviour group a behaviour-refiner layer (causal multi-head self-attention + FFN), then a
multi-interest extractor whose every head h gives its own refined sequence (head output -> W_o^h, residual,
LayerNorm, FFN) and its own interest: DIN target attention over that sequence with a position-aware query
W_proj^h([target ‖ p_t]) (p_t a learned position embedding, zero-initialised), softmax over the valid behaviours.
The H interests of each group join the other field embeddings in the MLP.

Masks: a behaviour attends to itself and the valid behaviours before it (causal, padding masked), as FuxiCTR
builds them; positions count from the end of the left-padded history. Left out: the auxiliary loss (it needs
per-step negative sequences, which the BARS configs do not provide; FuxiCTR's default weight is 0).
FuxiCTR defaults: 4 heads, attention MLP [80, 40] ReLU, position dim 8, DNN [512, 128, 64] Dice.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field, PositiveInt
from torch import nn

from ctrbench.models.base import require_heads
from ctrbench.models.layers.target_attention import TargetAttention
from ctrbench.models.layers.transformer import run_chunked
from ctrbench.models.registry import register
from ctrbench.models.sequential import Activation, SequentialModel, SequentialParams


def causal_blocked(pad: torch.Tensor) -> torch.Tensor:
    """[n, W, W] bool, True where query i may NOT read key j: j after i or j padding (i itself always allowed)."""
    w = pad.shape[1]
    ahead = torch.triu(torch.ones(w, w, dtype=torch.bool, device=pad.device), 1)
    blocked = ahead.unsqueeze(0) | pad.unsqueeze(1)
    return blocked & ~torch.eye(w, dtype=torch.bool, device=pad.device)


def _ffn(dim: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, dim))


class BehaviourRefiner(nn.Module):
    """s = LayerNorm(x + MHA(x)), out = s + FFN(s) (FuxiCTR BehaviorRefinerLayer), causal."""

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0, layer_norm: bool = True):
        super().__init__()
        self.num_heads = num_heads
        self.attention = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.ffn = _ffn(dim, 2 * dim)
        self.norm = nn.LayerNorm(dim) if layer_norm else nn.Identity()
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        mask = causal_blocked(pad).repeat_interleave(self.num_heads, 0)
        out, _ = self.attention(x, x, x, attn_mask=mask, need_weights=False)
        s = self.norm(x + self.drop(out))
        return s + self.ffn(s)


class MultiInterestHeads(nn.Module):
    """Per head h: the head's attention output -> W_o^h -> + x -> LayerNorm -> + FFN: [n, W, D] -> [n, W, H·D]."""

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0, layer_norm: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"DMIN width {dim} is not divisible by num_heads={num_heads}")
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.out = nn.ModuleList(nn.Linear(self.head_dim, dim, bias=False) for _ in range(num_heads))
        self.norms = nn.ModuleList((nn.LayerNorm(dim) if layer_norm else nn.Identity()) for _ in range(num_heads))
        self.ffns = nn.ModuleList(_ffn(dim, 2 * dim) for _ in range(num_heads))
        self.drop = nn.Dropout(dropout)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        n, w, _ = x.shape
        q, k, v = self.qkv(x).view(n, w, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        heads = F.scaled_dot_product_attention(q, k, v, attn_mask=~causal_blocked(pad).unsqueeze(1),
                                               dropout_p=self.dropout if self.training else 0.0)
        outs = []
        for h, head in enumerate(heads.unbind(1)):
            s = self.norms[h](x + self.drop(self.out[h](head)))
            outs.append(s + self.ffns[h](s))
        return torch.cat(outs, dim=-1)


@register("dmin")
class DMIN(SequentialModel):
    """Embeddings + per-group behaviour refiner and multi-interest extractor -> H interests per group -> MLP."""

    class Params(SequentialParams):
        num_heads: int = Field(4, ge=1, description="interests per behaviour group")
        use_behavior_refiner: bool = True
        attention_hidden_units: list[PositiveInt] = Field(default_factory=lambda: [64, 32])
        attention_activation: Activation = "relu"
        attention_dropout: float = Field(0.0, ge=0.0, lt=1.0)
        pos_emb_dim: int = Field(8, ge=1)
        layer_norm: bool = True
        chunk_rows: int = Field(256, ge=1, description="rows per length bucket of the self-attention")

        def check_dataset(self, spec) -> None:
            for w in self.group_widths(spec):
                require_heads("num_heads", w, self.num_heads, "behaviour group width")

    def __init__(self, spec, vocab_sizes, params=None, tables=None):
        super().__init__(spec, vocab_sizes, params, tables)
        p = self.params
        widths = self.make_behaviour_inputs()
        self.refiners, self.extractors = nn.ModuleList(), nn.ModuleList()
        self.positions, self.query_proj, self.attention = nn.ParameterList(), nn.ModuleList(), nn.ModuleList()
        self.slots = []
        out = 0
        for k, w in enumerate(widths):
            self.slots.append(self.inputs.group_slots(k))
            self.refiners.append(BehaviourRefiner(w, p.num_heads, p.attention_dropout, p.layer_norm)
                                 if p.use_behavior_refiner else nn.Identity())
            self.extractors.append(MultiInterestHeads(w, p.num_heads, p.attention_dropout, p.layer_norm))
            self.positions.append(nn.Parameter(torch.zeros(p.num_heads, self.slots[-1], p.pos_emb_dim)))
            self.query_proj.append(nn.ModuleList(nn.Linear(w + p.pos_emb_dim, w) for _ in range(p.num_heads)))
            self.attention.append(nn.ModuleList(
                TargetAttention(w, "din", p.attention_hidden_units, p.attention_activation, p.attention_dropout,
                                softmax=True) for _ in range(p.num_heads)))
            out += p.num_heads * w
        self.mlp = self.make_head(out)

    def _interests(self, k: int, fields: torch.Tensor, group) -> torch.Tensor:
        p = self.params
        tokens, rows, recency, lengths, host = group
        w = tokens.shape[1]
        refiner, extractor = self.refiners[k], self.extractors[k]

        def interest_sequences(dense: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
            x = dense if isinstance(refiner, nn.Identity) else refiner(dense, pad)
            return extractor(x, pad)

        per_head = run_chunked(tokens, rows, recency, lengths, interest_sequences, p.num_heads * w, p.chunk_rows,
                               host_lengths=host)
        target = self.inputs.target(fields, k)
        position = self.slots[k] - 1 - recency
        out = []
        for h in range(p.num_heads):
            seq = per_head[:, h * w:(h + 1) * w]
            query = self.query_proj[k][h](torch.cat([target[rows], self.positions[k][h][position]], dim=-1))
            weights = self.attention[k][h].weights_jagged(target, seq, rows, token_query=query)
            out.append(seq.new_zeros(target.shape[0], w).index_add(0, rows, weights.unsqueeze(-1) * seq))
        return torch.cat(out, dim=1)

    def forward(self, batch) -> torch.Tensor:
        fields, groups = self.inputs.lookup(self.embedding, batch)
        parts = [self.inputs.others(fields).flatten(1)]
        parts += [self._interests(k, fields, groups[k]) for k in range(len(self.inputs.groups))]
        return self.mlp(torch.cat(parts, dim=1)).squeeze(1)
