"""CTR-NAS-Bench tables from a run store: every from-scratch training of a space point as one long row
(`runs.csv`), and one lookup table per (space, dataset) keyed by the space's hash of the point (what the `lookup`
evaluator reads), with the seed-0 training's metrics and, where a point was trained with several seeds, their
mean and spread. Searches define the bench: every finished `train` run of a search over a space is a row."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from ctrbench.runs.query import load_runs
from ctrbench.runs.store import RunStore
from ctrbench.search.registry import get_space

TEST_METRICS = ["auc", "logloss", "ne"]
METRICS = [*TEST_METRICS, *(f"valid_{m}" for m in TEST_METRICS)]  # the lookup evaluator answers with valid_*
RECORD_COSTS = ["train_samples_per_s", "infer_samples_per_s", "epochs_run", "train_seconds", "wall_seconds"]
COSTS = ["params", "flops", *RECORD_COSTS]
RUN_COLUMNS = ["space", "dataset", "point_hash", "seed", *METRICS, *COSTS, "point", "git_rev"]
TABLE_COLUMNS = ["point_hash", *METRICS, "params", "flops", "train_samples_per_s", "infer_samples_per_s",
                 "wall_seconds", "n_seeds", "auc_seed_mean", "auc_seed_std", "point"]


def bench_runs(store: str | os.PathLike, suite: str | None = None) -> pd.DataFrame:
    """One row per finished (status ok) training of a space point in `store`: RUN_COLUMNS. The space (name and
    options) comes from the run's search; the hash is that space's hash of the point."""
    st = RunStore(store, create=False)
    spaces: dict[str, tuple[str, object]] = {}
    rows = []
    for r in load_runs(st, suite=suite, status="ok"):
        if not r.search_id:
            continue
        if r.search_id not in spaces:
            opts = (st.get_search(r.search_id) or {}).get("config", {}).get("options", {})
            name = opts.get("space")
            spaces[r.search_id] = (name, get_space(name, **opts.get("space_options", {})) if name else None)
        name, space = spaces[r.search_id]
        point = r.config.get("params", {}).get("point")
        if space is None or point is None:
            continue
        rows.append({"space": name, "dataset": r.dataset, "point_hash": space.hash(point), "seed": r.seed,
                     **{m: getattr(r, m) for m in TEST_METRICS},
                     **{f"valid_{m}": (r.valid or {}).get(m) for m in TEST_METRICS}, "params": r.params, "flops": r.flops_fwd_per_sample,
                     **{c: getattr(r, c) for c in RECORD_COSTS}, "point": space.to_json(point), "git_rev": r.git_rev})
    frame = pd.DataFrame(rows, columns=RUN_COLUMNS)
    return frame.drop_duplicates(["space", "dataset", "point_hash", "seed"], keep="last").reset_index(drop=True)


def lookup_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One (space, dataset)'s runs as the lookup table: the seed-0 training's metrics and costs per point (the
    lowest seed where seed 0 is missing), the number of seeds and their AUC mean and standard deviation."""
    out = []
    for point_hash, group in runs.groupby("point_hash", sort=False):
        first = group.sort_values("seed").iloc[0]
        row = {c: first[c] for c in TABLE_COLUMNS if c in group.columns}
        row["n_seeds"] = len(group)
        row["auc_seed_mean"] = group["auc"].mean()
        row["auc_seed_std"] = group["auc"].std(ddof=1) if len(group) > 1 else np.nan
        out.append(row)
    return pd.DataFrame(out, columns=TABLE_COLUMNS)


def seed_rank_agreement(runs: pd.DataFrame, metric: str = "auc") -> pd.DataFrame:
    """The table's noise floor: for every pair of seeds, Kendall's tau and Spearman's rho between the rankings of
    the points trained with both (the ceiling any proxy or predictor can reach against one seed's truth)."""
    wide = runs.pivot_table(index="point_hash", columns="seed", values=metric)
    seeds = list(wide.columns)
    rows = []
    for i, a in enumerate(seeds):
        for b in seeds[i + 1:]:
            both = wide[[a, b]].dropna()
            if len(both) < 3:
                continue
            rows.append({"seed_a": a, "seed_b": b, "points": len(both),
                         "kendall_tau": stats.kendalltau(both[a], both[b]).statistic,
                         "spearman_rho": stats.spearmanr(both[a], both[b]).statistic})
    return pd.DataFrame(rows, columns=["seed_a", "seed_b", "points", "kendall_tau", "spearman_rho"])


def export(store: str | os.PathLike, out: str | os.PathLike, suite: str | None = None) -> dict[str, int]:
    """Write runs.csv, one <space>_<dataset>.csv lookup table per pair and seed_agreement.csv into `out`;
    returns {file name: rows}."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runs = bench_runs(store, suite)
    written = {"runs.csv": len(runs)}
    runs.to_csv(out / "runs.csv", index=False)
    agreement = []
    for (space, dataset), group in runs.groupby(["space", "dataset"], sort=True):
        name = f"{space}_{dataset}.csv"
        table = lookup_table(group)
        table.to_csv(out / name, index=False)
        written[name] = len(table)
        pairs = seed_rank_agreement(group)
        if len(pairs):
            agreement.append(pairs.assign(space=space, dataset=dataset))
    if agreement:
        frame = pd.concat(agreement, ignore_index=True)
        frame[["space", "dataset", *frame.columns[:-2]]].to_csv(out / "seed_agreement.csv", index=False)
        written["seed_agreement.csv"] = len(frame)
    return written

