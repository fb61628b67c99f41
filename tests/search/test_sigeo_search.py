"""The end-to-end search on a bench table: stored answers drive regularized evolution, the top-k retrain reads the
bench, a perfect proxy finds the table's best point, and every second is counted."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ctrbench.search.registry import get_space
from ctrbench.search.sigeo import StudyConfig, bench_candidates
from ctrbench.search.sigeo_search import METHODS, AnswerTable, claim_b, retrain_answers, run_method

N = 16


@pytest.fixture()
def bench(tmp_path):
    cfg = StudyConfig(name="t", budget=N, proxies=["zico", "sigeo"])
    points = [c.point for c in bench_candidates(cfg)]
    space = get_space("nasrec_small", scale=0.125)
    hashes = [space.hash(p) for p in points]
    auc = np.linspace(0.70, 0.80, N)[np.random.default_rng(0).permutation(N)]
    table = pd.DataFrame({"point_hash": hashes, "auc": auc, "valid_auc": auc, "logloss": 1 - auc,
                          "wall_seconds": 30.0, "point": [json.dumps(p) for p in points]})
    path = tmp_path / "nasrec_small_criteo_x1.csv"
    table.to_csv(path, index=False)
    runs = pd.DataFrame({"point_hash": hashes, "seed": 0, "auc": auc, "logloss": 1 - auc, "train_seconds": 20.0})
    scores = pd.DataFrame([{"level": lv, "point_hash": h, "zico": -a, "sigeo": a, "oneshot": a}
                           for lv in (0.0, 0.01, 1.0) for h, a in zip(hashes, auc)])
    return cfg, path, table, runs, scores


def test_a_perfect_proxy_finds_the_best_point_and_costs_add_up(bench):
    cfg, path, table, runs, scores = bench
    space = get_space("bench_table", space="nasrec_small", table=str(path), space_options={"scale": 0.125})
    retrain = AnswerTable("train", space, retrain_answers(table, runs))
    evo = {"population": 4, "sample_size": 2, "children": 2}
    row = run_method("sub-one-shot SiGeo@1%", cfg, scores, path, retrain, 0.5, 1.5, 0, 8, 3, evo)
    assert row["queries"] == 8 and row["warmup_seconds"] == 1.5 and row["query_seconds"] == 8 * 0.5
    assert row["retrain_seconds"] == 3 * 20.0 and row["cost_seconds"] == 1.5 + 4.0 + 60.0
    best_seen = max(table.set_index("point_hash").loc[h, "auc"] for h in [row["picked_hash"]])
    assert row["test_auc"] == best_seen and row["test_logloss"] == pytest.approx(1 - best_seen)
    whole = {"population": N, "sample_size": 2, "children": 2}  # the initial population is the whole table
    full = run_method("sub-one-shot SiGeo@1%", cfg, scores, path, retrain, 0.5, 1.5, 0, N, 3, whole)
    assert full["test_auc"] == pytest.approx(0.80)  # every point queried: the perfect proxy's top 3 hold the best
    anti = run_method("zero-shot ZiCo@0%", cfg, scores, path, retrain, 0.5, 0.0, 0, N, 3, whole)
    assert anti["test_auc"] < 0.72  # ZiCo here is minus the truth: it retrains the worst three
    rnd = run_method("random", cfg, scores, path, retrain, 0.0, 0.0, 1, 8, N, evo)
    assert rnd["queries"] == 0 and rnd["retrain_seconds"] == N * 20.0 and rnd["test_auc"] == pytest.approx(0.80)


def test_claim_b_compares_logloss_gap_and_cost_ratio():
    one, sub = "one-shot @100% + head fine-tune", "sub-one-shot SiGeo@1%"
    assert set(METHODS) >= {one, sub}
    res = pd.DataFrame({"method": [one, one, sub, sub], "test_logloss": [0.44, 0.46, 0.452, 0.454],
                        "cost_seconds": [100.0, 100.0, 30.0, 50.0]})
    c = claim_b(res, noise_logloss=0.005)
    assert c["logloss_gap"] == pytest.approx(0.003) and c["cost_ratio"] == pytest.approx(0.4)
    assert c["within_spread"] and c["cost_ok"] and c["holds"]
    assert not claim_b(res, noise_logloss=0.001)["holds"]
