"""`ctrbench cubicml export | fit | search`: the performance dataset from run stores, the performance model's
held-out evaluation, and the search comparison on the dataset's grid."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from ctrbench.cubicml.dataset import PerfDataError, export, noise_floor, read

if TYPE_CHECKING:
    import pandas as pd


def _clean(df, include_loaded: bool):
    """The rows a model may learn from: measured on a quiet machine unless `include_loaded`."""
    if include_loaded:
        return df
    quiet = df[df["loaded"] != 1]
    if quiet.empty:
        raise PerfDataError(f"all {len(df)} measurements were taken on a loaded machine (flag `loaded`); measure on "
                            "a quiet machine, or pass --include-loaded to use them anyway")
    return quiet


def _export(args) -> int:
    wide = export(args.store, args.out)
    Console().print(f"{args.out}/perf_long.csv: {len(wide)} measured runs "
                    f"({int((wide['loaded'] == 1).sum())} flagged loaded), schema.json, perf_wide.csv")
    return 0


def _fit(args) -> int:
    from ctrbench.cubicml.model import PREDICTORS, evaluate, plot_predicted_vs_measured

    df = _clean(read(args.data), args.include_loaded)
    preds, metrics = evaluate(df, kinds=args.predictors or PREDICTORS, folds=args.folds, seed=args.seed,
                              members=args.members, epochs=args.epochs)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    preds.to_csv(out / "predictions.csv", index=False)
    report = {"rows": len(df), "models": sorted(df["model"].unique()), "include_loaded": args.include_loaded,
              "noise_floor": noise_floor(df), "metrics": metrics}
    (out / "metrics.json").write_text(json.dumps(report, indent=1) + "\n")
    plot_predicted_vs_measured(preds, out / "predicted_vs_measured.png")
    console = Console()
    for name, m in metrics.items():
        console.print(f"{name:20s} spearman {m['spearman_within_fold']:.3f} kendall {m['kendall_within_fold']:.3f} "
                      f"mape {'-' if m['mape'] is None else format(m['mape'], '.3f')}")
    console.print(f"noise floor: {report['noise_floor']}; wrote {out}/metrics.json, predictions.csv, "
                  "predicted_vs_measured.png")
    return 0


PRIOR_SCOPES = ("other-runs", "other-models")


def prior_rows(df: pd.DataFrame, model: str, dataset: str, scope: str | None) -> pd.DataFrame | None:
    """The run history the search's predictor also learns from: `other-runs`, every measurement but this model x
    dataset's own grid (the same model on other datasets included); `other-models`, only other models'; None, none."""
    if scope is None:
        return None
    if scope == "other-runs":
        return df[~((df["model"] == model) & (df["dataset"] == dataset))]
    if scope == "other-models":
        return df[df["model"] != model]
    raise ValueError(f"prior scope {scope!r}: expected one of {PRIOR_SCOPES}")


def _search(args) -> int:
    from ctrbench.cubicml.search import compare, plot_traces

    df = _clean(read(args.data), args.include_loaded)
    mask = (df["model"] == args.model) & (df["dataset"] == args.dataset)
    pool = df[mask].reset_index(drop=True)
    if pool.empty:
        raise PerfDataError(f"no measured configs of model {args.model!r} on {args.dataset!r}; the dataset has "
                            f"{sorted(set(zip(df['model'], df['dataset'])))}")
    pool = pool[pool["repeat"] == 0].reset_index(drop=True)  # one measurement per config
    budget = args.budget or max(2, round(args.budget_share * len(pool)))
    prior = prior_rows(df, args.model, args.dataset, args.prior)
    traces, summary = compare(pool, budget, [int(s) for s in args.seeds.split(",")], prior=prior,
                              members=args.members, epochs=args.epochs)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = f"{args.model}_{args.dataset}"
    traces.to_csv(out / f"search_traces_{tag}.csv", index=False)
    summary.to_csv(out / f"search_summary_{tag}.csv", index=False)
    plot_traces(traces, out / f"search_{tag}.png", f"{args.model} on {args.dataset}: {len(pool)}-config grid")
    Console().print(summary.to_string(index=False))
    return 0


def add_commands(sub) -> None:
    cubic = sub.add_parser("cubicml", help="CubicML: performance dataset, performance model, system-config search")
    cmds = cubic.add_subparsers(dest="cubicml_command", required=True, metavar="ACTION")
    p = cmds.add_parser("export", help="the performance dataset (long format, versioned schema) from run stores",
                        description=export.__doc__)
    p.add_argument("--store", action="append", required=True, help="a run store (repeat for several)")
    p.add_argument("--out", required=True, help="folder for perf_long.csv, perf_wide.csv, schema.json")
    p.set_defaults(func=_export)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data", required=True, help="an exported dataset folder (or its perf_long.csv)")
    common.add_argument("--out", required=True, help="folder for the outputs")
    common.add_argument("--include-loaded", action="store_true", help="learn from measurements flagged loaded too")
    common.add_argument("--members", type=int, default=10, help="MLP ensemble members")
    common.add_argument("--epochs", type=int, default=300, help="MLP full-batch training steps per fit")
    p = cmds.add_parser("fit", parents=[common], help="held-out evaluation of the performance model (random split and "
                        "leave-one-model-out): metrics.json, predictions.csv, predicted_vs_measured.png")
    p.add_argument("--predictors", nargs="*", default=None, help="subset of mlp_rank mlp_mse lightgbm constant")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_fit)
    p = cmds.add_parser("search", parents=[common], help="predictor-driven vs random vs Optuna on one model x "
                        "dataset's grid at equal real measurements: traces, summary, plot")
    p.add_argument("--model", required=True)
    p.add_argument("--dataset", required=True)
    p.add_argument("--budget", type=int, default=None, help="real measurements per search (default: budget-share)")
    p.add_argument("--budget-share", type=float, default=0.2, help="budget as a share of the grid")
    p.add_argument("--seeds", default="0,1,2", help="search seeds, comma-separated")
    p.add_argument("--prior", nargs="?", const="other-runs", default=None, choices=PRIOR_SCOPES,
                   help="the predictor also learns from the run history: other-runs (the default with --prior: every "
                   "measurement but this model x dataset's grid) or other-models (only other models')")
    p.set_defaults(func=_search)
