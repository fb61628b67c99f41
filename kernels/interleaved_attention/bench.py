"""Timings of interleaved attention at InterFormer shapes against SDPA with a key-padding mask + a RoPE pass.

`bench(device, quick)` returns one row per (shape, mode, impl): median / p20 / p80 milliseconds, the
speed-up over "sdpa_rope" (ratio_vs_sdpa_rope = its median / this median; > 1 is faster), GFLOP/s and
that as a fraction of a large fp32 matmul timed in the same run (TF32 on the GPU). Modes: "fwd" and
"fwd+bwd" (dq, dk, dv from a fixed upstream gradient). FLOPs are the dense-equivalent count every impl is
credited with, 4*B*H*Nq*Nk*Dh forward and 2.5x that backward, so GFLOP/s compare like with like;
valid_frac says which fraction of the (query, key) pairs is valid (the work a compacting kernel does).
Lengths are uniform in [0, T] (one row 0, one row T) unless the case says "full". load_avg is the
1-minute load average when the shape started (a busy shared machine inflates multi-threaded timings).

impls: sdpa_rope (RoPE at per-row positions, then scaled_dot_product_attention with a boolean key mask),
flex_rope (the same RoPE, then torch.compile'd FlexAttention with a mask_mod; its block mask is built
outside the timing; no backward on the CPU), reference (eager PyTorch definition), and every backend
available on the device except the Triton interpreter (a test tool, not a CPU backend).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from functools import partial
from typing import Callable

import torch
import torch.nn.functional as F

from ctrbench.kernels import bench_util
from ctrbench.kernels.backend import backend_status
from ctrbench.kernels.interleaved_attention.op import interleaved_attention
from ctrbench.kernels.interleaved_attention.reference import (
    apply_rope,
    default_scale,
    interleaved_attention_reference,
    key_valid_mask,
    rope_cos_sin,
    token_positions,
)

OP = "interleaved_attention"
BASELINE = "sdpa_rope"


@dataclass(frozen=True)
class Shape:
    B: int
    H: int
    P: int
    T: int
    Dh: int
    full: bool = False  # every row has all T tokens (no sparsity to exploit)

    @property
    def name(self) -> str:
        return f"B={self.B} H={self.H} {self.P}+{self.T} Dh={self.Dh}{' full' if self.full else ''}"


ANCHOR = Shape(256, 4, 4, 64, 32)  # the CPU anchor in specs/kernels.md (SDPA 16 ms forward)
CPU_SHAPES = (ANCHOR, Shape(256, 4, 4, 64, 32, full=True), Shape(2048, 2, 4, 100, 32), Shape(512, 8, 4, 50, 16),
              Shape(1024, 1, 4, 100, 64))
CUDA_SHAPES = (Shape(2048, 2, 4, 100, 32), Shape(2048, 2, 4, 100, 32, full=True), Shape(2048, 8, 4, 100, 64),
               Shape(2048, 4, 4, 50, 16), ANCHOR)


# bench_util.time_ms as this bench has always run it: at most 100 CPU calls, 50 ms of do_bench on CUDA
time_ms = partial(bench_util.time_ms, max_reps=100, cuda_rep_ms=50)


def matmul_peak_gflops(device: str) -> float:
    """GFLOP/s of a large fp32 matmul (TF32 allowed on CUDA): the practical compute limit of this run."""
    n = 8192 if device == "cuda" else 2048
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True
    try:
        p50, _, _ = time_ms(lambda: a @ b, device, min_reps=5, min_seconds=0.2)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old
    return 2 * n**3 / (p50 * 1e-3) / 1e9


def make_inputs(shape: Shape, device: str, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    N = shape.P + shape.T
    size = (shape.B, shape.H, N, shape.Dh)
    q, k, v, go = (torch.randn(size, generator=gen).to(device) for _ in range(4))
    if shape.full:
        lengths = torch.full((shape.B,), shape.T)
    else:
        lengths = torch.randint(0, shape.T + 1, (shape.B,), generator=gen)
        lengths[0], lengths[-1] = 0, shape.T
    return q, k, v, lengths.to(device), go


class RopeTables:
    """Per-position cos/sin cached once (as a model would); per call only the per-row gather runs."""

    def __init__(self, max_pos: int, head_dim: int, device: str):
        self.cos, self.sin = rope_cos_sin(torch.arange(max_pos, device=device), head_dim, 10000.0, torch.float32)

    def rotate(self, q, k, lengths, P):
        pos = token_positions(lengths, P, k.shape[2]).clamp_min(0)  # padded slots: masked, any position
        cos, sin = self.cos[pos], self.sin[pos]
        return apply_rope(q, cos, sin), apply_rope(k, cos, sin)


def _backends(device: str) -> list[str]:
    """The op's backends timed here: available ones, except reference (listed apart) and the interpreter."""
    return [s.name for s in backend_status(device)
            if s.available and s.name != "reference" and not (s.name == "triton" and device == "cpu")]


def impl_names(shape: Shape, device: str, quick: bool = False) -> list[str]:
    """The impls timed for `shape`: FlexAttention (a ~25 s compile on the CPU) and the eager reference only
    at the anchor shape on the CPU, everywhere on CUDA."""
    names = [BASELINE]
    if device == "cuda" or (shape == ANCHOR and not quick):
        names.append("flex_rope")
    if device == "cuda" or shape == ANCHOR:
        names.append("reference")
    return names + _backends(device)


