"""Timings of entropy-weighted fusion: every backend that runs here vs the eager and torch.compile'd reference.

`bench(device, quick)` returns one row per (mode, B, K, provider): median / p20 / p80 milliseconds, GB/s of
the bytes the op must move, that as a fraction of this machine's copy bandwidth (measured in the same run),
and the speed-up over the eager and the compiled reference. Modes: "fwd" and "fwd+bwd" (gradients to
logits and to a learnable tau, from a fixed upstream gradient of the fused output). On the CPU the process
keeps freed memory in its heap first (see steady_state_allocator).
"""
from __future__ import annotations

from typing import Callable

import torch

from ctrbench.kernels.backend import backend_status
from ctrbench.kernels.bench_util import copy_bandwidth_gbps, sig, steady_state_allocator, time_ms
from ctrbench.kernels.entropy_fusion.op import entropy_weighted_fusion
from ctrbench.kernels.entropy_fusion.reference import entropy_weighted_fusion_reference

OP = "entropy_fusion"
SIZES = (4096, 65536, 1 << 20)
MEMBERS = (2, 4, 8)
QUICK_SIZES = (4096, 1 << 20)
QUICK_MEMBERS = (4,)


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
            "ms_p50": sig(p50, 4), "ms_p20": sig(p20, 4), "ms_p80": sig(p80, 4),
            "GBps": sig(gbps, 3), "frac_of_copy": sig(gbps / copy_gbps, 3),
            "x_vs_eager": sig(timings[(mode, "eager")][0] / p50, 3),
            "x_vs_compiled": sig(compiled[0] / p50, 3) if compiled else None,
            "copy_GBps": sig(copy_gbps, 3), "threads": torch.get_num_threads(),
        })
    return rows
