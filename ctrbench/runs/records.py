"""RunSpec (what to run) and RunRecord (what came out), shared by the harness, searches and the performance model.

A run's identity is the hash of its canonical config (entry, model, params, train config, dataset +
source + rows + data seed + a twin's generator version and options or a real dataset's prepared cache, seed,
system knobs, search link) — never
the suite name, so a suite can be renamed or re-run and still find its finished runs. RunRecord is the run
store's row and CubicML's training data (docs/design.md "The run record"): keep it stable; add fields, never rename.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

STATUSES = ("running", "ok", "failed", "nan", "interrupted")
DONE = ("ok", "nan")  # finished runs a resumed suite skips (a NaN is a result, not a crash)
QUALITY = ("auc", "gauc", "logloss", "ne", "calibration")  # test-split metrics kept as columns
COST = ("params", "flops_fwd_per_sample", "flops_train_per_sample", "train_samples_per_s", "infer_samples_per_s",
        "step_time_p50_ms", "step_time_p90_ms", "peak_memory_mb")  # measured cost columns


def canonical_json(obj: Any) -> str:
    """Deterministic JSON (sorted keys, no spaces) used for hashing and storing configs."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def dataset_identity(name: str, source: str, rows: int | None, data_seed: int, twin: dict | None,
                     cache: dict | None = None) -> dict:
    """The dataset part of a run's or a search's identity. A twin's generator version is in it, and a real
    dataset's prepared cache (`cache_identity`), so a suite rerun after the generator changed or the data was
    prepared again runs again instead of resuming results of other data as finished; the twin options only
    when set."""
    d = {"name": name, "source": source, "rows": rows, "data_seed": data_seed}
    if source == "synthetic":
        from ctrbench.data.synthetic import GENERATOR_VERSION

        d["generator"] = GENERATOR_VERSION
    if source == "real" and cache:
        d["cache"] = cache
    return d | ({"twin": twin} if twin else {})


def cache_identity(manifest: dict) -> dict:
    """What identifies a prepared real-data cache, from its manifest: the reading protocol, each source file's
    md5 (its size where prepared without checksums), the rows per split, how bad rows were handled and a digest
    of all that with the vocabulary sizes and the cache format."""
    files = (manifest.get("source") or {}).get("files") or {}
    ident = {
        "protocol": manifest.get("protocol"),
        "files": {name: f.get("md5") or f"size {f.get('size')}" for name, f in sorted(files.items())},
        "rows": {split: info.get("rows") for split, info in sorted((manifest.get("splits") or {}).items())},
        "on_bad_rows": manifest.get("on_bad_rows"),
    }
    digest_of = {**ident, "vocab_sizes": manifest.get("vocab_sizes"), "format": manifest.get("format_version"),
                 "bad_rows_skipped": manifest.get("bad_rows_skipped")}
    return ident | {"digest": hashlib.sha256(canonical_json(digest_of).encode()).hexdigest()[:16]}


@dataclass(frozen=True)
class RunSpec:
    """One run to execute: a model with its params and train config, on one dataset, with one seed."""

    suite: str
    entry: str
    model: str
    params: dict
    train: dict  # resolved TrainConfig fields (incl. seed, batch_size, threads)
    dataset: str
    source: str = "synthetic"
    rows: int | None = None  # twin size / row cap of the dataset (None = the dataset's default)
    data_seed: int = 0  # seed of the twin's generator: the same data for every model seed
    seed: int = 0
    system: dict = field(default_factory=dict)  # system knobs not in train (e.g. device)
    kind: str = "model"  # "model" or "candidate" (a searcher's proposal)
    search_id: str | None = None
    candidate_index: int | None = None
    twin: dict = field(default_factory=dict)  # the twin's generator options (suite `twin:`); {} = the defaults
    cache: dict = field(default_factory=dict)  # source real: the prepared cache's cache_identity (Suite.with_caches)

    def identity(self) -> dict:
        """The canonical config whose hash identifies the run (no suite name)."""
        dataset = dataset_identity(self.dataset, self.source, self.rows, self.data_seed, self.twin, self.cache)
        ident = {
            "entry": self.entry,
            "model": self.model,
            "params": self.params,
            "train": self.train,
            "dataset": dataset,
            "seed": self.seed,
            "system": self.system,
        }
        if self.search_id is not None:
            ident["search"] = {"id": self.search_id, "candidate": self.candidate_index}
        return ident

    @property
    def config_hash(self) -> str:
        return hashlib.sha256(canonical_json(self.identity()).encode()).hexdigest()[:16]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "RunSpec":
        return cls(**d)

    @property
    def label(self) -> str:
        cand = f"#{self.candidate_index}" if self.candidate_index is not None else ""
        return f"{self.dataset}/{self.entry}{cand}/seed{self.seed}"


