"""Searchers on the grown contract: state round trips, journalled resume (SIGKILL included), evolution's NASRec
mechanics and its edge over random search, random search over any space, objectives, evaluators, the top-k
retrain stage."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from ctrbench.runs.store import RunStore
from ctrbench.search.base import Candidate, Evaluation, NoEvaluatorError, run_search
from ctrbench.search.evaluators.base import dispatch
from ctrbench.search.evaluators.lookup import LookupEvaluator
from ctrbench.search.journal import FileJournal, StoreJournal
from ctrbench.search.objective import CostTerm, Objective, ObjectiveError
from ctrbench.search.registry import get_searcher_class
from ctrbench.search.stages import retrain_top_k
from toy_search import evolution, random_search, toy_evaluate, toy_space

HERE = Path(__file__).parent


def proposals(history):
    return [(e.candidate.index, json.dumps(e.candidate.point, sort_keys=True)) for e in history]


def test_state_round_trip_gives_the_same_next_proposals():
    evaluate = toy_evaluate()
    a, history = evolution(), []
    for _ in range(4):  # initial population and three generations
        history += evaluate(a.ask(history))
    state = json.loads(json.dumps(a.state_dict()))  # through JSON, as a journal stores it
    b = evolution(seed=99)  # another seed: everything that matters must come from the state
    b.load_state_dict(state)
    for _ in range(3):
        na, nb = a.ask(history), b.ask(history)
        assert na == nb and na
        history += evaluate(na)
    r = random_search(budget=30)
    r.params = r.Params(**{**r.params.model_dump(), "batch_size": 10})
    first = r.ask([])
    r2 = random_search(seed=5)
    r2.params = r.params
    r2.load_state_dict(json.loads(json.dumps(r.state_dict())))
    assert r.ask(first) == r2.ask(first)


JOURNALS = {"file": lambda tmp: FileJournal(tmp / "s"),
            "store": lambda tmp: StoreJournal(RunStore(tmp / "runs.sqlite"), "s1", "evolution", toy_space().hash)}


@pytest.mark.parametrize("kind", sorted(JOURNALS))
def test_journal_resumes_an_interrupted_search_exactly(tmp_path, kind):
    whole = run_search(evolution(), toy_evaluate())

    class Stop(Exception):
        pass

    def stop_at_29(batch):  # the run dies while evaluating the 3rd generation's batch
        good = toy_evaluate()
        out = []
        for c in batch:
            if c.index == 29:
                raise Stop
            out += good([c])
        return out

    journal = JOURNALS[kind](tmp_path)
    with pytest.raises(Stop):
        run_search(evolution(), stop_at_29, journal)
    done = len(journal.history())
    assert 0 < done < len(whole.history)
    resumed = run_search(evolution(seed=1), toy_evaluate(), JOURNALS[kind](tmp_path))
    assert proposals(resumed.history) == proposals(whole.history)
    assert resumed.best.candidate == whole.best.candidate
    assert [e.metrics for e in resumed.history] == [e.metrics for e in whole.history]


def test_search_killed_with_sigkill_resumes_with_the_same_proposals(tmp_path):
    folder = tmp_path / "killed"
    script = [sys.executable, str(HERE / "toy_search.py"), str(folder)]
    first = subprocess.run(script + ["33"], capture_output=True, timeout=120)
    assert first.returncode == -9, first.stderr.decode()
    n_before = len(FileJournal(folder).history())
    assert 12 <= n_before < 33
    second = subprocess.run(script, capture_output=True, timeout=120)
    assert second.returncode == 0, second.stderr.decode()
    whole = run_search(evolution(), toy_evaluate())
    assert proposals(FileJournal(folder).history()) == proposals(whole.history)


def test_a_cut_journal_line_is_dropped_and_a_bad_one_is_an_error(tmp_path):
    from ctrbench.errors import DataError

    journal = FileJournal(tmp_path / "j")
    c = Candidate(0, {}, {}, "lookup", {"a": 1})
    journal.append(Evaluation(c, "ok", 0.5))
    with open(journal.log_path, "a") as f:
        f.write('{"candidate": {"ind')  # killed mid-write
    assert [e.value for e in journal.history()] == [0.5]
    journal.append(Evaluation(Candidate(1), "ok", 0.6))
    assert [e.value for e in journal.history()] == [0.5, 0.6]
    with open(journal.log_path, "a") as f:
        f.write("garbage\n")
    with pytest.raises(DataError, match="evaluations.jsonl.*line 3"):
        journal.history()


def test_evolution_follows_nasrec():
    ev = evolution(budget=12 + 4 * 45)
    assert ev.generations == 45
    assert [ev.mutations(g) for g in (0, 5, 6, 25, 26, 44)] == [3, 3, 2, 2, 1, 1]  # (G - g) // max(20, G//5) + 1
    evaluate, history = toy_evaluate(), []
    while batch := ev.ask(history):
        assert len(batch) == (12 if not history else 4)
        history += evaluate(batch)
        assert len(ev.population) <= 12
        assert [m["index"] for m in ev.population] == sorted(m["index"] for m in ev.population)
    assert len(history) == 12 + 4 * 45
    hashes = [toy_space().hash(e.candidate.point) for e in history]
    assert len(set(hashes)) == len(hashes)  # children already seen are redrawn
    # age-based removal: the population is the 12 youngest finished candidates
    assert [m["index"] for m in ev.population] == list(range(len(history) - 12, len(history)))
    with pytest.raises(ValidationError, match="sample_size 20 exceeds population 12"):
        evolution(sample_size=20)


def test_evolution_beats_random_search_on_a_toy_objective():
    budget, seeds = 150, range(6)

    def best(searcher):
        return run_search(searcher, toy_evaluate()).best.value

    evo = [best(evolution(seed=s, budget=budget)) for s in seeds]
    rnd = [best(random_search(seed=s, budget=budget)) for s in seeds]
    assert np.mean(evo) > np.mean(rnd) + 0.02, (evo, rnd)


def test_random_search_over_a_nasrec_space_is_seeded_and_distinct():
    a, b = random_search(seed=2, budget=20).ask([]), random_search(seed=2, budget=20).ask([])
    assert a == b and len(a) == 20 and len({json.dumps(c.point, sort_keys=True) for c in a}) == 20
    assert all(c.params == {"point": c.point, "embedding_dim": 16} and c.evaluation == "train" for c in a)
    cls = get_searcher_class("random")
    with pytest.raises(ValidationError, match="unknown option 'width'"):
        cls.Params(space="nasrec_small", space_options={"width": 1})


def test_candidates_name_their_evaluation_and_dispatch_by_kind():
    with pytest.raises(ValueError, match="unknown evaluation 'oracle'"):
        Candidate(0, evaluation="oracle")
    seen = {}

    def by(kind):
        def ev(batch):
            seen[kind] = [c.index for c in batch]
            return [Evaluation(c, "ok", float(c.index)) for c in batch]
        return ev

    batch = [Candidate(0, evaluation="proxy"), Candidate(1, evaluation="lookup"), Candidate(2, evaluation="proxy")]
    out = dispatch({"proxy": by("proxy"), "lookup": by("lookup")})(batch)
    assert [e.candidate.index for e in out] == [0, 1, 2] and [e.kind for e in out] == ["proxy", "lookup", "proxy"]
    assert seen == {"proxy": [0, 2], "lookup": [1]}
    with pytest.raises(NoEvaluatorError, match="candidate 1 is evaluated by 'lookup'.*for: proxy"):
        dispatch({"proxy": by("proxy")})(batch)
    # a plain evaluate function (the harness's run path) trains: a searcher asking for another kind is refused
    cls = get_searcher_class("random")
    lookup_search = cls(cls.Params(space="nasrec_small", space_options={"scale": 0.125}, evaluation="lookup"))
    with pytest.raises(NoEvaluatorError, match="candidate 0 is evaluated by 'lookup'.*for: train"):
        run_search(lookup_search, toy_evaluate())
    lookup_search = cls(cls.Params(space="nasrec_small", space_options={"scale": 0.125}, evaluation="lookup"))
    assert len(run_search(lookup_search, dispatch({"lookup": toy_evaluate()})).history) == 4


def test_objective_directions_and_cost_terms():
    assert Objective(metric="logloss").utility(0.4) == -0.4 and Objective(metric="auc").utility(0.8) == 0.8
    nasrec = CostTerm(name="latency_ms", target=2.0, weight=0.1)  # loss + beta (latency / target - 1)
    assert Objective(metric="logloss", costs=[nasrec]).utility(0.4, {"latency_ms": 3.0}) == pytest.approx(-0.45)
    tunas = CostTerm(name="flops", target=100, weight=0.2, form="abs")
    o = Objective(metric="auc", costs=[tunas])
    assert o.utility(0.8, {"flops": 50}) == pytest.approx(0.7) == o.utility(0.8, {"flops": 150})
    hinge = Objective(costs=[CostTerm(name="flops", target=100, weight=1, form="hinge")])
    assert hinge.utility(0.8, {"flops": 50}) == 0.8
    with pytest.raises(ObjectiveError, match="needs metric 'flops' \\(candidate 3\\); the evaluation has: auc"):
        random_search().__class__(random_search().Params(costs=[tunas])).utility(
            Evaluation(Candidate(3), "ok", 0.8, metrics={"auc": 0.8}))
    # the searcher's best follows the objective: the cheaper of two equal-AUC candidates wins with a FLOPs cost
    cls = get_searcher_class("random")
    s = cls(cls.Params(costs=[CostTerm(name="flops", target=100, weight=0.1, form="hinge")]))
    h = [Evaluation(Candidate(0), "ok", 0.8, metrics={"flops": 400}), Evaluation(Candidate(1), "ok", 0.79,
                                                                                 metrics={"flops": 90})]
    assert s.best(h).candidate.index == 1
    s_ll = cls(cls.Params(metric="logloss"))
    assert s_ll.best([Evaluation(Candidate(0), "ok", 0.5), Evaluation(Candidate(1), "ok", 0.4)]).candidate.index == 1


def test_lookup_evaluator_answers_from_the_table():
    space = toy_space()
    points = [space.sample(np.random.default_rng(s)) for s in range(3)]
    table = {space.hash(points[0]): {"auc": 0.7, "flops": 10}, space.hash(points[1]): {"auc": 0.75}}
    ev = LookupEvaluator(space, table, "auc")
    out = ev([Candidate(i, evaluation="lookup", point=p) for i, p in enumerate(points)])
    assert [(e.status, e.value) for e in out] == [("ok", 0.7), ("ok", 0.75), ("failed", None)]
    assert "not in the table" in out[2].metrics["error"] and out[0].metrics["flops"] == 10


def test_retrain_top_k_stage():
    space = toy_space()
    pts = [space.sample(np.random.default_rng(s)) for s in range(5)]
    hist = [Evaluation(Candidate(i, evaluation="inherit", point=p), "ok", v)
            for i, (p, v) in enumerate(zip(pts, [0.70, 0.74, 0.72, 0.73, 0.60]))]
    hist.append(Evaluation(Candidate(5, evaluation="inherit", point=pts[1]), "ok", 0.745))  # the same point again
    hist.append(Evaluation(Candidate(6, evaluation="inherit", point=pts[4]), "failed", None))
    retrained = {json.dumps(pts[1], sort_keys=True): 0.71, json.dumps(pts[3], sort_keys=True): 0.76,
                 json.dumps(pts[2], sort_keys=True): 0.70}
    calls = []

    def train(batch):
        calls.append(batch)
        return [Evaluation(c, "ok", retrained[json.dumps(c.point, sort_keys=True)]) for c in batch]

    res = retrain_top_k(hist, 3, Objective(metric="auc"), train)
    assert [e.candidate.index for e in res.picked] == [5, 3, 2]  # distinct points, best first
    assert [(c.index, c.evaluation) for c in calls[0]] == [(7, "train"), (8, "train"), (9, "train")]
    assert res.best.candidate.point == pts[3] and res.best.value == 0.76  # validation after retraining decides
    with pytest.raises(ValueError, match="k must be >= 1"):
        retrain_top_k(hist, 0, Objective(), train)
