"""DistDNAS at the CPU scale (issue 16 items 2-3; specs/search.md §6, §9.8): per-day searches on Ray, aggregated;
the pooled search as the sequential baseline; a sweep of the cost coefficient; every searched point retrained
from scratch beside the zoo (the harness suite the config names) at one recipe; the tables in results/distdnas/.

    python -m ctrbench.search.distdnas suites/distdnas_search.yaml [--address HOST:PORT] [--workers 2]

A CLI study rather than a suite searcher: the harness's searchers propose candidates one batch at a time
(ask/tell) for its executor to train, while DistDNAS runs whole gradient searches as parallel tasks and
aggregates their logits before anything is trained; its retrains and the zoo then go through the harness (runs in
the one store, resumable, with their git revision). Every stage resumes from the store: finished day searches,
the pooled search and finished runs are not redone.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError

from ctrbench.data.registry import get_spec
from ctrbench.errors import ConfigError, CtrbenchError
from ctrbench.harness.runner import make_executor, run_suite
from ctrbench.harness.suite import SearchSpec, load_suite, load_yaml, pydantic_error
from ctrbench.runs.store import RunStore
from ctrbench.search.dnas.aggregate import RULES, Rule
from ctrbench.search.dnas.distributed import (DistDNASConfig, Ray, aggregated_points, projected_seconds, run_days,
                                              run_pooled)
from ctrbench.search.dnas.search import DNASConfig
from ctrbench.search.registry import get_space


class StudyConfig(BaseModel):
    """suites/distdnas_search.yaml: the searches, the sweep, and what is retrained."""

    model_config = ConfigDict(extra="forbid")
    suite: str = Field(description="the harness suite (relative to this file): dataset, recipe and the zoo")
    days: list[int] = Field(min_length=1)
    day_rows: PositiveInt | None = None
    valid_fraction: float = Field(0.2, gt=0, lt=1)
    space: dict = Field(default_factory=dict)
    dnas: DNASConfig = Field(default_factory=DNASConfig, description="each day's search (its cost_coefficient: "
                             "the sweep's)")
    rule: Rule = Field("mean_probabilities", description="the rule of the main result (every rule is reported)")
    sweep: list[float] = Field(min_length=1, description="cost coefficients; the first is the main search's")
    seeds: list[int] = Field([0, 1, 2], min_length=1, description="retrain seeds of the main search's points")
    sweep_seeds: list[int] = Field([0], min_length=1, description="retrain seeds of the sweep's other points")
    search_seeds: list[int] = Field([0], min_length=1, description="DNAS seeds (supernet init, Gumbel noise, batch "
                                    "order): each runs the day searches, the sweep and the pooled baseline")
    project_workers: list[PositiveInt] = [1, 2, 4, 8, 23]


def load_study(path: str) -> tuple[StudyConfig, Path]:
    data, src = load_yaml(path)
    try:
        return StudyConfig(**(data or {})), Path(path).parent
    except ValidationError as exc:
        raise pydantic_error(exc, StudyConfig, src) from None
    except TypeError as exc:
        raise ConfigError(f"the file must be a mapping: {exc}", file=str(path)) from None


class Study:
    def __init__(self, cfg: StudyConfig, folder: Path, store: RunStore, out: Path, *, workers: int, address,
                 retries: int, command: str, data_root=None):
        self.cfg, self.store, self.out, self.command, self.data_root = cfg, store, out, command, data_root
        self.suite = load_suite(folder / cfg.suite)
        if len(self.suite.datasets) != 1:
            raise ConfigError("the DistDNAS suite names one dataset (the twin with days)", file=self.suite.path)
        self.dataset = self.suite.datasets[0]
        self.space = get_space("distdnas", **cfg.space)
        self.workers, self.address, self.retries = workers, address, retries
        self.recipe = self.suite.runs[0].train if self.suite.runs else {}
        self.timing: list[dict] = []

    def search_config(self, coefficient: float, seed: int) -> DistDNASConfig:
        d, c = self.dataset, self.cfg
        try:
            return DistDNASConfig(data={"dataset": d.name, "source": d.source, "rows": d.rows, "data_seed": d.data_seed,
                                        "days": c.days, "day_rows": c.day_rows, "valid_fraction": c.valid_fraction},
                                  space=c.space, dnas=c.dnas.model_copy(update={"cost_coefficient": coefficient, "seed": seed}))
        except ValidationError as exc:
            raise ConfigError(f"the DistDNAS settings: {exc}") from None

    # --- searches ---------------------------------------------------------------------------------------------------
    def searches(self) -> tuple[dict, dict]:
        """((search seed, coefficient) -> {rule: aggregated point}, search seed -> the pooled result of the main
        coefficient)."""
        points, pooled = {}, {}
        with Ray(workers=self.workers, address=self.address) as ray:
            for seed in self.cfg.search_seeds:
                for coef in self.cfg.sweep:
                    self.search(ray, seed, coef, points)
        for seed in self.cfg.search_seeds:
            pooled[seed] = run_pooled(self.search_config(self.cfg.sweep[0], seed), self.store, data_root=self.data_root)
        return points, pooled

    def search(self, ray, seed: int, coef: float, points: dict) -> None:
        """One sweep point of one search seed: the day searches on Ray, then their aggregation."""
        run = run_days(self.search_config(coef, seed), self.store, ray_session=ray, retries=self.retries,
                       data_root=self.data_root)
        t0 = time.perf_counter()
        points[seed, coef] = aggregated_points(self.space, run.results)
        self.timing.append({"search_seed": seed, "coefficient": coef, "days": len(run.results),
                            "ran_now": len(run.ran),
                            "wall_seconds": run.wall_seconds if run.ran == list(run.results) else
                            submitted_together_seconds(run.results.values()), "ray_init_seconds": run.ray_init_seconds,
                            "aggregate_seconds": time.perf_counter() - t0, "search_id": run.search_id,
                            "task_seconds": {d: r["metrics"]["task_seconds"] for d, r in run.results.items()},
                            "search_seconds": {d: r["metrics"]["search_seconds"]
                                               for d, r in run.results.items()},
                            "day_points": {d: r["point"] for d, r in run.results.items()}})

    # --- retrains and the zoo ----------------------------------------------------------------------------------
    def labelled_points(self, points: dict, pooled: dict) -> list[tuple[str, dict, list[int]]]:
        """(label, point, retrain seeds) per search seed: every rule's point of the main search, the pooled point,
        and the main rule's point at every other cost coefficient; labels end in _s<search seed>."""
        c, main, out = self.cfg, self.cfg.sweep[0], []
        for s in c.search_seeds:
            out += [(f"distdnas_{rule}_c{main:g}_s{s}", points[s, main][rule]["point"], c.seeds) for rule in RULES]
            out.append((f"pooled_c{main:g}_s{s}", pooled[s]["point"], c.seeds))
            out += [(f"distdnas_{c.rule}_c{k:g}_s{s}", points[s, k][c.rule]["point"], c.sweep_seeds)
                    for k in c.sweep[1:]]
        return out

    def retrain(self, labelled) -> dict[tuple[str, int], object]:
        """Train each distinct point once per seed (labels sharing a point share its runs); (hash, seed) -> record."""
        seeds: dict[str, set] = {}
        for _, point, ss in labelled:
            seeds.setdefault(self.space.hash(point), set()).update(ss)
        by_hash = {self.space.hash(p): p for _, p, _ in labelled}
        runs = []
        for h, point in by_hash.items():
            spec = SearchSpec(suite=self.suite.name, entry=f"dnas_{h[:10]}", searcher="distdnas", options={},
                              model=self.space.model, params={"numeric_norm": True}, train=self.recipe,
                              dataset=self.dataset, seed=0, system=self.suite.runs[0].system)
            run = self.suite.candidate_spec(spec, 0, self.space.candidate(point)[0], {})  # validated params
            for s in sorted(seeds[h]):
                runs.append(((h, s), dataclasses.replace(run, seed=s, train={**run.train, "seed": s}, kind="model",
                                                         search_id=None, candidate_index=None)))
        ex = make_executor("ray" if self.address else "process", self.store, workers=self.workers,
                           address=self.address, command=self.command, data_root=self.data_root)
        try:
            records = ex.run([r for _, r in runs])
        finally:
            ex.close()
        return {key: rec for (key, _), rec in zip(runs, records)}


