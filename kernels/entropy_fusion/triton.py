"""Triton kernels for entropy-weighted fusion: one program per block of rows, K padded to a power of two.

Math runs in fp32 (fp64 for fp64 inputs): bf16 arithmetic is wrong in the interpreter, so every load is
cast first. Only tl.exp / tl.log are used (the interpreter cannot run libdevice). The backward writes one
tau-gradient partial per program; the launcher sums them in a fixed order (deterministic).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ctrbench.kernels.entropy_fusion.reference import clamp_bound
from ctrbench.kernels.triton_device import check_launch

MAX_TILE = 2048  # elements per program (rows x padded K)


@triton.jit
def _member(x, bound):
    """Clamped logit, p, p(1-p), confidence c = -log(1+e) - e|x̂|/(1+e) with e = exp(-|x̂|)."""
    xh = tl.where(x < -bound, -bound, tl.where(x > bound, bound, x))  # NaN stays NaN
    a = tl.abs(xh)
    e = tl.exp(-a)
    r = 1.0 / (1.0 + e)
    er = e * r
    p = tl.where(xh >= 0, r, er)
    c = -tl.log(1.0 + e) - er * a
    return xh, p, er * r, c


@triton.jit
def _inverse_tau(tau_ptr, F64: tl.constexpr):
    if F64:
        t = tl.load(tau_ptr).to(tl.float64)
    else:
        t = tl.load(tau_ptr).to(tl.float32)
    return tl.where((t > 0) & (t < float("inf")), 1.0 / t, float("nan"))


@triton.jit
def _tile(B, K, BLOCK_B: tl.constexpr, BLOCK_K: tl.constexpr):
    """This program's rows, their and the columns' in-range masks, the [BLOCK_B, BLOCK_K] mask and offsets."""
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    cols = tl.arange(0, BLOCK_K)
    row_ok = rows < B
    col_ok = cols < K
    ok = row_ok[:, None] & col_ok[None, :]
    offs = rows.to(tl.int64)[:, None] * K + cols[None, :]
    return rows, row_ok, col_ok, ok, offs


@triton.jit
def _load(ptr, offs, mask, F64: tl.constexpr):
    """A masked load (0 where masked) cast to the math dtype: fp64 for fp64 inputs, else fp32."""
    if F64:
        return tl.load(ptr + offs, mask=mask, other=0.0).to(tl.float64)
    else:
        return tl.load(ptr + offs, mask=mask, other=0.0).to(tl.float32)


@triton.jit
def entropy_fusion_fwd_kernel(
    x_ptr, tau_ptr, fused_ptr, w_ptr, B, K, bound,
    LOGIT_SPACE: tl.constexpr, F64: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_K: tl.constexpr,
):
    rows, row_ok, col_ok, ok, offs = _tile(B, K, BLOCK_B, BLOCK_K)
    x = _load(x_ptr, offs, ok, F64)
    inv_tau = _inverse_tau(tau_ptr, F64)
    xh, p, pq, c = _member(x, bound)
    z = tl.where(col_ok[None, :], c * inv_tau, float("-inf"))
    zmax = tl.max(z, axis=1)
    ez = tl.exp(z - zmax[:, None])
    w = ez / tl.sum(ez, axis=1)[:, None]
    if LOGIT_SPACE:
        v = xh
    else:
        v = p
    fused = tl.sum(tl.where(col_ok[None, :], w * v, 0.0), axis=1)
    tl.store(w_ptr + offs, w.to(w_ptr.dtype.element_ty), mask=ok)
    tl.store(fused_ptr + rows, fused.to(fused_ptr.dtype.element_ty), mask=row_ok)


@triton.jit
def entropy_fusion_bwd_kernel(
    x_ptr, tau_ptr, w_ptr, gf_ptr, gw_ptr, gx_ptr, partial_ptr, B, K, bound,
    LOGIT_SPACE: tl.constexpr, DETACH: tl.constexpr, HAS_GW: tl.constexpr, NEED_TAU: tl.constexpr,
    F64: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_K: tl.constexpr,
):
    pid = tl.program_id(0)
    rows, row_ok, col_ok, ok, offs = _tile(B, K, BLOCK_B, BLOCK_K)
    x = _load(x_ptr, offs, ok, F64)
    w = _load(w_ptr, offs, ok, F64)
    gf = _load(gf_ptr, rows, row_ok, F64)
    inv_tau = _inverse_tau(tau_ptr, F64)
    xh, p, pq, c = _member(x, bound)
    inside = (x >= -bound) & (x <= bound)  # torch.clamp passes the gradient on the bounds
    if LOGIT_SPACE:
        v = xh
        dv = tl.where(inside, 1.0, 0.0)
    else:
        v = p
        dv = tl.where(inside, pq, 0.0)
    gx = gf[:, None] * w * dv
    if not DETACH:
        g = gf[:, None] * v
        if HAS_GW:
            g += tl.load(gw_ptr + offs, mask=ok, other=0.0).to(g.dtype)
        gbar = tl.sum(w * g, axis=1)
        dz = w * (g - gbar[:, None])  # 0 in padded columns (w = 0 there)
        gx += tl.where(inside, dz * inv_tau * xh * pq, 0.0)
        if NEED_TAU:
            partial = -tl.sum(tl.sum(dz * c, axis=1), axis=0) * inv_tau * inv_tau
            tl.store(partial_ptr + pid, partial.to(partial_ptr.dtype.element_ty))
    tl.store(gx_ptr + offs, gx.to(gx_ptr.dtype.element_ty), mask=ok)


def _blocks(B: int, K: int) -> tuple[int, int]:
    block_k = triton.next_power_of_2(K)
    block_b = max(1, min(MAX_TILE // block_k, triton.next_power_of_2(max(B, 1))))
    return block_b, block_k


def _math_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def forward(logits: torch.Tensor, tau: torch.Tensor, space: str, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(fused [B], weights [B, K]) in logits' dtype; one kernel launch."""
    check_launch("entropy_weighted_fusion (triton forward)", entropy_fusion_fwd_kernel, logits=logits, tau=tau)
    x = logits.contiguous()
    B, K = x.shape
    fused = x.new_empty(B)
    w = torch.empty_like(x)
    if B == 0:
        return fused, w
    block_b, block_k = _blocks(B, K)
    tau_m = tau.to(_math_dtype(x.dtype))
    entropy_fusion_fwd_kernel[(triton.cdiv(B, block_b),)](
        x, tau_m, fused, w, B, K, clamp_bound(eps),
        LOGIT_SPACE=space == "logit", F64=x.dtype == torch.float64, BLOCK_B=block_b, BLOCK_K=block_k,
    )
    return fused, w


