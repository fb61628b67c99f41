"""The ranking-AutoML pieces: the pairwise loss and its gradient on hand-made pairs, the ensemble's spread off
its training distribution, REINFORCE on a known bandit, the trend label on a synthetic curve, a killed search
resuming with the same policy and proposals, the dhen space's properties, and a search through the harness."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ctrbench.search.base import Evaluation, run_search
from ctrbench.search.fidelity import CurveError, Fidelity, kendall_tau, trend_label
from ctrbench.search.journal import FileJournal
from ctrbench.search.predictors import EnsemblePredictor, pairwise_margin_loss
from ctrbench.search.predictors.ensemble import PredictorConfig
from ctrbench.search.registry import SpaceOptionsError, get_space
from ctrbench.search.searchers.automl import AutoMLSearcher, CategoricalPolicy
from ctrbench.search.spaces import SpacePointError


def test_pairwise_loss_and_gradient_on_hand_made_pairs():
    target = torch.tensor([0.0, 1.0, 2.0])
    right = torch.tensor([0.0, 1.0, 2.0], requires_grad=True)  # ordered as the targets, gaps 1 and 2 >= margin
    assert pairwise_margin_loss(right, target, 0.5).item() == 0.0
    wrong = torch.tensor([1.0, 0.0, 2.0], requires_grad=True)  # pair (0, 1) reversed by 1: loss 1 + 0.5
    loss = pairwise_margin_loss(wrong, target, 0.5)
    assert loss.item() == pytest.approx(1.5 / 3)  # mean over 3 pairs, the other two satisfied
    loss.backward()
    assert wrong.grad.tolist() == pytest.approx([1 / 3, -1 / 3, 0.0])  # push 0 down, 1 up, leave 2
    ties = torch.tensor([1.0, 1.0], requires_grad=True)
    assert pairwise_margin_loss(ties, torch.tensor([3.0, 3.0]), 0.1).item() == 0.0


def _toy(n, rng, low=0.0, high=1.0):
    x = rng.uniform(low, high, (n, 3))
    return x, x @ [1.0, -2.0, 0.5], x.sum(1)


@pytest.mark.parametrize("loss", ["pairwise", "mse"])
def test_ensemble_ranks_held_out_points_and_is_unsure_off_distribution(loss):
    rng = np.random.default_rng(0)
    x, y_ne, y_fl = _toy(40, rng)
    pred = EnsemblePredictor(PredictorConfig(members=5, epochs=150, loss=loss)).fit(x, y_ne, y_fl)
    xt, yt_ne, yt_fl = _toy(30, rng)
    mean, std_in = pred.query(xt)
    assert kendall_tau(mean[:, 0], yt_ne) > 0.6 and kendall_tau(mean[:, 1], yt_fl) > 0.6
    _, std_out = pred.query(_toy(30, rng, 4.0, 6.0)[0])
    assert std_out.mean(0)[0] > 2 * std_in.mean(0)[0]
    again = EnsemblePredictor.from_state(json.loads(json.dumps(pred.state_dict())))
    assert np.array_equal(again.query(xt)[0], mean)


def test_predictor_refuses_bad_shapes():
    pred = EnsemblePredictor(PredictorConfig(members=1, epochs=1))
    with pytest.raises(ValueError, match="query before fit"):
        pred.query(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="one NE and one FLOPs label per row"):
        pred.fit(np.zeros((3, 2)), [1, 2], [1, 2, 3])
    pred.fit(np.eye(3), [1, 2, 3], [1, 2, 3])
    with pytest.raises(ValueError, match=r"X must be \[n, 3\]"):
        pred.query(np.zeros((2, 4)))


def test_reinforce_raises_the_best_arms_probability_on_a_bandit():
    payout = {0: 0.0, 1: 1.0, 2: 0.3}
    policy = CategoricalPolicy({"arm": (0, 1, 2)})
    rng = np.random.default_rng(0)
    before = policy.probs("arm")[1]
    for _ in range(100):
        draws = policy.sample(rng, 16)
        policy.update(draws, np.array([payout[d["arm"]] for d in draws]), lr=0.5)
    assert before == pytest.approx(1 / 3) and policy.probs("arm")[1] > 0.9


def test_trend_label_extrapolates_the_late_line():
    curve = [(100, 0.95), (200, 0.90), (300, 0.88), (400, 0.86)]  # late slope -0.0002 per example
    assert trend_label(curve, horizon=1000, late_points=2) == pytest.approx(0.86 - 0.0002 * 600)
    assert trend_label(curve, horizon=1000, late_points=3) == pytest.approx(0.86 - 0.0002 * 600)
    assert trend_label(curve, horizon=400) == pytest.approx(0.86)
    fid = Fidelity(fraction=0.4, train_rows=1000, checkpoints=4)
    assert fid.train_overrides()["max_train_rows"] == 400 and fid.label(curve) == pytest.approx(0.74)
    assert Fidelity(fraction=0.4, train_rows=1000, trend=False).label(curve) == 0.86
    with pytest.raises(CurveError, match="at least 2"):
        trend_label(curve[:1], horizon=10)
    with pytest.raises(CurveError, match="must increase"):
        trend_label([(2, 0.9), (1, 0.8)], horizon=10)
    with pytest.raises(ValueError, match="needs train_rows"):
        Fidelity(fraction=0.5)


# --- the searcher ------------------------------------------------------------------------------------------
def _evaluate(batch):
    """A known objective over dhen points: NE falls with dcn layers and rises with width; FLOPs from the space."""
    out = []
    for c in batch:
        layers = c.point["layers"]
        ne = 0.8 - 0.01 * sum(la["module"] == "dcn" for la in layers) + 1e-4 * sum(la["width"] for la in layers)
        out.append(Evaluation(c, "ok", ne, None, {"ne": ne, "flops": 1000.0 + 10 * len(layers)}))
    return out


SEARCH = dict(budget=10, initial=4, per_round=2, policy_steps=20, policy_batch=8, pool=32,
              predictor={"members": 3, "epochs": 30}, seed=3)


def test_a_killed_search_resumes_with_the_same_policy_and_proposals(tmp_path):
    params = AutoMLSearcher.Params(**SEARCH)
    whole = run_search(AutoMLSearcher(params), _evaluate)

    class Killed(Exception):
        pass

    calls = []

    def dies_in_round_three(batch):
        calls.append(batch)
        if len(calls) == 3:
            raise Killed
        return _evaluate(batch)

    with pytest.raises(Killed):
        run_search(AutoMLSearcher(params), dies_in_round_three, FileJournal(tmp_path))
    state, pending = FileJournal(tmp_path).load_state()
    assert state["policy"] != AutoMLSearcher(params).state_dict()["policy"]  # the policy had trained
    resumed = AutoMLSearcher(params)
    resumed.load_state_dict(json.loads(json.dumps(state)))
    assert resumed.state_dict()["policy"] == state["policy"]
    result = run_search(AutoMLSearcher(params), _evaluate, FileJournal(tmp_path))
    assert [e.candidate.point for e in result.history] == [e.candidate.point for e in whole.history]
    assert len(result.history) == 10 and result.best.candidate.point == whole.best.candidate.point


def test_the_searcher_beats_its_first_round_on_a_known_objective():
    result = run_search(AutoMLSearcher(AutoMLSearcher.Params(**{**SEARCH, "budget": 16})), _evaluate)
    first = min(e.value for e in result.history[:4])
    assert min(e.value for e in result.history[4:]) < first


def test_the_searcher_runs_on_a_space_without_decisions_and_refuses_a_bad_budget():
    """nasrec_small has no decisions: the policy draws its knobs and each draw becomes the nearest space point."""
    from toy_search import SPACE, toy_evaluate

    params = AutoMLSearcher.Params(**{**SEARCH, **SPACE, "metric": "auc", "budget": 8, "space_pool": 64})
    searcher = AutoMLSearcher(params)
    result = run_search(searcher, toy_evaluate())
    hashes = [searcher.space.hash(e.candidate.point) for e in result.history]
    assert len(result.history) == 8 and len(set(hashes)) == 8
    assert set(searcher.policy.logits) == set(searcher.space.choices())
    with pytest.raises(ValueError, match="initial 8 exceeds budget 4"):
        AutoMLSearcher.Params(budget=4)


def test_the_label_is_the_validation_metric_as_a_loss_never_the_test_metric():
    """A lookup evaluation carries the table's test `ne` beside its validation value: the label is the value."""
    from ctrbench.search.base import Candidate

    searcher = AutoMLSearcher(AutoMLSearcher.Params(**SEARCH))
    point = searcher.space.sample(np.random.default_rng(0))
    e = Evaluation(Candidate(0, point=point), "ok", 0.9, None, {"ne": 0.5, "valid_ne": 0.9, "flops": 100.0})
    assert searcher.label(e) == {"point": point, "loss": 0.9, "flops": 2.0}
    by_auc = AutoMLSearcher(AutoMLSearcher.Params(**SEARCH, metric="auc"))
    e = Evaluation(Candidate(0, point=point), "ok", 0.75, None, {"auc": 0.6, "valid_auc": 0.75, "flops": 10.0})
    assert by_auc.label(e)["loss"] == -0.75


