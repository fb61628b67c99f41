"""Synthetic twins with an oracle: every dataset's schema, filled from a planted click model whose true click
probability is stored per row (`oracle_p`), so the oracle AUC, logloss and NE are exact.

A twin imitates its real dataset (spec.twin): the feature schema in spec order; vocabularies scaled from the
published cardinalities, C / (1 + C / (card_ratio * rows)) (never below 4; small fields keep their size, big
ones approach card_ratio * rows = 1000 at the default 200k rows, so the vocabularies are learnable from the
rows); Zipf ids (exponent 1.1-1.4 per field; id 1 the most frequent, as FuxiCTR's frequency-sorted
vocabularies; a missing categorical value is an ordinary learnable id, C-2, as `data prepare` makes an empty
cell; 0 = padding, C-1 = OOV, neither generated); numeric shapes per protocol; the base CTR; and for the
sequential sets users with interest topics whose timelines drive the histories (left-padded, most recent last; KuaiVideo keeps
the oldest 100 as its converter did). The generators themselves live in `twin_models`.

Labels: p = sigmoid(bias + scale * signal + offset(t)); signal mixes standardised parts with fixed variance
shares (KNOBS): first-order id effects, an FM-like clique of pairwise latent interactions, a higher-order term
(a random tanh MLP over three fields' latent factors plus a three-way product), numeric effects, and for the
sequential sets target-history relevance (mean- and attention-pooled latent similarity) and short-term intent
(`recent`: how much the latest behaviours, decayed by half per step back, match the target beyond the user's
long-term mix: a signal only models that see positions can read, as in real logs). Every part is a
function of the stored features only (a missing numeric reads as the 0 it is stored as), so the oracle never
knows more than a model can. Every id's effects (users' too) are shrunk by sqrt(m / (m + kappa)), m = its
expected training rows times the Fisher information of a row at the twin's CTR relative to a 50% CTR,
4 ctr (1 - ctr) (TaobaoAd's 5% CTR: 0.19), so the signal sits where this many rows -- and, at a low CTR, this
few clicks -- can learn it. `scale` and `bias` are solved at generation time on a pilot sample from the same
generator (deterministic given the seed): expected oracle AUC = spec.twin.best_published_auc + auc_margin (0.012) and
mean CTR = base_ctr.

Splits (rows in time order; t = row position in [0, 1)): criteo_x1 72/18/10, avazu_x1 70/10/20 (with a mild
downward CTR trend, as the real x1 split shows), criteo_terabyte `days` equal days with drift (first-order
effects rotate slowly, a weekly bias wave; train = days 0..D-2, valid/test = halves of the last day; the `day`
block holds each row's day), everything else 80/10/10 — the sequential twins get a real validation split even
though BARS validates on test (manifest: twin.valid_is_test_in_bars).

Determinism: parameters come from rng(seed, 0) (frequency pilots rng(seed, 3)), the tuning pilot from
rng(seed, 1), and chunk c of split s from rng(seed, 2, s, c) with a fixed chunk size; per-user timelines are
counter-based hashes of (seed, user, position). Same seed and rows -> same bytes (on one machine and numpy
build: float rounding of BLAS/SIMD kernels may differ elsewhere). Rows stream in chunks, so
memory is bounded by the chunk and the parameter tables (which scale with the vocabularies, not the rows).
"""
from __future__ import annotations

import os
import time

import numpy as np

from ctrbench.data.cache import Cache, CacheWriter
from ctrbench.data.click_model import SignalMixer, sigmoid, solve_scale
from ctrbench.data.schema import DatasetSpec
from ctrbench.data.twin_models import BUILDERS, TwinKnobs, TwinSize
from ctrbench.errors import DataError

GENERATOR_VERSION = 6  # 3: numeric effects see only the stored value (missing reads as 0, criteo_x1 caps)
#                       4: sequential twins plant a short-term-intent part ("recent", twin_models.recency_pool)
#                       5: shrinkage counts information (rows x 4 ctr (1 - ctr)), not rows; TaobaoAd's user price
#                          preference and KuaiVideo's user effects are shrunk like every other id effect
#                       6: a missing categorical value is the learnable id C-2 (was 0, the padding row that never
#                          learns), as `data prepare` tokenises an empty cell
PILOT_ROWS = 100_000

