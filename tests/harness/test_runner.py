"""Runner logic with a fast stand-in for execute_run: resume, --force, interrupts, searches linked to runs."""
from __future__ import annotations

import os
import signal

import pytest

from ctrbench.harness.runner import interrupt_marking, run_suite
from ctrbench.harness.suite import load_suite
from ctrbench.runs.store import RunStore
from ctrbench.search.registry import get_searcher_class, get_space

SUITE = """
name: logic
defaults: {train: {max_epochs: 1}, dataset: {rows: 3000}}
datasets: [{name: criteo_x1}, {name: amazonelectronics_x1}]
seeds: [0, 1]
entries:
  - {name: lr, model: lr}
  - {name: dnn, model: dnn}
  - {name: broken, model: dcnv2, params: {net_dropout: 0.99}, datasets: [criteo_x1], seeds: [0]}
  - {name: rs, kind: searcher, searcher: random, search: {budget: 4, seed: 3}, datasets: [criteo_x1], seeds: [0]}
"""


def test_resume_force_and_failures(write_suite, tmp_path, fake_execute):
    suite = load_suite(write_suite(SUITE))
    store = RunStore(tmp_path / "runs.sqlite")
    first = run_suite(suite, store)
    assert first.executed == 2 * 2 * 2 + 1 + 4 and first.skipped == 0
    statuses = {(r.entry, r.dataset, r.seed, r.candidate_index): r.status for r in first.records}
    assert statuses[("broken", "criteo_x1", 0, None)] == "failed"
    assert sum(s == "ok" for s in statuses.values()) == len(statuses) - 1
    # again: only the failed run executes; finished runs and candidates are skipped
    fake_execute.clear()
    second = run_suite(suite, store)
    assert [c.entry for c in fake_execute] == ["broken"] and second.skipped == len(statuses) - 1
    # --force re-runs everything as a new attempt
    fake_execute.clear()
    third = run_suite(suite, store, force=True)
    assert len(fake_execute) == len(statuses) and third.skipped == 0
    attempts = {(r.entry, r.dataset, r.seed, r.candidate_index): r.attempt for r in third.records}
    assert attempts.pop(("broken", "criteo_x1", 0, None)) == 3 and set(attempts.values()) == {2}


def test_search_candidates_are_linked_runs(write_suite, tmp_path, fake_execute):
    suite = load_suite(write_suite(SUITE)).only(["rs"])
    store = RunStore(tmp_path / "runs.sqlite")
    result = run_suite(suite, store)
    (summary,) = result.searches
    cands = store.records(search_id=summary["search_id"])
    assert sorted(c.candidate_index for c in cands) == [0, 1, 2, 3]
    assert all(c.kind == "candidate" and c.entry == "rs" and c.model == "dcnv2" for c in cands)
    assert len({c.config_hash for c in cands}) == 4 and len({str(c.config["params"]) + str(c.config["train"]["lr"]) for c in cands}) == 4
    best = max(cands, key=lambda c: c.valid_auc)
    row = store.get_search(summary["search_id"])
    assert row["best_config_hash"] == best.config_hash and row["best_value"] == pytest.approx(best.valid_auc)
    assert row["status"] == "ok" and row["candidates"] == 4
    # the candidates are exactly what the searcher proposes (the space's knobs), over the entry's base config
    rs = get_searcher_class("random")
    proposed = rs(rs.Params(budget=4, seed=3)).ask([])
    space = get_space("dcnv2")
    for c, p in zip(sorted(cands, key=lambda c: c.candidate_index), proposed):
        assert {k: c.config["params"][k] for k in space.params} == p.params
        assert c.config["train"]["lr"] == p.train["lr"]


def test_random_search_is_seeded_and_distinct():
    rs = get_searcher_class("random")
    a = rs(rs.Params(budget=6, seed=0)).ask([])
    b = rs(rs.Params(budget=6, seed=0)).ask([])
    c = rs(rs.Params(budget=6, seed=1)).ask([])
    assert a == b and a != c
    assert len({repr((x.params, x.train)) for x in a}) == 6
    assert rs(rs.Params(budget=6)).ask(history=[object()]) == []  # one batch, then done
    lrs = [x.train["lr"] for x in a]
    assert all(3e-4 <= v <= 3e-3 for v in lrs)


