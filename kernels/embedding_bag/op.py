"""torch.library ops for embedding_bag_collection: schemas, fake kernels, autograd, backend dispatch.

Public ops (what models call, through the functions at the bottom):
- `ctrbench::embedding_bag_collection` -- pooled lookup; its backward gives the weights a dense or a
  row-wise sparse (COO, coalesced) gradient and per_sample_weights their gradient.
- `ctrbench::embedding_bag_collection_fused` -- the same lookup whose backward applies SGD or row-wise
  Adagrad to `weights` (and `momentum`) in place, FBGEMM-TBE style, and returns no weight gradient.
  Contract: `weights` must require grad (it is the trigger for the backward) and be contiguous; each
  backward updates the rows the forward read, each touched row once with its summed gradient; running
  two forwards before their backwards raises autograd's "modified by an inplace operation" error for
  the second backward, as it should (the weights it saved have changed).
Helper ops: `ebc_grad_rows` (unique rows + summed gradient), `ebc_psw_grad`, `ebc_fused_update`.

Backends (argument > $CTRBENCH_BACKEND > auto; see ctrbench.kernels.backend): "reference" (PyTorch),
"triton", "cpp" (ctrbench.kernels._C, CPU), "cuda" (ctrbench.kernels._C, GPU). Inputs are checked
before any kernel reads memory (validation.py): a bad id or bad offsets raise EmbeddingBagInputError.

deterministic=True (default) makes GPU backends sort stably by (row, position), so every row's
gradient is summed in index order and results are bitwise reproducible. deterministic=False lets
them use an unstable sort (the summation order within a row may change between runs, fp32 rounding
differs in the last bits). The CPU kernels are deterministic either way (stable counting sort).
"""
from __future__ import annotations

import functools
import os
from typing import Optional

import torch
from torch import Tensor

from ctrbench.kernels.backend import ENV_VAR, note_backend, resolve_backend
from ctrbench.kernels.embedding_bag import reference
from ctrbench.kernels.embedding_bag import validation as V

POOLING_CODE = {"sum": 0, "mean": 1}
OPTIMIZER_CODE = {"none": 0, "sgd": 1, "rowwise_adagrad": 2}


@functools.lru_cache(maxsize=64)
def _resolve_cached(requested: str, device: torch.device, env: Optional[str], interpret: Optional[str]) -> str:
    return resolve_backend(None if requested == "auto" else requested, device)


def backend_for(requested: Optional[str], device: torch.device) -> str:
    """The backend that runs for tensors on `device` (cached per request, device and environment)."""
    return _resolve_cached(requested or "auto", torch.device(device), os.environ.get(ENV_VAR),
                           os.environ.get("TRITON_INTERPRET"))


# ------------------------------------------------------------------------------------------ backends
# Each backend: forward, grad_rows, psw_grad, fused_update_ with one signature; inputs already
# structurally checked; value checks are each backend's job (in Python or inside its kernels).

def _psw_as(psw: Optional[Tensor], dtype: torch.dtype) -> Optional[Tensor]:
    return None if psw is None else psw.to(dtype).contiguous()


class _Reference:
    @staticmethod
    def forward(w, to, ft, idx, offs, psw, pooling, F, B):
        V.check_values(w, to, idx, offs, ft, F, B)
        return reference.forward(w, to, idx, offs, psw, pooling, ft)

    @staticmethod
    def grad_rows(g, to, ft, idx, offs, psw, pooling, deterministic):
        return reference.grad_rows(g, to, idx, offs, psw, pooling, ft)

    @staticmethod
    def psw_grad(g, w, to, ft, idx, offs, pooling):
        return reference.psw_grad(g, w, to, idx, offs, pooling, ft)

    @staticmethod
    def fused_update_(w, m, g, to, ft, idx, offs, psw, pooling, optimizer, lr, eps, deterministic):
        reference.fused_update_(w, m, g, to, idx, offs, psw, pooling, ft, optimizer, lr, eps)


def _cpu_dtype_check(w: Tensor) -> None:
    if w.dtype not in (torch.float32, torch.float64):
        raise V.EmbeddingBagInputError(
            f"embedding_bag_collection: the cpp backend supports float32/float64 weights, got {w.dtype}")


