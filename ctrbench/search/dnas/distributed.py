"""DistDNAS (specs/search.md §6, §9.8): one DNAS search per training day of a twin with days, run in parallel as
Ray tasks, the days' architecture logits aggregated (aggregate.py: mean of probabilities, mean of logits or
majority vote) and discretised to one point; the same search on the chosen days pooled is the sequential baseline.

Ray: a local Ray with `workers` CPUs by default; `address` joins a running cluster (its nodes need ctrbench and
the data root: a twin is rebuilt deterministically where it is missing). One task per day, one CPU each; a task
that raises, or whose worker process dies (a SIGKILL, an OOM kill), is retried up to `retries` times by Ray.

The store: the driver writes every finished day as an evaluation (kind "dnas_day", candidate_index = the day)
of one store search whose id hashes everything but the day list, so a rerun, or a search over other days with the
same settings, skips the days already searched; a day that failed every try is stored "failed" and tried again
on the next run. The pooled search is its own store search (candidate 0, kind "dnas_pooled").
"""
from __future__ import annotations

import hashlib
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, field_validator

from ctrbench.errors import CtrbenchError
from ctrbench.runs.records import canonical_json, dataset_identity
from ctrbench.runs.store import RunStore, utc_now
from ctrbench.search.dnas.aggregate import RULES, Rule, aggregate, argmax_choice
from ctrbench.search.dnas.search import DNASConfig

DONE_STATUSES = ("ok", "nan")  # a day that ended so is not searched again (a NaN search is deterministic)


class DistDNASError(CtrbenchError):
    """DistDNAS could not produce an architecture (every try of some day failed, or no day ended ok)."""


class DayData(BaseModel):
    """Which twin, which days, and how much of each day a search sees."""

    model_config = ConfigDict(extra="forbid")
    dataset: str = "criteo_terabyte"
    source: str = "synthetic"
    rows: PositiveInt | None = Field(None, description="twin rows (None: the dataset's default)")
    data_seed: int = 0
    days: list[int] = Field(min_length=1, description="the training days searched")
    day_rows: PositiveInt | None = Field(None, description="the first rows of each day a search sees (None: all)")
    valid_fraction: float = Field(0.2, gt=0, lt=1, description="the end of each day's rows: architecture steps")

    @field_validator("days")
    @classmethod
    def _distinct(cls, v):
        if len(set(v)) != len(v) or min(v) < 0:
            raise ValueError(f"days must be distinct and >= 0, got {v}")
        return v


class DistDNASConfig(BaseModel):
    """One DistDNAS search: the data, the space's options, the per-day DNAS config and the aggregation rule."""

    model_config = ConfigDict(extra="forbid")
    data: DayData
    space: dict = Field(default_factory=dict, description="options of the distdnas space")
    dnas: DNASConfig = Field(default_factory=DNASConfig, description="each day's search")
    rule: Rule = "mean_probabilities"
    threads: PositiveInt = Field(1, description="torch threads per day task")

    def day_identity(self) -> dict:
        """What a day's result depends on (not the day list, not the rule): the store search's identity."""
        d = self.data
        return {"kind": "distdnas_day", "dataset": dataset_identity(d.dataset, d.source, d.rows, d.data_seed, {}, {}),
                "day_rows": d.day_rows, "valid_fraction": d.valid_fraction, "space": self.space,
                "dnas": self.dnas.model_dump()}

    def pooled_identity(self) -> dict:
        return {**self.day_identity(), "kind": "distdnas_pooled", "days": sorted(self.data.days),
                "dnas": self.pooled_dnas().model_dump()}

    def pooled_dnas(self) -> DNASConfig:
        """The sequential baseline's config: the same samples as all day searches together (steps x days)."""
        n = len(self.data.days)
        return self.dnas.model_copy(update={"steps": self.dnas.steps * n, "warmup_steps": self.dnas.warmup_steps * n})


def search_id(identity: dict) -> str:
    return "dd" + hashlib.sha256(canonical_json(identity).encode()).hexdigest()[:14]


