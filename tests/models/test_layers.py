"""Shared layers and the embedding collection against brute-force definitions."""
import itertools

import numpy as np
import pytest
import torch

from ctrbench.data.loader import BatchLoader
from ctrbench.models.embedding import EmbeddingCollection, EmbeddingIndexError
from ctrbench.models.layers import CrossNetMix, CrossNetV2, DotInteraction, FMInteraction, MLP, masked_average_pool
from ctrbench.models.registry import model_tables


def test_fm_matches_pairwise_sum():
    e = torch.randn(5, 4, 3, dtype=torch.float64)
    brute = sum((e[:, i] * e[:, j]).sum(-1) for i, j in itertools.combinations(range(4), 2))
    torch.testing.assert_close(FMInteraction()(e), brute)


def test_dot_interaction_is_upper_triangle():
    e = torch.randn(3, 5, 2)
    out = DotInteraction(5)(e)
    brute = torch.stack([(e[:, i] * e[:, j]).sum(-1) for i, j in itertools.combinations(range(5), 2)], 1)
    torch.testing.assert_close(out, brute)
    with pytest.raises(ValueError, match="5 fields"):
        DotInteraction(5)(torch.randn(3, 4, 2))


def test_masked_average_pool():
    e = torch.randn(2, 4, 3)
    mask = torch.tensor([[0, 1, 1, 0], [0, 0, 0, 0]], dtype=torch.bool)
    out = masked_average_pool(e, mask)
    torch.testing.assert_close(out[0], (e[0, 1] + e[0, 2]) / 2)
    torch.testing.assert_close(out[1], torch.zeros(3))


def test_cross_networks():
    x0 = torch.randn(6, 8)
    full = CrossNetV2(8, 2)
    w, b = full.layers[0].weight, full.layers[0].bias
    x1 = x0 * (x0 @ w.T + b) + x0
    torch.testing.assert_close(CrossNetV2.forward(type("One", (), {"layers": full.layers[:1]})(), x0), x1)
    low = CrossNetV2(8, 3, low_rank=2)
    assert low(x0).shape == (6, 8) and low.layers[0][0].weight.shape == (2, 8)
    mix = CrossNetMix(8, 2, low_rank=3, num_experts=4)
    assert mix(x0).shape == (6, 8)
    # one expert with its gate: softmax over a single expert is 1, so the layer is the expert plus x
    one = CrossNetMix(8, 1, low_rank=3, num_experts=1)
    v = torch.tanh(x0 @ one.V[0, 0])
    v = torch.tanh(v @ one.C[0, 0].T)
    expected = x0 * (v @ one.U[0, 0].T + one.bias[0]) + x0
    torch.testing.assert_close(one(x0), expected)


def test_mlp_layers():
    m = MLP(4, [8, 6], 1, dropout=0.1, batch_norm=True)
    assert m(torch.randn(5, 4)).shape == (5, 1)
    kinds = [type(x).__name__ for x in m.net]
    assert kinds == ["Linear", "BatchNorm1d", "ReLU", "Dropout", "Linear", "BatchNorm1d", "ReLU", "Dropout", "Linear"]


def _batch(cache, n=64):
    return next(iter(BatchLoader(cache, "train", n)))


def test_packed_lookup_matches_per_field_tables(tiny_caches):
    cache = tiny_caches["amazonelectronics_x1"]
    emb = EmbeddingCollection(cache.spec, cache.vocab_sizes, 4)
    b = _batch(cache)
    out = emb(b)
    assert emb.field_names == ["item_id", "item_history", "cate_id", "cate_history"]
    assert out.shape == (64, 4, 4)
    ids = b.sparse.to_dense()
    for k, name in enumerate(emb.cat_names):
        table = emb.weight[emb.table_offsets[k]: emb.table_offsets[k] + emb.table_sizes[k]]
        expect = table[ids[:, k]] * (ids[:, k] != 0).unsqueeze(1)
        torch.testing.assert_close(out[:, emb.field_names.index(name)], expect)
    fields, tokens = emb.lookup(b, {name: b.sequences[name] for name in emb.packed_seqs})  # pooled and unpooled
    torch.testing.assert_close(fields, out)
    for name in emb.packed_seqs:
        mask = b.sequences[name] != 0
        torch.testing.assert_close(out[:, emb.field_names.index(name)], masked_average_pool(tokens[name], mask))


