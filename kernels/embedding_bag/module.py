"""FusedEmbeddingBagCollection: all categorical tables of a model in one packed parameter, one op call.

Usage::

    ebc = FusedEmbeddingBagCollection(
        [EmbeddingBagConfig("user", 1000, 16), EmbeddingBagConfig("item", 5000, 16, ("item", "hist_item"))],
        optimizer="rowwise_adagrad", lr=0.05)          # or optimizer="none" + any torch optimizer
    indices, offsets = concat_kjt([kjt_from_ids(ids_user_item), kjt_from_sequences(hist)])
    pooled = ebc(indices, offsets)                      # [B, F*D], feature f at columns f*D:(f+1)*D
    ebc.split(pooled)                                   # {"user": [B, D], "item": [B, D], "hist_item": [B, D]}

- Features, in order, are every table's `feature_names` (default: the table's name); the KJT passed to
  forward must list them in that order (feature-major: all B bags of feature 0, then feature 1, ...).
  Several features may share a table (e.g. a target item and its behaviour sequence).
- All tables have the same embedding_dim (TorchRec/TBE-style pooled output of equal widths).
- optimizer="none": `weight` gets an ordinary gradient, dense or (sparse_grad=True) a coalesced sparse
  COO one, for any torch optimizer. optimizer="sgd" | "rowwise_adagrad": the backward updates the rows
  in place with lr / eps (FBGEMM's row-wise Adagrad, state `momentum` [rows]); `weight.grad` stays None,
  so leave it out of the dense optimizer (or keep it: torch optimizers skip parameters without grad).
  Change the rate with `set_learning_rate`.
- backend: None (auto / $CTRBENCH_BACKEND), "reference", "triton", "cpp" or "cuda".
- huge_pages (CPU, tables of 32 MB and more): the packed weight lives on transparent huge pages, so a
  random row costs no page walk (see hugepages.py); False keeps torch's allocator.
- init: "uniform" = TorchRec's default U(-sqrt(1/rows), sqrt(1/rows)) per table; "normal" = FuxiCTR's
  default N(0, 1e-4^2).
- Bad ids raise EmbeddingBagInputError naming the feature, the table and the position (in eager mode
  with their names; under torch.compile with their indices).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from ctrbench.kernels.embedding_bag import op as ebc_op
from ctrbench.kernels.embedding_bag.hugepages import empty_huge
from ctrbench.kernels.embedding_bag.validation import OPTIMIZERS, POOLINGS, EmbeddingBagInputError


@dataclass(frozen=True)
class EmbeddingBagConfig:
    """One table: its name, rows, width and the features (KJT keys) that read it."""

    name: str
    num_embeddings: int
    embedding_dim: int
    feature_names: tuple[str, ...] = field(default=())

    def features(self) -> tuple[str, ...]:
        return tuple(self.feature_names) or (self.name,)


class FusedEmbeddingBagCollection(nn.Module):
    """Pooled embedding bags of many tables, packed TBE-style, with an optional fused optimizer."""

    def __init__(self, tables: Sequence[EmbeddingBagConfig], *, pooling: str = "sum", optimizer: str = "none",
                 lr: float = 0.01, eps: float = 1e-8, sparse_grad: bool = False, backend: Optional[str] = None,
                 deterministic: bool = True, init: str = "uniform", device=None, dtype: torch.dtype = torch.float32,
                 huge_pages: bool = True):
        super().__init__()
        if not tables:
            raise ValueError("FusedEmbeddingBagCollection needs at least one table")
        dims = {t.embedding_dim for t in tables}
        if len(dims) != 1:
            raise ValueError(f"all tables must share one embedding_dim, got {sorted(dims)}")
        names = [t.name for t in tables]
        if len(set(names)) != len(names):
            raise ValueError(f"table names must be unique, got {names}")
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
        if init not in ("uniform", "normal"):
            raise ValueError(f"init must be 'uniform' (TorchRec) or 'normal' (FuxiCTR), got {init!r}")
        if any(t.num_embeddings < 1 for t in tables):
            raise ValueError("every table needs num_embeddings >= 1")
        self.tables = list(tables)
        self.table_names = names
        self.feature_names = [f for t in tables for f in t.features()]
        if len(set(self.feature_names)) != len(self.feature_names):
            raise ValueError(f"feature names must be unique, got {self.feature_names}")
        self.embedding_dim = dims.pop()
        self.pooling, self.optimizer, self.lr, self.eps = pooling, optimizer, float(lr), float(eps)
        self.sparse_grad, self.backend, self.deterministic = sparse_grad, backend, deterministic
        rows = [t.num_embeddings for t in tables]
        offsets = [0]
        for r in rows:
            offsets.append(offsets[-1] + r)
        feature_table = [k for k, t in enumerate(tables) for _ in t.features()]
        self.register_buffer("table_offsets", torch.tensor(offsets, dtype=torch.int64, device=device))
        shared = feature_table != list(range(len(tables)))
        self.register_buffer("feature_table", torch.tensor(feature_table, dtype=torch.int64, device=device)
                             if shared else None)
        on_cpu = torch.empty(0, device=device).device.type == "cpu"
        w = empty_huge(offsets[-1], self.embedding_dim, dtype) if huge_pages and on_cpu else None
        if w is None:
            w = torch.empty(offsets[-1], self.embedding_dim, device=device, dtype=dtype)
        self.weight = nn.Parameter(w)
        mdtype = torch.float64 if dtype == torch.float64 else torch.float32
        self.register_buffer("momentum", torch.zeros(offsets[-1] if optimizer == "rowwise_adagrad" else 0,
                                                     device=device, dtype=mdtype))
        self.init = init
        self.reset_parameters()

    @classmethod
    def from_sizes(cls, names: Sequence[str], rows: Sequence[int], dim: int, **kwargs) -> "FusedEmbeddingBagCollection":
        """One table (and one feature) per name, `rows[i]` ids each, all `dim` wide."""
        return cls([EmbeddingBagConfig(n, int(r), dim) for n, r in zip(names, rows, strict=True)], **kwargs)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        for k, t in enumerate(self.tables):
            w = self.weight[int(self.table_offsets[k]):int(self.table_offsets[k + 1])]
            if self.init == "uniform":
                bound = math.sqrt(1.0 / t.num_embeddings)
                w.uniform_(-bound, bound)
            else:
                w.normal_(0.0, 1e-4)
        self.momentum.zero_()

    @property
    def num_features(self) -> int:
        return len(self.feature_names)

    def set_learning_rate(self, lr: float) -> None:
        self.lr = float(lr)

    def split_embedding_weights(self) -> dict[str, Tensor]:
        """Views of each table's rows in the packed weight."""
        to = self.table_offsets.tolist()
        return {n: self.weight[to[k]:to[k + 1]] for k, n in enumerate(self.table_names)}

    def split(self, pooled: Tensor) -> dict[str, Tensor]:
        """[B, F*D] -> {feature name: [B, D]} (views)."""
        D = self.embedding_dim
        return {f: pooled[:, k * D:(k + 1) * D] for k, f in enumerate(self.feature_names)}

    def forward(self, indices: Tensor, offsets: Tensor, per_sample_weights: Optional[Tensor] = None) -> Tensor:
        """indices (table-local ids) and offsets [F*B+1] in feature order -> pooled [B, F*D]."""
        try:
            if self.optimizer == "none":
                return ebc_op.embedding_bag_collection(
                    self.weight, self.table_offsets, indices, offsets, per_sample_weights,
                    feature_table=self.feature_table, pooling=self.pooling, backend=self.backend,
                    sparse_grad=self.sparse_grad, deterministic=self.deterministic)
            return ebc_op.embedding_bag_collection_fused(
                self.weight, self.momentum, self.table_offsets, indices, offsets, per_sample_weights,
                feature_table=self.feature_table, pooling=self.pooling, optimizer=self.optimizer, lr=self.lr,
                eps=self.eps, backend=self.backend, deterministic=self.deterministic)
        except EmbeddingBagInputError as err:
            raise err.with_names(self.feature_names, self.table_names) from None

    def extra_repr(self) -> str:
        return (f"tables={len(self.tables)}, features={self.num_features}, rows={self.weight.shape[0]}, "
                f"dim={self.embedding_dim}, pooling={self.pooling}, optimizer={self.optimizer}, lr={self.lr}, "
                f"backend={self.backend or 'auto'}")
