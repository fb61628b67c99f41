"""The performance dataset: every measured run of any run store, as features (system knobs, model-size knobs,
the model and the dataset's shape) and targets (train samples/s, step time, peak memory), in a long-format,
versioned schema: one row per (run, field) with the field's kind, so new features are new rows, not a new file
layout. `wide` <-> `long` round-trip exactly. The features are ctrbench's choice (specs/search.md §9.11)."""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ctrbench.errors import CtrbenchError
from ctrbench.runs.records import RunRecord, canonical_json

SCHEMA_VERSION = 1


class PerfDataError(CtrbenchError):
    """A performance dataset that is not what this schema reads (wrong version, unknown field, bad value)."""


@dataclass(frozen=True)
class Field:
    name: str
    kind: str  # "meta" | "cat" | "num" | "target"
    meaning: str


FIELDS = (
    Field("run_id", "meta", "the run's config hash (the store's key)"),
    Field("noise_group", "meta", "hash of the config without system.repeat: rows sharing it are repeated measurements"),
    Field("repeat", "meta", "system.repeat of the run (0 = the first measurement)"),
    Field("loaded", "meta", "1 when other processes used the CPUs during the timing (protocol's load probe)"),
    Field("converged", "meta", "1 when the timing reached its precision (0: capped; missing: fixed-step timing)"),
    Field("suite", "meta", "the suite that ran it"),
    Field("git_rev", "meta", "ctrbench's revision"),
    Field("host", "meta", "the machine"),
    Field("model", "cat", "registered model name"),
    Field("dataset", "cat", "dataset (its twin when synthetic)"),
    Field("device", "cat", "cpu or cuda:N"),
    Field("cpu", "cat", "CPU model name"),
    Field("embedding_backend", "cat", "the lookup op: torch or fused (params.embedding_backend)"),
    Field("kernel_backend", "cat", "the backend the embedding op ran on (record.backend): torch, cpp, reference, ..."),
    Field("embedding_gradients", "cat", "dense, sparse, fused_sgd or fused_rowwise_adagrad"),
    Field("optimizer", "cat", "the dense optimizer"),
    Field("dtype", "cat", "float32 or bf16-autocast"),
    Field("threads", "num", "intra-op threads per process"),
    Field("batch_size", "num", "global batch size"),
    Field("world_size", "num", "data-parallel processes"),
    Field("prefetch", "num", "batches built ahead by the loader"),
    Field("cores", "num", "usable CPU cores of the machine"),
    Field("embedding_dim", "num", "params.embedding_dim"),
    Field("mlp_units_total", "num", "sum of every *units list param (all MLP widths)"),
    Field("mlp_max_width", "num", "the widest layer of the *units list params"),
    Field("mlp_layers", "num", "layers in the *units list params"),
    Field("params", "num", "trainable parameters"),
    Field("params_embedding", "num", "parameters in lookup tables"),
    Field("flops_train_per_sample", "num", "training FLOPs per sample (ctrbench.flops rules)"),
    Field("n_categorical", "num", "categorical fields of the dataset"),
    Field("n_numeric", "num", "numeric fields"),
    Field("n_sequences", "num", "sequence fields"),
    Field("vocab_total", "num", "sum of the vocabulary sizes"),
    Field("train_samples_per_s", "target", "global batch / median training-step time"),
    Field("step_time_p50_ms", "target", "median training-step time"),
    Field("peak_memory_mb", "target", "peak memory (RSS high-water mark on the CPU, allocated on CUDA)"),
    Field("step_time_cv", "target", "coefficient of variation of the timed steps"),
)
BY_NAME = {f.name: f for f in FIELDS}
TARGETS = [f.name for f in FIELDS if f.kind == "target"]
CAT_FEATURES = [f.name for f in FIELDS if f.kind == "cat"]
NUM_FEATURES = [f.name for f in FIELDS if f.kind == "num"]
LONG_COLUMNS = ["schema_version", "run_id", "kind", "name", "value"]


