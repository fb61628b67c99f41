"""The AVX2 fp32 forward of the cpp backend (D in 8..128): parity with the reference on shapes that use both
threads, streaming stores and every D it specialises, and the checks it does inside its loop (bad ids and
offsets raise the same typed errors as the reference, at the same position, never a bad read)."""
from __future__ import annotations

import re

import pytest
import torch

from ctrbench.kernels.embedding_bag import EmbeddingBagInputError, embedding_bag_collection
from ctrbench.kernels.embedding_bag import reference as ref
from ebc_cases import make_case

DIMS = [8, 16, 32, 64, 128]


def _fwd(c, backend, **kw):
    args = dict(weights=c.weights, table_offsets=c.table_offsets, indices=c.indices, offsets=c.offsets,
                per_sample_weights=c.psw)
    args.update(kw)
    return embedding_bag_collection(args["weights"], args["table_offsets"], args["indices"], args["offsets"],
                                    args["per_sample_weights"], feature_table=c.feature_table, pooling=c.pooling,
                                    backend=backend)


@pytest.mark.parametrize("D", DIMS)
@pytest.mark.parametrize("psw,pooling,idx_dtype", [(False, "sum", torch.int64), (True, "mean", torch.int32)])
def test_parallel_forward_matches_reference(D, psw, pooling, idx_dtype):
    # big enough for the threaded path (work >= 2^18 floats), with empty bags and a shared table
    c = make_case(rows=(300, 50, 7), B=2500, D=D, max_len=6, seed=D, idx_dtype=idx_dtype, psw=psw, pooling=pooling,
                  feature_table=[0, 1, 2, 1])
    old = torch.get_num_threads()
    try:
        outs = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            outs.append(_fwd(c, "cpp"))
    finally:
        torch.set_num_threads(old)
    want = ref.forward(c.weights, c.table_offsets, c.indices, c.offsets, c.psw, c.pooling, c.feature_table)
    torch.testing.assert_close(outs[0], want, rtol=1e-5, atol=1e-5)
    assert torch.equal(outs[0], outs[1])  # each bag summed by one thread, in id order


def test_streaming_store_path_matches_reference():
    # output F*B*D*4 bytes >= 16 MiB takes the streaming-store variant
    c = make_case(rows=(97, 5), B=33_000, D=64, max_len=2, seed=3)
    assert c.F * c.B * c.D * 4 >= 16 << 20
    want = ref.forward(c.weights, c.table_offsets, c.indices, c.offsets, c.psw, c.pooling, c.feature_table)
    torch.testing.assert_close(_fwd(c, "cpp"), want, rtol=1e-5, atol=1e-5)


def _bad_offsets_cases():
    c = make_case(rows=(4, 9, 1), B=5, D=8, lengths=[2] * 15)  # offsets 0, 2, ..., 30
    o = c.offsets
    yield "decrease", c, o.clone().index_fill_(0, torch.tensor([5]), 3), "offsets[5] = 3 < offsets[4] = 8"
    # a bag that runs past len(indices) before the decrease: the decrease is reported, nothing read past the end
    yield "past_end_then_decrease", c, o.clone().index_fill_(0, torch.tensor([3]), 10_000), "offsets[4] = 8 < offsets[3]"
    yield "negative_then_back", c, o.clone().index_fill_(0, torch.tensor([2]), -5), "offsets[2] = -5 < offsets[1] = 2"
    yield "last_too_big", c, torch.cat([o[:-1], o[-1:] + 4]), "must equal len(indices)"
    yield "last_too_small", c, torch.cat([o[:-1], o[-1:] - 1]), "must equal len(indices)"
    yield "first_not_zero", c, o + 1, "offsets[0]"


@pytest.mark.parametrize("name", [b[0] for b in _bad_offsets_cases()])
def test_bad_offsets_same_error_as_reference(name):
    _, c, offs, expect = next(b for b in _bad_offsets_cases() if b[0] == name)
    for backend in ("reference", "cpp"):
        with pytest.raises(EmbeddingBagInputError, match=re.escape(expect)):
            _fwd(c, backend, offsets=offs)


@pytest.mark.parametrize("idx_dtype", [torch.int32, torch.int64])
def test_first_bad_id_reported_with_threads(idx_dtype):
    c = make_case(rows=(300, 50), B=4000, D=16, max_len=4, seed=5, idx_dtype=idx_dtype)
    idx = c.indices.clone()
    n = idx.shape[0]
    idx[n - 3] = 50  # feature 1 (50 rows): out of range, late
    idx[n // 4] = -1  # feature 0: negative, earlier
    errs = []
    for backend in ("reference", "cpp"):
        with pytest.raises(EmbeddingBagInputError) as info:
            _fwd(c, backend, indices=idx)
        errs.append(info.value)
    assert errs[1].position == errs[0].position == n // 4
    assert (errs[1].feature, errs[1].table, errs[1].value) == (0, 0, -1)


def test_huge_page_weights_behave_like_plain_ones():
    from ctrbench.kernels.embedding_bag import FusedEmbeddingBagCollection
    from ctrbench.kernels.embedding_bag.hugepages import MIN_BYTES, empty_huge, thp_mode

    assert empty_huge(10, 8, torch.float32) is None  # small tables keep torch's allocator
    rows = MIN_BYTES // (64 * 4) + 1000
    mods = []
    for huge in (True, False):
        torch.manual_seed(0)
        mods.append(FusedEmbeddingBagCollection.from_sizes(["a", "b"], [rows, 50], 64, optimizer="sgd", lr=0.5,
                                                           backend="cpp", huge_pages=huge))
    if thp_mode() in ("always", "madvise"):
        assert empty_huge(rows, 64, torch.float32) is not None
    assert torch.equal(mods[0].weight, mods[1].weight)
    g = torch.Generator().manual_seed(1)
    idx = torch.cat([torch.randint(0, rows, (300,), generator=g), torch.randint(0, 50, (300,), generator=g)])
    offs = torch.arange(0, 601, 3)
    outs = []
    for m in mods:
        out = m(idx, offs)
        out.square().sum().backward()  # fused SGD step on the weights
        outs.append(out.detach())
    assert torch.equal(outs[0], outs[1]) and torch.equal(mods[0].weight, mods[1].weight)
