"""entropy_weighted_fusion: the reference's maths, the reference and C++ backends against it (forward,
gradients, gradcheck in float64), extreme and NaN logits, bad input, opcheck, torch.compile, the module.
The Triton backend runs in the interpreter in test_entropy_fusion_triton.py (a child process)."""
from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from ctrbench.kernels.backend import BackendUnavailableError, resolve_backend
from ctrbench.kernels.entropy_fusion import (
    EntropyWeightedFusion,
    FusionInputError,
    entropy_weighted_fusion,
    entropy_weighted_fusion_reference,
    to_logit,
)
from ctrbench.kernels.entropy_fusion.reference import clamp_bound, entropy_weighted_fusion_reference_backward
from ewf_cases import check_backend, make_logits, run_with_grads

BACKENDS = ("reference", "cpp")  # runnable in this process on the CPU
SPACES = ("prob", "logit")


def test_cpp_backend_is_built():
    assert resolve_backend("cpp", "cpu") == "cpp"
    assert resolve_backend(None, "cpu") == "cpp"
    assert torch.ops.ctrbench._entropy_fusion_cpu_isa() in ("avx2", "portable")


# ---------------------------------------------------------------- the definition


def test_reference_is_the_literal_definition():
    """Clamping the logit at ±L equals clamping p to [eps, 1-eps]; c is p log p + (1-p) log(1-p)."""
    x = make_logits(300, 5, scale=8.0)
    x[0, :] = torch.tensor([20.0, -20.0, 0.0, 13.0, -14.0], dtype=torch.float64)
    tau, eps = torch.tensor(0.3, dtype=torch.float64), 1e-6
    p = torch.sigmoid(x).clamp(eps, 1 - eps)
    c = p * torch.log(p) + (1 - p) * torch.log(1 - p)
    w = torch.softmax(c / tau, dim=1)
    fused, weights = entropy_weighted_fusion_reference(x, tau, "prob", eps=eps)
    torch.testing.assert_close(weights, w, atol=1e-12, rtol=1e-9)
    torch.testing.assert_close(fused, (w * p).sum(1), atol=1e-12, rtol=1e-9)
    fused_l, _ = entropy_weighted_fusion_reference(x, tau, "logit", eps=eps)
    torch.testing.assert_close(fused_l, (w * torch.logit(p)).sum(1), atol=1e-9, rtol=1e-9)
    assert clamp_bound(eps) == pytest.approx(math.log((1 - eps) / eps))


@settings(max_examples=20, deadline=None)
@given(B=st.integers(1, 20), K=st.integers(1, 6), tau=st.floats(0.05, 5.0), space=st.sampled_from(SPACES),
       detach=st.booleans(), with_gw=st.booleans(), seed=st.integers(0, 10_000))
def test_closed_form_backward_matches_autograd(B, K, tau, space, detach, with_gw, seed):
    x = make_logits(B, K, seed=seed, scale=6.0)
    x.view(-1)[::5] = torch.tensor([30.0, -30.0]).repeat(x.numel())[: x.view(-1)[::5].numel()].double()
    t = torch.tensor(tau, dtype=torch.float64)
    xr, tr = x.clone().requires_grad_(True), t.clone().requires_grad_(True)
    fused, weights = entropy_weighted_fusion_reference(xr, tr, space, detach)
    gen = torch.Generator().manual_seed(seed)
    gf = torch.randn(B, generator=gen, dtype=torch.float64)
    gw = torch.randn(B, K, generator=gen, dtype=torch.float64) if with_gw else None
    outs, grads = [fused], [gf]
    if gw is not None and weights.requires_grad:
        outs.append(weights)
        grads.append(gw)
    gx, gt = torch.autograd.grad(outs, [xr, tr], grads, allow_unused=True)
    cx, ct = entropy_weighted_fusion_reference_backward(x, t, weights.detach(), gf, gw, space, detach)
    torch.testing.assert_close(cx, gx, atol=1e-12, rtol=1e-9)
    torch.testing.assert_close(ct, gt if gt is not None else torch.zeros_like(t), atol=1e-12, rtol=1e-9)


# ---------------------------------------------------------------- backends vs the reference


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=25, deadline=None)
@given(B=st.integers(0, 64), K=st.integers(1, 8), tau=st.floats(0.05, 5.0), space=st.sampled_from(SPACES),
       detach=st.booleans(), dtype=st.sampled_from([torch.float32, torch.float64]), seed=st.integers(0, 10_000))
