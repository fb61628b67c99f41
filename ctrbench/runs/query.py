"""Reading the run store: records filtered by suite, status, dataset or search, the records as a DataFrame
(one row per run, scalar fields plus the model params and train config as JSON) for reports and analysis, and
the searches' evaluations of every kind as a DataFrame (what a performance model learns from)."""
from __future__ import annotations

import json
import os

import pandas as pd

from ctrbench.runs.records import COST, RunRecord
from ctrbench.runs.store import EVALUATION_JSON, EVALUATION_TABLE, RunStore


def _open(store: RunStore | str | os.PathLike) -> RunStore:
    return store if isinstance(store, RunStore) else RunStore(store, create=False)


def load_runs(store: RunStore | str | os.PathLike, *, suite: str | None = None, status: str | None = None,
              dataset: str | None = None, search_id: str | None = None) -> list[RunRecord]:
    """The stored runs matching every given filter, oldest first; a path opens the store read-only (a missing
    store is a StoreError, never created)."""
    return _open(store).records(suite=suite, status=status, dataset=dataset, search_id=search_id)


def evaluations_frame(store: RunStore | str | os.PathLike, *, search_id: str | None = None,
                      kind: str | None = None) -> pd.DataFrame:
    """One row per stored evaluation (any kind, or `kind`), in recorded order: the evaluations table's columns
    with point, candidate and metrics decoded to objects."""
    columns = [n for n, _ in EVALUATION_TABLE if not n.endswith("_json")] + list(EVALUATION_JSON)
    return pd.DataFrame(_open(store).evaluations(search_id=search_id, kind=kind), columns=columns)


def first_line(s: str | None) -> str | None:
    """An error's first line (at most 300 characters), for tables."""
    return s.splitlines()[0][:300] if s else s


RUN_COLUMNS = ["config_hash", "run_id", "attempt", "entry", "kind", "model", "dataset", "source", "rows", "data_seed",
               "seed", "search_id", "candidate_index", "status", "error", "auc", "gauc", "logloss", "ne", "calibration",
               "oracle_auc", "oracle_gauc", "oracle_logloss", "oracle_ne", "valid_auc", "epochs_run", "best_epoch",
               "nan_step", *COST, "batch_size", "threads", "world_size", "device", "dtype", "train_seconds",
               "wall_seconds", "started_at", "finished_at", "git_rev", "command"]


def runs_frame(records: list[RunRecord]) -> pd.DataFrame:
    """One row per record: RUN_COLUMNS (the error's first line) plus model_params, train_config, twin_options."""
    data = []
    for r in records:
        d = {c: getattr(r, c) for c in RUN_COLUMNS}
        d["error"] = first_line(r.error)
        d["model_params"] = json.dumps(r.config.get("params", {}), sort_keys=True)
        d["train_config"] = json.dumps(r.config.get("train", {}), sort_keys=True)
        d["twin_options"] = json.dumps(r.config.get("twin") or {}, sort_keys=True)  # {} = the twin's defaults
        data.append(d)
    return pd.DataFrame(data, columns=RUN_COLUMNS + ["model_params", "train_config", "twin_options"])
