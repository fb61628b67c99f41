"""The baselines of the InterFormer and CETNet tables: the sequential models (DIN, DIEN, BST, TransAct, DMIN, DMR) on the three
sequential layouts and the interaction models (FmFM, DOT, Wukong, xDeepFM, AutoInt+) on a tabular and a
sequential one train; left padding is respected (padded ids are invisible, the most recent id matters, a row
does not depend on its batch), empty histories stay finite; the shared layers match their plain definitions."""
import dataclasses

import pydantic
import pytest
import torch
import torch.nn.functional as F

from ctrbench.data.loader import BatchLoader
from ctrbench.models import MODELS, build_model, model_tables
from ctrbench.models.layers.autoint import InteractingLayer
from ctrbench.models.layers.behaviour import BARS_GROUPS, resolve_groups
from ctrbench.models.layers.cin import CIN
from ctrbench.models.layers.fm import fm_second_order
from ctrbench.models.layers.gru import PackedGRU, pack_behaviours
from ctrbench.models.layers.target_attention import TargetAttention, segment_softmax
from ctrbench.models.layers.transformer import SequenceEncoder
from ctrbench.models.layers.wukong import WukongLayer
from tiny_cache import build_tiny_cache

SEQUENTIAL = {
    "din": {"attention_hidden_units": [16]},
    "dien": {"attention_hidden_units": [16], "aux_loss_weight": 0.5, "aux_hidden_units": [8]},
    "bst": {"num_heads": 2},
    "transact": {"ffn_dim": 16, "first_k": 2, "dcn_cross_layers": 1},
    "dmin": {"num_heads": 2, "attention_hidden_units": [8], "pos_emb_dim": 4},
    "dmr": {"attention_hidden_units": [8], "pos_emb_dim": 4, "enable_i2i_rel": True},
}
INTERACTION = {
    "fmfm": {},
    "dot": {},
    "wukong": {"num_fmb_tokens": 3, "num_lcb_tokens": 2, "fmb_rank": 2, "fmb_hidden_units": [16]},
    "xdeepfm": {"cin_hidden_units": [4, 4]},
    "autoint_plus": {"attention_dim": 8, "num_heads": 2},
}
SMALL = {"embedding_dim": 8, "hidden_units": [16]}


@pytest.fixture(scope="module")
def caches(tiny_caches, tmp_path_factory):
    """criteo/amazon/kuai from the shared tiny caches plus a tiny taobao (numeric field, three sequences)."""
    taobao = build_tiny_cache("taobaoad_x1", tmp_path_factory.mktemp("tiny_taobao_bl") / "t", rows=1200)
    return {**tiny_caches, "taobaoad_x1": taobao}


def _model(name, cache, **extra):
    params = {**SMALL, **SEQUENTIAL.get(name, {}), **INTERACTION.get(name, {}), **extra}
    if name == "fmfm":
        params.pop("hidden_units")
    return build_model(name, cache.spec, cache.vocab_sizes, params, model_tables(cache), seed=0)


def _batch(cache, n=64, split="valid"):
    return next(iter(BatchLoader(cache, split, n)))


def _loss_falls(model, cache, steps=4, n_batches=3, lr=1e-2):
    batches = [b for _, b in zip(range(n_batches), BatchLoader(cache, "train", 256))]
    opt = torch.optim.Adam(model.parameters(), lr=lr)

    def total():
        model.eval()
        with torch.no_grad():
            out = sum(F.binary_cross_entropy_with_logits(model(b), b.label).item() for b in batches)
        model.train()
        return out

    before = total()
    for _ in range(steps):
        for b in batches:
            loss = F.binary_cross_entropy_with_logits(model(b), b.label)
            aux = model.aux_loss()
            if aux is not None:
                loss = loss + aux
            opt.zero_grad()
            loss.backward()
            opt.step()
    return before, total()


def test_registered_and_params_strict(caches):
    assert set(SEQUENTIAL) | set(INTERACTION) <= set(MODELS)
    cache = caches["amazonelectronics_x1"]
    for name in [*SEQUENTIAL, *INTERACTION]:
        with pytest.raises(pydantic.ValidationError):
            build_model(name, cache.spec, cache.vocab_sizes, {"no_such_knob": 1})