# --- the dhen space ----------------------------------------------------------------------------------------
def test_dhen_bad_points_say_where():
    """(The generic space properties run for `dhen` in test_spaces.py.)"""
    space = get_space("dhen")
    p = space.sample(np.random.default_rng(0))
    with pytest.raises(SpacePointError, match=r"layers\[0\]\.module: 'mlp' not in"):
        space.validate({**p, "layers": [{"module": "mlp", "width": 16}]})
    with pytest.raises(SpacePointError, match="layer_norm: 1 not in"):
        space.validate({**p, "layer_norm": 1})
    with pytest.raises(SpacePointError, match="a list of 1..8 layers"):
        space.validate({**p, "layers": []})
    with pytest.raises(SpaceOptionsError, match="must be positive"):
        get_space("dhen", embedding_dim=0)


def test_dhen_points_build_and_the_analytic_flops_match_the_counted_matmuls(tiny_cache):
    """Every module of the space builds and runs in dhen_stack; the space's FLOPs are the model's counted
    matmul/conv FLOPs (torch's counter; lookups and element-wise ops are outside both)."""
    from ctrbench.data.loader import BatchLoader
    from ctrbench.flops import count_flops_by_op
    from ctrbench.models import build_model, model_tables

    space = get_space("dhen", embedding_dim=4, hidden_units=[8])
    layers = [{"module": m, "width": w} for m, w in zip(("dot", "attention", "linear", "dcn", "conv", "none",
                                                          "attention"), (16, 32, 64, 16, 32, 16, 128))]
    point = space.validate({"layers": layers, "lr": 0.001, "init_scale": 2.0, "layer_norm": True})
    params, train = space.candidate(point)
    model = build_model("dhen_stack", tiny_cache.spec, tiny_cache.vocab_sizes, params, model_tables(tiny_cache),
                        seed=0)
    batch = next(iter(BatchLoader(tiny_cache, "train", 8)))
    assert model(batch).shape == (8,) and train == {"lr": 0.001}
    by_op = count_flops_by_op(model, batch, train=False)
    matmuls = sum(v for op, v in by_op.items() if any(k in op for k in ("mm", "conv")))
    assert space.flops(point, tiny_cache.spec) == matmuls // 8, by_op


