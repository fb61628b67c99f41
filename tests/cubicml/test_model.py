"""The performance model on a known synthetic throughput function: every learned predictor beats the constant,
held out by random split and by leave-one-model-out; the encoder ignores unseen categories."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from synthetic_perf import synthetic_frame  # noqa: E402

from ctrbench.cubicml.dataset import PerfDataError  # noqa: E402
from ctrbench.cubicml.model import Encoder, Predictor, evaluate  # noqa: E402

FAST = {"members": 3, "epochs": 120}


@pytest.fixture(scope="module")
def metrics():
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        df = synthetic_frame(0).sample(100, random_state=0).reset_index(drop=True)
        return evaluate(df, folds=4, **FAST)[1]
    finally:
        torch.set_num_threads(old)


def test_predictors_beat_the_constant_on_a_random_split(metrics):
    const = metrics["constant/random"]
    assert const["spearman_within_fold"] == 0.0
    for kind in ("mlp_rank", "mlp_mse", "lightgbm"):
        assert metrics[f"{kind}/random"]["spearman_within_fold"] > 0.85, (kind, metrics[f"{kind}/random"])
    for kind in ("mlp_mse", "lightgbm"):
        assert metrics[f"{kind}/random"]["mape"] < 0.5 * const["mape"], (kind, metrics[f"{kind}/random"], const)
    assert metrics["mlp_rank/random"]["mape"] is None  # a ranking loss predicts an order, not values


def test_an_unseen_model_is_still_ranked(metrics):
    # leave-one-model-out: the held-out model's configs are ordered by the knobs it shares with the others
    assert metrics["mlp_rank/model"]["spearman_within_fold"] > 0.8
    assert metrics["lightgbm/model"]["spearman_within_fold"] > 0.8


def test_encoder_drops_constant_columns_and_zeroes_unseen_categories():
    df = synthetic_frame(1)
    enc = Encoder().fit(df[df["model"] != "dhen"])
    assert "world_size" not in enc.nums and "model" in enc.cats and "dhen" not in enc.cats["model"]
    x = enc.transform(df[df["model"] == "dhen"].head(2))
    assert x.shape[1] == len(enc.nums) + sum(len(v) for v in enc.cats.values())


def test_unknown_predictor_is_a_typed_error():
    with pytest.raises(PerfDataError, match="valid"):
        Predictor("xgboost")
