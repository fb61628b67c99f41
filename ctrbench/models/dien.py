"""DIEN (Zhou et al., AAAI 2019; FuxiCTR/BARS DIEN): per behaviour group an interest extractor (GRU over the
history), target attention over the interest states, and an interest-evolving AUGRU (or AGRU/AIGRU/GRU) whose
final state joins the other field embeddings in the MLP.

Left padding: only each row's valid behaviours are embedded and packed in time order (layers/gru.py), so the
GRUs step over real behaviours only (oldest first) and the final state is the state after the most recent one;
a row without history gives a zero final state and no attention weight.

Auxiliary loss (DIEN §4.2, optional, `aux_loss_weight` > 0): the interest state h_t must tell the next
behaviour e_{t+1} from a negative, step t+1 of another row of the batch (negative sampling from the batch): BCE of aux_net([h_t, e]) over the valid
pairs, weighted, returned by `aux_loss()` after a training forward. BARS's DIEN runs used no auxiliary loss
(aux_loss_alpha 0), din_attention with Dice and softmax, AUGRU, DNN [1024, 512, 256].
"""
from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, PositiveInt
from torch import nn

from ctrbench.models.layers.dice import make_mlp
from ctrbench.models.layers.gru import PackedBehaviours, PackedGRU, pack_behaviours
from ctrbench.models.layers.target_attention import TargetAttention
from ctrbench.models.registry import register
from ctrbench.models.sequential import Activation, SequentialModel, SequentialParams


@register("dien")
class DIEN(SequentialModel):
    """Embeddings + per-group GRU -> attention -> AUGRU final state -> MLP."""

    class Params(SequentialParams):
        gru_type: Literal["augru", "agru", "aigru", "gru"] = "augru"
        attention_type: Literal["din", "bilinear", "dot"] = "din"
        attention_hidden_units: list[PositiveInt] = Field(default_factory=lambda: [64, 32])
        attention_activation: Activation = "dice"
        attention_dropout: float = Field(0.0, ge=0.0, lt=1.0)
        use_softmax: bool = Field(True, description="softmax over the valid interest states (BARS: yes)")
        aux_loss_weight: float = Field(0.0, ge=0.0, allow_inf_nan=False,
                                       description="α of the auxiliary loss; 0 = off (BARS)")
        aux_hidden_units: list[PositiveInt] = Field(default_factory=lambda: [64, 32])

    def __init__(self, spec, vocab_sizes, params=None, tables=None):
        super().__init__(spec, vocab_sizes, params, tables)
        p = self.params
        widths = self.make_behaviour_inputs()
        self.extractors = nn.ModuleList(PackedGRU(w, w) for w in widths)
        self.attention = nn.ModuleList(
            TargetAttention(w, p.attention_type, p.attention_hidden_units, p.attention_activation,
                            p.attention_dropout, p.use_softmax) if p.gru_type != "gru" else nn.Identity()
            for w in widths)
        kind = p.gru_type if p.gru_type in ("augru", "agru") else "gru"
        self.evolution = nn.ModuleList(PackedGRU(w, w, kind) for w in widths)
        self.aux_nets = nn.ModuleList(
            make_mlp(2 * w, p.aux_hidden_units, 1, activation="relu") for w in widths) if p.aux_loss_weight else None
        self._aux: torch.Tensor | None = None
        self.mlp = self.make_head(sum(widths))

    def _evolve(self, k: int, interests: torch.Tensor, target: torch.Tensor, packing: PackedBehaviours,
                batch_size: int) -> torch.Tensor:
        """The interest-evolving layer's final state per row [B, H] (0 for a row without history)."""
        kind = self.params.gru_type
        scores = None
        if kind != "gru":
            scores = self.attention[k].weights_jagged(target[packing.order], interests, packing.rank)
        if kind in ("augru", "agru"):
            _, final = self.evolution[k](interests, packing, scores)
        else:  # gru: the interests as they are; aigru: scaled by their attention
            _, final = self.evolution[k](interests if scores is None else interests * scores.unsqueeze(-1), packing)
        return packing.unsort(final, batch_size)

    def _aux_term(self, k: int, interests: torch.Tensor, data: torch.Tensor, packing: PackedBehaviours
                  ) -> torch.Tensor | None:
        """BCE of aux_net([h_t, e_{t+1}]) = 1 and aux_net([h_t, e'_{t+1}]) = 0, where e' is step t+1 of another
        row of the batch (the next row in length order still running at t+1)."""
        # entries e_{t+1} (step >= 1) of steps with >= 2 rows running: each pairs with its own row's state at t;
        # laid out on the host from the packing's step sizes (no device read)
        sizes = np.asarray(packing.batch_sizes, dtype=np.int64)
        starts = np.cumsum(sizes) - sizes
        steps = np.nonzero((np.arange(len(sizes)) >= 1) & (sizes >= 2))[0]
        if steps.size == 0:
            return None
        s_host = np.repeat(steps, sizes[steps])
        r_host = np.arange(s_host.shape[0]) - np.repeat(np.cumsum(sizes[steps]) - sizes[steps], sizes[steps])
        dev = interests.device
        pos = torch.from_numpy(starts[s_host] + r_host).to(dev)
        s, r = torch.from_numpy(s_host).to(dev), torch.from_numpy(r_host).to(dev)
        h = interests[packing.offsets[s - 1] + r]
        neg = packing.offsets[s] + (r + 1) % torch.from_numpy(sizes).to(dev)[s]
        pairs = torch.cat([torch.cat([h, data[pos]], -1), torch.cat([h, data[neg]], -1)])
        logits = self.aux_nets[k](pairs).squeeze(-1)
        labels = torch.cat([torch.ones(len(pos)), torch.zeros(len(pos))]).to(logits)
        return F.binary_cross_entropy_with_logits(logits, labels)

    def forward(self, batch) -> torch.Tensor:
        fields, groups = self.inputs.lookup(self.embedding, batch)
        b = batch.batch_size
        parts = [self.inputs.others(fields).flatten(1)]
        aux_terms = []
        for k in range(len(self.inputs.groups)):
            tokens, rows, recency, lengths, host = groups[k]
            packing = pack_behaviours(rows, recency, lengths, host_lengths=host)
            data = tokens[packing.perm]
            interests, _ = self.extractors[k](data, packing)
            parts.append(self._evolve(k, interests, self.inputs.target(fields, k), packing, b))
            if self.aux_nets is not None and self.training:
                term = self._aux_term(k, interests, data, packing)
                if term is not None:
                    aux_terms.append(term)
        self._aux = self.params.aux_loss_weight * torch.stack(aux_terms).mean() if aux_terms else None
        return self.mlp(torch.cat(parts, dim=1)).squeeze(1)

    def aux_loss(self) -> torch.Tensor | None:
        """α · the auxiliary next-behaviour loss of the last training forward (None when off or in eval)."""
        return self._aux
