"""Issue 17 item 5 (a): random search vs Optuna's TPE vs the automl searcher (predictor ensemble + REINFORCE) on
CTR-NAS-Bench's lookup, over many search seeds. Every searcher searches the `bench_table` space (the table's
points over `nasrec_small`), sees only the validation AUC (`valid_auc`, the lookup evaluator's value) and is
judged on the test AUC of its incumbent (best validation AUC so far): regret = the table's best test AUC minus the
incumbent's. The automl searcher's "real" low-fidelity evaluation is the lookup itself.
Writes lookup_regret.csv (every searcher x seed x trial), lookup_summary.csv and lookup_regret.png to --out.

    python suites/automl/lookup_compare.py --table results/nasbench/nasrec_small_criteo_x1.csv --seeds 20 --workers 4
"""
from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from curves import incumbents, mean_std, plot_curves
from ctrbench.search.base import run_search
from ctrbench.search.evaluators.lookup import LookupEvaluator, read_table
from ctrbench.search.registry import get_searcher_class


def searchers(args, space: dict) -> dict[str, dict]:
    """Each searcher's options (besides its seed): one budget, one metric, one evaluation."""
    common = {**space, "budget": args.budget, "metric": "auc", "evaluation": "lookup"}
    return {
        "random": common,
        "tpe": {**common, "n_startup_trials": args.initial},
        "automl": {**common, "initial": args.initial, "per_round": args.per_round, "policy_steps": args.policy_steps,
                   "predictor": {"epochs": args.predictor_epochs}},
    }


def search_rows(job: tuple) -> list[dict]:
    """One search (searcher name, its options, seed) on the table: its incumbent and regret after each trial."""
    name, opts, seed, table_path = job
    torch.set_num_threads(1)
    table = read_table(table_path, "auc")
    best_test = max(row["auc"] for row in table.values())
    cls = get_searcher_class(name)
    searcher = cls(cls.Params(**opts, seed=seed))
    evaluate = LookupEvaluator(searcher.space, table, "auc")
    evaluate.kinds = ("lookup",)
    history = run_search(searcher, evaluate).history
    values = [e.value if e.status == "ok" else None for e in history]
    rows = []
    for t, i in enumerate(incumbents(values, higher_is_better=True), start=1):
        inc = history[i] if i is not None else None
        test = inc.metrics["auc"] if inc is not None else np.nan
        rows.append({"searcher": name, "seed": seed, "trial": t,
                     "point_hash": searcher.space.hash(inc.candidate.point) if inc else "",
                     "incumbent_valid_auc": values[i] if inc else np.nan, "incumbent_test_auc": test,
                     "regret": best_test - test})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--table", default="results/nasbench/nasrec_small_criteo_x1.csv")
    ap.add_argument("--space", default="nasrec_small")
    ap.add_argument("--scale", type=float, default=0.125)
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--budget", type=int, default=30)
    ap.add_argument("--initial", type=int, default=10, help="automl's first round and TPE's random startup trials")
    ap.add_argument("--per-round", type=int, default=5)
    ap.add_argument("--policy-steps", type=int, default=50)
    ap.add_argument("--predictor-epochs", type=int, default=100)
    ap.add_argument("--workers", type=int, default=1, help="searches run in parallel processes")
    ap.add_argument("--out", default="results/automl")
    args = ap.parse_args()
    t0 = time.time()
    out = Path(args.out)
    space = {"space": "bench_table", "space_options": {"space": args.space, "table": args.table,
                                                        "space_options": {"scale": args.scale}}}
    table = read_table(args.table, "auc")
    best_test = max(row["auc"] for row in table.values())
    jobs = [(name, opts, seed, args.table) for name, opts in searchers(args, space).items()
            for seed in range(args.seeds)]
    rows = []
    with ProcessPoolExecutor(args.workers) as pool:
        for job, done in zip(jobs, pool.map(search_rows, jobs)):
            rows += done
            print(f"{job[0]} seed {job[2]}: {len(done)} trials, final regret {done[-1]['regret']:.5f} "
                  f"({time.time() - t0:.0f} s)", flush=True)
    frame = pd.DataFrame(rows)
    frame.to_csv(out / "lookup_regret.csv", index=False)
    checkpoints = sorted({10, 20, args.budget} & set(range(1, args.budget + 1)))
    summary = []
    for name, g in frame.groupby("searcher", sort=False):
        line = {"searcher": name, "seeds": g.seed.nunique()}
        for t in checkpoints:
            r = g[g.trial == t].regret
            line[f"regret@{t} mean"], line[f"regret@{t} std"] = r.mean(), r.std(ddof=1)
            line[f"found best@{t}"] = int((r <= 0).sum())
        summary.append(line)
    pd.DataFrame(summary).to_csv(out / "lookup_summary.csv", index=False)
    plot_curves(frame, "regret", "test-AUC regret of the incumbent",
                f"CTR-NAS-Bench lookup ({Path(args.table).name}, {len(table)} points)", out / "lookup_regret.png",
                log=True)
    for line in summary:
        print(json.dumps({k: (round(v, 6) if isinstance(v, float) else v) for k, v in line.items()}))
    for t in checkpoints:
        print(t, {n: mean_std(g[g.trial == t].regret) for n, g in frame.groupby("searcher", sort=False)})
    print(f"{len(table)} table points; best test AUC {best_test:.5f}; wall {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