class _Cpp:
    @staticmethod
    def forward(w, to, ft, idx, offs, psw, pooling, F, B):
        _cpu_dtype_check(w)
        out, status = torch.ops.ctrbench.ebc_forward_cpu(w, to, ft, idx, offs, _psw_as(psw, w.dtype), POOLING_CODE[pooling])
        V.raise_from_status(status, w, to, ft, idx, offs, B)
        return out

    @staticmethod
    def grad_rows(g, to, ft, idx, offs, psw, pooling, deterministic):
        return torch.ops.ctrbench.ebc_grad_rows_cpu(g, to, ft, idx, offs, _psw_as(psw, g.dtype), POOLING_CODE[pooling])

    @staticmethod
    def psw_grad(g, w, to, ft, idx, offs, pooling):
        return torch.ops.ctrbench.ebc_psw_grad_cpu(g, w, to, ft, idx, offs, POOLING_CODE[pooling])

    @staticmethod
    def fused_update_(w, m, g, to, ft, idx, offs, psw, pooling, optimizer, lr, eps, deterministic):
        torch.ops.ctrbench.ebc_fused_update_cpu(w, m, g.to(w.dtype), to, ft, idx, offs, _psw_as(psw, w.dtype),
                                                POOLING_CODE[pooling], OPTIMIZER_CODE[optimizer], lr, eps)


class _Cuda:
    @staticmethod
    def forward(w, to, ft, idx, offs, psw, pooling, F, B):
        out, status = torch.ops.ctrbench.ebc_forward_cuda(w, to, ft, idx, offs, _psw_as(psw, torch.float32),
                                                          POOLING_CODE[pooling])
        V.raise_from_status(status, w, to, ft, idx, offs, B)
        return out

    @staticmethod
    def grad_rows(g, to, ft, idx, offs, psw, pooling, deterministic):
        return torch.ops.ctrbench.ebc_grad_rows_cuda(g, to, ft, idx, offs, _psw_as(psw, torch.float32),
                                                     POOLING_CODE[pooling], deterministic)

    @staticmethod
    def psw_grad(g, w, to, ft, idx, offs, pooling):
        return torch.ops.ctrbench.ebc_psw_grad_cuda(g, w, to, ft, idx, offs, POOLING_CODE[pooling])

    @staticmethod
    def fused_update_(w, m, g, to, ft, idx, offs, psw, pooling, optimizer, lr, eps, deterministic):
        torch.ops.ctrbench.ebc_fused_update_cuda(w, m, g.to(w.dtype), to, ft, idx, offs, _psw_as(psw, torch.float32),
                                                 POOLING_CODE[pooling], OPTIMIZER_CODE[optimizer], lr, eps, deterministic)


class _Triton:
    @staticmethod
    def _mod():
        from ctrbench.kernels.embedding_bag import triton as tk  # imported lazily: needs triton (+ a GPU or the interpreter)
        return tk

    @staticmethod
    def forward(w, to, ft, idx, offs, psw, pooling, F, B):
        V.check_values(w, to, idx, offs, ft, F, B)
        return _Triton._mod().forward(w, to, ft, idx, offs, psw, pooling)

    @staticmethod
    def grad_rows(g, to, ft, idx, offs, psw, pooling, deterministic):
        return _Triton._mod().grad_rows(g, to, ft, idx, offs, psw, pooling, deterministic)

    @staticmethod
    def psw_grad(g, w, to, ft, idx, offs, pooling):
        return _Triton._mod().psw_grad(g, w, to, ft, idx, offs, pooling)

    @staticmethod
    def fused_update_(w, m, g, to, ft, idx, offs, psw, pooling, optimizer, lr, eps, deterministic):
        _Triton._mod().fused_update_(w, m, g, to, ft, idx, offs, psw, pooling, optimizer, lr, eps, deterministic)


_BACKENDS = {"reference": _Reference, "cpp": _Cpp, "cuda": _Cuda, "triton": _Triton}


def _impl(backend: str, device: torch.device):
    return _BACKENDS[note_backend("embedding_bag_collection", backend_for(backend, device))]