@pytest.mark.parametrize("dataset", ["amazonelectronics_x1", "taobaoad_x1", "kuaivideo_x1"])
@pytest.mark.parametrize("name", list(SEQUENTIAL))
def test_sequential_forward_backward(name, dataset, caches):
    cache = caches[dataset]
    model = _model(name, cache).train()
    b = _batch(cache)
    out = model(b)
    assert out.shape == (64,) and torch.isfinite(out).all()
    loss = F.binary_cross_entropy_with_logits(out, b.label)
    aux = model.aux_loss()
    if name == "dien":
        assert aux is not None and torch.isfinite(aux) and aux > 0
        loss = loss + aux
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, missing
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("name", list(SEQUENTIAL))
def test_sequential_loss_falls(name, caches):
    before, after = _loss_falls(_model(name, caches["amazonelectronics_x1"]), caches["amazonelectronics_x1"])
    assert after < before - 0.02, (before, after)


@pytest.mark.parametrize("dataset", ["criteo_x1", "amazonelectronics_x1"])
@pytest.mark.parametrize("name", list(INTERACTION))
def test_interaction_models_learn(name, dataset, caches):
    cache = caches[dataset]
    model = _model(name, cache)
    out = model(_batch(cache))
    assert out.shape == (64,) and torch.isfinite(out).all()
    before, after = _loss_falls(model, cache)
    assert after < before - 0.01, (before, after)


def _noise_padding(b, cache, seed=0):
    """The batch with random ids at every padded slot, and with each non-empty row's most recent id changed."""
    g = torch.Generator().manual_seed(seed)
    padded, recent = {}, {}
    for name, s in b.sequences.items():
        t = s.shape[1]
        pad = torch.arange(t)[None, :] < (t - b.lengths[name])[:, None]
        noise = torch.randint(1, cache.vocab_sizes[name] - 1, s.shape, generator=g)
        padded[name] = torch.where(pad, noise, s)
        last = s.clone()
        last[:, -1] = torch.where(b.lengths[name] > 0, noise[:, -1], s[:, -1])
        recent[name] = last
    return dataclasses.replace(b, sequences=padded), dataclasses.replace(b, sequences=recent)


@pytest.mark.parametrize("dataset", ["amazonelectronics_x1", "kuaivideo_x1"])
@pytest.mark.parametrize("name", list(SEQUENTIAL))
def test_padded_ids_are_invisible(name, dataset, caches):
    cache = caches[dataset]
    model = _model(name, cache, embedding_init_std=0.1).eval()  # visible embeddings (the default 1e-4 is ~0)
    b = _batch(cache)
    padded, recent = _noise_padding(b, cache)
    with torch.no_grad():
        ref, out, moved = model(b), model(padded), model(recent)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    assert (moved - ref).abs().max() > 1e-4  # the valid ids do matter (the test can fail)


def _rows(b, idx):
    return dataclasses.replace(
        b, dense=b.dense[idx], label=b.label[idx], sparse=type(b.sparse).from_single_valued(b.sparse.keys,
                                                                                          b.sparse.to_dense()[idx]),
        sequences={k: v[idx] for k, v in b.sequences.items()}, lengths={k: v[idx] for k, v in b.lengths.items()},
        pretrained={k: v[idx] for k, v in b.pretrained.items()}, group_id=None, oracle_p=None)


