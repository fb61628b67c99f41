"""Correctness of every embedding_bag_collection backend on realistic shapes, against a float64 reference.

`verify(device)` returns one row per (backend, case, check): check is "fwd" (pooled output), "grad" (row-wise
sparse gradient: same rows, summed values), "sgd" and "rowwise_adagrad" (weights and momentum after two
fused steps). max_abs_err is compared with tol = atol + rtol * max|ref|; ok is None (with the reason) for a
backend that cannot run on this device. On the CPU the Triton interpreter (TRITON_INTERPRET=1) gets the
small cases only: it runs about 1 ms per program.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from ctrbench.kernels.backend import backend_status
from ctrbench.kernels.embedding_bag import op as ebc_op
from ctrbench.kernels.embedding_bag import reference as ref

OP = "embedding_bag"

TOLERANCES = {torch.float32: (1e-5, 1e-5), torch.float64: (1e-10, 1e-10), torch.bfloat16: (2e-2, 2e-2),
              torch.float16: (4e-3, 4e-3)}


@dataclass(frozen=True)
class Case:
    T: int
    E: int
    D: int
    B: int
    L: int
    dtype: torch.dtype = torch.float32
    pooling: str = "sum"
    psw: bool = False
    zipf: bool = False
    idx32: bool = False
    small: bool = False  # also run under the Triton interpreter

    @property
    def name(self) -> str:
        dt = str(self.dtype).replace("torch.", "")
        extra = [self.pooling] + (["psw"] if self.psw else []) + (["zipf"] if self.zipf else []) + \
            (["int32"] if self.idx32 else [])
        return f"T={self.T} E={self.E} D={self.D} B={self.B} L={self.L} {dt} {' '.join(extra)}"


def cases(device: str) -> list[Case]:
    if device == "cuda":
        return [
            Case(26, 100_000, 64, 4096, 20),
            Case(26, 100_000, 64, 4096, 1, zipf=True, idx32=True),
            Case(26, 100_000, 128, 2048, 20, pooling="mean", psw=True, zipf=True),
            Case(26, 10_000, 16, 4096, 20, psw=True),
            Case(26, 100_000, 64, 4096, 20, dtype=torch.bfloat16, zipf=True),
            Case(8, 50_000, 128, 1024, 20, dtype=torch.float16, pooling="mean"),
            Case(4, 1000, 5, 64, 7, pooling="mean", psw=True, small=True),
        ]
    return [
        Case(26, 100_000, 16, 1024, 20),
        Case(26, 20_000, 64, 2048, 1, idx32=True),
        Case(26, 20_000, 64, 1024, 20, zipf=True, psw=True),
        Case(8, 20_000, 128, 512, 20, pooling="mean", psw=True, zipf=True),
        Case(4, 1000, 5, 16, 7, pooling="mean", psw=True, small=True),
        Case(3, 50, 8, 8, 3, small=True, idx32=True),
    ]


def make_inputs(c: Case, device: str, seed: int = 0):
    """Packed weights, table offsets, ids (uniform or Zipf(1.0) over a random row order) and offsets."""
    g = torch.Generator().manual_seed(seed)
    to = torch.arange(c.T + 1, dtype=torch.int64) * c.E
    w = (torch.rand(c.T * c.E, c.D, generator=g) * 2 - 1) * (1.0 / c.E) ** 0.5 * 10
    lengths = torch.randint(max(0, c.L - 3), c.L + 4, (c.T * c.B,), generator=g) if c.L > 1 else \
        torch.ones(c.T * c.B, dtype=torch.int64)
    nnz = int(lengths.sum())
    if c.zipf:
        probs = 1.0 / torch.arange(1, c.E + 1, dtype=torch.float64)
        ranks = torch.multinomial(probs, nnz, replacement=True, generator=g)
        idx = torch.randperm(c.E, generator=g)[ranks]
    else:
        idx = torch.randint(0, c.E, (nnz,), generator=g)
    offs = torch.cat([torch.zeros(1, dtype=torch.int64), lengths.cumsum(0)])
    psw = torch.rand(nnz, generator=g) if c.psw else None
    grad = torch.randn(c.B, c.T * c.D, generator=g)
    idx = idx.to(torch.int32 if c.idx32 else torch.int64)
    dev = torch.device(device)
    return (w.to(dev, c.dtype), to.to(dev), idx.to(dev), offs.to(dev, idx.dtype), None if psw is None else psw.to(dev),
            grad.to(dev, c.dtype))


def _err(got: torch.Tensor, want: torch.Tensor, dtype: torch.dtype) -> tuple[float, float]:
    atol, rtol = TOLERANCES[dtype]
    err = (got.double() - want.double()).abs().max().item() if got.numel() else 0.0
    scale = want.double().abs().max().item() if want.numel() else 0.0
    return err, atol + rtol * scale


def _check_case(c: Case, backend: str, device: str) -> list[dict]:
    w, to, idx, offs, psw, grad = make_inputs(c, device)
    w64, g64 = w.double(), grad.double()
    psw64 = None if psw is None else psw.double()
    rows = []

    def row(check, err_tol, detail=""):
        err, tol = err_tol
        rows.append({"op": OP, "backend": backend, "case": c.name, "check": check, "max_abs_err": float(f"{err:.3g}"),
                     "tol": float(f"{tol:.3g}"), "ok": bool(err <= tol), "detail": detail})

    t0 = time.perf_counter()
    out = ebc_op.embedding_bag_collection(w, to, idx, offs, psw, pooling=c.pooling, backend=backend)
    want = ref.forward(w64, to, idx, offs, psw64, c.pooling)
    row("fwd", _err(out, want, c.dtype), f"{(time.perf_counter() - t0) * 1e3:.0f} ms")
    r, gv = ebc_op.grad_rows(grad, to, idx, offs, psw, pooling=c.pooling, backend=backend)
    r64, gv64 = ref.grad_rows(g64, to, idx, offs, psw64, c.pooling)
    same_rows = torch.equal(r.cpu(), r64.cpu())
    if same_rows:
        row("grad", _err(gv, gv64, c.dtype), f"{r64.numel()} unique rows")
    else:
        rows.append({"op": OP, "backend": backend, "case": c.name, "check": "grad", "max_abs_err": None, "tol": None,
                     "ok": False, "detail": f"unique rows differ: {r.numel()} vs {r64.numel()} expected"})
    for opt in ("sgd", "rowwise_adagrad"):
        w1, w2 = w.clone(), w64.clone()
        m1 = torch.zeros(w.shape[0], device=w.device, dtype=torch.float32)
        m2 = torch.zeros(w.shape[0], device=w.device, dtype=torch.float64)
        for step in range(2):
            gs = grad * (1 + step)
            ebc_op.fused_update_(w1, m1, gs, to, idx, offs, psw, pooling=c.pooling, optimizer=opt, lr=0.05, eps=1e-6,
                                 backend=backend)
            ref.fused_update_(w2, m2, gs.double(), to, idx, offs, psw64, c.pooling, None, opt, 0.05, 1e-6)
        err_w, tol_w = _err(w1, w2, c.dtype)
        err_m, tol_m = _err(m1, m2, torch.float32) if opt == "rowwise_adagrad" else (0.0, 1.0)
        ok_pair = (err_w / tol_w, err_m / tol_m)
        worst = (err_w, tol_w) if ok_pair[0] >= ok_pair[1] else (err_m, tol_m)
        row(opt, worst, f"weights err {err_w:.2g}" + (f", momentum err {err_m:.2g}" if opt != "sgd" else ""))
    return rows


def verify(device: str = "cpu") -> list[dict]:
    """Rows as described in the module docstring."""
    rows: list[dict] = []
    status = {s.name: s for s in backend_status(device)}
    for backend in ("reference", "cpp", "cuda", "triton"):
        s = status[backend]
        if not s.available:
            rows.append({"op": OP, "backend": backend, "case": "all", "check": "-", "max_abs_err": None, "tol": None,
                         "ok": None, "detail": s.reason})
            continue
        interpreted = backend == "triton" and device == "cpu"
        for c in cases(device):
            if interpreted and not c.small:
                continue
            if c.dtype in (torch.bfloat16, torch.float16) and backend in ("cpp", "reference"):
                continue
            try:
                rows += _check_case(c, backend, device)
            except Exception as exc:  # a crash is a failed check, reported with its message
                rows.append({"op": OP, "backend": backend, "case": c.name, "check": "run", "max_abs_err": None,
                             "tol": None, "ok": False, "detail": f"{type(exc).__name__}: {exc}"[:300]})
    return rows
