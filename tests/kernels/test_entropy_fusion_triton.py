"""The Triton entropy_weighted_fusion kernels under TRITON_INTERPRET=1 (CPU tensors), against the reference.

The tests run in a child pytest process started with TRITON_INTERPRET=1 (triton_interp.py says why).
Shapes are tiny: the interpreter runs ~1 ms per program.
"""
from __future__ import annotations

import pytest
import torch
from triton_interp import INTERPRETED, run_interpreted

if not INTERPRETED:

    def test_triton_kernels_under_interpreter():
        run_interpreted(__file__)

else:
    import torch.nn.functional as F
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from ctrbench.kernels.backend import resolve_backend
    from ctrbench.kernels.entropy_fusion import FusionInputError, entropy_weighted_fusion, to_logit
    from ctrbench.kernels.entropy_fusion.reference import clamp_bound
    from ewf_cases import check_backend, make_logits, run_with_grads

    def test_triton_backend_is_available_under_interpreter():
        assert resolve_backend("triton", "cpu") == "triton"

    @settings(max_examples=10, deadline=None)
    @given(B=st.integers(0, 64), K=st.integers(1, 8), tau=st.floats(0.05, 5.0),
           space=st.sampled_from(["prob", "logit"]), detach=st.booleans(),
           dtype=st.sampled_from([torch.float32, torch.float64]), seed=st.integers(0, 10_000))
    def test_triton_matches_reference(B, K, tau, space, detach, dtype, seed):
        check_backend("triton", make_logits(B, K, dtype, seed=seed), tau, space, detach)

    def test_triton_over_several_programs():
        # 2048-element tiles: K=3 pads to 4, 512 rows per program -> 3 programs with a ragged tail
        check_backend("triton", make_logits(1100, 3, torch.float32, seed=1), 0.3, "prob", False)

    @pytest.mark.parametrize("space", ["prob", "logit"])
    def test_triton_extreme_logits(space):
        big = [1e4, -1e4, float("inf"), float("-inf"), 0.0, 40.0]
        x = torch.tensor([[a, b] for a in big for b in big], dtype=torch.float32)
        fused, weights, gx, gt = run_with_grads(
            lambda x, t, s, d: entropy_weighted_fusion(x, t, s, d, backend="triton"), x, torch.tensor(0.7), space, False)
        for t in (fused, weights, gx, gt):
            assert torch.isfinite(t).all()
        assert (gx[x.abs() > clamp_bound(1e-6)] == 0).all()
        assert torch.isfinite(F.binary_cross_entropy_with_logits(to_logit(fused, space), torch.ones_like(fused)))
        check_backend("triton", x, 0.7, space, False)

    def test_triton_nan_row_propagates_to_that_row_only():
        x = make_logits(10, 4, torch.float32, seed=5)
        clean_f, clean_w = entropy_weighted_fusion(x, 0.5, backend="triton")
        x[3, 2] = float("nan")
        fused, weights = entropy_weighted_fusion(x, 0.5, backend="triton")
        assert torch.isnan(fused[3]) and torch.isnan(weights[3]).all()
        keep = torch.arange(10) != 3
        torch.testing.assert_close(fused[keep], clean_f[keep])
        torch.testing.assert_close(weights[keep], clean_w[keep])

    def test_triton_bf16_logits_are_computed_in_fp32():
        x = make_logits(40, 4, seed=6)
        want, _ = entropy_weighted_fusion(x, 0.5, backend="reference")
        got, w = entropy_weighted_fusion(x.to(torch.bfloat16), 0.5, backend="triton")
        assert got.dtype == torch.bfloat16 and w.dtype == torch.bfloat16
        torch.testing.assert_close(got.double(), want, atol=2e-2, rtol=2e-2)

    def test_triton_bad_input_names_the_argument():
        with pytest.raises(FusionInputError, match="'tau'"):
            entropy_weighted_fusion(torch.zeros(4, 2), torch.tensor(-1.0), backend="triton")
        with pytest.raises(FusionInputError, match="'logits'"):
            entropy_weighted_fusion(torch.zeros(4, 0), torch.tensor(1.0), backend="triton")
