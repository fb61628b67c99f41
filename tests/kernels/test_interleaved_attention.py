"""interleaved_attention: the reference's contract (masks, fully masked rows, RoPE positions that ignore
left padding, closed-form backward = autograd), the reference and C++ backends against it (forward,
gradients, gradcheck in float64), bad input, opcheck, torch.compile, the module. The Triton backend runs in
the interpreter in test_interleaved_attention_triton.py (a child process)."""
from __future__ import annotations


import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from ctrbench.kernels.backend import resolve_backend
from ctrbench.kernels.interleaved_attention import (
    InterleavedAttentionInputError,
    InterleavedMultiheadAttention,
    interleaved_attention,
    interleaved_attention_reference,
)
from ctrbench.kernels.interleaved_attention.op import interleaved_attention_op
from ctrbench.kernels.interleaved_attention.reference import (
    apply_rope,
    interleaved_attention_reference_backward,
    rope_cos_sin,
)
from ia_cases import NAN_CASES, check_backend, check_nan_contract, make_inputs, reference_fn, run, shapes

BACKENDS = ("reference", "cpp")  # runnable in this process on the CPU


def test_cpp_backend_is_built():
    assert resolve_backend("cpp", "cpu") == "cpp"


# ------------------------------------------------------------------------------ the reference's contract


def test_reference_matches_sdpa_without_rope():
    """Valid rows equal SDPA with a boolean key mask over [prefix | last L slots]."""
    B, H, P, T, Dh = 5, 2, 3, 9, 8
    q, k, v, _, _ = make_inputs(B, H, P, T, Dh, dtype=torch.float64, seed=1)
    lengths = torch.tensor([0, 1, 4, 8, 9])
    out = interleaved_attention_reference(q, k, v, lengths, P)
    j = torch.arange(P + T)
    valid = (j[None] < P) | (j[None] >= P + T - lengths[:, None])
    want = F.scaled_dot_product_attention(q, k, v, attn_mask=valid[:, None, None, :])
    want = want * valid[:, None, :, None]  # padded query rows are defined as 0
    torch.testing.assert_close(out, want)
    assert (out[1, :, P : P + T - 1] == 0).all() and (out[1, :, P + T - 1] != 0).any()


def test_rope_positions_ignore_left_padding():
    """The same valid tokens behind different amounts of padding give the same outputs."""
    B, H, P, Dh = 1, 2, 2, 8
    gen = torch.Generator().manual_seed(3)
    prefix = torch.randn(B, H, P, Dh, generator=gen, dtype=torch.float64)
    tokens = torch.randn(3, B, H, 4, Dh, generator=gen, dtype=torch.float64)  # q, k, v of 4 valid tokens

    def build(pad):
        pads = torch.randn(B, H, pad, Dh, generator=gen, dtype=torch.float64)
        return [torch.cat((prefix, pads, t), dim=2) for t in tokens]

    q1, k1, v1 = build(0)
    q2, k2, v2 = build(5)
    out1 = interleaved_attention_reference(q1, k1, v1, torch.tensor([4]), P, rope=True)
    out2 = interleaved_attention_reference(q2, k2, v2, torch.tensor([4]), P, rope=True)
    torch.testing.assert_close(out1, out2[:, :, list(range(P)) + list(range(P + 5, P + 9))])


def test_rope_is_a_rotation_with_relative_scores():
    """Rotate-half RoPE keeps norms and makes q.k depend on the position difference only."""
    Dh = 16
    x, y = torch.randn(2, 1, 1, 1, Dh, dtype=torch.float64)
    def rot(t, pos):
        cos, sin = rope_cos_sin(torch.tensor([[pos]]), Dh, 10000.0, torch.float64)
        return apply_rope(t, cos, sin)
    torch.testing.assert_close(rot(x, 7).norm(), x.norm())
    torch.testing.assert_close((rot(x, 3) * rot(y, 10)).sum(), (rot(x, 13) * rot(y, 20)).sum())


@pytest.mark.parametrize("backend", BACKENDS)
def test_fully_masked_rows_output_zero_with_finite_grads(backend):
    """P = 0 and length 0: no valid key -> output 0, gradients 0 (self-attention and separate queries)."""
    for Nq in (None, 3):
        q, k, v, _, go = make_inputs(3, 2, 0, 6, 4, Nq=Nq, seed=2)
        lengths = torch.tensor([0, 6, 0])
        out, dq, dk, dv = run(lambda *a, **kw: interleaved_attention(*a, backend=backend, **kw), q, k, v, lengths,
                              0, True, Nq, go)
        for t in (out, dq, dk, dv):
            assert torch.isfinite(t).all()
        for t in (out, dq, dk, dv):
            assert (t[0] == 0).all() and (t[2] == 0).all()
        assert (out[1] != 0).any() and (dk[1] != 0).any()


