"""Correctness of every interleaved-attention backend on InterFormer shapes, against the float64 reference.

`verify(device)` returns one row per (backend, case): the largest absolute error of the output and of
dq, dk, dv (autograd of the float64 reference on the same, already rounded, inputs and upstream
gradient), the tolerance it was held to (atol + rtol * |reference|, per element) and ok. Lengths are
random in [0, T] and always include 0 and T. A backend that cannot run on the device gives a row with
ok=None and the reason. Triton under the CPU interpreter gets small cases (it runs ~1 ms per program).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from ctrbench.kernels.backend import backend_status
from ctrbench.kernels.interleaved_attention.op import interleaved_attention
from ctrbench.kernels.interleaved_attention.reference import interleaved_attention_reference

OP = "interleaved_attention"


@dataclass(frozen=True)
class Case:
    B: int
    H: int
    P: int  # prefix (CLS) tokens
    T: int  # sequence slots
    Dh: int
    rope: bool = True
    Nq: int | None = None  # separate queries (PMA seeds) when set
    dtype: torch.dtype = torch.float32

    @property
    def name(self) -> str:
        dt = str(self.dtype).replace("torch.", "")
        q = f" pma Nq={self.Nq}" if self.Nq is not None else ""
        return f"B={self.B} H={self.H} {self.P}+{self.T} Dh={self.Dh}{' rope' if self.rope else ''}{q} {dt}"


def cases(device: str, backend: str) -> list[Case]:
    if backend == "triton" and device == "cpu":  # the interpreter
        return [Case(8, 2, 4, 20, 16), Case(6, 2, 0, 12, 5, rope=False), Case(8, 2, 4, 20, 8, Nq=2)]
    if device == "cuda":
        return [
            Case(2048, 2, 4, 100, 32),
            Case(2048, 4, 4, 50, 16, dtype=torch.bfloat16),
            Case(1024, 8, 4, 100, 64, dtype=torch.float16),
            Case(2048, 2, 4, 100, 32, Nq=2),
            Case(512, 1, 0, 50, 24, rope=False),
            Case(256, 2, 4, 50, 32, dtype=torch.float64),
            Case(64, 2, 4, 400, 32),  # beyond the Triton backward's one key tile (MAX_BWD_KEYS)
        ]
    return [
        Case(256, 4, 4, 64, 32),
        Case(1024, 2, 4, 100, 32),
        Case(512, 8, 4, 50, 16),
        Case(256, 1, 4, 100, 64, rope=False),
        Case(1024, 2, 4, 100, 32, Nq=2),
        Case(256, 2, 0, 50, 24),  # no prefix: rows with length 0 have no keys
        Case(64, 2, 4, 50, 16, dtype=torch.float64),
    ]


def tolerance(dtype: torch.dtype, backend: str, device: str) -> tuple[float, float]:
    """(atol, rtol) for a backend's outputs (gradients get 4x). Triton and CUDA compute float64 inputs in
    float32, and Triton's products run in TF32 on the GPU."""
    tf32 = backend == "triton" and device == "cuda"
    if dtype == torch.float64 and backend in ("reference", "cpp"):
        return 1e-10, 1e-8
    if dtype == torch.bfloat16:
        return 3e-2, 3e-2
    if dtype == torch.float16:
        return 5e-3, 5e-3
    return (5e-3, 5e-3) if tf32 else (2e-5, 2e-5)


def inputs(case: Case, device: str, seed: int = 0):
    """q, k, v, lengths (random in [0, T], with 0 and T present), upstream gradient."""
    gen = torch.Generator().manual_seed(seed)
    Nk = case.P + case.T
    Nq = Nk if case.Nq is None else case.Nq
    q = torch.randn(case.B, case.H, Nq, case.Dh, generator=gen, dtype=torch.float64)
    k = torch.randn(case.B, case.H, Nk, case.Dh, generator=gen, dtype=torch.float64)
    v = torch.randn(case.B, case.H, Nk, case.Dh, generator=gen, dtype=torch.float64)
    lengths = torch.randint(0, case.T + 1, (case.B,), generator=gen)
    lengths[0] = 0
    lengths[-1] = case.T
    go = torch.randn(case.B, case.H, Nq, case.Dh, generator=gen, dtype=torch.float64)
    cast = lambda t: t.to(device=device, dtype=case.dtype)  # noqa: E731
    return cast(q), cast(k), cast(v), lengths.to(device), cast(go)


def _max_err(got: torch.Tensor, want: torch.Tensor, atol: float, rtol: float) -> tuple[float, bool]:
    got, want = got.detach().double(), want.detach().double()
    if got.numel() == 0:
        return 0.0, True
    if not torch.isfinite(got).all():
        return float("inf"), False
    diff = (got - want).abs()
    return float(diff.max()), bool((diff <= atol + rtol * want.abs()).all())


def run_case(case: Case, backend: str, device: str) -> dict:
    q, k, v, lengths, go = inputs(case, device)
    kw = dict(rope=case.rope, separate_queries=case.Nq is not None)
    leaves = [t.detach().clone().requires_grad_(True) for t in (q, k, v)]
    out = interleaved_attention(*leaves, lengths, case.P, backend=backend, **kw)
    grads = torch.autograd.grad(out, leaves, go)
    leaves64 = [t.detach().double().requires_grad_(True) for t in (q, k, v)]
    ref = interleaved_attention_reference(*leaves64, lengths, case.P, **kw)
    grads64 = torch.autograd.grad(ref, leaves64, go.double())
    atol, rtol = tolerance(case.dtype, backend, device)
    errs = {"out": _max_err(out, ref, atol, rtol)}
    for name, g, g64 in zip(("dq", "dk", "dv"), grads, grads64):
        errs[name] = _max_err(g, g64, 4 * atol, 4 * rtol)
    worst = max(errs, key=lambda n: errs[n][0])
    return {
        "max_abs_err": float(f"{errs[worst][0]:.3g}"),
        "worst": worst,
        "tol": f"{atol:g}+{rtol:g}|ref| (grads 4x)",
        "ok": all(ok for _, ok in errs.values()),
        "detail": ", ".join(f"{n}={e:.3g}" for n, (e, _) in errs.items()),
    }


def verify(device: str = "cpu") -> list[dict]:
    """One row per (backend, case) for tensors on `device`; see the module docstring."""
    rows = []
    for status in backend_status(device):
        if not status.available:
            rows.append({"op": OP, "backend": status.name, "case": "-", "ok": None, "max_abs_err": None,
                         "worst": None, "tol": None, "seconds": None, "detail": f"not run: {status.reason}"})
            continue
        todo = cases(device, status.name)
        if status.name == "reference":  # itself in fp32 vs fp64: the rounding floor, two cases suffice
            todo = [todo[0]] + [c for c in todo if c.dtype == torch.float64]
        for case in todo:
            t0 = time.perf_counter()
            try:
                result = run_case(case, status.name, device)
            except Exception as exc:  # a crash is a failed row, with its message
                result = {"max_abs_err": None, "worst": None, "tol": None, "ok": False,
                          "detail": f"{type(exc).__name__}: {exc}"}
            rows.append({"op": OP, "backend": status.name, "case": case.name, "ok": result["ok"],
                         "max_abs_err": result["max_abs_err"], "worst": result["worst"], "tol": result["tol"],
                         "seconds": round(time.perf_counter() - t0, 3), "detail": result["detail"]})
    return rows
