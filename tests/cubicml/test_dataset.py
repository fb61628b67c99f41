"""The performance dataset's long format round-trips exactly (through a run store and the CSV), and reading a file
of another schema version or with an unknown field is a typed error."""
from __future__ import annotations

import pandas as pd
import pytest

from ctrbench.cubicml.dataset import (SCHEMA_VERSION, PerfDataError, export, from_long, noise_floor, read, to_long,
                                      wide_frame)
from ctrbench.runs.records import RunRecord, RunSpec
from ctrbench.runs.store import RunStore


def _record(model: str, threads: int, repeat: int, sps: float, *, status: str = "ok") -> RunRecord:
    system = {"measure_warmup": 1, "measure_steps": 5, "measure_precision": 0.03} | ({"repeat": repeat} if repeat else {})
    spec = RunSpec(suite="perf", entry=model, model=model, params={"embedding_dim": 8, "hidden_units": [64, 32],
                   "embedding_backend": "fused"}, train={"batch_size": 256, "threads": threads, "optimizer": "adam",
                   "sparse_embeddings": True}, dataset="criteo_x1", rows=1000, system=system)
    rec = RunRecord.from_spec(spec, status=status, train_samples_per_s=sps if status == "ok" else None,
                              step_time_p50_ms=256 / sps * 1e3, peak_memory_mb=123.25, params=4567,
                              flops_train_per_sample=1.5e4, device="cpu", dtype="float32", git_rev="abc",
                              backend={"embedding_bag_collection": "cpp"}, environment={"cpu": "x86", "cores": 2},
                              started_at=f"2026-01-01T00:00:{threads}{repeat}Z")
    rec.extra = {"cost": {"loaded": repeat == 1, "timing_converged": True, "step_time_cv": 0.02,
                          "params_embedding": 4000},
                 "dataset": {"n_categorical": 39, "n_numeric": 0, "n_sequences": 0, "vocab_total": 5000}}
    return rec


RECORDS = [_record("dnn", 1, 0, 1000.0), _record("dnn", 1, 1, 1040.0), _record("dlrm", 2, 0, 1733.3333333333333),
           _record("dlrm", 2, 1, 1700.0), _record("dnn", 2, 0, 1900.5), _record("dnn", 3, 0, 1.0, status="failed")]


def test_long_format_round_trips_exactly():
    wide = wide_frame(RECORDS)
    assert len(wide) == 5  # the failed run has no measurement
    back = from_long(to_long(wide))
    pd.testing.assert_frame_equal(back, wide)
    row = wide.iloc[0]
    assert row["embedding_gradients"] == "sparse" and row["mlp_units_total"] == 96 and row["kernel_backend"] == "cpp"
    assert row["loaded"] == 0 and wide.iloc[1]["loaded"] == 1 and row["converged"] == 1


def test_export_from_a_store_and_read_back(tmp_path):
    store = RunStore(tmp_path / "runs.sqlite")
    for r in RECORDS:
        store.put(r)
    wide = export([tmp_path / "runs.sqlite"], tmp_path / "out")
    pd.testing.assert_frame_equal(read(tmp_path / "out"), wide)
    assert (tmp_path / "out" / "schema.json").exists()
    assert wide["noise_group"].nunique() == 3  # repeats share a group
    floor = noise_floor(wide)
    assert floor["pairs"] == 2 and floor["median_rel_diff"] == pytest.approx((0.04 / 1.02 + 33.3333 / 1716.6667) / 2,
                                                                              rel=1e-3)


def test_other_schema_version_and_unknown_fields_are_refused():
    long = to_long(wide_frame(RECORDS))
    with pytest.raises(PerfDataError, match="schema version"):
        from_long(long.assign(schema_version=SCHEMA_VERSION + 1))
    with pytest.raises(PerfDataError, match="unknown field"):
        from_long(pd.concat([long, long.head(1).assign(name="qps_magic")]))
    with pytest.raises(PerfDataError, match="kind"):
        from_long(long.assign(kind="num"))
