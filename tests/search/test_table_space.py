"""The table space: searchers over a benchmark table only ever propose its points (sample, mutate, neighbours,
decode snap to it), its hashes are the lookup's keys, and what is not in the table is a located error."""
from __future__ import annotations

import numpy as np
import pytest

from ctrbench.errors import DataError
from ctrbench.search.base import run_search
from ctrbench.search.evaluators.base import dispatch
from ctrbench.search.evaluators.lookup import LookupEvaluator
from ctrbench.search.registry import get_searcher_class, get_space
from ctrbench.search.spaces.space import SpacePointError


def test_moves_stay_in_the_table_and_hashes_are_the_lookup_keys(table):
    path, points = table
    space = get_space("bench_table", space="nasrec_small", table=str(path), space_options={"scale": 0.125}, k=5)
    rng = np.random.default_rng(0)
    for _ in range(30):
        p = space.sample(rng)
        assert space.hash(p) in points
        q = space.mutate(p, rng)
        assert space.hash(q) in points and space.hash(q) != space.hash(p)
    p = space.sample(rng)
    near = space.neighbours(p)
    assert len(near) == 5 and space.hash(p) not in {space.hash(n) for n in near}
    assert space.hash(space.decode(space.encode(p))) == space.hash(p)
    assert space.candidate(p) == space.base.candidate(p) and space.to_json(p) == space.base.to_json(p)
    outside = space.base.sample(np.random.default_rng(99))
    with pytest.raises(SpacePointError, match="not in the table"):
        space.validate(outside)


def test_evolution_over_the_table_proposes_only_table_points_without_repeats(table):
    path, points = table
    cls = get_searcher_class("evolution")
    opts = {"space": "bench_table", "space_options": {"space": "nasrec_small", "table": str(path),
                                                      "space_options": {"scale": 0.125}},
            "budget": 30, "population": 10, "sample_size": 5, "children": 2, "evaluation": "lookup"}
    searcher = cls(cls.Params(**opts))
    rows = {h: {"valid_auc": 0.7 + sum(b["dense_dim"] for b in p["blocks"]) / 1e4} for h, p in points.items()}
    result = run_search(searcher, dispatch({"lookup": LookupEvaluator(searcher.space, rows, "auc")}))
    assert len(result.history) == 30 and all(e.status == "ok" for e in result.history)  # all in the table
    hashes = [searcher.space.hash(e.candidate.point) for e in result.history]
    assert len(set(hashes)) == 30
    assert result.best.value == max(rows[h]["valid_auc"] for h in hashes)


def test_a_missing_table_and_a_foreign_point_are_located_errors(table, tmp_path):
    with pytest.raises(DataError, match="no benchmark table"):
        get_space("bench_table", space="nasrec_small", table=str(tmp_path / "none.csv"))
    bad = tmp_path / "bad.csv"
    bad.write_text(table[0].read_text().replace('""blocks""', '""blokks""', 1))
    with pytest.raises(DataError, match="line 2"):
        get_space("bench_table", space="nasrec_small", table=str(bad), space_options={"scale": 0.125})
