"""torch.ops.ctrbench.interleaved_attention: the custom op, its fake impl, autograd and backend dispatch.

Forward and backward are separate custom ops (autograd calls the backward one), each with a fake
implementation, so torch.compile traces both without graph breaks. The backend (reference, triton, cpp,
cuda) is resolved per call by ctrbench.kernels.backend.resolve_backend: argument > $CTRBENCH_BACKEND >
auto. Static checks run in the public function and in the fake impls; the value check on `lengths`
runs inside the op (it reads data, so it cannot run while tracing).
"""
from __future__ import annotations

import functools
import importlib
import os
from typing import Callable, Optional

import torch

from ctrbench.kernels.backend import ENV_VAR, load_extension, note_backend, resolve_backend
from ctrbench.kernels.interleaved_attention.reference import (
    check_inputs,
    check_lengths,
    default_scale,
    interleaved_attention_reference,
    interleaved_attention_reference_backward,
)


@functools.lru_cache(maxsize=64)
def _resolve_cached(requested: str, device: torch.device, env: Optional[str], interpret: Optional[str]) -> str:
    return resolve_backend(None if requested == "auto" else requested, device)


def backend_for(requested: Optional[str], device: torch.device | str) -> str:
    """The backend that runs for tensors on `device` (cached per request, device and environment)."""
    return _resolve_cached(requested or "auto", torch.device(device), os.environ.get(ENV_VAR),
                           os.environ.get("TRITON_INTERPRET"))


def _triton_module():
    return importlib.import_module("ctrbench.kernels.interleaved_attention.triton")


def _extension_ops():
    load_extension()  # registers ctrbench::_interleaved_attention_fwd / _bwd (CPU, and CUDA when built)
    return torch.ops.ctrbench


# ------------------------------------------------------------------------------ forward per backend


def _forward_reference(q, k, v, lengths, num_prefix, rope, rope_base, scale, separate_queries):
    with torch.no_grad():
        return interleaved_attention_reference(q, k, v, lengths, num_prefix, rope, rope_base, scale, separate_queries)


def _forward_extension(q, k, v, lengths, num_prefix, rope, rope_base, scale, separate_queries):
    return _extension_ops()._interleaved_attention_fwd(q, k, v, lengths, num_prefix, rope, rope_base, scale,
                                                       separate_queries)


def _forward_triton(q, k, v, lengths, num_prefix, rope, rope_base, scale, separate_queries):
    return _triton_module().forward(q, k, v, lengths, num_prefix, rope, rope_base, scale, separate_queries)


_FORWARD: dict[str, Callable] = {
    "reference": _forward_reference,
    "cpp": _forward_extension,
    "cuda": _forward_extension,
    "triton": _forward_triton,
}


@torch.library.custom_op("ctrbench::interleaved_attention", mutates_args=())
def interleaved_attention_op(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lengths: torch.Tensor, num_prefix: int, rope: bool,
    rope_base: float, scale: float, separate_queries: bool, backend: Optional[str],
) -> torch.Tensor:
    check_inputs(q, k, v, lengths, num_prefix, rope, separate_queries)
    check_lengths(lengths, k.shape[2] - num_prefix)
    name = note_backend("interleaved_attention", backend_for(backend, q.device))
    return _FORWARD[name](q.contiguous(), k.contiguous(), v.contiguous(), lengths.contiguous(), num_prefix, rope,
                          rope_base, scale, separate_queries)


@interleaved_attention_op.register_fake
def _(q, k, v, lengths, num_prefix, rope, rope_base, scale, separate_queries, backend):
    check_inputs(q, k, v, lengths, num_prefix, rope, separate_queries)
    return torch.empty_like(q, memory_format=torch.contiguous_format)


# ------------------------------------------------------------------------------ backward per backend


def _backward_reference(grad_out, q, k, v, lengths, num_prefix, rope, rope_base, scale, separate_queries):
    return interleaved_attention_reference_backward(grad_out, q, k, v, lengths, num_prefix, rope, rope_base, scale,
                                                    separate_queries)


def _backward_extension(grad_out, q, k, v, lengths, num_prefix, rope, rope_base, scale, separate_queries):
    return _extension_ops()._interleaved_attention_bwd(grad_out, q, k, v, lengths, num_prefix, rope, rope_base,
                                                       scale, separate_queries)


def _backward_triton(grad_out, q, k, v, lengths, num_prefix, rope, rope_base, scale, separate_queries):
    return _triton_module().backward(grad_out, q, k, v, lengths, num_prefix, rope, rope_base, scale,
                                     separate_queries)


_BACKWARD: dict[str, Callable] = {
    "reference": _backward_reference,
    "cpp": _backward_extension,
    "cuda": _backward_extension,
    "triton": _backward_triton,
}


@torch.library.custom_op("ctrbench::interleaved_attention_backward", mutates_args=())
def interleaved_attention_backward_op(
    grad_out: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lengths: torch.Tensor,
    num_prefix: int, rope: bool, rope_base: float, scale: float, separate_queries: bool, backend: Optional[str],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    name = backend_for(backend, q.device)
    grads = _BACKWARD[name](grad_out.to(q.dtype).contiguous(), q.contiguous(), k.contiguous(), v.contiguous(),
                            lengths.contiguous(), num_prefix, rope, rope_base, scale, separate_queries)
    return tuple(g.to(t.dtype).contiguous() for g, t in zip(grads, (q, k, v)))


@interleaved_attention_backward_op.register_fake
def _(grad_out, q, k, v, lengths, num_prefix, rope, rope_base, scale, separate_queries, backend):
    fmt = torch.contiguous_format
    return (torch.empty_like(q, memory_format=fmt), torch.empty_like(k, memory_format=fmt),
            torch.empty_like(v, memory_format=fmt))


# ------------------------------------------------------------------------------ autograd


def _setup_context(ctx, inputs, output):
    q, k, v, lengths, num_prefix, rope, rope_base, scale, separate_queries, backend = inputs
    ctx.save_for_backward(q, k, v, lengths)
    ctx.args = (num_prefix, rope, rope_base, scale, separate_queries, backend)


def _backward(ctx, grad_out):
    q, k, v, lengths = ctx.saved_tensors
    dq, dk, dv = interleaved_attention_backward_op(grad_out, q, k, v, lengths, *ctx.args)
    return dq, dk, dv, None, None, None, None, None, None, None


interleaved_attention_op.register_autograd(_backward, setup_context=_setup_context)


# ------------------------------------------------------------------------------ public function


def interleaved_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    lengths: torch.Tensor,
    num_prefix: int = 0,
    *,
    rope: bool = False,
    rope_base: float = 10000.0,
    scale: Optional[float] = None,
    separate_queries: bool = False,
    backend: Optional[str] = None,
) -> torch.Tensor:
    """Attention over [num_prefix always-valid tokens | left-padded sequence]; reference.py states the contract
    every backend follows, NaN and inf included (masked slots are never read; a NaN in valid input propagates;
    padded query rows output 0 and get 0 gradients). backend: "reference" | "triton" | "cpp" | "cuda" | None
    (= $CTRBENCH_BACKEND, else auto)."""
    check_inputs(q, k, v, lengths, num_prefix, rope, separate_queries)
    if scale is None:
        scale = default_scale(q.shape[-1])
    return interleaved_attention_op(q, k, v, lengths, int(num_prefix), bool(rope), float(rope_base), float(scale),
                                    bool(separate_queries), backend)