def _units(params: dict) -> list[int]:
    out: list[int] = []
    for k, v in params.items():
        if k.endswith("units") and isinstance(v, list) and all(isinstance(x, int) for x in v):
            out += v
    return out


def _gradients(train: dict) -> str:
    if train.get("fused_embedding_optimizer"):
        return f"fused_{train['fused_embedding_optimizer']}"
    return "sparse" if train.get("sparse_embeddings") else "dense"


def noise_group(rec: RunRecord) -> str:
    """The hash of the run's identity without system.repeat and the entry name (a grid over system.repeat names
    each point apart): the same config measured again shares it."""
    ident = rec.spec.identity()
    ident.pop("entry")
    ident["system"] = {k: v for k, v in ident["system"].items() if k != "repeat"}
    return hashlib.sha256(canonical_json(ident).encode()).hexdigest()[:16]


def record_row(rec: RunRecord) -> dict | None:
    """The wide row of one record, or None when it has no measured training throughput."""
    if rec.status != "ok" or not rec.train_samples_per_s:
        return None
    cfg = rec.config
    params, train, system = cfg.get("params", {}), cfg.get("train", {}), cfg.get("system", {})
    cost, shape, env = rec.extra.get("cost", {}), rec.extra.get("dataset", {}), rec.environment
    units = _units(params)
    row = {
        "run_id": rec.config_hash, "noise_group": noise_group(rec), "repeat": int(system.get("repeat", 0)),
        "loaded": None if cost.get("loaded") is None else int(bool(cost["loaded"])),
        "converged": None if "timing_converged" not in cost or system.get("measure_precision") is None
        else int(bool(cost["timing_converged"])),
        "suite": rec.suite, "git_rev": rec.git_rev, "host": rec.host,
        "model": rec.model, "dataset": rec.dataset, "device": rec.device, "cpu": env.get("cpu"),
        "embedding_backend": params.get("embedding_backend"),
        "kernel_backend": rec.backend.get("embedding_bag_collection"),
        "embedding_gradients": _gradients(train), "optimizer": train.get("optimizer"), "dtype": rec.dtype,
        "threads": rec.threads, "batch_size": rec.batch_size, "world_size": rec.world_size,
        "prefetch": int(system.get("prefetch", 0)), "cores": env.get("cores"),
        "embedding_dim": params.get("embedding_dim"), "mlp_units_total": sum(units),
        "mlp_max_width": max(units, default=0), "mlp_layers": len(units),
        "params": rec.params, "params_embedding": cost.get("params_embedding"),
        "flops_train_per_sample": rec.flops_train_per_sample,
        **{k: shape.get(k) for k in ("n_categorical", "n_numeric", "n_sequences", "vocab_total")},
        "train_samples_per_s": rec.train_samples_per_s, "step_time_p50_ms": rec.step_time_p50_ms,
        "peak_memory_mb": rec.peak_memory_mb, "step_time_cv": cost.get("step_time_cv"),
    }
    return row


def wide_frame(records: list[RunRecord]) -> pd.DataFrame:
    """One row per measured run, one column per schema field (numbers float, categories and meta strings)."""
    rows = [r for r in (record_row(rec) for rec in records) if r is not None]
    return _typed(pd.DataFrame(rows, columns=[f.name for f in FIELDS]))


def _typed(df: pd.DataFrame) -> pd.DataFrame:
    for f in FIELDS:
        if f.kind in ("num", "target") or f.name in ("repeat", "loaded", "converged"):
            df[f.name] = pd.to_numeric(df[f.name], errors="raise").astype("float64")
        else:
            df[f.name] = df[f.name].astype("object").where(df[f.name].notna(), None)
    return df.reset_index(drop=True)


def to_long(wide: pd.DataFrame) -> pd.DataFrame:
    """The long format: one row per (run, field) with a value (missing values are left out)."""
    parts = []
    for f in FIELDS:
        if f.name == "run_id":
            continue
        col = wide[f.name]
        keep = col.notna()
        values = col[keep].map(lambda v: repr(float(v)) if isinstance(v, (float, np.floating)) else str(v))
        parts.append(pd.DataFrame({"schema_version": SCHEMA_VERSION, "run_id": wide.loc[keep, "run_id"],
                                   "kind": f.kind, "name": f.name, "value": values}))
    return pd.concat(parts, ignore_index=True)[LONG_COLUMNS] if parts else pd.DataFrame(columns=LONG_COLUMNS)