def _contig(*ts):
    return tuple(None if t is None else t.contiguous() for t in ts)


def _run_forward(weights, table_offsets, indices, offsets, per_sample_weights, feature_table, pooling, backend):
    F, B = V.check_structure(weights, table_offsets, indices, offsets, per_sample_weights, feature_table, pooling)
    w, to, idx, offs, psw, ft = _contig(weights, table_offsets, indices, offsets, per_sample_weights, feature_table)
    return _impl(backend, w.device).forward(w, to, ft, idx, offs, psw, pooling, F, B)


def _fake_forward(weights, table_offsets, indices, offsets, per_sample_weights, feature_table, pooling):
    F, B = V.check_structure(weights, table_offsets, indices, offsets, per_sample_weights, feature_table, pooling)
    return weights.new_empty(B, F * weights.shape[1])


# ------------------------------------------------------------------------------------------ helper ops

@torch.library.custom_op("ctrbench::ebc_grad_rows", mutates_args=())
def ebc_grad_rows(grad_out: Tensor, table_offsets: Tensor, indices: Tensor, offsets: Tensor,
                  per_sample_weights: Optional[Tensor], feature_table: Optional[Tensor], pooling: str,
                  backend: str, deterministic: bool) -> tuple[Tensor, Tensor]:
    """Row-wise sparse gradient: (unique global rows, ascending; summed gradient per row [U, D])."""
    g, to, idx, offs, psw, ft = _contig(grad_out, table_offsets, indices, offsets, per_sample_weights, feature_table)
    return _impl(backend, g.device).grad_rows(g, to, ft, idx, offs, psw, pooling, deterministic)


