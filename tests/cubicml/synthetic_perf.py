"""A synthetic performance dataset with a known throughput function (for the model and search tests)."""
from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from ctrbench.cubicml.dataset import FIELDS, _typed

COST = {"dlrm": 1.0, "dcnv2": 1.6, "dhen": 2.5, "interformer": 3.2}  # per-sample compute of each model


def true_throughput(model: str, threads: int, batch: int, emb: int, grads: str) -> float:
    """Samples/s: compute per sample scales with the model and the embedding width and splits over threads
    (with diminishing returns); a dense embedding gradient adds a per-step cost that large batches amortise."""
    per_sample = COST[model] * (1 + emb / 32) / threads ** 0.7
    per_step = 2000.0 * (emb / 16 if grads == "dense" else 0.1)
    return 1e6 * batch / (batch * per_sample * 10 + per_step)


def synthetic_frame(seed: int = 0, noise: float = 0.03, models=tuple(COST)) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for i, (m, t, b, e, g) in enumerate(itertools.product(models, (1, 2, 4), (256, 1024, 4096), (8, 16, 32, 64),
                                                          ("dense", "sparse"))):
        sps = true_throughput(m, t, b, e, g) * rng.lognormal(0, noise)
        row = {f.name: None for f in FIELDS}
        row.update(run_id=f"r{i}", noise_group=f"g{i}", repeat=0, model=m, dataset="criteo_x1", threads=t,
                   batch_size=b, embedding_dim=e, embedding_gradients=g, world_size=1, train_samples_per_s=sps,
                   peak_memory_mb=100 + b * e / 100, step_time_p50_ms=b / sps * 1e3)
        rows.append(row)
    return _typed(pd.DataFrame(rows, columns=[f.name for f in FIELDS]))
