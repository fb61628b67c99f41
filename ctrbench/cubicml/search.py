"""The search over system (and model-size) configs at a fixed number of real measurements: the predictor-driven
search (measure a few random configs, then in rounds: refit the performance model, predict every unmeasured
config, measure the top k), random search and Optuna's TPE. Here "measuring" a config looks up its stored
measurement in the performance dataset (the exhaustive grid), so the strategies are compared on the same
measurements and against the grid's best. ctrbench's design (specs/search.md §7 stand-in), not the paper's."""
from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd

from ctrbench.cubicml.dataset import PerfDataError
from ctrbench.cubicml.model import TARGET, Predictor

KNOBS = ("threads", "batch_size", "world_size", "prefetch", "embedding_dim", "mlp_units_total", "embedding_backend",
         "embedding_gradients", "dtype", "optimizer")  # what a config chooses; the rest follows from it
STRATEGIES = ("predictor", "random", "optuna")


def search_knobs(pool: pd.DataFrame) -> list[str]:
    """The knobs that vary in the pool (the search space's dimensions)."""
    return [k for k in KNOBS if pool[k].astype(str).nunique() > 1]


def _random(pool: pd.DataFrame, budget: int, rng: np.random.Generator, **_) -> list[int]:
    return list(rng.permutation(len(pool))[:budget])


