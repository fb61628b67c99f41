"""CETNet: fusion weights (sum to one, favour the confident member), one member = that member, gradients reach every
member's tables, each ablation switch does what it claims, Params reject unknown keys, per-member metrics in fit."""
import math

import pydantic
import pytest
import torch
import torch.nn.functional as F

from ctrbench.data.loader import BatchLoader
from ctrbench.models import build_model, model_tables
from ctrbench.models.cetnet import CETNet
from ctrbench.train import TrainConfig, fit

IF_SMALL = {"num_layers": 1, "max_seq_len": 8, "head_units": [16]}
DHEN_SMALL = {"num_layers": 1, "hidden_units": [16]}


def _members(dim=8):
    return {"embedding_dim": dim, "members": [{"model": "interformer", "params": IF_SMALL},
                                              {"model": "dhen", "params": DHEN_SMALL}]}


def _build(cache, seed=0, **params):
    return build_model("cetnet", cache.spec, cache.vocab_sizes, {**_members(), **params}, model_tables(cache), seed=seed)


def _batch(cache, n=64):
    return next(iter(BatchLoader(cache, "train", n)))


def test_fusion_weights_sum_to_one_and_favour_the_confident_member(tiny_caches):
    cache = tiny_caches["amazonelectronics_x1"]
    model = _build(cache, tau=0.5, learn_tau=False)
    fused = model(_batch(cache))
    w = model.diagnostics()
    weights = model._last["weights"]
    torch.testing.assert_close(weights.sum(1), torch.ones(len(fused)))
    assert set(w) == {"weight/interformer", "weight/dhen", "tau"}
    # member 0 confident (p = 0.98 or 0.02), member 1 unsure (p = 0.52): member 0 gets the larger weight
    for confident in (4.0, -4.0):
        f, wt = model.fuse(torch.tensor([[confident, 0.08]]))
        assert wt[0, 0] > 0.5 > wt[0, 1]
        p = torch.sigmoid(torch.tensor([confident, 0.08]))
        assert abs(torch.sigmoid(f)[0] - (wt[0] * p).sum()) < 1e-5  # prob space: the weighted mean probability
    # a lower temperature sharpens the weights
    sharp = _build(cache, tau=0.05, learn_tau=False).fuse(torch.tensor([[4.0, 0.08]]))[1]
    assert sharp[0, 0] > model.fuse(torch.tensor([[4.0, 0.08]]))[1][0, 0]


@pytest.mark.parametrize("space", ["prob", "logit"])
def test_one_member_equals_that_member(tiny_caches, space):
    cache = tiny_caches["amazonelectronics_x1"]
    cet = build_model("cetnet", cache.spec, cache.vocab_sizes,
                      {"members": [{"model": "dhen", "params": {**DHEN_SMALL, "embedding_dim": 8}}], "space": space},
                      model_tables(cache), seed=3)
    alone = build_model("dhen", cache.spec, cache.vocab_sizes, {**DHEN_SMALL, "embedding_dim": 8}, model_tables(cache),
                        seed=3)
    cet.eval(), alone.eval()
    batch = _batch(cache, 256)
    with torch.no_grad():
        torch.testing.assert_close(cet(batch), alone(batch), atol=1e-4, rtol=1e-4)
        assert torch.equal(cet.members[0].embedding.weight, alone.embedding.weight)


def test_gradients_reach_every_members_tables_and_tau(tiny_caches):
    cache = tiny_caches["kuaivideo_x1"]
    model = _build(cache)
    batch = _batch(cache, 128)
    model.loss(model(batch), batch).backward()
    tables = [next(m.embedding_collections()).weight for m in model.members]
    assert tables[0] is not tables[1]
    for t in tables:
        assert t.grad is not None and t.grad.abs().sum() > 0
    assert model.fusion.log_tau.grad is not None and model.fusion.log_tau.grad != 0
    assert len(model.embedding_parameters()) == 2


def test_mean_fusion_gives_equal_weights(tiny_caches):
    cache = tiny_caches["amazonelectronics_x1"]
    model = _build(cache, fusion="mean")
    assert model.fusion is None
    batch = _batch(cache)
    fused = model(batch)
    member = model._last["member_logits"]
    torch.testing.assert_close(model._last["weights"], torch.full_like(member, 0.5))
    torch.testing.assert_close(torch.sigmoid(fused), torch.sigmoid(member).mean(1), atol=1e-5, rtol=1e-5)
    assert "tau" not in model.diagnostics()


