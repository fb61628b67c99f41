"""DCNv2 in the multi-embedding paradigm (Guo et al., "On the Embedding Collapse When Scaling up Recommendation
Models", ICML 2024; specs/models.md §2.5), registered as "dcnv2_me".

M independent embedding sets of the base dim d (`num_embeddings`, `embedding_dim`). Each set m feeds its own
interaction module — here everything of DCNv2 that reads the embeddings: the cross network and, in the
"parallel"/"stacked_parallel" structures, the parallel MLP — giving h_m. The paper combines the interaction
outputs by averaging, h = (1/M) Σ_m h_m, before the shared post-processing (`combine: mean`, the default;
"concat" is offered as a variant); here the shared part is the stacked MLP where the structure has one, and the
final linear layer. The comparison the paper makes is against plain DCNv2 ("dcnv2") with one embedding of
dim M·d, which has the same embedding parameter count. Layers are DCNv2's own (CrossNetV2/CrossNetMix, MLP).
"""
from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from ctrbench.models.base import CTRModel
from ctrbench.models.dcnv2 import DCNv2
from ctrbench.models.layers.cross import CrossNetMix, CrossNetV2
from ctrbench.models.layers.mlp import MLP, init_linear
from ctrbench.models.registry import register


class _SetInteraction(nn.Module):
    """The interaction module of one embedding set: cross network (+ parallel MLP), [B, F·d] -> h_m."""

    def __init__(self, d_in: int, p, mlp: dict):
        super().__init__()
        if p.num_experts > 1:
            self.crossnet = CrossNetMix(d_in, p.num_cross_layers, p.low_rank, p.num_experts)
        else:
            self.crossnet = CrossNetV2(d_in, p.num_cross_layers, p.low_rank)
        s = p.model_structure
        self.parallel = MLP(d_in, p.parallel_dnn_hidden_units, **mlp) if s in ("parallel", "stacked_parallel") else None
        self.output_dim = d_in + (self.parallel.output_dim if self.parallel is not None else 0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.crossnet(x), (self.parallel(x) if self.parallel is not None else None)


@register("dcnv2_me")
class DCNv2MultiEmbedding(CTRModel):
    """DCNv2 with M embedding sets, one interaction module per set, outputs averaged (see module docstring)."""

    class Params(DCNv2.Params):
        num_embeddings: int = Field(2, ge=1, description="M: independent embedding sets of embedding_dim each")
        combine: Literal["mean", "concat"] = Field("mean", description="how the M interaction outputs are combined")

    def __init__(self, spec, vocab_sizes, params=None, tables=None):
        super().__init__(spec, vocab_sizes, params, tables)
        p = self.params
        self.embeddings = nn.ModuleList(self.make_embedding() for _ in range(p.num_embeddings))
        d_in = self.embeddings[0].num_fields * self.embedding_dim
        mlp = dict(activation_name=p.hidden_activations, dropout=p.net_dropout, batch_norm=p.batch_norm)
        self.interactions = nn.ModuleList(_SetInteraction(d_in, p, mlp) for _ in range(p.num_embeddings))
        m = p.num_embeddings if p.combine == "concat" else 1
        s = p.model_structure
        cross_dim = d_in * m
        par_dim = (self.interactions[0].output_dim - d_in) * m
        self.stacked = (MLP(cross_dim, p.stacked_dnn_hidden_units, **mlp)
                        if s in ("stacked", "stacked_parallel") else None)
        final = (self.stacked.output_dim if self.stacked is not None else cross_dim) + par_dim
        self.fc = nn.Linear(final, 1)
        init_linear(self.fc)

    def _combine(self, xs: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack(xs).mean(0) if self.params.combine == "mean" else torch.cat(xs, dim=1)

    def forward(self, batch) -> torch.Tensor:
        outs = [inter(emb(batch).flatten(1)) for emb, inter in zip(self.embeddings, self.interactions)]
        cross = self._combine([c for c, _ in outs])
        h = self.stacked(cross) if self.stacked is not None else cross
        if outs[0][1] is not None:
            h = torch.cat([h, self._combine([par for _, par in outs])], dim=1)
        return self.fc(h).squeeze(1)
