"""Issue 14 item 6: regularized evolution against random search on CTR-NAS-Bench's lookup, over many search
seeds: regret (table's best test AUC minus the test AUC of the point chosen on validation) after each query, a
table at fixed budgets, a paired test, the plot, and the table's neighbourhood structure (why evolution is or is
not ahead). Writes into --out: traces.csv, summary.csv, paired.csv, neighbourhood.csv, regret.png.

    .venv/bin/python suites/nasbench/search_on_table.py --table results/nasbench/nasrec_small_criteo_x1.csv \
        --space nasrec_small --scale 0.125 --seeds 30 --budget 64 --out results/nasbench/search
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib
import pandas as pd

from ctrbench.search.table_study import neighbourhood, paired_test, study, summary, table_space

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def searchers(space: dict, budget: int, population: int, sample_size: int, children: int) -> dict:
    return {"random": ("random", {**space, "budget": budget}),
            "evolution": ("evolution", {**space, "budget": budget, "population": population,
                                        "sample_size": sample_size, "children": children})}


def plot(traces: pd.DataFrame, path: Path, title: str) -> None:
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for label, g in traces.groupby("searcher"):
        by_q = g.groupby("query")["regret"]
        mean, sem = by_q.mean(), by_q.std(ddof=1) / by_q.count() ** 0.5
        ax.plot(mean.index, mean.values, label=f"{label} (mean over {g['seed'].nunique()} seeds)")
        ax.fill_between(mean.index, (mean - sem).values, (mean + sem).values, alpha=0.25)
    ax.set_xlabel("queries (table lookups)")
    ax.set_ylabel("regret: best test AUC - chosen point's test AUC")
    ax.set_yscale("log")
    ax.set_title(title, fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--table", required=True)
    ap.add_argument("--space", default="nasrec_small")
    ap.add_argument("--scale", type=float, default=0.125)
    ap.add_argument("--seeds", type=int, default=30)
    ap.add_argument("--budget", type=int, default=64)
    ap.add_argument("--population", type=int, default=16)
    ap.add_argument("--sample-size", type=int, default=8)
    ap.add_argument("--children", type=int, default=4)
    ap.add_argument("--at", default="8,16,32,64", help="budgets of the summary table")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    opts = {"scale": args.scale}
    space = table_space(args.table, args.space, opts)
    traces = study(searchers(space, args.budget, args.population, args.sample_size, args.children), args.table,
                   range(args.seeds))
    traces.to_csv(out / "traces.csv", index=False)
    at = [int(a) for a in args.at.split(",") if int(a) <= args.budget]
    summary(traces, at).to_csv(out / "summary.csv", index=False)
    pd.DataFrame([paired_test(traces, "evolution", "random", q) for q in at]).to_csv(out / "paired.csv", index=False)
    pd.DataFrame([neighbourhood(args.table, args.space, opts, k=k) for k in (1, 5, 10)]).to_csv(
        out / "neighbourhood.csv", index=False)
    plot(traces, out / "regret.png", f"{Path(args.table).name}: evolution (population {args.population}, tournament "
         f"{args.sample_size}, {args.children} children) vs random")
    print(f"wrote {out} in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
