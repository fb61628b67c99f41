"""The Batch contract every model eats (docs/design.md "Batch"): dense, keyed-jagged sparse ids, sequences, label.

`sparse` follows the TorchRec/FBGEMM layout: keys, values, offsets, feature-major (the bag of feature k
for sample b is values[offsets[k*B+b]:offsets[k*B+b+1]]); single-valued fields have length 1.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np
import torch


class EmbeddingIndexError(IndexError):
    """An id outside its field's vocabulary (it would silently read another table in a packed layout)."""

    def __init__(self, field: str, bad_id: int, bound: int, where: str = ""):
        self.field, self.bad_id, self.bound = field, bad_id, bound
        super().__init__(f"field {field!r}: id {bad_id} outside its vocabulary [0, {bound}){where}")


def check_ids(name: str, ids: torch.Tensor | np.ndarray, bound: int, where: str = "") -> None:
    """Raise EmbeddingIndexError naming `name` (and `where`) when an id of `ids` is outside [0, bound)."""
    if ids.size if isinstance(ids, np.ndarray) else ids.numel():
        hi, lo = int(ids.max()), int(ids.min())
        if hi >= bound or lo < 0:
            raise EmbeddingIndexError(name, hi if hi >= bound else lo, bound, where)


@dataclass
class KeyedJagged:
    """Feature-major jagged ids (TorchRec KeyedJaggedTensor layout) without the TorchRec dependency."""

    keys: list[str]
    values: torch.Tensor  # int [sum of lengths]
    offsets: torch.Tensor  # int64 [len(keys) * B + 1]
    batch_size: int

    @classmethod
    def from_single_valued(cls, keys: list[str], ids: torch.Tensor) -> "KeyedJagged":
        """ids [B, K] (one id per field) -> feature-major values of length K*B, every bag of length 1."""
        b, k = ids.shape
        values = ids.t().reshape(-1)
        offsets = torch.arange(k * b + 1, dtype=torch.int64)
        return cls(list(keys), values, offsets, b)

    def lengths(self) -> torch.Tensor:
        return self.offsets[1:] - self.offsets[:-1]

    def is_single_valued(self) -> bool:
        return self.values.numel() == len(self.keys) * self.batch_size and bool((self.lengths() == 1).all())

    def to_dense(self) -> torch.Tensor:
        """[B, K] ids for single-valued fields (the common case); raises if a bag is not of length 1."""
        if not self.is_single_valued():
            raise ValueError("KeyedJagged.to_dense needs every bag to hold exactly one id")
        return self.values.view(len(self.keys), self.batch_size).t()

    def to(self, device) -> "KeyedJagged":
        return KeyedJagged(self.keys, self.values.to(device), self.offsets.to(device), self.batch_size)


@dataclass
class Batch:
    """One mini-batch. Sequences are int64 [B, T] left-padded with 0, with lengths [B] per field."""

    dense: torch.Tensor  # float32 [B, n_numeric] (n_numeric may be 0)
    sparse: KeyedJagged
    label: torch.Tensor  # float32 [B]
    sequences: dict[str, torch.Tensor] = field(default_factory=dict)
    lengths: dict[str, torch.Tensor] = field(default_factory=dict)
    pretrained: dict[str, torch.Tensor] = field(default_factory=dict)  # pretrained-id columns [B]
    group_id: torch.Tensor | None = None  # [B] where the dataset has one
    oracle_p: torch.Tensor | None = None  # [B] true click probability on synthetic twins
    # the sequences' lengths as they were on the host when `to()` moved the batch to a device, so models size
    # their jagged work without reading device tensors back (see host_length)
    host_lengths: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def batch_size(self) -> int:
        return int(self.label.shape[0])

    def host_length(self, name: str) -> np.ndarray:
        """Sequence `name`'s lengths [B] on the host (a device read only for a batch built without them)."""
        lengths = self.lengths[name]
        if lengths.device.type == "cpu":
            return lengths.numpy()
        host = self.host_lengths.get(name)
        return host if host is not None else lengths.cpu().numpy()

    def to(self, device) -> "Batch":
        def move(v):
            if isinstance(v, (torch.Tensor, KeyedJagged)):
                return v.to(device)
            if isinstance(v, dict):
                return {k: x.to(device) for k, x in v.items()}
            return v

        host = {n: t.numpy() for n, t in self.lengths.items() if t.device.type == "cpu"}
        moved = {f.name: move(getattr(self, f.name)) for f in fields(self) if f.name != "host_lengths"}
        return Batch(**moved, host_lengths={**self.host_lengths, **host})
