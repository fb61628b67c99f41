"""Shared inputs and checks for the interleaved_attention tests (plain and under the Triton interpreter)."""
from __future__ import annotations

import torch
from hypothesis import strategies as st

from ctrbench.kernels.interleaved_attention import interleaved_attention, interleaved_attention_reference
from ctrbench.kernels.interleaved_attention.reference import key_valid_mask


def make_inputs(B, H, P, T, Dh, Nq=None, dtype=torch.float32, seed=0, lengths=None, device="cpu"):
    """q, k, v, lengths, upstream gradient on `device`; Nq set = separate queries. Lengths random in [0, T]."""
    gen = torch.Generator().manual_seed(seed)
    Nk = P + T
    nq = Nk if Nq is None else Nq
    q = torch.randn(B, H, nq, Dh, generator=gen, dtype=torch.float64).to(dtype)
    k = torch.randn(B, H, Nk, Dh, generator=gen, dtype=torch.float64).to(dtype)
    v = torch.randn(B, H, Nk, Dh, generator=gen, dtype=torch.float64).to(dtype)
    go = torch.randn(B, H, nq, Dh, generator=gen, dtype=torch.float64).to(dtype)
    if lengths is None:
        lengths = torch.randint(0, T + 1, (B,), generator=gen)
    return tuple(t.to(device) for t in (q, k, v, torch.as_tensor(lengths), go))


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


def check_backend(backend, B, H, P, T, Dh, rope, Nq, seed=0, dtype=torch.float32, atol=2e-5, rtol=2e-5, lengths=None,
                  device="cpu"):
    """The backend's output and dq, dk, dv match the reference's (autograd) on one random case."""
    q, k, v, lengths, go = make_inputs(B, H, P, T, Dh, Nq, dtype, seed, lengths, device)
    got = run(lambda *a, **kw: interleaved_attention(*a, backend=backend, **kw), q, k, v, lengths, P, rope, Nq, go)
    want = run(reference_fn, q, k, v, lengths, P, rope, Nq, go)
    for name, g, w in zip(("out", "dq", "dk", "dv"), got, want):
        assert g.shape == w.shape and g.dtype == w.dtype, name
        assert torch.isfinite(g).all(), name
        torch.testing.assert_close(g, w, atol=atol, rtol=rtol, msg=lambda m: f"{backend} {name}: {m}")
    return got


# ------------------------------------------------------------------------------- the NaN contract

NAN_LENGTHS = (0, 3, 5)  # B = 3 rows over P = 2 prefix tokens and T = 5 slots: only the prefix, partial, full
NAN_CASES = ("masked_slots", "valid_q", "valid_k", "valid_v")


def nan_inputs(case: str, rope: bool, Nq, device="cpu"):
    """Inputs with NaN / inf where `case` says: in every masked slot (padded keys and values, padded query rows
    and their upstream gradient), or in one valid entry of q, k or v."""
    P, T = 2, 5
    q, k, v, lengths, go = make_inputs(3, 2, P, T, 4, Nq, seed=11, lengths=torch.tensor(NAN_LENGTHS), device=device)
    kvalid = key_valid_mask(lengths, P, P + T)[:, None, :, None].expand(k.shape)
    if case == "masked_slots":
        k, v = k.masked_fill(~kvalid, float("nan")), v.masked_fill(~kvalid, float("inf"))
        if Nq is None:
            q, go = q.masked_fill(~kvalid, float("nan")), go.masked_fill(~kvalid, float("nan"))
    else:
        t = {"valid_q": q, "valid_k": k, "valid_v": v}[case]
        t[1, 0, 0 if case == "valid_q" and Nq is not None else P + T - 1, 1] = float("nan")  # a valid token of row 1
    return q, k, v, lengths, go, P, kvalid


def check_nan_contract(backend: str, case: str, rope: bool, Nq, device="cpu", atol=2e-5, rtol=2e-5) -> None:
    """The contract of reference.py on NaN: masked slots are never read (outputs and gradients equal a run with
    zeros there, all finite), a NaN in valid input propagates (as in the reference), padded query rows output 0
    and get dq = 0, masked keys get dk = dv = 0."""
    q, k, v, lengths, go, P, kvalid = nan_inputs(case, rope, Nq, device)
    fn = lambda *a, **kw: interleaved_attention(*a, backend=backend, **kw)  # noqa: E731
    got = run(fn, q, k, v, lengths, P, rope, Nq, go)
    out, dq, dk, dv = got
    assert (dk[~kvalid] == 0).all() and (dv[~kvalid] == 0).all(), f"{backend}: masked keys get a gradient"
    if Nq is None:
        assert (out[~kvalid] == 0).all() and (dq[~kvalid] == 0).all(), f"{backend}: padded query rows not 0"
    if case == "masked_slots":
        clean = [t.masked_fill(~kvalid, 0.0) if Nq is None or t is k or t is v else t for t in (q, k, v, go)]
        want = run(fn, *clean[:3], lengths, P, rope, Nq, clean[3])
        for name, g, w in zip(("out", "dq", "dk", "dv"), got, want):
            assert torch.isfinite(g).all(), f"{backend} {name}: a masked slot was read"
            torch.testing.assert_close(g, w, atol=0, rtol=0, msg=lambda m: f"{backend} {name}: {m}")
        return
    assert out[1].isnan().any() and not out[0].isnan().any() and not out[2].isnan().any(), \
        f"{backend}: the NaN did not propagate"
    want = run(reference_fn, q, k, v, lengths, P, rope, Nq, go)
    for name, g, w in zip(("out", "dq", "dk", "dv"), got, want):
        torch.testing.assert_close(g, w, atol=atol, rtol=rtol, equal_nan=True, msg=lambda m: f"{backend} {name}: {m}")
