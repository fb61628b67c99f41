"""One embedding collection for every input field of a CTR model, as FuxiCTR's FeatureEmbedding builds it.

- Categorical fields: one packed table (TBE-style: all tables concatenated, per-table row offsets), looked up
  in ONE `F.embedding_bag` call together with every sequence whose vocabulary owner is a categorical field
  (share_embedding). Id 0 is padding/missing: its vector is zero and gets no gradient (padding_idx), and a
  sequence pools by the mean over its non-padding ids (FuxiCTR MaskedAveragePooling; all padding -> 0).
- Pretrained fields (KuaiVideo item_emb): the frozen table from the cache, then a learnable Linear(p, d);
  sequences owned by a pretrained field pool the frozen vectors the same way before the projection.
- Numeric fields: FuxiCTR's numeric embedding, a learnable vector per field scaled by the value (optionally the
  value standardised first: `numeric_norm`).

`backend="torch"` is the plain-PyTorch path; `backend="fused"` runs the categorical part through
`ctrbench.kernels.embedding_bag.module.FusedEmbeddingBagCollection` with the chosen kernel backend.
Output: [B, F, d] with fields in the order of `field_names`.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ctrbench.data.batch import Batch
from ctrbench.data.schema import DatasetSpec, Kind

BACKENDS = ("torch", "fused")


class EmbeddingIndexError(IndexError):
    """An id outside its field's vocabulary (it would silently read another table in a packed layout)."""

    def __init__(self, field: str, bad_id: int, bound: int):
        self.field, self.bad_id, self.bound = field, bad_id, bound
        super().__init__(f"field {field!r}: id {bad_id} outside its vocabulary [0, {bound})")


