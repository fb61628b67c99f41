"""Metrics against scikit-learn (AUC, logloss) and a per-group sklearn loop (gAUC), on data with ties."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import log_loss, roc_auc_score

from ctrbench import metrics


def _data(seed: int, n: int, levels: int, pos_rate: float):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < pos_rate).astype(np.float32)
    s = rng.integers(0, levels, n) / max(levels - 1, 1)  # few levels -> many ties
    return y, s


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(2, 400), levels=st.integers(1, 30),
       pos_rate=st.floats(0.05, 0.95))
def test_auc_matches_sklearn_with_ties(seed, n, levels, pos_rate):
    y, s = _data(seed, n, levels, pos_rate)
    got = metrics.auc(y, s)
    if y.min() == y.max():
        assert math.isnan(got)
    else:
        assert abs(got - roc_auc_score(y, s)) < 1e-9


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 400), pos_rate=st.floats(0.05, 0.95),
       dtype=st.sampled_from([np.float32, np.float64]), extreme=st.booleans())
def test_logloss_matches_sklearn(seed, n, pos_rate, dtype, extreme):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < pos_rate).astype(np.float64)
    p = rng.random(n).astype(dtype)
    if extreme:  # exact 0 and 1 predictions exercise the clipping
        p[: n // 3] = 0.0
        p[n // 3: 2 * n // 3] = 1.0
    got = metrics.logloss(y, p)
    if y.min() == y.max():  # sklearn refuses a single class; ours is the plain mean
        eps = np.finfo(dtype).eps
        q = np.clip(p.astype(np.float64), eps, 1 - eps)
        ref = -np.mean(y * np.log(q) + (1 - y) * np.log1p(-q))
        assert abs(got - ref) < 1e-9
    else:
        ref = log_loss(y, p.astype(np.float64) if dtype == np.float64 else p)
        # sklearn computes float32 inputs in float32; ours runs in float64 with the same clipping
        assert abs(got - ref) < (1e-9 if dtype == np.float64 else 1e-5)


def _gauc_loop(y, s, g):
    num = den = 0.0
    for gid in np.unique(g):
        m = g == gid
        if y[m].min() == y[m].max():
            continue
        num += m.sum() * roc_auc_score(y[m], s[m])
        den += m.sum()
    return num / den if den else math.nan


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 400), groups=st.integers(1, 40), levels=st.integers(1, 10))
def test_gauc_matches_per_group_loop(seed, n, groups, levels):
    rng = np.random.default_rng(seed)
    y, s = _data(seed, n, levels, 0.4)
    g = rng.integers(0, groups, n) * 7919 - 5  # arbitrary, negative ids too
    got, ref = metrics.gauc(y, s, g), _gauc_loop(y, s, g)
    if math.isnan(ref):
        assert math.isnan(got)
    else:
        assert abs(got - ref) < 1e-9


def test_gauc_is_fast_for_many_groups():
    import time

    rng = np.random.default_rng(0)
    n = 500_000
    y = rng.random(n) < 0.3
    s = rng.random(n)
    g = rng.integers(0, 200_000, n)
    t = time.process_time()  # CPU time: the wall clock of a shared machine measures the neighbours
    val = metrics.gauc(y, s, g)
    assert time.process_time() - t < 3.0
    assert 0.45 < val < 0.55


def test_auc_large_exact():
    rng = np.random.default_rng(1)
    y = rng.random(300_000) < 0.25
    s = np.round(rng.random(300_000), 3)
    assert abs(metrics.auc(y, s) - roc_auc_score(y, s)) < 1e-12


def test_ne_background_and_calibration():
    rng = np.random.default_rng(2)
    y = (rng.random(5000) < 0.3).astype(float)
    p = np.clip(0.3 + 0.1 * rng.standard_normal(5000), 0.01, 0.99)
    ll = log_loss(y, p)
    h_eval = -(y.mean() * math.log(y.mean()) + (1 - y.mean()) * math.log(1 - y.mean()))
    assert abs(metrics.ne(y, p) - ll / h_eval) < 1e-12
    h_train = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    assert abs(metrics.ne(y, p, 0.25) - ll / h_train) < 1e-12
    # predicting the evaluated CTR for everyone has NE exactly 1 with the eval background
    assert abs(metrics.ne(y, np.full(5000, y.mean())) - 1.0) < 1e-12
    assert abs(metrics.calibration(y, p) - p.mean() / y.mean()) < 1e-12
    res = metrics.evaluate(y, p, train_ctr=0.25)
    assert res["ne_background"] == "train" and abs(res["ne"] - ll / h_train) < 1e-12
    assert metrics.evaluate(y, p)["ne_background"] == "eval"
    assert "gauc" not in res


def test_relaimpr():
    assert metrics.relaimpr(0.75, 0.7) == pytest.approx(25.0)
    assert metrics.relaimpr(0.7, 0.7) == pytest.approx(0.0)
    assert math.isnan(metrics.relaimpr(0.7, 0.5))


def test_undefined_cases_are_nan_not_errors():
    y1 = np.ones(10)
    p = np.linspace(0.1, 0.9, 10)
    assert math.isnan(metrics.auc(y1, p))
    assert math.isnan(metrics.gauc(y1, p, np.arange(10) % 3))
    assert math.isnan(metrics.calibration(np.zeros(10), p))
    assert math.isnan(metrics.ne(y1, p))  # background CTR 1 has zero entropy
    assert math.isnan(metrics.auc([], []))
    assert math.isnan(metrics.auc([0, 1, 0], [0.1, np.nan, 0.3]))
    res = metrics.evaluate(y1, p, group_ids=np.zeros(10))
    assert math.isnan(res["auc"]) and math.isnan(res["gauc"]) and res["logloss"] > 0


def test_bad_input_is_an_error():
    with pytest.raises(ValueError):
        metrics.auc([0, 2, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError):
        metrics.auc([0, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError):
        metrics.logloss([0, 1], [0.5, 1.5])


def test_oracle_metrics_prefix():
    y = np.array([0, 1, 0, 1, 1, 0], dtype=float)
    p = np.array([0.2, 0.8, 0.3, 0.6, 0.4, 0.5])
    res = metrics.oracle_metrics(y, p, group_ids=[1, 1, 2, 2, 3, 3], train_ctr=0.5)
    assert res["oracle_auc"] == pytest.approx(roc_auc_score(y, p))
    assert res["oracle_gauc"] == pytest.approx((2 * 1.0 + 2 * 1.0 + 2 * 0.0) / 6)
    assert res["ne_background"] == "train" and "oracle_logloss" in res and "oracle_calibration" in res


def test_every_metric_a_config_names_has_one_direction():
    """Early stopping (train monitor), suite checks and search objectives all read metrics.METRIC_DIRECTIONS."""
    import typing

    from ctrbench.harness.suite import CheckSpec
    from ctrbench.search.objective import Metric
    from ctrbench.train import TrainConfig

    named = set(typing.get_args(TrainConfig.model_fields["monitor"].annotation))
    named |= set(typing.get_args(CheckSpec.model_fields["metric"].annotation)) | set(typing.get_args(Metric))
    assert named <= set(metrics.METRIC_DIRECTIONS)
    assert metrics.better("auc", 0.8, 0.7) and not metrics.better("auc", 0.7, 0.8)
    assert metrics.better("logloss", 0.4, 0.5) and not metrics.better("logloss", 0.5, 0.4)
    assert not metrics.better("auc", 0.7 + 1e-7, 0.7, margin=1e-6)
