"""Does the run history help CubicML's search? Pairs each predictor-driven search of `search/` (fitted on its own
measurements only) with the same search of `search_prior/` (also fitted on every other model's and twin's
measurements), by model, twin and seed, from their traces. Writes prior_vs_own.csv and prints a Markdown table.

    python results/cubicml/compare_prior.py --own results/cubicml/search --prior results/cubicml/search_prior
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
from scipy.stats import wilcoxon

from ctrbench.cubicml.search import per_seed


def per_search(traces: pd.DataFrame) -> pd.DataFrame:
    """One row per predictor search: share of the grid's best at the end, measurements to GOAL_SHARE (NaN if
    never), and the budget."""
    out = per_seed(traces[traces.strategy == "predictor"]).drop(columns="strategy")
    return out.assign(seed=out.seed.astype(int), budget=int(traces.measurements.max()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--own", type=Path, required=True)
    ap.add_argument("--prior", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=None, help="CSV path (default: <prior>/prior_vs_own.csv)")
    args = ap.parse_args()
    rows = []
    for path in sorted(args.prior.glob("search_traces_*.csv")):
        pair = path.stem.removeprefix("search_traces_")
        own = per_search(pd.read_csv(args.own / path.name))
        prior = per_search(pd.read_csv(path))
        both = own.merge(prior, on=["seed", "budget"], suffixes=("_own", "_prior"))
        both.insert(0, "pair", pair)
        rows.append(both)
    df = pd.concat(rows, ignore_index=True)
    out = args.out or args.prior / "prior_vs_own.csv"
    df.to_csv(out, index=False)

    # a search that never reached the goal counts as budget + 1 measurements (a lower bound of its cost)
    cost_own = df.to_goal_own.fillna(df.budget + 1)
    cost_prior = df.to_goal_prior.fillna(df.budget + 1)
    print("| pair | own: final share / reached / measurements to 95% | with the history: final share / reached / "
          "measurements |")
    print("|---|---|---|")
    for pair, g in df.groupby("pair", sort=False):
        print(f"| {pair} | {g.final_share_own.mean():.3f} / {g.to_goal_own.notna().sum()}/{len(g)} / "
              f"{g.to_goal_own.mean():.1f} | {g.final_share_prior.mean():.3f} / {g.to_goal_prior.notna().sum()}/"
              f"{len(g)} / {g.to_goal_prior.mean():.1f} |")
    print(f"| **all {len(df)}** | {df.final_share_own.mean():.3f} / {df.to_goal_own.notna().sum()}/{len(df)} / "
          f"{cost_own.mean():.2f}* | {df.final_share_prior.mean():.3f} / {df.to_goal_prior.notna().sum()}/{len(df)} / "
          f"{cost_prior.mean():.2f}* |")
    diff = cost_prior - cost_own
    nonzero = diff[diff != 0]
    p = wilcoxon(nonzero).pvalue if len(nonzero) >= 1 else float("nan")
    print(f"\n*measurements to 95%, a search that never reached it counted as budget + 1. Paired by pair and seed: "
          f"history fewer in {(diff < 0).sum()}, more in {(diff > 0).sum()}, equal in {(diff == 0).sum()} of "
          f"{len(df)}; mean difference {diff.mean():+.2f} measurements (Wilcoxon signed-rank p {p:.2g}); final share "
          f"difference {(df.final_share_prior - df.final_share_own).mean():+.3f}.")


if __name__ == "__main__":
    main()
