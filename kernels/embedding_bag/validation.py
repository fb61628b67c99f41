"""Input checks for embedding_bag_collection: typed errors that name the feature, table and position.

Structural checks (ranks, dtypes, devices, sizes) run on every call and in fake mode; value checks
(ids within their table, offsets monotone and consistent) are vectorised torch ops here for the
reference and Triton backends, and run inside the C++ / CUDA kernels for those backends, which report
a status vector that `raise_from_status` turns into the same error.
"""
from __future__ import annotations

import torch
from torch import Tensor

POOLINGS = ("sum", "mean")
OPTIMIZERS = ("none", "sgd", "rowwise_adagrad")
WEIGHT_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
INDEX_DTYPES = (torch.int32, torch.int64)

# Status codes shared with csrc/embedding_bag_cpu.cpp and the CUDA validation kernel.
STATUS_OK, STATUS_BAD_ID, STATUS_BAD_OFFSETS, STATUS_BAD_TABLES = 0, 1, 2, 3


class EmbeddingBagInputError(ValueError):
    """Bad input to embedding_bag_collection; `feature`, `table`, `position`, `value`, `bound` say where."""

    def __init__(self, message: str, *, feature: int | None = None, table: int | None = None,
                 position: int | None = None, value: int | None = None, bound: int | None = None):
        super().__init__(message)
        self.feature, self.table, self.position, self.value, self.bound = feature, table, position, value, bound

    def with_names(self, feature_names=None, table_names=None) -> "EmbeddingBagInputError":
        """The same error with the feature's and table's names added (the module knows them)."""
        extra = []
        if feature_names is not None and self.feature is not None and self.feature < len(feature_names):
            extra.append(f"feature {feature_names[self.feature]!r}")
        if table_names is not None and self.table is not None and self.table < len(table_names):
            extra.append(f"table {table_names[self.table]!r}")
        if not extra:
            return self
        return EmbeddingBagInputError(f"{self} [{', '.join(extra)}]", feature=self.feature, table=self.table,
                                      position=self.position, value=self.value, bound=self.bound)


def _fail(msg: str, **where) -> None:
    raise EmbeddingBagInputError("embedding_bag_collection: " + msg, **where)


def num_features(table_offsets: Tensor, feature_table: Tensor | None) -> int:
    return feature_table.shape[0] if feature_table is not None else table_offsets.shape[0] - 1


