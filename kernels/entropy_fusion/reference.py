"""PyTorch definition of entropy-weighted fusion (CETNet): every backend is tested against this.

Per sample b and member k, with L = log((1 - eps) / eps):
    x̂_k = clamp(x_k, -L, L)                      (so p_k = sigmoid(x̂_k) lies in [eps, 1 - eps])
    c_k = p_k log p_k + (1 - p_k) log(1 - p_k)   (confidence = negated binary entropy, in [-log 2, 0))
    w_k = softmax_k(c_k / tau)                   (max-subtracted)
    fused = sum_k w_k p_k   (space="prob": a probability in [eps, 1 - eps])
    fused = sum_k w_k x̂_k   (space="logit": a logit in [-L, L])
Clamping the logit at ±L is the same as clamping p to [eps, 1 - eps]; it keeps p·log p and its gradient
finite for any input, ±inf included (their gradient is 0, as for torch.clamp). NaN logits propagate: a row
holding a NaN gets NaN fused and NaN weights, other rows are untouched. With detach_weights the weights
are constants (no gradient flows through them, nor through the returned weights).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

SPACES = ("prob", "logit")


def clamp_bound(eps: float) -> float:
    """L = logit(1 - eps): clamping logits to [-L, L] clamps sigmoid(x) to [eps, 1 - eps]."""
    return math.log1p(-eps) - math.log(eps)


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Half types are computed in float32, float64 in float64."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def confidence(logits: torch.Tensor, eps: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x̂, p, c): clamped logits, clamped probabilities and negated binary entropy, elementwise."""
    bound = clamp_bound(eps)
    xh = logits.clamp(-bound, bound)
    p = torch.sigmoid(xh)
    c = p * F.logsigmoid(xh) + (1.0 - p) * F.logsigmoid(-xh)
    return xh, p, c


def entropy_weighted_fusion_reference(
    logits: torch.Tensor,
    tau: torch.Tensor,
    space: str = "prob",
    detach_weights: bool = False,
    eps: float = 1e-6,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(fused [B], weights [B, K]) in logits' dtype; differentiable w.r.t. logits and tau."""
    if space not in SPACES:
        raise ValueError(f"space must be one of {SPACES}, got {space!r}")
    acc = compute_dtype(logits.dtype)
    x = logits.to(acc)
    t = tau.to(acc)
    # A non-positive or non-finite tau has no meaning: NaN, as the CUDA/Triton kernels give (the op
    # raises on CPU before getting here).
    t = torch.where((t > 0) & torch.isfinite(t), t, torch.full_like(t, float("nan")))
    xh, p, c = confidence(x, eps)
    weights = torch.softmax(c / t, dim=-1)
    if detach_weights:
        weights = weights.detach()
    values = p if space == "prob" else xh
    fused = (weights * values).sum(dim=-1)
    return fused.to(logits.dtype), weights.to(logits.dtype)


def entropy_weighted_fusion_reference_backward(
    logits: torch.Tensor,
    tau: torch.Tensor,
    weights: torch.Tensor,
    grad_fused: torch.Tensor,
    grad_weights: torch.Tensor | None,
    space: str = "prob",
    detach_weights: bool = False,
    eps: float = 1e-6,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed-form gradients (d logits, d tau) of the reference, as the kernels compute them.

    With v = p (prob) or x̂ (logit), g_k = dL/dw_k = grad_weights_k + grad_fused * v_k,
    dz_k = w_k (g_k - sum_j w_j g_j), dL/dx_k = [grad_fused w_k dv_k/dx + dz_k/tau * x̂_k p_k (1-p_k)] * 1{|x| <= L},
    dL/dtau = -sum dz_k c_k / tau^2 (no weight terms when detach_weights). The tests check it against autograd.
    """
    acc = compute_dtype(logits.dtype)
    x, t, w = logits.to(acc), tau.to(acc), weights.to(acc)
    gf = grad_fused.to(acc)[:, None]
    bound = clamp_bound(eps)
    xh, p, c = confidence(x, eps)
    pq = p * (1.0 - p)
    inside = (x >= -bound) & (x <= bound)
    values, dvalues = (p, pq) if space == "prob" else (xh, torch.ones_like(x))
    gx = gf * w * dvalues
    gtau = torch.zeros((), dtype=acc, device=x.device)
    if not detach_weights:
        g = gf * values
        if grad_weights is not None:
            g = g + grad_weights.to(acc)
        dz = w * (g - (w * g).sum(dim=-1, keepdim=True))
        gx = gx + dz / t * xh * pq
        gtau = -(dz * c).sum() / (t * t)
    gx = torch.where(inside, gx, torch.zeros_like(gx))
    return gx.to(logits.dtype), gtau.to(tau.dtype)