@pytest.mark.parametrize("backend", BACKENDS)
def test_padded_positions_get_no_output_and_no_gradient(backend):
    q, k, v, _, go = make_inputs(2, 2, 2, 7, 6, seed=4)
    lengths = torch.tensor([3, 7])
    out, dq, dk, dv = run(lambda *a, **kw: interleaved_attention(*a, backend=backend, **kw), q, k, v, lengths,
                          2, True, None, go)
    padded = slice(2, 2 + 7 - 3)  # row 0's padded slots
    for t in (out, dq, dk, dv):
        assert (t[0, :, padded] == 0).all()
        assert (t[0, :, :2] != 0).any() and (t[0, :, 6:] != 0).any()


@settings(max_examples=25, deadline=None)
@given(shape=shapes(), seed=st.integers(0, 10_000))
def test_closed_form_backward_matches_autograd(shape, seed):
    B, H, P, T, Dh, rope, Nq = shape
    q, k, v, lengths, go = make_inputs(B, H, P, T, Dh, Nq, torch.float64, seed)
    _, *want = run(reference_fn, q, k, v, lengths, P, rope, Nq, go)
    got = interleaved_attention_reference_backward(go, q, k, v, lengths, P, rope, separate_queries=Nq is not None)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)


# ------------------------------------------------------------------------------ backends vs reference


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=30, deadline=None)
@given(shape=shapes(), seed=st.integers(0, 10_000))
def test_backend_matches_reference(backend, shape, seed):
    B, H, P, T, Dh, rope, Nq = shape
    check_backend(backend, B, H, P, T, Dh, rope, Nq, seed=seed)


def test_cpp_on_an_interformer_shape():
    """4 CLS + 50 tokens, Dh 32, random lengths incl. 0 and T, self-attention and PMA seeds."""
    backend = "cpp"
    lengths = torch.randint(0, 51, (64,), generator=torch.Generator().manual_seed(0))
    lengths[0], lengths[1] = 0, 50
    check_backend(backend, 64, 2, 4, 50, 32, True, None, lengths=lengths)
    check_backend(backend, 64, 2, 4, 50, 32, True, 2, lengths=lengths)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cpp_half_precision_inputs(dtype):
    q, k, v, lengths, go = make_inputs(4, 2, 4, 10, 8, dtype=dtype, seed=5)
    out, dq, dk, dv = run(lambda *a, **kw: interleaved_attention(*a, backend="cpp", **kw), q, k, v, lengths, 4,
                          True, None, go)
    want = run(reference_fn, q.float(), k.float(), v.float(), lengths, 4, True, None, go.float())
    for g, w in zip((out, dq, dk, dv), want):
        assert g.dtype == dtype
        torch.testing.assert_close(g.float(), w, atol=2e-2, rtol=2e-2)


@pytest.mark.parametrize("backend,rope,Nq", [("cpp", True, None), ("cpp", False, None), ("cpp", True, 2),
                                             ("reference", True, None)])
def test_gradcheck_float64(backend, rope, Nq):
    q, k, v, _, _ = make_inputs(2, 2, 2, 4, 4 if rope else 3, Nq=Nq, dtype=torch.float64, seed=6)
    lengths = torch.tensor([1, 4])
    leaves = [t.clone().requires_grad_(True) for t in (q, k, v)]
    f = lambda q, k, v: interleaved_attention(q, k, v, lengths, 2, rope=rope, separate_queries=Nq is not None,
                                               backend=backend)
    assert torch.autograd.gradcheck(f, leaves, eps=1e-6, atol=1e-6)


def test_cpp_is_deterministic():
    q, k, v, lengths, go = make_inputs(16, 2, 4, 20, 16, seed=7)
    a = run(lambda *x, **kw: interleaved_attention(*x, backend="cpp", **kw), q, k, v, lengths, 4, True, None, go)
    b = run(lambda *x, **kw: interleaved_attention(*x, backend="cpp", **kw), q, k, v, lengths, 4, True, None, go)
    for x, y in zip(a, b):
        assert torch.equal(x, y)


def test_non_contiguous_inputs():
    q, k, v, lengths, _ = make_inputs(3, 4, 2, 5, 8, seed=8)
    qt, kt, vt = (t.transpose(1, 2).contiguous().transpose(1, 2) for t in (q, k, v))
    assert not qt.is_contiguous()
    torch.testing.assert_close(interleaved_attention(qt, kt, vt, lengths, 2, rope=True, backend="cpp"),
                               interleaved_attention_reference(q, k, v, lengths, 2, rope=True))


# ------------------------------------------------------------------------------ bad input