def test_backend_matches_reference(backend, B, K, tau, space, detach, dtype, seed):
    check_backend(backend, make_logits(B, K, dtype, seed=seed), tau, space, detach)


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=8, deadline=None)
@given(B=st.integers(0, 40), K=st.integers(1, 6), tau=st.floats(0.1, 3.0), space=st.sampled_from(SPACES),
       detach=st.booleans(), seed=st.integers(0, 10_000))
def test_registered_op_path_equals_eager_path(backend, B, K, tau, space, detach, seed):
    """torch.ops.ctrbench.entropy_weighted_fusion (what torch.compile sees) and the eager autograd.Function
    run the same kernels: bit-identical outputs and gradients."""
    x, t = make_logits(B, K, torch.float32, seed=seed), torch.tensor(tau)
    op = lambda x, t, s, d: torch.ops.ctrbench.entropy_weighted_fusion(x, t, s, d, 1e-6, backend)  # noqa: E731
    eager = lambda x, t, s, d: entropy_weighted_fusion(x, t, s, d, backend=backend)  # noqa: E731
    for a, b in zip(run_with_grads(op, x, t, space, detach), run_with_grads(eager, x, t, space, detach)):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    with torch.no_grad():  # the no-autograd shortcut
        for a, b in zip(entropy_weighted_fusion(x, t, space, detach, backend=backend), op(x, t, space, detach)):
            torch.testing.assert_close(a, b, atol=0, rtol=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_backend_matches_reference_over_many_blocks(backend):
    """B spans several of the C++ kernel's 256-row blocks and a ragged tail."""
    check_backend(backend, make_logits(1000, 7, torch.float32, seed=3), 0.4, "prob", False)
    check_backend(backend, make_logits(777, 3, torch.float32, seed=4), 1.7, "logit", False)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("space", SPACES)
def test_gradcheck_float64(backend, space):
    """Finite differences (detach_weights=True is deliberately not the true derivative: compared to the
    reference in test_backend_matches_reference instead)."""
    x = make_logits(6, 4, seed=7, scale=3.0).requires_grad_(True)
    tau = torch.tensor(0.8, dtype=torch.float64, requires_grad=True)

    def fn(x, tau):
        return entropy_weighted_fusion(x, tau, space, False, backend=backend)

    assert torch.autograd.gradcheck(fn, (x, tau), eps=1e-6, atol=1e-7, rtol=1e-5)


def test_bf16_and_fp16_logits_run_in_fp32_math():
    x = make_logits(50, 4, seed=2)
    ref, _ = entropy_weighted_fusion_reference(x, torch.tensor(0.5, dtype=torch.float64))
    for dtype in (torch.bfloat16, torch.float16):
        for backend in BACKENDS:
            fused, weights = entropy_weighted_fusion(x.to(dtype), 0.5, backend=backend)
            assert fused.dtype == dtype and weights.dtype == dtype
            torch.testing.assert_close(fused.double(), ref, atol=2e-2, rtol=2e-2)


def test_cpp_portable_kernels_match_reference():
    """The 4-lane portable copy (non-AVX2 CPUs, ARM) is forced with CTRBENCH_CPU_PORTABLE=1 in a child."""
    code = (
        "import torch\n"
        "import ctrbench.kernels._C\n"
        "from ewf_cases import check_backend, make_logits\n"
        "assert torch.ops.ctrbench._entropy_fusion_cpu_isa() == 'portable'\n"
        "for B, K, space, detach in [(300, 4, 'prob', False), (77, 3, 'logit', False), (64, 8, 'prob', True),\n"
        "                            (5, 1, 'logit', False), (40, 2, 'prob', False)]:\n"
        "    for dtype in (torch.float32, torch.float64):\n"
        "        check_backend('cpp', make_logits(B, K, dtype, seed=B), 0.6, space, detach)\n"
        "print('portable ok')\n"
    )
    env = dict(os.environ, CTRBENCH_CPU_PORTABLE="1")
    proc = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parent, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0 and "portable ok" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]