def test_keyboard_interrupt_marks_run_interrupted_and_keeps_finished(write_suite, tmp_path, monkeypatch):
    import ctrbench.harness.runner as runner
    from harness_fakes import fake_execute_run

    def interrupted_at_dnn(run, **kw):
        if run.entry == "dnn":
            raise KeyboardInterrupt
        return fake_execute_run(run, **kw)

    suite = load_suite(write_suite(SUITE))
    store = RunStore(tmp_path / "runs.sqlite")
    monkeypatch.setattr(runner, "execute_run", interrupted_at_dnn)
    with pytest.raises(KeyboardInterrupt):
        run_suite(suite, store)
    recs = store.records()
    assert [r.status for r in recs if r.entry == "lr"] == ["ok"] * 4
    assert [(r.entry, r.status) for r in recs if r.entry != "lr"] == [("dnn", "interrupted")]
    calls = []
    monkeypatch.setattr(runner, "execute_run", lambda run, **kw: calls.append(run) or fake_execute_run(run, **kw))
    again = run_suite(suite, store)
    assert again.skipped == 4 and "lr" not in {c.entry for c in calls} and calls[0].entry == "dnn"


def test_interrupt_marking_on_sigterm(tmp_path):
    from ctrbench.runs.records import RunSpec

    store = RunStore(tmp_path / "runs.sqlite")
    spec = RunSpec(suite="s", entry="e", model="lr", params={}, train={}, dataset="criteo_x1")
    store.claim(spec)
    with pytest.raises(KeyboardInterrupt):
        with interrupt_marking(store, spec.config_hash):
            os.kill(os.getpid(), signal.SIGTERM)
            signal.pause()
    rec = store.get(spec.config_hash)
    assert rec.status == "interrupted" and "SIGTERM" in rec.error
    assert signal.getsignal(signal.SIGTERM) is not None


def test_twin_options_reach_open_dataset_and_the_record(write_suite, tmp_path, fake_execute, monkeypatch):
    """prepare_datasets and execute_run open each dataset with its twin options; the stored record keeps them."""
    import ctrbench.data.api as api
    from ctrbench.harness.execute import execute_run

    opened = []

    def fake_open(name, source="synthetic", **kw):
        opened.append((name, kw.get("twin")))
        raise RuntimeError("opened")  # execute_run records this as a failed run

    text = SUITE.replace("{name: amazonelectronics_x1}", "{name: amazonelectronics_x1, twin: {shares: {first: 1}}}")
    suite = load_suite(write_suite(text)).only(["lr"])
    monkeypatch.setattr(api, "open_dataset", lambda name, source="synthetic", **kw: opened.append((name, kw["twin"])))
    store = RunStore(tmp_path / "runs.sqlite")
    result = run_suite(suite, store)
    assert sorted(opened) == [("amazonelectronics_x1", {"shares": {"first": 1.0}}), ("criteo_x1", {})]
    recs = {r.dataset: store.get(r.config_hash) for r in result.records}
    assert recs["amazonelectronics_x1"].spec.twin == {"shares": {"first": 1.0}} and recs["criteo_x1"].spec.twin == {}
    opened.clear()
    monkeypatch.setattr(api, "open_dataset", fake_open)
    rec = execute_run(recs["amazonelectronics_x1"].spec)
    assert rec.status == "failed" and opened == [("amazonelectronics_x1", {"shares": {"first": 1.0}})]


def test_an_interrupt_whose_exception_was_lost_stops_the_run_at_the_next_batch(tmp_path, data_root, monkeypatch):
    """The SIGTERM handler ran, but its Interrupted was swallowed (as inside a finalizer, which only prints
    "Exception ignored"): the run stops at the next batch and is marked interrupted instead of training on."""
    from ctrbench.errors import Interrupted
    from ctrbench.harness import signals
    from ctrbench.harness.runner import Progress, run_claimed
    from ctrbench.runs.records import RunSpec

    batches = []

    class LosesTheInterrupt:
        def on_batch_end(self, step, loss):
            batches.append(step)
            if step == 2:
                try:
                    signals._raise_interrupted(signal.SIGTERM, None)
                except Interrupted:
                    pass  # lost, as Python loses an exception raised in a __del__

    class Bars(Progress):
        def fit_callbacks(self, spec):
            return LosesTheInterrupt()

    monkeypatch.setattr(signals, "_requested", signals.threading.Event())  # this test's flag, not the process's
    store = RunStore(tmp_path / "runs.sqlite")
    spec = RunSpec(suite="s", entry="e", model="lr", params={}, train={"max_epochs": 3, "batch_size": 64},
                   dataset="criteo_x1", rows=3000)
    with pytest.raises(Interrupted) as exc:
        run_claimed(store, spec, force=False, data_root=data_root, command=None, progress=Bars())
    assert exc.value.signum == signal.SIGTERM and batches[-1] == 2  # no batch after the one that lost it
    rec = store.get(spec.config_hash)
    assert rec.status == "interrupted" and "SIGTERM" in rec.error, (rec.status, rec.error)
