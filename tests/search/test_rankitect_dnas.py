"""DNAS over the NASRec spaces (Rankitect's third searcher family): the relaxed supernet computes the subnet
exactly for one-hot weights, its expected FLOPs are the point's analytic FLOPs for one-hot probabilities, its
discretisation is a valid point, and a tiny search end to end gives a point that trains from scratch."""
from __future__ import annotations

import dataclasses
import numpy as np
import pytest
import torch

from ctrbench.data.loader import BatchLoader
from ctrbench.models import build_model
from ctrbench.models.nasrec.arch import NASRecPoint, point_flops
from ctrbench.search.dnas.nasrec_search import run_nasrec_dnas, supernet_params
from ctrbench.search.dnas.search import DNASConfig, retrain
from ctrbench.search.registry import get_space

SPACES = ["nasrec_small", "nasrec_full"]


def supernet(space, cache, **kw):
    return build_model("nasrec_dnas_supernet", cache.spec, cache.vocab_sizes, {**supernet_params(space), **kw},
                       seed=0)


def one_hot(sup, point):
    sup.pin(point)
    probs, sup.pinned = sup.pinned, None
    return probs


@pytest.mark.parametrize("name", SPACES)
def test_pinned_supernet_computes_the_inheriting_subnet(name, tiny_cache):
    space = get_space(name, scale=0.125)
    sup = supernet(space, tiny_cache).eval()
    with torch.no_grad():
        for p in sup.dense_parameters():  # not the init's zeros/ones, so every slice matters
            p.add_(0.05 * torch.randn_like(p))
    batch = next(iter(BatchLoader(tiny_cache, "valid", 32)))
    # in float64: masking and slicing sum in different orders, which float32 rounding shows at ~2e-5 after 7 blocks
    sup.double()
    batch = dataclasses.replace(batch, dense=batch.dense.double())
    for seed in range(3):
        point = space.sample(np.random.default_rng(seed))
        sub = build_model("nasrec_subnet", tiny_cache.spec, tiny_cache.vocab_sizes, space.candidate(point)[0], seed=1)
        sub.double().inherit(sup).eval()
        sup.pin(point)
        with torch.no_grad():
            torch.testing.assert_close(sup(batch), sub(batch), atol=1e-10, rtol=1e-10)
        sup.pin(None)


@pytest.mark.parametrize("name", SPACES)
def test_expected_flops_is_exact_for_one_hot_probabilities(name, tiny_cache):
    space = get_space(name, scale=0.125)
    sup = supernet(space, tiny_cache)
    for seed in range(5):
        point = space.sample(np.random.default_rng(seed))
        want = point_flops(NASRecPoint.model_validate(point), sup.n_dense, sup.n_sparse, sup.embedding_dim)
        assert float(sup.expected_flops(one_hot(sup, point))) == pytest.approx(want, rel=1e-12)
        assert want == space.flops(point, tiny_cache.spec)
    # uniform probabilities: strictly between the cheapest and the costliest point, and differentiable
    e = sup.expected_flops()
    e.backward()
    assert all(p.grad is not None for k, p in sup.alpha.items() if k not in ("left", "right") or sup.binary)


@pytest.mark.parametrize("name", SPACES)
def test_discretise_picks_the_argmax_and_valid_inputs(name, tiny_cache):
    space = get_space(name, scale=0.125)
    sup = supernet(space, tiny_cache)
    point = space.sample(np.random.default_rng(7))
    probs = one_hot(sup, point)
    logits = {k: torch.log(v.clamp_min(1e-6)) for k, v in probs.items()}
    for k in ("dense_in", "sparse_in"):  # P(on) -> two-way logits (off, on)
        logits[k] = torch.stack([torch.zeros_like(logits[k]), 5 * (2 * probs[k] - 1)], -1)
    assert space.hash(sup.discretise(logits)) == space.hash(
        point if sup.binary else {**point, "blocks": [{**b, "dense_left_idx": 0, "dense_right_idx": 0}
                                                      for b in point["blocks"]]})
    # no source on: the most probable one is kept; five on: the four most probable
    lg = sup.arch_logits()
    lg["dense_in"][6, :, 1] = -3.0
    lg["dense_in"][6, 4, 1] = -1.0
    lg["sparse_in"][6, :, 1] = torch.tensor([5.0, 4, 3, 2, 1, 0.5, 6])
    got = sup.discretise(lg)["blocks"][6]
    assert got["dense_idx"] == [4] and got["sparse_idx"] == [0, 1, 2, 6]
    space.validate(sup.discretise())


def test_tiny_search_end_to_end_retrains(tiny_cache):
    space = get_space("nasrec_small", scale=0.125)
    cfg = DNASConfig(steps=6, warmup_steps=2, batch_size=64, cost_coefficient=0.5, cost_form="log", log_every=2)
    result = run_nasrec_dnas(tiny_cache, space, cfg, params={"numeric_norm": True},
                             train={"embedding_lr": 0.01, "embedding_l2": 1e-4})
    assert result.status == "ok" and result.history[-1]["step"] == 6
    space.validate(result.point)
    assert result.history[0]["tau"] > result.history[-1]["tau"]
    assert set(result.arch_logits) >= {"dense_node", "dense_dim", "dense_in", "interact"}
    _, trained = retrain(tiny_cache, space, result.point, {"max_epochs": 1, "batch_size": 128})
    assert trained.status == "ok" and np.isfinite(trained.test["auc"])


def test_not_a_nasrec_space_is_refused():
    with pytest.raises(ValueError, match="NASRec DNAS searches a NASRec space"):
        supernet_params(get_space("distdnas"))