# ---------------------------------------------------------------- numerics at the edges


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("space", SPACES)
def test_extreme_logits_give_finite_outputs_and_gradients(backend, space):
    big = [1e4, -1e4, float("inf"), float("-inf"), 0.0, 40.0, -40.0]
    x = torch.tensor([[a, b] for a in big for b in big], dtype=torch.float32)
    fused, weights, gx, gt = run_with_grads(
        lambda x, t, s, d: entropy_weighted_fusion(x, t, s, d, backend=backend), x, torch.tensor(0.7), space, False)
    for t in (fused, weights, gx, gt):
        assert torch.isfinite(t).all()
    bound = clamp_bound(1e-6)
    lo, hi = (1e-6, 1 - 1e-6) if space == "prob" else (-bound, bound)
    assert (fused >= lo - 1e-6).all() and (fused <= hi + 1e-6).all()
    assert (gx[x.abs() > bound] == 0).all()  # clamped members get no gradient, as with torch.clamp
    # BCE-with-logits on the fused prediction stays finite
    loss = F.binary_cross_entropy_with_logits(to_logit(fused, space), torch.ones_like(fused))
    assert torch.isfinite(loss)
    check_backend(backend, x, 0.7, space, False)


@pytest.mark.parametrize("backend", BACKENDS)
def test_nan_row_propagates_to_that_row_only(backend):
    x = make_logits(10, 4, torch.float32, seed=5)
    clean_f, clean_w = entropy_weighted_fusion(x, 0.5, backend=backend)
    x[3, 2] = float("nan")
    fused, weights = entropy_weighted_fusion(x, 0.5, backend=backend)
    assert torch.isnan(fused[3]) and torch.isnan(weights[3]).all()
    keep = torch.arange(10) != 3
    torch.testing.assert_close(fused[keep], clean_f[keep])
    torch.testing.assert_close(weights[keep], clean_w[keep])


