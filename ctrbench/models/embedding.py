"""One embedding collection for every input field of a CTR model, as FuxiCTR's FeatureEmbedding builds it.

- Categorical fields: one packed table (TBE-style: all tables concatenated, per-table row offsets), looked up
  in ONE `F.embedding_bag` call together with every sequence whose vocabulary owner is a categorical field
  (share_embedding). Id 0 is padding/missing: its vector is zero and gets no gradient (padding_idx), and a
  sequence pools by the mean over its non-padding ids (FuxiCTR MaskedAveragePooling; all padding -> 0).
- Pretrained fields (KuaiVideo item_emb): the frozen table from the cache, then a learnable Linear(p, d);
  sequences owned by a pretrained field pool the frozen vectors the same way before the projection.
- Numeric fields: FuxiCTR's numeric embedding, a learnable vector per field scaled by the value.

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
        sparse: bool = False,
        init_std: float = 1e-4,
        validate_ids: bool = True,
    ):
        super().__init__()
        if backend not in BACKENDS:
            raise ValueError(f"unknown embedding backend {backend!r}; valid: {', '.join(BACKENDS)}")
        self.dim, self.backend, self.kernel_backend = dim, backend, kernel_backend
        self.sparse, self.validate_ids = sparse, validate_ids
        feats = {f.name: f for f in spec.features}

        # -- categorical fields and the sequences that share their tables: one packed table
        self.cat_names = [f.name for f in spec.categorical]
        sizes = [int(vocab_sizes[n]) for n in self.cat_names]
        self.table_sizes = sizes
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64) if sizes else np.zeros(1, np.int64)
        self.table_index = {n: i for i, n in enumerate(self.cat_names)}
        self.register_buffer("table_offsets", torch.from_numpy(offsets[:-1].copy()), persistent=False)
        self.register_buffer("table_bounds", torch.tensor(sizes, dtype=torch.int64), persistent=False)
        self.packed_seqs = [f.name for f in spec.sequences if feats[f.vocab_owner].kind == Kind.CATEGORICAL]
        self.seq_owner = {f.name: f.vocab_owner for f in spec.sequences}
        total = int(offsets[-1])
        self.weight = nn.Parameter(torch.empty(total, dim)) if total else None
        if self.weight is not None:
            nn.init.normal_(self.weight, std=init_std)
            with torch.no_grad():
                self.weight[self.table_offsets] = 0.0  # every table's padding row (global row 0 is the pad)
        self._fused = None
        if backend == "fused" and self.weight is not None:
            self._fused = _make_fused(sizes, dim, kernel_backend, self.weight)

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

        self.field_names = (
            self.cat_names
            + self.packed_seqs
            + [n for p in self.pre_names for n in [p] + self.pre_seqs[p]]
            + self.num_names
        )

    @property
    def num_fields(self) -> int:
        return len(self.field_names)

    def extra_repr(self) -> str:
        rows = 0 if self.weight is None else self.weight.shape[0]
        return (f"fields={self.num_fields}, dim={self.dim}, packed_rows={rows}, tables={len(self.table_sizes)}, "
                f"backend={self.backend}, sparse={self.sparse}")

    def embedding_parameters(self) -> list[nn.Parameter]:
        """The lookup tables (sparse-gradient capable); everything else here is a dense parameter."""
        return [self.weight] if self.weight is not None else []

    # -- categorical + packed sequences -------------------------------------------------------------
    def _packed_bags(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Global packed ids and bag offsets for the categorical fields (feature-major) then each packed
        sequence (one bag per row); id 0 stays 0, the shared padding row."""
        b = batch.batch_size
        kj = batch.sparse
        if list(kj.keys) != self.cat_names:
            raise ValueError(f"batch sparse keys {kj.keys} differ from the spec's categorical fields {self.cat_names}")
        k = len(self.cat_names)
        values, offsets = kj.values.long(), kj.offsets.long()
        if values.numel() == k * b:  # single-valued: value j belongs to field j // B
            field_of_value = torch.arange(k, device=values.device).repeat_interleave(b)
        else:
            field_of_value = torch.arange(k, device=values.device).repeat_interleave(b).repeat_interleave(
                offsets[1:] - offsets[:-1]
            )
        if self.validate_ids and values.numel():
            bad = (values < 0) | (values >= self.table_bounds[field_of_value])
            if bool(bad.any()):
                j = int(bad.nonzero()[0, 0])
                f = int(field_of_value[j])
                raise EmbeddingIndexError(self.cat_names[f], int(values[j]), self.table_sizes[f])
        packed = [torch.where(values == 0, values, values + self.table_offsets[field_of_value])]
        bag_offsets = [offsets[:-1]]
        start = values.numel()
        for name in self.packed_seqs:
            seq = batch.sequences[name].long()
            owner = self.table_index[self.seq_owner[name]]
            bound = self.table_sizes[owner]
            if self.validate_ids and seq.numel() and (int(seq.max()) >= bound or int(seq.min()) < 0):
                bad = int(seq.max()) if int(seq.max()) >= bound else int(seq.min())
                raise EmbeddingIndexError(name, bad, bound)
            packed.append(torch.where(seq == 0, seq, seq + self.table_offsets[owner]).reshape(-1))
            t = seq.shape[1]
            bag_offsets.append(start + torch.arange(b, device=seq.device) * t)
            start += b * t
        return torch.cat(packed), torch.cat(bag_offsets)

    def _lookup_packed(self, batch: Batch) -> torch.Tensor | None:
        """[B, K + S, d] for the categorical fields and the packed sequences (pooled)."""
        if self.weight is None:
            return None
        b = batch.batch_size
        ids, bag_offsets = self._packed_bags(batch)
        if self._fused is not None:
            out = self._fused(ids, bag_offsets)
        else:
            out = F.embedding_bag(ids, self.weight, bag_offsets, mode="mean", padding_idx=0, sparse=self.sparse)
        n_bags = len(self.cat_names) + len(self.packed_seqs)
        return out.view(n_bags, b, self.dim).transpose(0, 1)

    def sequence_embedding(self, batch: Batch, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Unpooled [B, T, d] embeddings of a packed sequence and its mask [B, T] (for sequential models)."""
        seq = batch.sequences[name].long()
        owner = self.table_index[self.seq_owner[name]]
        ids = torch.where(seq == 0, seq, seq + self.table_offsets[owner])
        return F.embedding(ids, self.weight, padding_idx=0, sparse=self.sparse), seq != 0

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
            parts.append(batch.dense.unsqueeze(-1) * self.numeric)
        if not parts:
            raise ValueError("the dataset has no model input fields")
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)

    def touched_sq_norm(self, batch: Batch) -> torch.Tensor:
        """Σ‖w_r‖² over the distinct table rows this batch reads (the lazy L2 term for sparse embeddings)."""
        if self.weight is None:
            return torch.zeros(())
        ids, _ = self._packed_bags(batch)
        rows = torch.unique(ids)
        rows = rows[rows != 0]
        return F.embedding(rows, self.weight, sparse=self.sparse).pow(2).sum()


def _make_fused(sizes: list[int], dim: int, kernel_backend: str | None, weight: nn.Parameter) -> nn.Module:
    """The fused kernel module over the same packed weight (so both backends train the same parameters)."""
    try:
        from ctrbench.kernels.embedding_bag.module import FusedEmbeddingBagCollection
    except ImportError as exc:
        raise ValueError(
            f"embedding_backend 'fused' needs ctrbench.kernels.embedding_bag.module ({exc}); use 'torch'"
        ) from None
    return FusedEmbeddingBagCollection.from_packed(weight, sizes, kernel_backend=kernel_backend)
