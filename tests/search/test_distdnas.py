"""DistDNAS: day slices of the criteo_terabyte twin, a two-day search end to end through local Ray (aggregation,
the pooled baseline, the point retrained), a killed day task retried, a failing day stored and resumed without
redoing the finished days, and the wall-time projection."""
from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from ctrbench.data.api import open_dataset
from ctrbench.errors import DataError
from ctrbench.runs.store import RunStore
from ctrbench.search.dnas.aggregate import RULES
from ctrbench.search.dnas.days import DaySlice, day_ranges
from ctrbench.search.dnas.distributed import (DistDNASConfig, DistDNASError, Ray, aggregated_points,
                                              projected_seconds, run_days, run_pooled, search_days)
from ctrbench.search.dnas.search import retrain
from ctrbench.search.registry import get_space

ROWS = 2400  # 100 rows a day
SPACE = {"num_blocks": 1, "dense_dim": 8, "embedding_dim": 8, "sparse_ops": ["efc", "skip"]}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("distdnas_data")
    open_dataset("criteo_terabyte", "synthetic", rows=ROWS, data_root=root)  # built once, read by every worker
    return root


@pytest.fixture(scope="module")
def twin(data_root):
    return open_dataset("criteo_terabyte", "synthetic", rows=ROWS, data_root=data_root)


@pytest.fixture(scope="module")
def ray_session():
    with Ray(workers=2) as session:
        yield session


def config(days=(0, 1), **dnas) -> DistDNASConfig:
    return DistDNASConfig(data={"rows": ROWS, "days": list(days), "day_rows": 80, "valid_fraction": 0.25},
                          space=SPACE, dnas={"steps": 3, "batch_size": 16, "log_every": 1, **dnas})


# --- day slices ---------------------------------------------------------------------------------------------------
def test_day_slice_holds_the_days_rows(twin):
    ranges = day_ranges(twin)
    assert sorted(ranges) == list(range(23)) and all(hi - lo == 100 for lo, hi in ranges.values())
    view = DaySlice(twin, [2, 5], 80, 0.25)
    day = np.asarray(twin.split("train")["day"])
    assert view.split("train").rows == 120 and view.split("valid").rows == 40
    assert set(view.split("train")["day"]) == {2, 5} and set(view.split("valid")["day"]) == {2, 5}
    lo2 = ranges[2][0]  # day 2: rows lo..lo+59 train, lo+60..lo+79 valid (the end of the day's kept rows)
    np.testing.assert_array_equal(view.split("train")["label"][:60], twin.split("train")["label"][lo2:lo2 + 60])
    np.testing.assert_array_equal(view.split("valid")["label"][:20], twin.split("train")["label"][lo2 + 60:lo2 + 80])
    assert (day[lo2:lo2 + 80] == 2).all()
    assert view.positive_rate("train") == pytest.approx(float(view.split("train")["label"].mean()))


def test_day_slice_errors_say_what(twin, tiny_cache):
    with pytest.raises(DataError, match="day 23 is not a training day of criteo_terabyte; it has days 0..22"):
        DaySlice(twin, [23], None, 0.2)
    with pytest.raises(DataError, match="no day block"):
        DaySlice(tiny_cache, [0], None, 0.2)
    with pytest.raises(DataError, match="day 0 has 2 rows: too few"):
        DaySlice(twin, [0], 2, 0.1)
    with pytest.raises(ValueError, match="valid_fraction"):
        DaySlice(twin, [0], None, 1.0)
    with pytest.raises(ValidationError, match="days must be distinct"):
        config(days=(1, 1))


