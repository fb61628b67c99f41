"""Search end to end on CTR-NAS-Bench's points (issue 15 item 4: SiGeo's Figure 3 at CPU scale). Four methods,
each over the bench table's points (space `bench_table`, so every proposal can be retrained from the bench):

- zero-shot: regularized evolution maximising ZiCo at 0% warm-up (the supernet at initialisation);
- sub-one-shot: evolution maximising SiGeo (paper variant) at 1% warm-up;
- one-shot: evolution maximising the validation AUC after a head fine-tune at 100% warm-up;
- random: `k` random points;

then the top-k retrain (stages.retrain_top_k): the k best are trained from scratch and the best on validation AUC
is the answer, judged by its test AUC and logloss. The study's stored scores answer the search's queries (what the
proxy / one-shot evaluators wrote for these very points, sigeo.py), and the bench's seed-0 training answers the
retrain (the same recipe, so the bench is that retraining, done once).

Cost, in CPU-seconds (this process's CPU time on one torch thread, which a shared box inflates far less than wall
time): the warm-up of the method's level, plus each distinct query's scoring, plus each retrained point's training.
The warm-up and a query are timed by dedicated runs here (a fresh warm-up; the measure alone scoring the first
`timing_points` bench points: the stored scores came from one pass of every proxy together). The retraining is the
bench's `train_seconds` (the wall time of its training loop on one thread; the bench ran on the same shared box).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ctrbench.runs.store import RunStore
from ctrbench.search.base import Candidate, Evaluation, run_search
from ctrbench.search.evaluators.base import Evaluator
from ctrbench.search.registry import get_searcher_class
from ctrbench.search.sigeo import StudyConfig, bench_candidates, load_config, study_scores
from ctrbench.search.stages import retrain_top_k

METHODS = {"zero-shot ZiCo@0%": ("proxy", "zico", 0.0), "sub-one-shot SiGeo@1%": ("proxy", "sigeo", 0.01),
           "one-shot @100% + head fine-tune": ("inherit", "oneshot", 1.0), "random": None}
RESULT_COLUMNS = ["method", "search_seed", "queries", "picked_hash", "test_auc", "test_logloss", "valid_auc",
                  "warmup_seconds", "query_seconds", "retrain_seconds", "cost_seconds"]


class AnswerTable(Evaluator):
    """Answers candidates of one kind from {point hash: (value, seconds, metrics)}; a point not held fails."""

    def __init__(self, kind: str, space, answers: dict[str, tuple[float, float, dict]]):
        self.kind, self.space, self.answers = kind, space, answers
        self.kinds = (kind,)

    def __call__(self, batch: list[Candidate]) -> list[Evaluation]:
        out = []
        for c in batch:
            hit = self.answers.get(self.space.hash(c.point))
            if hit is None or hit[0] is None or np.isnan(hit[0]):  # -inf is a score (NASWOT's singular kernel)
                out.append(Evaluation(c, "failed", None, metrics={"error": "no stored answer"}, seconds=0.0))
            else:
                out.append(Evaluation(c, "ok", float(hit[0]), metrics=dict(hit[2]), seconds=float(hit[1])))
        return out


def retrain_answers(table: pd.DataFrame, runs: pd.DataFrame) -> dict[str, tuple[float, float, dict]]:
    """The bench's seed-0 training as a retrain: value = validation AUC, seconds = its training loop."""
    seed0 = runs[runs["seed"] == 0].set_index("point_hash")
    out = {}
    for row in table.to_dict(orient="records"):
        h = row["point_hash"]
        seconds = float(seed0.loc[h, "train_seconds"]) if h in seed0.index else float(row["wall_seconds"])
        out[h] = (row["valid_auc"], seconds, {"test_auc": row["auc"], "test_logloss": row["logloss"]})
    return out


def _study_data(cfg: StudyConfig):
    from ctrbench.data.api import open_dataset

    return open_dataset(cfg.dataset, rows=cfg.rows, seed=cfg.data_seed)


def warmup_cpu_seconds(cfg: StudyConfig, level: float) -> float:
    """CPU-seconds of a fresh warm-up at `level` (not the cached supernet: its time was taken on a loaded box)."""
    from ctrbench.search.warmup import warm_up

    return float(warm_up(_study_data(cfg), cfg.warmup_config(level))[1].cpu_seconds)


