"""Every registered model builds from a spec, trains (its loss falls) on a sequential and a non-sequential
tiny cache, and validates its hyper-parameters."""
import pydantic
import pytest
import torch
import torch.nn.functional as F

from ctrbench.data.loader import BatchLoader
from ctrbench.errors import UnknownNameError
from ctrbench.models import MODELS, build_model, get_model_class, model_tables

NAMES = ["lr", "fm", "dnn", "deepfm", "dcnv2", "dlrm"]


def test_baselines_registered():
    assert set(NAMES) <= set(MODELS)


def _train_losses(model, cache, epochs=3, bs=256, lr=3e-3):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loader = BatchLoader(cache, "train", bs, shuffle=True, seed=0)
    losses = []
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        total, n = 0.0, 0
        for b in loader:
            loss = F.binary_cross_entropy_with_logits(model(b), b.label)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total, n = total + loss.item(), n + 1
        losses.append(total / n)
    return losses


@pytest.mark.parametrize("dataset", ["criteo_x1", "amazonelectronics_x1", "kuaivideo_x1"])
@pytest.mark.parametrize("name", NAMES)
def test_model_trains_and_loss_falls(name, dataset, tiny_caches):
    cache = tiny_caches[dataset]
    params = {} if name == "lr" or name == "fm" else {"embedding_dim": 8}
    if name in ("dnn", "deepfm", "dlrm"):
        params["hidden_units" if name != "dlrm" else "top_mlp_units"] = [32, 16]
    if name == "dcnv2":
        params.update(parallel_dnn_hidden_units=[32], stacked_dnn_hidden_units=[32])
    model = build_model(name, cache.spec, cache.vocab_sizes, params, model_tables(cache), seed=0)
    b = next(iter(BatchLoader(cache, "valid", 32)))
    out = model(b)
    assert out.shape == (32,) and torch.isfinite(out).all()
    losses = _train_losses(model, cache)
    assert losses[-1] < losses[0] - 0.01, losses


@pytest.mark.parametrize("params", [
    {"model_structure": "stacked"}, {"model_structure": "crossnet_only"}, {"model_structure": "stacked_parallel"},
    {"low_rank": 4}, {"low_rank": 4, "num_experts": 3},
])
def test_dcnv2_structures(params, tiny_caches):
    cache = tiny_caches["criteo_x1"]
    model = build_model("dcnv2", cache.spec, cache.vocab_sizes, {**params, "embedding_dim": 4,
                        "stacked_dnn_hidden_units": [16], "parallel_dnn_hidden_units": [16]})
    b = next(iter(BatchLoader(cache, "valid", 16)))
    F.binary_cross_entropy_with_logits(model(b), b.label).backward()
    assert all(p.grad is not None for p in model.parameters())


def test_dlrm_cat_interaction_and_no_dense(tiny_caches):
    for dataset, op in (("criteo_x1", "cat"), ("amazonelectronics_x1", "dot")):
        cache = tiny_caches[dataset]
        model = build_model("dlrm", cache.spec, cache.vocab_sizes, {"interaction_op": op, "embedding_dim": 4})
        b = next(iter(BatchLoader(cache, "valid", 16)))
        assert model(b).shape == (16,)
    assert model.bottom is None  # amazon has no numeric fields


def test_params_reject_unknown_keys_and_bad_values():
    for name in NAMES:
        cls = get_model_class(name)
        with pytest.raises(pydantic.ValidationError, match="hidden_unitz"):
            cls.Params(hidden_unitz=[1])
        cls.Params()  # defaults are valid
    with pytest.raises(pydantic.ValidationError):
        get_model_class("dcnv2").Params(num_experts=4)  # DCN-Mix needs low_rank
    with pytest.raises(pydantic.ValidationError):
        get_model_class("dnn").Params(net_dropout=1.5)
    with pytest.raises(pydantic.ValidationError):
        get_model_class("fm").Params(embedding_backend="magic")


def test_unknown_model_lists_names():
    with pytest.raises(UnknownNameError) as err:
        get_model_class("dcnv3")
    assert "dcnv3" in str(err.value) and all(n in str(err.value) for n in NAMES)


def test_build_model_seed_is_reproducible_and_local(tiny_caches):
    cache = tiny_caches["criteo_x1"]
    state = torch.random.get_rng_state()
    a = build_model("dnn", cache.spec, cache.vocab_sizes, {}, seed=3)
    b = build_model("dnn", cache.spec, cache.vocab_sizes, {}, seed=3)
    c = build_model("dnn", cache.spec, cache.vocab_sizes, {}, seed=4)
    assert torch.equal(torch.random.get_rng_state(), state)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_parameter_split(tiny_caches):
    cache = tiny_caches["criteo_x1"]
    model = build_model("deepfm", cache.spec, cache.vocab_sizes, {})
    emb, dense = model.embedding_parameters(), model.dense_parameters()
    assert len(emb) == 2  # the linear term's table and the FM/MLP table
    assert {id(p) for p in emb}.isdisjoint(id(p) for p in dense)
    assert len(emb) + len(dense) == len(list(model.parameters()))


@pytest.mark.parametrize("name", ["lr", "fm", "dnn", "dlrm"])
def test_numeric_norm_makes_the_model_blind_to_the_numeric_scale(name, tiny_caches):
    """With numeric_norm the numeric inputs are standardised first (batch statistics in training): scaling and
    shifting them (raw prices in the hundreds) leaves the output unchanged; without it the output moves."""
    import dataclasses

    cache = tiny_caches["criteo_x1"]
    b = next(iter(BatchLoader(cache, "train", 64)))
    b = dataclasses.replace(b, dense=b.dense * 10.0)  # variances well above BatchNorm's eps
    moved = dataclasses.replace(b, dense=b.dense * 50.0 + 30.0)
    for norm in (True, False):
        model = build_model(name, cache.spec, cache.vocab_sizes, {"numeric_norm": norm, "embedding_init_std": 0.1},
                            model_tables(cache), seed=0)
        model.train()
        with torch.no_grad():
            torch.manual_seed(1)  # the same dropout masks for both forwards
            out = model(b)
            torch.manual_seed(1)
            same = torch.allclose(out, model(moved), atol=1e-4)
        assert same == norm, (name, norm)
