"""Shared inputs and checks for the interleaved_attention tests (plain and under the Triton interpreter)."""
from __future__ import annotations

import torch
from hypothesis import strategies as st

from ctrbench.kernels.interleaved_attention import interleaved_attention, interleaved_attention_reference


def make_inputs(B, H, P, T, Dh, Nq=None, dtype=torch.float32, seed=0, lengths=None):
    """q, k, v, lengths, upstream gradient; Nq set = separate queries. Lengths random in [0, T]."""
    gen = torch.Generator().manual_seed(seed)
    Nk = P + T
    nq = Nk if Nq is None else Nq
    q = torch.randn(B, H, nq, Dh, generator=gen, dtype=torch.float64).to(dtype)
    k = torch.randn(B, H, Nk, Dh, generator=gen, dtype=torch.float64).to(dtype)
    v = torch.randn(B, H, Nk, Dh, generator=gen, dtype=torch.float64).to(dtype)
    go = torch.randn(B, H, nq, Dh, generator=gen, dtype=torch.float64).to(dtype)
    if lengths is None:
        lengths = torch.randint(0, T + 1, (B,), generator=gen)
    return q, k, v, torch.as_tensor(lengths), go


@st.composite
def shapes(draw, max_b=4, max_h=3, max_t=12, max_dh=9):
    """(B, H, P, T, Dh, rope, Nq): prefixes 0..8, T 0..12, odd head dims only without RoPE."""
    B = draw(st.integers(1, max_b))
    H = draw(st.integers(1, max_h))
    P = draw(st.integers(0, 8))
    T = draw(st.integers(0, max_t))
    rope = draw(st.booleans())
    Dh = draw(st.integers(1, max_dh // 2).map(lambda x: 2 * x) if rope else st.integers(1, max_dh))
    Nq = draw(st.none() | st.integers(1, 5))
    return B, H, P, T, Dh, rope, Nq


def run(fn, q, k, v, lengths, P, rope, Nq, go):
    """(out, dq, dk, dv) of fn(q, k, v, lengths, P, rope=, separate_queries=)."""
    leaves = [t.detach().clone().requires_grad_(True) for t in (q, k, v)]
    out = fn(*leaves, lengths, P, rope=rope, separate_queries=Nq is not None)
    grads = torch.autograd.grad(out, leaves, go, allow_unused=True)
    grads = [torch.zeros_like(t) if g is None else g for g, t in zip(grads, leaves)]
    return (out.detach(), *grads)


def reference_fn(q, k, v, lengths, P, rope, separate_queries):
    return interleaved_attention_reference(q, k, v, lengths, P, rope, separate_queries=separate_queries)


def check_backend(backend, B, H, P, T, Dh, rope, Nq, seed=0, dtype=torch.float32, atol=2e-5, rtol=2e-5, lengths=None):
    """The backend's output and dq, dk, dv match the reference's (autograd) on one random case."""
    q, k, v, lengths, go = make_inputs(B, H, P, T, Dh, Nq, dtype, seed, lengths)
    got = run(lambda *a, **kw: interleaved_attention(*a, backend=backend, **kw), q, k, v, lengths, P, rope, Nq, go)
    want = run(reference_fn, q, k, v, lengths, P, rope, Nq, go)
    for name, g, w in zip(("out", "dq", "dk", "dv"), got, want):
        assert g.shape == w.shape and g.dtype == w.dtype, name
        assert torch.isfinite(g).all(), name
        torch.testing.assert_close(g, w, atol=atol, rtol=rtol, msg=lambda m: f"{backend} {name}: {m}")
    return got