# --- one search (a Ray task's body, or the pooled baseline in this process) ---------------------------------------
def search_days(job: dict) -> dict:
    """Search the days `job["days"]` (one for a day task, all for the pooled baseline); a JSON-able result.
    job: {"data": DayData fields, "space": options, "dnas": DNASConfig fields, "threads", "data_root"}."""
    from ctrbench.data.api import open_dataset
    from ctrbench.search.dnas.days import DaySlice
    from ctrbench.search.dnas.search import run_dnas
    from ctrbench.search.registry import get_space

    started = time.perf_counter()
    torch.set_num_threads(job.get("threads", 1))
    d = DayData(**job["data"])
    cache = open_dataset(d.dataset, d.source, rows=d.rows, seed=d.data_seed, data_root=job.get("data_root"))
    view = DaySlice(cache, d.days, d.day_rows, d.valid_fraction)
    res = run_dnas(view, get_space("distdnas", **job["space"]), DNASConfig(**job["dnas"]))
    return {"status": res.status, "error": res.error, "arch_logits": res.arch_logits, "point": res.point,
            "expected_flops": res.expected_flops, "history": res.history, "search_seconds": res.seconds,
            "task_seconds": time.perf_counter() - started, "train_rows": view.split("train").rows,
            "valid_rows": view.split("valid").rows, "pid": os.getpid(), "host": socket.gethostname()}


def job_of(cfg: DistDNASConfig, days: list[int], dnas: DNASConfig, data_root) -> dict:
    return {"data": {**cfg.data.model_dump(), "days": list(days)}, "space": cfg.space, "dnas": dnas.model_dump(),
            "threads": cfg.threads, "data_root": None if data_root is None else str(data_root)}


# --- the per-day searches on Ray ----------------------------------------------------------------------------------
@dataclass
class DayRun:
    """The per-day phase: every chosen day's stored result, and what this call ran and measured."""

    search_id: str
    results: dict[int, dict]  # day -> stored evaluation (status, metrics: the search_days result)
    ran: list[int] = field(default_factory=list)  # days searched by this call (the others came from the store)
    wall_seconds: float = 0.0  # first submit to last result, this call
    ray_init_seconds: float = 0.0


@dataclass
class Ray:
    """A Ray session: local with `workers` CPUs, or joined at `address`; shut down on close if started here."""

    workers: int | None = None
    address: str | None = None
    init_seconds: float = 0.0
    own: bool = False

    def __enter__(self):
        import ray

        t0 = time.perf_counter()
        os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")  # CPU tasks: leave device env vars alone
        if not ray.is_initialized():
            kw = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
            ray.init(address=self.address, **kw) if self.address else ray.init(num_cpus=self.workers or 2, **kw)
            self.own = True
        self.init_seconds = time.perf_counter() - t0
        return self

    def __exit__(self, *exc):
        import ray

        if self.own:
            ray.shutdown()


