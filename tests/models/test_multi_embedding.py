"""Multi-embedding DCNv2 ("dcnv2_me"): M independent embedding sets each with its own interaction module; M = 1
is plain DCNv2; it trains; Params reject unknown keys."""
import pydantic
import pytest
import torch

from ctrbench.data.loader import BatchLoader
from ctrbench.models import build_model
from ctrbench.models.multi_embedding import DCNv2MultiEmbedding
from ctrbench.train import TrainConfig, fit

SMALL = {"num_cross_layers": 2, "parallel_dnn_hidden_units": [32], "net_dropout": 0.0}


@pytest.mark.parametrize("combine", ["mean", "concat"])
def test_builds_m_independent_sets(tiny_caches, combine):
    cache = tiny_caches["criteo_x1"]
    model = build_model("dcnv2_me", cache.spec, cache.vocab_sizes,
                        {**SMALL, "num_embeddings": 3, "embedding_dim": 4, "combine": combine}, seed=0)
    assert len(model.embeddings) == 3 and len(model.interactions) == 3
    tables = model.embedding_parameters()
    assert len(tables) == 3 and len({id(t) for t in tables}) == 3
    assert not torch.equal(tables[0], tables[1])
    wide = build_model("dcnv2", cache.spec, cache.vocab_sizes, {**SMALL, "embedding_dim": 12}, seed=0)
    # the same embedding budget as one embedding of M·d (numeric vectors included)
    assert sum(t.numel() for t in tables) + sum(e.numeric.numel() for e in model.embeddings) == \
        wide.embedding.weight.numel() + wide.embedding.numeric.numel()
    batch = next(iter(BatchLoader(cache, "train", 32)))
    model.loss(model(batch), batch).backward()
    for t in tables:  # every set gets a gradient through its own interaction module
        assert t.grad is not None and t.grad.abs().sum() > 0


def test_one_set_is_plain_dcnv2(tiny_caches):
    cache = tiny_caches["criteo_x1"]
    me = build_model("dcnv2_me", cache.spec, cache.vocab_sizes, {**SMALL, "num_embeddings": 1, "embedding_dim": 4}, seed=5)
    plain = build_model("dcnv2", cache.spec, cache.vocab_sizes, {**SMALL, "embedding_dim": 4}, seed=5)
    me.eval(), plain.eval()
    batch = next(iter(BatchLoader(cache, "train", 64)))
    with torch.no_grad():
        torch.testing.assert_close(me(batch), plain(batch))


def test_trains_on_a_planted_cache(planted_cache):
    model = build_model("dcnv2_me", planted_cache.spec, planted_cache.vocab_sizes,
                        {**SMALL, "num_embeddings": 2, "embedding_dim": 4}, seed=0)
    res = fit(model, planted_cache, TrainConfig(batch_size=256, max_epochs=3, lr=3e-3, embedding_lr=3e-2, threads=1))
    assert res.status == "ok"
    assert res.test["auc"] > 0.7, res.test


def test_params_reject_unknown_keys():
    with pytest.raises(pydantic.ValidationError):
        DCNv2MultiEmbedding.Params(num_embedding=2)
    with pytest.raises(pydantic.ValidationError):
        DCNv2MultiEmbedding.Params(num_embeddings=0)
    with pytest.raises(pydantic.ValidationError):
        DCNv2MultiEmbedding.Params(combine="max")