def _good():
    q, k, v, lengths, _ = make_inputs(2, 2, 2, 5, 4, seed=9)
    return dict(q=q, k=k, v=v, lengths=lengths, num_prefix=2)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "change,message",
    [
        (lambda a: a.update(lengths=torch.tensor([6, 1])), "lengths"),
        (lambda a: a.update(lengths=torch.tensor([-1, 1])), "lengths"),
        (lambda a: a.update(lengths=torch.tensor([1.0, 2.0])), "lengths"),
        (lambda a: a.update(lengths=torch.tensor([1, 2, 3])), "lengths"),
        (lambda a: a.update(num_prefix=8), "num_prefix"),
        (lambda a: a.update(num_prefix=-1), "num_prefix"),
        (lambda a: a.update(k=a["k"][:, :, :5]), "k and v"),
        (lambda a: a.update(k=a["k"][:, :1], v=a["v"][:, :1]), "k must be"),
        (lambda a: a.update(q=a["q"][:, :, :5]), "Nq == Nk"),
        (lambda a: a.update(v=a["v"].double()), "dtype"),
        (lambda a: a.update(q=a["q"].to(torch.int64)), "floating"),
        (lambda a: a.update(q=a["q"][0]), "4-D"),
        (lambda a: a.update(k=a["k"].to("meta")), "device"),
        (lambda a: a.update(q=a["q"][..., :3], k=a["k"][..., :3], v=a["v"][..., :3]), "even head dim"),
    ],
)
def test_bad_input_is_a_clear_error(backend, change, message):
    args = _good()
    change(args)
    with pytest.raises(InterleavedAttentionInputError, match=message):
        interleaved_attention(**args, rope=True, backend=backend)


def test_input_error_is_a_value_error():
    assert issubclass(InterleavedAttentionInputError, ValueError)


# ------------------------------------------------------------------------------ torch.library integration


@pytest.mark.parametrize("backend,rope,Nq", [("cpp", True, None), ("cpp", False, 3), ("reference", True, None)])
def test_opcheck(backend, rope, Nq):
    q, k, v, lengths, _ = make_inputs(2, 2, 3, 5, 6, Nq=Nq, seed=10)
    args = (q.requires_grad_(), k.requires_grad_(), v.requires_grad_(), lengths, 3, rope, 10000.0, 0.4,
            Nq is not None, backend)
    torch.library.opcheck(interleaved_attention_op, args)


def test_torch_compile_fullgraph_forward_and_backward():
    torch._dynamo.reset()
    q, k, v, lengths, go = make_inputs(3, 2, 4, 6, 8, seed=11)

    def f(q, k, v, lengths):
        return interleaved_attention(q, k, v, lengths, 4, rope=True, backend="cpp") * 2.0

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    got = run(lambda q, k, v, lengths, P, rope, separate_queries: compiled(q, k, v, lengths), q, k, v, lengths, 4,
              True, None, go)
    want = run(lambda q, k, v, lengths, P, rope, separate_queries: f(q, k, v, lengths), q, k, v, lengths, 4, True,
               None, go)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)


# ------------------------------------------------------------------------------ the module


def test_module_self_attention_and_pma_end_to_end():
    torch.manual_seed(0)
    d, P, T, B = 32, 4, 10, 5
    mods = {be: InterleavedMultiheadAttention(d, 4, num_prefix=P, backend=be) for be in BACKENDS}
    mods["cpp"].load_state_dict(mods["reference"].state_dict())
    x = torch.randn(B, P + T, d)
    lengths = torch.tensor([0, 3, 10, 7, 1])
    seeds = torch.nn.Parameter(torch.randn(2, d))
    outs = {}
    for be, m in mods.items():
        y = m(x, lengths)
        s = m(x, lengths, queries=seeds)
        assert y.shape == (B, P + T, d) and s.shape == (B, 2, d)
        (y.sum() + s.square().sum()).backward()
        outs[be] = (y, s, m.q_proj.weight.grad.clone(), m.kv_proj.weight.grad.clone())
    for a, b in zip(outs["reference"], outs["cpp"]):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert seeds.grad is not None and torch.isfinite(seeds.grad).all()


def test_module_rejects_bad_configuration():
    with pytest.raises(InterleavedAttentionInputError, match="divisible"):
        InterleavedMultiheadAttention(30, 4)
    with pytest.raises(InterleavedAttentionInputError, match="even"):
        InterleavedMultiheadAttention(12, 4, rope=True)
    m = InterleavedMultiheadAttention(16, 2, num_prefix=2)
    with pytest.raises(InterleavedAttentionInputError, match="queries"):
        m(torch.randn(2, 5, 16), torch.tensor([1, 3]), queries=torch.randn(3, 2, 16))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", NAN_CASES)
@pytest.mark.parametrize("rope,Nq", [(False, None), (True, None), (True, 3)], ids=["self", "self-rope", "pma-rope"])
def test_nan_contract(backend, case, rope, Nq):
    check_nan_contract(backend, case, rope, Nq)