@dataclass
class RunRecord:
    """Everything one run produced. Scalar fields are store columns; dicts and lists live in the JSON blob."""

    # identity
    config_hash: str
    run_id: str = ""  # config hash + attempt number (a --force re-run is a new attempt)
    attempt: int = 1
    suite: str = ""
    entry: str = ""
    kind: str = "model"
    model: str = ""
    seed: int = 0
    search_id: str | None = None
    candidate_index: int | None = None
    config: dict = field(default_factory=dict)  # the full RunSpec
    # dataset
    dataset: str = ""
    source: str = ""
    rows: int | None = None
    data_seed: int = 0
    train_rows: int | None = None
    # status
    status: str = "running"
    error: str | None = None
    # quality (test split at the best checkpoint) and the twin oracle's values on the same rows
    auc: float | None = None
    gauc: float | None = None
    logloss: float | None = None
    ne: float | None = None
    calibration: float | None = None
    oracle_auc: float | None = None
    oracle_gauc: float | None = None
    oracle_logloss: float | None = None
    oracle_ne: float | None = None
    valid_auc: float | None = None
    valid: dict = field(default_factory=dict)
    test: dict = field(default_factory=dict)
    oracle_test: dict = field(default_factory=dict)
    components: dict = field(default_factory=dict)  # test metrics of the model's components (an ensemble's members)
    diagnostics: dict = field(default_factory=dict)  # test-split means of the model's diagnostics (fusion weights)
    # training
    epochs_run: int | None = None
    best_epoch: int | None = None
    nan_step: int | None = None
    train_seconds: float | None = None
    history: list = field(default_factory=list)
    # cost
    params: int | None = None
    flops_fwd_per_sample: float | None = None
    flops_train_per_sample: float | None = None
    train_samples_per_s: float | None = None
    infer_samples_per_s: float | None = None
    step_time_p50_ms: float | None = None
    step_time_p90_ms: float | None = None
    peak_memory_mb: float | None = None
    # system knobs
    batch_size: int | None = None
    threads: int | None = None
    world_size: int = 1
    device: str | None = None
    dtype: str | None = None
    backend: dict = field(default_factory=dict)  # op -> backend that ran it
    # environment and process
    environment: dict = field(default_factory=dict)
    git_rev: str | None = None
    host: str | None = None
    pid: int | None = None
    pid_start: int | None = None  # the process's start time (clock ticks), guards against pid reuse
    command: str | None = None
    # timestamps (UTC ISO-8601) and wall time of the whole run (data, fit, measurement)
    started_at: str | None = None
    finished_at: str | None = None
    wall_seconds: float | None = None
    extra: dict = field(default_factory=dict)  # fields written by a newer ctrbench, kept verbatim

    @classmethod
    def from_spec(cls, spec: RunSpec, **kw) -> "RunRecord":
        h = spec.config_hash
        return cls(
            config_hash=h, run_id=f"{h}-1", suite=spec.suite, entry=spec.entry, kind=spec.kind, model=spec.model,
            seed=spec.seed, search_id=spec.search_id, candidate_index=spec.candidate_index, config=spec.to_dict(),
            dataset=spec.dataset, source=spec.source, rows=spec.rows, data_seed=spec.data_seed,
            batch_size=spec.train.get("batch_size"), threads=spec.train.get("threads"), **kw,
        )

    @property
    def spec(self) -> RunSpec:
        return RunSpec.from_dict(self.config)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "RunRecord":
        known = {f.name for f in dataclasses.fields(cls)}
        extra = dict(d.get("extra") or {})
        extra.update({k: v for k, v in d.items() if k not in known})
        return cls(**{k: v for k, v in d.items() if k in known and k != "extra"}, extra=extra)


def scalar_columns() -> list[tuple[str, str]]:
    """(name, SQL type) of every scalar RunRecord field: the store's columns."""
    out = []
    for f in dataclasses.fields(RunRecord):
        t = f.type if isinstance(f.type, str) else str(f.type)
        base = t.split("|")[0].strip()
        sql = {"int": "INTEGER", "float": "REAL", "str": "TEXT"}.get(base)
        if sql:
            out.append((f.name, sql))
    return out
