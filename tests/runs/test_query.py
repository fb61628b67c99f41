"""The run layer's query API: filtered records and the runs frame, from a store object or its path."""
from __future__ import annotations

import pytest

from ctrbench.errors import StoreError
from ctrbench.runs.query import evaluations_frame, load_runs, runs_frame
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


def test_evaluations_frame_holds_every_kind(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    store.put_evaluation("s", 0, kind="train", status="ok", value=0.7, config_hash="h0", metrics={"auc": 0.7})
    store.put_evaluation("s", 1, kind="lookup", status="ok", value=0.6, point={"a": 1}, metrics={"auc": 0.6})
    frame = evaluations_frame(tmp_path / "runs.sqlite")
    assert list(frame["kind"]) == ["train", "lookup"] and frame["metrics"][1] == {"auc": 0.6}
    assert list(evaluations_frame(store, kind="lookup")["point"]) == [{"a": 1}]
    assert evaluations_frame(store, search_id="other").empty and "point_hash" in evaluations_frame(store).columns
