"""Executors: run a suite's runs in-process (default), in a local process pool, or on Ray; resume-safe.

Every run goes through the store: claimed ("running", with the pid) before it starts, overwritten with
its result when it ends; finished runs (ok/nan) are skipped unless `force`. In the process pool each
worker claims and writes its own record; on Ray the driver claims and writes (workers may live on other
machines without the store's file system). SIGTERM and Ctrl-C mark the current run "interrupted";
a run whose process was killed outright is marked "interrupted" by the next start (`store.recover`).
Searcher entries run after the model runs: the searcher proposes candidates, the same executor trains the `train`
ones and the search's evaluator scores the others; the search's state and evaluations are kept in the store.
"""
from __future__ import annotations

import concurrent.futures as cf
import json
import multiprocessing as mp
import os
import signal
import socket
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

from ctrbench.errors import CtrbenchError
from ctrbench.harness import signals
from ctrbench.harness.execute import execute_run
from ctrbench.harness.suite import SearchSpec, Suite, search_evaluator
from ctrbench.runs.records import DONE, QUALITY, RunRecord, RunSpec, canonical_json
from ctrbench.runs.store import RunStore, utc_now
from ctrbench.search.base import Evaluation, run_search
from ctrbench.search.evaluators.base import dispatch
from ctrbench.search.journal import StoreJournal

EXECUTORS = ("local", "process", "ray")
TERM_GRACE_S = 5.0  # how long stopped pool workers get to mark their runs interrupted before SIGKILL


class HarnessError(CtrbenchError):
    """The harness could not carry on (a worker pool broke, Ray is missing, ...)."""


class Progress:
    """Progress hooks (no-ops); the CLI's rich progress bars subclass this."""

    def suite_start(self, total_runs: int) -> None: ...
    def run_start(self, spec: RunSpec) -> None: ...
    def run_end(self, spec: RunSpec, record: RunRecord, outcome: str) -> None: ...  # outcome: run|done|busy
    def fit_callbacks(self, spec: RunSpec) -> Any: return None


@contextmanager
def interrupt_marking(store: RunStore, config_hash: str):
    """While a run executes: SIGINT/SIGTERM raise Interrupted, and an interrupt marks the run interrupted."""
    try:
        with signals.interrupt_signals():
            yield
    except (KeyboardInterrupt, SystemExit) as exc:
        store.mark_interrupted(config_hash, f"{type(exc).__name__} {exc}".strip())
        raise


class _StopAtNextBatch:
    """Fit callbacks (wrapping the progress bars' own) that raise Interrupted at the next batch once an interrupt
    was requested: the signal handler's exception is lost when it runs inside a finalizer, and the run must then
    still stop and be marked interrupted, not train on to its end."""

    def __init__(self, inner=None):
        self.inner = inner

    def __getattr__(self, name):  # the other hooks are the inner callbacks' (none without them)
        return getattr(self.__dict__.get("inner"), name)

    def on_epoch_start(self, *args) -> None:
        signals.raise_if_requested()
        if hasattr(self.inner, "on_epoch_start"):
            self.inner.on_epoch_start(*args)

    def on_batch_end(self, *args) -> None:
        signals.raise_if_requested()
        if hasattr(self.inner, "on_batch_end"):
            self.inner.on_batch_end(*args)


def run_claimed(store: RunStore, spec: RunSpec, *, force: bool, data_root, command: str | None,
                progress: Progress | None = None) -> tuple[str, RunRecord]:
    """Claim `spec` in the store, execute it if ours, write the result. Returns (outcome, record). After an
    interrupt nothing new is claimed, and a run that did not finish is marked interrupted: a failure the
    interrupt caused (a worker half torn down) is never stored as a result."""
    signals.raise_if_requested()
    claim = store.claim(spec, force=force, command=command)
    if claim.outcome != "run":
        return claim.outcome, claim.record
    if progress:
        progress.run_start(spec)
    with interrupt_marking(store, spec.config_hash):
        callbacks = _StopAtNextBatch(progress.fit_callbacks(spec) if progress else None)
        rec = execute_run(spec, data_root=data_root, callbacks=callbacks, record=claim.record)
        if rec.status not in DONE:
            signals.raise_if_requested()
    with signals.deferred():  # an interrupt now acts once the finished run is stored
        store.finish(rec)
    return "run", rec


