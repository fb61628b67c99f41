"""Issue 17 item 5 (b), the analysis of `ctrbench run suites/automl.yaml`: for each search (random / tpe / automl x
search seed) the best-so-far validation NE against trials, its winner (the best validation NE of its candidates,
as the searcher reports it) with test NE, FLOPs and throughput, and the NE gain (%) of the winner's test NE over
the baseline, the zoo model at its defaults with the best validation NE (negative = better, as the paper reports).
Reads the suite's run store; writes twin_trials.csv, twin_winners.csv and twin_best_so_far.png to --out.

    python suites/automl/twin_compare.py [--store results/automl/runs.sqlite --out results/automl]
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from curves import incumbents, mean_std, plot_curves
from ctrbench.runs.store import RunStore

SEARCH_ENTRY = re.compile(r"^(?P<searcher>[a-z]+)_s(?P<seed>\d+)$")


def record_row(r) -> dict:
    """The columns the analyses read from one run record (and what a retrain of it needs: model, params, train)."""
    return {"entry": r.entry, "candidate": r.candidate_index, "seed": r.config.get("seed"), "status": r.status,
            "rows": r.config.get("rows"), "model_params": r.config.get("params", {}),
            "train_config": r.config.get("train", {}),
            "valid_ne": (r.valid or {}).get("ne"), "test_ne": r.ne, "test_auc": r.auc, "flops": r.flops_fwd_per_sample,
            "params": r.params, "train_samples_per_s": r.train_samples_per_s,
            "infer_samples_per_s": r.infer_samples_per_s, "model": r.model,
            "layers": "-".join(f"{m}{w}" for m, w in zip(r.config.get("params", {}).get("layers", []),
                                                          r.config.get("params", {}).get("widths", [])))}


def load_runs(store: str, suite: str) -> pd.DataFrame:
    """Every run of `suite` in the store as a row (the last record of each entry x candidate x training seed)."""
    runs = pd.DataFrame([record_row(r) for r in RunStore(store).records(suite=suite)])
    return runs.drop_duplicates(["entry", "candidate", "seed"], keep="last")


def zoo_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The finished zoo runs (the models at their defaults), best validation NE first."""
    return runs[runs.candidate.isna() & (runs.status == "ok")].sort_values("valid_ne")


def search_winners(runs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(trials, winners): each search's best-so-far curve per trial and its winner (the best validation NE)."""
    trials, winners = [], []
    for entry, g in runs[runs.candidate.notna()].groupby("entry"):
        m = SEARCH_ENTRY.match(entry)
        g = g.sort_values("candidate")
        values = [v if s == "ok" else None for v, s in zip(g.valid_ne, g.status)]
        inc = incumbents(values, higher_is_better=False)
        for t, (i, (_, row)) in enumerate(zip(inc, g.iterrows()), start=1):
            best = g.iloc[i] if i is not None else None
            trials.append({"searcher": m["searcher"], "seed": int(m["seed"]), "trial": t, "valid_ne": row.valid_ne,
                           "best_valid_ne": best.valid_ne if best is not None else None,
                           "best_test_ne": best.test_ne if best is not None else None})
        w = g.iloc[inc[-1]]
        winners.append({"searcher": m["searcher"], "seed": int(m["seed"]), "trials": len(g), "entry": entry,
                        "candidate": int(w.candidate), "valid_ne": w.valid_ne, "test_ne": w.test_ne,
                        "test_auc": w.test_auc, "flops": w.flops, "params": w.params,
                        "train_samples_per_s": w.train_samples_per_s, "infer_samples_per_s": w.infer_samples_per_s,
                        "layers": w.layers})
    return pd.DataFrame(trials), pd.DataFrame(winners).sort_values(["searcher", "seed"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", default="results/automl/runs.sqlite")
    ap.add_argument("--suite", default="automl")
    ap.add_argument("--out", default="results/automl")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs = load_runs(args.store, args.suite)
    zoo = zoo_runs(runs)
    base = zoo.iloc[0]
    print("zoo (same fidelity):\n" + zoo[["entry", "valid_ne", "test_ne", "test_auc", "flops"]].to_string(index=False))
    trials, winners = search_winners(runs)
    winners.insert(winners.columns.get_loc("test_auc") + 1, "ne_gain_pct",
                   100 * (winners.test_ne - base.test_ne) / base.test_ne)
    trials.to_csv(out / "twin_trials.csv", index=False)
    winners.to_csv(out / "twin_winners.csv", index=False)
    plot_curves(trials, "best_valid_ne", "best-so-far validation NE (low fidelity)",
                f"dhen space, {base.rows:,}-row Criteo twin ({args.suite})", out / "twin_best_so_far.png",
                baseline=(f"zoo best at defaults ({base.entry})", base.valid_ne))
    print(f"baseline {base.entry}: valid NE {base.valid_ne:.5f}, test NE {base.test_ne:.5f}, FLOPs {base.flops:.3g}, "
          f"train {base.train_samples_per_s:.3g}/s, infer {base.infer_samples_per_s:.3g}/s")
    print(winners.to_string(index=False))
    order = [s for s in ("random", "tpe", "automl") if s in set(winners.searcher)]
    print("| searcher | seeds | NE gain % (mean ± std) | test NE | FLOPs | train samples/s | infer samples/s |")
    print("|---|---|---|---|---|---|---|")
    for s in order:
        w = winners[winners.searcher == s]
        print(f"| {s} | {len(w)} | {mean_std(w.ne_gain_pct)} | {mean_std(w.test_ne)} | {mean_std(w.flops)} | "
              f"{mean_std(w.train_samples_per_s)} | {mean_std(w.infer_samples_per_s)} |")
    space_summary(runs, base)


def space_summary(runs: pd.DataFrame, base: pd.Series) -> None:
    """Where the searched space stands against the baseline: every trial of every search pooled."""
    c = runs[runs.candidate.notna() & (runs.status == "ok")].copy()
    c["interaction_layers"] = [sum(m != "none" for m in p.get("layers", [])) for p in c.model_params]
    c["lr"] = [t.get("lr") for t in c.train_config]
    rho = spearmanr(c.valid_ne, np.log(c.flops))
    print(f"{len(c)} finished trials: best validation NE {c.valid_ne.min():.4f} (baseline {base.valid_ne:.4f}), "
          f"{(c.valid_ne < base.valid_ne).sum()} better than the baseline; best test NE {c.test_ne.min():.4f} "
          f"(baseline {base.test_ne:.4f}); Spearman(validation NE, log FLOPs) {rho.statistic:.2f} "
          f"(p {rho.pvalue:.1g})")
    for key in ("interaction_layers", "lr"):
        print(c.groupby(key).valid_ne.agg(["count", "min", "median"]).round(4).to_string())


if __name__ == "__main__":
    main()
