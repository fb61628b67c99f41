"""One embedding collection for every input field of a CTR model, as FuxiCTR's FeatureEmbedding builds it.

- Categorical fields: one packed table (TBE-style: all tables concatenated, per-table row offsets). Every read
  of it in a forward (the fields, the mean-pooled sequences whose vocabulary owner is a categorical field, and
  the unpooled sequence tokens a model asks for) is ONE lookup (`lookup`): one kernel call on the fused backend,
  so a fused optimizer (SGD / row-wise Adagrad applied in the backward) sees each row once per step.
  Id 0 is padding: its vector is zero and gets no gradient, and a sequence pools by the mean over its
  non-padding ids (FuxiCTR MaskedAveragePooling; all padding -> 0).
- Pretrained fields (KuaiVideo item_emb): the frozen table from the cache, then a learnable Linear(p, d);
  sequences owned by a pretrained field pool the frozen vectors the same way before the projection.
- Numeric fields: FuxiCTR's numeric embedding, a learnable vector per field scaled by the value (optionally the
  value standardised first: `numeric_norm`).

`backend="fused"` (the default) runs the packed table through `ctrbench.kernels`' embedding-bag collection
(sum pooling with per-id weights 1/n over a bag's n non-padding ids, padding weighted 0); `backend="torch"` is
the plain-PyTorch path (`F.embedding_bag` / `F.embedding` with padding_idx=0). Both give the same numbers.
Ids are checked where batches are built (`ctrbench.data.loader`); `validate_ids=True` (or
$CTRBENCH_VALIDATE_IDS=1) checks them here too, at the cost of a host read per forward (a debug aid).
Output: [B, F, d] with fields in the order of `field_names`.
"""
from __future__ import annotations

import os
from collections.abc import Collection, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ctrbench.data.batch import Batch, EmbeddingIndexError, check_ids  # noqa: F401 (re-exported)
from ctrbench.data.schema import DatasetSpec

BACKENDS = ("torch", "fused")
FUSED_OPTIMIZERS = ("sgd", "rowwise_adagrad")
VALIDATE_ENV = "CTRBENCH_VALIDATE_IDS"