class LocalExecutor:
    """Runs one run after another in this process (with epoch/batch progress)."""

    def __init__(self, store: RunStore, *, force=False, data_root=None, command=None, progress=None, **_):
        self.store, self.force, self.data_root, self.command = store, force, data_root, command
        self.progress = progress or Progress()

    def run(self, specs: list[RunSpec]) -> list[RunRecord]:
        out = []
        for spec in specs:
            outcome, rec = run_claimed(self.store, spec, force=self.force, data_root=self.data_root,
                                       command=self.command, progress=self.progress)
            self.progress.run_end(spec, rec, outcome)
            out.append(rec)
        return out

    def close(self) -> None:
        pass


# --- process pool -----------------------------------------------------------------------------------
_WORKER_STORE: dict[str, RunStore] = {}


def _worker_init(threads: int, parent_pid: int) -> None:
    """A pool worker ignores Ctrl-C (the parent stops the pool), exits on SIGTERM (marking its run interrupted
    first, see run_claimed) and gets SIGTERM when the parent dies."""
    import torch

    torch.set_num_threads(threads)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _worker_exit)
    signals.die_with_parent(parent_pid)


def _worker_exit(signum, frame) -> None:
    """SIGTERM between runs: leave at once (nothing is running, nothing new may start)."""
    os._exit(128 + signum)


def _worker_run(spec_d: dict, store_path: str, force: bool, data_root, command) -> tuple[str, dict]:
    """Runs in a pool worker: claim, execute, and write the record itself. SIGTERM raises Interrupted from
    before the claim on, and an interrupt marks whatever run this process still has running (a signal between
    the claim's commit and the run's own marking included) and ends the worker, so it never takes another run
    (with whatever state the interrupt left, e.g. grad mode off)."""
    store = _WORKER_STORE.get(store_path)
    if store is None:
        store = _WORKER_STORE[store_path] = RunStore(store_path)
    try:
        with signals.interrupt_signals():
            outcome, rec = run_claimed(store, RunSpec.from_dict(spec_d), force=force, data_root=data_root,
                                       command=command)
    except KeyboardInterrupt as exc:
        signum = getattr(exc, "signum", signal.SIGTERM)
        try:
            with signals.ignored(signal.SIGTERM):  # the marking is not cut short by a second SIGTERM
                store.mark_interrupted_of_process(os.getpid(), f"{type(exc).__name__} {exc}".strip())
        except Exception as err:  # noqa: BLE001 - the worker leaves all the same; the next start recovers the run
            print(f"pool worker {os.getpid()}: could not mark its run interrupted ({err}); the next start of the "
                  "suite marks it (store.recover)", file=sys.stderr, flush=True)
        os._exit(128 + signum)
    return outcome, rec.to_dict()


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


WAKE_S = 0.5  # the longest the main thread sleeps while waiting on the pool


def _as_completed_waking(futs) -> Iterator[cf.Future]:
    """`cf.as_completed` in steps of at most WAKE_S: a signal the kernel hands to another thread (the pool's
    manager or feeder, rich's refresh) only sets CPython's flag, and a main thread blocked in an untimed wait
    would run the handler (Ctrl-C's Interrupted) only when the next run finishes. Seen in make test: the parent
    sat in as_completed for 15 s after the Ctrl-C."""
    pending = set(futs)
    while pending:
        done, pending = cf.wait(pending, timeout=WAKE_S, return_when=cf.FIRST_COMPLETED)
        yield from done


