"""SiGeo's warm-up protocol on CTR-NAS-Bench (issue 15 item 2; specs/search.md §3, §9.5): for each warm-up level
(a share of the training rows) a supernet is warmed (warmup.py), every bench architecture inherits its weights
and is scored by every proxy (evaluators/proxy.py); at the levels in `oneshot_levels` it is also scored the
one-shot way (head fine-tune, validation AUC: evaluators/oneshot.py). 0% is zero-shot: scores at initialisation.

The bench's architectures are the random searcher's sequence the bench was sampled with (search seed 0, the
first `budget` points: suites/nasbench_small.yaml), so scoring needs only the space, not the bench's table.

Every score is an evaluation in the run store (kind `proxy`, or `inherit` for one-shot), one search id per
(study, level, kind), the warm-up's rows and seconds in the search row. A killed job resumes: warmed supernets
are kept on disk (cached_warm_up) and candidates already in the store are not scored again.

    python -m ctrbench.search.sigeo suites/sigeo/criteo_small.yaml --store results/sigeo/runs.sqlite
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ctrbench.runs.store import RunStore
from ctrbench.search.base import Candidate, Evaluation
from ctrbench.search.journal import StoreJournal
from ctrbench.search.registry import get_searcher_class, get_space
from ctrbench.search.warmup import WarmupConfig, cached_warm_up

LEVELS = [0.0, 0.01, 0.1, 1.0]
PROXIES = ["zico", "sigeo", "sigeo_ref", "fisher_rao", "grad_norm", "snip", "synflow", "naswot", "params", "flops",
           "loss"]
SUPERNET_SPACES = {"nasrec_small": "small", "nasrec_full": "full", "nasrec_xlarge_zeros": "xlarge_zeros"}


class StudyConfig(BaseModel):
    """One scoring study: a bench (dataset x space x points), the warm-up levels, the proxies and their data."""

    model_config = ConfigDict(extra="forbid")
    name: str
    dataset: str = "criteo_x1"
    rows: int = Field(50000, gt=0)
    data_seed: int = 0
    space: str = "nasrec_small"
    scale: float = Field(0.125, gt=0, le=1)
    budget: int = Field(200, gt=0, description="the bench's first `budget` points")
    bench_seed: int = 0
    model_params: dict = Field(default_factory=dict, description="the bench entry's params (e.g. numeric_norm)")
    levels: list[float] = Field(default_factory=lambda: list(LEVELS))
    proxies: list[str] = Field(default_factory=lambda: list(PROXIES))
    n_batches: int = Field(4, ge=2)
    batch_size: int = Field(512, gt=0)
    seed: int = 0
    oneshot_levels: list[float] = Field(default_factory=lambda: [1.0])
    oneshot_steps: int = Field(50, ge=0)
    warmup: dict = Field(default_factory=dict, description="WarmupConfig overrides (epochs, lr, ...)")

    def key(self) -> str:
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:8]

    def search_id(self, level: float, kind: str) -> str:
        return f"sigeo/{self.name}-{self.key()}/warm{level:g}/{kind}"

    def warmup_config(self, level: float) -> WarmupConfig:
        if self.space not in SUPERNET_SPACES:
            raise ValueError(f"space {self.space!r} has no supernet; valid: {', '.join(SUPERNET_SPACES)}")
        return WarmupConfig(space=SUPERNET_SPACES[self.space], scale=self.scale, fraction=level, seed=self.seed,
                            model_params=self.model_params, **self.warmup)


def load_config(path: str | Path) -> StudyConfig:
    """A study config from YAML; errors name the file and the key."""
    try:
        raw = yaml.safe_load(Path(path).read_text())
        return StudyConfig(**(raw or {}))
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err["loc"])
        raise SystemExit(f"error: {path}: {where}: {err['msg']}") from None
    except (OSError, yaml.YAMLError, TypeError) as exc:
        raise SystemExit(f"error: {path}: {exc}") from None


def bench_candidates(cfg: StudyConfig) -> list[Candidate]:
    """The bench's points as the random searcher proposed them, with the bench entry's model params."""
    cls = get_searcher_class("random")
    searcher = cls(cls.Params(space=cfg.space, space_options={"scale": cfg.scale}, budget=cfg.budget,
                              seed=cfg.bench_seed))
    return [Candidate(c.index, {**cfg.model_params, **c.params}, c.train, "proxy", c.point)
            for c in searcher.candidates()]


def _score_pending(store: RunStore, sid: str, space, candidates: list[Candidate], evaluate_one, log) -> int:
    """Score the candidates the store does not hold yet for search `sid`; returns how many were scored."""
    journal = StoreJournal(store, sid, "sigeo-score", point_hash=space.hash)
    done = {e.candidate.index for e in journal.history()}
    todo = [c for c in candidates if c.index not in done]
    for i, c in enumerate(todo, start=1):
        journal.append(evaluate_one(c))
        if i % 25 == 0 or i == len(todo):
            log(f"  {sid}: {len(done) + i}/{len(candidates)}")
    return len(todo)


def score_study(cfg: StudyConfig, store: RunStore, work_dir: str | Path, cache=None, log=print,
                levels: list[float] | None = None) -> dict:
    """Warm up and score every level of `cfg` (or just `levels` of them, e.g. to share the work between
    processes) into `store`, resuming; returns {level: WarmupResult}."""
    from ctrbench.data.api import open_dataset
    from ctrbench.search.evaluators.oneshot import OneShotEvaluator
    from ctrbench.search.evaluators.proxy import ProxyEvaluator

    cache = cache or open_dataset(cfg.dataset, rows=cfg.rows, seed=cfg.data_seed)
    space = get_space(cfg.space, scale=cfg.scale)
    candidates = bench_candidates(cfg)
    unknown = sorted(set(levels or []) - set(cfg.levels))
    if unknown:
        raise ValueError(f"levels {unknown} are not among study {cfg.name!r}'s {cfg.levels}")
    warmups = {}
    for level in [lv for lv in cfg.levels if levels is None or lv in levels]:
        sup, result = cached_warm_up(cache, cfg.warmup_config(level), work_dir)
        warmups[level] = result
        log(f"{cfg.name} warm-up {level:g}: {result.rows} rows, {result.steps} steps, {result.seconds:.1f} s")
        kinds = {"proxy": ProxyEvaluator(cache, cfg.proxies, supernet=sup, n_batches=cfg.n_batches,
                                         batch_size=cfg.batch_size, seed=cfg.seed).evaluate_one}
        if level in cfg.oneshot_levels:
            oneshot = OneShotEvaluator(sup, cache, steps=cfg.oneshot_steps, batch_size=cfg.batch_size, seed=cfg.seed)

            def one(c: Candidate, ev=oneshot) -> Evaluation:
                t0 = time.perf_counter()
                (e,) = ev([Candidate(c.index, c.params, c.train, "inherit", c.point)])
                e.seconds = time.perf_counter() - t0
                return e

            kinds["inherit"] = one
        for kind, evaluate_one in kinds.items():
            sid = cfg.search_id(level, kind)
            store.put_search(sid, searcher="sigeo-score", dataset=cfg.dataset, seed=cfg.seed,
                             config={"study": cfg.model_dump(), "level": level, "kind": kind,
                                     "warmup": result.model_dump()})
            _score_pending(store, sid, space, candidates, evaluate_one, log)
    return warmups


def study_scores(cfg: StudyConfig, store: RunStore) -> pd.DataFrame:
    """One row per (level, point): point_hash, index, level, each proxy's score (its label), `oneshot` (the
    one-shot validation AUC where scored), the scoring seconds and the level's warm-up seconds."""
    rows = {}
    for level in cfg.levels:
        for kind in ("proxy", "inherit"):
            sid = cfg.search_id(level, kind)
            search = store.get_search(sid)
            warm = (search or {}).get("config", {}).get("warmup", {})
            for e in store.evaluations(search_id=sid):
                row = rows.setdefault((level, e["candidate_index"]), {
                    "level": level, "index": e["candidate_index"], "point_hash": e["point_hash"],
                    "warmup_seconds": warm.get("seconds"), "warmup_rows": warm.get("rows")})
                metrics = e["metrics"] or {}
                if kind == "proxy":
                    row.update({k.removeprefix("proxy."): v for k, v in metrics.items() if k.startswith("proxy.")})
                    row["proxy_seconds"] = e["cost_seconds"]
                else:
                    row["oneshot"] = e["value"]
                    row["oneshot_seconds"] = e["cost_seconds"]
    return pd.DataFrame(list(rows.values()))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Warm up supernets and score CTR-NAS-Bench's points with every proxy "
                                 "(resumable).")
    ap.add_argument("configs", nargs="+", help="study YAML files (suites/sigeo/*.yaml)")
    ap.add_argument("--store", default="results/sigeo/runs.sqlite")
    ap.add_argument("--work", default=str(Path.home() / ".cache" / "ctrbench" / "sigeo"),
                    help="where warmed supernets are kept")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--levels", type=float, nargs="+", help="score only these of each study's levels")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    store = RunStore(args.store)
    for path in args.configs:
        cfg = load_config(path)
        warm = score_study(cfg, store, args.work, log=lambda m: print(m, flush=True), levels=args.levels)
        print(json.dumps({cfg.name: {f"{k:g}": v.model_dump() for k, v in warm.items()}}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
