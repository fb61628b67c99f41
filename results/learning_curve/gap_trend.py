"""Gap to the oracle against training rows, per model, from this folder's runs.csv; a power-law trend
(log gap = a + b log rows, least squares over the largest `--last` sizes) and the training rows at which it
reaches `--target` (0.01 AUC). Prints a markdown table; results/learning_curve/README.md quotes it.

    python results/learning_curve/gap_trend.py [--last 3] [--target 0.01]
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np

from ctrbench.harness.report import read_csv

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--last", type=int, default=3, help="fit over this many largest sizes per model")
    ap.add_argument("--target", type=float, default=0.01, help="gap to the oracle to reach (AUC)")
    args = ap.parse_args()
    runs = read_csv(HERE / "runs.csv")
    runs = runs[runs["status"] == "ok"].copy()
    runs["train_rows"] = runs["entry"].map(lambda e: int(re.search(r"max_train_rows=(\d+)", e).group(1)))
    runs["gap"] = runs["oracle_auc"] - runs["auc"]
    print(f"| model | training rows: gap to the oracle | within {args.target} at | power-law fit over the largest "
          f"{args.last} (gap ~ rows^b) | {args.target} reached at (fit) |")
    print("|---|---|---|---|---|")
    for model, g in runs.groupby("model", sort=False):
        g = g.sort_values("train_rows")
        points = ", ".join(f"{r:,}: {gap:.4f}" for r, gap in zip(g["train_rows"], g["gap"]))
        within = g[g["gap"] <= args.target]
        first = f"{int(within['train_rows'].iloc[0]):,}" if len(within) else "not measured"
        tail = g.tail(args.last)
        if len(tail) < 2 or (tail["gap"] <= 0).any():
            print(f"| {model} | {points} | {first} | – | – |")
            continue
        b, a = np.polyfit(np.log(tail["train_rows"]), np.log(tail["gap"]), 1)
        reach = f"{np.exp((np.log(args.target) - a) / b):,.0f} rows" if b < 0 else "never (gap not falling)"
        print(f"| {model} | {points} | {first} | b = {b:.2f} (x3 rows: gap x {3 ** b:.2f}) | {reach} |")


if __name__ == "__main__":
    main()