def test_padding_rows_are_zero_and_get_no_gradient(tiny_caches):
    cache = tiny_caches["amazonelectronics_x1"]
    emb = EmbeddingCollection(cache.spec, cache.vocab_sizes, 4)
    assert torch.all(emb.weight[emb.table_offsets] == 0)
    b = _batch(cache)
    emb(b).sum().backward()
    assert torch.all(emb.weight.grad[0] == 0)


def test_sparse_gradients(tiny_caches):
    cache = tiny_caches["criteo_x1"]
    emb = EmbeddingCollection(cache.spec, cache.vocab_sizes, 3, sparse=True)
    emb(_batch(cache)).sum().backward()
    assert emb.weight.grad.is_sparse
    assert emb.numeric.grad is not None and not emb.numeric.grad.is_sparse


def test_numeric_fields_scale_a_vector(tiny_caches):
    cache = tiny_caches["criteo_x1"]
    emb = EmbeddingCollection(cache.spec, cache.vocab_sizes, 3)
    b = _batch(cache)
    out = emb(b)
    assert out.shape[1] == 26 + 13
    torch.testing.assert_close(out[:, 26:], b.dense.unsqueeze(-1) * emb.numeric)


def test_pretrained_is_frozen_and_projected(tiny_caches):
    cache = tiny_caches["kuaivideo_x1"]
    tables = model_tables(cache)
    emb = EmbeddingCollection(cache.spec, cache.vocab_sizes, 5, tables=tables)
    b = _batch(cache)
    out = emb(b)
    assert emb.field_names[-3:] == ["item_emb", "pos_items_emb", "neg_items_emb"]
    frozen = torch.from_numpy(np.array(tables["item_emb"]))
    proj = emb.projections["item_emb"]
    torch.testing.assert_close(out[:, -3], proj(frozen[b.pretrained["item_emb"]]))
    seq = b.sequences["pos_items_emb"]
    torch.testing.assert_close(out[:, -2], proj(masked_average_pool(frozen[seq], seq != 0)))
    assert not any("frozen" in n for n, _ in emb.named_parameters())
    assert "frozen_item_emb" not in emb.state_dict()
    with pytest.raises(ValueError, match="item_emb"):
        EmbeddingCollection(cache.spec, cache.vocab_sizes, 5)


def test_out_of_vocabulary_id_names_the_field_in_debug_mode(tiny_caches):
    cache = tiny_caches["amazonelectronics_x1"]
    for backend in ("torch", "fused"):
        emb = EmbeddingCollection(cache.spec, cache.vocab_sizes, 4, backend=backend, validate_ids=True)
        b = _batch(cache, 8)
        b.sparse.values[8 + 3] = cache.vocab_sizes["cate_id"]  # field 1 (cate_id), sample 3
        with pytest.raises(EmbeddingIndexError, match="cate_id"):
            emb(b)
        b = _batch(cache, 8)
        b.sequences["item_history"][0, -1] = -1
        with pytest.raises(EmbeddingIndexError, match="item_history"):
            emb(b)


def test_the_loader_checks_every_batch_and_names_field_split_and_row(tiny_caches):
    cache = tiny_caches["amazonelectronics_x1"]
    loader = BatchLoader(cache, "train", 8)
    cat = np.array(loader._blocks["categorical"])
    cat[11, 1] = cache.vocab_sizes["cate_id"]
    loader._blocks["categorical"] = cat
    next(iter(loader))  # rows 0-7 are fine
    with pytest.raises(EmbeddingIndexError, match=r"'cate_id'.*split 'train', row 11"):
        list(loader)
    loader = BatchLoader(cache, "valid", 8)
    seq = np.array(loader._blocks["seq__item_history"])
    seq[2, -1] = -3
    loader._blocks["seq__item_history"] = seq
    with pytest.raises(EmbeddingIndexError, match=r"'item_history'.*-3.*row 2"):
        next(iter(loader))