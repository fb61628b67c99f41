"""Rankitect's report logic: Pareto fronts, front dominance, the engineers' tuned pick, the verdict table, the DNAS
runners-up, and the configuration's errors (YAML path and line)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ctrbench.errors import ConfigError
from ctrbench.models import build_model
from ctrbench.search.dnas.nasrec_search import supernet_params
from ctrbench.search.rankitect import (POINT_COLUMNS, dominates, engineers_tuned, load_config, most_probable, pareto,
                                       verdict)
from ctrbench.search.registry import get_space


def frame(rows):
    """Rows of (family, method, seed, name, flops, ne[, valid_ne])."""
    out = []
    for r in rows:
        fam, method, seed, name, flops, ne = r[:6]
        out.append({"family": fam, "method": method, "seed": seed, "name": name, "flops": flops, "params": 1,
                    "ne": ne, "auc": 1 - ne, "logloss": ne, "valid_ne": r[6] if len(r) > 6 else ne, "source": "x"})
    return pd.DataFrame(out, columns=POINT_COLUMNS)


def test_pareto_keeps_the_non_dominated_points_by_flops():
    pts = frame([("s", "r", 0, "a", 10, 0.9), ("s", "r", 0, "b", 20, 0.8), ("s", "r", 0, "c", 30, 0.85),
                 ("s", "r", 0, "d", 40, 0.7), ("s", "r", 1, "b", 20, 0.8), ("s", "r", 0, "e", 10, 0.95)])
    assert list(pareto(pts)["name"]) == ["a", "b", "d"]


def test_dominance_needs_every_point_covered_and_one_strict():
    eng = frame([("e", "m", 0, "x", 100, 0.80), ("e", "m", 0, "y", 300, 0.75)])
    better = frame([("d", "d", 0, "p", 90, 0.79), ("d", "d", 0, "q", 250, 0.74)])
    partial = frame([("d", "d", 0, "p", 90, 0.79)])  # nothing covers y
    assert dominates(better, eng) and not dominates(eng, better)
    assert not dominates(partial, eng)
    assert not dominates(eng, eng)  # equal fronts: no strict improvement


def test_engineers_tuned_pick_on_validation_not_test():
    pts = frame([("engineers", "DLRM", 0, "DLRM[a]", 100, 0.70, 0.90),  # best test, worse validation
                 ("engineers", "DLRM", 0, "DLRM[b]", 200, 0.80, 0.85),
                 ("engineers", "DCNv2", 0, "DCNv2[a]", 50, 0.82, 0.80)])
    assert list(engineers_tuned(pts)["name"]) == ["DCNv2[a]", "DLRM[b]"]


def test_verdict_counts_seeds_and_matches_flops():
    pts = frame([("engineers", "DLRM", 0, "DLRM[a]", 100, 0.80), ("engineers", "DCNv2", 0, "DCNv2[a]", 400, 0.78),
                 ("engineers", "DCNv2", 0, "DCNv2[b]", 450, 0.785, 0.9),  # dominated, not tuned: not on a front
                 ("dnas", "dnas", 0, "p", 90, 0.79), ("dnas", "dnas", 0, "q", 300, 0.77),
                 ("dnas", "dnas", 1, "r", 500, 0.81),
                 ("sampling", "random", 0, "z", 1000, 0.9)])
    summary, matched = verdict(pts, families=("dnas", "sampling", "one-shot"))
    assert summary.set_index("family").loc["one-shot", "points"] == 0
    assert pd.isna(summary.set_index("family").loc["one-shot", "dominates_engineers_grid"])  # no verdict
    dnas = summary.set_index("family").loc["dnas"]
    assert bool(dnas["dominates_engineers_grid"]) and dnas["seeds_dominating_grid"] == "1/2"
    assert bool(dnas["dominates_engineers_tuned"]) and not bool(dnas["engineers_grid_dominates_it"])
    assert not bool(summary.set_index("family").loc["sampling", "dominates_engineers_grid"])
    m = matched.set_index(["family", "engineers_model"])
    assert m.loc[("dnas", "DLRM[a]"), "delta_ne"] == pytest.approx(-0.01)
    assert m.loc[("dnas", "DCNv2[a]"), "its_flops"] == 300
    assert np.isnan(m.loc[("sampling", "DLRM[a]"), "delta_ne"])  # nothing at <= 100 FLOPs
    assert ("dnas", "DCNv2[b]") not in m.index


def test_most_probable_starts_with_the_argmax_and_ranks_by_probability(tiny_cache):
    space = get_space("nasrec_small", scale=0.125)
    sup = build_model("nasrec_dnas_supernet", tiny_cache.spec, tiny_cache.vocab_sizes, supernet_params(space), seed=0)
    with __import__("torch").no_grad():
        for v in sup.alpha.values():
            v.normal_(0, 2, generator=__import__("torch").Generator().manual_seed(3))
    points = most_probable(sup, space, 3, 16, seed=0)
    assert len({space.hash(p) for p in points}) == 3
    assert space.hash(points[0]) == space.hash(sup.discretise())
    lp = [sup.log_probability(p) for p in points[1:]]
    assert lp == sorted(lp, reverse=True)


def test_config_errors_name_the_yaml_path(tmp_path):
    good = (tmp_path / "good.yaml")
    text = open("suites/rankitect_search.yaml").read()
    assert load_config("suites/rankitect_search.yaml").budget_te == 4
    dnas_top_k = text.index("  top_k:", text.index("dnas:"))
    good.write_text(text[:dnas_top_k] + "  top_k: 0\n" + text[text.index("\n", dnas_top_k) + 1:])
    with pytest.raises(ConfigError, match=r"good.yaml:\d+ at dnas.top_k"):
        load_config(good)
    good.write_text(text.replace("    cost_form: log", "    cost_form: log\n    seed: 3"))
    with pytest.raises(ConfigError, match="set by `seeds`"):
        load_config(good)
    good.write_text(text.replace("    cost_form: log", "    cost_form: quadratic"))
    with pytest.raises(ConfigError, match="quadratic.*dnas.search.cost_form"):
        load_config(good)
    good.write_text(text.replace("budget_te: 4", "budget: 4"))
    with pytest.raises(ConfigError, match="unknown key 'budget'"):
        load_config(good)
