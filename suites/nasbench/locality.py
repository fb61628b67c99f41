"""Is the NASRec space local? Evolution can only beat random sampling where a mutant's AUC follows its parent's.
`make` writes a suite that trains one single-knob mutant (the space's own `mutate`, redrawn until it differs) of
each of N bench points (the seeded ones first), at the bench's recipe (defaults, datasets and measurement copied from
suites/nasbench_small.yaml); `analyse` compares each mutant's test AUC with its parent's (Spearman rho, Kendall
tau, median absolute difference; all pairs, and those where both learned) against random pairs of bench points and
against the same point's seed-to-seed difference, and counts the mutants that trained bit-identically.

    .venv/bin/python suites/nasbench/locality.py make --table results/nasbench/nasrec_small_criteo_x1.csv \
        --parents 40 --out suites/nasbench_locality.yaml
    .venv/bin/ctrbench run suites/nasbench_locality.yaml --executor process --workers 2
    .venv/bin/python suites/nasbench/locality.py analyse --store results/nasbench_locality/runs.sqlite \
        --bench results/nasbench --out results/nasbench/locality
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from scipy import stats

from ctrbench.runs.query import load_runs
from ctrbench.search.registry import get_space

BENCH_SUITE = Path(__file__).parents[1] / "nasbench_small.yaml"
SPACE, OPTIONS = "nasrec_small", {"scale": 0.125}


def make(table: Path, parents: int, seed: int, out: Path) -> None:
    bench = yaml.safe_load(BENCH_SUITE.read_text())
    space = get_space(SPACE, **OPTIONS)
    rows = pd.read_csv(table, dtype={"point_hash": str})
    rows = rows.sort_values("n_seeds", ascending=False, kind="stable").head(parents)  # the seeded points first
    rng = np.random.default_rng(seed)
    entries = []
    for h, text in zip(rows["point_hash"], rows["point"]):
        parent = space.from_json(text)
        child = space.mutate(parent, rng)
        while space.hash(child) == h:
            child = space.mutate(parent, rng)
        entries.append({"name": f"mutant_of_{h}", "model": space.model, "datasets": ["criteo_x1"],
                        "params": {**space.candidate(child)[0], "numeric_norm": True}})
    suite = {"name": "nasbench_locality",
             "description": f"One single-knob mutant of each of {parents} points of {table.name} (seeded first) "
                            f"(mutation seed {seed}), at CTR-NAS-Bench's recipe; written by "
                            "suites/nasbench/locality.py make.",
             "defaults": bench["defaults"], "datasets": bench["datasets"], "seeds": [0],
             "measure": bench["measure"], "entries": entries}
    out.write_text(yaml.safe_dump(suite, sort_keys=False, width=100))
    print(f"wrote {out}: {len(entries)} mutants")


LEARNED = 0.55  # below this test AUC an architecture did not learn (the bench's threshold)


def agreement(name: str, pairs: pd.DataFrame) -> dict:
    """How closely y follows x over pairs: Spearman rho, Kendall tau and the median |x - y|, on every pair and on
    the pairs where both learned (a point that fails dominates rank statistics of such small sets)."""
    out = {}
    for tag, sub in (("all", pairs), ("learned", pairs[(pairs["x"] >= LEARNED) & (pairs["y"] >= LEARNED)])):
        ok = len(sub) > 2
        out |= {f"{name}_{tag}_n": len(sub),
                f"{name}_{tag}_rho": float(stats.spearmanr(sub["x"], sub["y"]).statistic) if ok else None,
                f"{name}_{tag}_tau": float(stats.kendalltau(sub["x"], sub["y"]).statistic) if ok else None,
                f"{name}_{tag}_median_abs_diff": float(np.abs(sub["x"] - sub["y"]).median()) if ok else None}
    return out


def analyse(store: Path, bench: Path, out: Path, seed: int = 0) -> None:
    space = get_space(SPACE, **OPTIONS)
    table = pd.read_csv(bench / f"{SPACE}_criteo_x1.csv", dtype={"point_hash": str}).set_index("point_hash")
    pairs = []
    for r in load_runs(store, status="ok"):
        parent = r.entry.removeprefix("mutant_of_")
        pairs.append({"parent": parent, "child": space.hash(r.config["params"]["point"]),
                      "parent_auc": table.loc[parent, "auc"], "child_auc": r.auc,
                      "parent_seed_std": table.loc[parent, "auc_seed_std"]})
    pairs = pd.DataFrame(pairs)
    pairs.to_csv(out / "pairs.csv", index=False)
    rng = np.random.default_rng(seed)
    a = rng.choice(len(table), size=(2000, 2))
    a = a[a[:, 0] != a[:, 1]]
    randoms = pd.DataFrame({"x": table["auc"].to_numpy()[a[:, 0]], "y": table["auc"].to_numpy()[a[:, 1]]})
    runs = pd.read_csv(bench / "runs.csv", dtype={"point_hash": str})
    runs = runs[(runs["space"] == SPACE) & (runs["dataset"] == "criteo_x1")]
    seeded = runs.pivot_table(index="point_hash", columns="seed", values="auc").dropna()
    seeds = (pd.DataFrame({"x": seeded[0], "y": seeded[1]}) if {0, 1} <= set(seeded.columns)
             else pd.DataFrame(columns=["x", "y"], dtype=float))
    mutants = pairs.rename(columns={"parent_auc": "x", "child_auc": "y"})
    # a mutation of a knob the architecture does not use (an unread node's width, say) trains bit-identically
    same = mutants["x"] == mutants["y"]
    summary = {"mutant_pairs": len(pairs), "identical_mutants": int(same.sum()),
               "learned_threshold_auc": LEARNED,
               **agreement("mutants", mutants), **agreement("mutants_changed", mutants[~same]),
               **agreement("random_pairs", randoms), **agreement("seed0_vs_seed1", seeds)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument("--table", type=Path, required=True)
    m.add_argument("--parents", type=int, default=40)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--out", type=Path, required=True)
    a = sub.add_parser("analyse")
    a.add_argument("--store", type=Path, required=True)
    a.add_argument("--bench", type=Path, required=True)
    a.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    if args.cmd == "make":
        make(args.table, args.parents, args.seed, args.out)
    else:
        args.out.mkdir(parents=True, exist_ok=True)
        analyse(args.store, args.bench, args.out)


if __name__ == "__main__":
    main()
