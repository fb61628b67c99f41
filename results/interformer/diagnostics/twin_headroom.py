"""How much of a sequential twin's oracle AUC is out of reach without each planted signal part? For every part k,
the best linear stand-in for the signal built from the OTHER parts (least squares on 60k generated rows, so it
keeps what k shares with them) is scored by the expected AUC against the oracle probabilities. For the attention
parts this bounds what attention adds over models that see only the other parts (e.g. mean-pooled target-history
similarity, which every non-sequential model here gets as a dot product of pooled embeddings).
Read-only use of the twin generator: python results/interformer/diagnostics/twin_headroom.py DATASET ROWS"""
import sys

import numpy as np

from ctrbench.data.click_model import SignalMixer, expected_auc, sigmoid, solve_scale
from ctrbench.data.registry import get_spec
from ctrbench.data.synthetic import build_model

name, rows = sys.argv[1], int(sys.argv[2])
spec = get_spec(name)
model, knobs = build_model(spec, rows, 0)
rng = np.random.default_rng([0, 1])
n, chunk = 60_000, 20_000
got = [model.sample(rng, chunk, rng.random(chunk))[1] for _ in range(n // chunk)]
parts = {k: np.concatenate([g[k] for g in got]) for k in got[0]}
mixer = SignalMixer(knobs.shares)
mixer.fit(parts)
sig = mixer(parts)
scale, bias = solve_scale(sig, np.zeros(n), spec.twin.base_ctr, spec.twin.best_published_auc + 0.012)
p = sigmoid(bias + scale * sig)
print(f"{name} at {rows} rows: oracle AUC {expected_auc(p):.4f}; variance shares {mixer.shares}")
keys = list(mixer.shares)
for k in keys:
    x = np.column_stack([(parts[j] - mixer.mean[j]) / mixer.std[j] for j in keys if j != k] + [np.ones(n)])
    coef, *_ = np.linalg.lstsq(x, sig, rcond=None)
    print(f"  without {k:10s}: best AUC {expected_auc(p, x @ coef):.4f}")