def query_cpu_seconds(cfg: StudyConfig, measure: str, level: float, work_dir, n: int) -> float:
    """CPU-seconds of one query of `measure` at `level` (a proxy's name, or `oneshot`): the first `n` bench points
    scored by that measure alone, per point."""
    from ctrbench.search.evaluators.oneshot import OneShotEvaluator
    from ctrbench.search.evaluators.proxy import ProxyEvaluator
    from ctrbench.search.warmup import cached_warm_up

    cache = _study_data(cfg)
    sup, _ = cached_warm_up(cache, cfg.warmup_config(level), work_dir)
    if measure == "oneshot":
        ev = OneShotEvaluator(sup, cache, steps=cfg.oneshot_steps, batch_size=cfg.batch_size, seed=cfg.seed)
    else:
        ev = ProxyEvaluator(cache, [measure], supernet=sup, n_batches=cfg.n_batches, batch_size=cfg.batch_size,
                            seed=cfg.seed)
    cands = bench_candidates(cfg)[:n]
    t0 = time.process_time()
    ev(cands)
    return (time.process_time() - t0) / len(cands)


def run_method(method: str, cfg: StudyConfig, scores: pd.DataFrame, table_path: Path, retrain: AnswerTable,
               per_query: float, warm: float, seed: int, budget: int, k: int, evo: dict) -> dict:
    """One search (or random pick) and its top-k retrain: a RESULT_COLUMNS row."""
    space_opts = {"space": cfg.space, "table": str(table_path), "space_options": {"scale": cfg.scale}}
    if METHODS[method] is None:
        cls = get_searcher_class("random")
        searcher = cls(cls.Params(space="bench_table", space_options=space_opts, budget=k, seed=seed,
                                  evaluation="train"))
        history = retrain(searcher.ask([]))
        ok = [e for e in history if e.status == "ok"]
        best = max(ok, key=lambda e: e.value) if ok else None
        queries, query_cost, retrained = 0, 0.0, history
    else:
        kind, measure, level = METHODS[method]
        at = scores[scores["level"] == level]
        cls = get_searcher_class("evolution")
        searcher = cls(cls.Params(space="bench_table", space_options=space_opts, budget=budget, seed=seed,
                                  evaluation=kind, **evo))
        answers = {r["point_hash"]: (r[measure], per_query, {}) for r in at.to_dict(orient="records")}
        result = run_search(searcher, AnswerTable(kind, searcher.space, answers))
        stage = retrain_top_k(result.history, k, searcher.objective, retrain)
        best, retrained = stage.best, stage.retrained
        queries = len({searcher.space.hash(e.candidate.point) for e in result.history})
        query_cost = queries * per_query
    retrain_cost = sum(e.seconds for e in retrained)
    return {"method": method, "search_seed": seed, "queries": queries,
            "picked_hash": None if best is None else retrain.space.hash(best.candidate.point),
            "test_auc": None if best is None else best.metrics["test_auc"],
            "test_logloss": None if best is None else best.metrics["test_logloss"],
            "valid_auc": None if best is None else best.value, "warmup_seconds": warm, "query_seconds": query_cost,
            "retrain_seconds": retrain_cost, "cost_seconds": warm + query_cost + retrain_cost}


def claim_b(results: pd.DataFrame, noise_logloss: float) -> dict:
    """SiGeo@1% vs one-shot: mean final logloss (and its gap against the bench's seed-to-seed logloss spread)
    and the cost ratio."""
    g = results.groupby("method")
    sub, one = "sub-one-shot SiGeo@1%", "one-shot @100% + head fine-tune"
    gap = float(g["test_logloss"].mean()[sub] - g["test_logloss"].mean()[one])
    ratio = float(g["cost_seconds"].mean()[sub] / g["cost_seconds"].mean()[one])
    return {"logloss_sigeo": float(g["test_logloss"].mean()[sub]), "logloss_oneshot": float(g["test_logloss"].mean()[one]),
            "logloss_gap": gap, "seed_spread_logloss": noise_logloss,
            "search_seed_std_sigeo": float(g["test_logloss"].std()[sub]),
            "search_seed_std_oneshot": float(g["test_logloss"].std()[one]),
            "within_spread": bool(gap <= noise_logloss), "cost_ratio": ratio, "cost_ok": bool(ratio <= 0.4),
            "holds": bool(gap <= noise_logloss and ratio <= 0.4)}


