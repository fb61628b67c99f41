"""Searchers compared on a benchmark table at no training cost: each searcher runs over the table's points
(space `bench_table`) with the `lookup` evaluator for many search seeds; after every query, the point it would
return (best on validation so far) is judged by its test metric, as regret to the table's best test value.
Also the table's neighbourhood structure, which decides whether a local searcher can beat random sampling:
how well a point's metric predicts its nearest table neighbours' (fitness-distance correlation)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from ctrbench.metrics import METRIC_DIRECTIONS
from ctrbench.search.base import run_search
from ctrbench.search.evaluators.base import dispatch
from ctrbench.search.evaluators.lookup import LookupEvaluator, read_table
from ctrbench.search.registry import get_searcher_class, get_space

TRACE_COLUMNS = ["searcher", "seed", "query", "point_hash", "valid", "test", "chosen_hash", "chosen_test", "regret"]


def table_space(table: str | Path, space: str, space_options: dict) -> dict:
    """The `space` / `space_options` of a searcher over `table`'s points of `space`."""
    return {"space": "bench_table", "space_options": {"space": space, "table": str(table),
                                                      "space_options": space_options}}


def trace(searcher: str, options: dict, table: str | Path, metric: str = "auc", seed: int = 0) -> pd.DataFrame:
    """One search over the table: a row per query (TRACE_COLUMNS). `chosen` is the best point on validation so
    far (ties to the earlier), `regret` the table's best test value minus the chosen point's (>= 0; lower is
    better for either direction of `metric`)."""
    cls = get_searcher_class(searcher)
    s = cls(cls.Params(**{**options, "seed": seed, "evaluation": "lookup", "metric": metric}))
    rows = read_table(table, metric)
    result = run_search(s, dispatch({"lookup": LookupEvaluator(s.space, rows, metric)}))
    sign = METRIC_DIRECTIONS[metric]
    best_test = max(sign * r[metric] for r in rows.values())
    out, chosen = [], None
    for q, e in enumerate(result.history, start=1):
        h = s.space.hash(e.candidate.point)
        if e.status == "ok" and (chosen is None or sign * e.value > sign * chosen[1]):
            chosen = (h, e.value, rows[h][metric])
        out.append({"searcher": searcher, "seed": seed, "query": q, "point_hash": h, "valid": e.value,
                    "test": rows.get(h, {}).get(metric), "chosen_hash": chosen and chosen[0],
                    "chosen_test": chosen and chosen[2],
                    "regret": None if chosen is None else best_test - sign * chosen[2]})
    return pd.DataFrame(out, columns=TRACE_COLUMNS)


def study(searchers: dict[str, tuple[str, dict]], table: str | Path, seeds: range | list[int],
          metric: str = "auc") -> pd.DataFrame:
    """Every searcher ({label: (registered name, options)}) over every seed; the traces, labelled."""
    frames = [trace(name, opts, table, metric, seed).assign(searcher=label)
              for label, (name, opts) in searchers.items() for seed in seeds]
    return pd.concat(frames, ignore_index=True)


def summary(traces: pd.DataFrame, at: list[int]) -> pd.DataFrame:
    """Regret after `at` queries per searcher: mean, std and standard error over seeds, the median, and the share
    of seeds that found the table's best."""
    rows = []
    for (label, q), g in traces[traces["query"].isin(at)].groupby(["searcher", "query"], sort=True):
        r = g["regret"].astype(float)
        rows.append({"searcher": label, "queries": q, "seeds": len(r), "regret_mean": r.mean(),
                     "regret_std": r.std(ddof=1), "regret_sem": r.std(ddof=1) / np.sqrt(len(r)),
                     "regret_median": r.median(), "found_best": float((r <= 1e-12).mean())})
    return pd.DataFrame(rows)


def paired_test(traces: pd.DataFrame, a: str, b: str, query: int) -> dict:
    """Wilcoxon signed-rank test of regret after `query` queries, searcher `a` vs `b`, paired by search seed."""
    at = traces[traces["query"] == query].pivot(index="seed", columns="searcher", values="regret")
    diff = (at[a] - at[b]).astype(float)
    p = stats.wilcoxon(diff).pvalue if (diff != 0).any() else 1.0
    return {"a": a, "b": b, "queries": query, "seeds": len(diff), "mean_diff": diff.mean(),
            "a_better": int((diff < 0).sum()), "b_better": int((diff > 0).sum()), "p_wilcoxon": float(p)}


def neighbourhood(table: str | Path, space: str, space_options: dict, metric: str = "auc", k: int = 5) -> dict:
    """How local the table's landscape is: Spearman rho between each point's test metric and the mean of its `k`
    nearest table neighbours' (encoding L1 distance, the distance mutations are snapped by), the same for `k`
    random other points (the null), and the fitness-distance correlation (rho between a point's distance to the
    table's best and its metric)."""
    ts = get_space("bench_table", space=space, table=str(table), space_options=space_options, k=k)
    frame = pd.read_csv(table, dtype={"point_hash": str}).set_index("point_hash")
    value = np.array([frame.loc[h, metric] for h in ts.hashes], dtype=float)
    near = np.array([np.mean([value[ts.row[ts.hash(n)]] for n in ts.neighbours(p)]) for p in ts.points])
    rng = np.random.default_rng(0)
    rand = np.array([value[rng.choice(np.delete(np.arange(len(value)), i), k, replace=False)].mean()
                     for i in range(len(value))])
    best = int(np.argmax(METRIC_DIRECTIONS[metric] * value))
    dist = np.abs(ts.codes - ts.codes[best]).sum(axis=1)
    keep = np.arange(len(value)) != best
    return {"points": len(value), "k": k,
            "rho_point_vs_neighbours": float(stats.spearmanr(value, near).statistic),
            "rho_point_vs_random": float(stats.spearmanr(value, rand).statistic),
            "fdc_rho": float(stats.spearmanr(dist[keep], value[keep]).statistic)}

