"""The search on a known synthetic throughput grid: at 20% of the grid's measurements the predictor-driven search
gets within 5% of the grid's best; every strategy measures distinct configs, at most the budget; bad input is a
typed error."""
from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from synthetic_perf import synthetic_frame  # noqa: E402

from ctrbench.cubicml.dataset import PerfDataError  # noqa: E402
from ctrbench.cubicml.search import compare, run_search, search_knobs  # noqa: E402

FAST = {"members": 3, "epochs": 100}


@pytest.fixture(scope="module")
def pool():
    df = synthetic_frame(0)
    return df[df["model"] == "dcnv2"].reset_index(drop=True)


def test_predictor_search_finds_near_best_with_a_fifth_of_the_grid(pool, one_torch_thread):
    budget = len(pool) // 5
    traces, summary = compare(pool, budget, seeds=[0, 1], strategies=("predictor", "random"), **FAST)
    by = summary.set_index("strategy")
    assert by.loc["predictor", "within_5pct"] == 1.0, summary
    assert by.loc["predictor", "mean_share_of_best"] >= by.loc["random", "mean_share_of_best"]
    for _, g in traces.groupby(["strategy", "seed"]):
        assert len(g) == budget and g["run_id"].is_unique


def test_optuna_measures_distinct_configs_within_the_budget(pool):
    trace = run_search(pool, "optuna", 10, seed=3)
    assert len(trace) == 10 and trace["run_id"].is_unique
    assert (trace["best_so_far"].diff().dropna() >= 0).all()
    assert set(search_knobs(pool)) == {"threads", "batch_size", "embedding_dim", "embedding_gradients"}


def test_bad_strategy_or_budget_is_a_typed_error(pool):
    with pytest.raises(PerfDataError, match="valid"):
        run_search(pool, "grid", 5)
    with pytest.raises(PerfDataError, match="budget"):
        run_search(pool, "random", len(pool) + 1)


def test_per_seed_reads_the_final_share_and_the_measurements_to_the_goal():
    from ctrbench.cubicml.search import GOAL_SHARE, per_seed

    traces = pd.DataFrame({"strategy": ["random"] * 6, "seed": [0, 0, 0, 1, 1, 1], "measurements": [1, 2, 3] * 2,
                           "share_of_grid_best": [0.5, GOAL_SHARE, 1.0, 0.5, 0.9, 0.94]})
    got = per_seed(traces).set_index("seed")
    assert got.final_share.tolist() == [1.0, 0.94] and got.to_goal[0] == 2.0 and pd.isna(got.to_goal[1])
