"""The PyTorch definition of embedding_bag_collection that every backend is tested against.

Layout (TBE / KJT, feature-major): `weights` [R, D] packs all tables, table t owning rows
table_offsets[t]:table_offsets[t+1]; feature f reads table feature_table[f] (default f); `indices` are
table-local ids; bag (f, b) is indices[offsets[f*B+b]:offsets[f*B+b+1]]; the output is [B, F*D] with
feature f's pooled vector in columns f*D:(f+1)*D. Sum pooling: sum_j w_j * row_j; mean pooling: the same
divided by the bag's length (0 for an empty bag). All tables share one D. Accumulation is in fp32 for
half-precision weights (fp64 for fp64 weights); the output has the weights' dtype.
"""
from __future__ import annotations

import torch
from torch import Tensor


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def positions(table_offsets: Tensor, feature_table: Tensor | None, offsets: Tensor, indices: Tensor, B: int):
    """Per index position: global bag (f*B+b), feature, global row (table offset + local id)."""
    F = feature_table.shape[0] if feature_table is not None else table_offsets.shape[0] - 1
    o = offsets.long()
    nnz = indices.shape[0]
    lengths = o[1:] - o[:-1]
    bag = torch.repeat_interleave(torch.arange(F * B, device=o.device), lengths, output_size=nnz)
    feat = bag // B if B > 0 else bag
    table = feature_table[feat] if feature_table is not None else feat
    grow = table_offsets[table] + indices.long()
    return bag, feat, grow, lengths


def position_scale(per_sample_weights: Tensor | None, pooling: str, lengths: Tensor, bag: Tensor,
                   dtype: torch.dtype) -> Tensor | None:
    """The factor each looked-up row is multiplied by: its per-sample weight, / bag length for mean."""
    scale = per_sample_weights.to(dtype) if per_sample_weights is not None else None
    if pooling == "mean":
        inv = 1.0 / lengths.clamp(min=1).to(dtype)
        scale = inv[bag] if scale is None else scale * inv[bag]
    return scale


def forward(weights: Tensor, table_offsets: Tensor, indices: Tensor, offsets: Tensor,
            per_sample_weights: Tensor | None = None, pooling: str = "sum",
            feature_table: Tensor | None = None) -> Tensor:
    """Pooled embeddings [B, F*D]; differentiable in weights and per_sample_weights via autograd."""
    F = feature_table.shape[0] if feature_table is not None else table_offsets.shape[0] - 1
    B = (offsets.shape[0] - 1) // F
    D = weights.shape[1]
    acc = _acc_dtype(weights.dtype)
    bag, _, grow, lengths = positions(table_offsets, feature_table, offsets, indices, B)
    vals = weights[grow].to(acc)
    scale = position_scale(per_sample_weights, pooling, lengths, bag, acc)
    if scale is not None:
        vals = vals * scale[:, None]
    pooled = torch.zeros(F * B, D, dtype=acc, device=weights.device).index_add(0, bag, vals)
    return pooled.view(F, B, D).permute(1, 0, 2).reshape(B, F * D).to(weights.dtype)


def grad_rows(grad_out: Tensor, table_offsets: Tensor, indices: Tensor, offsets: Tensor,
              per_sample_weights: Tensor | None = None, pooling: str = "sum",
              feature_table: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Row-wise sparse weight gradient: (unique global rows ascending, summed gradient per row [U, D])."""
    rows, summed = _grad_rows_acc(grad_out, table_offsets, indices, offsets, per_sample_weights, pooling, feature_table)
    return rows, summed.to(grad_out.dtype)


def _grad_rows_acc(grad_out, table_offsets, indices, offsets, per_sample_weights, pooling, feature_table):
    """grad_rows with the sums kept in the accumulation dtype (fp32, or fp64 for fp64)."""
    F = feature_table.shape[0] if feature_table is not None else table_offsets.shape[0] - 1
    B = (offsets.shape[0] - 1) // F
    D = grad_out.shape[1] // F
    acc = _acc_dtype(grad_out.dtype)
    bag, _, grow, lengths = positions(table_offsets, feature_table, offsets, indices, B)
    g = grad_out.to(acc).view(B, F, D).permute(1, 0, 2).reshape(F * B, D)[bag]
    scale = position_scale(per_sample_weights, pooling, lengths, bag, acc)
    if scale is not None:
        g = g * scale[:, None]
    rows, inverse = torch.unique(grow, sorted=True, return_inverse=True)
    summed = torch.zeros(rows.shape[0], D, dtype=acc, device=grad_out.device).index_add_(0, inverse, g)
    return rows, summed


def psw_grad(grad_out: Tensor, weights: Tensor, table_offsets: Tensor, indices: Tensor, offsets: Tensor,
             pooling: str = "sum", feature_table: Tensor | None = None) -> Tensor:
    """Gradient w.r.t. per_sample_weights: <grad of the bag's output, looked-up row> (/ length for mean)."""
    F = feature_table.shape[0] if feature_table is not None else table_offsets.shape[0] - 1
    B = (offsets.shape[0] - 1) // F
    D = weights.shape[1]
    acc = _acc_dtype(weights.dtype)
    bag, _, grow, lengths = positions(table_offsets, feature_table, offsets, indices, B)
    g = grad_out.to(acc).view(B, F, D).permute(1, 0, 2).reshape(F * B, D)[bag]
    out = (g * weights[grow].to(acc)).sum(1)
    if pooling == "mean":
        out = out / lengths.clamp(min=1).to(acc)[bag]
    return out.to(weights.dtype)


def sgd_update_(weights: Tensor, rows: Tensor, grads: Tensor, lr: float) -> None:
    """Exact SGD on the touched rows: w_r -= lr * g_r (g_r the row's summed gradient)."""
    acc = _acc_dtype(weights.dtype)
    new = weights[rows].to(acc) - lr * grads.to(acc)
    weights.index_copy_(0, rows, new.to(weights.dtype))


def rowwise_adagrad_update_(weights: Tensor, momentum: Tensor, rows: Tensor, grads: Tensor,
                            lr: float, eps: float) -> None:
    """FBGEMM's row-wise Adagrad: G_r += mean_d(g_rd^2); w_r -= lr * g_r / (sqrt(G_r) + eps)."""
    acc = _acc_dtype(weights.dtype)
    g = grads.to(acc)
    m = momentum[rows].to(acc) + (g * g).mean(1)
    momentum.index_copy_(0, rows, m.to(momentum.dtype))
    new = weights[rows].to(acc) - (lr / (m.sqrt() + eps))[:, None] * g
    weights.index_copy_(0, rows, new.to(weights.dtype))


def fused_update_(weights: Tensor, momentum: Tensor, grad_out: Tensor, table_offsets: Tensor, indices: Tensor,
                  offsets: Tensor, per_sample_weights: Tensor | None = None, pooling: str = "sum",
                  feature_table: Tensor | None = None, optimizer: str = "sgd", lr: float = 0.01,
                  eps: float = 1e-8) -> None:
    """Backward + optimizer step: each touched row gets its summed gradient applied once."""
    rows, grads = _grad_rows_acc(grad_out, table_offsets, indices, offsets, per_sample_weights, pooling, feature_table)
    if optimizer == "sgd":
        sgd_update_(weights, rows, grads, lr)
    elif optimizer == "rowwise_adagrad":
        rowwise_adagrad_update_(weights, momentum, rows, grads, lr, eps)
    else:
        raise ValueError(f"fused optimizer must be 'sgd' or 'rowwise_adagrad', got {optimizer!r}")