def test_loss_terms_follow_their_weights(tiny_caches):
    cache = tiny_caches["amazonelectronics_x1"]
    batch = _batch(cache)
    full = _build(cache, member_loss_weight=0.7, distill_weight=0.3)
    logits = full(batch)
    terms = full.loss_terms(logits, batch)
    assert set(terms) == {"fused", "members", "distill"}
    assert terms["distill"] >= -1e-6
    member = full._last["member_logits"]
    own = sum(F.binary_cross_entropy_with_logits(member[:, k], batch.label) for k in range(2))
    torch.testing.assert_close(terms["members"], own)
    torch.testing.assert_close(full.loss(logits, batch), terms["fused"] + 0.7 * terms["members"] + 0.3 * terms["distill"])
    # the distillation term pulls members towards the fused prediction: no gradient into the fused target
    no_distill = _build(cache, distill_weight=0.0)
    logits = no_distill(batch)
    terms = no_distill.loss_terms(logits, batch)
    assert "distill" not in terms
    torch.testing.assert_close(no_distill.loss(logits, batch), terms["fused"] + terms["members"])
    fused_only = _build(cache, member_loss_weight=0.0, distill_weight=0.0)
    logits = fused_only(batch)
    assert set(fused_only.loss_terms(logits, batch)) == {"fused"}
    torch.testing.assert_close(fused_only.loss(logits, batch), F.binary_cross_entropy_with_logits(logits, batch.label))


def test_distillation_is_zero_when_members_agree(tiny_caches):
    cache = tiny_caches["amazonelectronics_x1"]
    model = _build(cache, fusion="mean", space="logit")
    batch = _batch(cache)
    same = torch.full((len(batch.label), 2), 0.3)
    model._last = {"member_logits": same, "weights": torch.full_like(same, 0.5)}
    assert float(model.loss_terms(model.fuse(same)[0], batch)["distill"]) == pytest.approx(0.0, abs=1e-6)


def test_shared_embeddings_use_one_table_set(tiny_caches):
    cache = tiny_caches["kuaivideo_x1"]
    own = _build(cache)
    shared = _build(cache, shared_embeddings=True)
    colls = [next(m.embedding_collections()) for m in shared.members]
    assert colls[0].tables is colls[1].tables and colls[0].projections is colls[1].projections
    assert len(shared.embedding_parameters()) == 1
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n(own) - n(shared) == colls[0].weight.numel() + sum(p.numel() for p in colls[0].projections.parameters())
    batch = _batch(cache, 128)
    shared.loss(shared(batch), batch).backward()
    assert colls[0].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="one embedding dim"):
        build_model("cetnet", cache.spec, cache.vocab_sizes,
                    {"shared_embeddings": True, "members": [{"model": "interformer", "params": {**IF_SMALL, "embedding_dim": 8}},
                                                             {"model": "dhen", "params": {**DHEN_SMALL, "embedding_dim": 16}}]},
                    model_tables(cache))


def test_shared_numeric_vectors_when_members_embed_numeric_fields(tiny_caches):
    cache = tiny_caches["criteo_x1"]
    model = build_model("cetnet", cache.spec, cache.vocab_sizes,
                        {"embedding_dim": 4, "shared_embeddings": True,
                         "members": [{"model": "dhen", "params": DHEN_SMALL}, {"model": "dcnv2"}]}, seed=0)
    a, b = (next(m.embedding_collections()) for m in model.members)
    assert a.numeric is b.numeric and a.weight is b.weight


def test_params_reject_unknown_keys_and_models():
    with pytest.raises(pydantic.ValidationError):
        CETNet.Params(fuse="mean")
    with pytest.raises(pydantic.ValidationError, match="num_layer"):
        CETNet.Params(members=[{"model": "dhen", "params": {"num_layer": 2}}])
    with pytest.raises(pydantic.ValidationError, match="nosuchmodel"):
        CETNet.Params(members=[{"model": "nosuchmodel"}])
    with pytest.raises(pydantic.ValidationError, match="cannot be a CETNet"):
        CETNet.Params(members=[{"model": "cetnet"}])
    with pytest.raises(pydantic.ValidationError):
        CETNet.Params(members=[{"model": "dhen", "weight": 2}])
    with pytest.raises(pydantic.ValidationError):
        CETNet.Params(members=[])
    with pytest.raises(pydantic.ValidationError):
        CETNet.Params(distill_weight=-1.0)


def test_repeated_members_get_unique_names(tiny_caches):
    cache = tiny_caches["criteo_x1"]
    model = build_model("cetnet", cache.spec, cache.vocab_sizes,
                        {"embedding_dim": 4, "members": [{"model": "dhen", "params": DHEN_SMALL},
                                                          {"model": "dhen", "params": DHEN_SMALL}]}, seed=0)
    assert model.member_names == ["dhen0", "dhen1"]


def test_fit_records_member_metrics_and_mean_weights(tiny_caches):
    cache = tiny_caches["amazonelectronics_x1"]
    res = fit(_build(cache), cache, TrainConfig(batch_size=512, max_epochs=1, max_steps=4, threads=1))
    assert res.status == "ok"
    assert set(res.test_components) == {"interformer", "dhen"}
    for metrics in res.test_components.values():
        assert 0.0 <= metrics["auc"] <= 1.0 and math.isfinite(metrics["logloss"])
    weights = [v for k, v in res.test_diagnostics.items() if k.startswith("weight/")]
    assert sum(weights) == pytest.approx(1.0, abs=1e-5)
    assert res.test_diagnostics["tau"] > 0