@ebc_grad_rows.register_fake
def _(grad_out, table_offsets, indices, offsets, per_sample_weights, feature_table, pooling, backend, deterministic):
    F = V.num_features(table_offsets, feature_table)
    u = torch.library.get_ctx().new_dynamic_size()
    return indices.new_empty(u, dtype=torch.int64), grad_out.new_empty(u, grad_out.shape[1] // F)


@torch.library.custom_op("ctrbench::ebc_psw_grad", mutates_args=())
def ebc_psw_grad(grad_out: Tensor, weights: Tensor, table_offsets: Tensor, indices: Tensor, offsets: Tensor,
                 feature_table: Optional[Tensor], pooling: str, backend: str) -> Tensor:
    """Gradient w.r.t. per_sample_weights [len(indices)]."""
    g, w, to, idx, offs, ft = _contig(grad_out, weights, table_offsets, indices, offsets, feature_table)
    return _impl(backend, w.device).psw_grad(g, w, to, ft, idx, offs, pooling)


@ebc_psw_grad.register_fake
def _(grad_out, weights, table_offsets, indices, offsets, feature_table, pooling, backend):
    return weights.new_empty(indices.shape[0])


@torch.library.custom_op("ctrbench::ebc_fused_update", mutates_args=("weights", "momentum"))
def ebc_fused_update(weights: Tensor, momentum: Tensor, grad_out: Tensor, table_offsets: Tensor, indices: Tensor,
                     offsets: Tensor, per_sample_weights: Optional[Tensor], feature_table: Optional[Tensor],
                     pooling: str, optimizer: str, lr: float, eps: float, backend: str, deterministic: bool) -> None:
    """Backward + optimizer step in place: SGD or FBGEMM row-wise Adagrad, each touched row once."""
    V.check_optimizer_state(weights, momentum, optimizer)
    if optimizer == "none":
        raise V.EmbeddingBagInputError("embedding_bag_collection: fused update needs optimizer 'sgd' or 'rowwise_adagrad'")
    if not weights.is_contiguous():
        raise V.EmbeddingBagInputError("embedding_bag_collection: fused update needs contiguous weights")
    g, to, idx, offs, psw, ft = _contig(grad_out, table_offsets, indices, offsets, per_sample_weights, feature_table)
    _impl(backend, weights.device).fused_update_(weights, momentum, g, to, ft, idx, offs, psw, pooling, optimizer,
                                                 lr, eps, deterministic)


@ebc_fused_update.register_fake
def _(weights, momentum, grad_out, table_offsets, indices, offsets, per_sample_weights, feature_table, pooling,
      optimizer, lr, eps, backend, deterministic):
    return None


# ------------------------------------------------------------------------------------------ public ops

@torch.library.custom_op("ctrbench::embedding_bag_collection", mutates_args=())
def embedding_bag_collection_op(weights: Tensor, table_offsets: Tensor, indices: Tensor, offsets: Tensor,
                                per_sample_weights: Optional[Tensor], feature_table: Optional[Tensor], pooling: str,
                                backend: str, sparse_grad: bool, deterministic: bool) -> Tensor:
    return _run_forward(weights, table_offsets, indices, offsets, per_sample_weights, feature_table, pooling, backend)


@embedding_bag_collection_op.register_fake
def _(weights, table_offsets, indices, offsets, per_sample_weights, feature_table, pooling, backend, sparse_grad,
      deterministic):
    return _fake_forward(weights, table_offsets, indices, offsets, per_sample_weights, feature_table, pooling)


def _setup_ebc(ctx, inputs, output):
    weights, table_offsets, indices, offsets, psw, feature_table, pooling, backend, sparse_grad, det = inputs
    ctx.save_for_backward(weights, table_offsets, indices, offsets, psw, feature_table)
    ctx.pooling, ctx.backend, ctx.sparse_grad, ctx.deterministic = pooling, backend, sparse_grad, det


def _backward_ebc(ctx, grad):
    weights, table_offsets, indices, offsets, psw, feature_table = ctx.saved_tensors
    grad = grad.contiguous()
    gw = gpsw = None
    if ctx.needs_input_grad[0]:
        rows, vals = torch.ops.ctrbench.ebc_grad_rows(grad, table_offsets, indices, offsets, psw, feature_table,
                                                      ctx.pooling, ctx.backend, ctx.deterministic)
        vals = vals.to(weights.dtype)
        if ctx.sparse_grad:
            gw = torch.sparse_coo_tensor(rows.unsqueeze(0), vals, weights.shape, is_coalesced=True,
                                         check_invariants=False)
        else:
            gw = weights.new_zeros(weights.shape).index_copy_(0, rows, vals)
    if psw is not None and ctx.needs_input_grad[4]:
        gpsw = torch.ops.ctrbench.ebc_psw_grad(grad, weights, table_offsets, indices, offsets, feature_table,
                                               ctx.pooling, ctx.backend).to(psw.dtype)
    return gw, None, None, None, gpsw, None, None, None, None, None


embedding_bag_collection_op.register_autograd(_backward_ebc, setup_context=_setup_ebc)


@torch.library.custom_op("ctrbench::embedding_bag_collection_fused", mutates_args=())
def embedding_bag_collection_fused_op(weights: Tensor, momentum: Tensor, table_offsets: Tensor, indices: Tensor,
                                      offsets: Tensor, per_sample_weights: Optional[Tensor],
                                      feature_table: Optional[Tensor], pooling: str, optimizer: str, lr: float,
                                      eps: float, backend: str, deterministic: bool) -> Tensor:
    V.check_optimizer_state(weights, momentum, optimizer)
    return _run_forward(weights, table_offsets, indices, offsets, per_sample_weights, feature_table, pooling, backend)


@embedding_bag_collection_fused_op.register_fake
def _(weights, momentum, table_offsets, indices, offsets, per_sample_weights, feature_table, pooling, optimizer, lr,
      eps, backend, deterministic):
    return _fake_forward(weights, table_offsets, indices, offsets, per_sample_weights, feature_table, pooling)


def _setup_fused(ctx, inputs, output):
    (weights, momentum, table_offsets, indices, offsets, psw, feature_table, pooling, optimizer, lr, eps, backend,
     det) = inputs
    ctx.save_for_backward(weights, momentum, table_offsets, indices, offsets, psw, feature_table)
    ctx.args = (pooling, optimizer, lr, eps, backend, det)


def _backward_fused(ctx, grad):
    weights, momentum, table_offsets, indices, offsets, psw, feature_table = ctx.saved_tensors
    pooling, optimizer, lr, eps, backend, det = ctx.args
    grad = grad.contiguous()
    gpsw = None
    if psw is not None and ctx.needs_input_grad[5]:  # uses the weights before this step's update
        gpsw = torch.ops.ctrbench.ebc_psw_grad(grad, weights, table_offsets, indices, offsets, feature_table,
                                               pooling, backend).to(psw.dtype)
    torch.ops.ctrbench.ebc_fused_update(weights, momentum, grad, table_offsets, indices, offsets, psw, feature_table,
                                        pooling, optimizer, lr, eps, backend, det)
    return None, None, None, None, None, gpsw, None, None, None, None, None, None, None


embedding_bag_collection_fused_op.register_autograd(_backward_fused, setup_context=_setup_fused)


# ------------------------------------------------------------------------------------------ functions

def embedding_bag_collection(weights: Tensor, table_offsets: Tensor, indices: Tensor, offsets: Tensor,
                             per_sample_weights: Optional[Tensor] = None, *, feature_table: Optional[Tensor] = None,
                             pooling: str = "sum", backend: Optional[str] = None, sparse_grad: bool = False,
                             deterministic: bool = True) -> Tensor:
    """Pooled lookup of F features in packed tables -> [B, F*D]; see the module docstring for the layout."""
    return embedding_bag_collection_op(weights, table_offsets, indices, offsets, per_sample_weights, feature_table,
                                       pooling, backend or "auto", sparse_grad, deterministic)


def embedding_bag_collection_fused(weights: Tensor, momentum: Tensor, table_offsets: Tensor, indices: Tensor,
                                   offsets: Tensor, per_sample_weights: Optional[Tensor] = None, *,
                                   feature_table: Optional[Tensor] = None, pooling: str = "sum",
                                   optimizer: str = "sgd", lr: float = 0.01, eps: float = 1e-8,
                                   backend: Optional[str] = None, deterministic: bool = True) -> Tensor:
    """Pooled lookup whose backward updates `weights` (and `momentum`) in place; see the op contract above."""
    return embedding_bag_collection_fused_op(weights, momentum, table_offsets, indices, offsets, per_sample_weights,
                                             feature_table, pooling, optimizer, float(lr), float(eps),
                                             backend or "auto", deterministic)


def grad_rows(grad_out: Tensor, table_offsets: Tensor, indices: Tensor, offsets: Tensor,
              per_sample_weights: Optional[Tensor] = None, *, feature_table: Optional[Tensor] = None,
              pooling: str = "sum", backend: Optional[str] = None, deterministic: bool = True):
    """(unique rows, summed gradient per row) for a given output gradient. Inputs are checked as in the main op
    (EmbeddingBagInputError, every backend); the autograd backward calls the op directly, on inputs its forward
    checked."""
    F, B = V.check_structure(grad_out, table_offsets, indices, offsets, per_sample_weights, feature_table, pooling,
                             name="grad_out")
    V.check_grad_out(grad_out, F, B)
    V.check_values(None, table_offsets, indices, offsets, feature_table, F, B)
    return ebc_grad_rows(grad_out, table_offsets, indices, offsets, per_sample_weights, feature_table, pooling,
                         backend or "auto", deterministic)


def fused_update_(weights: Tensor, momentum: Tensor, grad_out: Tensor, table_offsets: Tensor, indices: Tensor,
                  offsets: Tensor, per_sample_weights: Optional[Tensor] = None, *,
                  feature_table: Optional[Tensor] = None, pooling: str = "sum", optimizer: str = "sgd",
                  lr: float = 0.01, eps: float = 1e-8, backend: Optional[str] = None,
                  deterministic: bool = True) -> None:
    """Apply the fused backward + optimizer step for `grad_out` (what the fused op's backward does). Inputs are
    checked as in the main op (EmbeddingBagInputError, every backend) before any row changes."""
    F, B = V.check_structure(weights, table_offsets, indices, offsets, per_sample_weights, feature_table, pooling)
    V.check_grad_out(grad_out, F, B, weights)
    V.check_values(weights, table_offsets, indices, offsets, feature_table, F, B)
    ebc_fused_update(weights, momentum, grad_out, table_offsets, indices, offsets, per_sample_weights, feature_table,
                     pooling, optimizer, float(lr), float(eps), backend or "auto", deterministic)
