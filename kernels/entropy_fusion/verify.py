"""Correctness of every entropy-fusion backend on realistic shapes, against the float64 reference.

`verify(device)` returns one row per (backend, case): forward (fused, weights) and gradient (logits, tau)
errors as a ratio err / (atol + rtol |ref|) — ok when every ratio is <= 1. A backend that cannot run on the
device gives a row with ok=None and the reason.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from ctrbench.kernels.backend import backend_status
from ctrbench.kernels.entropy_fusion.op import entropy_weighted_fusion
from ctrbench.kernels.entropy_fusion.reference import entropy_weighted_fusion_reference

OP = "entropy_fusion"

# (atol, rtol) per input dtype; fp32 outputs go through exp/log and a K-term softmax.
TOLERANCES = {
    torch.float64: (1e-10, 1e-8),
    torch.float32: (2e-5, 2e-5),
    torch.bfloat16: (2e-2, 2e-2),
    torch.float16: (4e-3, 4e-3),
}


@dataclass(frozen=True)
class Case:
    B: int
    K: int
    space: str
    detach: bool
    dtype: torch.dtype
    tau: float
    extreme: bool = False  # mix in ±inf and ±1e4 logits

    @property
    def name(self) -> str:
        dt = str(self.dtype).replace("torch.", "")
        tail = " extreme" if self.extreme else ""
        return f"B={self.B} K={self.K} {self.space} {'detach ' if self.detach else ''}tau={self.tau} {dt}{tail}"


def cases(device: str) -> list[Case]:
    if device == "cuda":
        return [
            Case(1 << 20, 4, "prob", False, torch.float32, 1.0),
            Case(65536, 8, "logit", False, torch.float32, 0.25),
            Case(65536, 4, "prob", False, torch.bfloat16, 0.5),
            Case(65536, 2, "logit", True, torch.float16, 2.0),
            Case(4096, 3, "prob", False, torch.float64, 0.7),
            Case(4096, 5, "logit", False, torch.float32, 0.5, extreme=True),
        ]
    return [
        Case(65536, 4, "prob", False, torch.float32, 1.0),
        Case(4096, 8, "logit", False, torch.float32, 0.25),
        Case(4096, 2, "prob", True, torch.float32, 2.0),
        Case(1024, 3, "logit", False, torch.float64, 0.7),
        Case(1024, 5, "prob", False, torch.float32, 0.5, extreme=True),
    ]


def _inputs(case: Case, device: str, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(case.B, case.K, generator=gen, dtype=torch.float64) * 4.0
    if case.extreme:
        x.view(-1)[0::7] = float("inf")
        x.view(-1)[3::11] = float("-inf")
        x.view(-1)[5::13] = 1e4
        x.view(-1)[6::17] = -1e4
    gf = torch.randn(case.B, generator=gen, dtype=torch.float64)
    gw = torch.randn(case.B, case.K, generator=gen, dtype=torch.float64)
    cast = lambda t: t.to(device=device, dtype=case.dtype)  # noqa: E731
    return cast(x), cast(gf), cast(gw)


def _err_ratio(got: torch.Tensor, want: torch.Tensor, atol: float, rtol: float) -> float:
    got, want = got.detach().double(), want.detach().double()
    if not torch.isfinite(got).all():
        return float("inf")
    return float(((got - want).abs() / (atol + rtol * want.abs())).max()) if got.numel() else 0.0


def _run(case: Case, backend: str, device: str) -> dict:
    x, gf, gw = _inputs(case, device)
    math_dtype = torch.float64 if case.dtype == torch.float64 else torch.float32
    tau = torch.tensor(case.tau, dtype=math_dtype, device=device, requires_grad=True)
    xr = x.detach().clone().requires_grad_(True)
    fused, weights = entropy_weighted_fusion(xr, tau, case.space, case.detach, backend=backend)
    outs, grads = [fused], [gf]
    if weights.requires_grad:
        outs.append(weights)
        grads.append(gw)
    gx, gt = torch.autograd.grad(outs, [xr, tau], grads, allow_unused=True)

    # float64 reference on the same (already rounded) inputs
    x64 = x.detach().double().requires_grad_(True)
    t64 = torch.tensor(case.tau, dtype=torch.float64, device=device, requires_grad=True)
    f64, w64 = entropy_weighted_fusion_reference(x64, t64, case.space, case.detach)
    outs64, grads64 = [f64], [gf.double()]
    if w64.requires_grad:
        outs64.append(w64)
        grads64.append(gw.double())
    gx64, gt64 = torch.autograd.grad(outs64, [x64, t64], grads64, allow_unused=True)

    atol, rtol = TOLERANCES[case.dtype]
    zero = torch.zeros((), dtype=torch.float64, device=device)
    ratios = {
        "fused": _err_ratio(fused, f64, atol, rtol),
        "weights": _err_ratio(weights, w64, atol, rtol),
        "grad_logits": _err_ratio(gx, gx64, atol * 4, rtol * 4),
        # tau's gradient sums B terms: compare relative to their magnitude
        "grad_tau": _err_ratio(gt if gt is not None else zero, gt64 if gt64 is not None else zero,
                               atol * 4 * max(1.0, case.B ** 0.5), rtol * 4),
    }
    sums = weights.double().sum(dim=1)
    ratios["weights_sum"] = _err_ratio(sums, torch.ones_like(sums), atol, rtol)
    worst = max(ratios, key=ratios.get)
    return {
        "max_err_ratio": float(f"{ratios[worst]:.3g}"),
        "worst": worst,
        "ok": all(r <= 1.0 for r in ratios.values()),
        "detail": ", ".join(f"{k}={v:.3g}" for k, v in ratios.items()),
    }


def verify(device: str = "cpu") -> list[dict]:
    """One row per (backend, case) for tensors on `device`; see the module docstring."""
    rows = []
    for status in backend_status(device):
        if status.name == "reference":
            continue  # the float64 reference is what the others are measured against
        if not status.available:
            rows.append({"op": OP, "backend": status.name, "case": "-", "ok": None, "max_err_ratio": None,
                         "worst": None, "seconds": None, "detail": f"not run: {status.reason}"})
            continue
        for case in cases(device):
            t0 = time.perf_counter()
            try:
                result = _run(case, status.name, device)
            except Exception as exc:  # a crash is a failed row, with its message
                result = {"max_err_ratio": None, "worst": None, "ok": False, "detail": f"{type(exc).__name__}: {exc}"}
            rows.append({"op": OP, "backend": status.name, "case": case.name, "ok": result["ok"],
                         "max_err_ratio": result["max_err_ratio"], "worst": result["worst"],
                         "seconds": round(time.perf_counter() - t0, 3), "detail": result["detail"]})
    return rows
