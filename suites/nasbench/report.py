"""CTR-NAS-Bench's committed files from the bench suite's run store: the CSV tables (`ctrbench nasbench export`),
the AUC-vs-FLOPs plot, and stats.csv (per table: points, AUC quantiles, the share of points that did not learn,
FLOPs range, training time; the noise floor is seed_agreement.csv).

    .venv/bin/python suites/nasbench/report.py --store results/nasbench_small/runs.sqlite --out results/nasbench
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib
import pandas as pd

from ctrbench.search.bench_table import export

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

NOT_LEARNED_AUC = 0.55  # below this a point's test AUC is counted as "did not learn" in stats.csv


def stats(out: Path, tables: list[str]) -> pd.DataFrame:
    rows = []
    for name in tables:
        t = pd.read_csv(out / name)
        q = t["auc"].quantile([0.0, 0.1, 0.5, 0.9, 1.0])
        rows.append({"table": name, "points": len(t), "auc_min": q[0.0], "auc_p10": q[0.1], "auc_median": q[0.5],
                     "auc_p90": q[0.9], "auc_max": q[1.0], "not_learned": int((t["auc"] < NOT_LEARNED_AUC).sum()),
                     "flops_min": t["flops"].min(), "flops_max": t["flops"].max(),
                     "params_median": t["params"].median(), "wall_seconds_sum": t["wall_seconds"].sum(),
                     "with_3_seeds": int((t["n_seeds"] >= 3).sum()),
                     "auc_seed_std_median": t["auc_seed_std"].dropna().median() if t["auc_seed_std"].notna().any()
                     else None})
    return pd.DataFrame(rows)


def plot(out: Path, tables: list[str]) -> None:
    fig, ax = plt.subplots(figsize=(6.8, 4.4))
    for name, marker in zip(tables, "osd^v"):
        t = pd.read_csv(out / name)
        ax.scatter(t["flops"], t["auc"], s=12, marker=marker, alpha=0.7, label=f"{name[:-4]} ({len(t)} points)")
    ax.set_xscale("log")
    ax.set_xlabel("forward FLOPs per example (flop_counter, log scale)")
    ax.set_ylabel("test AUC (seed 0, trained from scratch)")
    lo = min(pd.read_csv(out / n)["auc"].quantile(0.02) for n in tables)
    ax.set_ylim(bottom=max(0.45, lo - 0.01))
    ax.set_title("CTR-NAS-Bench at the CPU scale (50k-row twins, <= 5 epochs)", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "auc_vs_flops.png", dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    out = Path(args.out)
    written = export(args.store, out)
    tables = sorted(n for n in written if n not in ("runs.csv", "seed_agreement.csv"))
    stats(out, tables).to_csv(out / "stats.csv", index=False)
    plot(out, tables)
    for name, rows in written.items():
        print(f"{out / name}: {rows} rows")


if __name__ == "__main__":
    main()
