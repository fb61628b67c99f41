"""Every backend that runs on CUDA tensors (reference, triton, cuda) against the reference, forward and gradients,
on small shapes; the NaN contract of interleaved_attention and the typed bad-id errors of the embedding-bag helpers
on the GPU. Skipped with the reason where CUDA is absent (CI, this project's CPU boxes); `.ci/gpu_check pytest`
runs them on a GPU box. A backend that cannot run there (e.g. the extension built without CUDA) is skipped with
backend_status's reason.
"""
from __future__ import annotations

import re

import pytest
import torch

from ctrbench.kernels.backend import backend_status
from ctrbench.kernels.embedding_bag import EmbeddingBagInputError
from ebc_cases import HELPERS, call_helper, make_case
from ebc_cases import check_backend as check_ebc
from ewf_cases import check_backend as check_ewf
from ewf_cases import make_logits
from ia_cases import NAN_CASES, check_nan_contract
from ia_cases import check_backend as check_ia

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="no CUDA device (torch.cuda.is_available() is False)")

BACKENDS = ("reference", "triton", "cuda")
DEVICE = "cuda"


def need(backend: str) -> None:
    """Skip with the reason when `backend` cannot run on CUDA tensors here."""
    status = {s.name: s for s in backend_status(DEVICE)}[backend]
    if not status.available:
        pytest.skip(f"backend {backend!r} unavailable on CUDA: {status.reason}")


def ia_tol(backend: str) -> dict:
    """Triton's products run in TF32 on the GPU."""
    return dict(atol=5e-3, rtol=5e-3) if backend == "triton" else dict(atol=2e-5, rtol=2e-5)


# ------------------------------------------------------------------------------------ interleaved_attention

IA_SHAPES = {  # (B, H, P, T, Dh, rope, Nq)
    "self_rope": (4, 2, 4, 20, 16, True, None),
    "self_odd_dim": (3, 2, 0, 12, 5, False, None),
    "pma_rope": (4, 2, 4, 20, 8, True, 2),
    "two_key_tiles": (3, 1, 4, 140, 8, True, None),
    "beyond_one_backward_key_tile": (3, 2, 4, 300, 16, True, None),  # Triton's key-tiled backward
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", list(IA_SHAPES))
def test_interleaved_attention_matches_reference(backend, shape):
    need(backend)
    lengths = torch.tensor([0, IA_SHAPES[shape][3]] + [IA_SHAPES[shape][3] // 2] * (IA_SHAPES[shape][0] - 2))
    check_ia(backend, *IA_SHAPES[shape], lengths=lengths, device=DEVICE, **ia_tol(backend))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", NAN_CASES)
@pytest.mark.parametrize("rope,Nq", [(False, None), (True, None), (True, 3)], ids=["self", "self-rope", "pma-rope"])
def test_interleaved_attention_nan_contract(backend, case, rope, Nq):
    need(backend)
    check_nan_contract(backend, case, rope, Nq, device=DEVICE, **ia_tol(backend))


# ------------------------------------------------------------------------------------ embedding_bag_collection

EBC_CASES = {
    "sum_int64": dict(),
    "mean_psw_int32": dict(pooling="mean", psw=True, idx_dtype=torch.int32),
    "shared_tables_dup": dict(rows=(4, 9), feature_table=[0, 1, 1], dup=True, D=5),
    "last_row_empty_bags": dict(lengths=[0, 3, 0, 2, 0, 1] * 3, last_row=True),
}  # float32 only: the triton and cuda backends compute float64 weights in float32


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", list(EBC_CASES))
def test_embedding_bag_matches_reference(backend, name):
    need(backend)
    check_ebc(make_case(**{"B": 6, **EBC_CASES[name]}, device=DEVICE), backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("helper", HELPERS)
@pytest.mark.parametrize("pos,value", [(3, 9), (6, -5)])
def test_embedding_bag_helpers_bad_ids_raise(backend, helper, pos, value):
    need(backend)
    c = make_case(rows=(4, 9, 1), B=3, lengths=[1] * 9, device=DEVICE)
    weights = c.weights.clone()
    bad = c.indices.clone()
    bad[pos] = value
    with pytest.raises(EmbeddingBagInputError, match=re.escape(f"indices[{pos}] = {value}")):
        call_helper(helper, backend, c, dict(indices=bad), weights=weights)
    assert torch.equal(weights, c.weights)


# ------------------------------------------------------------------------------------ entropy_weighted_fusion

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("space", ["prob", "logit"])
@pytest.mark.parametrize("detach", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_entropy_fusion_matches_reference(backend, space, detach, dtype):
    need(backend)
    check_ewf(backend, make_logits(37, 4, dtype, seed=3).to(DEVICE), 0.7, space, detach)