# --- the search through Ray ---------------------------------------------------------------------------------------
def test_two_day_search_end_to_end_through_local_ray(tmp_path, data_root, twin, ray_session):
    cfg = config()
    store = RunStore(tmp_path / "runs.db")
    run = run_days(cfg, store, ray_session=ray_session, data_root=data_root)
    assert run.ran == [0, 1] and set(run.results) == {0, 1}
    assert all(r["status"] == "ok" and r["kind"] == "dnas_day" for r in run.results.values())
    assert {r["metrics"]["train_rows"] for r in run.results.values()} == {60}
    space = get_space("distdnas", **SPACE)
    points = aggregated_points(space, run.results)
    assert set(points) == set(RULES)
    for agg in points.values():
        assert space.validate(agg["point"]) == agg["point"] and agg["days"] == [0, 1]
    pooled = run_pooled(cfg, store, data_root=data_root)
    assert pooled["status"] == "ok" and pooled["metrics"]["train_rows"] == 120
    assert len(pooled["metrics"]["history"]) == 6  # the days' steps together (log_every 1)
    assert run_pooled(cfg, store, data_root=data_root)["finished_at"] == pooled["finished_at"]  # read back, not redone
    _, result = retrain(twin, space, points["mean_probabilities"]["point"], {"max_epochs": 1, "batch_size": 256})
    assert result.status == "ok" and 0 <= result.test["auc"] <= 1


def test_killed_day_task_is_retried(tmp_path, data_root, ray_session):
    marks = tmp_path / "marks"
    marks.mkdir()

    def dies_once(job):  # the first try of day 1 kills its own worker process (SIGKILL: no cleanup, no exception)
        day = job["data"]["days"][0]
        (Path(marks) / f"{day}-{os.getpid()}-{len(os.listdir(marks))}").touch()
        if day == 1 and not (Path(marks) / "killed").exists():
            (Path(marks) / "killed").touch()
            os.kill(os.getpid(), signal.SIGKILL)
        return search_days(job)

    store = RunStore(tmp_path / "runs.db")
    run = run_days(config(), store, ray_session=ray_session, data_root=data_root, retries=2, day_task=dies_once)
    assert {d: r["status"] for d, r in run.results.items()} == {0: "ok", 1: "ok"}
    tries = [p.name.split("-")[0] for p in marks.iterdir() if p.name != "killed"]
    assert sorted(tries) == ["0", "1", "1"]  # day 1 ran twice: killed, then retried to the end


def test_failed_day_is_stored_and_resume_skips_finished_days(tmp_path, data_root, ray_session):
    calls = tmp_path / "calls"
    calls.mkdir()

    def day1_fails(job):
        day = job["data"]["days"][0]
        (Path(calls) / f"{day}-{len(os.listdir(calls))}").touch()
        if day == 1:
            raise RuntimeError("day 1's disk is gone")
        return search_days(job)

    store = RunStore(tmp_path / "runs.db")
    with pytest.raises(DistDNASError, match=r"\[1\] failed after 1 retries.*day 1's disk is gone.*run again"):
        run_days(config(), store, ray_session=ray_session, data_root=data_root, retries=1, day_task=day1_fails)
    assert sorted(p.name.split("-")[0] for p in calls.iterdir()) == ["0", "1", "1"]  # day 1: a try and a retry
    run = run_days(config(), store, ray_session=ray_session, data_root=data_root)
    assert run.ran == [1] and {r["status"] for r in run.results.values()} == {"ok"}
    again = run_days(config(days=(1, 0, 2)), store, ray_session=ray_session, data_root=data_root)
    assert again.ran == [2] and sorted(again.results) == [0, 1, 2]  # another day set with the same settings


def test_no_ok_day_is_an_error():
    space = get_space("distdnas", **SPACE)
    with pytest.raises(DistDNASError, match="no day search ended ok"):
        aggregated_points(space, {0: {"status": "nan", "metrics": {}}})


# --- the wall-time model ------------------------------------------------------------------------------------------
def test_projection_is_lpt_makespan_plus_overhead():
    assert projected_seconds([5, 4, 3, 3, 3], 2) == 10  # longest first to the freer worker: 5|4, 7, 8, 10
    assert projected_seconds([5, 4, 3], 3, overhead=2.0) == 7.0
    assert projected_seconds([5, 4, 3], 10) == 5
    assert projected_seconds([2, 2, 2, 2], 1) == 8
    with pytest.raises(ValueError, match="workers must be >= 1"):
        projected_seconds([1.0], 0)
