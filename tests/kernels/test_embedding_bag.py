"""embedding_bag_collection on the CPU: the C++ kernels and the op plumbing against the PyTorch reference.

(The Triton kernels run under the interpreter in test_embedding_bag_triton.py.)
"""
from __future__ import annotations

import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ctrbench.kernels.embedding_bag import (
    EmbeddingBagConfig,
    EmbeddingBagInputError,
    FusedEmbeddingBagCollection,
    concat_kjt,
    embedding_bag_collection,
    embedding_bag_collection_fused,
    kjt_from_ids,
    kjt_from_sequences,
)
from ctrbench.kernels.embedding_bag import op as ebc_op
from ctrbench.kernels.embedding_bag import reference as ref
from ebc_cases import HELPERS, bad_inputs, call_helper, check_backend, make_case

BACKENDS = ["reference", "cpp"]


# ---------------------------------------------------------------------------------------- parity


@settings(max_examples=25, deadline=None)
@given(
    rows=st.lists(st.integers(1, 12), min_size=1, max_size=4),
    B=st.integers(0, 6),
    D=st.sampled_from([1, 3, 5, 8, 16, 64]),
    max_len=st.integers(0, 5),
    idx64=st.booleans(),
    psw=st.booleans(),
    pooling=st.sampled_from(["sum", "mean"]),
    shared=st.booleans(),
    seed=st.integers(0, 10_000),
)
def test_cpp_matches_reference_random(rows, B, D, max_len, idx64, psw, pooling, shared, seed):
    ft = [k % len(rows) for k in range(len(rows) + 1)] if shared else None
    c = make_case(rows=rows, B=B, D=D, max_len=max_len, seed=seed, idx_dtype=torch.int64 if idx64 else torch.int32,
                  psw=psw, pooling=pooling, feature_table=ft)
    check_backend(c, "cpp")


