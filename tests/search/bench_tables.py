"""A planted benchmark table for the table-space and table-study tests."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ctrbench.search.registry import get_space


def planted_table(path: Path, n: int, seed: int = 3) -> dict:
    """Write a benchmark table of `n` nasrec_small points (scale 0.125) with a planted validation AUC (larger
    dense widths are better; test AUC 0.01 below) to `path`; returns the points by hash."""
    base = get_space("nasrec_small", scale=0.125)
    rng = np.random.default_rng(seed)
    points = {}
    while len(points) < n:
        p = base.sample(rng)
        points[base.hash(p)] = p
    lines = ["point_hash,valid_auc,auc,point"]
    for h, p in points.items():
        v = 0.7 + sum(b["dense_dim"] for b in p["blocks"]) / 1e4
        lines.append(f"{h},{v},{v - 0.01},\"{base.to_json(p).replace(chr(34), chr(34) * 2)}\"")
    path.write_text("\n".join(lines) + "\n")
    return points
