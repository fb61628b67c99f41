"""The one-shot evaluator: a candidate inherits the supernet's path, only its head is fine-tuned, it is scored
on validation, and the supernet is left as it was."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ctrbench.metrics import evaluate
from ctrbench.models import build_model
from ctrbench.search.base import Candidate
from ctrbench.search.evaluators.oneshot import OneShotEvaluator
from ctrbench.search.registry import get_space
from ctrbench.train import predict


@pytest.fixture(scope="module")
def supernet(tiny_cache):
    sup = build_model("nasrec_supernet", tiny_cache.spec, tiny_cache.vocab_sizes, {"space": "full", "scale": 0.125},
                      seed=0)
    opt = torch.optim.Adagrad(sup.parameters(), lr=0.05)
    from ctrbench.data.loader import BatchLoader

    for batch in BatchLoader(tiny_cache, "train", 100, shuffle=True):  # a few sampled-path steps
        loss = sup.loss(sup(batch), batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return sup.eval()


def test_inherit_without_finetune_scores_the_supernet_path(supernet, tiny_cache):
    space = get_space("nasrec_full", scale=0.125)
    point = space.sample(np.random.default_rng(0))
    c = Candidate(0, *space.candidate(point), evaluation="inherit", point=point)
    (e,) = OneShotEvaluator(supernet, tiny_cache, steps=0)([c])
    supernet.fix(point)
    out = predict(supernet, tiny_cache, "valid", 1000, torch.device("cpu"))
    supernet.fix(None)
    want = evaluate(out["labels"], out["preds"], train_ctr=tiny_cache.positive_rate("train"))
    assert e.status == "ok" and e.kind == "inherit" and e.value == pytest.approx(want["auc"], abs=1e-6)
    assert e.metrics["flops"] == space.flops(point, tiny_cache.spec) and e.metrics["logloss"] > 0


def test_finetune_moves_only_the_head_and_leaves_the_supernet(supernet, tiny_cache):
    space = get_space("nasrec_full", scale=0.125)
    point = space.sample(np.random.default_rng(1))
    before = {k: v.clone() for k, v in supernet.state_dict().items()}
    ev = OneShotEvaluator(supernet, tiny_cache, steps=6, batch_size=64)
    c = Candidate(0, *space.candidate(point), evaluation="inherit", point=point)
    fresh = ev.subnet(c)
    tuned = ev.subnet(c)
    ev.finetune_head(tuned)
    changed = {n for (n, a), (_, b) in zip(fresh.named_parameters(), tuned.named_parameters()) if not torch.equal(a, b)}
    assert changed == {"head.weight", "head.bias"}
    assert all(torch.equal(before[k], v) for k, v in supernet.state_dict().items())
    with pytest.raises(ValueError, match="steps >= 0"):
        OneShotEvaluator(supernet, tiny_cache, steps=-1)
