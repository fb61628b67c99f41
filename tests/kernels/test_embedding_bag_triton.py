"""The Triton embedding_bag_collection kernels under TRITON_INTERPRET=1 (CPU tensors), against the reference.

The tests run in a child pytest process started with TRITON_INTERPRET=1 (triton_interp.py says why).
Shapes are tiny: the interpreter runs ~1 ms per program.
"""
from __future__ import annotations

import re

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
    from ctrbench.kernels.embedding_bag import EmbeddingBagInputError, embedding_bag_collection
    from ebc_cases import HELPERS, bad_inputs, call_helper, check_backend, make_case

    def test_triton_backend_is_available_under_interpreter():
        assert resolve_backend("triton", "cpu") == "triton"

    CASES = {
        "sum_int64": dict(),
        "mean_psw_int32": dict(pooling="mean", psw=True, idx_dtype=torch.int32),
        "empty_and_dup": dict(B=5, lengths=[0, 3, 0, 2, 0, 1, 0, 0, 4, 0, 0, 0, 2, 0, 1], dup=True),
        "all_empty": dict(B=5, lengths=[0] * 15),
        "one_table_one_row_odd_dim": dict(rows=(1,), D=3, max_len=4),
        "last_row_shared_tables": dict(rows=(4, 9), feature_table=[0, 1, 1], last_row=True, D=5),
    }

    @pytest.mark.parametrize("name", list(CASES))
    def test_triton_matches_reference(name):
        check_backend(make_case(**{"B": 4, **CASES[name]}), "triton")

    @settings(max_examples=6, deadline=None)
    @given(rows=st.lists(st.integers(1, 9), min_size=1, max_size=3), B=st.integers(1, 4),
           D=st.sampled_from([2, 7, 16]), psw=st.booleans(), pooling=st.sampled_from(["sum", "mean"]),
           seed=st.integers(0, 1000))
    def test_triton_matches_reference_random(rows, B, D, psw, pooling, seed):
        check_backend(make_case(rows=rows, B=B, D=D, max_len=4, psw=psw, pooling=pooling, seed=seed), "triton",
                      steps=1)

    @pytest.mark.parametrize("where,value,expect", [(3, 9, "indices[3] = 9"), (6, -2, "indices[6] = -2")])
    def test_triton_bad_ids_raise(where, value, expect):
        c = make_case(rows=(4, 9, 1), B=3, lengths=[1] * 9)
        idx = c.indices.clone()
        idx[where] = value
        with pytest.raises(EmbeddingBagInputError, match=re.escape(expect)):
            embedding_bag_collection(c.weights, c.table_offsets, idx, c.offsets, backend="triton")

    def test_triton_bad_offsets_raise():
        c = make_case(rows=(4, 9, 1), B=3, lengths=[1] * 9)
        offs = c.offsets.clone()
        offs[4] = 1
        with pytest.raises(EmbeddingBagInputError, match="non-decreasing"):
            embedding_bag_collection(c.weights, c.table_offsets, c.indices, offs, backend="triton")

    BAD_VALUES = [b for b in bad_inputs() if b[0].startswith(("id_", "offsets_"))]

    @pytest.mark.parametrize("helper", HELPERS)
    @pytest.mark.parametrize("name", [b[0] for b in BAD_VALUES])
    def test_triton_helpers_bad_input_raises_typed_error(name, helper):
        _, c, change, expect = next(b for b in BAD_VALUES if b[0] == name)
        weights = c.weights.clone()
        with pytest.raises(EmbeddingBagInputError, match=re.escape(expect)):
            call_helper(helper, "triton", c, change, weights=weights)
        assert torch.equal(weights, c.weights)
