"""Run ONE run: open the dataset, build the model, fit, measure its cost, and fill a RunRecord.

Every executor (in-process, process pool, Ray) calls `execute_run`; it never raises for a failing run —
a NaN loss is status "nan" (with the step), any exception is status "failed" with the error and a
traceback excerpt — so one bad config cannot take a suite down. KeyboardInterrupt passes through.
"""
from __future__ import annotations

import os
import socket
import time
import traceback
from contextlib import contextmanager

import torch

from ctrbench.runs.records import COST, QUALITY, RunRecord, RunSpec
from ctrbench.runs.store import process_start_time, utc_now

TRACEBACK_CHARS = 3000


@contextmanager
def torch_threads(n: int | None):
    """Use n intra-op threads for the whole run (fit and measurement alike), then restore."""
    old = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _num(v):
    return None if v is None else float(v)


def _backends(model, ran: dict[str, str]) -> dict[str, str]:
    """{op: backend} that ran during training, as the ops reported it (ctrbench.kernels.backend.record_backends);
    a model with lookups that ran no fused embedding op looked up on the torch path."""
    out = dict(ran)
    collections = getattr(model, "embedding_collections", None)
    if "embedding_bag_collection" not in out and collections is not None and any(True for _ in collections()):
        out["embedding_bag_collection"] = "torch"
    return out


def execute_run(run: RunSpec, data_root=None, callbacks=None, record: RunRecord | None = None) -> RunRecord:
    """Execute `run` and return its record (status ok | nan | failed). `record` (a claimed "running" row)
    keeps its identity fields; `callbacks` go to `fit` (progress bars)."""
    from ctrbench.cubicml.execution import kernel_backend, rank_and_world
    from ctrbench.cubicml.system import protocol_of, run_knobs
    from ctrbench.data.api import open_dataset
    from ctrbench.kernels.backend import record_backends
    from ctrbench.measure import environment, measure_cost
    from ctrbench.models.registry import build_model, model_tables
    from ctrbench.train import TrainConfig, fit

    rec = record or RunRecord.from_spec(run, host=socket.gethostname(), pid=os.getpid(),
                                        pid_start=process_start_time(os.getpid()), started_at=utc_now())
    t0 = time.perf_counter()
    torch.set_grad_enabled(True)  # whatever an earlier run (or an interrupt inside one) left in this process
    try:
        cfg = TrainConfig(**run.train)
        knobs = run_knobs(run.system)
        if knobs.world_size > 1 and rank_and_world()[1] == 1:  # start the DDP processes; each executes this run
            from ctrbench.cubicml.ddp import launch

            return launch(run, rec, world_size=knobs.world_size, threads=cfg.threads, data_root=data_root)
        with torch_threads(cfg.threads), kernel_backend(knobs):
            rec.threads = torch.get_num_threads()
            cache = open_dataset(run.dataset, run.source, rows=run.rows, seed=run.data_seed, data_root=data_root,
                                 twin=run.twin)
            train_rows = cache.split("train").rows
            rec.train_rows = min(train_rows, cfg.max_train_rows) if cfg.max_train_rows else train_rows
            spec = cache.spec
            rec.extra["dataset"] = {  # the dataset's shape, as features for CubicML's records
                "n_categorical": len(spec.categorical), "n_numeric": len(spec.numeric),
                "n_sequences": len(spec.sequences), "n_pretrained": len(spec.pretrained),
                "max_seq_len": max((f.max_len for f in spec.sequences), default=0),
                "vocab_total": int(sum(cache.vocab_sizes.values())),
            }
            model = build_model(run.model, cache.spec, cache.vocab_sizes, run.params, model_tables(cache), seed=run.seed)
            with record_backends() as ran:
                result = fit(model, cache, cfg, callbacks, system=knobs)
            rec.status, rec.error, rec.nan_step = result.status, result.error, result.nan_step
            rec.epochs_run, rec.best_epoch, rec.train_seconds = result.epochs_run, result.best_epoch, result.train_seconds
            rec.history, rec.valid, rec.test = result.history, dict(result.valid), dict(result.test)
            rec.oracle_test = dict(result.oracle_test or {})
            rec.components, rec.diagnostics = dict(result.test_components), dict(result.test_diagnostics)
            for k in QUALITY:
                setattr(rec, k, _num(result.test.get(k)))
            rec.valid_auc = _num(result.valid.get("auc"))
            for k in ("auc", "gauc", "logloss", "ne"):  # oracle_metrics prefixes its keys with "oracle_"
                setattr(rec, f"oracle_{k}", _num(rec.oracle_test.get(f"oracle_{k}", rec.oracle_test.get(k))))
            param = next(model.parameters())
            rec.device, rec.dtype = str(param.device), str(param.dtype).removeprefix("torch.")
            if knobs.dtype != "fp32":
                rec.dtype = f"{knobs.dtype}-autocast"  # parameters stay fp32; forward and loss ran in bf16
            rec.world_size = rank_and_world()[1]
            rec.extra["system"] = knobs.model_dump()
            rec.backend = _backends(model, ran)
            if result.status in ("ok", "nan"):  # a NaN model still has a size and a speed
                cost = measure_cost(model, cache, cfg.batch_size, train=cfg, warmup=run.system.get("measure_warmup", 3),
                                    steps=run.system.get("measure_steps", 10), system=knobs,
                                    protocol=protocol_of(run.system))
                for k in COST:
                    setattr(rec, k, cost.get(k))
                rec.params = int(cost["params"]) if cost.get("params") is not None else None
                rec.extra["cost"] = {k: v for k, v in cost.items() if k not in COST}
    except Exception as exc:  # noqa: BLE001 - a failing run is a result, recorded with its error
        rec.status = "failed"
        tb = "".join(traceback.format_exception(exc))
        rec.error = f"{type(exc).__name__}: {exc}\n--- traceback (end) ---\n{tb[-TRACEBACK_CHARS:]}"
    rec.environment = environment()
    rec.git_rev = rec.environment.get("git_rev")
    rec.finished_at = utc_now()
    rec.wall_seconds = time.perf_counter() - t0
    return rec