def run_days(cfg: DistDNASConfig, store: RunStore, *, ray_session: Ray, retries: int = 2, data_root=None,
             day_task: Callable[[dict], dict] = search_days, force: bool = False) -> DayRun:
    """Search every chosen day not finished in the store, as Ray tasks (retried `retries` times each); store each
    result as it arrives. DistDNASError after the others are stored when some day failed every try."""
    import ray

    from ctrbench.data.api import open_dataset

    d = cfg.data  # built here (once) if missing, so that no two workers build the same twin
    open_dataset(d.dataset, d.source, rows=d.rows, seed=d.data_seed, data_root=data_root)
    sid = search_id(cfg.day_identity())
    store.put_search(sid, suite="distdnas", entry="days", searcher="distdnas", dataset=cfg.data.dataset,
                     seed=cfg.dnas.seed, status="running", config=cfg.day_identity())
    if force:
        store.clear_search(sid)
    stored = {e["candidate_index"]: e for e in store.evaluations(search_id=sid)}
    todo = [d for d in cfg.data.days if stored.get(d, {}).get("status") not in DONE_STATUSES]
    remote = ray.remote(num_cpus=cfg.threads, max_retries=retries, retry_exceptions=True)(day_task)
    t0 = time.perf_counter()
    pending = {remote.remote(job_of(cfg, [d], cfg.dnas, data_root)): d for d in todo}
    started = {d: utc_now() for d in todo}
    failed = []
    try:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                d = pending.pop(ref)
                try:
                    res = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - every try failed (an exception or a dead worker)
                    cause = getattr(exc, "cause", None) or exc  # a RayTaskError carries the task's own exception
                    res = {"status": "failed", "error": f"{type(cause).__name__}: {cause}"[-3000:]}
                    failed.append(d)
                point = res.get("point")
                store.put_evaluation(sid, d, kind="dnas_day", status=res["status"], point=point, metrics=res,
                                     value=(res.get("history") or [{}])[-1].get("valid_loss"),
                                     cost_seconds=res.get("task_seconds"), started_at=started[d],
                                     finished_at=utc_now())
    except (KeyboardInterrupt, SystemExit):
        for ref in pending:
            ray.cancel(ref, force=True)
        raise
    wall = time.perf_counter() - t0
    results = {e["candidate_index"]: e for e in store.evaluations(search_id=sid)}
    if failed:
        store.put_search(sid, status="failed")
        raise DistDNASError(f"DistDNAS day search(es) {failed} failed after {retries} retries each (first error: "
                            f"{results[failed[0]]['metrics']['error'].splitlines()[0]}); the finished days are stored "
                            f"in {store.path}: run again to resume")
    store.put_search(sid, status="ok", candidates=len(results), finished_at=utc_now())
    return DayRun(sid, {d: results[d] for d in cfg.data.days}, todo, wall, ray_session.init_seconds)


def run_pooled(cfg: DistDNASConfig, store: RunStore, *, data_root=None, force: bool = False) -> dict:
    """The sequential baseline: one search over all the chosen days' rows in this process (stored; a finished
    one is read back)."""
    sid = search_id(cfg.pooled_identity())
    stored = {} if force else {e["candidate_index"]: e for e in store.evaluations(search_id=sid)}
    if stored.get(0, {}).get("status") in DONE_STATUSES:
        return stored[0]
    store.put_search(sid, suite="distdnas", entry="pooled", searcher="distdnas_pooled", dataset=cfg.data.dataset,
                     seed=cfg.dnas.seed, status="running", config=cfg.pooled_identity())
    begun = utc_now()
    res = search_days(job_of(cfg, sorted(cfg.data.days), cfg.pooled_dnas(), data_root))
    store.put_evaluation(sid, 0, kind="dnas_pooled", status=res["status"], point=res["point"], metrics=res,
                         cost_seconds=res["task_seconds"], started_at=begun, finished_at=utc_now())
    store.put_search(sid, status=res["status"], candidates=1, finished_at=utc_now())
    return store.evaluations(search_id=sid)[0]


# --- aggregation ----------------------------------------------------------------------------------------------------
def aggregated_points(space, day_results: dict[int, dict], rules=tuple(RULES)) -> dict[str, dict]:
    """rule -> {"point", "scores"} from the days that ended ok (a NaN day is left out); DistDNASError if none."""
    ok = {d: r for d, r in day_results.items() if r["status"] == "ok"}
    if not ok:
        raise DistDNASError(f"no day search ended ok (statuses: { {d: r['status'] for d, r in day_results.items()} })")
    logits = [{k: np.asarray(v) for k, v in r["metrics"]["arch_logits"].items()} for r in ok.values()]
    out = {}
    for rule in rules:
        scores = aggregate(logits, rule)
        out[rule] = {"point": space.point_of(argmax_choice(scores)), "scores": {k: v.tolist() for k, v in scores.items()},
                     "days": sorted(ok)}
    return out


def projected_seconds(task_seconds: list[float], workers: int, overhead: float = 0.0) -> float:
    """The model of the search's wall time on `workers` workers: the measured task times scheduled longest
    first, each on the worker that frees first (LPT list scheduling), plus a fixed overhead (Ray start,
    aggregation); with workers >= tasks it is the longest task + overhead."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    free = [0.0] * min(workers, max(len(task_seconds), 1))
    for t in sorted(task_seconds, reverse=True):
        i = int(np.argmin(free))
        free[i] += t
    return max(free) + overhead
