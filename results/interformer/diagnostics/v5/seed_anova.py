"""Can a twin rank the models at the suite's size? A two-way ANOVA (model x seed, one run per cell) of the
test AUCs of the paper's Table-2 rows per dataset (those the store holds): the model effect's F statistic and
p-value against the model x seed residual, the share of variance that the seed (the shuffle order and the
initialisation) explains, and per seed InterFormer's AUC minus the best non-sequential row's (paired: both saw
the same data order). Then, from the runs' validation histories: per seed, at which optimizer step the models'
best checkpoints sit (step: number of models), and how far the validation AUC fell from the best checkpoint to
the last evaluation (min - max over the runs).
Read-only use of a suite's run store: python results/interformer/diagnostics/v5/seed_anova.py [STORE [ROWS]]
(ROWS: a comma-separated subset of the rows, e.g. the 9 of diagnostics/v5/tb500k.yaml)."""
import json
import sqlite3
import sys
from collections import Counter

import numpy as np
from scipy import stats

STORE = sys.argv[1] if len(sys.argv) > 1 else "results/interformer/runs.sqlite"
NONSEQ = ["fm", "xdeepfm", "autoint_plus", "dcnv2", "fmfm", "dot", "dhen", "wukong"]
SEQ = ["din", "dien", "bst", "dmin", "dmr", "transact", "interformer"]
ONLY = set(sys.argv[2].split(",")) if len(sys.argv) > 2 else set()  # rows to keep (default: every row stored)
rows = sqlite3.connect(STORE).execute(
    "select dataset, entry, seed, auc, record_json from runs where status = 'ok'").fetchall()
for ds in sorted({r[0] for r in rows}):
    auc = {(e, s): a for d, e, s, a, _ in rows if d == ds}
    history = {(e, s): json.loads(rec)["history"] for d, e, s, _, rec in rows if d == ds}
    seeds = sorted({s for e, s in auc})
    models = [e for e in NONSEQ + SEQ if all((e, s) in auc for s in seeds) and (not ONLY or e in ONLY)]
    table = np.array([[auc[(e, s)] for s in seeds] for e in models])  # models x seeds
    m, k = table.shape
    grand = table.mean()
    ss_model = k * ((table.mean(1) - grand) ** 2).sum()
    ss_seed = m * ((table.mean(0) - grand) ** 2).sum()
    ss_res = ((table - table.mean(1, keepdims=True) - table.mean(0, keepdims=True) + grand) ** 2).sum()
    df_model, df_res = m - 1, (m - 1) * (k - 1)
    f = (ss_model / df_model) / (ss_res / df_res)
    p = stats.f.sf(f, df_model, df_res)
    total = ss_model + ss_seed + ss_res
    best = max((e for e in NONSEQ if e in models), key=lambda e: np.mean([auc[(e, s)] for s in seeds]))
    paired = [auc[("interformer", s)] - auc[(best, s)] for s in seeds]
    print(f"{ds}: {m} models x {k} seeds; model F = {f:.1f} (df {df_model}, {df_res}), p = {p:.2g}; variance shares "
          f"model {ss_model / total:.2f}, seed {ss_seed / total:.2f}, residual {ss_res / total:.2f}; residual sd "
          f"{np.sqrt(ss_res / df_res):.4f}; InterFormer - {best} per seed: {', '.join(f'{x:+.4f}' for x in paired)}")
    best_steps, falls = {}, []
    for s in seeds:
        steps = Counter()
        for e in models:
            valid = [h["valid"]["auc"] for h in history[(e, s)]]
            b = int(np.argmax(valid))
            steps[history[(e, s)][b]["steps"]] += 1
            falls.append(valid[b] - valid[-1])
        best_steps[s] = dict(sorted(steps.items()))
    print(f"  best checkpoints (step: models) per seed: {best_steps}; validation AUC fall after the best: "
          f"{min(falls):.3f} - {max(falls):.3f}")
