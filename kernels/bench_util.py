"""Timing and machine-limit measurements shared by the ops' benches (kernels/*/bench.py).

Percentiles are (p50, p20, p80) milliseconds. On CUDA a call is timed by triton.testing.do_bench (L2 flushed
between calls); on the CPU by a wall-clock loop after warm-up calls.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import time
from typing import Callable

import torch

_QUANTILES = (0.5, 0.2, 0.8)


def sig(value: float, digits: int) -> float:
    """value rounded to `digits` significant digits (small and large timings both stay readable)."""
    return float(f"{value:.{digits}g}")


def _percentiles(times_ms: list[float]) -> tuple[float, float, float]:
    q = torch.tensor(times_ms, dtype=torch.float64).quantile(torch.tensor(_QUANTILES, dtype=torch.float64))
    return float(q[0]), float(q[1]), float(q[2])


def _do_bench(fn: Callable[[], object], rep_ms: int) -> tuple[float, float, float]:
    import triton.testing

    p50, p20, p80 = triton.testing.do_bench(fn, warmup=10, rep=rep_ms, quantiles=list(_QUANTILES))
    return float(p50), float(p20), float(p80)


def time_ms(fn: Callable[[], object], device: str, min_reps: int = 10, min_seconds: float = 0.25,
            max_reps: int = 200, cuda_rep_ms: int = 60) -> tuple[float, float, float]:
    """(p50, p20, p80) milliseconds of fn(): do_bench for `cuda_rep_ms` on CUDA, else a wall-clock loop after
    2 warm-up calls, at least `min_reps` calls and `min_seconds` (at most `max_reps` calls past min_reps)."""
    if device == "cuda":
        return _do_bench(fn, cuda_rep_ms)
    for _ in range(2):
        fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_reps or (time.perf_counter() - start < min_seconds and len(times) < max_reps):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return _percentiles(times)


def time_round_robin(fns: dict[str, Callable[[], object]], device: str, reps: int = 10,
                     warmup: int = 2) -> dict[str, tuple[float, float, float]]:
    """(p50, p20, p80) ms per fn. On the CPU the fns take turns (one call each per round), so a change in the
    machine's load during the run hits every impl alike; on CUDA each goes through time_ms (do_bench)."""
    if device == "cuda":
        return {k: time_ms(f, device) for k, f in fns.items()}
    for _ in range(warmup):
        for f in fns.values():
            f()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(reps):
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            times[k].append((time.perf_counter() - t0) * 1e3)
    return {k: _percentiles(v) for k, v in times.items()}


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


def copy_bandwidth_gbps(device: str, mbytes: int = 256) -> float:
    """Read + write bytes per second of a large tensor copy: this machine's practical memory bandwidth."""
    n = mbytes * (1 << 20) // 4
    src = torch.ones(n, device=device)
    dst = torch.empty_like(src)
    p50, _, _ = time_ms(lambda: dst.copy_(src), device, min_reps=5, min_seconds=0.2)
    return 2 * src.numel() * 4 / (p50 * 1e-3) / 1e9
