"""Searches through the harness: a searcher entry over a NASRec space runs its candidates as linked runs, each
evaluation is journalled in the store with the searcher's state, and a rerun of the suite resumes the search from
the store (the same candidates and best, nothing proposed or trained again), also after a SIGKILL mid-search; a
lookup search lands its evaluations in the store with kind 'lookup', and what it lacks is a located ConfigError."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

import ctrbench.harness.runner as runner
from ctrbench.errors import ConfigError
from ctrbench.harness.report import write_report
from ctrbench.harness.runner import run_suite
from ctrbench.harness.suite import load_suite
from ctrbench.runs.store import RunStore
from ctrbench.search.registry import get_searcher_class
from harness_search_driver import fake_execute

DRIVER = Path(__file__).with_name("harness_search_driver.py")

SUITE = """
name: evo
defaults: {train: {max_epochs: 1}, dataset: {rows: 2000}}
datasets: [{name: criteo_x1}]
seeds: [0]
entries:
  - {name: evo, kind: searcher, searcher: evolution,
     search: {space: nasrec_small, space_options: {scale: 0.125}, budget: 10, population: 6, sample_size: 3,
              children: 2, seed: 4}}
"""


pytestmark = pytest.mark.usefixtures("data_root_env")  # twins in the session's data root (tests/conftest.py)


def test_evolution_entry_runs_and_a_rerun_resumes_it_from_the_store(tmp_path, monkeypatch):
    trained = []
    monkeypatch.setattr(runner, "execute_run", fake_execute(trained))
    (tmp_path / "s.yaml").write_text(SUITE)
    suite = load_suite(tmp_path / "s.yaml")
    store = RunStore(tmp_path / "runs.sqlite")
    first = run_suite(suite, store)
    assert sorted(trained) == list(range(10))
    points = {r.candidate_index: r.config["params"]["point"] for r in first.records}
    assert all(r.model == "nasrec_subnet" for r in first.records) and len(points) == 10
    sid = suite.searches[0].search_id
    rows = store.evaluations(search_id=sid)
    assert [r["kind"] for r in rows] == ["train"] * 10 and store.search_state(sid) is not None
    assert {r["candidate_index"]: r["config_hash"] for r in rows} == {r.candidate_index: r.config_hash
                                                                       for r in first.records}
    trained.clear()
    second = run_suite(suite, store)
    assert trained == [] and second.skipped == 10
    assert {r.candidate_index: r.config["params"]["point"] for r in second.records} == points
    assert second.searches[0]["best_value"] == first.searches[0]["best_value"]
    forced = run_suite(suite, store, force=True)  # starts the search again: the same proposals, all retrained
    assert sorted(trained) == list(range(10)) and _points(forced.records) == points
    assert len(store.evaluations(search_id=sid)) == 10


def _points(records) -> dict:
    return {r.candidate_index: r.config["params"]["point"] for r in records}


def _journalled(path: Path) -> int:
    """Evaluations in the store at `path` so far (0 before the driver made the table)."""
    try:
        with sqlite3.connect(path, timeout=5) as conn:
            return conn.execute("SELECT COUNT(*) FROM evaluations").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def test_a_harness_search_sigkilled_mid_search_resumes_from_the_store(tmp_path, monkeypatch, data_root):
    suite_path = tmp_path / "s.yaml"
    suite_path.write_text(SUITE.replace("budget: 10, population: 6", "budget: 14, population: 4"))
    suite = load_suite(suite_path)
    monkeypatch.setattr(runner, "execute_run", fake_execute([]))
    whole = run_suite(suite, RunStore(tmp_path / "whole.sqlite"))  # the search never interrupted (and the twin)
    path = tmp_path / "killed.sqlite"
    proc = subprocess.Popen([sys.executable, str(DRIVER), str(suite_path), str(path), "0.25"],
                            env={**os.environ, "CTRBENCH_DATA_ROOT": str(data_root)}, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while _journalled(path) < 6:  # the first population (4) and the first children (2) are in
            assert proc.poll() is None, f"the driver ended before the kill: {proc.stderr.read().decode()[-2000:]}"
            assert time.monotonic() < deadline, "the driver journalled too little within 120 s"
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    store = RunStore(path)
    sid = suite.searches[0].search_id
    before = {r["candidate_index"] for r in store.evaluations(search_id=sid)}
    assert 6 <= len(before) < 14 and store.search_state(sid) is not None
    evolution, asked, trained = get_searcher_class("evolution"), [], []
    ask = evolution.ask
    monkeypatch.setattr(evolution, "ask", lambda self, history: asked.append(len(history)) or ask(self, history))
    monkeypatch.setattr(runner, "execute_run", fake_execute(trained))
    resumed = run_suite(suite, store)
    assert asked[0] >= len(before)  # the searcher went on from its stored state, not asked again from scratch
    assert not set(trained) & before  # nothing journalled was trained again
    assert _points(resumed.records) == _points(whole.records)
    assert resumed.searches[0]["best_value"] == whole.searches[0]["best_value"]


LOOKUP = """
name: lk
datasets: [{name: criteo_x1, rows: 2000}]
entries:
  - {name: rs, kind: searcher, searcher: random,
     search: {space: nasrec_small, space_options: {scale: 0.125}, budget: 5, seed: 2, evaluation: lookup%s}}