class EmbeddingCollection(nn.Module):
    """All fields of a dataset -> [B, F, dim]; see the module docstring for how each kind is embedded."""

    def __init__(
        self,
        spec: DatasetSpec,
        vocab_sizes: Mapping[str, int],
        dim: int,
        *,
        tables: Mapping[str, np.ndarray | torch.Tensor] | None = None,
        backend: str = "torch",
        kernel_backend: str | None = None,
        include_numeric: bool = True,
        numeric_norm: bool = False,
        sparse: bool = False,
        init: str = "normal",
        init_std: float = 1e-4,
        validate_ids: bool = True,
    ):
        super().__init__()
        if backend not in BACKENDS:
            raise ValueError(f"unknown embedding backend {backend!r}; valid: {', '.join(BACKENDS)}")
        self.dim, self.backend, self.kernel_backend = dim, backend, kernel_backend
        self._sparse, self.validate_ids = bool(sparse), validate_ids
        feats = {f.name: f for f in spec.features}

        # -- categorical fields and the sequences that share their tables: one packed table. Bags (features)
        # are ordered table by table: the table's own field, then the sequences that share it (the order
        # FusedEmbeddingBagCollection uses, so both backends give the same [B, F, d]).
        self.cat_names = [f.name for f in spec.categorical]
        sizes = [int(vocab_sizes[n]) for n in self.cat_names]
        self.table_sizes = sizes
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64) if sizes else np.zeros(1, np.int64)
        self.table_index = {n: i for i, n in enumerate(self.cat_names)}
        self.register_buffer("table_offsets", torch.from_numpy(offsets[:-1].copy()), persistent=False)
        self.register_buffer("table_bounds", torch.tensor(sizes, dtype=torch.int64), persistent=False)
        self.seq_owner = {f.name: f.vocab_owner for f in spec.sequences}
        shared = {n: [f.name for f in spec.sequences if f.vocab_owner == n] for n in self.cat_names}
        self.packed_seqs = [s for n in self.cat_names for s in shared[n]]
        self.bag_features = [x for n in self.cat_names for x in [n] + shared[n]]
        self._bag_offsets_cache: dict = {}
        self.tables = None
        if sizes:
            if backend == "fused":
                self.tables = _make_fused(self.cat_names, sizes, shared, dim, kernel_backend, sparse)
            else:
                self.tables = _PackedTable(int(offsets[-1]), dim)
            self.init_tables(init, init_std)
        # -- pretrained fields: frozen table + learnable projection, shared by the sequences they own
        self.pre_names = [f.name for f in spec.pretrained]
        self.pre_seqs = {p: [s.name for s in spec.sequences if s.vocab_owner == p] for p in self.pre_names}
        self.projections = nn.ModuleDict()
        for p in self.pre_names:
            if tables is None or p not in tables:
                raise ValueError(
                    f"pretrained field {p!r} needs its frozen table: pass tables={{'{p}': cache.table('{p}')}}"
                )
            table = torch.from_numpy(np.array(tables[p], dtype=np.float32))  # an in-memory copy
            self.register_buffer(f"frozen_{p}", table, persistent=False)
            proj = nn.Linear(table.shape[1], dim, bias=False)  # FuxiCTR PretrainedEmbedding.proj
            nn.init.xavier_normal_(proj.weight)
            self.projections[p] = proj

        # -- numeric fields: value * learnable vector
        self.num_names = [f.name for f in spec.numeric] if include_numeric else []
        self.numeric = None
        if self.num_names:
            # The tables' initialiser; FuxiCTR's Xavier-normal Linear(1, d) starts numeric fields at std ~0.4-1,
            # which swamps short runs with random numeric terms (seen on the twins as LR AUC < 0.5).
            w = torch.empty(len(self.num_names), dim)
            nn.init.normal_(w, std=init_std)
            self.numeric = nn.Parameter(w)
        # optional standardisation of the raw values (batch statistics in training, running ones in eval)
        self.dense_norm = nn.BatchNorm1d(len(self.num_names), affine=False) if self.num_names and numeric_norm else None

        self.field_names = (
            self.bag_features
            + [n for p in self.pre_names for n in [p] + self.pre_seqs[p]]
            + self.num_names
        )

    @property
    def num_fields(self) -> int:
        return len(self.field_names)

    @property
    def weight(self) -> nn.Parameter | None:
        """The packed lookup table [Σ rows, d] (owned by `self.tables`, whichever backend)."""
        return None if self.tables is None else self.tables.weight

    @property
    def sparse(self) -> bool:
        return self._sparse

    @sparse.setter
    def sparse(self, value: bool) -> None:
        self._sparse = bool(value)
        if getattr(self, "tables", None) is not None and self.backend == "fused":
            self.tables.sparse_grad = self._sparse

    @torch.no_grad()
    def init_tables(self, init: str = "normal", init_std: float = 1e-4) -> None:
        """'normal': N(0, init_std) (FuxiCTR); 'uniform_rows': U(±sqrt(1/rows)) per table (DLRM/TorchRec).
        Every table's row 0 (padding) is zero."""
        w = self.weight
        if init == "normal":
            w.normal_(0.0, init_std)
        elif init == "uniform_rows":
            for start, rows in zip(self.table_offsets.tolist(), self.table_sizes):
                w[start:start + rows].uniform_(-(1 / rows) ** 0.5, (1 / rows) ** 0.5)
        else:
            raise ValueError(f"unknown embedding init {init!r}; valid: normal, uniform_rows")
        w[self.table_offsets] = 0.0

    def extra_repr(self) -> str:
        rows = 0 if self.weight is None else self.weight.shape[0]
        return (f"fields={self.num_fields}, dim={self.dim}, packed_rows={rows}, tables={len(self.table_sizes)}, "
                f"backend={self.backend}, sparse={self.sparse}")

    def embedding_parameters(self) -> list[nn.Parameter]:
        """The lookup tables (sparse-gradient capable); everything else here is a dense parameter."""
        return [self.weight] if self.weight is not None else []

    # -- categorical + packed sequences -------------------------------------------------------------
    def _bag_ids(self, batch: Batch, *, local: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """All bags' ids in `bag_features` order (feature-major, one bag per row and feature) and the bag
        start offsets [F*B]. local=False: global packed rows with 0 kept as the shared padding row;
        local=True: table-local ids (0 still padding)."""
        b = batch.batch_size
        kj = batch.sparse
        if list(kj.keys) != self.cat_names:
            raise ValueError(f"batch sparse keys {kj.keys} differ from the spec's categorical fields {self.cat_names}")
        cat = kj.to_dense().t()  # [K, B]; raises on multi-valued bags (no dataset here has them)
        if self.validate_ids and cat.numel():
            bad = (cat < 0) | (cat >= self.table_bounds.unsqueeze(1))
            if bool(bad.any()):
                k, j = (int(v) for v in bad.nonzero()[0])
                raise EmbeddingIndexError(self.cat_names[k], int(cat[k, j]), self.table_sizes[k])
        if not local:
            cat = torch.where(cat == 0, cat, cat + self.table_offsets.unsqueeze(1))
        pieces, lens = [], []
        for name in self.bag_features:
            k = self.table_index.get(name)
            if k is not None:
                pieces.append(cat[k])
                lens.append(1)
                continue
            seq = batch.sequences[name]
            owner = self.table_index[self.seq_owner[name]]
            if self.validate_ids and seq.numel():
                hi, lo = int(seq.max()), int(seq.min())
                if hi >= self.table_sizes[owner] or lo < 0:
                    raise EmbeddingIndexError(name, hi if hi >= self.table_sizes[owner] else lo, self.table_sizes[owner])
            if not local:
                seq = torch.where(seq == 0, seq, seq + self.table_offsets[owner])
            pieces.append(seq.reshape(-1))
            lens.append(seq.shape[1])
        key = (b, tuple(lens), cat.device)
        starts = self._bag_offsets_cache.get(key)
        if starts is None:
            per_bag = torch.tensor(lens, device=cat.device).repeat_interleave(b)
            starts = torch.cumsum(per_bag, 0) - per_bag
            self._bag_offsets_cache = {key: starts}
        return torch.cat(pieces).long(), starts

    def _lookup_packed(self, batch: Batch) -> torch.Tensor | None:
        """[B, n_bags, d]: the categorical fields and the packed sequences (mean over non-padding ids)."""
        if self.tables is None:
            return None
        b = batch.batch_size
        n_bags = len(self.bag_features)
        if self.backend == "fused":
            ids, starts = self._bag_ids(batch, local=True)
            keep = ids != 0  # padding is dropped: empty bags pool to 0, as padding_idx does
            kept_before = torch.cat([keep.new_zeros(1, dtype=torch.int64), keep.cumsum(0)])
            offsets = torch.cat([kept_before[starts], kept_before[-1:]])
            return self.tables(ids[keep], offsets).view(b, n_bags, self.dim)
        ids, starts = self._bag_ids(batch, local=False)
        out = F.embedding_bag(ids, self.weight, starts, mode="mean", padding_idx=0, sparse=self.sparse)
        return out.view(n_bags, b, self.dim).transpose(0, 1)

    def sequence_embedding(self, batch: Batch, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Unpooled [B, T, d] embeddings of a sequence and its id mask [B, T] (ids != 0), for sequential models."""
        seq = batch.sequences[name].long()
        return self.sequence_ids_embedding(name, seq), seq != 0

    def sequence_ids_embedding(self, name: str, ids: torch.Tensor) -> torch.Tensor:
        """Embeddings [..., d] of ids (any shape) of sequence field `name`: a sequence owned by a categorical field
        reads the packed table, one owned by a pretrained field the frozen table through that field's projection;
        id 0 (padding) gives 0 either way. Ids outside the owner's vocabulary raise EmbeddingIndexError."""
        ids = ids.long()
        owner = self.seq_owner[name]
        if owner in self.table_index:
            k = self.table_index[owner]
            self._check_sequence_ids(name, ids, self.table_sizes[k])
            rows = torch.where(ids == 0, ids, ids + self.table_offsets[k])
            return F.embedding(rows, self.weight, padding_idx=0, sparse=self.sparse)
        table = getattr(self, f"frozen_{owner}")
        self._check_sequence_ids(name, ids, table.shape[0])
        vec = self.projections[owner](F.embedding(ids, table))
        return vec * (ids != 0).unsqueeze(-1).to(vec.dtype)

    def _check_sequence_ids(self, name: str, seq: torch.Tensor, bound: int) -> None:
        if self.validate_ids and seq.numel():
            hi, lo = int(seq.max()), int(seq.min())
            if hi >= bound or lo < 0:
                raise EmbeddingIndexError(name, hi if hi >= bound else lo, bound)

    # -- pretrained ---------------------------------------------------------------------------------
    def _lookup_pretrained(self, batch: Batch) -> list[torch.Tensor]:
        outs = []
        for p in self.pre_names:
            table = getattr(self, f"frozen_{p}")
            ids = [batch.pretrained[p].long()]
            for s in self.pre_seqs[p]:
                ids.append(batch.sequences[s].long())
            for name, x in zip([p] + self.pre_seqs[p], ids):
                if self.validate_ids and x.numel() and (int(x.max()) >= table.shape[0] or int(x.min()) < 0):
                    raise EmbeddingIndexError(name, int(x.max()) if int(x.max()) >= table.shape[0] else int(x.min()),
                                              table.shape[0])
            vecs = [F.embedding(ids[0], table)]
            present = [ids[0] != 0]
            for x in ids[1:]:
                vecs.append(F.embedding_bag(x, table, mode="mean", padding_idx=0))
                present.append((x != 0).any(dim=1))
            stacked = torch.stack(vecs, dim=1)  # [B, 1 + S_p, p]
            mask = torch.stack(present, dim=1).unsqueeze(-1).to(stacked.dtype)
            outs.append(self.projections[p](stacked) * mask)
        return outs

    # -- all fields ---------------------------------------------------------------------------------
    def forward(self, batch: Batch) -> torch.Tensor:
        parts = []
        packed = self._lookup_packed(batch)
        if packed is not None:
            parts.append(packed)
        parts.extend(self._lookup_pretrained(batch))
        if self.numeric is not None:
            dense = batch.dense if self.dense_norm is None else self.dense_norm(batch.dense)
            parts.append(dense.unsqueeze(-1) * self.numeric)
        if not parts:
            raise ValueError("the dataset has no model input fields")
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)

    def touched_sq_norm(self, batch: Batch) -> torch.Tensor:
        """Σ‖w_r‖² over the distinct table rows this batch reads (the lazy L2 term for sparse embeddings)."""
        if self.tables is None:
            return torch.zeros(())
        ids, _ = self._bag_ids(batch, local=False)
        rows = torch.unique(ids)
        rows = rows[rows != 0]
        return F.embedding(rows, self.weight, sparse=self.sparse).pow(2).sum()


class _PackedTable(nn.Module):
    """The torch backend's packed table: just the weight (looked up with F.embedding_bag)."""

    def __init__(self, rows: int, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(rows, dim))


def _make_fused(names: list[str], sizes: list[int], shared: dict[str, list[str]], dim: int,
                kernel_backend: str | None, sparse: bool) -> nn.Module:
    """The fused kernel module over the same packed layout: table k = categorical field k, read by the field
    itself and the sequences sharing it; mean pooling; gradients for any torch optimizer."""
    try:
        from ctrbench.kernels.embedding_bag.module import EmbeddingBagConfig, FusedEmbeddingBagCollection
    except ImportError as exc:  # the kernel package is part of this repository; this means a broken install
        raise ValueError(f"embedding_backend 'fused' needs ctrbench.kernels.embedding_bag ({exc})") from None
    configs = [EmbeddingBagConfig(n, r, dim, (n, *shared[n])) for n, r in zip(names, sizes)]
    return FusedEmbeddingBagCollection(configs, pooling="mean", optimizer="none", sparse_grad=sparse,
                                       backend=kernel_backend, init="normal")