def _predictor(pool: pd.DataFrame, budget: int, rng: np.random.Generator, *, prior: pd.DataFrame | None = None,
               initial: int | None = None, per_round: int | None = None, members: int = 10, epochs: int = 300,
               seed: int = 0) -> list[int]:
    """Random initial configs, then rounds of refit -> predict -> measure the top `per_round` unmeasured ones.
    `prior` rows (measurements of other models or datasets) join every fit: what the run history already knows."""
    initial = initial or max(3, budget // 4)
    per_round = per_round or max(1, budget // 5)
    chosen = list(rng.permutation(len(pool))[:min(initial, budget)])
    while len(chosen) < budget:
        seen = pool.iloc[chosen]
        train = seen if prior is None else pd.concat([prior, seen], ignore_index=True)
        if train[TARGET].nunique() < 2:  # nothing to rank yet
            rest = [i for i in rng.permutation(len(pool)) if i not in set(chosen)]
            chosen.append(rest[0])
            continue
        model = Predictor("mlp_rank", seed=seed + len(chosen), members=members, epochs=epochs).fit(train)
        unseen = np.array([i for i in range(len(pool)) if i not in set(chosen)])
        score = model.predict(pool.iloc[unseen])
        take = unseen[np.argsort(-score, kind="stable")[:min(per_round, budget - len(chosen))]]
        chosen += [int(i) for i in take]
    return chosen


def _optuna(pool: pd.DataFrame, budget: int, rng: np.random.Generator, *, seed: int = 0, **_) -> list[int]:
    """TPE over the pool's knobs (each a categorical of the values the pool has). A proposal the grid lacks is
    snapped to the unmeasured config sharing most of its knob values; a repeat is told its known value and costs
    no new measurement."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    knobs = search_knobs(pool)
    values = {k: sorted(pool[k].astype(str).unique()) for k in knobs}
    keys = pool[knobs].astype(str).to_numpy()
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    chosen: list[int] = []
    for _ in range(50 * budget):
        if len(chosen) >= budget:
            break
        trial = study.ask()
        want = np.array([trial.suggest_categorical(k, values[k]) for k in knobs])
        exact = np.flatnonzero((keys == want).all(axis=1))
        hit = [i for i in exact if i in chosen]
        if hit:
            study.tell(trial, float(np.log(pool[TARGET].iloc[hit[0]])))
            continue
        unseen = np.array([i for i in range(len(pool)) if i not in set(chosen)])
        matches = (keys[unseen] == want).sum(axis=1)
        best = unseen[matches == matches.max()]
        i = int(rng.choice(best))
        chosen.append(i)
        study.tell(trial, float(np.log(pool[TARGET].iloc[i])))
    rest = [i for i in rng.permutation(len(pool)) if i not in set(chosen)]
    return chosen + rest[: budget - len(chosen)]


SEARCHERS: dict[str, Callable[..., list[int]]] = {"predictor": _predictor, "random": _random, "optuna": _optuna}


def run_search(pool: pd.DataFrame, strategy: str, budget: int, seed: int = 0, **kw) -> pd.DataFrame:
    """The measurements `strategy` takes on `pool` (one config per row, TARGET measured): one row per measurement
    with the best throughput found so far and its share of the grid's best."""
    if strategy not in SEARCHERS:
        raise PerfDataError(f"unknown strategy {strategy!r}; valid: {', '.join(SEARCHERS)}")
    if not 1 <= budget <= len(pool):
        raise PerfDataError(f"budget {budget} must be between 1 and the grid's {len(pool)} configs")
    pool = pool.reset_index(drop=True)
    rng = np.random.default_rng(seed)
    kw = {"seed": seed, **kw} if strategy != "random" else {}
    order = SEARCHERS[strategy](pool, budget, rng, **kw)
    found = pool[TARGET].to_numpy(float)[order]
    best = np.maximum.accumulate(found)
    return pd.DataFrame({"strategy": strategy, "seed": seed, "measurements": np.arange(1, len(order) + 1),
                         "run_id": pool["run_id"].to_numpy()[order], "measured": found, "best_so_far": best,
                         "share_of_grid_best": best / pool[TARGET].max()})


GOAL_SHARE = 0.95  # the goal: within 5% of the exhaustive grid's best throughput


def per_seed(traces: pd.DataFrame) -> pd.DataFrame:
    """One row per strategy x seed of `traces`: the share of the grid's best at the end (`final_share`) and the
    measurements that first reached GOAL_SHARE (`to_goal`, NaN where none did)."""
    keys = ["strategy", "seed"]
    final = traces.groupby(keys, sort=False)["share_of_grid_best"].max()
    reach = traces[traces["share_of_grid_best"] >= GOAL_SHARE].groupby(keys)["measurements"].min()
    return pd.DataFrame({"final_share": final, "to_goal": reach.reindex(final.index).astype(float)}).reset_index()


def compare(pool: pd.DataFrame, budget: int, seeds, strategies=STRATEGIES, **kw) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(every strategy x seed trace, summary per strategy: mean share of the grid's best at the budget, the share
    of seeds within 5% of it, and the mean measurements needed to get there (None where a seed never did))."""
    traces = pd.concat([run_search(pool, s, budget, seed, **(kw if s == "predictor" else {}))
                        for s in strategies for seed in seeds], ignore_index=True)
    rows = []
    for s, g in per_seed(traces).groupby("strategy", sort=False):
        rows.append({"strategy": s, "budget": budget, "grid": len(pool), "seeds": len(g),
                     "mean_share_of_best": float(g.final_share.mean()),
                     "within_5pct": float((g.final_share >= GOAL_SHARE).mean()),
                     "mean_measurements_to_5pct": float(g.to_goal.mean()) if g.to_goal.notna().all() else None})
    return traces, pd.DataFrame(rows)


def plot_traces(traces: pd.DataFrame, path, title: str) -> None:
    """Best throughput found (share of the grid's best) vs real measurements, mean and range over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for s, g in traces.groupby("strategy", sort=False):
        stat = g.groupby("measurements")["share_of_grid_best"].agg(["mean", "min", "max"])
        ax.plot(stat.index, stat["mean"], label=s)
        ax.fill_between(stat.index, stat["min"], stat["max"], alpha=0.15)
    ax.axhline(GOAL_SHARE, color="k", ls="--", lw=1, label="5% of the grid's best")
    ax.set(xlabel="real measurements", ylabel="best train samples/s / grid best", title=title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