_TAB = {"first": 0.66, "pair": 0.16, "higher": 0.08, "numeric": 0.10}
KNOBS: dict[str, TwinKnobs] = {
    "criteo_x1": TwinKnobs(_TAB, split_fractions=(0.72, 0.18, 0.10), missing="criteo"),
    "criteo": TwinKnobs(_TAB, missing="criteo"),
    "criteo_terabyte": TwinKnobs(_TAB, days=24, drift_angle=0.6, weekly_wave=0.08, missing="criteo"),
    "avazu_x1": TwinKnobs({"first": 0.45, "pair": 0.40, "higher": 0.15}, split_fractions=(0.70, 0.10, 0.20),
                          trend=-0.3),
    "avazu": TwinKnobs({"first": 0.45, "pair": 0.40, "higher": 0.15}),
    "amazonelectronics_x1": TwinKnobs({"first": 0.20, "rel_mean": 0.15, "rel_attn": 0.25, "cate_match": 0.10,
                                       "recent": 0.30},
                                      chunk_rows=32_768),
    "taobaoad_x1": TwinKnobs({"first": 0.20, "pair": 0.20, "higher": 0.05, "numeric": 0.10, "rel_attn": 0.20,
                              "recent": 0.25},
                             chunk_rows=32_768),
    "kuaivideo_x1": TwinKnobs({"first": 0.20, "pair": 0.20, "visual": 0.15, "rel_pos": 0.15, "rel_neg": 0.05,
                               "recent": 0.25},
                              chunk_rows=32_768),
}


# =========================================================================================== driver


def split_plan(spec: DatasetSpec, rows: int, knobs: TwinKnobs) -> list[tuple[str, int, int]]:
    """(split, first row, end row) on the twin's time axis."""
    if knobs.days:
        per_day = rows // knobs.days
        train_end = per_day * (knobs.days - 1)
        valid_end = train_end + (rows - train_end) // 2
        return [("train", 0, train_end), ("valid", train_end, valid_end), ("test", valid_end, rows)]
    f_train, f_valid, _ = knobs.split_fractions
    a = int(round(rows * f_train))
    b = a + int(round(rows * f_valid))
    return [("train", 0, a), ("valid", a, b), ("test", b, rows)]


def check_shares(name: str, shares: dict[str, float]) -> dict[str, float]:
    """`shares` as floats, if every key is a part twin `name` plants, none is negative and one is positive."""
    valid = list(KNOBS[name].shares)
    unknown = [k for k in shares if k not in valid]
    if unknown:
        raise DataError(f"twin {name} plants no signal part {unknown[0]!r}; valid: {', '.join(valid)}")
    out = {k: float(v) for k, v in shares.items()}
    if any(not np.isfinite(v) or v < 0 for v in out.values()) or not any(v > 0 for v in out.values()):
        raise DataError(f"twin shares must be finite, >= 0 and one of them > 0, got {shares}")
    return out


def build_model(spec: DatasetSpec, rows: int, seed: int, card_ratio: float = 0.005, kappa: float = 3000.0):
    """The generator of `spec`'s twin at this size, and its knobs."""
    if spec.name not in BUILDERS:
        raise DataError(f"no synthetic twin for dataset {spec.name!r}; have {sorted(BUILDERS)}")
    knobs = KNOBS[spec.name]
    train_rows = split_plan(spec, rows, knobs)[0][2]
    ctr = spec.twin.base_ctr
    size = TwinSize(rows, train_rows, card_ratio, kappa, row_information=4.0 * ctr * (1.0 - ctr))
    return BUILDERS[spec.name](spec, size, seed, knobs), knobs


