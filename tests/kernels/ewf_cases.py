"""Shared checks for the entropy_weighted_fusion tests: run a backend through the public op and compare its
outputs and gradients (to logits and tau) with autograd through the float64 reference."""
from __future__ import annotations

import torch

from ctrbench.kernels.entropy_fusion import entropy_weighted_fusion, entropy_weighted_fusion_reference

TOL = {torch.float32: dict(atol=2e-5, rtol=2e-5), torch.float64: dict(atol=1e-10, rtol=1e-9)}


def make_logits(B: int, K: int, dtype=torch.float64, seed: int = 0, scale: float = 4.0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(B, K, generator=gen, dtype=torch.float64) * scale).to(dtype)


def run_with_grads(fn, logits, tau, space, detach, seed=1):
    """(fused, weights, d logits, d tau) for loss = <gf, fused> + <gw, weights>; None grads become zeros."""
    gen = torch.Generator().manual_seed(seed)
    B, K = logits.shape
    gf = torch.randn(B, generator=gen, dtype=torch.float64).to(logits.device, logits.dtype)
    gw = torch.randn(B, K, generator=gen, dtype=torch.float64).to(logits.device, logits.dtype)
    x = logits.detach().clone().requires_grad_(True)
    t = tau.detach().clone().requires_grad_(True)
    fused, weights = fn(x, t, space, detach)
    outs, grads = [fused], [gf]
    if weights.requires_grad:
        outs.append(weights)
        grads.append(gw)
    if B == 0:
        return fused, weights, torch.zeros_like(x), torch.zeros_like(t)
    gx, gt = torch.autograd.grad(outs, [x, t], grads, allow_unused=True)
    return (fused.detach(), weights.detach(), gx if gx is not None else torch.zeros_like(x),
            gt if gt is not None else torch.zeros_like(t))


def check_backend(backend: str, logits: torch.Tensor, tau: float, space: str, detach: bool) -> None:
    """Backend vs reference (autograd), in the logits' dtype; tau's gradient compared relative to B."""
    dtype = logits.dtype
    t = torch.tensor(tau, dtype=dtype, device=logits.device)
    got = run_with_grads(lambda x, tt, s, d: entropy_weighted_fusion(x, tt, s, d, backend=backend), logits, t, space, detach)
    want = run_with_grads(lambda x, tt, s, d: entropy_weighted_fusion_reference(x.double(), tt.double(), s, d),
                          logits, t, space, detach)
    tol = TOL[dtype]
    names = ("fused", "weights", "grad_logits", "grad_tau")
    for name, g, w in zip(names, got, want):
        scale = max(1.0, logits.shape[0] ** 0.5) if name == "grad_tau" else 1.0
        torch.testing.assert_close(g.double(), w.double(), atol=tol["atol"] * 4 * scale, rtol=tol["rtol"] * 4,
                                   msg=lambda m, n=name: f"{backend} {n} ({space}, detach={detach}, tau={tau}): {m}")
