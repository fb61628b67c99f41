"""The Triton interleaved_attention kernels under TRITON_INTERPRET=1 (CPU tensors), against the reference.

The tests run in a child pytest process started with TRITON_INTERPRET=1 (triton_interp.py says why).
Shapes are tiny: the interpreter runs ~1 ms per program.
"""
from __future__ import annotations

from unittest import mock

import pytest
import torch
from triton_interp import INTERPRETED, run_interpreted

if not INTERPRETED:

    def test_triton_kernels_under_interpreter():
        run_interpreted(__file__)

else:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from ctrbench.kernels.backend import resolve_backend
    from ctrbench.kernels.interleaved_attention import InterleavedAttentionInputError, interleaved_attention
    from ctrbench.kernels.interleaved_attention import triton as ia_triton
    from ia_cases import NAN_CASES, check_backend, check_nan_contract, make_inputs, run, shapes

    def test_triton_backend_is_available_under_interpreter():
        assert resolve_backend("triton", "cpu") == "triton"

    @settings(max_examples=12, deadline=None)
    @given(shape=shapes(max_b=3, max_h=2), seed=st.integers(0, 10_000))
    def test_triton_matches_reference(shape, seed):
        B, H, P, T, Dh, rope, Nq = shape
        check_backend("triton", B, H, P, T, Dh, rope, Nq, seed=seed)

    def test_triton_several_key_tiles_and_query_blocks():
        """Nk = 4 + 140 > 128: two forward key tiles and several backward query blocks."""
        lengths = torch.tensor([0, 140, 77])
        check_backend("triton", 3, 1, 4, 140, 8, True, None, lengths=lengths)

    def test_triton_fully_masked_rows():
        q, k, v, _, go = make_inputs(2, 1, 0, 5, 4, Nq=2, seed=3)
        out, dq, dk, dv = run(lambda *a, **kw: interleaved_attention(*a, backend="triton", **kw), q, k, v,
                              torch.tensor([0, 5]), 0, True, 2, go)
        for t in (out, dq, dk, dv):
            assert torch.isfinite(t).all() and (t[0] == 0).all()

    @pytest.mark.parametrize("Nq", [None, 2], ids=["self", "pma"])
    def test_triton_backward_beyond_one_key_tile(Nq):
        """Nk = 4 + 300 > MAX_BWD_KEYS: the key-tiled backward (rows kernel, then keys kernel)."""
        assert 4 + 300 > ia_triton.MAX_BWD_KEYS
        check_backend("triton", 2, 1, 4, 300, 4, True, Nq, lengths=torch.tensor([300, 123]))

    def key_tiled():
        """Every backward takes the key-tiled path inside this context, so small shapes test it."""
        return mock.patch.object(ia_triton, "MAX_BWD_KEYS", 0)

    @settings(max_examples=10, deadline=None)
    @given(shape=shapes(max_b=3, max_h=2), seed=st.integers(0, 10_000))
    def test_triton_key_tiled_backward_matches_reference(shape, seed):
        B, H, P, T, Dh, rope, Nq = shape
        with key_tiled():
            check_backend("triton", B, H, P, T, Dh, rope, Nq, seed=seed)

    @pytest.mark.parametrize("case", NAN_CASES)
    @pytest.mark.parametrize("Nq", [None, 3], ids=["self", "pma"])
    def test_triton_key_tiled_nan_contract(case, Nq):
        with key_tiled():
            check_nan_contract("triton", case, True, Nq)

    def test_triton_bad_lengths():
        q, k, v, _, _ = make_inputs(2, 1, 1, 3, 4, seed=5)
        with pytest.raises(InterleavedAttentionInputError, match="lengths"):
            interleaved_attention(q, k, v, torch.tensor([4, 0]), 1, backend="triton")

    @pytest.mark.parametrize("case", NAN_CASES)
    @pytest.mark.parametrize("rope,Nq", [(False, None), (True, None), (True, 3)], ids=["self", "self-rope", "pma-rope"])
    def test_triton_nan_contract(case, rope, Nq):
        check_nan_contract("triton", case, rope, Nq)