"""


def test_a_lookup_search_lands_its_evaluations_in_the_store(tmp_path, monkeypatch):
    cls = get_searcher_class("random")
    searcher = cls(cls.Params(space="nasrec_small", space_options={"scale": 0.125}, budget=5, seed=2))
    hashes = [searcher.space.hash(c.point) for c in searcher.ask([])]
    table = pd.DataFrame({"point_hash": hashes[:4], "auc": [0.71, 0.74, 0.72, 0.70], "flops": [1e5] * 4})
    table.to_csv(tmp_path / "bench.csv", index=False)  # the fifth point is not in the table
    (tmp_path / "s.yaml").write_text(LOOKUP % ", table: bench.csv")
    trained = []
    monkeypatch.setattr(runner, "execute_run", fake_execute(trained))
    suite = load_suite(tmp_path / "s.yaml")
    assert suite.planned_runs == 0
    store = RunStore(tmp_path / "runs.sqlite")
    result = run_suite(suite, store)
    rows = store.evaluations(search_id=suite.searches[0].search_id)
    assert trained == [] and result.records == [] and store.count() == 0
    assert [r["kind"] for r in rows] == ["lookup"] * 5 and [r["point_hash"] for r in rows] == hashes
    assert [r["value"] for r in rows] == [0.71, 0.74, 0.72, 0.70, None] and rows[4]["status"] == "failed"
    assert rows[0]["metrics"] == {"auc": 0.71, "flops": 1e5} and rows[0]["point"] == rows[0]["candidate"]["point"]
    assert result.searches[0]["best_value"] == 0.74 and store.get_search(suite.searches[0].search_id)["status"] == "ok"
    paths = write_report(suite, RunStore(store.path, create=False), tmp_path / "report", "ctrbench report")
    assert "**rs** on criteo_x1 seed 0: random search, 5 candidates, best by validation auc = 0.74" in \
        paths["table"].read_text()


@pytest.mark.parametrize("extra, where, message", [
    ("", "entries[0].search.evaluation", "needs `table`"),
    (", table: absent.csv", "entries[0].search.table", "no lookup table at"),
    (", table: bad.csv", "entries[0].search.table", "no 'auc' column"),
])
def test_a_lookup_search_without_its_table_is_a_located_config_error(tmp_path, extra, where, message):
    (tmp_path / "bad.csv").write_text("point_hash,logloss\nabc,0.4\n")
    (tmp_path / "s.yaml").write_text(LOOKUP % extra)
    with pytest.raises(ConfigError, match=message) as err:
        load_suite(tmp_path / "s.yaml")
    assert err.value.path == where and str(err.value.file).endswith("s.yaml:6")


@pytest.mark.parametrize("kind, message", [("proxy", "needs objects a suite cannot name"),
                                           ("inherit", "needs objects a suite cannot name")])
def test_kinds_a_suite_cannot_evaluate_are_located_config_errors(tmp_path, kind, message):
    (tmp_path / "s.yaml").write_text((LOOKUP % "").replace("evaluation: lookup", f"evaluation: {kind}"))
    with pytest.raises(ConfigError, match=message) as err:
        load_suite(tmp_path / "s.yaml")
    assert err.value.path == "entries[0].search.evaluation"
