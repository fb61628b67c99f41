"""Building blocks of the twins' planted click model: Zipf samplers, counter-based hashing for per-user
timelines, per-id effect tables, the signal mixer and the scale/bias solver that sets the oracle AUC.

Everything here is deterministic given its numpy Generator or integer keys, and vectorised (no per-row Python).
"""
from __future__ import annotations

import math

import numpy as np

# ---------------------------------------------------------------------------------------------- sampling


def zipf_cdf(n: int, exponent: float) -> np.ndarray:
    """Cumulative probabilities of ranks 1..n under p(r) ∝ r^-exponent (float64, last entry exactly 1)."""
    w = np.arange(1, n + 1, dtype=np.float64) ** -exponent
    c = np.cumsum(w)
    c /= c[-1]
    c[-1] = 1.0
    return c


def sample_cdf(cdf: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Inverse-CDF sampling: 0-based category index for each uniform u in [0, 1)."""
    return np.minimum(np.searchsorted(cdf, u, side="right"), cdf.shape[0] - 1)


class GroupedSampler:
    """Samples a member of a group (e.g. an item of a category) with probability ∝ the member's weight.

    Members are laid out group by group with one concatenated CDF, so a batch of (group, uniform) pairs is
    one `searchsorted`.
    """

    def __init__(self, member_group: np.ndarray, member_weight: np.ndarray, n_groups: int):
        order = np.lexsort((np.arange(member_group.shape[0]), member_group))
        self.members = order  # member indices, grouped
        w = member_weight[order].astype(np.float64)
        self.cum = np.cumsum(w)
        total = np.bincount(member_group, weights=member_weight.astype(np.float64), minlength=n_groups)
        self.end = np.cumsum(total)
        self.start = self.end - total
        self.has_members = total > 0

    def sample(self, group: np.ndarray, u: np.ndarray) -> np.ndarray:
        target = self.start[group] + u * (self.end[group] - self.start[group])
        pos = np.minimum(np.searchsorted(self.cum, target, side="right"), self.cum.shape[0] - 1)
        return self.members[pos]


# ---------------------------------------------------------------------------------------------- hashing

_M1 = np.uint64(0x9E3779B97F4A7C15)
_M2 = np.uint64(0xBF58476D1CE4E5B9)
_M3 = np.uint64(0x94D049BB133111EB)


def _splitmix(x: np.ndarray) -> np.ndarray:
    x = x + _M1
    x = (x ^ (x >> np.uint64(30))) * _M2
    x = (x ^ (x >> np.uint64(27))) * _M3
    return x ^ (x >> np.uint64(31))


def hash_uniform(seed: int, stream: int, a: np.ndarray, b: np.ndarray | int = 0) -> np.ndarray:
    """A uniform in [0, 1) that is a pure function of (seed, stream, a, b) — e.g. (user, timeline position),
    so a user's history is the same whichever row (and whichever chunk) asks for it."""
    with np.errstate(over="ignore"):
        key = _splitmix(np.asarray([seed * 1_000_003 + stream], dtype=np.uint64))[0]
        x = _splitmix(np.asarray(a, dtype=np.int64).astype(np.uint64) ^ key)
        x = _splitmix(x + np.asarray(b, dtype=np.int64).astype(np.uint64) * _M2)
    return (x >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


# ---------------------------------------------------------------------------------------------- effects


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


class SignalMixer:
    """Combines named signal parts into one standardised signal with fixed variance shares.

    Each part is centred and scaled by its mean/std measured on the pilot sample, then weighted by
    sqrt(share), so `share` is the fraction of the signal's variance the part carries (parts are close to
    uncorrelated by construction).
    """

    def __init__(self, shares: dict[str, float]):
        total = sum(shares.values())
        self.shares = {k: v / total for k, v in shares.items() if v > 0}
        self.mean: dict[str, float] = {}
        self.std: dict[str, float] = {}

    def fit(self, parts: dict[str, np.ndarray]) -> None:
        for k in self.shares:
            x = parts[k].astype(np.float64)
            self.mean[k] = float(x.mean())
            self.std[k] = float(x.std()) or 1.0

    def __call__(self, parts: dict[str, np.ndarray]) -> np.ndarray:
        n = next(iter(parts.values())).shape[0]
        s = np.zeros(n, dtype=np.float64)
        for k, share in self.shares.items():
            s += math.sqrt(share) * (parts[k].astype(np.float64) - self.mean[k]) / self.std[k]
        return s

    def describe(self) -> dict:
        return {"shares": self.shares, "pilot_mean": self.mean, "pilot_std": self.std}


# ---------------------------------------------------------------------------------------------- calibration


def expected_auc(p: np.ndarray, scores: np.ndarray | None = None) -> float:
    """AUC of `scores` (default: p itself) expected when row i is positive with probability p_i: each row counts
    p_i as a positive and 1 - p_i as a negative, pairs of distinct rows are compared by score, ties ½. No label
    noise, so it is smooth in p (solvable) and a low-variance way to compare a model's ranking to the oracle's."""
    p = np.asarray(p, dtype=np.float64)
    s = p if scores is None else np.asarray(scores, dtype=np.float64)
    _, inv = np.unique(s, return_inverse=True)
    inv = inv.reshape(-1)
    pos_per = np.bincount(inv, weights=p)
    neg_per = np.bincount(inv, weights=1.0 - p)
    neg_below = np.cumsum(neg_per) - neg_per
    self_pairs = np.sum(p * (1.0 - p))
    num = np.sum(pos_per * (neg_below + 0.5 * neg_per)) - 0.5 * self_pairs
    den = p.sum() * (1.0 - p).sum() - self_pairs
    return float(num / den)


def solve_bias(signal: np.ndarray, offset: np.ndarray | float, target_mean: float) -> float:
    """Bias b with mean(sigmoid(b + signal + offset)) = target_mean (safeguarded Newton; monotone in b)."""
    x = signal + offset
    lo, hi = -40.0, 40.0
    b = math.log(target_mean / (1 - target_mean)) - float(np.mean(x))
    for _ in range(60):
        p = sigmoid(b + x)
        f = float(p.mean()) - target_mean
        if abs(f) < 1e-10:
            break
        if f < 0:
            lo = b
        else:
            hi = b
        step = f / max(float(np.mean(p * (1 - p))), 1e-12)
        b = b - step if lo < b - step < hi else 0.5 * (lo + hi)
    return b


def solve_scale(signal: np.ndarray, offset: np.ndarray | float, base_ctr: float, target_auc: float) -> tuple[float, float]:
    """Scale a and bias b such that p = sigmoid(b + a*signal + offset) has mean base_ctr and expected AUC
    target_auc on the pilot sample (bisection on a; expected AUC grows with a)."""
    lo, hi = 0.0, 1.0
    while expected_auc(sigmoid(solve_bias(hi * signal, offset, base_ctr) + hi * signal + offset)) < target_auc:
        lo, hi = hi, hi * 2
        if hi > 1e3:
            raise ValueError(f"signal cannot reach AUC {target_auc}")
    for _ in range(24):  # AUC resolution ~1e-7
        mid = 0.5 * (lo + hi)
        b = solve_bias(mid * signal, offset, base_ctr)
        if expected_auc(sigmoid(b + mid * signal + offset)) < target_auc:
            lo = mid
        else:
            hi = mid
    a = 0.5 * (lo + hi)
    return a, solve_bias(a * signal, offset, base_ctr)


def harmonic_cap(cardinality: int, cap: float, floor: int = 4) -> int:
    """Scaled vocabulary size: C / (1 + C / cap) — small fields keep their size, big ones approach `cap`."""
    if cardinality <= 0:
        return floor
    return int(max(floor, round(cardinality / (1.0 + cardinality / cap))))