def generate_twin(
    spec: DatasetSpec,
    path: str | os.PathLike,
    *,
    rows: int | None = None,
    seed: int = 0,
    card_ratio: float = 0.005,
    kappa: float = 3000.0,
    auc_margin: float = 0.012,
    shares: dict[str, float] | None = None,
    progress: bool | None = None,
) -> Cache:
    """Generate the synthetic twin of `spec` into a cache at `path` and open it.

    rows: total rows (default spec.twin.default_rows); card_ratio: vocabularies approach card_ratio * rows;
    kappa: an id's planted effects are shrunk by sqrt(m / (m + kappa)), m = its expected training rows x
    4 ctr (1 - ctr) (the information a row carries at the twin's base CTR; 1 at 50%);
    auc_margin: the expected oracle AUC sits this much above spec.twin.best_published_auc;
    shares: variance share per planted signal part, replacing KNOBS[spec.name].shares (None = those; the
    mixer normalises them, a part at 0 is left out).
    """
    from ctrbench import metrics

    rows = int(rows or spec.twin.default_rows)
    if rows < 100:
        raise DataError(f"a twin needs at least 100 rows, got {rows}")
    t0 = time.perf_counter()
    model, knobs = build_model(spec, rows, seed, card_ratio, kappa)
    shares = check_shares(spec.name, shares) if shares is not None else knobs.shares
    # --- pilot: fit the mixer, then solve scale and bias for the target AUC and CTR
    pilot_n = min(PILOT_ROWS, max(rows, 20_000))
    prng = np.random.default_rng([seed, 1])
    t_pilot = prng.random(pilot_n)
    parts_p, offset_p = [], []
    for start in range(0, pilot_n, knobs.chunk_rows):
        n = min(knobs.chunk_rows, pilot_n - start)
        _, parts, off = model.sample(prng, n, t_pilot[start:start + n])
        parts_p.append(parts)
        offset_p.append(np.broadcast_to(off, (n,)))
    parts_all = {k: np.concatenate([p[k] for p in parts_p]) for k in parts_p[0]}
    offset_all = np.concatenate(offset_p)
    mixer = SignalMixer(shares)
    mixer.fit(parts_all)
    target_auc = spec.twin.best_published_auc + auc_margin
    scale, bias = solve_scale(mixer(parts_all), offset_all, spec.twin.base_ctr, target_auc)
    t_tuned = time.perf_counter()

    writer = CacheWriter(path, spec)
    plan = split_plan(spec, rows, knobs)
    horizon = (rows // knobs.days) * knobs.days if knobs.days else rows  # t = 1 at the end of the last full day
    keep = {}
    show = progress if progress is not None else rows >= 5_000_000
    bar = _progress(rows, f"twin {spec.name}") if show else None
    try:
        for s_idx, (split, lo, hi) in enumerate(plan):
            labels, oracle, groups = [], [], []
            for c_idx, start in enumerate(range(lo, hi, knobs.chunk_rows)):
                n = min(knobs.chunk_rows, hi - start)
                rng = np.random.default_rng([seed, 2, s_idx, c_idx])
                t = np.minimum((np.arange(start, start + n) + 0.5) / horizon, 1 - 1e-12)
                blocks, parts, off = model.sample(rng, n, t)
                p = sigmoid(bias + scale * mixer(parts) + off)
                label = (rng.random(n) < p).astype(np.float32)
                blocks["label"] = label
                blocks["oracle_p"] = p.astype(np.float32)
                writer.append(split, blocks)
                if sum(len(x) for x in labels) < 20_000_000:  # oracle metrics on at most the first 20M rows
                    labels.append(label)
                    oracle.append(blocks["oracle_p"])
                    if "group_id" in blocks:
                        groups.append(blocks["group_id"])
                if bar is not None:
                    bar[0].update(bar[1], advance=n)
            keep[split] = (labels, oracle, groups)
        train_ctr = float(np.concatenate(keep["train"][0]).mean()) if keep.get("train") else None
        oracle_by_split = {}
        for split, (labels, oracle, groups) in keep.items():
            y, p = np.concatenate(labels), np.concatenate(oracle)
            g = np.concatenate(groups) if groups else None
            oracle_by_split[split] = metrics.oracle_metrics(y, p, g, train_ctr)
        elapsed = time.perf_counter() - t0
        extra = {"twin": {
            "generator_version": GENERATOR_VERSION,
            "seed": seed, "rows": rows, "card_ratio": card_ratio, "kappa": kappa,
            "split_rows": {s: hi - lo for s, lo, hi in plan},
            "valid_is_test_in_bars": spec.valid_is_test,
            "base_ctr": spec.twin.base_ctr,
            "best_published_auc": spec.twin.best_published_auc,
            "target_oracle_auc": target_auc, "auc_margin": auc_margin,
            "scale": scale, "bias": bias, "pilot_rows": pilot_n,
            "scale_solved": "at generation time on the pilot sample (expected AUC, bisection)",
            "mixer": mixer.describe(),
            "cardinalities": model.vocab_sizes,
            "model": model.describe(),
            "days": knobs.days or None,
            "drift": ({"first_order_rotation_rad": knobs.drift_angle, "weekly_bias_wave": knobs.weekly_wave,
                       "block": "day"} if knobs.days else None),
            "ctr_trend_logit_slope": knobs.trend or None,
            "oracle": oracle_by_split,
            "seconds": {"tune": round(t_tuned - t0, 3), "total": round(elapsed, 3)},
            "rows_per_s": round(rows / elapsed, 1),
        }}
        for name, table in model.tables().items():
            writer.add_table(name, table)
        cache = writer.finalize(model.vocab_sizes, {"kind": "synthetic", "generator": "ctrbench.data.synthetic",
                                                    "seed": seed, "rows": rows}, extra=extra)
    except BaseException:
        writer.abort()
        raise
    finally:
        if bar is not None:
            bar[0].stop()
    return cache


def _progress(total: int, label: str):
    from rich.progress import Progress

    prog = Progress()
    task = prog.add_task(label, total=total)
    prog.start()
    return prog, task
