"""System knobs: a DDP run with 2 torchrun-started processes trains as one process does on the same global batches;
bf16 autocast and prefetch run and are recorded; every bad or conflicting knob is a ConfigError at its YAML path."""
from __future__ import annotations

import textwrap

import pytest

from ctrbench.errors import ConfigError
from ctrbench.harness.execute import execute_run
from ctrbench.harness.suite import load_suite
from ctrbench.runs.records import RunSpec

# dropout 0 and no shuffling differences: DDP's averaged shard gradients equal the single-process batch gradient
PARAMS = {"embedding_dim": 4, "bottom_mlp_units": [8], "top_mlp_units": [8], "net_dropout": 0.0,
          "embedding_backend": "torch"}
TRAIN = {"batch_size": 64, "max_epochs": 1, "max_steps": 12, "eval_batch_size": 512, "threads": 1,
         "reduce_lr_on_plateau": False}
LOSS_TOLERANCE = 1e-4  # |test logloss (2 processes) - test logloss (1 process)|: float summation order only


def _spec(**system) -> RunSpec:
    return RunSpec(suite="t", entry="dlrm", model="dlrm", params=PARAMS, train=TRAIN, dataset="criteo_x1", rows=3000,
                   system={"measure_warmup": 1, "measure_steps": 2, **system})


def test_ddp_two_processes_match_one_process():
    one = execute_run(_spec())
    two = execute_run(_spec(world_size=2))
    assert one.status == "ok", one.error
    assert two.status == "ok", two.error
    assert (one.world_size, two.world_size) == (1, 2)
    assert two.extra["dist_backend"] == "gloo" and "torchrun" in two.extra["launcher"]["command"]
    assert abs(two.logloss - one.logloss) < LOSS_TOLERANCE
    assert abs(two.history[-1]["valid"]["logloss"] - one.history[-1]["valid"]["logloss"]) < LOSS_TOLERANCE
    assert two.extra["cost"]["world_size"] == 2 and two.train_samples_per_s > 0


def test_bf16_autocast_and_prefetch_run_and_are_recorded():
    rec = execute_run(_spec(dtype="bf16", prefetch=2))
    assert rec.status == "ok", rec.error
    assert rec.dtype == "bf16-autocast"
    assert rec.extra["system"]["prefetch"] == 2 and rec.extra["system"]["dtype"] == "bf16"
    assert rec.train_samples_per_s > 0 and "loaded" in rec.extra["cost"]


def _suite(tmp_path, entry: str, defaults: str = "") -> str:
    p = tmp_path / "s.yaml"
    p.write_text(textwrap.dedent(f"""\
        name: t
        defaults: {{train: {{max_epochs: 1}}{defaults}}}
        datasets: [{{name: criteo_x1}}]
        entries:
          - {entry}
        """))
    return str(p)


@pytest.mark.parametrize("entry,defaults,path,words", [
    ("{name: a, model: dlrm, system: {dtype: fp16}}", "", "entries[0].system.dtype", "'fp32' or 'bf16'"),
    ("{name: a, model: dlrm, system: {thread: 2}}", "", "entries[0].system.thread", "unknown system knob"),
    ("{name: a, model: dlrm, system: {world_size: 0}}", "", "entries[0].system.world_size", "greater than or equal"),
    ("{name: a, model: dlrm, train: {batch_size: 100}, system: {world_size: 3}}", "",
     "entries[0].system.world_size", "does not split"),
    ("{name: a, model: dlrm, train: {batch_size: 100}, system: {batch_size: 200}}", "",
     "entries[0].system.batch_size", "set it in one place"),
    ("{name: a, model: dlrm, system: {embedding_gradients: fused_sgd, embedding_backend: torch}}", "",
     "entries[0].system.embedding_gradients", "needs embedding_backend 'fused'"),
    ("{name: a, model: dlrm, grid: {system.world_size: [1, 2]}}", ", system: {embedding_gradients: fused_sgd}",
     "entries[0].grid['system.world_size']", "fused embedding optimizer"),
    ("{name: a, model: dlrm, system: {kernel_backend: cuda}}", "", "entries[0].system.kernel_backend", "GPU"),
    ("{name: a, model: dlrm, grid: {system.prefetch: [0, -1]}}", "", "entries[0].grid['system.prefetch']",
     "greater than or equal"),
])
def test_bad_knob_is_a_located_config_error(tmp_path, entry, defaults, path, words):
    with pytest.raises(ConfigError) as err:
        load_suite(_suite(tmp_path, entry, defaults))
    assert err.value.path == path, str(err.value)
    assert words in str(err.value) and ":5" in err.value.file


def test_knobs_resolve_into_train_params_and_run_system(tmp_path):
    suite = load_suite(_suite(tmp_path, "{name: a, model: dlrm, grid: {system.embedding_gradients: [sparse, "
                                        "fused_rowwise_adagrad]}, system: {threads: 2, batch_size: 512, dtype: bf16}}"))
    sparse, fused = suite.runs
    assert sparse.train["sparse_embeddings"] and sparse.train["threads"] == 2 and sparse.train["batch_size"] == 512
    assert fused.train["fused_embedding_optimizer"] == "rowwise_adagrad" and fused.params["embedding_backend"] == "fused"
    assert sparse.system == {"measure_warmup": 3, "measure_steps": 10, "dtype": "bf16"}
    plain = load_suite(_suite(tmp_path, "{name: a, model: dlrm, system: {dtype: fp32, world_size: 1}}")).runs[0]
    assert plain.system == {"measure_warmup": 3, "measure_steps": 10}  # default knobs keep the run identity
