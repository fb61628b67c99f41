"""Timings of entropy-weighted fusion: every backend that runs here vs the eager and torch.compile'd reference.

`bench(device, quick)` returns one row per (mode, B, K, provider): median / p20 / p80 milliseconds, GB/s of
the bytes the op must move, that as a fraction of this machine's copy bandwidth (measured in the same run),
and the speed-up over the eager and the compiled reference. Modes: "fwd" and "fwd+bwd" (gradients to
logits and to a learnable tau, from a fixed upstream gradient of the fused output). On the CPU the process
keeps freed memory in its heap first (see steady_state_allocator).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import time
from typing import Callable

import torch

from ctrbench.kernels.backend import backend_status
from ctrbench.kernels.entropy_fusion.op import entropy_weighted_fusion
from ctrbench.kernels.entropy_fusion.reference import entropy_weighted_fusion_reference

OP = "entropy_fusion"
SIZES = (4096, 65536, 1 << 20)
MEMBERS = (2, 4, 8)
QUICK_SIZES = (4096, 1 << 20)
QUICK_MEMBERS = (4,)


def steady_state_allocator() -> bool:
    """Keep freed memory in glibc's heap (no mmap for big blocks, no trimming), as a long-running training
    process reaches anyway. Otherwise every timed call of every provider re-faults its output pages from
    the OS, which on this VM costs ~10 us per 4 KB page (~50 ms for 20 MB) and swamps the kernels.
    Process-wide; returns False where glibc's mallopt is not available."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        mallopt = libc.mallopt if libc is not None else None
    except (OSError, AttributeError):
        return False
    if mallopt is None:
        return False
    m_trim_threshold, m_mmap_max = -1, -4
    return bool(mallopt(m_mmap_max, 0)) and bool(mallopt(m_trim_threshold, 2**31 - 1))


def _sig(value: float, digits: int) -> float:
    """value rounded to `digits` significant digits (small and large timings both stay readable)."""
    return float(f"{value:.{digits}g}")


def time_ms(fn: Callable[[], object], device: str, min_reps: int = 10, min_seconds: float = 0.25) -> tuple[float, float, float]:
    """(p50, p20, p80) milliseconds of fn(): triton.testing.do_bench on CUDA (L2 flushed between calls),
    else a wall-clock loop after 2 warm-up calls, at least `min_reps` calls and `min_seconds`."""
    if device == "cuda":
        import triton.testing

        p50, p20, p80 = triton.testing.do_bench(fn, warmup=10, rep=60, quantiles=[0.5, 0.2, 0.8])
        return float(p50), float(p20), float(p80)
    for _ in range(2):
        fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_reps or (time.perf_counter() - start < min_seconds and len(times) < 200):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    q = torch.tensor(times).quantile(torch.tensor([0.5, 0.2, 0.8], dtype=torch.float64).float())
    return float(q[0]), float(q[1]), float(q[2])


def copy_bandwidth_gbps(device: str, mbytes: int = 256) -> float:
    """Read + write bytes per second of a large tensor copy: this machine's practical memory bandwidth."""
    n = mbytes * (1 << 20) // 4
    src = torch.ones(n, device=device)
    dst = torch.empty_like(src)
    p50, _, _ = time_ms(lambda: dst.copy_(src), device, min_reps=5, min_seconds=0.2)
    return 2 * src.numel() * 4 / (p50 * 1e-3) / 1e9


def _bytes(B: int, K: int, mode: str, elem: int = 4) -> int:
    fwd = (2 * B * K + B) * elem  # read logits, write weights and fused
    bwd = (3 * B * K + B) * elem  # read logits, weights, grad_fused; write grad_logits
    return fwd if mode == "fwd" else fwd + bwd


def providers(device: str) -> dict[str, Callable]:
    """name -> f(logits, tau) -> (fused, weights). On the CPU the reference also runs under torch.compile
    (batch dimension dynamic: one compile per K and mode); on CUDA only eager is compared, to keep the GPU
    run short. Interpreted Triton is not timed (it is a test tool, not a CPU backend)."""
    out: dict[str, Callable] = {"eager": entropy_weighted_fusion_reference}
    if device == "cpu":
        out["compiled"] = torch.compile(entropy_weighted_fusion_reference, dynamic=False)
    for s in backend_status(device):
        if s.available and s.name != "reference" and not (s.name == "triton" and device == "cpu"):
            out[s.name] = lambda x, t, _b=s.name: entropy_weighted_fusion(x, t, backend=_b)
    return out


def bench(device: str = "cpu", quick: bool = False) -> list[dict]:
    """Rows as described in the module docstring."""
    torch.manual_seed(0)
    if device == "cpu":
        steady_state_allocator()
    copy_gbps = copy_bandwidth_gbps(device)
    funcs = providers(device)
    sizes, members = (QUICK_SIZES, QUICK_MEMBERS) if quick else (SIZES, MEMBERS)
    rows = []
    with torch._dynamo.config.patch(recompile_limit=64):
        for K in members:
            for B in sizes:
                rows += _bench_shape(device, funcs, B, K, copy_gbps)
    return rows


def _bench_shape(device: str, funcs: dict[str, Callable], B: int, K: int, copy_gbps: float) -> list[dict]:
    x = torch.randn(B, K, device=device) * 3.0
    tau = torch.tensor(0.5, device=device, requires_grad=True)
    gf = torch.randn(B, device=device)
    xg = x.clone().requires_grad_(True)
    torch._dynamo.mark_dynamic(x, 0)
    torch._dynamo.mark_dynamic(xg, 0)
    timings: dict[tuple[str, str], tuple[float, float, float]] = {}
    for name, f in funcs.items():
        def fwd(f=f):
            with torch.no_grad():
                return f(x, tau)

        def fwd_bwd(f=f):
            fused, _ = f(xg, tau)
            return torch.autograd.grad(fused, (xg, tau), gf)

        timings[("fwd", name)] = time_ms(fwd, device)
        timings[("fwd+bwd", name)] = time_ms(fwd_bwd, device)
    rows = []
    for (mode, name), (p50, p20, p80) in timings.items():
        gbps = _bytes(B, K, mode) / (p50 * 1e-3) / 1e9
        compiled = timings.get((mode, "compiled"))
        rows.append({
            "op": OP, "device": device, "mode": mode, "B": B, "K": K, "provider": name,
            "ms_p50": _sig(p50, 4), "ms_p20": _sig(p20, 4), "ms_p80": _sig(p80, 4),
            "GBps": _sig(gbps, 3), "frac_of_copy": _sig(gbps / copy_gbps, 3),
            "x_vs_eager": _sig(timings[(mode, "eager")][0] / p50, 3),
            "x_vs_compiled": _sig(compiled[0] / p50, 3) if compiled else None,
            "copy_GBps": _sig(copy_gbps, 3), "threads": torch.get_num_threads(),
        })
    return rows
