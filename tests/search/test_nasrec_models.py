"""The NASRec supernet and subnet: a subnet with inherited weights computes the supernet's fixed path, the
analytic FLOPs equal flop_counter's count, path sampling follows NASRec's default strategy and warm-up."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from torch.utils.flop_counter import FlopCounterMode

from ctrbench.data.loader import BatchLoader
from ctrbench.errors import ParamError
from ctrbench.models import build_model
from ctrbench.search.registry import get_space

SPACES = ("nasrec_small", "nasrec_full", "nasrec_xlarge_zeros")
SPACE_OF = {"nasrec_small": "small", "nasrec_full": "full", "nasrec_xlarge_zeros": "xlarge_zeros"}
SCALE = 0.125
seeds = st.integers(0, 2**32 - 1)


@pytest.fixture(scope="module")
def batch(tiny_cache):
    return next(iter(BatchLoader(tiny_cache, "valid", 24)))


@pytest.fixture(scope="module")
def supernets(tiny_cache):
    """One supernet per space, every weight perturbed so that no slice of a LayerNorm or bias is trivially 1 or 0."""
    out = {}
    for name in SPACES:
        sup = build_model("nasrec_supernet", tiny_cache.spec, tiny_cache.vocab_sizes,
                          {"space": SPACE_OF[name], "scale": SCALE}, seed=0)
        gen = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for p in sup.parameters():
                p.add_(0.3 * torch.randn(p.shape, generator=gen))
        out[name] = sup.eval()
    return out


@settings(max_examples=6, deadline=None)
@given(seed=seeds)
@pytest.mark.parametrize("name", SPACES)
def test_subnet_with_inherited_weights_computes_the_supernet_path(name, seed, supernets, tiny_cache, batch):
    space, sup = get_space(name, scale=SCALE), supernets[name]
    point = space.sample(np.random.default_rng(seed))
    params, _ = space.candidate(point)
    sub = build_model("nasrec_subnet", tiny_cache.spec, tiny_cache.vocab_sizes, params, seed=5).inherit(sup).eval()
    sup.fix(point)
    try:
        with torch.no_grad():
            want, got = sup(batch), sub(batch)
    finally:
        sup.fix(None)
    # float32 sums run in another order; a wrong slice is off by ~1
    torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-4)
    # the standalone subnet is smaller than the supernet: only its own nodes at their own widths
    assert sum(p.numel() for p in sub.parameters()) < sum(p.numel() for p in sup.parameters())


@settings(max_examples=6, deadline=None)
@given(seed=seeds)
@pytest.mark.parametrize("name", SPACES)
def test_analytic_flops_equal_flop_counter(name, seed, tiny_cache, batch):
    space = get_space(name, scale=SCALE)
    point = space.sample(np.random.default_rng(seed))
    sub = build_model("nasrec_subnet", tiny_cache.spec, tiny_cache.vocab_sizes, space.candidate(point)[0]).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        sub(batch)
    counted = counter.get_total_flops() / batch.label.shape[0]
    assert space.flops(point, tiny_cache.spec) == sub.flops() == counted


def test_dcnv2_space_flops_equal_flop_counter(tiny_cache, batch):
    space = get_space("dcnv2")
    rng = np.random.default_rng(0)
    for _ in range(4):
        point = space.sample(rng)
        model = build_model("dcnv2", tiny_cache.spec, tiny_cache.vocab_sizes, space.candidate(point)[0]).eval()
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(batch)
        assert space.flops(point, tiny_cache.spec) == counter.get_total_flops() / batch.label.shape[0]


def test_default_path_sampling_and_linear_warmup(tiny_cache):
    sup = build_model("nasrec_supernet", tiny_cache.spec, tiny_cache.vocab_sizes,
                      {"space": "full", "scale": SCALE, "warmup_steps": 100, "path_seed": 3})
    assert [sup.full_path_probability(s) for s in (0, 25, 50, 100, 400)] == [1.0, 0.75, 0.5, 0.0, 0.0]
    full = sup.full_path()
    assert sup.sample_path(0) == full  # probability 1 at the first step
    halfway = [sup.sample_path(50) == full for _ in range(400)]
    assert 0.4 < np.mean(halfway) < 0.6
    cfg = sup.cfg
    for _ in range(50):  # after warm-up: any-path inputs, single-path nodes
        for i, b in enumerate(sup.sample_path(100)):
            assert len(b.dense_nodes) == len(b.sparse_nodes) == 1 and len(b.left) == len(b.right) == 1
            assert 1 <= len(b.dense_idx) <= min(4, i + 1) and 1 <= len(b.sparse_idx) <= min(4, i + 1)
            assert b.d in cfg.dense_dims and b.t in cfg.sparse_dims and max(b.dense_idx + b.sparse_idx) <= i
    anyp = build_model("nasrec_supernet", tiny_cache.spec, tiny_cache.vocab_sizes,
                       {"space": "full", "scale": SCALE, "path_sampling": "any-path"})
    assert any(len(b.dense_nodes) > 1 for _ in range(20) for b in anyp.sample_path(0))
    single = build_model("nasrec_supernet", tiny_cache.spec, tiny_cache.vocab_sizes,
                         {"space": "small", "scale": SCALE, "path_sampling": "single-path"})
    assert all(len(b.dense_idx) == len(b.sparse_idx) == 1 for _ in range(20) for b in single.sample_path(0))


def test_supernet_trains_on_sampled_paths(tiny_cache, batch):
    sup = build_model("nasrec_supernet", tiny_cache.spec, tiny_cache.vocab_sizes,
                      {"space": "full", "scale": SCALE, "warmup_steps": 2}, seed=0).train()
    opt = torch.optim.Adagrad(sup.parameters(), lr=0.05)
    for step in range(3):
        loss = sup.loss(sup(batch), batch)
        opt.zero_grad()
        loss.backward()
        if step == 0:  # the first step runs the full supernet: every weight gets a gradient
            assert sup.last_path == sup.full_path()
            assert all(p.grad is not None for n, p in sup.named_parameters() if "embedding" not in n)
        opt.step()
        assert torch.isfinite(loss)
    assert int(sup.train_steps) == 3


def test_subnet_trains_from_scratch(tiny_cache):
    from ctrbench.train import fit

    space = get_space("nasrec_full", scale=SCALE)
    sub = build_model("nasrec_subnet", tiny_cache.spec, tiny_cache.vocab_sizes,
                      space.candidate(space.sample(np.random.default_rng(4)))[0], seed=0)
    before = {n: p.detach().clone() for n, p in sub.named_parameters()}
    res = fit(sub, tiny_cache, {"max_epochs": 1, "batch_size": 128, "lr": 0.01})
    assert res.status == "ok" and res.steps == 5 and 0.0 <= res.valid["auc"] <= 1.0  # 600 rows / 128
    assert any(not torch.equal(before[n], p) for n, p in sub.named_parameters())


def test_bad_points_and_paths_are_refused(tiny_cache):
    space = get_space("nasrec_small", scale=SCALE)
    point = space.sample(np.random.default_rng(0))
    point["blocks"][1]["dense_left_idx"] = 2
    with pytest.raises(ValidationError, match="blocks\\[1\\] reads source 2"):
        build_model("nasrec_subnet", tiny_cache.spec, tiny_cache.vocab_sizes, {"point": point})
    with pytest.raises(ParamError, match="needs a point"):
        build_model("nasrec_subnet", tiny_cache.spec, tiny_cache.vocab_sizes, {})
    sup = build_model("nasrec_supernet", tiny_cache.spec, tiny_cache.vocab_sizes, {"space": "small", "scale": SCALE})
    wide = get_space("nasrec_small").sample(np.random.default_rng(0))
    with pytest.raises(ValueError, match="exceed the supernet's|dp_tokens"):
        sup.fix(wide)
    full = get_space("nasrec_full", scale=SCALE).sample(np.random.default_rng(1))
    if any(b["dense_node"] in ("sg", "sum") or b["sparse_node"] == "attn" for b in full["blocks"]):
        with pytest.raises(ValueError, match="not in this supernet"):
            sup.fix(full)
