"""Rankitect at the CPU scale (issue 16 item 4; specs/search.md §5, §9.10): three searcher families in one space
(NASRec-Small at scale 0.125) at one budget, beside the engineers' models, as NE-vs-FLOPs Pareto fronts.

  sampling   random search and regularized evolution, CTR-NAS-Bench lookups (suites/rankitect.yaml, the harness)
  one-shot   a nasrec_supernet trained on sampled paths, regularized evolution scored by weight inheritance
             (head fine-tuned, validation NE), the top-k retrained from scratch (NASRec's recipe, shortened)
  dnas       nasrec_dnas_supernet searched by Gumbel-softmax with an expected-FLOPs cost, then the k most probable
             points of the final distribution retrained from scratch
  engineers  DCNv2, DLRM, DHEN, Wukong, each tuned by the suite's width grid (the point best on validation NE)

The budget (ours; the paper's is unpublished) is counted in training-equivalents (TE): one TE is the samples one
from-scratch training of the recipe may see (max_epochs x training rows). A lookup costs 1 TE (the table's
training), a retrain 1 TE, and supernet, head fine-tuning and architecture steps their samples / TE. Every
architecture on a front is trained from scratch at the same recipe and seed (the table's, a retrain or a zoo
run), so test NE and measured FLOPs compare across families. The one-shot and DNAS stages are searches in the run
store (their retrains are linked runs), so a killed run resumes: finished retrains are skipped and a DNAS result
is kept in `stages/`.

    python -m ctrbench.search.rankitect suites/rankitect_search.yaml
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, model_validator

from ctrbench.data.api import open_dataset
from ctrbench.data.loader import BatchLoader
from ctrbench.errors import ConfigError
from ctrbench.harness.runner import LocalExecutor, run_suite, train_evaluation
from ctrbench.harness.suite import SearchSpec, Suite, load_suite, load_yaml, pydantic_error
from ctrbench.models.layers.gumbel import gumbel_noise
from ctrbench.models.registry import build_model, model_tables
from ctrbench.runs.query import evaluations_frame, load_runs
from ctrbench.runs.store import RunStore
from ctrbench.search.base import Candidate, Evaluation, run_search
from ctrbench.search.dnas.nasrec_search import NASRecDNASSearch, supernet_params
from ctrbench.search.dnas.search import DNASConfig, endless
from ctrbench.search.evaluators.oneshot import OneShotEvaluator
from ctrbench.search.journal import StoreJournal
from ctrbench.search.objective import Objective
from ctrbench.search.registry import get_space
from ctrbench.search.searchers.evolution import RegularizedEvolution
from ctrbench.search.stages import retrain_top_k
from ctrbench.train import TrainConfig, make_optimizers, training_step


class OneShotStage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    supernet_te: float = Field(gt=0, description="supernet training samples, in TE")
    warmup_fraction: float = Field(0.25, ge=0, le=1, description="NASRec's full-path warm-up over this share")
    candidates: PositiveInt = Field(description="inherit evaluations of the evolution")
    population: PositiveInt
    sample_size: PositiveInt
    children: PositiveInt
    head_steps: int = Field(ge=0, description="head fine-tuning steps per candidate (NASRec: 500)")
    head_batch: PositiveInt = 256
    top_k: PositiveInt


class DNASStage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    search: DNASConfig = Field(description="the search's knobs but `seed` (set per search seed)")
    top_k: PositiveInt
    samples: PositiveInt = Field(64, description="Gumbel-perturbed argmaxes the top-k are ranked among")


class RankitectConfig(BaseModel):
    """suites/rankitect_search.yaml: the suite (zoo, sampling searchers, recipe), the stages and the budget."""

    model_config = ConfigDict(extra="forbid")
    suite: str = Field(description="the suite file, relative to this file")
    template: str = Field(description="a lookup searcher entry of the suite whose space, params, recipe and "
                          "dataset the stages share")
    budget_te: float = Field(gt=0, description="training-equivalents per search, every family")
    seeds: list[int] = Field(min_length=1)
    oneshot: OneShotStage
    dnas: DNASStage
    engineers: list[str] = Field(min_length=1, description="the suite's zoo entries (grids)")
    sampling: dict[str, list[str]] = Field(description="searcher -> its suite entries (one per search seed)")

    @model_validator(mode="after")
    def _search_has_no_seed(self):
        if "seed" in self.dnas.search.model_fields_set:
            raise ValueError("dnas.search.seed is set by `seeds` (one search per seed)")
        return self


def load_config(path: str | Path) -> RankitectConfig:
    data, src = load_yaml(path)
    try:
        return RankitectConfig(**(data or {}))
    except ValidationError as exc:
        raise pydantic_error(exc, RankitectConfig, src) from None
    except TypeError as exc:
        raise ConfigError(f"the file must be a mapping: {exc}", file=str(path)) from None


# --- the stages' searches and their from-scratch trainings ------------------------------------------------------
class Stages:
    """The one-shot and DNAS stages of one suite: shared space, cache, recipe, store and executor."""

    def __init__(self, cfg: RankitectConfig, suite: Suite, store: RunStore, out: Path, command: str):
        self.cfg, self.suite, self.store, self.out = cfg, suite, store, out
        by_entry = {s.entry: s for s in suite.searches}
        if cfg.template not in by_entry:
            raise ConfigError(f"template {cfg.template!r} is not a searcher entry of the suite; have: "
                              f"{', '.join(by_entry)}", file=suite.path)
        self.template: SearchSpec = by_entry[cfg.template]
        opts = self.template.options
        table_space = get_space(opts["space"], **opts.get("space_options", {}))
        self.space = getattr(table_space, "base", table_space)  # the stages search the whole space
        self.space_ref = {"space": self.space.name, "space_options": {"scale": self.space.scale}}
        d = self.template.dataset
        self.cache = open_dataset(d.name, d.source, rows=d.rows, seed=d.data_seed, twin=d.twin)
        self.recipe = TrainConfig(**self.template.train)
        self.te_samples = self.recipe.max_epochs * self.cache.split("train").rows
        store.recover()  # a run a killed invocation left 'running' is marked interrupted and runs again
        self.executor = LocalExecutor(store, command=command)
        self.objective = Objective(metric="ne")

    def search_spec(self, entry: str, searcher: str, options: dict) -> SearchSpec:
        """A stage search in the store, linked like a suite search (its retrains are its candidates' runs)."""
        system = {k: v for k, v in self.template.system.items() if k != "evaluator"}  # not the lookup table's
        spec = dataclasses.replace(self.template, entry=entry, searcher=searcher, system=system,
                                   options={**self.space_ref, **options, "metric": "ne"})
        sid = spec.search_id
        if self.store.get_search(sid) is None:
            self.store.put_search(sid, suite=self.suite.name, entry=entry, searcher=searcher,
                                  dataset=spec.dataset.name, seed=spec.seed, status="running",
                                  config=spec.identity())
        return spec

    def trainer(self, spec: SearchSpec):
        """Candidates -> evaluations by from-scratch runs of the recipe (stored; finished ones are kept)."""
        def train(batch: list[Candidate]) -> list[Evaluation]:
            runs = [self.suite.candidate_spec(spec, c.index, c.params, c.train) for c in batch]
            return [train_evaluation(c, r, "ne") for c, r in zip(batch, self.executor.run(runs))]
        return train

    def steps_of(self, te: float, batch: int) -> int:
        return max(1, round(te * self.te_samples / batch))

    # --- one-shot --------------------------------------------------------------------------------------------
    def train_supernet(self, seed: int):
        st = self.cfg.oneshot
        steps = self.steps_of(st.supernet_te, self.recipe.batch_size)
        params = {**self.template.params, **supernet_params(self.space), "path_seed": seed,
                  "warmup_steps": round(st.warmup_fraction * steps)}
        params.pop("point", None)
        sup = build_model("nasrec_supernet", self.cache.spec, self.cache.vocab_sizes, params,
                          model_tables(self.cache), seed=seed)
        cfg = self.recipe.model_copy(update={"seed": seed})
        opts = make_optimizers(sup, cfg)
        batches = endless(BatchLoader(self.cache, "train", cfg.batch_size, shuffle=True, seed=seed))
        sup.train()
        for _ in range(steps):
            training_step(sup, next(batches), opts, cfg)
        return sup.eval(), steps * cfg.batch_size

    def oneshot(self, seed: int) -> dict:
        st = self.cfg.oneshot
        options = {**st.model_dump(), "seed": seed, "te_samples": self.te_samples}
        spec = self.search_spec(f"oneshot_s{seed}", "oneshot", options)
        t0 = time.perf_counter()
        sup, sup_samples = self.train_supernet(seed)
        evo = RegularizedEvolution(RegularizedEvolution.Params(
            space=self.space.name, space_options={"scale": self.space.scale}, budget=st.candidates, seed=seed,
            metric="ne", evaluation="inherit", population=st.population, sample_size=st.sample_size,
            children=st.children))
        evaluator = OneShotEvaluator(sup, self.cache, metric="ne", steps=st.head_steps, batch_size=st.head_batch,
                                     seed=seed)
        journal = StoreJournal(self.store, spec.search_id, "oneshot", self.space.hash)
        result = run_search(evo, _with_kinds(evaluator, "inherit", self.template.params), journal)
        stage = retrain_top_k(result.history, st.top_k, self.objective, _with_kinds(self.trainer(spec), "train"))
        samples = sup_samples + st.candidates * st.head_steps * st.head_batch + st.top_k * self.te_samples
        return self._finish(spec, "oneshot", seed, samples, time.perf_counter() - t0, stage.best,
                            inherit_evaluations=len(result.history))

    # --- DNAS ------------------------------------------------------------------------------------------------
    def dnas(self, seed: int) -> dict:
        st = self.cfg.dnas
        dcfg = st.search.model_copy(update={"seed": seed})
        spec = self.search_spec(f"dnas_s{seed}", "dnas", {**st.model_dump(), "seed": seed})
        path = self.out / "stages" / f"dnas_s{seed}.json"
        t0 = time.perf_counter()
        search = NASRecDNASSearch(self.cache, self.space, dcfg, self.template.params, self.recipe)
        fresh = not path.exists()  # a resumed search's seconds are in its saved result, not in this wall time
        if not fresh:
            saved = json.loads(path.read_text())
            search_seconds = saved["search_seconds"]
            search.model.alpha.load_state_dict({k: torch.tensor(v) for k, v in saved["raw_logits"].items()})
        else:
            res = search.run()
            if res.status != "ok":
                raise RuntimeError(f"DNAS search seed {seed} ended {res.status}: {res.error}")
            search_seconds = res.seconds
            saved = {"seed": seed, "config": dcfg.model_dump(), "point": res.point, "history": res.history,
                     "expected_flops": res.expected_flops, "search_seconds": res.seconds,
                     "raw_logits": {k: v.detach().tolist() for k, v in search.model.alpha.items()}}
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(saved, indent=1) + "\n")
        points = most_probable(search.model, self.space, st.top_k, st.samples, seed)
        batch = [Candidate(i, *self.space.candidate(p), evaluation="train", point=p) for i, p in enumerate(points)]
        evals = self.trainer(spec)(batch)
        ok = [e for e in evals if e.status == "ok" and e.value is not None]
        best = min(ok, key=lambda e: e.value) if ok else None
        arch = sum(1 for s in range(1, dcfg.steps + 1) if s > dcfg.warmup_steps and
                   (s - dcfg.warmup_steps) % dcfg.arch_every == 0)
        samples = (dcfg.steps + arch) * dcfg.batch_size + len(batch) * self.te_samples
        wall = time.perf_counter() - t0 + (0.0 if fresh else search_seconds)
        return self._finish(spec, "dnas", seed, samples, wall, best, log_probabilities=[
            search.model.log_probability(p) for p in points])

    def _finish(self, spec, family, seed, samples, seconds, best, **extra) -> dict:
        te = samples / self.te_samples
        if te > self.cfg.budget_te + 1e-9:
            raise ConfigError(f"{family} seed {seed} spent {te:.2f} TE, over the budget of {self.cfg.budget_te}; "
                              "shrink its stage", file=self.suite.path)
        summary = {"family": family, "seed": seed, "search_id": spec.search_id, "spent_te": round(te, 3),
                   "wall_seconds": round(seconds, 1), "best_config_hash": getattr(best.record, "config_hash", None)
                   if best else None, **extra}
        self.store.put_search(spec.search_id, status="ok" if best else "failed",
                              best_value=best.value if best else None, best_config_hash=summary["best_config_hash"])
        (self.out / "stages").mkdir(parents=True, exist_ok=True)
        (self.out / "stages" / f"{family}_s{seed}_summary.json").write_text(json.dumps(summary, indent=1) + "\n")
        return summary


