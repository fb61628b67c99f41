"""Searchers compared on a table: a trace's chosen point is the best on validation so far and its regret never
rises; on a planted landscape that is smooth in the encoding, evolution beats random sampling and the
neighbourhood statistic sees the smoothness; the paired test compares seeds one to one."""
from __future__ import annotations

import numpy as np
import pytest

from bench_tables import planted_table
from ctrbench.search.table_study import neighbourhood, paired_test, study, summary, table_space, trace

SPACE = ("nasrec_small", {"scale": 0.125})


def test_a_trace_chooses_on_validation_and_its_regret_never_rises(table):
    path, points = table
    t = trace("random", {**table_space(path, *SPACE), "budget": 15}, path, seed=1)
    assert list(t["query"]) == list(range(1, 16)) and t["point_hash"].nunique() == 15
    for q in range(15):
        seen = t.iloc[:q + 1]
        assert t["chosen_hash"].iloc[q] == seen.loc[seen["valid"].idxmax(), "point_hash"]
    assert (t["regret"] >= 0).all() and (np.diff(t["regret"]) <= 1e-12).all()


def test_evolution_beats_random_on_a_smooth_planted_table(tmp_path):
    path = tmp_path / "t.csv"
    planted_table(path, 150, seed=5)
    space = table_space(path, *SPACE)
    searchers = {"random": ("random", {**space, "budget": 24}),
                 "evolution": ("evolution", {**space, "budget": 24, "population": 8, "sample_size": 4,
                                             "children": 2})}
    traces = study(searchers, path, range(12))
    s = summary(traces, [24]).set_index("searcher")
    assert s.loc["evolution", "regret_mean"] < s.loc["random", "regret_mean"]
    test = paired_test(traces, "evolution", "random", 24)
    assert test["seeds"] == 12 and test["a_better"] > test["b_better"]
    hood = neighbourhood(path, *SPACE, k=5)
    assert hood["rho_point_vs_neighbours"] > max(0.0, hood["rho_point_vs_random"])