EDGE_CASES = {
    "empty_bags": dict(lengths=[0, 2, 0, 1, 0, 0, 3, 0, 1, 0, 0, 0, 2, 0, 1]),
    "all_bags_empty": dict(lengths=[0] * 15),
    "one_table": dict(rows=(6,), lengths=[1, 3, 0, 2, 2]),
    "one_row": dict(rows=(1, 1, 1), max_len=4),
    "odd_dim_3": dict(D=3),
    "odd_dim_5": dict(D=5, psw=True, pooling="mean"),
    "duplicates_in_bag": dict(dup=True, max_len=6),
    "last_row": dict(last_row=True, max_len=4),
    "int32_ids": dict(idx_dtype=torch.int32, psw=True),
    "mean_pooling": dict(pooling="mean", max_len=5),
    "psw_sum": dict(psw=True, max_len=5),
    "shared_tables": dict(rows=(4, 9), feature_table=[0, 1, 1, 0]),
    "batch_zero": dict(B=0),
    "dim_128": dict(D=128, rows=(50, 70), B=9, max_len=8),
    "big_sparse_table": dict(rows=(200_000, 7), D=3, max_len=4, psw=True, pooling="mean", dup=False),  # sort path
    "big_sparse_table_dups": dict(rows=(200_000,), D=4, max_len=6, dup=True),  # sort path, repeated rows
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", list(EDGE_CASES))
def test_edge_cases(name, backend):
    check_backend(make_case(**EDGE_CASES[name]), backend)


def test_float64_backends_agree():
    check_backend(make_case(dtype=torch.float64, psw=True, pooling="mean"), "cpp")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("pooling", ["sum", "mean"])
def test_gradcheck_float64(backend, pooling):
    c = make_case(rows=(3, 5), B=3, D=4, max_len=3, dtype=torch.float64, psw=True, pooling=pooling, dup=True)

    def f(w, p):
        return embedding_bag_collection(w, c.table_offsets, c.indices, c.offsets, p, pooling=pooling, backend=backend)

    w = c.weights.clone().requires_grad_()
    p = c.psw.clone().requires_grad_()
    assert torch.autograd.gradcheck(f, (w, p))


# ---------------------------------------------------------------------------------------- autograd modes


@pytest.mark.parametrize("backend", BACKENDS)
def test_dense_and_sparse_weight_grads(backend):
    c = make_case(rows=(6, 8, 3), B=4, D=5, max_len=4, psw=True, pooling="mean")
    g = torch.randn(c.B, c.F * c.D)
    w_ref = c.weights.clone().requires_grad_()
    ref.forward(w_ref, c.table_offsets, c.indices, c.offsets, c.psw, "mean").backward(g)
    for sparse in (False, True):
        w = c.weights.clone().requires_grad_()
        out = embedding_bag_collection(w, c.table_offsets, c.indices, c.offsets, c.psw, pooling="mean",
                                       backend=backend, sparse_grad=sparse)
        out.backward(g)
        assert w.grad.is_sparse == sparse
        dense = w.grad.to_dense() if sparse else w.grad
        torch.testing.assert_close(dense, w_ref.grad)


def test_fused_op_updates_in_place_and_returns_no_grad():
    c = make_case(rows=(6, 8), B=4, D=4, max_len=4)
    w = c.weights.clone().requires_grad_()
    m = torch.zeros(w.shape[0])
    g = torch.randn(c.B, c.F * c.D)
    out = embedding_bag_collection_fused(w, m, c.table_offsets, c.indices, c.offsets, optimizer="rowwise_adagrad",
                                         lr=0.5, backend="cpp")
    torch.testing.assert_close(out, ref.forward(c.weights, c.table_offsets, c.indices, c.offsets))
    out.backward(g)
    assert w.grad is None
    w2, m2 = c.weights.clone(), torch.zeros(w.shape[0])
    ref.fused_update_(w2, m2, g, c.table_offsets, c.indices, c.offsets, optimizer="rowwise_adagrad", lr=0.5)
    torch.testing.assert_close(w.detach(), w2)
    torch.testing.assert_close(m, m2)
    touched = torch.unique(ref.positions(c.table_offsets, None, c.offsets, c.indices, c.B)[2])
    untouched = torch.ones(w.shape[0], dtype=torch.bool)
    untouched[touched] = False
    assert torch.equal(w.detach()[untouched], c.weights[untouched]) and bool((m[untouched] == 0).all())


def test_deterministic_across_runs_and_thread_counts():
    c = make_case(rows=(500, 300), B=256, D=16, max_len=12, psw=True, pooling="mean", dup=True)
    g = torch.randn(c.B, c.F * c.D)
    results = []
    old = torch.get_num_threads()
    try:
        for threads in (1, 2, 2):
            torch.set_num_threads(threads)
            w, m = c.weights.clone(), torch.zeros(c.weights.shape[0])
            ebc_op.fused_update_(w, m, g, c.table_offsets, c.indices, c.offsets, c.psw, pooling="mean",
                                 optimizer="rowwise_adagrad", lr=0.1, backend="cpp")
            rows, grads = ebc_op.grad_rows(g, c.table_offsets, c.indices, c.offsets, c.psw, pooling="mean",
                                           backend="cpp")
            results.append((w, m, rows, grads))
    finally:
        torch.set_num_threads(old)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert torch.equal(a, b)


# ---------------------------------------------------------------------------------------- bad input


BAD = list(bad_inputs())


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", [b[0] for b in BAD])
def test_bad_input_raises_typed_error(name, backend):
    _, c, change, expect = next(b for b in BAD if b[0] == name)
    args = dict(weights=c.weights, table_offsets=c.table_offsets, indices=c.indices, offsets=c.offsets,
                per_sample_weights=None)
    args.update(change)
    with pytest.raises(EmbeddingBagInputError, match=re.escape(expect)):
        embedding_bag_collection(args["weights"], args["table_offsets"], args["indices"], args["offsets"],
                                 args["per_sample_weights"], backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("helper", HELPERS)
@pytest.mark.parametrize("name", [b[0] for b in BAD])
def test_helpers_bad_input_raises_typed_error(name, helper, backend):
    """grad_rows and fused_update_ check their inputs like the main op, before any row changes."""
    _, c, change, expect = next(b for b in BAD if b[0] == name)
    if helper == "grad_rows" and "weights" in change:
        expect = "grad_out"  # grad_rows takes no weights; its float 2-D input is grad_out
        change = dict(grad_out=torch.zeros(c.B, c.F * c.D, dtype=torch.long))
    weights = c.weights.clone()
    with pytest.raises(EmbeddingBagInputError, match=re.escape(expect)):
        call_helper(helper, backend, c, change, weights=weights)
    assert torch.equal(weights, c.weights)


@pytest.mark.parametrize("helper", HELPERS)
def test_helpers_bad_grad_out_shape(helper):
    c = make_case(rows=(4, 9, 1), B=5, D=3, lengths=[1] * 15)
    with pytest.raises(EmbeddingBagInputError, match=re.escape("grad_out must be [B=5, F*D=3*")):
        call_helper(helper, "cpp", c, dict(grad_out=torch.zeros(5, 10)))


def test_bad_id_error_names_feature_table_and_position():
    ebc = FusedEmbeddingBagCollection([EmbeddingBagConfig("user", 4, 3), EmbeddingBagConfig("item", 9, 3, ("item", "hist"))],
                                      backend="cpp")
    idx, offs = concat_kjt([kjt_from_ids(torch.tensor([[1, 2], [3, 8]])), kjt_from_sequences(torch.tensor([[0, 5], [9, 1]]))])
    with pytest.raises(EmbeddingBagInputError) as info:
        ebc(idx, offs)
    err = info.value
    assert (err.feature, err.table, err.position, err.value, err.bound) == (2, 1, 5, 9, 9)
    assert "'hist'" in str(err) and "'item'" in str(err) and "indices[5] = 9" in str(err)


# ---------------------------------------------------------------------------------------- torch.library


@pytest.mark.parametrize("backend", BACKENDS)
def test_opcheck(backend):
    c = make_case(rows=(4, 6), B=3, D=4, max_len=3, psw=True, pooling="mean")
    w = c.weights.clone().requires_grad_()
    p = c.psw.clone().requires_grad_()
    torch.library.opcheck(ebc_op.embedding_bag_collection_op,
                          (w, c.table_offsets, c.indices, c.offsets, p, None, "mean", backend, False, True))
    m = torch.zeros(w.shape[0])
    torch.library.opcheck(ebc_op.embedding_bag_collection_fused_op,
                          (w, m, c.table_offsets, c.indices, c.offsets, None, None, "sum", "rowwise_adagrad", 0.1,
                           1e-8, backend, True),
                          test_utils=("test_schema", "test_faketensor", "test_autograd_registration"))


def test_torch_compile_fullgraph_no_graph_break():
    torch._dynamo.reset()
    c = make_case(rows=(7, 9, 5), B=6, D=8, max_len=4)
    ebc = FusedEmbeddingBagCollection.from_sizes(["a", "b", "c"], [7, 9, 5], 8, backend="cpp")
    fused = FusedEmbeddingBagCollection.from_sizes(["a", "b", "c"], [7, 9, 5], 8, backend="cpp", optimizer="sgd", lr=0.3)
    fused.load_state_dict(ebc.state_dict(), strict=False)

    def loss_fn(module, idx, offs):
        out = module(idx, offs)
        return (out * out).sum(), out

    eager_loss, eager_out = loss_fn(ebc, c.indices, c.offsets)
    eager_loss.backward()
    eager_grad = ebc.weight.grad.clone()
    ebc.weight.grad = None
    compiled = torch.compile(loss_fn, fullgraph=True)  # fullgraph: any graph break is an error
    loss, out = compiled(ebc, c.indices, c.offsets)
    loss.backward()  # the backward graph (ebc_grad_rows) is compiled by AOTAutograd
    torch.testing.assert_close(out, eager_out)
    torch.testing.assert_close(ebc.weight.grad, eager_grad)
    before = fused.weight.detach().clone()
    loss, _ = compiled(fused, c.indices, c.offsets)
    loss.backward()  # fused: the backward applies SGD in place
    assert fused.weight.grad is None
    torch.testing.assert_close(fused.weight.detach(), before - 0.3 * eager_grad)


# ---------------------------------------------------------------------------------------- layout helpers


def test_kjt_from_ids_is_feature_major():
    ids = torch.tensor([[1, 5, 7], [2, 6, 0]])
    idx, offs = kjt_from_ids(ids)
    assert idx.tolist() == [1, 2, 5, 6, 7, 0] and offs.tolist() == list(range(7))
    idx, offs = kjt_from_ids(ids, padding_idx=0)
    assert idx.tolist() == [1, 2, 5, 6, 7] and offs.tolist() == [0, 1, 2, 3, 4, 5, 5]


def test_kjt_from_left_padded_sequences_and_concat():
    seqs = torch.tensor([[0, 0, 3, 4], [0, 0, 0, 0], [1, 2, 3, 4]])
    idx, offs = kjt_from_sequences(seqs)
    assert idx.tolist() == [3, 4, 1, 2, 3, 4] and offs.tolist() == [0, 2, 2, 6]
    both_idx, both_offs = concat_kjt([kjt_from_ids(torch.tensor([[9], [8], [7]])), (idx, offs)])
    assert both_idx.tolist() == [9, 8, 7, 3, 4, 1, 2, 3, 4] and both_offs.tolist() == [0, 1, 2, 3, 5, 5, 9]


# ---------------------------------------------------------------------------------------- module training


def _train(backend, optimizer, steps=15, sparse_grad=False):
    torch.manual_seed(0)
    tables = [EmbeddingBagConfig("u", 30, 4), EmbeddingBagConfig("i", 50, 4, ("i", "hist")), EmbeddingBagConfig("c", 7, 4)]
    ebc = FusedEmbeddingBagCollection(tables, optimizer=optimizer, lr=0.2, backend=backend, sparse_grad=sparse_grad,
                                      pooling="mean")
    head = torch.nn.Linear(ebc.num_features * 4, 1)
    params = list(head.parameters()) + ([ebc.weight] if optimizer == "none" else [])
    opt = torch.optim.SGD(params, lr=0.2) if not sparse_grad else torch.optim.SGD(params, lr=0.2)
    gen = torch.Generator().manual_seed(1)
    losses = []
    for _ in range(steps):
        single = torch.stack([torch.randint(0, 30, (16,), generator=gen), torch.randint(0, 50, (16,), generator=gen)], 1)
        hist = torch.randint(0, 50, (16, 5), generator=gen) * (torch.rand(16, 5, generator=gen) > 0.3)
        cat = torch.randint(0, 7, (16, 1), generator=gen)
        idx, offs = concat_kjt([kjt_from_ids(single), kjt_from_sequences(hist), kjt_from_ids(cat)])
        y = (single[:, 0] % 2).float()
        logit = head(ebc(idx, offs)).squeeze(1)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logit, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return ebc, head, losses


@pytest.mark.parametrize("optimizer,sparse", [("rowwise_adagrad", False), ("sgd", False), ("none", True)])
def test_module_training_matches_reference_backend(optimizer, sparse):
    e1, h1, l1 = _train("cpp", optimizer, sparse_grad=sparse)
    e2, h2, l2 = _train("reference", optimizer, sparse_grad=sparse)
    assert l1[-1] < l1[0]
    torch.testing.assert_close(torch.tensor(l1), torch.tensor(l2), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(e1.weight, e2.weight, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(e1.momentum, e2.momentum, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(h1.weight, h2.weight, rtol=1e-5, atol=1e-6)