def _with_kinds(evaluate, kind: str, params: dict | None = None):
    """`evaluate` for run_search: handles `kind`, and gives every candidate the entry's fixed `params` under its
    own (a subnet inheriting from a numeric_norm supernet must normalise its numeric features too)."""
    def f(batch):
        return evaluate([dataclasses.replace(c, params={**(params or {}), **c.params}) for c in batch])
    f.kinds = (kind,)
    return f


def most_probable(model, space, k: int, samples: int, seed: int) -> list[dict]:
    """The DNAS answer and runners-up: the k most probable distinct points among the argmax and `samples`
    Gumbel-perturbed argmaxes of the final logits (perturb-and-argmax draws each choice from its softmax)."""
    logits = model.arch_logits()
    gen = torch.Generator().manual_seed(seed)
    pool = [model.discretise(logits)]
    for _ in range(samples):
        pool.append(model.discretise({s: v + gumbel_noise(v.shape, generator=gen) for s, v in logits.items()}))
    unique = {space.hash(p): space.validate(p) for p in pool}
    ranked = sorted(unique.values(), key=lambda p: -model.log_probability(p))
    return [space.validate(pool[0])] + [p for p in ranked if space.hash(p) != space.hash(pool[0])][:k - 1]


# --- collecting the points and fronts ---------------------------------------------------------------------------
POINT_COLUMNS = ["family", "method", "seed", "name", "flops", "params", "ne", "auc", "logloss", "valid_ne",
                 "source"]


