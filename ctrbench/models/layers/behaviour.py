"""Behaviour-sequence inputs of the sequential baselines (DIN, DIEN, BST, TransAct, DMIN, DMR), as FuxiCTR's
`din_target_field` / `din_sequence_field` tuples arrange them.

A *behaviour group* is a set of position-aligned sequence fields (e.g. Amazon's item_history + cate_history)
attended together with the target fields whose vocabularies they share (item_id + cate_id); the group's
token is the concatenation of its fields' embeddings (width g·d). Defaults (`resolve_groups(spec, None)`):
the BARS configs' groups where the dataset has one (BARS_GROUPS), otherwise one group per sequence field,
joined by the sequences copied from it (`Feature.source`, e.g. KuaiVideo's pos_items_emb from pos_items).
Sequences in no group stay ordinary (mean-pooled) fields.

Sequences are left-padded (most recent last). A group's valid behaviours are the last `lengths` slots of its
longest field (the batch's `lengths`, never the ids: an id at a padded slot is ignored whatever it is; a
shorter field of the group reads 0 where it has no behaviour), optionally only the `max_len` most recent.
Only valid behaviours are embedded, as jagged tokens with their row and their distance from the row's end, so
padding costs nothing and no output depends on the batch's longest history.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from ctrbench.data.batch import Batch
from ctrbench.data.schema import DatasetSpec
from ctrbench.models.embedding import EmbeddingCollection

# The behaviour groups of the BARS sequential configs (din_sequence_field / dien_sequence_field /
# bst_sequence_field; reczoo/BARS ranking/ctr/DIN/DIN_*_x1 logs).
BARS_GROUPS: dict[str, list[list[str]]] = {
    "amazonelectronics_x1": [["item_history", "cate_history"]],
    "taobaoad_x1": [["cate_his", "brand_his", "btag_his"]],
    "kuaivideo_x1": [["pos_items", "pos_items_emb"], ["neg_items", "neg_items_emb"]],
}


@dataclass(frozen=True)
class BehaviourGroup:
    """Sequence fields attended together and their target fields (the vocabulary owners, same order)."""

    sequences: tuple[str, ...]
    targets: tuple[str, ...]


def resolve_groups(spec: DatasetSpec, groups: Sequence[Sequence[str]] | None) -> list[BehaviourGroup]:
    """The behaviour groups of `spec` (see the module docstring); a bad explicit grouping is a ValueError."""
    seq_names = [f.name for f in spec.sequences]
    if groups is None:
        bars = BARS_GROUPS.get(spec.name)
        if bars is not None and all(n in seq_names for g in bars for n in g):
            groups = bars
        else:
            copies = {f.name: f.source for f in spec.sequences if f.source in seq_names}
            groups = [[n] + [c for c, src in copies.items() if src == n] for n in seq_names if n not in copies]
    seen: set[str] = set()
    out = []
    for g in groups:
        if not g:
            raise ValueError("a behaviour group needs at least one sequence field")
        for n in g:
            if n not in seq_names:
                raise ValueError(f"{n!r} is not a sequence field of {spec.name}; valid: {', '.join(seq_names)}")
            if n in seen:
                raise ValueError(f"sequence field {n!r} is in two behaviour groups")
            seen.add(n)
        out.append(BehaviourGroup(tuple(g), tuple(spec.feature(n).vocab_owner for n in g)))
    return out


class BehaviourInputs:
    """Reads a model's behaviour groups from its EmbeddingCollection: the other fields' embeddings, each group's
    target [B, g·d] and its valid behaviours as jagged tokens [N, g·d] (row, recency, lengths)."""

    def __init__(self, spec: DatasetSpec, embedding: EmbeddingCollection,
                 groups: Sequence[Sequence[str]] | None = None, max_len: int | None = None):
        if not spec.sequences:
            raise ValueError(f"{spec.name} has no sequence field for a sequential model")
        self.groups = resolve_groups(spec, groups)
        self.max_len = max_len
        names = embedding.field_names
        grouped = {n for g in self.groups for n in g.sequences}
        self.other_index = torch.tensor([i for i, n in enumerate(names) if n not in grouped], dtype=torch.long)
        self.target_index = [torch.tensor([names.index(t) for t in g.targets], dtype=torch.long) for g in self.groups]
        self.dim = embedding.dim
        self._slots = [max(spec.feature(n).max_len for n in g.sequences) for g in self.groups]

    @property
    def num_other(self) -> int:
        return len(self.other_index)

    def group_width(self, k: int) -> int:
        return len(self.groups[k].sequences) * self.dim

    def group_slots(self, k: int) -> int:
        """The most behaviours a row of group k can have: its fields' longest max_len, capped by max_len."""
        return min(self._slots[k], self.max_len) if self.max_len else self._slots[k]

    def others(self, fields: torch.Tensor) -> torch.Tensor:
        """[B, F_other, d]: every field embedding except the grouped sequences (targets included)."""
        return fields.index_select(1, self.other_index.to(fields.device))

    def target(self, fields: torch.Tensor, k: int) -> torch.Tensor:
        """[B, g·d]: group k's target fields' embeddings, concatenated."""
        return fields.index_select(1, self.target_index[k].to(fields.device)).flatten(1)

    def _group_ids(self, batch: Batch, k: int) -> tuple[dict[str, torch.Tensor], JaggedGroup]:
        """Group k's valid behaviours, laid out on the host from the batch's host lengths (no device read): each
        field's ids at them ([N], 0 where a shorter field has no behaviour) and their rows / recencies."""
        names = self.groups[k].sequences
        own = [np.minimum(batch.host_length(n), batch.sequences[n].shape[1]) for n in names]
        lengths = np.maximum.reduce(own)
        if self.max_len is not None:
            lengths = np.minimum(lengths, self.max_len)
        if lengths.size and int(lengths.max()) > self.group_slots(k):
            raise ValueError(f"a history of {int(lengths.max())} behaviours in group {list(names)} is longer than "
                             f"the spec's max_len {self.group_slots(k)} that the model was built for")
        rows = np.repeat(np.arange(lengths.shape[0]), lengths)
        recency = (np.cumsum(lengths) - 1)[rows] - np.arange(rows.shape[0])  # 0 = the row's most recent
        device = batch.sequences[names[0]].device
        to_dev = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64)).to(device)  # noqa: E731
        ids = {}
        for n, n_len in zip(names, own):
            seq = batch.sequences[n]
            has = recency < n_len[rows]  # a shorter field reads 0 where it has no behaviour
            col = np.where(has, seq.shape[1] - 1 - recency, 0)
            ids[n] = seq[to_dev(rows), to_dev(col)] * to_dev(has)
        return ids, JaggedGroup(None, to_dev(rows), to_dev(recency), to_dev(lengths), lengths)

    def lookup(self, embedding: EmbeddingCollection, batch: Batch) -> tuple[torch.Tensor, list[JaggedGroup]]:
        """The field embeddings [B, F, d] and, per group, its valid tokens only (JaggedGroup); one lookup."""
        layouts, requests = [], {}
        for k in range(len(self.groups)):
            ids, layout = self._group_ids(batch, k)
            requests.update(ids)
            layouts.append(layout)
        fields, tokens = embedding.lookup(batch, requests)
        groups = []
        for g, lay in zip(self.groups, layouts):
            parts = [tokens[n] for n in g.sequences]
            toks = parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)
            groups.append(lay._replace(tokens=toks))
        return fields, groups


class JaggedGroup(NamedTuple):
    """A behaviour group's valid tokens only: [N, g·d], their row [N], their distance from the row's end [N]
    (0 = most recent), the rows' lengths [B] and the same lengths on the host (numpy), which sizes the jagged
    work (chunks, packing) without reading the device back."""

    tokens: torch.Tensor | None
    rows: torch.Tensor
    recency: torch.Tensor
    lengths: torch.Tensor
    host_lengths: np.ndarray
