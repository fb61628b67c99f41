"""A run record's `backend` names the backend each op actually ran on during training (kernels.backend's recorder):
the fused embedding path, InterFormer's attention, CETNet's fusion, and 'torch' for plain-PyTorch lookups."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "models"))
from tiny_cache import build_tiny_cache  # noqa: E402

import ctrbench.data.api as api  # noqa: E402
from ctrbench.harness.execute import execute_run  # noqa: E402
from ctrbench.kernels.backend import note_backend, record_backends  # noqa: E402
from ctrbench.runs.records import RunRecord, RunSpec  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TRAIN = {"batch_size": 64, "max_epochs": 1, "max_steps": 2, "eval_batch_size": 256}
SMALL_IF = {"embedding_dim": 8, "num_layers": 1, "head_units": [16]}


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    root = tmp_path_factory.mktemp("backend_record")
    return {name: build_tiny_cache(name, root / name, rows=300) for name in ("criteo_x1", "amazonelectronics_x1")}


def _record(caches, monkeypatch, model, params, dataset="criteo_x1", kernel_backend=None) -> RunRecord:
    monkeypatch.setattr(api, "open_dataset", lambda name, source="synthetic", **kw: caches[name])
    if kernel_backend:
        monkeypatch.setenv("CTRBENCH_BACKEND", kernel_backend)
    spec = RunSpec(suite="t", entry=model, model=model, params=params, train=TRAIN, dataset=dataset,
                   system={"measure_warmup": 0, "measure_steps": 1})
    rec = execute_run(spec)
    assert rec.status == "ok", rec.error
    return rec


def test_fused_and_torch_embeddings_are_recorded_as_they_ran(caches, monkeypatch):
    fused = _record(caches, monkeypatch, "dnn", {"embedding_dim": 4, "hidden_units": [8], "embedding_backend": "fused"})
    assert fused.backend == {"embedding_bag_collection": "cpp"}  # auto on a CPU resolves to the C++ kernels
    plain = _record(caches, monkeypatch, "dnn", {"embedding_dim": 4, "hidden_units": [8], "embedding_backend": "torch"})
    assert plain.backend == {"embedding_bag_collection": "torch"}
    ref = _record(caches, monkeypatch, "dnn", {"embedding_dim": 4, "hidden_units": [8], "embedding_backend": "fused",
                                               "kernel_backend": "reference"})
    assert ref.backend == {"embedding_bag_collection": "reference"}


def test_interformer_records_its_attention_backend(caches, monkeypatch):
    rec = _record(caches, monkeypatch, "interformer", SMALL_IF, "amazonelectronics_x1", kernel_backend="reference")
    assert rec.backend["interleaved_attention"] == "reference"  # $CTRBENCH_BACKEND reaches every op
    assert rec.backend["embedding_bag_collection"] in ("reference", "torch")


def test_cetnet_records_its_fusion_backend(caches, monkeypatch):
    params = {"embedding_dim": 8, "members": [{"model": "interformer", "params": SMALL_IF},
                                              {"model": "dnn", "params": {"hidden_units": [8]}}]}
    rec = _record(caches, monkeypatch, "cetnet", params, "amazonelectronics_x1")
    assert rec.backend["entropy_weighted_fusion"] == "cpp" and rec.backend["interleaved_attention"] == "cpp"


def test_recorder_sees_every_thread_and_nests():
    import threading

    with record_backends() as outer:
        with record_backends() as inner:
            worker = threading.Thread(target=note_backend, args=("op_a", "cuda"))
            worker.start()
            worker.join()
        note_backend("op_b", "cpp")
    note_backend("op_c", "cpp")  # after the blocks: recorded nowhere
    assert inner == {"op_a": "cuda"} and outer == {"op_a": "cuda", "op_b": "cpp"}


def test_old_records_with_a_backend_spec_stay_readable():
    old = RunRecord.from_dict({"config_hash": "h", "backend": {"embedding_bag_collection": "fused:auto"}})
    assert old.backend == {"embedding_bag_collection": "fused:auto"}