def collect(cfg: RankitectConfig, suite: Suite, store: RunStore, stage_summaries: list[dict], space) -> pd.DataFrame:
    """Every from-scratch-trained architecture the families produced, one row each (POINT_COLUMNS)."""
    rows = []
    sids = {s.entry: s.search_id for s in suite.searches}
    for method, entries in cfg.sampling.items():
        for entry in entries:
            seed = next(s.options["seed"] for s in suite.searches if s.entry == entry)
            for _, e in evaluations_frame(store, search_id=sids[entry]).iterrows():
                m = e["metrics"] or {}
                if e["status"] != "ok":
                    continue
                rows.append({"family": "sampling", "method": method, "seed": seed, "name": e["point_hash"],
                             "flops": m.get("flops"), "params": m.get("params"), "ne": m.get("ne"),
                             "auc": m.get("auc"), "logloss": m.get("logloss"), "valid_ne": e["value"],
                             "source": "lookup"})
    for st in stage_summaries:
        for r in load_runs(store, search_id=st["search_id"], status="ok"):
            rows.append({"family": {"oneshot": "one-shot", "dnas": "dnas"}[st["family"]], "method": st["family"],
                         "seed": st["seed"], "name": space.hash(r.config["params"]["point"]),
                         **_record_metrics(r), "source": "retrain"})
    for r in load_runs(store, suite=suite.name, status="ok"):
        base = r.entry.split("[")[0]
        if r.kind == "model" and base in cfg.engineers:
            rows.append({"family": "engineers", "method": base, "seed": r.seed, "name": r.entry, **_record_metrics(r),
                         "source": "grid"})
    return pd.DataFrame(rows, columns=POINT_COLUMNS)


