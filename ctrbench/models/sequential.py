"""What the sequential baselines (DIN, DIEN, DMR, DMIN, BST, TransAct) share: their settings, the behaviour
groups read beside the field embeddings (layers/behaviour.py), and the MLP over [other field embeddings ‖ what
the groups give]."""
from __future__ import annotations

from typing import Literal

from pydantic import Field
from torch import nn

from ctrbench.errors import ParamError
from ctrbench.models.base import CTRModel
from ctrbench.models.dnn import MLPParams
from ctrbench.models.layers.behaviour import BehaviourInputs, resolve_groups
from ctrbench.models.layers.dice import make_mlp

Activation = Literal["relu", "tanh", "sigmoid", "leaky_relu", "gelu", "silu", "prelu", "dice"]


class SequentialParams(MLPParams):
    """Settings shared by the sequential baselines: which sequences are attended together, how much history."""

    hidden_activations: Activation = "relu"
    sequence_groups: list[list[str]] | None = Field(
        None, description="behaviour groups (aligned sequence fields); None = the BARS config's, else one per field")
    max_seq_len: int | None = Field(None, gt=0, description="keep only the most recent slots; None = all")

    def group_widths(self, spec) -> list[int]:
        """Each behaviour group's token width (g·d) on `spec`, as BehaviourInputs builds them; ParamError where the
        dataset has no sequence or `sequence_groups` does not fit it."""
        if not spec.sequences:
            raise ParamError(None, f"{spec.name} has no sequence field for a sequential model")
        try:
            groups = resolve_groups(spec, self.sequence_groups)
        except ValueError as exc:
            raise ParamError("sequence_groups", str(exc)) from None
        return [len(g.sequences) * self.resolved_dim(spec) for g in groups]

    def check_dataset(self, spec) -> None:
        self.group_widths(spec)


class SequentialModel(CTRModel):
    """A CTRModel over behaviour groups, with self.embedding and self.inputs (BehaviourInputs)."""

    def make_behaviour_inputs(self) -> list[int]:
        """Build self.embedding and self.inputs (the params' groups and history cap); each group's width."""
        p = self.params
        grouped = [n for g in resolve_groups(self.spec, p.sequence_groups) for n in g.sequences]
        self.embedding = self.make_embedding(unpooled=grouped)  # grouped sequences are read token by token
        self.inputs = BehaviourInputs(self.spec, self.embedding, p.sequence_groups, p.max_seq_len)
        return [self.inputs.group_width(k) for k in range(len(self.inputs.groups))]

    def make_head(self, group_features: int, output_dim: int | None = 1) -> nn.Module:
        """The params' MLP (hidden units, activation, dropout, batch norm) over the other fields' embeddings
        and `group_features` more inputs."""
        p = self.params
        return make_mlp(self.inputs.num_other * self.embedding_dim + group_features, p.hidden_units, output_dim,
                        activation=p.hidden_activations, dropout=p.net_dropout, batch_norm=p.batch_norm)