@pytest.mark.parametrize("backend", BACKENDS)
def test_weights_sum_to_one_and_favour_the_confident_member(backend):
    x = torch.tensor([[6.0, 0.2, -0.1], [-5.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    fused, w = entropy_weighted_fusion(x, 0.5, backend=backend)
    torch.testing.assert_close(w.sum(1), torch.ones(3))
    assert w[0].argmax() == 0 and w[1].argmax() == 0  # |logit| largest = lowest entropy
    torch.testing.assert_close(w[2], torch.full((3,), 1 / 3))
    # a tiny tau picks the most confident member, a huge one averages
    _, w_cold = entropy_weighted_fusion(x, 1e-3, backend=backend)
    _, w_hot = entropy_weighted_fusion(x, 1e4, backend=backend)
    assert w_cold[0, 0] > 0.999 and torch.allclose(w_hot, torch.full_like(w_hot, 1 / 3), atol=1e-4)
    fused_p, _ = entropy_weighted_fusion(x, 1e-3, "prob", backend=backend)
    assert fused_p[0] == pytest.approx(torch.sigmoid(torch.tensor(6.0)).item(), rel=1e-3)


def test_cpp_tau_gradient_is_the_same_for_any_thread_count():
    x = make_logits(5000, 4, torch.float32, seed=9)
    results = []
    threads = torch.get_num_threads()
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            _, _, gx, gt = run_with_grads(lambda x, t, s, d: entropy_weighted_fusion(x, t, s, d, backend="cpp"),
                                          x, torch.tensor(0.5), "prob", False)
            results.append((gx, gt))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])


# ---------------------------------------------------------------- bad input


BAD = [
    ("logits", lambda: (torch.zeros(5), torch.tensor(1.0)), {}),
    ("logits", lambda: (torch.zeros(2, 3, 4), torch.tensor(1.0)), {}),
    ("logits", lambda: (torch.zeros(4, 0), torch.tensor(1.0)), {}),
    ("logits", lambda: (torch.zeros(4, 2, dtype=torch.int64), torch.tensor(1.0)), {}),
    ("tau", lambda: (torch.zeros(4, 2), torch.tensor([1.0])), {}),
    ("tau", lambda: (torch.zeros(4, 2), torch.tensor(1)), {}),
    ("tau", lambda: (torch.zeros(4, 2), torch.tensor(0.0)), {}),
    ("tau", lambda: (torch.zeros(4, 2), torch.tensor(-2.0)), {}),
    ("tau", lambda: (torch.zeros(4, 2), torch.tensor(float("nan"))), {}),
    ("tau", lambda: (torch.zeros(4, 2), torch.tensor(float("inf"))), {}),
    ("tau", lambda: (torch.zeros(4, 2), torch.tensor(1.0, device="meta")), {}),
    ("space", lambda: (torch.zeros(4, 2), torch.tensor(1.0)), {"space": "probability"}),
    ("eps", lambda: (torch.zeros(4, 2), torch.tensor(1.0)), {"eps": 0.0}),
    ("eps", lambda: (torch.zeros(4, 2), torch.tensor(1.0)), {"eps": 1e-9}),  # 1 - eps == 1 in float32
    ("eps", lambda: (torch.zeros(4, 2), torch.tensor(1.0)), {"eps": 0.5}),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("argument,make,kwargs", BAD, ids=[f"{a}-{i}" for i, (a, _, _) in enumerate(BAD)])
def test_bad_input_names_the_argument(backend, argument, make, kwargs):
    logits, tau = make()
    with pytest.raises(FusionInputError) as info:
        entropy_weighted_fusion(logits, tau, backend=backend, **kwargs)
    assert isinstance(info.value, ValueError) and info.value.argument == argument
    assert repr(argument) in str(info.value)


def test_unavailable_backend_is_an_error():
    with pytest.raises(BackendUnavailableError, match="cuda"):
        entropy_weighted_fusion(torch.zeros(3, 2), 1.0, backend="cuda")


# ---------------------------------------------------------------- torch.library integration


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("space,detach", [("prob", False), ("logit", True)])
def test_opcheck(backend, space, detach):
    x = make_logits(9, 3, torch.float32, seed=11).requires_grad_(True)
    tau = torch.tensor(0.6, requires_grad=True)
    torch.library.opcheck(torch.ops.ctrbench.entropy_weighted_fusion.default, (x, tau, space, detach, 1e-6, backend))
    w = torch.softmax(torch.randn(9, 3), 1)
    args = (x.detach(), tau.detach(), w, torch.randn(9), torch.randn(9, 3), space, detach, 1e-6, True, backend)
    torch.library.opcheck(torch.ops.ctrbench.entropy_weighted_fusion_backward.default, args)


def test_torch_compile_traces_forward_and_backward_without_graph_breaks():
    module = EntropyWeightedFusion(tau=0.5, space="prob", backend="cpp")

    def step(x, y):
        fused, weights = module(x)
        return F.binary_cross_entropy_with_logits(module.logit(fused), y) + weights.max(1).values.mean()

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager", dynamic=False)
    x = make_logits(32, 4, torch.float32, seed=12)
    y = (torch.rand(32) > 0.5).float()
    xe, xc = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    eager = step(xe, y)
    eager.backward()
    g_eager = (xe.grad.clone(), module.log_tau.grad.clone())
    module.log_tau.grad = None
    out = compiled(xc, y)
    out.backward()
    torch.testing.assert_close(out, eager)
    torch.testing.assert_close(xc.grad, g_eager[0])
    torch.testing.assert_close(module.log_tau.grad, g_eager[1])


# ---------------------------------------------------------------- module


def test_module_learns_tau_and_keeps_it_positive():
    torch.manual_seed(0)
    module = EntropyWeightedFusion(tau=1.0, learnable_tau=True)
    opt = torch.optim.SGD(module.parameters(), lr=5.0)
    x = make_logits(256, 3, torch.float32, seed=13)
    y = (torch.rand(256) > 0.5).float()
    for _ in range(5):
        opt.zero_grad()
        fused, _ = module(x)
        F.binary_cross_entropy_with_logits(module.logit(fused), y).backward()
        assert module.log_tau.grad is not None and module.log_tau.grad.abs() > 0
        opt.step()
    assert module.tau.item() > 0 and module.tau.item() != 1.0


def test_module_fixed_tau_is_a_buffer():
    module = EntropyWeightedFusion(tau=2.0, learnable_tau=False, space="logit", detach_weights=True)
    assert list(module.parameters()) == [] and "log_tau" in dict(module.named_buffers())
    x = make_logits(8, 2, torch.float32).requires_grad_(True)
    fused, weights = module(x)
    assert not weights.requires_grad
    fused.sum().backward()
    assert torch.isfinite(x.grad).all()
    with pytest.raises(ValueError, match="tau"):
        EntropyWeightedFusion(tau=0.0)
    with pytest.raises(ValueError, match="space"):
        EntropyWeightedFusion(space="nope")
