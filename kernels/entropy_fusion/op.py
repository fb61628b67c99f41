"""torch.ops.ctrbench.entropy_weighted_fusion: the custom op, its fake impl, autograd and backend dispatch.

Forward and backward are separate custom ops (the backward one is what autograd calls), each with a fake
implementation, so torch.compile traces both without graph breaks. The backend (reference, triton, cpp,
cuda) is resolved per call by ctrbench.kernels.backend.resolve_backend: argument > $CTRBENCH_BACKEND > auto.
"""
from __future__ import annotations

import importlib
from typing import Callable, Optional

import torch

from ctrbench.kernels.backend import load_extension, resolve_backend
from ctrbench.kernels.entropy_fusion.checks import check_static, check_tau_value
from ctrbench.kernels.entropy_fusion.reference import (
    entropy_weighted_fusion_reference,
    entropy_weighted_fusion_reference_backward,
)

_SPACE_CODE = {"prob": 0, "logit": 1}


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


@torch.library.custom_op("ctrbench::entropy_weighted_fusion", mutates_args=())
def entropy_weighted_fusion_op(
    logits: torch.Tensor, tau: torch.Tensor, space: str, detach_weights: bool, eps: float, backend: Optional[str]
) -> tuple[torch.Tensor, torch.Tensor]:
    check_static(logits, tau, space, eps)
    check_tau_value(tau)
    name = resolve_backend(backend, logits.device)
    fused, weights = _FORWARD[name](logits.contiguous(), tau, space, eps)
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
    name = resolve_backend(backend, logits.device)
    gx, gt = _BACKWARD[name](
        logits.contiguous(), tau, weights.contiguous(), grad_fused.contiguous(),
        None if grad_weights is None else grad_weights.contiguous(),
        space, detach_weights, eps, need_tau_grad,
    )
    return gx.to(logits.dtype), gt.to(tau.dtype).reshape(tau.shape)


@entropy_weighted_fusion_backward_op.register_fake
def _(logits, tau, weights, grad_fused, grad_weights, space, detach_weights, eps, need_tau_grad, backend):
    return torch.empty_like(logits), torch.empty_like(tau)


# ---------------------------------------------------------------- autograd


def _setup_context(ctx, inputs, output):
    logits, tau, space, detach_weights, eps, backend = inputs
    _, weights = output
    ctx.save_for_backward(logits, tau, weights)
    ctx.space, ctx.detach_weights, ctx.eps, ctx.backend = space, detach_weights, eps, backend
    ctx.set_materialize_grads(False)  # an unused weights output gives None, not a B x K tensor of zeros
    if detach_weights:
        ctx.mark_non_differentiable(weights)


def _backward(ctx, grad_fused, grad_weights):
    logits, tau, weights = ctx.saved_tensors
    if grad_fused is None:
        grad_fused = logits.new_zeros(logits.shape[:1])
    need_tau = bool(ctx.needs_input_grad[1]) and not ctx.detach_weights
    gx, gt = entropy_weighted_fusion_backward_op(
        logits, tau, weights, grad_fused, None if ctx.detach_weights else grad_weights,
        ctx.space, ctx.detach_weights, ctx.eps, need_tau, ctx.backend,
    )
    return (
        gx if ctx.needs_input_grad[0] else None,
        gt if ctx.needs_input_grad[1] else None,
        None, None, None, None,
    )


entropy_weighted_fusion_op.register_autograd(_backward, setup_context=_setup_context)


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
    return entropy_weighted_fusion_op(logits, tau, space, detach_weights, eps, backend)


def to_logit(fused: torch.Tensor, space: str, eps: float = 1e-6) -> torch.Tensor:
    """The fused prediction as a logit, for BCE-with-logits. In prob space: logit(fused) computed in fp32;
    fused already lies in [eps, 1 - eps] (a no-op clamp), except where fp16/bf16 rounding put it on 0 or 1."""
    if space == "prob":
        return torch.logit(fused.to(torch.promote_types(fused.dtype, torch.float32)), eps=eps).to(fused.dtype)
    if space == "logit":
        return fused
    raise ValueError(f"space must be 'prob' or 'logit', got {space!r}")