def _record_metrics(r) -> dict:
    return {"flops": r.flops_fwd_per_sample, "params": r.params, "ne": r.ne, "auc": r.auc, "logloss": r.logloss,
            "valid_ne": (r.valid or {}).get("ne")}


def pareto(points: pd.DataFrame) -> pd.DataFrame:
    """The non-dominated rows (lower NE and lower FLOPs are better), by FLOPs."""
    p = points.sort_values(["flops", "ne"]).drop_duplicates("name")
    keep, best = [], np.inf
    for i, row in p.iterrows():
        if row["ne"] < best:
            keep.append(i)
            best = row["ne"]
    return p.loc[keep]


def dominates(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    """Front `a` weakly dominates every point of `b`, strictly at least once."""
    strict = False
    for _, q in b.iterrows():
        cover = a[(a["ne"] <= q["ne"]) & (a["flops"] <= q["flops"])]
        if cover.empty:
            return False
        strict |= bool(((cover["ne"] < q["ne"]) | (cover["flops"] < q["flops"])).any())
    return strict


def engineers_tuned(points: pd.DataFrame) -> pd.DataFrame:
    """Each zoo model's grid point with the best validation NE (what an engineer's tuning would keep)."""
    eng = points[points["family"] == "engineers"]
    return eng.loc[eng.groupby("method")["valid_ne"].idxmin()].sort_values("flops")


def verdict(points: pd.DataFrame, families=("sampling", "one-shot", "dnas")) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per family: does its front (all seeds pooled; and each seed's) dominate the engineers' front -- of every
    grid model (the strong baseline) and of the four tuned picks -- and does the engineers' dominate it? And, per
    model on the engineers' grid front, each family's best test NE at no more FLOPs (ΔNE < 0: the search wins)."""
    eng = points[points["family"] == "engineers"]
    grid_front, tuned_front = pareto(eng), pareto(engineers_tuned(points))
    rows, matched = [], []
    for fam in families:
        pts = points[points["family"] == fam]
        if pts.empty:  # no finished search of this family: no verdict, rather than a false "does not dominate"
            rows.append({"family": fam, "points": 0, "front_points": 0})
            continue
        seeds = [pareto(g) for _, g in pts.groupby("seed")]
        front = pareto(pts)
        rows.append({"family": fam, "points": len(pts), "front_points": len(front),
                     "dominates_engineers_grid": dominates(front, grid_front),
                     "seeds_dominating_grid": f"{sum(dominates(f, grid_front) for f in seeds)}/{len(seeds)}",
                     "dominates_engineers_tuned": dominates(front, tuned_front),
                     "seeds_dominating_tuned": f"{sum(dominates(f, tuned_front) for f in seeds)}/{len(seeds)}",
                     "engineers_grid_dominates_it": dominates(grid_front, front)})
        for _, z in grid_front.iterrows():
            cheaper = pts[pts["flops"] <= z["flops"]]
            best = cheaper.loc[cheaper["ne"].idxmin()] if len(cheaper) else None
            matched.append({"family": fam, "engineers_model": z["name"], "model_flops": z["flops"],
                            "model_ne": z["ne"], "family_best_ne_at_le_flops": None if best is None else best["ne"],
                            "its_flops": None if best is None else best["flops"],
                            "delta_ne": None if best is None else best["ne"] - z["ne"]})
    return pd.DataFrame(rows), pd.DataFrame(matched)


def plot(points: pd.DataFrame, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"sampling": "tab:blue", "one-shot": "tab:orange", "dnas": "tab:green", "engineers": "black"}
    fig, ax = plt.subplots(figsize=(9, 6))
    for fam, c in colours.items():
        pts = points[points["family"] == fam]
        if pts.empty:
            continue
        front = pareto(pts)
        if fam == "engineers":
            ax.scatter(pts["flops"], pts["ne"], marker="x", color=c, alpha=0.5, label="engineers' grid points")
            tuned = engineers_tuned(points)
            ax.scatter(tuned["flops"], tuned["ne"], marker="*", s=160, color=c, label="engineers' tuned models")
            for _, z in tuned.iterrows():
                ax.annotate(z["method"], (z["flops"], z["ne"]), textcoords="offset points", xytext=(5, 5))
        else:
            ax.scatter(pts["flops"], pts["ne"], color=c, alpha=0.35, s=18)
        ax.step(front["flops"], front["ne"], where="post", color=c, lw=1.8, label=f"{fam} front")
    ax.set_xscale("log")
    ax.set_xlabel("forward FLOPs per example (measured, lookups included)")
    ax.set_ylabel("test NE (lower is better)")
    ax.set_title(textwrap.fill(title, 130), fontsize=7)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def markdown(frame: pd.DataFrame, floatfmt: str = ".4f") -> str:
    def cell(v):
        if isinstance(v, float):
            return "" if np.isnan(v) else (f"{v:.4g}" if abs(v) >= 1000 else format(v, floatfmt))
        return str(v)
    head = "| " + " | ".join(frame.columns) + " |\n|" + "---|" * len(frame.columns) + "\n"
    return head + "".join("| " + " | ".join(cell(v) for v in row) + " |\n" for row in frame.itertuples(index=False))


def write_results(cfg, suite, store, space, out: Path, provenance: str) -> dict:
    """points.csv, fronts.csv, pareto.png, fronts.md and stages.json from the store and the stage summaries."""
    summaries = sorted((json.loads(p.read_text()) for p in (out / "stages").glob("*_summary.json")),
                       key=lambda d: (d["family"], d["seed"]))
    points = collect(cfg, suite, store, summaries, space)
    points.to_csv(out / "points.csv", index=False)
    fronts = pd.concat([pareto(points[points["family"] == f]).assign(front=f)
                        for f in ("sampling", "one-shot", "dnas", "engineers")], ignore_index=True)
    fronts.to_csv(out / "fronts.csv", index=False)
    summary, matched = verdict(points)
    summary = summary.astype(object).where(summary.notna(), "not run")
    plot(points, out / "pareto.png", provenance)
    budget = pd.DataFrame(summaries)[["family", "seed", "spent_te", "wall_seconds"]] if summaries else pd.DataFrame()
    shown = fronts[["front", "method", "seed", "name", "flops", "ne", "auc"]]
    text = (f"# Rankitect: NE-vs-FLOPs fronts\n\n{provenance}\n\n"
            f"## Does a searcher's front dominate the engineers'?\n\n{markdown(summary)}\n"
            f"## Each model on the engineers' front vs each family's best at no more FLOPs\n\n{markdown(matched)}\n"
            f"## Fronts\n\n{markdown(shown)}"
            f"\n## One-shot and DNAS stages: budget spent and wall time\n\n{markdown(budget)}")
    (out / "fronts.md").write_text(text)
    (out / "stages.json").write_text(json.dumps(summaries, indent=1) + "\n")
    return {"points": len(points), "summary": summary.to_dict(orient="records")}


FAMILIES = ("sampling", "oneshot", "dnas")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ctrbench.search.rankitect", description=__doc__.split("\n\n")[0])
    ap.add_argument("config", help="the Rankitect file (suites/rankitect_search.yaml)")
    ap.add_argument("--out", help="results folder (default: the suite's results folder)")
    ap.add_argument("--families", default=",".join(FAMILIES), help="comma-separated, which to run now: "
                    f"{', '.join(FAMILIES)}; '' runs none (the report always reads every finished one)")
    ap.add_argument("--seeds", help="comma-separated search seeds to run now, in place of the file's (the report "
                    "reads every finished one)")
    args = ap.parse_args(argv)
    started, wall0 = time.strftime("%Y-%m-%d %H:%M:%S %Z"), time.perf_counter()
    try:
        cfg = load_config(args.config)
        suite = load_suite(Path(args.config).parent / cfg.suite)
        out = Path(args.out) if args.out else Path(suite.path).parent.parent / "results" / suite.name
        out.mkdir(parents=True, exist_ok=True)
        store = RunStore(out / "runs.sqlite")
        command = "python -m ctrbench.search.rankitect " + " ".join(argv if argv is not None else sys.argv[1:])
        families = {f for f in args.families.split(",") if f}
        if families - set(FAMILIES):
            raise ConfigError(f"unknown families {sorted(families - set(FAMILIES))} in --families; valid: "
                              f"{', '.join(FAMILIES)}")
        if "sampling" in families:
            run_suite(suite, store, command=command)
        stages = Stages(cfg, suite, store, out, command)
        torch.set_num_threads(stages.recipe.threads or 1)
        for seed in [int(x) for x in args.seeds.split(",")] if args.seeds else cfg.seeds:
            if "oneshot" in families:
                stages.oneshot(seed)
            if "dnas" in families:
                stages.dnas(seed)
        from ctrbench.measure import environment

        env = environment()
        provenance = (f"`{command}` · git {env.get('git_rev')} · {env.get('cpu')}, {env.get('cores')} cores · "
                      f"started {started}, {time.perf_counter() - wall0:.0f} s wall")
        result = write_results(cfg, suite, store, stages.space, out, provenance)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
