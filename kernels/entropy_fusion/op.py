"""torch.ops.ctrbench.entropy_weighted_fusion: the custom op, its fake impl, autograd and backend dispatch.

Forward and backward are separate custom ops (the backward one is what autograd calls), each with a fake
implementation, so torch.compile traces both without graph breaks. The backend (reference, triton, cpp,
cuda) is resolved per call by ctrbench.kernels.backend.resolve_backend: argument > $CTRBENCH_BACKEND > auto.

`entropy_weighted_fusion()` calls the registered op whenever torch.compile / export traces it; in eager mode
it calls the same forward / backward implementations through an autograd.Function (or directly, when no
input needs a gradient), which skips the custom op dispatcher's Python round trips (several times the
kernel's own time at small B). Both paths share every line of validation, dispatch and gradient code
below, and the tests run both.
"""
from __future__ import annotations

import importlib
import os
from typing import Callable, Optional

import torch

from ctrbench.kernels.backend import ENV_VAR, load_extension, note_backend, resolve_backend
from ctrbench.kernels.entropy_fusion.checks import check_static, check_tau_value
from ctrbench.kernels.entropy_fusion.reference import (
    entropy_weighted_fusion_reference,
    entropy_weighted_fusion_reference_backward,
)

_SPACE_CODE = {"prob": 0, "logit": 1}
_RESOLVED: dict[tuple, str] = {}


def _resolve(backend: Optional[str], device: torch.device) -> str:
    """resolve_backend, memoised on everything it reads (argument, environment, device)."""
    key = (backend, os.environ.get(ENV_VAR), os.environ.get("TRITON_INTERPRET"), device)
    name = _RESOLVED.get(key)
    if name is None:
        name = _RESOLVED[key] = resolve_backend(backend, device)
    return name


def _triton_module():
    return importlib.import_module("ctrbench.kernels.entropy_fusion.triton")


def _extension_ops():
    load_extension()  # registers ctrbench::_entropy_fusion_fwd / _bwd
    return torch.ops.ctrbench


# ---------------------------------------------------------------- forward, per backend


def _forward_reference(logits, tau, space, eps):
    with torch.no_grad():
        return entropy_weighted_fusion_reference(logits, tau, space, False, eps)


def _forward_compiled_ext(logits, tau, space, eps):  # cpp on CPU tensors, cuda on CUDA tensors
    return _extension_ops()._entropy_fusion_fwd(logits, tau, _SPACE_CODE[space], eps)


def _forward_triton(logits, tau, space, eps):
    return _triton_module().forward(logits, tau, space, eps)


_FORWARD: dict[str, Callable] = {
    "reference": _forward_reference,
    "cpp": _forward_compiled_ext,
    "cuda": _forward_compiled_ext,
    "triton": _forward_triton,
}


def _forward_impl(logits, tau, space, eps, backend):
    check_static(logits, tau, space, eps)
    check_tau_value(tau)
    name = note_backend("entropy_weighted_fusion", _resolve(backend, logits.device))
    return _FORWARD[name](logits.contiguous(), tau, space, eps)


@torch.library.custom_op("ctrbench::entropy_weighted_fusion", mutates_args=())
def entropy_weighted_fusion_op(
    logits: torch.Tensor, tau: torch.Tensor, space: str, detach_weights: bool, eps: float, backend: Optional[str]
) -> tuple[torch.Tensor, torch.Tensor]:
    fused, weights = _forward_impl(logits, tau, space, eps, backend)
    return fused, weights


@entropy_weighted_fusion_op.register_fake
def _(logits, tau, space, detach_weights, eps, backend):
    check_static(logits, tau, space, eps)
    return logits.new_empty(logits.shape[:1]), logits.new_empty(logits.shape)


# ---------------------------------------------------------------- backward, per backend


def _backward_reference(logits, tau, weights, grad_fused, grad_weights, space, detach_weights, eps, need_tau_grad):
    return entropy_weighted_fusion_reference_backward(
        logits, tau, weights, grad_fused, grad_weights, space, detach_weights, eps
    )


def _backward_compiled_ext(logits, tau, weights, grad_fused, grad_weights, space, detach_weights, eps, need_tau_grad):
    return _extension_ops()._entropy_fusion_bwd(
        logits, tau, weights, grad_fused, grad_weights, _SPACE_CODE[space], detach_weights, need_tau_grad, eps
    )


def _backward_triton(logits, tau, weights, grad_fused, grad_weights, space, detach_weights, eps, need_tau_grad):
    return _triton_module().backward(
        logits, tau, weights, grad_fused, grad_weights, space, detach_weights, eps, need_tau_grad
    )


_BACKWARD: dict[str, Callable] = {
    "reference": _backward_reference,
    "cpp": _backward_compiled_ext,
    "cuda": _backward_compiled_ext,
    "triton": _backward_triton,
}


