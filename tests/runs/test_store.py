"""The run store: resume decisions, recovery of killed runs, concurrent writers, additive schema."""
from __future__ import annotations

import multiprocessing as mp
import os
import sqlite3
import subprocess
import sys

import pytest

from ctrbench.runs.records import RunRecord, RunSpec
from ctrbench.runs.store import RunStore, process_alive, process_start_time


def spec(i: int = 0, **kw) -> RunSpec:
    base = dict(suite="s", entry=f"e{i}", model="lr", params={"embedding_dim": 4}, train={"lr": 0.001, "seed": 0},
                dataset="criteo_x1", rows=100, seed=0)
    base.update(kw)
    return RunSpec(**base)


def test_identity_ignores_suite_name_but_not_config():
    assert spec(suite="a").config_hash == spec(suite="b").config_hash
    assert spec().config_hash != spec(seed=1).config_hash
    assert spec().config_hash != spec(params={"embedding_dim": 8}).config_hash
    assert spec().config_hash != spec(rows=200).config_hash
    assert spec().config_hash != spec(train={"lr": 0.001, "seed": 0, "batch_size": 64}).config_hash


def test_claim_finish_get_roundtrip_and_resume(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    s = spec()
    claim = store.claim(s, command="ctrbench run x")
    assert claim.outcome == "run" and claim.record.status == "running" and claim.record.pid == os.getpid()
    rec = claim.record
    rec.status, rec.auc, rec.history, rec.backend = "ok", 0.75, [{"epoch": 0, "auc": 0.7}], {"op": "torch"}
    store.finish(rec)
    got = store.get(s.config_hash)
    assert got.status == "ok" and got.auc == 0.75 and got.history == [{"epoch": 0, "auc": 0.7}]
    assert got.spec == s and got.command == "ctrbench run x" and got.run_id == f"{s.config_hash}-1"
    # a second claim skips the finished run; --force claims it again as attempt 2
    assert store.claim(s).outcome == "done"
    forced = store.claim(s, force=True)
    assert forced.outcome == "run" and forced.record.attempt == 2 and forced.record.run_id.endswith("-2")
    assert store.get(s.config_hash).status == "running"


def test_nan_counts_as_finished_failed_and_interrupted_do_not(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    for i, status in enumerate(("nan", "failed", "interrupted")):
        rec = store.claim(spec(i)).record
        rec.status = status
        store.finish(rec)
    assert [store.claim(spec(i)).outcome for i in range(3)] == ["done", "run", "run"]


def test_recover_marks_dead_processes_interrupted(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        # rows as other processes would have left them: one dead, one alive, one alive pid but a reused one
        for i, (pid, start) in enumerate(((child.pid, None), (sleeper.pid, process_start_time(sleeper.pid)),
                                          (sleeper.pid, (process_start_time(sleeper.pid) or 0) + 1))):
            rec = RunRecord.from_spec(spec(i), status="running", pid=pid, pid_start=start, host=store.host)
            store.put(rec)
        mine = store.claim(spec(3)).record  # this live process's own running row
        dead = store.recover()
        assert sorted(dead) == sorted([spec(0).config_hash, spec(2).config_hash])
        assert store.get(spec(0).config_hash).status == "interrupted"
        assert store.get(spec(1).config_hash).status == "running"
        assert store.get(mine.config_hash).status == "running"
        # a live process's run is "busy" for others; the interrupted one is claimable again
        assert store.claim(spec(1)).outcome == "busy"
        assert store.claim(spec(0)).outcome == "run"
    finally:
        sleeper.kill()
        sleeper.wait()
    assert not process_alive(sleeper.pid, process_start_time(sleeper.pid))


def _writer(args):
    path, worker, n = args
    store = RunStore(path)
    for i in range(n):
        s = spec(worker * 1000 + i, seed=worker)
        claim = store.claim(s)
        assert claim.outcome == "run"
        rec = claim.record
        rec.status, rec.auc = "ok", 0.5 + i / 1000
        store.finish(rec)
        store.records(status="ok")  # readers interleave with writers
    return os.getpid()


def test_concurrent_writers_lose_nothing(tmp_path):
    path = str(tmp_path / "runs.sqlite")
    RunStore(path)
    workers, n = 4, 25
    with mp.get_context("spawn").Pool(workers) as pool:
        pids = pool.map(_writer, [(path, w, n) for w in range(workers)])
    store = RunStore(path)
    recs = store.records()
    assert len(recs) == workers * n and all(r.status == "ok" for r in recs)
    assert {r.pid for r in recs} == set(pids) and len(set(pids)) > 1
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_schema_only_grows(tmp_path):
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE runs (config_hash TEXT PRIMARY KEY, status TEXT, record_json TEXT)")
    conn.commit()
    conn.close()
    store = RunStore(path)
    cols = {r[1] for r in sqlite3.connect(path).execute("PRAGMA table_info(runs)")}
    assert {"auc", "oracle_auc", "train_samples_per_s", "search_id", "candidate_index", "peak_memory_mb"} <= cols
    rec = store.claim(spec()).record
    rec.status = "ok"
    store.finish(rec)
    assert store.get(spec().config_hash).status == "ok"


def test_unknown_record_fields_are_kept(tmp_path):
    rec = RunRecord.from_dict({**RunRecord.from_spec(spec()).to_dict(), "from_the_future": 1})
    assert rec.extra["from_the_future"] == 1


def test_search_rows(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    store.put_search("s1", suite="q", status="running", config={"a": 1})
    store.put_search("s1", status="ok", best_value=0.8)
    got = store.get_search("s1")
    assert got["status"] == "ok" and got["best_value"] == 0.8 and got["config"] == {"a": 1}
    with pytest.raises(KeyError):
        store.put_search("s1", **{"status; DROP TABLE runs": "x"})


def _old_store(path) -> None:
    """A store as ctrbench wrote it before evaluations and searcher states: runs + the old searches table."""
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE runs (config_hash TEXT PRIMARY KEY, status TEXT, record_json TEXT)")
    conn.execute("CREATE TABLE searches (search_id TEXT PRIMARY KEY, suite TEXT, entry TEXT, searcher TEXT, dataset "
                 "TEXT, seed INTEGER, status TEXT, best_config_hash TEXT, best_value REAL, candidates INTEGER, "
                 "config_json TEXT, started_at TEXT, finished_at TEXT)")
    conn.execute("INSERT INTO searches (search_id, status) VALUES ('s0', 'ok')")
    conn.commit()
    conn.close()


def test_an_old_store_opens_read_only_and_gains_the_search_tables_when_written(tmp_path):
    path = tmp_path / "old.sqlite"
    _old_store(path)
    reader = RunStore(path, create=False)  # reports open it as it is
    assert reader.evaluations() == [] and reader.search_state("s0") is None
    store = RunStore(path)
    assert {"state_json", "updated_at"} <= {r[1] for r in sqlite3.connect(path).execute("PRAGMA table_info(searches)")}
    store.save_search_state("s0", "evolution", {"state": {"rng": 1}, "batch": []})
    store.put_evaluation("s0", 0, kind="lookup", status="ok", value=0.7, point={"a": 1}, candidate={"index": 0},
                         metrics={"auc": 0.7}, point_hash="h0", cost_seconds=0.01)
    assert store.search_state("s0") == {"state": {"rng": 1}, "batch": []}
    assert store.get_search("s0")["status"] == "ok"  # the summary it had is kept
    (row,) = store.evaluations(search_id="s0", kind="lookup")
    assert (row["candidate_index"], row["value"], row["point"], row["metrics"]) == (0, 0.7, {"a": 1}, {"auc": 0.7})


def test_evaluations_keep_their_order_and_refuse_unknown_fields(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    for i in (3, 1, 2):
        store.put_evaluation("s", i, kind="train", status="ok", config_hash=f"h{i}")
    store.put_evaluation("t", 0, kind="lookup", status="failed")
    assert [r["candidate_index"] for r in store.evaluations(search_id="s")] == [3, 1, 2]
    assert [r["search_id"] for r in store.evaluations(kind="lookup")] == ["t"]
    store.clear_search("s")
    assert store.evaluations(search_id="s") == [] and len(store.evaluations()) == 1
    with pytest.raises(KeyError, match="unknown evaluation fields"):
        store.put_evaluation("s", 0, **{"kind; DROP TABLE runs": "x"})


def test_an_interrupt_just_after_begin_neither_keeps_the_lock_nor_blocks_the_marking(tmp_path, monkeypatch):
    """An exception raised between BEGIN returning and the transaction's body (a signal handler's Interrupted)
    rolls the transaction back; and a transaction some earlier exception left open does not make the next write
    (the interrupt's own marking) fail."""
    store = RunStore(tmp_path / "runs.sqlite")
    s = spec()
    store.claim(s)
    retry = RunStore._retry

    def interrupted_after_begin(fn):
        out = retry(fn)
        if store._conn.in_transaction:
            raise KeyboardInterrupt  # as a handler would, at the first bytecode after BEGIN
        return out

    monkeypatch.setattr(RunStore, "_retry", staticmethod(interrupted_after_begin))
    with pytest.raises(KeyboardInterrupt):
        store.mark_interrupted(s.config_hash, "first")
    monkeypatch.setattr(RunStore, "_retry", staticmethod(retry))
    assert not store._conn.in_transaction  # rolled back: the write lock is free
    other = RunStore(tmp_path / "runs.sqlite")
    other._connect().execute("BEGIN IMMEDIATE")
    other._conn.execute("ROLLBACK")

    store._connect().execute("BEGIN IMMEDIATE")  # left open by an exception before any try could see it
    store.mark_interrupted(s.config_hash, "Interrupted SIGTERM")
    got = other.get(s.config_hash)
    assert got.status == "interrupted" and got.error == "Interrupted SIGTERM"
