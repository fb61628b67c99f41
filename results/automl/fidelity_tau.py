"""Issue 17's Kendall-τ measurements on a Criteo_x1 twin (deliverables 2 and 3, no search involved):
1. low fidelity vs full fidelity: N random points of the `dhen` space are each trained twice, on `fraction` of
   the training rows (validated at `checkpoints` points) and on all of them (one epoch each); τ between the
   full-fidelity validation NE and (a) the low-fidelity final NE, (b) its curve-trend label (fidelity.py);
2. the predictor: repeated random splits of those N points (2/3 train, 1/3 held out); the NE head's τ against
   the held-out full-fidelity NE, for one member vs the 10-member ensemble, pairwise vs MSE loss.
Writes points.csv and tau.json next to this file and prints a markdown table.

    python results/automl/fidelity_tau.py [--configs 40 --rows 20000 --fraction 0.5 --checkpoints 4 --splits 10]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ctrbench.data.api import open_dataset
from ctrbench.models import build_model, model_tables
from ctrbench.search.fidelity import Fidelity, history_curve, kendall_tau
from ctrbench.search.predictors.ensemble import EnsemblePredictor, PredictorConfig
from ctrbench.search.registry import get_space
from ctrbench.train import fit

HERE = Path(__file__).parent


def train(space, point, cache, overrides: dict, batch_size: int, seed: int = 0) -> tuple[float, list]:
    """(final validation NE, validation curve) of one point trained with `overrides` and training seed `seed`."""
    params, train_cfg = space.candidate(point)
    model = build_model(space.model, cache.spec, cache.vocab_sizes, params, model_tables(cache), seed=seed)
    res = fit(model, cache, {**train_cfg, "batch_size": batch_size, "seed": seed, **overrides})
    curve = history_curve(res.history, batch_size)
    return curve[-1][1], curve


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--configs", type=int, default=40)
    ap.add_argument("--rows", type=int, default=20000)
    ap.add_argument("--fraction", type=float, default=0.5)
    ap.add_argument("--checkpoints", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--splits", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.time()
    cache = open_dataset("criteo_x1", rows=args.rows, seed=0)
    n_train = cache.split("train").rows
    fid = Fidelity(fraction=args.fraction, train_rows=n_train, checkpoints=args.checkpoints)
    space = get_space("dhen", embedding_dim=8, hidden_units=[64])
    rng = np.random.default_rng(args.seed)
    rows = []
    for i in range(args.configs):
        point = space.sample(rng)
        low_ne, curve = train(space, point, cache, fid.train_overrides(), args.batch_size)
        full_ne, _ = train(space, point, cache, {"max_epochs": 1, "evals_per_epoch": 1, "patience": 2},
                           args.batch_size)
        rows.append({"hash": space.hash(point), "point": json.dumps(point), "flops": space.flops(point, cache.spec),
                     "low_ne": low_ne, "trend_ne": fid.label(curve), "full_ne": full_ne, "curve": json.dumps(curve)})
        print(f"{i + 1}/{args.configs} low {low_ne:.4f} trend {rows[-1]['trend_ne']:.4f} full {full_ne:.4f}",
              flush=True)
    df = pd.DataFrame(rows)
    df = df[np.isfinite(df[["low_ne", "trend_ne", "full_ne"]]).all(axis=1)]
    df.to_csv(HERE / "points.csv", index=False)
    out = {"configs": len(df), "train_rows": n_train, "fraction": args.fraction, "checkpoints": args.checkpoints,
           "tau_low_vs_full": kendall_tau(df.low_ne, df.full_ne),
           "tau_trend_vs_full": kendall_tau(df.trend_ne, df.full_ne)}
    X = np.stack([space.encode(json.loads(p)) for p in df.point])
    y, fl = df.full_ne.to_numpy(), np.log10(df.flops.to_numpy())
    split_rng = np.random.default_rng(args.seed + 1)
    taus: dict[str, list] = {}
    for s in range(args.splits):
        perm = split_rng.permutation(len(df))
        tr, te = perm[: 2 * len(df) // 3], perm[2 * len(df) // 3:]
        for loss in ("pairwise", "mse"):
            for members in (1, 10):
                pred = EnsemblePredictor(PredictorConfig(members=members, loss=loss, seed=s)).fit(X[tr], y[tr], fl[tr])
                taus.setdefault(f"{loss}_{members}", []).append(kendall_tau(pred.query(X[te])[0][:, 0], y[te]))
    out["predictor_tau"] = {k: {"mean": float(np.mean(v)), "std": float(np.std(v)), "splits": v}
                            for k, v in taus.items()}
    out["wall_seconds"] = time.time() - t0
    (HERE / "tau.json").write_text(json.dumps(out, indent=1))
    print(f"\n| ranking against full-fidelity NE | Kendall τ |\n|---|---|\n"
          f"| low fidelity, final NE | {out['tau_low_vs_full']:.3f} |\n"
          f"| low fidelity, curve-trend label | {out['tau_trend_vs_full']:.3f} |")
    print("\n| predictor (NE head, held-out 1/3) | τ mean ± std over splits |\n|---|---|")
    for k, v in out["predictor_tau"].items():
        loss, members = k.split("_")
        print(f"| {loss}, {members} member{'s' * (members != '1')} | {v['mean']:.3f} ± {v['std']:.3f} |")
    print(f"\nwall {out['wall_seconds']:.0f} s")


if __name__ == "__main__":
    main()
