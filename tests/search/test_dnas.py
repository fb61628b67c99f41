"""DNAS over the distdnas interaction space: the Gumbel sampler's gradients, the expected-FLOPs cost (exact for
one-hot probabilities), the aggregation rules on hand-made logits, the temperature schedules, which split feeds
which update, and a tiny search end to end whose point trains from scratch."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from torch.utils.flop_counter import FlopCounterMode

from ctrbench.data.loader import BatchLoader
from ctrbench.errors import ParamError
from ctrbench.models import build_model
from ctrbench.models.interaction_net import DENSE_OPS, SPARSE_OPS
from ctrbench.models.layers.gumbel import gumbel_noise, gumbel_softmax
from ctrbench.search.dnas import search as dnas_search
from ctrbench.search.dnas.aggregate import aggregate, argmax_choice
from ctrbench.search.dnas.cost import cost_term, expected_flops
from ctrbench.search.dnas.search import DNASConfig, DNASSearch, discretise, retrain, run_dnas, temperature
from ctrbench.search.registry import SpaceOptionsError, get_space
from ctrbench.search.spaces import SpacePointError

TINY = {"num_blocks": 2, "dense_dim": 8}


@pytest.fixture(scope="module")
def space():
    return get_space("distdnas", **TINY)


@pytest.fixture(scope="module")
def batch(tiny_cache):
    return next(iter(BatchLoader(tiny_cache, "valid", 16)))


# --- the Gumbel sampler -----------------------------------------------------------------------------------------
def test_soft_gumbel_gradient_matches_finite_differences():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 4, dtype=torch.float64, generator=gen, requires_grad=True)
    noise = gumbel_noise((3, 4), generator=gen, dtype=torch.float64)
    weights = torch.randn(3, 4, dtype=torch.float64, generator=gen)
    assert torch.autograd.gradcheck(lambda x: (gumbel_softmax(x, 0.7, noise=noise) * weights).sum(), (logits,))
    y = gumbel_softmax(logits, 0.7, noise=noise)
    torch.testing.assert_close(y, F.softmax((logits + noise) / 0.7, dim=-1))


def test_straight_through_is_one_hot_forward_and_soft_backward():
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(5, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    noise = gumbel_noise((5, 3), generator=gen, dtype=torch.float64)
    weights = torch.randn(5, 3, dtype=torch.float64, generator=gen)
    hard = gumbel_softmax(logits, 0.5, hard=True, noise=noise)
    assert set(hard.detach().flatten().tolist()) == {0.0, 1.0} and (hard.detach().sum(-1) == 1).all()
    assert torch.equal(hard.detach().argmax(-1), (logits + noise).detach().argmax(-1))
    (g_hard,) = torch.autograd.grad((hard * weights).sum(), logits)
    (g_soft,) = torch.autograd.grad((gumbel_softmax(logits, 0.5, noise=noise) * weights).sum(), logits)
    torch.testing.assert_close(g_hard, g_soft)
    assert g_hard.abs().sum() > 0  # the gradient reaches the logits


def test_gumbel_noise_is_seeded_and_tau_checked():
    a = gumbel_softmax(torch.zeros(4, 3), 1.0, generator=torch.Generator().manual_seed(5))
    b = gumbel_softmax(torch.zeros(4, 3), 1.0, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and torch.isfinite(a).all()
    with pytest.raises(ValueError, match="temperature must be > 0"):
        gumbel_softmax(torch.zeros(3), 0.0)


# --- FLOPs ------------------------------------------------------------------------------------------------------
def check_one_hot_flops(space, point, cache, batch) -> None:
    """E[F] at the point's one-hot probabilities == the space's, the subnet's and flop_counter's FLOPs."""
    sup = build_model("dnas_supernet", cache.spec, cache.vocab_sizes, space.supernet_params())
    probs = {slot: F.one_hot(torch.tensor([space.ops[slot].index(b[slot]) for b in point["blocks"]]),
                             len(space.ops[slot])).double() for slot in ("dense", "sparse")}
    exp = expected_flops(probs, sup.op_costs(), sup.fixed_flops())
    sub = build_model("dnas_subnet", cache.spec, cache.vocab_sizes, space.candidate(point)[0]).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        sub(batch)
    counted = counter.get_total_flops() / batch.label.shape[0]
    assert float(exp) == space.flops(point, cache.spec) == sub.flops() == counted


@settings(max_examples=5, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_expected_flops_of_one_hot_probabilities_is_the_subnet_flops(seed, space, tiny_cache, batch):
    check_one_hot_flops(space, space.sample(np.random.default_rng(seed)), tiny_cache, batch)


def test_every_module_flops_equal_flop_counter(tiny_cache, batch):
    every = get_space("distdnas", num_blocks=len(DENSE_OPS), dense_dim=8)
    point = {"blocks": [{"dense": d, "sparse": SPARSE_OPS[i % len(SPARSE_OPS)]} for i, d in enumerate(DENSE_OPS)]}
    check_one_hot_flops(every, point, tiny_cache, batch)


def test_supernet_at_one_hot_logits_computes_the_inheriting_subnet(space, tiny_cache, batch):
    sup = build_model("dnas_supernet", tiny_cache.spec, tiny_cache.vocab_sizes, space.supernet_params(), seed=0)
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for p in sup.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=gen))
    point = {"blocks": [{"dense": "dp", "sparse": "attn"}, {"dense": "gating", "sparse": "efc"}]}
    with torch.no_grad():  # softmax of +-1e4 is exactly one-hot in float32
        for slot, logits in sup.alpha.items():
            logits.fill_(-1e4)
            for i, b in enumerate(point["blocks"]):
                logits[i, space.ops[slot].index(b[slot])] = 1e4
    sub = build_model("dnas_subnet", tiny_cache.spec, tiny_cache.vocab_sizes, space.candidate(point)[0], seed=9)
    sub.inherit(sup)
    with torch.no_grad():
        torch.testing.assert_close(sub.eval()(batch), sup.eval()(batch))
    other = build_model("dnas_subnet", tiny_cache.spec, tiny_cache.vocab_sizes,
                        {**space.candidate(point)[0], "dense_dim": 4})
    with pytest.raises(ValueError, match="lacks this point's weights"):
        other.inherit(sup)


def test_expected_flops_is_linear_in_the_probabilities(space, tiny_cache):
    sup = build_model("dnas_supernet", tiny_cache.spec, tiny_cache.vocab_sizes, space.supernet_params())
    costs, fixed = sup.op_costs(), sup.fixed_flops()
    uniform = {k: torch.full((2, len(c)), 1 / len(c), dtype=torch.float64) for k, c in costs.items()}
    want = fixed + 2 * sum(float(c.double().mean()) for c in costs.values())
    assert float(expected_flops(uniform, costs, fixed)) == pytest.approx(want)
    with pytest.raises(ValueError, match="slot 'dense'"):
        expected_flops({**uniform, "dense": uniform["dense"][:, :2]}, costs, fixed)


def test_cost_forms():
    f = torch.tensor(50.0, requires_grad=True)
    assert float(cost_term(f.detach(), "linear", 2.0, 100.0)) == pytest.approx(1.0)
    assert float(cost_term(f.detach(), "log", 2.0, 100.0)) == pytest.approx(2 * math.log(0.5))
    (g,) = torch.autograd.grad(cost_term(f, "log", 2.0, 100.0), f)
    assert float(g) == pytest.approx(2 / 50)
    with pytest.raises(ValueError, match="unknown cost form"):
        cost_term(f, "square", 1.0, 1.0)
    with pytest.raises(ValueError, match="reference FLOPs must be > 0"):
        cost_term(f, "linear", 1.0, 0.0)


# --- aggregation --------------------------------------------------------------------------------------------------
# 3 searches, 1 block, 3 ops. Search 0 is very sure of op 0; searches 1 and 2 mildly prefer op 1.
SEARCHES = [{"dense": np.array([[10.0, 0.0, 0.0]])}, {"dense": np.array([[0.0, 1.0, 0.0]])},
            {"dense": np.array([[0.0, 1.0, 0.0]])}]


def test_mean_of_logits_and_of_probabilities():
    logits = aggregate(SEARCHES, "mean_logits")["dense"]
    np.testing.assert_allclose(logits, [[10 / 3, 2 / 3, 0.0]])
    probs = aggregate(SEARCHES, "mean_probabilities")["dense"]
    p0 = np.exp([10.0, 0, 0]) / np.exp([10.0, 0, 0]).sum()
    p1 = np.exp([0, 1.0, 0]) / np.exp([0, 1.0, 0]).sum()
    np.testing.assert_allclose(probs, [(p0 + 2 * p1) / 3])
    assert argmax_choice({"dense": logits}) == {"dense": [0]}  # the sure search dominates the logits
    assert argmax_choice({"dense": probs}) == {"dense": [0]}  # (1 + 2·0.21)/3 > 2·0.58/3
    np.testing.assert_allclose(probs.sum(-1), [1.0])


def test_majority_vote_and_its_tie_break():
    votes = aggregate(SEARCHES, "majority_vote")["dense"]
    assert argmax_choice({"dense": votes}) == {"dense": [1]}  # two votes beat one sure vote
    np.testing.assert_array_equal(np.floor(votes), [[1, 2, 0]])
    tie = [{"dense": np.array([[3.0, 0.0], [0.0, 1.0]])}, {"dense": np.array([[0.0, 1.0], [0.0, 1.0]])}]
    # block 0: one vote each; the tie goes to the higher mean probability (op 0: the surer search)
    assert argmax_choice(aggregate(tie, "majority_vote")) == {"dense": [0, 1]}


def test_aggregation_refuses_bad_inputs():
    with pytest.raises(ValueError, match="no searches"):
        aggregate([], "mean_logits")
    with pytest.raises(ValueError, match="unknown aggregation rule 'median'"):
        aggregate(SEARCHES, "median")
    with pytest.raises(ValueError, match=r"search 1 slot 'dense' has shape \(1, 2\)"):
        aggregate([SEARCHES[0], {"dense": np.zeros((1, 2))}], "mean_logits")
    with pytest.raises(ValueError, match="search 1 has slots"):
        aggregate([SEARCHES[0], {"sparse": np.zeros((1, 3))}], "mean_logits")
    with pytest.raises(ValueError, match="non-finite"):
        aggregate([{"dense": np.array([[np.nan, 0.0, 0.0]])}], "majority_vote")


# --- schedules and config -------------------------------------------------------------------------------------
def test_temperature_schedules_anneal_from_tau0_to_tau_min():
    for schedule in ("exponential", "linear"):
        cfg = DNASConfig(tau0=5.0, tau_min=0.2, schedule=schedule)
        taus = [temperature(cfg, p) for p in np.linspace(0, 1, 11)]
        assert taus[0] == pytest.approx(5.0) and taus[-1] == pytest.approx(0.2)
        assert all(a > b for a, b in zip(taus, taus[1:]))
    assert temperature(DNASConfig(tau0=5.0, tau_min=0.2, schedule="exponential"), 0.5) == pytest.approx(1.0)
    assert temperature(DNASConfig(schedule="constant", tau0=2.0), 0.7) == 2.0
    with pytest.raises(ValidationError, match="tau_min 3.0 exceeds tau0 1.0"):
        DNASConfig(tau0=1.0, tau_min=3.0)


def test_space_and_model_errors_say_where(space, tiny_cache):
    with pytest.raises(SpacePointError, match=r"blocks\[1\]\.dense: 'fm' not in"):
        get_space("distdnas", num_blocks=2, dense_ops=("fc", "skip")).validate(
            {"blocks": [{"dense": "fc", "sparse": "efc"}, {"dense": "fm", "sparse": "efc"}]})
    with pytest.raises(SpaceOptionsError, match="dense_ops"):
        get_space("distdnas", dense_ops=("fc", "conv"))
    with pytest.raises(ParamError, match="needs a point"):
        build_model("dnas_subnet", tiny_cache.spec, tiny_cache.vocab_sizes, {})
    point = {"blocks": [{"dense": "fc", "sparse": "attn"}] * 2}
    with pytest.raises(ParamError, match="8 heads"):
        build_model("dnas_subnet", tiny_cache.spec, tiny_cache.vocab_sizes, {"point": point, "embedding_dim": 12})


# --- the search ---------------------------------------------------------------------------------------------------
def test_architecture_steps_read_validation_batches_only(space, tiny_cache, monkeypatch):
    made: dict[str, list] = {"train": [], "valid": []}

    class Recording(BatchLoader):
        def __iter__(self):
            for b in super().__iter__():
                made[self.split_name].append(b)
                yield b

    monkeypatch.setattr(dnas_search, "BatchLoader", Recording)
    s = DNASSearch(tiny_cache, space, DNASConfig(steps=5, warmup_steps=1, arch_every=2, batch_size=64, log_every=1))
    fed: dict[str, list] = {"weight": [], "arch": []}
    weight_step, arch_step = s.weight_step, s.arch_step
    monkeypatch.setattr(s, "weight_step", lambda b: fed["weight"].append(b) or weight_step(b))
    monkeypatch.setattr(s, "arch_step", lambda b: fed["arch"].append(b) or arch_step(b))
    result = s.run()
    assert result.status == "ok" and len(fed["weight"]) == 5 and len(fed["arch"]) == 2  # after steps 3 and 5
    ids = {split: {id(b) for b in bs} for split, bs in made.items()}
    assert all(id(b) in ids["valid"] for b in fed["arch"])
    assert all(id(b) in ids["train"] for b in fed["weight"])


def test_weight_steps_leave_the_logits_and_arch_steps_the_weights(space, tiny_cache):
    s = DNASSearch(tiny_cache, space, DNASConfig(batch_size=64, arch_lr=0.1, cost_coefficient=5.0))
    batch = next(iter(BatchLoader(tiny_cache, "train", 64)))
    state = lambda: {k: v.clone() for k, v in s.model.state_dict().items()}  # noqa: E731
    before = state()
    s.weight_step(batch)
    after = state()
    assert all(torch.equal(before[k], after[k]) for k in ("alpha.dense", "alpha.sparse"))
    assert not torch.equal(before["stem.lin.weight"], after["stem.lin.weight"])
    exp0 = float(s.expected_flops().detach())
    for _ in range(5):
        s.arch_step(batch)
    final = state()
    assert all(torch.equal(after[k], final[k]) for k in final if not k.startswith("alpha."))
    assert float(s.expected_flops().detach()) < exp0  # a strong cost term moves probability to cheaper modules


def test_tiny_search_returns_a_point_that_trains_from_scratch(space, tiny_cache):
    cfg = {"steps": 6, "batch_size": 64, "log_every": 3, "cost_coefficient": 0.5, "cost_form": "log", "hard": True}
    result = run_dnas(tiny_cache, space, cfg)
    assert result.status == "ok" and space.validate(result.point) == result.point
    assert result.point == discretise(space, {k: np.array(v) for k, v in result.arch_logits.items()})
    assert [h["step"] for h in result.history] == [3, 6] and result.history[-1]["tau"] == pytest.approx(0.1)
    again = run_dnas(tiny_cache, space, cfg)
    assert again.arch_logits == result.arch_logits  # seeded: the same search twice
    model, trained = retrain(tiny_cache, space, result.point, {"max_epochs": 1, "batch_size": 64})
    assert trained.status == "ok" and 0 < trained.test["auc"] < 1
    assert model.flops() == space.flops(result.point, tiny_cache.spec)


def test_mixing_weights_per_example_or_per_batch(space, tiny_cache):
    for sample_per, shape in (("example", (7, 6)), ("batch", (6,))):
        sup = build_model("dnas_supernet", tiny_cache.spec, tiny_cache.vocab_sizes,
                          {**space.supernet_params(), "sample_per": sample_per, "hard": True}).train()
        weights = sup.mixing_weights(7)
        assert len(weights) == 2 and all(w.shape == shape for w, _ in weights)
        assert all(set(w.detach().flatten().tolist()) == {0.0, 1.0} for w, _ in weights)
    probs = sup.eval().mixing_weights(7)  # eval: the plain softmax, no noise
    torch.testing.assert_close(probs[0][0], torch.full((6,), 1 / 6))


def test_a_non_finite_loss_stops_the_search_with_its_step(space, tiny_cache, monkeypatch):
    s = DNASSearch(tiny_cache, space, DNASConfig(steps=5, batch_size=64))
    losses = iter([0.7, 0.6, math.nan, 0.5, 0.5])
    monkeypatch.setattr(s, "weight_step", lambda b: next(losses))
    result = s.run()
    assert result.status == "nan" and result.point is None and "step 3" in result.error
