"""Is a gap to a twin's oracle the data or the trainer? Best-case logistic regression vs ctrbench's LR on one twin.

Builds a twin (optionally with only its first-order signal part, so logistic regression is the exact model class),
fits scikit-learn's LogisticRegression on one-hot ids + raw numerics with C chosen on the validation split, trains
ctrbench's LR with the given embedding_l2 values, and prints each one's test AUC gap to the oracle on the same rows.
Run: python suites/data/twin_lr_ceiling.py criteo_x1 --rows 40000 [--first-order-only] [--card-ratio 0.005]
"""
from __future__ import annotations

import argparse
import dataclasses
import tempfile

import numpy as np
import torch
from scipy import sparse
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import OneHotEncoder

from ctrbench import metrics
from ctrbench.data import synthetic
from ctrbench.data.loader import BatchLoader
from ctrbench.data.registry import get_spec
from ctrbench.models.registry import build_model
from ctrbench.train import fit


def split_arrays(cache, split: str):
    ids, dense, labels, oracle = [], [], [], []
    for b in BatchLoader(cache, split, 65536, shuffle=False):
        ids.append(b.sparse.to_dense().numpy())
        dense.append(b.dense.numpy())
        labels.append(b.label.numpy())
        oracle.append(b.oracle_p.numpy())
    return np.concatenate(ids), np.concatenate(dense), np.concatenate(labels), np.concatenate(oracle)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset")
    ap.add_argument("--rows", type=int, default=40_000)
    ap.add_argument("--card-ratio", type=float, default=0.005)
    ap.add_argument("--first-order-only", action="store_true")
    ap.add_argument("--l2", type=float, nargs="+", default=[0.0, 3e-3])
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.first_order_only:
        synthetic.KNOBS[args.dataset] = dataclasses.replace(synthetic.KNOBS[args.dataset], shares={"first": 1.0})
    with tempfile.TemporaryDirectory() as tmp:
        cache = synthetic.generate_twin(get_spec(args.dataset), f"{tmp}/twin", rows=args.rows,
                                        card_ratio=args.card_ratio)
        (xtr, dtr, ytr, _), (xva, dva, yva, _), (xte, dte, yte, pte) = (split_arrays(cache, s)
                                                                     for s in ("train", "valid", "test"))
        oracle = metrics.auc(yte, pte)
        enc = OneHotEncoder(handle_unknown="ignore").fit(np.concatenate([xtr, xva, xte]))
        design = [sparse.hstack([enc.transform(x), d]).tocsr() for x, d in ((xtr, dtr), (xva, dva), (xte, dte))]
        fits = [(c, LogisticRegression(C=c, max_iter=3000).fit(design[0], ytr)) for c in (0.01, 0.03, 0.1, 0.3, 1.0)]
        c, best = max(fits, key=lambda cf: metrics.auc(yva, cf[1].decision_function(design[1])))
        print(f"{args.dataset} twin, {args.rows} rows ({len(ytr)} train), card_ratio {args.card_ratio}, "
              f"signal {'first-order only' if args.first_order_only else 'full'}; oracle test AUC {oracle:.4f}")
        sk = metrics.auc(yte, best.decision_function(design[2]))
        print(f"  scikit-learn LogisticRegression (C={c} by valid AUC): test AUC {sk:.4f}, gap {oracle - sk:.4f}")
        for l2 in args.l2:
            model = build_model("lr", cache.spec, cache.vocab_sizes, {}, seed=0)
            r = fit(model, cache, dict(lr=1e-3, embedding_lr=1e-2, embedding_l2=l2, batch_size=1024, max_epochs=10,
                                       patience=2, threads=1))
            print(f"  ctrbench lr, embedding_l2={l2:g}: test AUC {r.test['auc']:.4f}, gap {oracle - r.test['auc']:.4f} "
                  f"(best epoch {r.best_epoch} of {r.epochs_run})")


if __name__ == "__main__":
    main()