def check_structure(weights: Tensor, table_offsets: Tensor, indices: Tensor, offsets: Tensor,
                    per_sample_weights: Tensor | None, feature_table: Tensor | None, pooling: str,
                    *, name: str = "weights") -> tuple[int, int]:
    """Ranks, dtypes, devices and sizes (no data reads, so it also runs on fake tensors); returns (F, B).
    `weights` is the 2-D float tensor the other inputs must share a device with (`name`: grad_out for grad_rows)."""
    if weights.dim() != 2:
        _fail(f"{name} must be 2-D, got shape {tuple(weights.shape)}")
    if weights.dtype not in WEIGHT_DTYPES:
        _fail(f"{name} dtype {weights.dtype} is not one of {WEIGHT_DTYPES}")
    dev = weights.device
    named = {"table_offsets": table_offsets, "indices": indices, "offsets": offsets,
             "per_sample_weights": per_sample_weights, "feature_table": feature_table}
    for arg, t in named.items():
        if t is None:
            continue
        if t.device != dev:
            _fail(f"{arg} is on {t.device} but {name} is on {dev}; all inputs must share one device")
        if t.dim() != 1:
            _fail(f"{arg} must be 1-D, got shape {tuple(t.shape)}")
    if table_offsets.dtype != torch.int64:
        _fail(f"table_offsets must be int64, got {table_offsets.dtype}")
    if table_offsets.shape[0] < 2:
        _fail(f"table_offsets must hold T+1 >= 2 row offsets, got {table_offsets.shape[0]}")
    if feature_table is not None and feature_table.dtype != torch.int64:
        _fail(f"feature_table must be int64, got {feature_table.dtype}")
    if indices.dtype not in INDEX_DTYPES:
        _fail(f"indices must be int32 or int64, got {indices.dtype}")
    if offsets.dtype not in INDEX_DTYPES:
        _fail(f"offsets must be int32 or int64, got {offsets.dtype}")
    if pooling not in POOLINGS:
        _fail(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    F = num_features(table_offsets, feature_table)
    if F < 1:
        _fail("there must be at least one feature")
    n_off = offsets.shape[0]
    if n_off < 1 or (n_off - 1) % F != 0:
        _fail(f"len(offsets) = {n_off} must be F*B+1 for F = {F} features (feature-major bags)")
    if per_sample_weights is not None:
        if not per_sample_weights.is_floating_point():
            _fail(f"per_sample_weights must be floating point, got {per_sample_weights.dtype}")
        if per_sample_weights.shape[0] != indices.shape[0]:
            _fail(f"per_sample_weights has {per_sample_weights.shape[0]} entries but indices has {indices.shape[0]}")
    return F, (n_off - 1) // F


def check_grad_out(grad_out: Tensor, F: int, B: int, weights: Tensor | None = None) -> None:
    """grad_out of the helpers grad_rows / fused_update_: [B, F*D], floating, on the weights' device
    (D the weights' dim when given, else any)."""
    if weights is not None:
        if grad_out.device != weights.device:
            _fail(f"grad_out is on {grad_out.device} but weights are on {weights.device}")
        if not grad_out.is_floating_point():
            _fail(f"grad_out must be floating point, got {grad_out.dtype}")
    D = weights.shape[1] if weights is not None else None
    rows_ok = grad_out.dim() == 2 and grad_out.shape[0] == B
    if not rows_ok or (grad_out.shape[1] % F != 0 if D is None else grad_out.shape[1] != F * D):
        want = f"[B={B}, F*D={F}*{'D' if D is None else D}]"
        _fail(f"grad_out must be {want} (one row per bag, features side by side), got {tuple(grad_out.shape)}")


def check_optimizer_state(weights: Tensor, momentum: Tensor, optimizer: str) -> None:
    if optimizer not in OPTIMIZERS:
        _fail(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    if optimizer == "rowwise_adagrad":
        if momentum.device != weights.device or momentum.dim() != 1 or momentum.shape[0] != weights.shape[0]:
            _fail(f"row-wise Adagrad needs momentum [rows={weights.shape[0]}] on {weights.device}, "
                  f"got {tuple(momentum.shape)} on {momentum.device}")
        want = torch.float64 if weights.dtype == torch.float64 else torch.float32
        if momentum.dtype != want:
            _fail(f"momentum must be {want} for {weights.dtype} weights, got {momentum.dtype}")


def _feature_of(offsets: Tensor, B: int, pos: int) -> int:
    """The feature whose bags hold indices[pos] (host-side, error path only)."""
    starts = offsets[::B].tolist() if B > 0 else [0]
    f = 0
    for k in range(len(starts) - 1):
        if starts[k] <= pos < starts[k + 1]:
            f = k
            break
    return f


def raise_bad_id(table_offsets: Tensor, feature_table: Tensor | None, indices: Tensor, offsets: Tensor,
                 B: int, pos: int) -> None:
    f = _feature_of(offsets, B, pos)
    t = int(feature_table[f]) if feature_table is not None else f
    bound = int(table_offsets[t + 1] - table_offsets[t])
    value = int(indices[pos])
    _fail(f"indices[{pos}] = {value} is out of range for feature {f} (table {t} has {bound} rows; "
          f"valid ids are 0..{bound - 1})", feature=f, table=t, position=pos, value=value, bound=bound)


def raise_bad_offsets(offsets: Tensor, nnz: int, pos: int) -> None:
    o = offsets.tolist()
    if pos == 0 and o[0] != 0:
        _fail(f"offsets[0] = {o[0]} must be 0", position=0, value=o[0])
    if pos == len(o) - 1 and o[pos] != nnz and (pos == 0 or o[pos] >= o[pos - 1]):
        _fail(f"offsets[-1] = offsets[{pos}] = {o[pos]} must equal len(indices) = {nnz}", position=pos, value=o[pos])
    _fail(f"offsets must be non-decreasing: offsets[{pos}] = {o[pos]} < offsets[{pos - 1}] = {o[pos - 1]}",
          position=pos, value=o[pos])


def raise_bad_tables(table_offsets: Tensor, feature_table: Tensor | None, num_rows: int) -> None:
    to = table_offsets.tolist()
    if to[0] < 0 or to[-1] > num_rows or any(b < a for a, b in zip(to, to[1:])):
        _fail(f"table_offsets {to[:8]}{'...' if len(to) > 8 else ''} must be non-decreasing within "
              f"[0, {num_rows}] (the packed weights' rows)")
    ft = feature_table.tolist()
    bad = next(i for i, t in enumerate(ft) if not 0 <= t < len(to) - 1)
    _fail(f"feature_table[{bad}] = {ft[bad]} is not a table index in [0, {len(to) - 1})", feature=bad, value=ft[bad])


def raise_from_status(status: Tensor, weights: Tensor, table_offsets: Tensor, feature_table: Tensor | None,
                      indices: Tensor, offsets: Tensor, B: int) -> None:
    """Turn a kernel's int64 status [code, pos] into the typed error (no-op when code is 0)."""
    code, pos = status.tolist()[:2]
    if code == STATUS_OK:
        return
    if code == STATUS_BAD_TABLES:
        raise_bad_tables(table_offsets, feature_table, weights.shape[0])
    if code == STATUS_BAD_OFFSETS:
        raise_bad_offsets(offsets, indices.shape[0], pos)
    raise_bad_id(table_offsets, feature_table, indices, offsets, B, pos)


def check_values(weights: Tensor | None, table_offsets: Tensor, indices: Tensor, offsets: Tensor,
                 feature_table: Tensor | None, F: int, B: int) -> None:
    """Vectorised value checks (one host sync): table layout, offsets, every id within its table.
    Without `weights` (grad_rows) the tables' end is not bounded by the weights' rows."""
    R = weights.shape[0] if weights is not None else table_offsets[-1]
    to = table_offsets
    T = to.shape[0] - 1
    tables_bad = (to[0] < 0) | (to[-1] > R) | (to[1:] < to[:-1]).any()
    if feature_table is not None:
        tables_bad = tables_bad | ((feature_table < 0) | (feature_table >= T)).any()
    o = offsets.long()
    nnz = indices.shape[0]
    step_bad = torch.cat([o[:1] != 0, o[1:] < o[:-1], (o[-1:] != nnz)])
    off_pos = step_bad.to(torch.uint8).argmax()
    summary = [tables_bad.reshape(1).long(), step_bad[off_pos].reshape(1).long(), off_pos.reshape(1)]
    flags = torch.cat(summary).tolist()
    if flags[0]:
        raise_bad_tables(table_offsets, feature_table, int(R))
    if flags[1]:
        # step_bad[k] is about offsets[k] (k < n); its extra last entry is the offsets[-1] == nnz check
        raise_bad_offsets(offsets, nnz, min(flags[2], o.shape[0] - 1))
    if nnz == 0:
        return
    ft = feature_table if feature_table is not None else torch.arange(T, device=to.device)
    rows_f = (to[1:] - to[:-1])[ft]
    counts = o[::B][1:] - o[::B][:-1] if B > 0 else o.new_zeros(F)
    bound = torch.repeat_interleave(rows_f, counts, output_size=nnz)
    bad = (indices < 0) | (indices >= bound)
    pos_t = bad.to(torch.uint8).argmax()
    any_bad, pos = torch.stack([bad[pos_t].long(), pos_t]).tolist()
    if any_bad:
        raise_bad_id(table_offsets, feature_table, indices, offsets, B, pos)
