"""The NASRec searches load as suites: suites/nasbench_small.yaml expands, its candidates validate as nasrec_subnet
runs, the same search seed gives the same first architectures, and bad space options name their YAML path."""
from __future__ import annotations

from pathlib import Path

import pytest

from ctrbench.errors import ConfigError
from ctrbench.harness.suite import load_suite
from ctrbench.search.registry import get_searcher_class

SUITE = Path(__file__).parents[2] / "suites" / "nasbench_small.yaml"


def test_nasbench_suite_loads_and_its_candidates_are_subnet_runs():
    suite = load_suite(SUITE)
    by = {(s.entry, s.seed): s for s in suite.searches}
    assert set(by) == {("small", 0), ("full", 0), ("small_seeds", 1), ("small_seeds", 2), ("small_avazu", 0)}
    assert {s.model for s in suite.searches} == {"nasrec_subnet"}
    small, seeds = by[("small", 0)], by[("small_seeds", 1)]
    cls = get_searcher_class("random")
    first = cls(cls.Params(**small.options)).ask([])
    again = cls(cls.Params(**seeds.options)).ask([])
    assert len(first) == 200 and [c.point for c in again] == [c.point for c in first[:30]]
    run = suite.candidate_spec(small, 0, first[0].params, first[0].train)
    assert run.model == "nasrec_subnet" and run.params["point"] == first[0].point


def test_bad_space_options_name_the_yaml_path(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(SUITE.read_text().replace("space_options: {scale: 0.125}, budget: 200", "space_options: {scale: "
                                             "0.01}, budget: 200"))
    with pytest.raises(ConfigError, match="merges widths.*entries\\[0\\]\\.search"):
        load_suite(bad)
