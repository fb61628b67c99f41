"""Zero-cost proxies: each against a value computed by hand on a tiny network, SiGeo's reduction to ZiCo, every
proxy leaving the model as it found it, the `proxy` evaluator deterministic under a seed, and the errors."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ctrbench.errors import UnknownNameError
from ctrbench.models import build_model
from ctrbench.search.base import Candidate
from ctrbench.search.evaluators.proxy import ProxyEvaluator, proxy_batches
from ctrbench.search.proxies import get_proxy
from ctrbench.search.proxies.base import ProxyError
from ctrbench.search.registry import PROXIES, _load, get_evaluator_class, get_space


@dataclass
class TinyBatch:
    dense: torch.Tensor
    label: torch.Tensor

    @property
    def batch_size(self) -> int:
        return self.dense.shape[0]


class LinearSquare(nn.Module):
    """f(x) = w . x (no bias), loss = mean 0.5 (f(x) - y)^2: per-batch gradients are easy by hand."""

    def __init__(self, w):
        super().__init__()
        self.head = nn.Linear(len(w), 1, bias=False)
        with torch.no_grad():
            self.head.weight.copy_(torch.tensor([w], dtype=torch.float32))

    def forward(self, batch):
        return self.head(batch.dense).squeeze(1)

    def loss(self, logits, batch):
        return 0.5 * ((logits - batch.label) ** 2).mean()

    def head_parameters(self):
        return list(self.head.parameters())


def tb(x, y) -> TinyBatch:
    return TinyBatch(torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32))


# w = (1, 2); batch 1: x = (1, 0), y = 0 -> residual 1, g = (1, 0); batch 2: x = (1, 1), y = 1 -> residual 2,
# g = (2, 2). Entry 0: E|g| = 1.5, std = 0.5; entry 1: E|g| = 1, std = 1 -> ZiCo = log(3 + 1) = log 4.
# sum_b g = (3, 2), <., w> = 7 -> FR = 2 log(7 + 1e-5). Losses 0.5 and 2 -> mean 1.25.
BATCHES = [tb([[1.0, 0.0]], [0.0]), tb([[1.0, 1.0]], [1.0])]
HAND = {"zico": math.log(4.0), "fisher_rao": 2 * math.log(7 + 1e-5), "loss": -1.25,
        "grad_norm": math.sqrt(1.5 ** 2 + 1.0 ** 2), "snip": 1 * 1.5 + 2 * 1.0, "params": 2.0}


@pytest.mark.parametrize("name", sorted(HAND))
def test_gradient_proxies_match_hand_computed_values(name):
    assert get_proxy(name).score(LinearSquare([1.0, 2.0]), BATCHES) == pytest.approx(HAND[name], rel=1e-9)


def test_sigeo_paper_variant_is_its_weighted_terms():
    got = get_proxy("sigeo", lambda1=2.0, lambda2=50.0, lambda3=3.0).score(LinearSquare([1.0, 2.0]), BATCHES)
    assert got == pytest.approx(2 * HAND["zico"] + 50 * HAND["fisher_rao"] + 3 * HAND["loss"], rel=1e-9)


def test_sigeo_reference_variant_by_hand():
    # head w = 1 on x: batch 1 (x=1, y=0): g1 = 1, Adagrad (lr .04, eps .01): w1 = 1 - .04 * 1 / (1 + .01);
    # batch 2 (x=2, y=1): r = 2 w1 - 1, g2 = 2 r, w2 = w1 - .04 g2 / (sqrt(1 + g2^2) + .01).
    g1 = 1.0
    w1 = 1 - 0.04 * g1 / (1 + 0.01)
    r = 2 * w1 - 1
    g2 = 2 * r
    w2 = w1 - 0.04 * g2 / (math.sqrt(g1 ** 2 + g2 ** 2) + 0.01)
    zico = math.log(((abs(g1) + abs(g2)) / 2) / (abs(g1 - g2) / math.sqrt(2)))  # unbiased std of two values
    fr = math.log(abs((g1 + g2) * w2) + 1e-10)
    batches = [tb([[1.0]], [0.0]), tb([[2.0]], [1.0])]
    model = LinearSquare([1.0])
    assert get_proxy("sigeo_ref").score(model, batches) == pytest.approx(zico + fr, rel=1e-5)
    last_loss = 0.5 * r ** 2
    assert get_proxy("sigeo_ref", lambda3=1.0).score(model, batches) == pytest.approx(zico + fr - last_loss, rel=1e-5)
    assert model.head.weight.item() == 1.0  # the steps it took are undone


def test_sigeo_reference_takes_only_the_first_varying_entry_unless_told():
    model, batches = LinearSquare([1.0, 2.0]), BATCHES  # gradients (1, 0) then (2, 2) (no step moves them apart)
    first = get_proxy("sigeo_ref", lambda2=0.0, lr=1e-12).score(model, batches)
    every = get_proxy("sigeo_ref", lambda2=0.0, lr=1e-12, first_nonzero_only=False).score(model, batches)
    s = math.sqrt(2)  # unbiased std of (1, 2) is 1/sqrt 2, of (0, 2) is sqrt 2
    assert first == pytest.approx(math.log(1.5 / (1 / s)), rel=1e-6)
    assert every == pytest.approx(math.log(1.5 / (1 / s) + 1.0 / s), rel=1e-6)


class ReluNet(nn.Module):
    """logit = sum relu(x W^T) with W = I, so the ReLU codes are the signs of x."""

    def __init__(self, w):
        super().__init__()
        self.lin = nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            self.lin.weight.copy_(torch.tensor(w, dtype=torch.float32))

    def forward(self, batch):
        return F.relu(self.lin(batch.dense)).sum(1)

    def loss(self, logits, batch):
        return F.binary_cross_entropy_with_logits(logits, batch.label)


def test_naswot_is_the_log_det_of_the_hamming_kernel():
    # codes (1, 0) and (1, 1): K = [[2, 1], [1, 2]], det 3
    batch = tb([[1.0, -1.0], [1.0, 1.0]], [0.0, 1.0])
    assert get_proxy("naswot").score(ReluNet([[1.0, 0.0], [0.0, 1.0]]), [batch]) == pytest.approx(math.log(3.0))
    same = tb([[1.0, 1.0], [2.0, 3.0]], [0.0, 1.0])  # one code twice: K singular
    assert get_proxy("naswot").score(ReluNet([[1.0, 0.0], [0.0, 1.0]]), [same]) == -math.inf


def test_synflow_on_absolute_weights_and_ones():
    # |W| = I, input ones (2 rows): R = sum over rows and units of 1 = 4; dR/dW_ii = 2 -> sum |W * grad| = 2 + 2
    batch = tb([[5.0, -3.0], [0.5, 0.25]], [0.0, 1.0])
    model = ReluNet([[-1.0, 0.0], [0.0, 1.0]])
    assert get_proxy("synflow").score(model, [batch]) == pytest.approx(4.0)
    assert model.lin.weight[0, 0].item() == -1.0


def test_flops_counts_a_model_without_an_analytic_count():
    batch = tb([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], [0.0, 1.0, 1.0])
    assert get_proxy("flops").score(LinearSquare([1.0, 2.0]), [batch]) == 4.0  # one multiply-add per weight


@pytest.fixture(scope="module")
def subnet_and_batches(tiny_cache):
    space = get_space("nasrec_small", scale=0.125)
    point = space.sample(np.random.default_rng(3))
    sup = build_model("nasrec_supernet", tiny_cache.spec, tiny_cache.vocab_sizes, {"space": "small", "scale": 0.125,
                                                                                   "numeric_norm": True}, seed=0)
    sub = build_model("nasrec_subnet", tiny_cache.spec, tiny_cache.vocab_sizes,
                      {**space.candidate(point)[0], "numeric_norm": True}, seed=0).inherit(sup)
    return sub, proxy_batches(tiny_cache, 3, 64, seed=0), point, space


def test_sigeo_without_fr_and_loss_is_zico_on_a_nasrec_subnet(subnet_and_batches):
    sub, batches, _, _ = subnet_and_batches
    zico = get_proxy("zico").score(sub, batches)
    assert get_proxy("sigeo", lambda2=0.0, lambda3=0.0).score(sub, batches) == zico
    assert zico != 0.0


def test_every_proxy_leaves_the_model_as_it_was(subnet_and_batches):
    _load()
    sub, batches, point, space = subnet_and_batches
    sub.train()
    before = {k: v.clone() for k, v in sub.state_dict().items()}
    flags = [p.requires_grad for p in sub.parameters()]
    for name in sorted(PROXIES):
        value = get_proxy(name).score(sub, batches)
        assert isinstance(value, float) and not math.isnan(value), name
        assert all(torch.equal(before[k], v) for k, v in sub.state_dict().items()), name
        assert [p.requires_grad for p in sub.parameters()] == flags and sub.training, name
    assert get_proxy("flops").score(sub, batches) == sub.flops() == space.flops(point, sub.spec)


def test_proxy_evaluator_is_registered_and_deterministic_under_a_seed(tiny_cache, subnet_and_batches):
    _, _, point, space = subnet_and_batches
    assert get_evaluator_class("proxy") is ProxyEvaluator
    sup = build_model("nasrec_supernet", tiny_cache.spec, tiny_cache.vocab_sizes, {"space": "small", "scale": 0.125},
                      seed=0)
    c = Candidate(0, *space.candidate(point), evaluation="proxy", point=point)
    names = ["zico", "sigeo", "naswot", "synflow"]

    def run(seed):
        (e,) = ProxyEvaluator(tiny_cache, names, supernet=sup, n_batches=2, batch_size=64, seed=seed)([c])
        return e

    a, b, other = run(5), run(5), run(6)
    assert a.kind == "proxy" and a.status == "ok" and a.value == a.metrics["proxy.zico"]
    assert {k: v for k, v in a.metrics.items() if not k.startswith("seconds")} == \
        {k: v for k, v in b.metrics.items() if not k.startswith("seconds")}
    assert other.metrics["proxy.zico"] != a.metrics["proxy.zico"]  # other batches
    zero_shot = ProxyEvaluator(tiny_cache, {"z": "zico"}, n_batches=2, batch_size=64, seed=5)
    assert zero_shot([c])[0].value == zero_shot([c])[0].value  # fresh subnet at initialisation, seeded


def test_proxy_errors_say_what_is_wrong(tiny_cache, subnet_and_batches):
    sub, batches, _, _ = subnet_and_batches
    with pytest.raises(ProxyError, match="'zico' needs at least 2 batches"):
        get_proxy("zico").score(sub, batches[:1])
    with pytest.raises(UnknownNameError, match="unknown proxy 'zicoo'; valid: .*zico"):
        get_proxy("zicoo")
    with pytest.raises(ProxyError, match="proxy 'sigeo': .*unexpected keyword argument 'lambda4'"):
        get_proxy("sigeo", lambda4=1.0)
    with pytest.raises(ProxyError, match="lambdas must be finite"):
        get_proxy("sigeo", lambda2=float("nan"))
    with pytest.raises(ProxyError, match="fewer than 100 batches of 64"):
        proxy_batches(tiny_cache, 100, 64, seed=0)
    with pytest.raises(ProxyError, match="primary proxy 'snip' is not among"):
        ProxyEvaluator(tiny_cache, ["zico"], primary="snip", n_batches=2, batch_size=64)
    with pytest.raises(ProxyError, match="has no head_parameters"):
        get_proxy("sigeo_ref").score(ReluNet([[1.0, 0.0], [0.0, 1.0]]), [BATCHES[0], BATCHES[1]])