def make_impl(name: str, shape: Shape, device: str, lengths, tables: RopeTables) -> tuple[Callable | None, str]:
    """(f(q, k, v) -> out, note) for one impl name of impl_names()."""
    P, N = shape.P, shape.P + shape.T
    scale = default_scale(shape.Dh)
    if name == BASELINE:
        mask = key_valid_mask(lengths, P, N)[:, None, None, :]

        def sdpa_rope(q, k, v):
            qr, kr = tables.rotate(q, k, lengths, P)
            return F.scaled_dot_product_attention(qr, kr, v, attn_mask=mask, scale=scale)

        return sdpa_rope, "RoPE gather+rotate, SDPA bool key mask"
    if name == "flex_rope":
        return _flex(shape, device, lengths, tables, scale)
    if name == "reference":
        return (lambda q, k, v: interleaved_attention_reference(q, k, v, lengths, P, True)), "eager PyTorch"
    note = "fused RoPE, masked rows compacted" if name in ("cpp", "cuda") else "fused RoPE"
    return (lambda q, k, v: interleaved_attention(q, k, v, lengths, P, rope=True, backend=name)), note


def _flex(shape: Shape, device: str, lengths, tables: RopeTables, scale: float) -> tuple[Callable, str]:
    try:
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention
    except ImportError as exc:
        return None, f"unavailable: {exc}"
    P, N = shape.P, shape.P + shape.T
    first = P + shape.T - lengths

    def mask_mod(b, h, q_idx, kv_idx):
        return (kv_idx < P) | (kv_idx >= first[b])

    t0 = time.perf_counter()
    block_mask = create_block_mask(mask_mod, shape.B, None, N, N, device=device)
    compiled = torch.compile(flex_attention, dynamic=False)

    def flex_rope(q, k, v):
        qr, kr = tables.rotate(q, k, lengths, P)
        return compiled(qr, kr, v, block_mask=block_mask, scale=scale)

    note = f"torch.compile'd; block mask built outside timing ({time.perf_counter() - t0:.1f} s)"
    if device == "cpu":
        note += "; no backward on CPU (FlexAttention raises NotImplementedError)"
    return flex_rope, note


def bench(device: str = "cpu", quick: bool = False) -> list[dict]:
    """Rows as described in the module docstring."""
    torch.manual_seed(0)
    peak = matmul_peak_gflops(device)
    shapes = (CUDA_SHAPES if device == "cuda" else CPU_SHAPES)[: 1 if quick else None]
    rows: list[dict] = []
    for shape in shapes:
        rows += _bench_shape(shape, device, quick, peak)
    return rows


def _bench_shape(shape: Shape, device: str, quick: bool, peak: float) -> list[dict]:
    q, k, v, lengths, go = make_inputs(shape, device)
    N = shape.P + shape.T
    tables = RopeTables(N, shape.Dh, device)
    valid = key_valid_mask(lengths, shape.P, N).sum(1).double()
    valid_frac = float((valid * valid).sum() / (shape.B * N * N))
    flops_fwd = 4.0 * shape.B * shape.H * N * N * shape.Dh
    leaves = [t.clone().requires_grad_(True) for t in (q, k, v)]
    timings: dict[tuple[str, str], tuple[float, float, float] | None] = {}
    notes: dict[str, str] = {}
    load_avg = round(os.getloadavg()[0], 1)  # other work on the machine skews wall-clock ratios: record it
    for name in impl_names(shape, device, quick):
        f, note = make_impl(name, shape, device, lengths, tables)
        notes[name] = note
        if f is None:
            timings[("fwd", name)] = timings[("fwd+bwd", name)] = None
            continue

        def fwd(f=f):
            with torch.no_grad():
                return f(q, k, v)

        def fwd_bwd(f=f):
            return torch.autograd.grad(f(*leaves), leaves, go)

        for mode, fn in (("fwd", fwd), ("fwd+bwd", fwd_bwd)):
            if name == "flex_rope" and mode == "fwd+bwd" and device == "cpu":
                timings[(mode, name)] = None
                continue
            try:
                timings[(mode, name)] = time_ms(fn, device)
            except Exception as exc:  # noqa: BLE001 - record why an impl could not run, keep the others
                timings[(mode, name)] = None
                notes[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
    rows = []
    for (mode, name), t in timings.items():
        base = timings.get((mode, BASELINE))
        flops = flops_fwd * (1.0 if mode == "fwd" else 3.5)
        row = {"op": OP, "device": device, "case": shape.name, "mode": mode, "impl": name,
               "ms_median": None, "ms_p20": None, "ms_p80": None, "ratio_vs_sdpa_rope": None, "gflops": None,
               "frac_of_peak": None}
        if t is not None:
            p50, p20, p80 = t
            gflops = flops / (p50 * 1e-3) / 1e9
            row.update(ms_median=round(p50, 3), ms_p20=round(p20, 3), ms_p80=round(p80, 3),
                       ratio_vs_sdpa_rope=round(base[0] / p50, 2) if base else None,
                       gflops=round(gflops, 1), frac_of_peak=round(gflops / peak, 3))
        row.update(peak_gflops=round(peak, 1), valid_frac=round(valid_frac, 3), threads=torch.get_num_threads(),
                   load_avg=load_avg,
                   note=notes.get(name, "") if t is not None else f"not timed: {notes.get(name, '')}")
        rows.append(row)
    return rows
