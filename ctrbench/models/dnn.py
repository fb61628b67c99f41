"""DNN (BARS "DNN", YouTube-DNN style): the concatenated field embeddings through an MLP."""
from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, PositiveInt

from ctrbench.models.base import CTRModel, ModelParams
from ctrbench.models.layers.mlp import MLP
from ctrbench.models.registry import register


class MLPParams(ModelParams):
    """MLP settings shared by the deep models (FuxiCTR names)."""

    hidden_units: list[PositiveInt] = Field(default_factory=lambda: [400, 400], description="MLP hidden layer sizes")
    hidden_activations: Literal["relu", "tanh", "sigmoid", "leaky_relu", "gelu", "silu", "prelu"] = "relu"
    net_dropout: float = Field(0.1, ge=0.0, lt=1.0)
    batch_norm: bool = False


@register("dnn")
class DNN(CTRModel):
    """Embeddings -> MLP -> logit."""

    class Params(MLPParams):
        pass

    def __init__(self, spec, vocab_sizes, params=None, tables=None):
        super().__init__(spec, vocab_sizes, params, tables)
        p = self.params
        self.embedding = self.make_embedding()
        self.mlp = MLP(self.embedding.num_fields * self.embedding_dim, p.hidden_units, 1,
                       activation_name=p.hidden_activations, dropout=p.net_dropout, batch_norm=p.batch_norm)

    def forward(self, batch) -> torch.Tensor:
        return self.mlp(self.embedding(batch).flatten(1)).squeeze(1)