def backward(
    logits: torch.Tensor, tau: torch.Tensor, weights: torch.Tensor, grad_fused: torch.Tensor,
    grad_weights: torch.Tensor | None, space: str, detach_weights: bool, eps: float, need_tau_grad: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(grad_logits [B, K], grad_tau 0-d): one kernel launch, plus a sum of per-program partials for tau."""
    check_launch("entropy_weighted_fusion (triton backward)", entropy_fusion_bwd_kernel, logits=logits, tau=tau,
                 weights=weights, grad_fused=grad_fused, grad_weights=grad_weights)
    x = logits.contiguous()
    B, K = x.shape
    gx = torch.empty_like(x)
    need_tau = need_tau_grad and not detach_weights and B > 0
    if B == 0:
        return gx, torch.zeros((), dtype=tau.dtype, device=tau.device)
    block_b, block_k = _blocks(B, K)
    grid = triton.cdiv(B, block_b)
    math_dtype = _math_dtype(x.dtype)
    partials = torch.empty(grid if need_tau else 1, dtype=math_dtype, device=x.device)
    has_gw = grad_weights is not None and not detach_weights
    gw = grad_weights.to(x.dtype).contiguous() if has_gw else x  # x: an unread placeholder pointer
    entropy_fusion_bwd_kernel[(grid,)](
        x, tau.to(math_dtype), weights.to(x.dtype).contiguous(), grad_fused.to(x.dtype).contiguous(), gw, gx,
        partials, B, K, clamp_bound(eps),
        LOGIT_SPACE=space == "logit", DETACH=detach_weights, HAS_GW=has_gw, NEED_TAU=need_tau,
        F64=x.dtype == torch.float64, BLOCK_B=block_b, BLOCK_K=block_k,
    )
    grad_tau = partials.sum().to(tau.dtype) if need_tau else torch.zeros((), dtype=tau.dtype, device=tau.device)
    return gx, grad_tau


def _aot_specs() -> list[tuple]:
    """Representative (kernel, signature, constexprs) sets compiled ahead of time for sm_90 in the tests."""
    def fwd(ptr, logit, block_k):
        sig = {"x_ptr": ptr, "tau_ptr": "*fp32", "fused_ptr": ptr, "w_ptr": ptr, "B": "i32", "K": "i32",
               "bound": "fp32", "LOGIT_SPACE": "constexpr", "F64": "constexpr", "BLOCK_B": "constexpr",
               "BLOCK_K": "constexpr"}
        cx = {"LOGIT_SPACE": logit, "F64": False, "BLOCK_B": MAX_TILE // block_k, "BLOCK_K": block_k}
        return entropy_fusion_fwd_kernel, sig, cx

    def bwd(ptr, detach, has_gw, need_tau, block_k):
        sig = {"x_ptr": ptr, "tau_ptr": "*fp32", "w_ptr": ptr, "gf_ptr": ptr, "gw_ptr": ptr, "gx_ptr": ptr,
               "partial_ptr": "*fp32", "B": "i32", "K": "i32", "bound": "fp32", "LOGIT_SPACE": "constexpr",
               "DETACH": "constexpr", "HAS_GW": "constexpr", "NEED_TAU": "constexpr", "F64": "constexpr",
               "BLOCK_B": "constexpr", "BLOCK_K": "constexpr"}
        cx = {"LOGIT_SPACE": False, "DETACH": detach, "HAS_GW": has_gw, "NEED_TAU": need_tau, "F64": False,
              "BLOCK_B": MAX_TILE // block_k, "BLOCK_K": block_k}
        return entropy_fusion_bwd_kernel, sig, cx

    return [
        fwd("*fp32", False, 4),
        fwd("*bf16", True, 8),
        bwd("*fp32", False, True, True, 4),
        bwd("*fp16", True, False, False, 2),
    ]


AOT_SPECS = _aot_specs()