def from_long(long: pd.DataFrame) -> pd.DataFrame:
    """The wide frame of a long-format dataset; another schema version or an unknown field is a PerfDataError."""
    missing = [c for c in LONG_COLUMNS if c not in long.columns]
    if missing:
        raise PerfDataError(f"not a ctrbench performance dataset: columns {missing} missing")
    versions = set(long["schema_version"].astype(int))
    if versions - {SCHEMA_VERSION}:
        raise PerfDataError(f"schema version(s) {sorted(versions)}; this ctrbench reads version {SCHEMA_VERSION}")
    unknown = sorted(set(long["name"]) - set(BY_NAME))
    if unknown:
        raise PerfDataError(f"unknown field(s) {unknown} (schema version {SCHEMA_VERSION})")
    for i, (name, kind) in enumerate(zip(long["name"], long["kind"])):
        if BY_NAME[name].kind != kind:
            raise PerfDataError(f"row {i}: field {name!r} has kind {kind!r}; the schema says {BY_NAME[name].kind!r}")
    wide = long.pivot(index="run_id", columns="name", values="value")
    order = list(dict.fromkeys(long["run_id"]))
    wide = wide.reindex(order).reset_index()
    wide.columns.name = None
    for f in FIELDS:
        if f.name not in wide.columns:
            wide[f.name] = None
    return _typed(wide[[f.name for f in FIELDS]])


def schema() -> dict:
    return {"schema_version": SCHEMA_VERSION, "format": "long: one row per (run_id, field); value as text",
            "fields": [{"name": f.name, "kind": f.kind, "meaning": f.meaning} for f in FIELDS]}


def export(stores: list[str | os.PathLike], out_dir: str | os.PathLike) -> pd.DataFrame:
    """Write `perf_long.csv` and `schema.json` to out_dir from the measured runs of every store; returns the wide
    frame (also `perf_wide.csv`, for reading by eye)."""
    from ctrbench.runs.query import load_runs

    records = [r for s in stores for r in load_runs(s)]
    wide = wide_frame(records)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    to_long(wide).to_csv(out / "perf_long.csv", index=False)
    wide.to_csv(out / "perf_wide.csv", index=False)
    (out / "schema.json").write_text(json.dumps(schema(), indent=1) + "\n")
    return wide


def read(path: str | os.PathLike) -> pd.DataFrame:
    """The wide frame of an exported dataset (its perf_long.csv, or the folder holding it)."""
    p = Path(path)
    p = p / "perf_long.csv" if p.is_dir() else p
    if not p.exists():
        raise PerfDataError(f"no performance dataset at {p} (write one with `ctrbench cubicml export`)")
    return from_long(pd.read_csv(p, dtype={"value": str, "run_id": str, "name": str, "kind": str}))


def noise_floor(wide: pd.DataFrame, target: str = "train_samples_per_s") -> dict:
    """What repeated measurements say about the target's noise: the median relative difference between repeats
    of one config (the MAPE a perfect model would still show) and Spearman / Kendall between first and second
    measurements (the rank agreement ceiling)."""
    from scipy import stats

    pairs = []
    for _, g in wide.groupby("noise_group"):
        g = g.sort_values("repeat")
        if len(g) >= 2:
            pairs.append((float(g[target].iloc[0]), float(g[target].iloc[1])))
    if not pairs:
        return {"pairs": 0}
    a, b = np.array(pairs).T
    rel = np.abs(a - b) / ((a + b) / 2)
    out = {"pairs": len(pairs), "median_rel_diff": float(np.median(rel)), "mape_between_repeats": float(rel.mean())}
    if len(pairs) >= 3:
        out["spearman"] = float(stats.spearmanr(a, b).statistic)
        out["kendall"] = float(stats.kendalltau(a, b).statistic)
    return out
