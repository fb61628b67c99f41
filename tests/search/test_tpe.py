"""The `tpe` searcher (Optuna's TPE through ask/tell): registered, resumes from its journal with the same next
proposals, beats random search on a known objective, works on spaces without decisions (the nearest point of the
space), tells failures and duplicates, and stops when the space runs out."""
from __future__ import annotations

import json

import numpy as np
import optuna
import pytest

from ctrbench.search.base import Evaluation, run_search
from ctrbench.search.journal import FileJournal
from ctrbench.search.registry import get_searcher_class, register_space
from ctrbench.search.searchers.tpe import TPESearcher, knob_distribution
from ctrbench.search.spaces.space import Choice, SearchSpace


def dhen_objective(batch):
    """A known NE over dhen points: falls with each dcn layer, rises with width, best at lr 1e-3."""
    out = []
    for c in batch:
        layers = c.point["layers"]
        ne = (0.8 - 0.01 * sum(la["module"] == "dcn" for la in layers) + 1e-4 * sum(la["width"] for la in layers)
              + 0.02 * (c.point["lr"] != 1e-3))
        out.append(Evaluation(c, "ok", ne, None, {"ne": ne, "flops": 1000.0}))
    return out


def tpe(**kw):
    return TPESearcher(TPESearcher.Params(**{"space": "dhen", "metric": "ne", "budget": 12, "n_startup_trials": 4,
                                             **kw}))


def test_tpe_is_registered_and_its_knobs_are_ordered_where_the_values_are():
    assert get_searcher_class("tpe") is TPESearcher
    assert knob_distribution((16, 32, 64)) == optuna.distributions.IntDistribution(0, 2)
    assert knob_distribution(("dot", "dcn")) == optuna.distributions.CategoricalDistribution((0, 1))
    assert knob_distribution((False, True)) == optuna.distributions.CategoricalDistribution((0, 1))
    assert knob_distribution((2, 1)) == optuna.distributions.CategoricalDistribution((0, 1))


def test_a_killed_search_resumes_with_the_same_next_proposals(tmp_path):
    whole = run_search(tpe(batch_size=2), dhen_objective)

    class Killed(Exception):
        pass

    calls = []

    def dies_in_batch_four(batch):
        calls.append(batch)
        if len(calls) == 4:
            raise Killed
        return dhen_objective(batch)

    with pytest.raises(Killed):
        run_search(tpe(batch_size=2), dies_in_batch_four, FileJournal(tmp_path))
    assert len(FileJournal(tmp_path).history()) == 6
    resumed = run_search(tpe(batch_size=2, seed=0), dhen_objective, FileJournal(tmp_path))
    assert [e.candidate.point for e in resumed.history] == [e.candidate.point for e in whole.history]
    # the state alone (through JSON), with the history, gives the same next proposal as the live searcher
    live, history = tpe(), []
    for _ in range(6):
        history += dhen_objective(live.ask(history))
    again = tpe(seed=7)
    again.params = live.params
    again.load_state_dict(json.loads(json.dumps(live.state_dict())))
    assert again.ask(history) == live.ask(history)


def test_tpe_beats_random_search_on_a_known_objective():
    budget, seeds = 50, range(3)
    rand = get_searcher_class("random")
    best_tpe = [run_search(tpe(budget=budget, seed=s, n_startup_trials=10), dhen_objective).best.value
                for s in seeds]
    best_rand = [run_search(rand(rand.Params(space="dhen", metric="ne", budget=budget, seed=s)),
                            dhen_objective).best.value for s in seeds]
    assert np.mean(best_tpe) < np.mean(best_rand) - 0.003, (best_tpe, best_rand)


def test_tpe_on_a_space_without_decisions_proposes_distinct_points_of_the_space():
    searcher = TPESearcher(TPESearcher.Params(space="dcnv2", budget=8, n_startup_trials=3, seed=1))

    def auc(batch):  # deeper cross stacks and bigger embeddings score higher
        return [Evaluation(c, "ok", 0.7 + 0.01 * c.point["params"]["num_cross_layers"]
                           + 0.001 * c.point["params"]["embedding_dim"]) for c in batch]

    result = run_search(searcher, auc)
    hashes = [searcher.space.hash(e.candidate.point) for e in result.history]
    assert len(result.history) == 8 and len(set(hashes)) == 8
    assert all(set(searcher.told[e.candidate.index]) <= set(searcher.distributions) for e in result.history)


TINY = register_space(SearchSpace(name="tpe_tiny", model="lr", params={"embedding_dim": Choice((4, 8, 16))}))


def test_failures_are_told_and_a_used_up_space_ends_the_search():
    searcher = TPESearcher(TPESearcher.Params(space="tpe_tiny", budget=5, n_startup_trials=1, max_draws=20))

    def fails_on_8(batch):
        return [Evaluation(c, "failed" if c.point["params"]["embedding_dim"] == 8 else "ok",
                           None if c.point["params"]["embedding_dim"] == 8 else 0.7) for c in batch]

    result = run_search(searcher, fails_on_8)
    assert sorted(e.candidate.point["params"]["embedding_dim"] for e in result.history) == [4, 8, 16]
    study = searcher.study(result.history)
    assert [t.state.name for t in study.trials].count("FAIL") == 1 and len(study.trials) == 3


GRID9 = register_space(SearchSpace(name="tpe_grid9", model="dcnv2",
                                   params={"embedding_dim": Choice((4, 8, 16)), "num_cross_layers": Choice((1, 2, 3))}))


def test_on_a_space_without_decisions_a_suggestion_lands_on_the_nearest_unproposed_point():
    """Snapping alone would give back the incumbent after the start-up trials; with one draw per candidate the
    search only reaches all 9 points if every proposal skips the ones already proposed."""
    searcher = TPESearcher(TPESearcher.Params(space="tpe_grid9", budget=9, n_startup_trials=2, max_draws=1))

    def auc(batch):
        return [Evaluation(c, "ok", 0.7 + 0.01 * c.point["params"]["num_cross_layers"]) for c in batch]

    result = run_search(searcher, auc)
    assert len({searcher.space.hash(e.candidate.point) for e in result.history}) == 9