def submitted_together_seconds(results) -> float | None:
    """The wall time of day searches that were submitted in one call (one started_at: the store's timestamps, to the
    second): the last finish less the submission; None when they were not."""
    starts = {r["started_at"] for r in results}
    if len(starts) != 1:
        return None
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    end = max(time.mktime(time.strptime(r["finished_at"], fmt)) for r in results)
    return end - time.mktime(time.strptime(starts.pop(), fmt))


def row(name: str, family: str, r) -> dict:
    method, _, search_seed = name.rpartition("_s") if family != "zoo" else (name, "", None)
    return {"name": name, "method": method, "family": family, "search_seed": search_seed, "seed": r.seed,
            "status": r.status, "auc": r.auc, "logloss": r.logloss, "ne": r.ne, "valid_auc": r.valid_auc,
            "flops": r.flops_fwd_per_sample, "params": r.params, "train_seconds": r.train_seconds,
            "git_rev": r.git_rev, "config_hash": r.config_hash}


def collect(space, labelled, retrained: dict, zoo_records) -> pd.DataFrame:
    """One row per trained model: label (name), method (the label less its search seed), search and retrain seed."""
    rows = [row(name, name.split("_")[0], retrained[(space.hash(point), s)]) for name, point, seeds in labelled
            for s in seeds]
    return pd.DataFrame(rows + [row(r.entry, "zoo", r) for r in zoo_records])