@pytest.mark.parametrize("name", list(SEQUENTIAL))
def test_rows_do_not_depend_on_their_batch(name, caches):
    """A row's output is the same in its batch and among short-history rows alone (jagged packing, length
    buckets and trimming are exact); BST/TransAct encode in several buckets here."""
    cache = caches["amazonelectronics_x1"]
    model = _model(name, cache, embedding_init_std=0.1).eval()
    encoders = [m for m in model.modules() if isinstance(m, SequenceEncoder)]
    assert bool(encoders) == (name in ("bst", "transact"))
    for m in encoders:
        m.chunk_rows = 16
    if name == "dmin":
        model.params.chunk_rows = 16
    b = _batch(cache, 128)
    lengths = torch.stack(list(b.lengths.values())).amax(0)
    short = (lengths <= 4).nonzero().flatten()
    assert 0 < len(short) < 128
    with torch.no_grad():
        torch.testing.assert_close(model(_rows(b, short)), model(b)[short], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", list(SEQUENTIAL))
def test_empty_histories_are_finite(name, caches):
    cache = caches["kuaivideo_x1"]
    model = _model(name, cache, embedding_init_std=0.1).train()
    b = _batch(cache)
    empty = torch.arange(64) % 3 == 0
    g = torch.Generator().manual_seed(1)
    seqs = {k: torch.where(empty[:, None], torch.randint(1, cache.vocab_sizes[k] - 1, v.shape, generator=g), v)
            for k, v in b.sequences.items()}  # junk ids at the (all padded) slots of the empty rows
    lens = {k: torch.where(empty, 0, v) for k, v in b.lengths.items()}
    eb = dataclasses.replace(b, sequences=seqs, lengths=lens)
    out = model(eb)
    loss = F.binary_cross_entropy_with_logits(out, b.label)
    if model.aux_loss() is not None:
        loss = loss + model.aux_loss()
    loss.backward()
    assert torch.isfinite(out).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    model.eval()
    clean = dataclasses.replace(eb, sequences={k: torch.where(empty[:, None], 0, v) for k, v in seqs.items()})
    with torch.no_grad():
        torch.testing.assert_close(model(eb)[empty], model(clean)[empty])
    all_empty = dataclasses.replace(eb, lengths={k: torch.zeros_like(v) for k, v in lens.items()})
    with torch.no_grad():
        assert torch.isfinite(model(all_empty)).all()


def test_dien_aux_loss_switch(caches):
    cache = caches["amazonelectronics_x1"]
    b = _batch(cache)
    off = _model("dien", cache, aux_loss_weight=0.0)
    off(b)
    assert off.aux_loss() is None and off.aux_nets is None
    on = _model("dien", cache).eval()
    on(b)
    assert on.aux_loss() is None  # only after a training forward
    on.train()
    on(b)
    on.aux_loss().backward()
    assert all(p.grad is not None for p in on.aux_nets.parameters())
    assert on.extractors[0].x2h.weight.grad.abs().sum() > 0  # the aux loss trains the interest extractor


# ------------------------------------------------------------------------------------------------ layers


def test_groups_follow_bars_and_fall_back_per_field(caches):
    amazon = caches["amazonelectronics_x1"].spec
    groups = resolve_groups(amazon, None)
    assert [g.sequences for g in groups] == [tuple(BARS_GROUPS["amazonelectronics_x1"][0])]
    assert groups[0].targets == ("item_id", "cate_id")
    kuai = resolve_groups(caches["kuaivideo_x1"].spec, None)
    assert [g.targets for g in kuai] == [("item_id", "item_emb")] * 2
    per_field = resolve_groups(dataclasses.replace(caches["kuaivideo_x1"].spec, name="renamed"), None)
    assert [g.sequences for g in per_field] == [("pos_items", "pos_items_emb"), ("neg_items", "neg_items_emb")]
    assert [g.sequences for g in resolve_groups(amazon, [["cate_history"]])] == [("cate_history",)]
    for bad, msg in (([["item_id"]], "not a sequence field"), ([["item_history"], ["item_history"]], "two"),
                     ([[]], "at least one")):
        with pytest.raises(ValueError, match=msg):
            resolve_groups(amazon, bad)


def test_din_activation_unit_matches_its_definition():
    torch.manual_seed(0)
    att = TargetAttention(6, "din", [5, 4], activation="relu", softmax=False)
    q, keys = torch.randn(3, 6), torch.randn(3, 4, 6)
    valid = torch.tensor([[1, 1, 1, 1], [0, 0, 1, 1], [0, 0, 0, 0]], dtype=torch.bool)
    expect = att.mlp(torch.cat([q[:, None].expand_as(keys), keys, q[:, None] - keys, q[:, None] * keys], -1))
    expect = expect.squeeze(-1) * valid
    torch.testing.assert_close(att.scores(q, keys, valid), expect)
    pooled, _ = att(q, keys, valid)
    torch.testing.assert_close(pooled, (expect[..., None] * keys).sum(1))
    rows, slots = valid.nonzero(as_tuple=True)
    torch.testing.assert_close(att.pool_jagged(q, keys[rows, slots], rows), pooled)
    assert torch.all(pooled[2] == 0)


def test_segment_softmax_is_a_softmax_per_row():
    scores, rows = torch.randn(7), torch.tensor([0, 0, 2, 2, 2, 3, 0])
    w = segment_softmax(scores, rows, 5)
    for r in (0, 2, 3):
        torch.testing.assert_close(w[rows == r], scores[rows == r].softmax(0))


def test_packed_gru_matches_torch_gru():
    """"gru" is nn.GRU stepping over each row's own behaviours; AUGRU with attention 1 is that GRU too."""
    torch.manual_seed(0)
    lengths = torch.tensor([3, 0, 5, 1])
    rows, slots = (torch.arange(5)[None] >= 5 - lengths[:, None]).nonzero(as_tuple=True)
    recency = 4 - slots
    x = torch.randn(len(rows), 4)
    packing = pack_behaviours(rows, recency, lengths)
    gru = PackedGRU(4, 3)
    ref = torch.nn.GRU(4, 3, batch_first=True)
    with torch.no_grad():
        ref.weight_ih_l0.copy_(gru.x2h.weight)
        ref.weight_hh_l0.copy_(gru.h2h.weight)
        ref.bias_ih_l0.copy_(gru.x2h.bias)
        ref.bias_hh_l0.copy_(gru.h2h.bias)
    states, final = gru(x[packing.perm], packing)
    final = packing.unsort(final, 4)
    for r in range(4):
        if lengths[r] == 0:
            assert torch.all(final[r] == 0)
            continue
        seq = x[rows == r][torch.argsort(-recency[rows == r])]  # oldest first
        out, h = ref(seq[None])
        torch.testing.assert_close(final[r], h[0, 0])
        torch.testing.assert_close(states[packing.rank == packing.order.tolist().index(r)], out[0])
    augru = PackedGRU(4, 3, "augru")
    augru.load_state_dict(gru.state_dict())
    _, final_a = augru(x[packing.perm], packing, torch.ones(len(rows)))
    torch.testing.assert_close(packing.unsort(final_a, 4), final)
    _, zero = augru(x[packing.perm], packing, torch.zeros(len(rows)))
    assert torch.all(zero == 0)  # attention 0 everywhere: the state never leaves h_0


def test_cin_matches_a_loop():
    torch.manual_seed(0)
    cin = CIN(3, [2, 4])
    x0 = torch.randn(5, 3, 6)
    xs, pooled = x0, []
    for conv in cin.layers:
        z = torch.stack([x0[:, i] * xs[:, j] for i in range(3) for j in range(xs.shape[1])], 1)
        xs = torch.einsum("oc,bcd->bod", conv.weight[..., 0], z) + conv.bias[None, :, None]
        pooled.append(xs.sum(-1))
    torch.testing.assert_close(cin(x0), torch.cat(pooled, 1))


def test_fmfm_with_identity_matrices_is_fm(caches):
    cache = caches["criteo_x1"]
    model = _model("fmfm", cache)
    with torch.no_grad():
        model.interaction.weight.copy_(torch.eye(8).expand_as(model.interaction.weight))
    emb = torch.randn(4, model.embedding.num_fields, 8)
    torch.testing.assert_close(model.interaction(emb), fm_second_order(emb), rtol=1e-4, atol=1e-4)


def test_wukong_and_autoint_layers_shapes():
    x = torch.randn(5, 7, 4)
    layer = WukongLayer(7, 4, num_fmb=3, num_lcb=2, rank=2, hidden_units=[8])
    assert layer(x).shape == (5, 5, 4) and not isinstance(layer.residual, torch.nn.Identity)
    assert isinstance(WukongLayer(5, 4, 3, 2, 2).residual, torch.nn.Identity)
    assert InteractingLayer(4, 6, num_heads=2)(x).shape == (5, 7, 6)
    with pytest.raises(ValueError, match="divisible"):
        InteractingLayer(4, 5, num_heads=2)