def test_dhen_points_that_build_the_same_model_share_a_hash_and_the_model(tiny_cache):
    """"none" layers (and their widths) do not change the model, nor do init_scale / layer_norm without a module:
    such points hash alike, and the models they build give the same output; anything else that counts differs."""
    from ctrbench.data.loader import BatchLoader
    from ctrbench.models import build_model, model_tables

    space = get_space("dhen", embedding_dim=4, hidden_units=[8])

    def pt(*layers, lr=0.001, init_scale=1.0, layer_norm=True):
        return space.validate({"layers": [{"module": m, "width": w} for m, w in layers], "lr": lr,
                               "init_scale": init_scale, "layer_norm": layer_norm})

    same = [pt(("dcn", 16), ("none", 32), ("conv", 64)), pt(("none", 128), ("dcn", 16), ("conv", 64), ("none", 16)),
            pt(("dcn", 16), ("conv", 64))]
    assert len({space.hash(p) for p in same}) == 1
    empty = [pt(("none", 16)), pt(("none", 64), ("none", 32), init_scale=2.0, layer_norm=False)]
    assert space.hash(empty[0]) == space.hash(empty[1])
    differ = [same[0], pt(("dcn", 32), ("conv", 64)), pt(("conv", 64), ("dcn", 16)), pt(("dcn", 16), ("conv", 64),
              layer_norm=False), pt(("dcn", 16), ("conv", 64), init_scale=2.0), pt(("dcn", 16), ("conv", 64), lr=0.003),
              empty[0], pt(("none", 16), lr=0.003)]
    assert len({space.hash(p) for p in differ}) == len(differ)
    batch = next(iter(BatchLoader(tiny_cache, "train", 8)))
    for group in (same, empty):
        outs = [build_model("dhen_stack", tiny_cache.spec, tiny_cache.vocab_sizes, space.candidate(p)[0],
                            model_tables(tiny_cache), seed=0).eval()(batch) for p in group]
        for out in outs[1:]:
            torch.testing.assert_close(out, outs[0], rtol=0, atol=0)


def test_a_run_on_fewer_rows_than_the_stated_fidelity_is_refused():
    from types import SimpleNamespace

    from ctrbench.search.base import Candidate
    from ctrbench.search.fidelity import FidelityError

    searcher = AutoMLSearcher(AutoMLSearcher.Params(**SEARCH, fidelity={"fraction": 0.5, "train_rows": 1000}))
    point = searcher.space.sample(np.random.default_rng(0))
    curve = [{"steps": s, "valid": {"ne": 0.9}} for s in (1, 2, 3, 4)]
    ok = SimpleNamespace(train_rows=500, history=curve, batch_size=100)
    e = Evaluation(Candidate(0, point=point), "ok", 0.9, ok, {"ne": 0.9, "flops": 100.0})
    assert searcher.label(e)["loss"] == pytest.approx(0.9)
    e.record = SimpleNamespace(train_rows=300, history=curve, batch_size=100)  # the split had only 300 rows
    with pytest.raises(FidelityError, match="candidate 0 trained on 300 rows, fewer than the 500"):
        searcher.label(e)