def summarise(models: pd.DataFrame, by: str) -> pd.DataFrame:
    """Mean and std of the test metrics per `by` ("name": one search seed; "method": every search x retrain seed)."""
    ok = models[models["status"] == "ok"]
    out = ok.groupby(by).agg(family=("family", "first"), runs=("seed", "size"), flops=("flops", "mean"),
                             auc_mean=("auc", "mean"), auc_std=("auc", "std"), logloss_mean=("logloss", "mean"),
                             logloss_std=("logloss", "std"), ne_mean=("ne", "mean"), ne_std=("ne", "std"))
    return out.reset_index().sort_values("flops")


def claim(models: pd.DataFrame, method: str) -> dict:
    """The paper's claim for `method` against the zoo model best by mean test AUC: ΔAUC paired by retrain seed
    (every search seed's model against the zoo model of the same retrain seed) and the FLOPs saving."""
    ok = models[models["status"] == "ok"]
    zoo = ok[ok["family"] == "zoo"]
    best = zoo.groupby("name")["auc"].mean().idxmax()
    zoo_auc = zoo[zoo["name"] == best].set_index("seed")["auc"]
    mine = ok[(ok["method"] == method) & ok["seed"].isin(zoo_auc.index)]
    diffs = mine["auc"].to_numpy() - zoo_auc.loc[mine["seed"]].to_numpy()
    saving = 1 - float(mine["flops"].mean()) / float(zoo[zoo["name"] == best]["flops"].mean())
    per_search_seed = {str(k): float(v) for k, v in pd.Series(diffs, index=mine["search_seed"]).groupby(level=0)
                       .mean().items()}
    return {"method": method, "best_zoo": best, "pairs": len(diffs), "delta_auc_mean": float(np.mean(diffs)),
            "delta_auc_std": float(np.std(diffs, ddof=1)) if len(diffs) > 1 else None,
            "delta_auc_per_search_seed": per_search_seed, "delta_auc_min": float(np.min(diffs)),
            "delta_auc_max": float(np.max(diffs)), "method_auc_mean": float(mine["auc"].mean()),
            "zoo_auc_mean": float(zoo_auc.mean()), "flops_saving": saving,
            "claim": "+0.001 AUC and 60% fewer FLOPs", "auc_part_holds": float(np.mean(diffs)) >= 0.001,
            "flops_part_holds": saving >= 0.60}