def _backward_impl(logits, tau, weights, grad_fused, grad_weights, space, detach_weights, eps, need_tau_grad, backend):
    name = _resolve(backend, logits.device)
    gx, gt = _BACKWARD[name](
        logits.contiguous(), tau, weights.contiguous(), grad_fused.contiguous(),
        None if grad_weights is None else grad_weights.contiguous(),
        space, detach_weights, eps, need_tau_grad,
    )
    return gx.to(logits.dtype), gt.to(tau.dtype).reshape(tau.shape)


@torch.library.custom_op("ctrbench::entropy_weighted_fusion_backward", mutates_args=())
def entropy_weighted_fusion_backward_op(
    logits: torch.Tensor,
    tau: torch.Tensor,
    weights: torch.Tensor,
    grad_fused: torch.Tensor,
    grad_weights: Optional[torch.Tensor],
    space: str,
    detach_weights: bool,
    eps: float,
    need_tau_grad: bool,
    backend: Optional[str],
) -> tuple[torch.Tensor, torch.Tensor]:
    return _backward_impl(logits, tau, weights, grad_fused, grad_weights, space, detach_weights, eps,
                          need_tau_grad, backend)


@entropy_weighted_fusion_backward_op.register_fake
def _(logits, tau, weights, grad_fused, grad_weights, space, detach_weights, eps, need_tau_grad, backend):
    return torch.empty_like(logits), torch.empty_like(tau)


# ---------------------------------------------------------------- autograd (shared by both paths)


def _setup_context(ctx, inputs, output):
    logits, tau, space, detach_weights, eps, backend = inputs
    _, weights = output
    ctx.save_for_backward(logits, tau, weights)
    ctx.space, ctx.detach_weights, ctx.eps, ctx.backend = space, detach_weights, eps, backend
    ctx.set_materialize_grads(False)  # an unused weights output gives None, not a B x K tensor of zeros
    if detach_weights:
        ctx.mark_non_differentiable(weights)


def _backward_with(backward_fn, ctx, grad_fused, grad_weights):
    logits, tau, weights = ctx.saved_tensors
    if grad_fused is None:
        grad_fused = logits.new_zeros(logits.shape[:1])
    need_tau = bool(ctx.needs_input_grad[1]) and not ctx.detach_weights
    gx, gt = backward_fn(
        logits, tau, weights, grad_fused, None if ctx.detach_weights else grad_weights,
        ctx.space, ctx.detach_weights, ctx.eps, need_tau, ctx.backend,
    )
    return gx if ctx.needs_input_grad[0] else None, gt if ctx.needs_input_grad[1] else None, None, None, None, None


def _backward(ctx, grad_fused, grad_weights):
    return _backward_with(entropy_weighted_fusion_backward_op, ctx, grad_fused, grad_weights)


entropy_weighted_fusion_op.register_autograd(_backward, setup_context=_setup_context)


class _EagerEntropyFusion(torch.autograd.Function):
    """The eager path: same forward / backward implementations, without the custom-op dispatch."""

    @staticmethod
    def forward(ctx, logits, tau, space, detach_weights, eps, backend):
        fused, weights = _forward_impl(logits, tau, space, eps, backend)
        _setup_context(ctx, (logits, tau, space, detach_weights, eps, backend), (fused, weights))
        return fused, weights

    @staticmethod
    def backward(ctx, grad_fused, grad_weights):
        return _backward_with(_backward_impl, ctx, grad_fused, grad_weights)


# ---------------------------------------------------------------- public functions


def entropy_weighted_fusion(
    logits: torch.Tensor,
    tau: torch.Tensor | float,
    space: str = "prob",
    detach_weights: bool = False,
    eps: float = 1e-6,
    backend: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fuse K member predictions per row: (fused [B], weights [B, K]); see reference.py for the maths.

    `fused` is in the chosen space: a probability in [eps, 1 - eps] for space="prob" (use `to_logit` for
    BCE-with-logits; it stays finite), a logit in [-L, L] for space="logit". A float tau becomes a constant.
    """
    if not isinstance(tau, torch.Tensor):
        tau = torch.tensor(float(tau), dtype=torch.float64 if logits.dtype == torch.float64 else torch.float32,
                           device=logits.device)
    if torch.compiler.is_compiling():
        return entropy_weighted_fusion_op(logits, tau, space, detach_weights, eps, backend)
    if torch.is_grad_enabled() and (logits.requires_grad or tau.requires_grad):
        return _EagerEntropyFusion.apply(logits, tau, space, detach_weights, eps, backend)
    return _forward_impl(logits, tau, space, eps, backend)  # nothing to differentiate: no autograd node


def to_logit(fused: torch.Tensor, space: str, eps: float = 1e-6) -> torch.Tensor:
    """The fused prediction as a logit, for BCE-with-logits. In prob space: logit(fused) computed in fp32;
    fused already lies in [eps, 1 - eps] (a no-op clamp), except where fp16/bf16 rounding put it on 0 or 1."""
    if space == "prob":
        return torch.logit(fused.to(torch.promote_types(fused.dtype, torch.float32)), eps=eps).to(fused.dtype)
    if space == "logit":
        return fused
    raise ValueError(f"space must be 'prob' or 'logit', got {space!r}")