def plot(summary: pd.DataFrame, results: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("test_logloss", "test_auc")):
        for method, rows in results.groupby("method", sort=False):
            ax.scatter(rows["cost_seconds"], rows[metric], alpha=0.3, s=12)
            s = summary.loc[method]
            ax.errorbar(s["cost_seconds"], s[f"{metric}_mean"], yerr=s[f"{metric}_std"], fmt="o", capsize=3,
                        label=method)
        ax.set_xscale("log")
        ax.set_xlabel("total search cost (CPU-seconds: warm-up + queries + top-k retrain)")
        ax.set_ylabel(metric.replace("_", " "))
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="End-to-end search on CTR-NAS-Bench's points: zero-shot, "
                                 "sub-one-shot, one-shot and random, each with the top-k retrain.")
    ap.add_argument("config", help="the study YAML whose stored scores answer the queries")
    ap.add_argument("--bench", default="results/nasbench")
    ap.add_argument("--store", default="results/sigeo/runs.sqlite")
    ap.add_argument("--work", default=str(Path.home() / ".cache" / "ctrbench" / "sigeo"))
    ap.add_argument("--out", default="results/sigeo/search")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--budget", type=int, default=50, help="distinct queries of each evolution")
    ap.add_argument("--k", type=int, default=5, help="points retrained from scratch")
    ap.add_argument("--population", type=int, default=16)
    ap.add_argument("--sample-size", type=int, default=4)
    ap.add_argument("--children", type=int, default=4)
    ap.add_argument("--timing-points", type=int, default=10)
    args = ap.parse_args(argv)
    import torch

    from ctrbench.search.sigeo_table import read_bench

    torch.set_num_threads(1)
    cfg = load_config(args.config)
    bench, out = Path(args.bench), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table, runs = read_bench(bench, cfg.space, cfg.dataset)
    scores = study_scores(cfg, RunStore(args.store, create=False))
    table_path = bench / f"{cfg.space}_{cfg.dataset}.csv"
    from ctrbench.search.registry import get_space

    space = get_space("bench_table", space=cfg.space, table=str(table_path), space_options={"scale": cfg.scale})
    retrain = AnswerTable("train", space, retrain_answers(table, runs))
    per_query = {m: query_cpu_seconds(cfg, spec[1], spec[2], args.work, args.timing_points)
                 for m, spec in METHODS.items() if spec is not None}
    warm = {m: warmup_cpu_seconds(cfg, spec[2]) if spec[2] > 0 else 0.0 for m, spec in METHODS.items() if spec}
    evo = {"population": args.population, "sample_size": args.sample_size, "children": args.children}
    results = pd.DataFrame([run_method(m, cfg, scores, table_path, retrain, per_query.get(m, 0.0), warm.get(m, 0.0),
                                       seed, args.budget, args.k, evo) for m in METHODS for seed in range(args.seeds)],
                           columns=RESULT_COLUMNS)
    g = results.groupby("method", sort=False)
    summary = pd.DataFrame({"searches": g.size(), "cost_seconds": g["cost_seconds"].mean(),
                            "test_logloss_mean": g["test_logloss"].mean(), "test_logloss_std": g["test_logloss"].std(),
                            "test_auc_mean": g["test_auc"].mean(), "test_auc_std": g["test_auc"].std(),
                            "queries": g["queries"].mean(), "warmup_seconds": g["warmup_seconds"].mean(),
                            "query_seconds": g["query_seconds"].mean(), "retrain_seconds": g["retrain_seconds"].mean()})
    wide = runs.pivot_table(index="point_hash", columns="seed", values="logloss").dropna()
    noise = float(wide.std(axis=1, ddof=1).mean()) if wide.shape[1] > 1 else float("nan")
    claims = claim_b(results, noise)
    results.to_csv(out / "searches.csv", index=False, float_format="%.6g")
    summary.to_csv(out / "summary.csv", float_format="%.6g")
    plot(summary, results, out / "cost_vs_quality.png")
    from ctrbench.measure import environment

    (out / "claim_b.json").write_text(json.dumps({**claims, "per_query_cpu_seconds": per_query,
                                                  "warmup_cpu_seconds": warm, "options": vars(args),
                                                  "environment": environment()}, indent=1))
    print(summary.to_string())
    print(json.dumps(claims, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