def timing_table(timing: list[dict], pooled: dict, workers: list[int]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-day task times, and per search the measured wall time, the projected ones (projected_seconds, with the
    Ray start and the aggregation as overhead) and the pooled search's time (main coefficient)."""
    days = pd.DataFrame([{"search_seed": t["search_seed"], "coefficient": t["coefficient"], "day": int(d),
                          "task_seconds": s, "search_seconds": t["search_seconds"][d]}
                         for t in timing for d, s in t["task_seconds"].items()])
    rows = []
    for i, t in enumerate(timing):
        overhead = t["ray_init_seconds"] + t["aggregate_seconds"]
        r = {"search_seed": t["search_seed"], "coefficient": t["coefficient"], "days": t["days"],
             "ran_now": t["ran_now"], "measured_wall_seconds": t["wall_seconds"],
             "ray_init_seconds": t["ray_init_seconds"], "sum_task_seconds": sum(t["task_seconds"].values())}
        for w in workers:
            r[f"projected_{w}_workers"] = projected_seconds(list(t["task_seconds"].values()), w, overhead)
        main = i == 0 or timing[i - 1]["search_seed"] != t["search_seed"]
        r["pooled_seconds"] = pooled[t["search_seed"]]["metrics"]["task_seconds"] if main else None
        rows.append(r)
    return days, pd.DataFrame(rows)


def plot(summary: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for family, part in summary.groupby("family"):  # one point per method (mean over search x retrain seeds)
        ax.errorbar(part["flops"], part["ne_mean"], yerr=part["ne_std"].fillna(0), fmt="o", label=family, capsize=3)
        for _, r in part.iterrows():
            ax.annotate(r["method"], (r["flops"], r["ne_mean"]), fontsize=6, xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("forward FLOPs per example (measured)")
    ax.set_ylabel("test NE (mean over search x retrain seeds; lower is better)")
    ax.set_title("DistDNAS at the CPU scale: NE vs FLOPs")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ctrbench.search.distdnas", description=__doc__.split("\n\n")[0])
    ap.add_argument("config", help="the study file (suites/distdnas_search.yaml)")
    ap.add_argument("--address", help="join this Ray cluster (default: a local Ray with --workers CPUs)")
    ap.add_argument("--workers", type=int, default=2, help="local Ray CPUs / process workers (default 2)")
    ap.add_argument("--retries", type=int, default=2, help="Ray retries of a failed or killed day task")
    ap.add_argument("--store", default=None, help="run store (default: OUT/runs.sqlite)")
    ap.add_argument("--out", default="results/distdnas", help="results folder")
    ap.add_argument("--data-root", default=None, help="where the twins live (default: $CTRBENCH_DATA_ROOT, else "
                    "~/.cache/ctrbench)")
    args = ap.parse_args(argv)
    command = "python -m ctrbench.search.distdnas " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    try:
        cfg, folder = load_study(args.config)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        store = RunStore(args.store or out / "runs.sqlite")
        study = Study(cfg, folder, store, out, workers=args.workers, address=args.address, retries=args.retries,
                      command=command, data_root=args.data_root)
        t0 = time.perf_counter()
        points, pooled = study.searches()
        labelled = study.labelled_points(points, pooled)
        retrained = study.retrain(labelled)
        zoo = run_suite(study.suite, store, executor="ray" if args.address else "process", workers=args.workers,
                        address=args.address, data_root=args.data_root, command=command)
        models = collect(study.space, labelled, retrained, zoo.records)
        models.to_csv(out / "models.csv", index=False)
        summarise(models, "name").to_csv(out / "summary_by_search_seed.csv", index=False)
        summary = summarise(models, "method")
        summary.to_csv(out / "summary.csv", index=False)
        spec = get_spec(study.dataset.name)
        sweep = pd.DataFrame([{"search_seed": seed, "coefficient": k, "point": json.dumps(p[cfg.rule]["point"]),
                               "analytic_flops": study.space.flops(p[cfg.rule]["point"], spec),
                               "method": f"distdnas_{cfg.rule}_c{k:g}"} for (seed, k), p in points.items()])
        sweep = sweep.merge(summary[["method", "runs", "flops", "auc_mean", "ne_mean", "ne_std"]], on="method",
                            how="left")
        sweep.to_csv(out / "sweep.csv", index=False)
        days, walls = timing_table(study.timing, pooled, cfg.project_workers)
        days.to_csv(out / "day_tasks.csv", index=False)
        walls.to_csv(out / "wall_times.csv", index=False)
        main_c = f"c{cfg.sweep[0]:g}"
        result = {"command": command,
                  "claims": {m: claim(models, m) for m in [f"distdnas_{r}_{main_c}" for r in RULES] +
                             [f"pooled_{main_c}"]},
                  "points": {f"s{seed}_c{k:g}": {r: v["point"] for r, v in p.items()} for (seed, k), p in
                             points.items()},
                  "pooled_points": {f"s{seed}": v["point"] for seed, v in pooled.items()},
                  "day_points": {f"s{t['search_seed']}_c{t['coefficient']:g}": t["day_points"] for t in study.timing},
                  "total_seconds": time.perf_counter() - t0}
        (out / "result.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
        plot(summary, out / "ne_vs_flops.png")
        print(summary.to_string(index=False))
        print(walls.to_string(index=False))
        print(json.dumps(result["claims"], indent=1))
    except CtrbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
