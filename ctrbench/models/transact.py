"""TransAct (Xia et al., "TransAct: Transformer-based Realtime User Action Model for Recommendation at
Pinterest", KDD 2023; FuxiCTR LongCTR TransAct): per behaviour group a transformer over the action sequence
with the target concatenated to every action (early fusion), read out as the K most recent output tokens plus
a max-pool over all of them (through a Linear), then DCNv2 (cross network ‖ parallel MLP) over these and the
other field embeddings, and an MLP head.

Left padding: padded actions are masked out of the attention, the max-pool and the K most recent tokens
(a slot of the last K that is padding reads 0); an empty history reads 0 from the transformer. FuxiCTR
defaults: 1 layer, 1 head, FFN 512, K = 1, max-pool on, DCN 3 cross layers + MLP [1024, 512, 256]; the
time-window mask needs action timestamps, which the BARS datasets do not have (not built).
"""
from __future__ import annotations

import torch
from pydantic import Field, PositiveInt, field_validator
from torch import nn

from ctrbench.models.base import require_heads
from ctrbench.models.layers.cross import CrossNetV2
from ctrbench.models.layers.dice import make_mlp
from ctrbench.models.layers.mlp import init_linear
from ctrbench.models.layers.transformer import SequenceEncoder
from ctrbench.models.registry import register
from ctrbench.models.sequential import SequentialModel, SequentialParams


@register("transact")
class TransAct(SequentialModel):
    """Embeddings + per-group early-fusion transformer (last K ‖ max-pool) -> DCNv2 -> MLP."""

    class Params(SequentialParams):
        num_heads: int = Field(1, ge=1)
        num_layers: int = Field(1, ge=1, description="stacked transformer layers")
        ffn_dim: int = Field(128, gt=0, description="transformer FFN width (FuxiCTR: 512)")
        transformer_dropout: float = Field(0.0, ge=0.0, lt=1.0)
        first_k: int = Field(1, ge=0, description="the K most recent output tokens kept (FuxiCTR first_k_cols)")
        concat_max_pool: bool = True
        dcn_cross_layers: int = Field(3, ge=1)
        dcn_low_rank: int | None = Field(None, gt=0, description="None = full-rank cross layers")
        mlp_hidden_units: list[PositiveInt] = Field(default_factory=list,
                                                    description="head over [cross ‖ parallel MLP]")

        @field_validator("concat_max_pool")
        @classmethod
        def _some_output(cls, v, info):
            if not v and info.data.get("first_k") == 0:
                raise ValueError("TransAct needs first_k > 0 or concat_max_pool")
            return v

        def check_dataset(self, spec) -> None:
            for w in self.group_widths(spec):
                require_heads("num_heads", 2 * w, self.num_heads, "transformer width ([action ‖ target])")

    def __init__(self, spec, vocab_sizes, params=None, tables=None):
        super().__init__(spec, vocab_sizes, params, tables)
        p = self.params
        if p.first_k == 0 and not p.concat_max_pool:
            raise ValueError("TransAct needs first_k > 0 or concat_max_pool")
        widths = self.make_behaviour_inputs()
        self.encoders = nn.ModuleList()
        self.pool_proj = nn.ModuleList()
        seq_out = 0
        for w in widths:
            width = 2 * w  # [action ‖ target]
            self.encoders.append(SequenceEncoder(width, p.num_heads, p.num_layers, p.ffn_dim, p.transformer_dropout))
            if p.concat_max_pool:
                lin = nn.Linear(width, width)
                init_linear(lin)
                self.pool_proj.append(lin)
            seq_out += (p.first_k + int(p.concat_max_pool)) * width
        d_in = self.inputs.num_other * self.embedding_dim + seq_out
        self.crossnet = CrossNetV2(d_in, p.dcn_cross_layers, p.dcn_low_rank)
        self.parallel = self.make_head(seq_out, output_dim=None)
        self.head = make_mlp(d_in + self.parallel.output_dim, p.mlp_hidden_units, 1, activation=p.hidden_activations)

    def _group(self, k: int, fields: torch.Tensor, group) -> torch.Tensor:
        p = self.params
        tokens, rows, recency, lengths, host = group
        b = lengths.shape[0]
        target = self.inputs.target(fields, k)
        out = self.encoders[k](torch.cat([tokens, target[rows]], dim=-1), rows, recency, lengths, host_lengths=host)
        parts = []
        if p.first_k:  # slots oldest..newest as FuxiCTR's tfmr_out[:, -K:]; a slot without an action reads 0
            sel = recency < p.first_k
            recent = out.new_zeros(b, p.first_k, out.shape[1])
            recent = recent.index_put((rows[sel], p.first_k - 1 - recency[sel]), out[sel])
            parts.append(recent.flatten(1))
        if p.concat_max_pool:
            idx = rows.unsqueeze(1).expand_as(out)
            top = out.new_full((b, out.shape[1]), float("-inf")).scatter_reduce(0, idx, out, "amax", include_self=False)
            pooled = torch.where((lengths > 0).unsqueeze(1), top, torch.zeros_like(top))
            parts.append(self.pool_proj[k](pooled))
        return torch.cat(parts, dim=1)

    def forward(self, batch) -> torch.Tensor:
        fields, groups = self.inputs.lookup(self.embedding, batch)
        parts = [self.inputs.others(fields).flatten(1)]
        parts += [self._group(k, fields, groups[k]) for k in range(len(self.inputs.groups))]
        x = torch.cat(parts, dim=1)
        return self.head(torch.cat([self.crossnet(x), self.parallel(x)], dim=1)).squeeze(1)
