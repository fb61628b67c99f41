"""CTR quality metrics: AUC, gAUC, logloss, NE, calibration, RelaImpr, and their oracle versions.

Definitions follow /work/shared/specs/datasets.md §4 and match scikit-learn where it has the metric:
- `auc`: exact ROC-AUC (Mann–Whitney U with average ranks, ties count ½), O(n log n), integer rank sums.
- `gauc`: FuxiCTR's gAUC — per-group AUC weighted by the group's sample count; groups whose labels are all 0
  or all 1 are skipped (neither numerator nor denominator). Vectorised with one lexsort, no per-group loop.
- `logloss`: mean binary cross-entropy (natural log), predictions clipped to [eps, 1 - eps] with eps the
  machine epsilon of the predictions' dtype (what scikit-learn >= 1.5 `log_loss` does), computed in float64.
- `ne`: logloss / H(p̄) (He et al. 2014); p̄ is the training CTR when given, else the evaluated data's CTR.
- `calibration`: mean prediction / mean label.
- `relaimpr`: ((AUC - 0.5) / (AUC_base - 0.5) - 1) * 100 (DIN paper).

Undefined cases return NaN instead of raising: AUC with one class (or no rows), gAUC with no two-class group,
NE when p̄ is 0 or 1, calibration when the mean label is 0, any metric whose scores contain NaN/inf.
Logloss with a single class is well defined and is returned (scikit-learn refuses to infer the labels there).
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["auc", "gauc", "logloss", "ne", "binary_entropy", "calibration", "relaimpr", "evaluate", "oracle_metrics",
           "METRIC_DIRECTIONS", "better"]

# The one table of metric directions (training's early stopping, the harness's checks, searches' objectives):
# +1 higher is better, -1 lower is better.
METRIC_DIRECTIONS: dict[str, int] = {"auc": 1, "gauc": 1, "logloss": -1, "ne": -1}


def better(metric: str, value: float, than: float, margin: float = 0.0) -> bool:
    """Whether `value` beats `than` on `metric` by more than `margin` (in the metric's own direction)."""
    return METRIC_DIRECTIONS[metric] * (value - than) > margin


def _as_labels(labels) -> np.ndarray:
    y = np.asarray(labels).reshape(-1)
    if y.dtype == bool:
        return y
    if y.size and not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0/1")
    return y.astype(bool)


def _as_scores(scores, n: int) -> np.ndarray:
    s = np.asarray(scores).reshape(-1)
    if s.shape[0] != n:
        raise ValueError(f"labels and scores differ in length: {n} vs {s.shape[0]}")
    return s


def _tie_starts(keys_sorted: np.ndarray) -> np.ndarray:
    """Boolean mask: True where a run of equal values starts in a sorted array."""
    start = np.empty(keys_sorted.shape[0], dtype=bool)
    if start.size:
        start[0] = True
        np.not_equal(keys_sorted[1:], keys_sorted[:-1], out=start[1:])
    return start


def _twice_avg_ranks(run_start: np.ndarray) -> np.ndarray:
    """For sorted data with runs of ties marked by `run_start`: 2 x the average 1-based rank, as int64.

    A run starting at 0-based position s with c members has average rank s + (c + 1) / 2, so twice it is the
    integer 2s + c + 1; integers keep rank sums exact for any n that fits in memory.
    """
    n = run_start.shape[0]
    starts = np.flatnonzero(run_start)
    counts = np.diff(np.append(starts, n))
    per_run = 2 * starts.astype(np.int64) + counts + 1
    return np.repeat(per_run, counts)


def auc(labels, scores) -> float:
    """Exact ROC-AUC; ties count ½. NaN when only one class is present or a score is not finite."""
    y = _as_labels(labels)
    s = _as_scores(scores, y.shape[0])
    n_pos = int(y.sum())
    n_neg = y.shape[0] - n_pos
    if n_pos == 0 or n_neg == 0 or not np.isfinite(s).all():
        return math.nan
    order = np.argsort(s, kind="stable")
    r2 = _twice_avg_ranks(_tie_starts(s[order]))
    u2 = int(r2[y[order]].sum()) - n_pos * (n_pos + 1)  # 2 * Mann-Whitney U of the positives
    return u2 / (2.0 * n_pos * n_neg)


def gauc(labels, scores, group_ids) -> float:
    """FuxiCTR gAUC: sum_g n_g AUC_g / sum_g n_g over groups holding both classes; NaN if there are none."""
    y = _as_labels(labels)
    n = y.shape[0]
    s = _as_scores(scores, n)
    g = _as_scores(group_ids, n)
    if n == 0 or not np.isfinite(s).all():
        return math.nan
    _, gi = np.unique(g, return_inverse=True)
    gi = gi.reshape(-1)
    order = np.lexsort((s, gi))
    gs, ss, ys = gi[order], s[order], y[order]
    group_start = _tie_starts(gs)
    run_start = group_start | _tie_starts(ss)
    r2 = _twice_avg_ranks(run_start)  # global 2x ranks; shift each group's to start at 1
    first = np.flatnonzero(group_start)
    sizes = np.diff(np.append(first, n))
    r2 -= np.repeat(2 * first.astype(np.int64), sizes)
    npos = _segment_sum_int(ys, first)
    sum_r2 = _segment_sum_int(r2 * ys, first)
    nneg = sizes - npos
    ok = (npos > 0) & (nneg > 0)
    if not ok.any():
        return math.nan
    u2 = sum_r2[ok] - npos[ok] * (npos[ok] + 1)
    aucs = u2 / (2.0 * npos[ok] * nneg[ok])
    w = sizes[ok].astype(np.float64)
    return float(np.sum(aucs * w) / np.sum(w))


def _segment_sum_int(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Exact int64 sums of consecutive segments beginning at `starts`."""
    if values.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    return np.add.reduceat(values.astype(np.int64), starts)


def logloss(labels, preds) -> float:
    """Mean binary cross-entropy with predictions clipped to [eps, 1 - eps] (eps of the preds' dtype)."""
    y = _as_labels(labels)
    p_in = _as_scores(preds, y.shape[0])
    if y.shape[0] == 0:
        return math.nan
    if not np.issubdtype(p_in.dtype, np.floating):
        p_in = p_in.astype(np.float64)
    eps = float(np.finfo(p_in.dtype).eps)
    p = p_in.astype(np.float64)
    if not np.isfinite(p).all():
        return math.nan
    if p.min() < 0 or p.max() > 1:
        raise ValueError("predictions must be probabilities in [0, 1]")
    p = np.clip(p, eps, 1 - eps)
    return float(-np.mean(np.where(y, np.log(p), np.log1p(-p))))


def binary_entropy(p: float) -> float:
    """H(p) in nats; NaN outside (0, 1)."""
    if not 0.0 < p < 1.0:
        return math.nan
    return float(-(p * math.log(p) + (1 - p) * math.log1p(-p)))


def ne(labels, preds, background_ctr: float | None = None) -> float:
    """Normalized entropy: logloss / H(p̄); p̄ = `background_ctr` (e.g. the training CTR), else the labels' mean."""
    y = _as_labels(labels)
    if y.shape[0] == 0:
        return math.nan
    p_bar = float(y.mean()) if background_ctr is None else float(background_ctr)
    h = binary_entropy(p_bar)
    return logloss(y, preds) / h if h == h else math.nan


def calibration(labels, preds) -> float:
    """Mean prediction / mean label (expected over observed clicks); NaN without positives."""
    y = _as_labels(labels)
    p = _as_scores(preds, y.shape[0]).astype(np.float64)
    if y.shape[0] == 0 or not y.any():
        return math.nan
    return float(p.mean() / y.mean())


def relaimpr(auc_model: float, auc_base: float) -> float:
    """RelaImpr in percent: ((AUC - 0.5) / (AUC_base - 0.5) - 1) * 100; NaN when AUC_base is 0.5."""
    if auc_base == 0.5 or math.isnan(auc_base) or math.isnan(auc_model):
        return math.nan
    return ((auc_model - 0.5) / (auc_base - 0.5) - 1.0) * 100.0


def evaluate(labels, preds, group_ids=None, train_ctr: float | None = None) -> dict:
    """Every metric of one prediction set. NE uses `train_ctr` as background when given ("train"), else the
    evaluated labels' CTR ("eval"); the choice is reported in "ne_background"."""
    y = _as_labels(labels)
    p = _as_scores(preds, y.shape[0])
    out = {
        "n": int(y.shape[0]),
        "positive_rate": float(y.mean()) if y.shape[0] else math.nan,
        "auc": auc(y, p),
        "logloss": logloss(y, p),
        "ne": ne(y, p, train_ctr),
        "ne_background": "train" if train_ctr is not None else "eval",
        "calibration": calibration(y, p),
    }
    if group_ids is not None:
        out["gauc"] = gauc(y, p, group_ids)
    return out


def oracle_metrics(labels, oracle_p, group_ids=None, train_ctr: float | None = None) -> dict:
    """`evaluate` on a twin's true click probabilities, keys prefixed "oracle_" (ne_background kept as is)."""
    res = evaluate(labels, oracle_p, group_ids, train_ctr)
    return {(k if k in ("n", "positive_rate", "ne_background") else f"oracle_{k}"): v for k, v in res.items()}