class ProcessExecutor:
    """A local pool of `workers` processes (spawned); each worker writes its own record to the store.
    Runs without a `threads` setting get cores // workers intra-op threads each."""

    def __init__(self, store: RunStore, *, workers=None, force=False, data_root=None, command=None, progress=None, **_):
        self.store, self.force, self.data_root, self.command = store, force, data_root, command
        self.progress = progress or Progress()
        self.workers = workers or usable_cores()
        threads = max(1, usable_cores() // self.workers)
        self.pool = cf.ProcessPoolExecutor(self.workers, mp_context=mp.get_context("spawn"),
                                           initializer=_worker_init, initargs=(threads, os.getpid()))

    def run(self, specs: list[RunSpec]) -> list[RunRecord]:
        out: list[RunRecord | None] = [None] * len(specs)
        try:
            with signals.ignored(signal.SIGINT):  # workers spawn on submit: they start with Ctrl-C ignored
                futs = {self.pool.submit(_worker_run, s.to_dict(), str(self.store.path), self.force, self.data_root,
                                         self.command): i for i, s in enumerate(specs)}
            for fut in _as_completed_waking(futs):
                i = futs[fut]
                try:
                    outcome, d = fut.result()
                except cf.process.BrokenProcessPool as exc:
                    dead = self.store.recover()
                    raise HarnessError(f"a worker process died ({exc}); {len(dead)} run(s) marked interrupted — "
                                       "run the suite again to resume") from None
                out[i] = RunRecord.from_dict(d)
                self.progress.run_end(specs[i], out[i], outcome)
        except BaseException:
            with signals.ignored(signal.SIGINT, signal.SIGTERM):  # a second Ctrl-C does not cut the clean-up
                self._terminate()
            raise
        return out  # type: ignore[return-value]

    def _terminate(self) -> None:
        """Cancel the queued runs, stop the workers with SIGTERM (each marks its run interrupted and exits),
        SIGKILL any still alive after TERM_GRACE_S, and mark the runs of killed workers interrupted."""
        procs = list((getattr(self.pool, "_processes", None) or {}).values())
        self.pool.shutdown(wait=False, cancel_futures=True)
        for p in procs:
            if p.is_alive():
                p.terminate()
        deadline = time.monotonic() + TERM_GRACE_S
        for p in procs:
            p.join(timeout=max(0.0, deadline - time.monotonic()))
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join(timeout=5)
        self.store.recover()

    def close(self) -> None:
        self.pool.shutdown(wait=True)


# --- Ray --------------------------------------------------------------------------------------------
def _ray_execute(spec_d: dict, claim_d: dict, data_root, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    rec = execute_run(RunSpec.from_dict(spec_d), data_root=data_root, record=RunRecord.from_dict(claim_d))
    rec.extra["worker_pid"] = os.getpid()
    rec.extra["worker_host"] = socket.gethostname()
    return rec.to_dict()


class RayExecutor:
    """Ray tasks (one CPU each by default); the driver claims each run and writes its record.
    `address` None starts a local Ray with `workers` CPUs; otherwise it joins that cluster."""

    def __init__(self, store: RunStore, *, workers=None, address=None, force=False, data_root=None, command=None,
                 progress=None, cpus_per_run: int = 1, **_):
        try:
            import ray
        except ImportError:
            raise HarnessError("the Ray executor needs ray: pip install 'ctrbench[ray]'") from None
        self.ray = ray
        self.store, self.force, self.data_root, self.command = store, force, data_root, command
        self.progress = progress or Progress()
        self.cpus_per_run = cpus_per_run
        os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")  # CPU tasks: leave device env vars alone
        self._own = not ray.is_initialized()
        if self._own:
            kw: dict = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
            if address:
                ray.init(address=address, **kw)
            else:
                ray.init(num_cpus=workers or usable_cores(), **kw)
        self._remote = ray.remote(num_cpus=cpus_per_run)(_ray_execute)

    def run(self, specs: list[RunSpec]) -> list[RunRecord]:
        ray = self.ray
        out: list[RunRecord | None] = [None] * len(specs)
        pending: dict = {}
        claims: dict[int, RunRecord] = {}
        try:
            for i, spec in enumerate(specs):
                claim = self.store.claim(spec, force=self.force, command=self.command)
                if claim.outcome != "run":
                    out[i] = claim.record
                    self.progress.run_end(spec, claim.record, claim.outcome)
                    continue
                claims[i] = claim.record
                self.progress.run_start(spec)
                ref = self._remote.remote(spec.to_dict(), claim.record.to_dict(), self.data_root, self.cpus_per_run)
                pending[ref] = i
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    i = pending.pop(ref)
                    try:  # the record the worker filled in is the driver's claim (its pid, attempt, command)
                        rec = RunRecord.from_dict(ray.get(ref))
                    except Exception as exc:  # noqa: BLE001 - the worker itself died
                        rec = claims[i]
                        rec.status, rec.error, rec.finished_at = "failed", f"ray task failed: {exc}", utc_now()
                    self.store.finish(rec)
                    out[i] = rec
                    self.progress.run_end(specs[i], rec, "run")
        except (KeyboardInterrupt, SystemExit):
            for ref, i in pending.items():
                ray.cancel(ref, force=True)
                self.store.mark_interrupted(specs[i].config_hash, "driver interrupted")
            raise
        return out  # type: ignore[return-value]

    def close(self) -> None:
        if self._own:
            self.ray.shutdown()


def make_executor(kind: str, store: RunStore, **kw):
    if kind == "local":
        return LocalExecutor(store, **kw)
    if kind == "process":
        return ProcessExecutor(store, **kw)
    if kind == "ray":
        return RayExecutor(store, **kw)
    raise HarnessError(f"unknown executor {kind!r}; valid: {', '.join(EXECUTORS)}")


# --- suites -----------------------------------------------------------------------------------------
@dataclass
class SuiteResult:
    records: list[RunRecord]  # every run of the suite, candidates included, in suite order
    searches: list[dict] = field(default_factory=list)
    executed: int = 0
    skipped: int = 0  # finished before
    recovered: list[str] = field(default_factory=list)
    busy: int = 0  # claimed by another live process: not run here, not finished either


def train_evaluation(candidate, record: RunRecord, metric: str) -> Evaluation:
    """A trained candidate's evaluation: its validation `metric` is the value; metrics hold every validation
    metric, the test metrics (test_*), flops (forward, per example) and params for cost terms."""
    metrics = {**(record.valid or {}), "flops": record.flops_fwd_per_sample, "params": record.params,
               **{f"test_{k}": getattr(record, k) for k in QUALITY}}
    return Evaluation(candidate, record.status, (record.valid or {}).get(metric), record,
                      {k: v for k, v in metrics.items() if v is not None}, record.wall_seconds)


def _run_search(suite: Suite, search: SearchSpec, ex, store: RunStore, reg, force: bool) -> tuple[dict, list, int]:
    """Run one search from its journal in the store (a killed search resumes with the proposals it would have
    made; a finished one proposes nothing more): `train` candidates run on the executor as linked runs, other
    kinds go to their evaluator (ctrbench.search.evaluators). `force` starts the search again. Returns the
    summary, the candidates' run records and how many of those the journal held from before (skipped)."""
    scls = reg.searcher_class(search.searcher)
    searcher = scls(scls.Params(**search.options))
    metric = searcher.params.metric
    sid = search.search_id
    if force:
        store.clear_search(sid)
    if store.get_search(sid) is None:
        store.put_search(sid, started_at=utc_now())
    store.put_search(sid, suite=suite.name, entry=search.entry, searcher=search.searcher, dataset=search.dataset.name,
                     seed=search.seed, status="running", config=search.identity())

    trained_here = []

    def train(batch):
        trained_here.extend(batch)
        recs = ex.run([suite.candidate_spec(search, c.index, c.params, c.train) for c in batch])
        return [train_evaluation(c, r, metric) for c, r in zip(batch, recs)]

    evaluators = {"train": train}
    if searcher.params.evaluation != "train":
        evaluators[searcher.params.evaluation] = search_evaluator(searcher, suite.path)
    space = getattr(searcher, "space", None)
    journal = StoreJournal(store, sid, search.searcher, space.hash if space is not None else None)
    result = run_search(searcher, dispatch(evaluators), journal)
    best = result.best
    summary = dict(status="ok" if best else "failed", candidates=len(result.history), finished_at=utc_now(),
                   best_config_hash=getattr(best.record, "config_hash", None) if best else None,
                   best_value=best.value if best else None)
    store.put_search(sid, **summary)
    records = [e.record for e in result.history if isinstance(e.record, RunRecord)]
    return {"search_id": sid, "entry": search.entry, "dataset": search.dataset.name, "seed": search.seed,
            "metric": metric, **summary}, records, len(records) - len(trained_here)


def prepare_datasets(suite: Suite, data_root=None) -> None:
    """Open (building twins on first use) every dataset the suite uses, once, in this process: workers then
    only open finished caches (no two processes build the same twin), and a dataset that is not prepared
    stops the suite before any run starts."""
    from ctrbench.data.api import open_dataset

    seen = set()  # (name, source, rows, data seed, canonical JSON of the twin options)
    for r in suite.runs:
        seen.add((r.dataset, r.source, r.rows, r.data_seed, canonical_json(r.twin)))
    for s in suite.searches:
        d = s.dataset
        seen.add((d.name, d.source, d.rows, d.data_seed, canonical_json(d.twin)))
    for name, source, rows, data_seed, twin in sorted(seen, key=str):
        open_dataset(name, source, rows=rows, seed=data_seed, data_root=data_root, twin=json.loads(twin))


def run_suite(suite: Suite, store: RunStore, *, executor: str = "local", workers: int | None = None,
              address: str | None = None, data_root=None, force: bool = False, command: str | None = None,
              progress: Progress | None = None) -> SuiteResult:
    """Run every run and search of `suite` (skipping finished ones unless `force`) and return the records.
    SIGINT and SIGTERM stop it alike (Interrupted, a KeyboardInterrupt), leaving no run "running"."""
    from ctrbench.harness.suite import Registries

    progress = progress or Progress()
    signals.clear()
    with signals.interrupt_signals():
        recovered = store.recover()
        prepare_datasets(suite, data_root)
        suite = suite.with_caches(data_root)
        progress.suite_start(suite.planned_runs)
        counting = _Counting(progress)
        ex = make_executor(executor, store, workers=workers, address=address, force=force, data_root=data_root,
                           command=command, progress=counting)
        try:
            records = ex.run(suite.runs)
            searches = []
            reg = suite.registries or Registries.default()
            for s in suite.searches:
                summary, recs, resumed = _run_search(suite, s, ex, store, reg, force)
                counting.skipped += resumed
                searches.append(summary)
                records.extend(recs)
        finally:
            ex.close()
    return SuiteResult(records, searches, counting.executed, counting.skipped, recovered, counting.busy)


class _Counting(Progress):
    """Counts executed/skipped runs while forwarding to the user's progress."""

    def __init__(self, inner: Progress):
        self.inner, self.executed, self.skipped, self.busy = inner, 0, 0, 0

    def suite_start(self, total_runs):
        self.inner.suite_start(total_runs)

    def run_start(self, spec):
        self.inner.run_start(spec)

    def run_end(self, spec, record, outcome):
        if outcome == "run":
            self.executed += 1
        elif outcome == "busy":
            self.busy += 1
        else:
            self.skipped += 1
        self.inner.run_end(spec, record, outcome)

    def fit_callbacks(self, spec):
        return self.inner.fit_callbacks(spec)
