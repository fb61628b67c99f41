"""The seed-to-seed noise floor of fidelity_tau.py's Kendall τ: every config of points.csv trained again at full
fidelity (same protocol: one epoch, batch 256) with another training seed; τ between the two full-fidelity
rankings is what a low-fidelity label or a predictor can at best reach against one seed's ranking.
Writes noise_floor.csv (the second seed's NE per config) and noise_floor.json next to this file.

    python results/automl/noise_floor.py [--rows 20000 --seed 1]
"""
from __future__ import annotations

import argparse
import json
import time

import pandas as pd
import torch

from ctrbench.data.api import open_dataset
from ctrbench.search.fidelity import kendall_tau
from ctrbench.search.registry import get_space
from fidelity_tau import HERE, train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=20000)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--seed", type=int, default=1, help="the second training seed (points.csv used seed 0)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.time()
    df = pd.read_csv(HERE / "points.csv")
    cache = open_dataset("criteo_x1", rows=args.rows, seed=0)
    space = get_space("dhen", embedding_dim=8, hidden_units=[64])
    again = []
    for i, text in enumerate(df.point):
        ne, _ = train(space, space.from_json(text), cache, {"max_epochs": 1, "evals_per_epoch": 1, "patience": 2},
                      args.batch_size, seed=args.seed)
        again.append(ne)
        print(f"{i + 1}/{len(df)} full NE seed 0 {df.full_ne[i]:.4f} seed {args.seed} {ne:.4f}", flush=True)
    df[f"full_ne_seed{args.seed}"] = again
    df[["hash", "full_ne", f"full_ne_seed{args.seed}"]].to_csv(HERE / "noise_floor.csv", index=False)
    out = {"configs": len(df), "seed": args.seed,
           "tau_full_seed0_vs_full_seed": kendall_tau(df.full_ne, df[f"full_ne_seed{args.seed}"]),
           "tau_low_vs_full_seed": kendall_tau(df.low_ne, df[f"full_ne_seed{args.seed}"]),
           "tau_trend_vs_full_seed": kendall_tau(df.trend_ne, df[f"full_ne_seed{args.seed}"]),
           "wall_seconds": time.time() - t0}
    (HERE / "noise_floor.json").write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
