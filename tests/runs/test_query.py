"""The run layer's query API: filtered records and the runs frame, from a store object or its path."""
from __future__ import annotations

import pytest

from ctrbench.errors import StoreError
from ctrbench.runs.query import load_runs, runs_frame
from ctrbench.runs.records import RunSpec
from ctrbench.runs.store import RunStore


def _finish(store: RunStore, dataset: str, seed: int, status: str, auc: float | None) -> None:
    spec = RunSpec(suite="q", entry="lr", model="lr", params={}, train={"seed": seed}, dataset=dataset, seed=seed)
    rec = store.claim(spec).record
    rec.status, rec.auc = status, auc
    store.finish(rec)


def test_load_runs_filters_and_frames(tmp_path):
    path = tmp_path / "runs.sqlite"
    store = RunStore(path)
    _finish(store, "criteo_x1", 0, "ok", 0.7)
    _finish(store, "criteo_x1", 1, "failed", None)
    _finish(store, "avazu_x1", 0, "ok", 0.6)
    assert len(load_runs(store)) == 3
    ok_criteo = load_runs(path, status="ok", dataset="criteo_x1")
    assert [(r.dataset, r.seed, r.auc) for r in ok_criteo] == [("criteo_x1", 0, 0.7)]
    assert {r.dataset for r in load_runs(path, suite="q", status="ok")} == {"criteo_x1", "avazu_x1"}
    frame = runs_frame(load_runs(path, dataset="criteo_x1"))
    assert sorted(frame["status"]) == ["failed", "ok"] and "model_params" in frame.columns


def test_load_runs_never_creates_a_store(tmp_path):
    with pytest.raises(StoreError, match="no run store"):
        load_runs(tmp_path / "absent.sqlite")
    assert not (tmp_path / "absent.sqlite").exists()