class EmbeddingCollection(nn.Module):
    """All fields of a dataset -> [B, F, dim]; see the module docstring for how each kind is embedded."""

    def __init__(
        self,
        spec: DatasetSpec,
        vocab_sizes: Mapping[str, int],
        dim: int,
        *,
        tables: Mapping[str, np.ndarray | torch.Tensor] | None = None,
        backend: str = "fused",
        kernel_backend: str | None = None,
        include_numeric: bool = True,
        numeric_norm: bool = False,
        sparse: bool = False,
        init: str = "normal",
        init_std: float = 1e-4,
        unpooled: Collection[str] = (),
        validate_ids: bool | None = None,
    ):
        super().__init__()
        if backend not in BACKENDS:
            raise ValueError(f"unknown embedding backend {backend!r}; valid: {', '.join(BACKENDS)}")
        seq_names = [f.name for f in spec.sequences]
        unknown = sorted(set(unpooled) - set(seq_names))
        if unknown:
            raise ValueError(f"unpooled fields {unknown} are not sequence fields of {spec.name}; valid: {seq_names}")
        self.dim, self.backend, self.kernel_backend = dim, backend, kernel_backend
        self._sparse = bool(sparse)
        self.validate_ids = os.environ.get(VALIDATE_ENV) == "1" if validate_ids is None else bool(validate_ids)
        self.fused_optimizer: str | None = None
        self._lr_group: dict | None = None

        # -- categorical fields and the pooled sequences that share their tables: one packed table. Bags are
        # ordered table by table: the table's own field, then the pooled sequences that share it.
        self.cat_names = [f.name for f in spec.categorical]
        sizes = [int(vocab_sizes[n]) for n in self.cat_names]
        self.table_sizes = sizes
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64) if sizes else np.zeros(1, np.int64)
        self.table_index = {n: i for i, n in enumerate(self.cat_names)}
        self.register_buffer("table_offsets", torch.from_numpy(offsets[:-1].copy()), persistent=False)
        self.seq_owner = {f.name: f.vocab_owner for f in spec.sequences}
        self.unpooled = [n for n in seq_names if n in set(unpooled)]
        shared = {n: [f.name for f in spec.sequences if f.vocab_owner == n and f.name not in self.unpooled]
                  for n in self.cat_names}
        self.packed_seqs = [s for n in self.cat_names for s in shared[n]]
        self.bag_features = [x for n in self.cat_names for x in [n] + shared[n]]
        self._bag_offsets_cache: dict = {}
        self.tables = None
        if sizes:
            self.tables = _make_fused(int(offsets[-1]), dim, kernel_backend, sparse) if backend == "fused" \
                else _PackedTable(int(offsets[-1]), dim)
            self.init_tables(init, init_std)
        # -- pretrained fields: frozen table + learnable projection, shared by the sequences they own
        self.pre_names = [f.name for f in spec.pretrained]
        self.pre_seqs = {p: [s.name for s in spec.sequences if s.vocab_owner == p and s.name not in self.unpooled]
                         for p in self.pre_names}
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

    def set_fused_optimizer(self, optimizer: str | None, lr_group: dict | None = None, eps: float = 1e-8) -> None:
        """Apply `optimizer` ('sgd' | 'rowwise_adagrad') to the packed table inside the backward, at the learning
        rate `lr_group["lr"]` read at every forward (so a trainer's plateau rule or any scheduler that edits the
        group is followed); None restores ordinary gradients. Needs the fused backend."""
        if self.tables is None:
            return
        if optimizer is not None and (self.backend != "fused" or optimizer not in FUSED_OPTIMIZERS):
            raise ValueError(f"fused optimizer {optimizer!r} needs embedding backend 'fused' (this collection's is "
                             f"{self.backend!r}) and one of {', '.join(FUSED_OPTIMIZERS)}")
        if optimizer is not None and lr_group is None:
            raise ValueError("a fused optimizer needs its learning-rate group (a dict with 'lr')")
        self.fused_optimizer, self._lr_group = optimizer, lr_group
        t = self.tables
        if self.backend == "fused":
            t.optimizer, t.eps = optimizer or "none", float(eps)
            rows = t.weight.shape[0] if optimizer == "rowwise_adagrad" else 0
            t.momentum = torch.zeros(rows, device=t.weight.device, dtype=t.momentum.dtype)

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
                f"backend={self.backend}, sparse={self.sparse}, fused_optimizer={self.fused_optimizer}")

    def embedding_parameters(self) -> list[nn.Parameter]:
        """The lookup tables (sparse-gradient capable); everything else here is a dense parameter."""
        return [self.weight] if self.weight is not None else []

    # -- ids ----------------------------------------------------------------------------------------
    def _categorical(self, batch: Batch) -> torch.Tensor:
        """The categorical ids [K, B] (a view of the batch's feature-major values; no host read)."""
        kj = batch.sparse
        if list(kj.keys) != self.cat_names:
            raise ValueError(f"batch sparse keys {kj.keys} differ from the spec's categorical fields {self.cat_names}")
        if self.validate_ids:
            if not kj.is_single_valued():
                raise ValueError("the models' embedding needs single-valued categorical bags")
            for k, name in enumerate(self.cat_names):
                check_ids(name, kj.values[k * kj.batch_size:(k + 1) * kj.batch_size], self.table_sizes[k])
        elif kj.values.numel() != len(self.cat_names) * kj.batch_size:
            raise ValueError("the models' embedding needs single-valued categorical bags (one id per field and row)")
        return kj.values.view(len(self.cat_names), kj.batch_size)

    def _global_rows(self, name: str, ids: torch.Tensor) -> torch.Tensor:
        """Ids of sequence field `name` (owned by a categorical field) -> packed rows, padding kept at row 0."""
        k = self.table_index[self.seq_owner[name]]
        if self.validate_ids:
            check_ids(name, ids, self.table_sizes[k])
        ids = ids.long()
        return torch.where(ids == 0, ids, ids + self.table_offsets[k])

    def _bags(self, batch: Batch, weights: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Every pooled bag's packed rows (feature-major: bag_features order, B bags each), the bag lengths
        [F*B] (padded slots included) and (`weights`) each id's pooling weight: 1/n for the n non-padding ids of
        its bag, 0 for padding (sum pooling with these weights = the mean over non-padding ids, padding never
        learns)."""
        b = batch.batch_size
        cat = self._categorical(batch)
        cat = torch.where(cat == 0, cat, cat + self.table_offsets.unsqueeze(1))
        pieces, widths, parts_w = [], [], []
        dtype = self.weight.dtype
        for name in self.bag_features:
            k = self.table_index.get(name)
            if k is not None:
                pieces.append(cat[k])
                widths.append(1)
                if weights:
                    parts_w.append((cat[k] != 0).to(dtype))
            else:
                seq = self._global_rows(name, batch.sequences[name])
                pieces.append(seq.reshape(-1))
                widths.append(seq.shape[1])
                if weights:
                    present = (seq != 0).to(dtype)
                    parts_w.append((present / present.sum(1, keepdim=True).clamp(min=1)).reshape(-1))
        ids = torch.cat(pieces)
        key = (b, tuple(widths), ids.device)
        lens = self._bag_offsets_cache.get(key)
        if lens is None:
            lens = torch.tensor(widths, device=ids.device).repeat_interleave(b)
            self._bag_offsets_cache = {key: lens}
        return ids, lens, torch.cat(parts_w) if weights else None

    # -- the packed-table lookup ----------------------------------------------------------------------
    def lookup(self, batch: Batch, tokens: Mapping[str, torch.Tensor] | None = None
               ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Field embeddings [B, F, d] and, for `tokens` (sequence field name -> ids of any shape), the unpooled
        embeddings [*ids.shape, d] (padding id 0 -> 0). Every read of the packed table is one lookup."""
        tokens = dict(tokens or {})
        unknown = [n for n in tokens if n not in self.seq_owner]
        if unknown:
            raise ValueError(f"{unknown} are not sequence fields; valid: {sorted(self.seq_owner)}")
        packed_tokens = {n: x for n, x in tokens.items() if self.seq_owner[n] in self.table_index}
        out_tokens = {n: self._pretrained_tokens(n, x) for n, x in tokens.items() if n not in packed_tokens}
        parts = []
        if self.tables is not None:
            fields, looked_up = self._lookup_packed(batch, packed_tokens)
            parts.append(fields)
            out_tokens.update(looked_up)
        parts.extend(self._lookup_pretrained(batch))
        if self.numeric is not None:
            dense = batch.dense if self.dense_norm is None else self.dense_norm(batch.dense)
            parts.append(dense.unsqueeze(-1) * self.numeric)
        if not parts:
            raise ValueError("the dataset has no model input fields")
        return (parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)), {n: out_tokens[n] for n in tokens}

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.lookup(batch)[0]

    def _lookup_packed(self, batch: Batch, tokens: dict[str, torch.Tensor]
                       ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        b, n_bags = batch.batch_size, len(self.bag_features)
        bag_ids, bag_lens, bag_weights = self._bags(batch, weights=self.backend == "fused")
        token_rows = {n: self._global_rows(n, x) for n, x in tokens.items()}
        if self.backend == "torch":
            starts = torch.cumsum(bag_lens, 0) - bag_lens
            pooled = F.embedding_bag(bag_ids, self.weight, starts, mode="mean", padding_idx=0, sparse=self.sparse)
            out = {n: F.embedding(r, self.weight, padding_idx=0, sparse=self.sparse) for n, r in token_rows.items()}
            return pooled.view(n_bags, b, self.dim).transpose(0, 1), out
        # fused: the bags, then every token as a bag of one id (weight 1, padding 0), in one call
        flat = [r.reshape(-1) for r in token_rows.values()]
        ids = torch.cat([bag_ids, *flat]) if flat else bag_ids
        n_tok = ids.shape[0] - bag_ids.shape[0]
        lens = torch.cat([bag_lens, bag_lens.new_ones(n_tok)]) if n_tok else bag_lens
        offsets = torch.cat([lens.new_zeros(1), torch.cumsum(lens, 0)])
        weights = torch.cat([bag_weights, *((f != 0).to(bag_weights.dtype) for f in flat)]) if flat else bag_weights
        if self.fused_optimizer is not None:
            self.tables.lr = float(self._lr_group["lr"])
        rows = self.tables(ids, offsets, weights)  # [n_bags*B + n_tok, d]
        pooled = rows[: n_bags * b].view(n_bags, b, self.dim).transpose(0, 1)
        out, at = {}, n_bags * b
        for (n, r) in token_rows.items():
            out[n] = rows[at: at + r.numel()].view(*r.shape, self.dim)
            at += r.numel()
        return pooled, out

    def _pretrained_tokens(self, name: str, ids: torch.Tensor) -> torch.Tensor:
        """Unpooled embeddings of ids of a sequence owned by a pretrained field (frozen table, projection)."""
        owner = self.seq_owner[name]
        table = getattr(self, f"frozen_{owner}")
        if self.validate_ids:
            check_ids(name, ids, table.shape[0])
        ids = ids.long()
        vec = self.projections[owner](F.embedding(ids, table))
        return vec * (ids != 0).unsqueeze(-1).to(vec.dtype)

    # -- pretrained ---------------------------------------------------------------------------------
    def _lookup_pretrained(self, batch: Batch) -> list[torch.Tensor]:
        outs = []
        for p in self.pre_names:
            table = getattr(self, f"frozen_{p}")
            ids = [batch.pretrained[p].long()] + [batch.sequences[s].long() for s in self.pre_seqs[p]]
            if self.validate_ids:
                for name, x in zip([p] + self.pre_seqs[p], ids):
                    check_ids(name, x, table.shape[0])
            vecs = [F.embedding(ids[0], table)]
            present = [ids[0] != 0]
            for x in ids[1:]:
                vecs.append(F.embedding_bag(x, table, mode="mean", padding_idx=0))
                present.append((x != 0).any(dim=1))
            stacked = torch.stack(vecs, dim=1)  # [B, 1 + S_p, p]
            mask = torch.stack(present, dim=1).unsqueeze(-1).to(stacked.dtype)
            outs.append(self.projections[p](stacked) * mask)
        return outs

    def touched_sq_norm(self, batch: Batch) -> torch.Tensor:
        """Σ‖w_r‖² over the distinct table rows this batch reads (the lazy L2 term for sparse embeddings)."""
        if self.tables is None:
            return torch.zeros(())
        ids = self._bags(batch, weights=False)[0]
        rows = torch.unique(ids)
        return F.embedding(rows, self.weight, padding_idx=0, sparse=self.sparse).pow(2).sum()


class _PackedTable(nn.Module):
    """The torch backend's packed table: just the weight (looked up with F.embedding_bag)."""

    def __init__(self, rows: int, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(rows, dim))


def _make_fused(rows: int, dim: int, kernel_backend: str | None, sparse: bool) -> nn.Module:
    """The fused kernel module over the packed layout as ONE table of global rows (the collection maps each
    field's ids to rows itself): every bag of a forward goes through one call."""
    from ctrbench.kernels.embedding_bag.module import EmbeddingBagConfig, FusedEmbeddingBagCollection

    return FusedEmbeddingBagCollection([EmbeddingBagConfig("packed", rows, dim)], pooling="sum", optimizer="none",
                                       sparse_grad=sparse, backend=kernel_backend, init="normal")
