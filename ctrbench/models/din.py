"""DIN (Zhou et al., KDD 2018; FuxiCTR/BARS DIN): target attention over each behaviour group, then an MLP.

Per behaviour group (layers/behaviour.py: BARS's din_sequence_field / din_target_field tuples), the activation
unit scores every valid behaviour against the target, MLP([q, k, q − k, q ⊙ k]), and the weighted sum of the
behaviours replaces the group's sequences among the inputs; the MLP reads [other field embeddings (targets
included) ‖ attention outputs]. BARS configs: attention MLP [512, 256], Dice, no softmax, DNN [1024, 512, 256]
(Amazon: Dice, Taobao: ReLU), embedding dim 64/32/64; the defaults here are smaller for 2-core CPU runs.
"""
from __future__ import annotations

import torch
from pydantic import Field, PositiveInt

from ctrbench.models.layers.target_attention import TargetAttention
from ctrbench.models.registry import register
from ctrbench.models.sequential import Activation, SequentialModel, SequentialParams


@register("din")
class DIN(SequentialModel):
    """Embeddings + DIN target attention per behaviour group -> MLP."""

    class Params(SequentialParams):
        attention_hidden_units: list[PositiveInt] = Field(default_factory=lambda: [64, 32])
        attention_activation: Activation = "dice"
        attention_dropout: float = Field(0.0, ge=0.0, lt=1.0)
        use_softmax: bool = Field(False, description="softmax over the valid behaviours (DIN's default: no)")

    def __init__(self, spec, vocab_sizes, params=None, tables=None):
        super().__init__(spec, vocab_sizes, params, tables)
        p = self.params
        widths = self.make_behaviour_inputs()
        self.attention = torch.nn.ModuleList(
            TargetAttention(w, "din", p.attention_hidden_units, p.attention_activation, p.attention_dropout,
                            p.use_softmax) for w in widths)
        self.mlp = self.make_head(sum(widths))

    def forward(self, batch) -> torch.Tensor:
        fields, groups = self.inputs.lookup(self.embedding, batch)
        parts = [self.inputs.others(fields).flatten(1)]
        for k, att in enumerate(self.attention):
            tokens, rows, *_ = groups[k]
            parts.append(att.pool_jagged(self.inputs.target(fields, k), tokens, rows))
        return self.mlp(torch.cat(parts, dim=1)).squeeze(1)
