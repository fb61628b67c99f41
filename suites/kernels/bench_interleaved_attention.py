"""pytest-benchmark suite for interleaved_attention (run: pytest suites/kernels/bench_interleaved_attention.py).

Same shapes and impls as `ctrbench kernels bench` (ctrbench.kernels.interleaved_attention.bench): InterFormer
shapes (batch 256-2048, 1-8 heads, 4 CLS + 50/64/100 tokens, head dim 16-64, random lengths), forward and
forward+backward, every backend available here against SDPA with a boolean key mask plus a RoPE pass
("sdpa_rope"), FlexAttention and the eager reference. extra_info carries ratio_vs_sdpa_rope (the baseline's
median over this impl's; > 1 is faster). Compare with `--benchmark-group-by=group`.
"""
from __future__ import annotations

import pytest
import torch

from ctrbench.kernels.interleaved_attention.bench import (
    BASELINE,
    CPU_SHAPES,
    CUDA_SHAPES,
    RopeTables,
    impl_names,
    make_impl,
    make_inputs,
    time_ms,
)

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
SHAPES = CUDA_SHAPES if DEVICE == "cuda" else CPU_SHAPES
PARAMS = [(shape, mode, impl) for shape in SHAPES for mode in ("fwd", "fwd+bwd") for impl in impl_names(shape, DEVICE)
          if not (impl == "flex_rope" and mode == "fwd+bwd" and DEVICE == "cpu")]  # no FlexAttention backward on CPU
_INPUTS: dict = {}
_BASELINE_MS: dict = {}


def _sync():
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def _inputs(shape):
    if shape not in _INPUTS:
        q, k, v, lengths, go = make_inputs(shape, DEVICE)
        _INPUTS[shape] = (q, k, v, lengths, go, RopeTables(shape.P + shape.T, shape.Dh, DEVICE))
    return _INPUTS[shape]


def _runner(shape, mode, impl):
    q, k, v, lengths, go, tables = _inputs(shape)
    f, note = make_impl(impl, shape, DEVICE, lengths, tables)
    if mode == "fwd":
        def run():
            with torch.no_grad():
                out = f(q, k, v)
            _sync()
            return out
    else:
        leaves = [t.clone().requires_grad_(True) for t in (q, k, v)]

        def run():
            grads = torch.autograd.grad(f(*leaves), leaves, go)
            _sync()
            return grads
    return run, note


@pytest.mark.parametrize("shape,mode,impl", PARAMS, ids=[f"{s.name}-{m}-{i}" for s, m, i in PARAMS])
def test_interleaved_attention(benchmark, shape, mode, impl):
    if (shape, mode) not in _BASELINE_MS:
        _BASELINE_MS[(shape, mode)] = time_ms(_runner(shape, mode, BASELINE)[0], DEVICE)[0]
    run, note = _runner(shape, mode, impl)
    benchmark.group = f"{shape.name} {mode}"
    result = benchmark.pedantic(run, rounds=10, iterations=1, warmup_rounds=2)
    assert result is not None
    median_ms = benchmark.stats.stats.median * 1e3
    benchmark.extra_info.update(device=DEVICE, threads=torch.get_num_threads(), note=note,
                                ratio_vs_sdpa_rope=round(_BASELINE_MS[(shape, mode)] / median_ms, 3))
