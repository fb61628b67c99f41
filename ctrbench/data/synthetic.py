"""Synthetic twins with an oracle: every dataset's schema, filled from a planted click model whose true click
probability is stored per row (`oracle_p`), so the oracle AUC, logloss and NE are exact.

A twin imitates its real dataset (spec.twin): the feature schema in spec order, vocabularies scaled from the
published cardinalities (`harmonic_cap`: C / (1 + C / (card_ratio * rows)), never below 4), Zipf ids (id 1 the
most frequent, as FuxiCTR's frequency-sorted vocabularies; 0 = missing, C-1 = OOV never generated), numeric
shapes per protocol, the base CTR, and for the sequential sets users with interest clusters whose timelines
drive the histories (left-padded, most recent last; KuaiVideo keeps the oldest 100 as its converter did).

Labels: p = sigmoid(bias + scale * signal + offset(t)), where signal mixes standardised parts with fixed
variance shares (first-order id effects, FM-like pairwise latent interactions, a higher-order term — a random
tanh MLP over a few fields' latent factors plus a three-way product —, numeric effects, and for sequential
sets target–history relevance: mean-pooled and attention-pooled latent similarity). `scale` and `bias` are
solved at generation time on a pilot sample drawn from the same generator (deterministic given the seed) so
that the expected oracle AUC = spec.twin.best_published_auc + `auc_margin` and the mean CTR = base_ctr.

Splits (rows in time order; t = row position in [0, 1)): criteo_x1 72/18/10, avazu_x1 70/10/20 (with a mild
downward CTR trend, as the real x1 split shows), criteo_terabyte `days` equal days with drift (first-order
effects rotate slowly, a weekly bias wave; train = days 0..D-2, valid/test = halves of the last day; the `day`
block holds each row's day), everything else 80/10/10 — the sequential twins get a real validation split even
though BARS validates on test (manifest: twin.valid_is_test_in_bars).

Determinism: parameters come from rng(seed, 0), the pilot from rng(seed, 1), and chunk c of split s from
rng(seed, 2, s, c) with a fixed chunk size; per-user timelines are counter-based hashes of (seed, user,
position). Same seed and rows -> same bytes. Rows stream in chunks, so memory is bounded by the chunk and the
parameter tables (which scale with the vocabularies, not the rows).
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass

import numpy as np

from ctrbench.data.cache import Cache, CacheWriter
from ctrbench.data.click_model import (GroupedSampler, SignalMixer, harmonic_cap, hash_uniform, sample_cdf, sigmoid,
                                       solve_scale, zipf_cdf)
from ctrbench.data.schema import DatasetSpec, Kind
from ctrbench.errors import DataError

GENERATOR_VERSION = 1
PILOT_ROWS = 100_000
LATENT_DIM = 8

# Real row counts (train+valid+test) of each dataset: the reference the size knob is relative to.
REAL_ROWS = {
    "criteo_x1": 45_840_617, "criteo": 45_840_617, "criteo_terabyte": 4_373_472_329,
    "avazu_x1": 40_428_967, "avazu": 40_428_967, "amazonelectronics_x1": 2_993_570,
    "taobaoad_x1": 25_029_426, "kuaivideo_x1": 13_661_383,
}


@dataclass(frozen=True)
class TwinKnobs:
    """Per-dataset generator settings (defaults in KNOBS)."""

    shares: dict  # signal part -> variance share
    split_fractions: tuple = (0.8, 0.1, 0.1)
    chunk_rows: int = 131_072
    trend: float = 0.0  # logit offset slope over t (avazu_x1's falling CTR)
    days: int = 0
    drift_angle: float = 0.0  # radians the first-order effects rotate over all days
    weekly_wave: float = 0.0  # logit amplitude of a 7-day bias wave
    missing: str = "none"  # "criteo": Criteo-like missing rates for categoricals and numerics


_TAB = {"first": 0.40, "pair": 0.35, "higher": 0.12, "numeric": 0.13}
KNOBS: dict[str, TwinKnobs] = {
    "criteo_x1": TwinKnobs(_TAB, split_fractions=(0.72, 0.18, 0.10), missing="criteo"),
    "criteo": TwinKnobs(_TAB, missing="criteo"),
    "criteo_terabyte": TwinKnobs(_TAB, days=24, drift_angle=0.6, weekly_wave=0.08, missing="criteo"),
    "avazu_x1": TwinKnobs({"first": 0.45, "pair": 0.40, "higher": 0.15}, split_fractions=(0.70, 0.10, 0.20),
                          trend=-0.3),
    "avazu": TwinKnobs({"first": 0.45, "pair": 0.40, "higher": 0.15}),
    "amazonelectronics_x1": TwinKnobs({"first": 0.20, "rel_mean": 0.25, "rel_attn": 0.35, "cate_match": 0.20},
                                      chunk_rows=32_768),
    "taobaoad_x1": TwinKnobs({"first": 0.35, "pair": 0.25, "higher": 0.05, "numeric": 0.10, "rel_attn": 0.25},
                             chunk_rows=32_768),
    "kuaivideo_x1": TwinKnobs({"first": 0.25, "pair": 0.25, "visual": 0.15, "rel_pos": 0.25, "rel_neg": 0.10},
                              chunk_rows=32_768),
}


# =========================================================================================== shared pieces


class IdField:
    """One categorical field of a twin: Zipf sampler plus its planted effects (first order, latent factors)."""

    def __init__(self, rng: np.random.Generator, name: str, cardinality: int, *, missing_rate: float = 0.0,
                 importance: float = 1.0, exponent: float | None = None, drift: bool = False):
        self.name, self.card = name, int(cardinality)
        self.n = self.card - 2  # real ids 1..C-2
        self.exponent = float(exponent if exponent is not None else rng.uniform(1.0, 1.2))
        self.cdf = zipf_cdf(self.n, self.exponent)
        self.missing_rate = missing_rate
        self.w = (rng.standard_normal(self.card) * importance).astype(np.float32)
        self.v = (rng.standard_normal((self.card, LATENT_DIM)) / math.sqrt(LATENT_DIM)).astype(np.float32)
        self.w[-1] = 0.0
        self.v[-1] = 0.0
        self.w2 = (rng.standard_normal(self.card) * importance).astype(np.float32) if drift else None
        if self.w2 is not None:
            self.w2[-1] = 0.0

    def sample(self, u: np.ndarray, u_missing: np.ndarray | None = None) -> np.ndarray:
        ids = sample_cdf(self.cdf, u) + 1
        if self.missing_rate > 0 and u_missing is not None:
            ids[u_missing < self.missing_rate] = 0
        return ids.astype(np.int32)

    def first_order(self, ids: np.ndarray, theta: np.ndarray | None = None) -> np.ndarray:
        if theta is None or self.w2 is None:
            return self.w[ids]
        return np.cos(theta) * self.w[ids] + np.sin(theta) * self.w2[ids]


class RandomMLP:
    """A fixed random tanh network: the higher-order cross term over a few fields' latent factors."""

    def __init__(self, rng: np.random.Generator, n_in: int, hidden: int = 16):
        self.w1 = (rng.standard_normal((n_in, hidden)) * (2.0 / math.sqrt(n_in))).astype(np.float32)
        self.b1 = (rng.standard_normal(hidden) * 0.5).astype(np.float32)
        self.w2 = (rng.standard_normal(hidden) / math.sqrt(hidden)).astype(np.float32)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.tanh(x @ self.w1 + self.b1) @ self.w2


def pairwise_fm(v: np.ndarray, r: np.ndarray) -> np.ndarray:
    """sum_{f<g} r_fg <v_f, v_g> for v [n, F, k] and a symmetric weight matrix r [F, F] with zero diagonal."""
    t = np.einsum("nfk,fg->ngk", v, r, optimize=True)
    return 0.5 * np.einsum("ngk,ngk->n", t, v, optimize=True)


def random_pairs(rng: np.random.Generator, n_fields: int, density: float) -> np.ndarray:
    r = np.triu(rng.uniform(0.5, 1.5, (n_fields, n_fields)) * (rng.random((n_fields, n_fields)) < density), 1)
    return (r + r.T).astype(np.float32)


def lognormal_lengths(rng: np.random.Generator, mean: float, sigma: float, n: int) -> np.ndarray:
    """Long-tailed history lengths >= 1 with (about) the given mean before truncation."""
    mu = math.log(max(mean, 1.0)) - 0.5 * sigma * sigma
    return np.maximum(1, np.round(np.exp(mu + sigma * rng.standard_normal(n)))).astype(np.int64)


def left_pad(values: np.ndarray, lengths: np.ndarray, width: int) -> np.ndarray:
    """Place the first `lengths[i]` entries of values[i] at the right end of a zero row of `width` columns."""
    n = values.shape[0]
    out = np.zeros((n, width), dtype=np.int32)
    cols = np.arange(width)[None, :]
    src = cols - (width - lengths[:, None])  # source column for each output column
    mask = src >= 0
    rows = np.broadcast_to(np.arange(n)[:, None], (n, width))
    out[mask] = values[rows[mask], src[mask]]
    return out


# =========================================================================================== tabular twins

# Criteo Kaggle-like numeric shapes: (missing rate, median count, log-sigma, zero share, min value)
_CRITEO_NUMERIC = [(0.45, 1, 1.2, 0.3, 0), (0.0, 3, 2.0, 0.1, -3), (0.21, 7, 1.5, 0.1, 0), (0.22, 6, 1.0, 0.05, 0),
                   (0.03, 1400, 1.8, 0.02, 0), (0.23, 30, 1.7, 0.1, 0), (0.04, 3, 1.6, 0.2, 0), (0.0005, 8, 1.2, 0.05, 0),
                   (0.04, 40, 1.4, 0.02, 0), (0.45, 1, 0.6, 0.5, 0), (0.04, 1, 1.0, 0.3, 0), (0.77, 1, 1.3, 0.6, 0),
                   (0.22, 5, 1.2, 0.1, 0)]
# Criteo categorical missing rates by field position (C1..C26; approximate shares of empty cells in train.txt)
_CRITEO_CAT_MISSING = [0, 0, 0.03, 0.03, 0, 0.12, 0, 0, 0, 0, 0, 0.03, 0, 0, 0, 0.03, 0, 0, 0.44, 0.44, 0.03, 0.76,
                       0, 0.03, 0.44, 0.44]


class TabularTwin:
    """Criteo/Avazu-style twins: independent Zipf fields, FM pairs, random-MLP cross term, numeric counts."""

    def __init__(self, spec: DatasetSpec, rows: int, seed: int, knobs: TwinKnobs, card_ratio: float):
        rng = np.random.default_rng([seed, 0])
        self.spec, self.knobs = spec, knobs
        cap = max(16.0, card_ratio * rows)
        cats = spec.categorical
        crit = knobs.missing == "criteo"
        self.fields = [
            IdField(rng, f.name, harmonic_cap(f.cardinality, cap),
                    missing_rate=(_CRITEO_CAT_MISSING[i] if crit and i < len(_CRITEO_CAT_MISSING) else 0.0),
                    importance=float(rng.uniform(0.4, 1.0)), drift=knobs.days > 0)
            for i, f in enumerate(cats)
        ]
        nf = len(self.fields)
        self.pairs = random_pairs(rng, nf, 0.3)
        self.mlp_fields = rng.choice(nf, size=min(4, nf), replace=False)
        self.mlp = RandomMLP(rng, LATENT_DIM * len(self.mlp_fields))
        self.triple = rng.choice(nf, size=min(3, nf), replace=False)
        self.numeric = spec.numeric
        nn_ = len(self.numeric)
        self.num_shape = [_CRITEO_NUMERIC[j % len(_CRITEO_NUMERIC)] for j in range(nn_)]
        self.num_coef = rng.standard_normal(nn_)
        self.num_bump = rng.standard_normal(nn_)
        self.num_center = rng.uniform(0.5, 3.0, nn_)
        self.num_missing_effect = rng.standard_normal(nn_) * 0.5
        # criteo_x1 stores AFN-like [0, 1] scaled counts: min(x, cap) / cap with cap ~ the 99.9% quantile
        self.num_cap = np.array([math.exp(math.log(m + 1) + 3.1 * s) for (_, m, s, _, _) in self.num_shape])
        self.day_phase = float(rng.uniform(0, 2 * math.pi))

    @property
    def vocab_sizes(self) -> dict[str, int]:
        return {f.name: f.card for f in self.fields}

    def tables(self) -> dict[str, np.ndarray]:
        return {}

    def _numeric(self, rng: np.random.Generator, n: int):
        """Raw counts (NaN = missing) -> stored values per the spec's transform, and the effect part."""
        nn_ = len(self.numeric)
        if nn_ == 0:
            return None, np.zeros(n)
        stored = np.empty((n, nn_), dtype=np.float32)
        effect = np.zeros(n)
        for j, f in enumerate(self.numeric):
            miss, med, sig, zero, lo = self.num_shape[j]
            x = np.floor(np.exp(math.log(med + 0.5) + sig * rng.standard_normal(n)))
            x[rng.random(n) < zero] = 0
            if lo < 0:
                neg = rng.random(n) < 0.05
                x[neg] = rng.integers(lo, 0, neg.sum())
            missing = rng.random(n) < miss
            z = np.log1p(np.maximum(x, 0))
            e = self.num_coef[j] * z / 3.0 + self.num_bump[j] * np.exp(-0.5 * (z - self.num_center[j]) ** 2)
            effect += np.where(missing, self.num_missing_effect[j], e)
            if f.transform == "log1p_clip0":
                v = np.log1p(np.maximum(x, 0))
                v[missing] = 0.0
            elif f.transform == "log_plus3":
                v = np.log(np.where(missing, 0.0, np.maximum(x, -2)) + 3.0)
            elif f.transform == "none":  # criteo_x1: AFN-transformed floats in [0, 1]
                v = np.minimum(np.maximum(x, 0), self.num_cap[j]) / self.num_cap[j]
                v[missing] = 0.0
            else:
                raise DataError(f"twin has no generator for numeric transform {f.transform!r}", field=f.name)
            stored[:, j] = v
        return stored, effect

    def sample(self, rng: np.random.Generator, n: int, t: np.ndarray):
        nf = len(self.fields)
        u = rng.random((n, nf))
        um = rng.random((n, nf))
        ids = np.empty((n, nf), dtype=np.int32)
        for j, f in enumerate(self.fields):
            ids[:, j] = f.sample(u[:, j], um[:, j])
        theta = None
        day = None
        offset = self.knobs.trend * (t - 0.5)
        if self.knobs.days:
            day = np.minimum((t * self.knobs.days).astype(np.int64), self.knobs.days - 1)
            theta = self.knobs.drift_angle * day / max(1, self.knobs.days - 1)
            offset = offset + self.knobs.weekly_wave * np.sin(2 * math.pi * day / 7 + self.day_phase)
        first = np.zeros(n)
        v = np.empty((n, nf, LATENT_DIM), dtype=np.float32)
        for j, f in enumerate(self.fields):
            first += f.first_order(ids[:, j], theta)
            v[:, j] = f.v[ids[:, j]]
        pair = pairwise_fm(v, self.pairs)
        higher = self.mlp(v[:, self.mlp_fields].reshape(n, -1)) + np.prod(v[:, self.triple], axis=1).sum(1) * 4.0
        stored, num_effect = self._numeric(rng, n)
        blocks = {"categorical": ids}
        if stored is not None:
            blocks["numeric"] = stored
        if day is not None:
            blocks["day"] = day.astype(np.int32)
        parts = {"first": first, "pair": pair, "higher": higher, "numeric": num_effect}
        return blocks, parts, offset

    def describe(self) -> dict:
        return {
            "zipf_exponents": {f.name: round(f.exponent, 4) for f in self.fields},
            "missing_rates": {f.name: f.missing_rate for f in self.fields if f.missing_rate},
            "n_pairs": int((self.pairs > 0).sum() // 2),
            "mlp_fields": [self.fields[i].name for i in self.mlp_fields],
            "triple_fields": [self.fields[i].name for i in self.triple],
        }


# =========================================================================================== sequential twins


class Catalog:
    """Topics -> categories -> items (or brands) with Zipf popularity and latent factors that follow the tree,
    and users with 1-3 interest topics. Timelines are hashes of (user, position)."""

    def __init__(self, rng: np.random.Generator, seed: int, n_items: int, n_cates: int, n_users: int,
                 n_topics: int, interest_share: float = 0.8):
        self.seed = seed
        self.n_items, self.n_cates, self.n_users, self.n_topics = n_items, n_cates, n_users, n_topics
        d = LATENT_DIM
        self.topic_vec = rng.standard_normal((n_topics, d))
        self.cate_topic = rng.integers(0, n_topics, n_cates)
        self.cate_vec = self.topic_vec[self.cate_topic] + 0.6 * rng.standard_normal((n_cates, d))
        cate_pop = np.arange(1, n_cates + 1, dtype=np.float64) ** -rng.uniform(0.9, 1.1)
        self.item_cate = sample_cdf(np.cumsum(cate_pop) / cate_pop.sum(), rng.random(n_items))
        # every category owns at least one item when there are enough items
        k = min(n_cates, n_items)
        self.item_cate[rng.permutation(n_items)[:k]] = np.arange(k)
        self.item_vec = (self.cate_vec[self.item_cate] + 0.6 * rng.standard_normal((n_items, d))) / math.sqrt(d)
        self.item_exponent = float(rng.uniform(1.0, 1.15))
        item_pop = np.arange(1, n_items + 1, dtype=np.float64) ** -self.item_exponent
        self.item_cdf = np.cumsum(item_pop) / item_pop.sum()
        self.item_cdf[-1] = 1.0
        self.items_by_cate = GroupedSampler(self.item_cate, item_pop, n_cates)
        self.cates_by_topic = GroupedSampler(self.cate_topic, np.where(self.items_by_cate.has_members, cate_pop, 0.0),
                                             n_topics)
        topic_has = np.bincount(self.cate_topic, weights=self.items_by_cate.has_members.astype(float),
                                minlength=n_topics) > 0
        topic_pop = np.where(topic_has, np.arange(1, n_topics + 1, dtype=np.float64) ** -0.7, 0.0)
        tcdf = np.cumsum(topic_pop) / topic_pop.sum()
        self.user_topics = sample_cdf(tcdf, rng.random((n_users, 3)))
        w = rng.dirichlet(np.ones(3) * 0.7, n_users)
        self.user_topic_cdf = np.cumsum(w, axis=1)
        self.user_topic_cdf[:, -1] = 1.0
        self.user_vec = (np.einsum("ut,utd->ud", w, self.topic_vec[self.user_topics])
                         + 0.5 * rng.standard_normal((n_users, d))) / math.sqrt(d)
        act = rng.lognormal(0.0, 1.0, n_users)
        self.user_cdf = np.cumsum(act) / act.sum()
        self.user_cdf[-1] = 1.0
        self.interest_share = interest_share

    def users(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return sample_cdf(self.user_cdf, rng.random(n))

    def draw(self, user: np.ndarray, u_mode: np.ndarray, u_topic: np.ndarray, u_cate: np.ndarray,
             u_item: np.ndarray) -> np.ndarray:
        """Item index drawn from the user's interests (prob. interest_share) or from global popularity."""
        slot = (u_topic[:, None] >= self.user_topic_cdf[user]).sum(1).clip(0, 2)
        topic = self.user_topics[user, slot]
        cate = self.cates_by_topic.sample(topic, u_cate)
        item_interest = self.items_by_cate.sample(cate, u_item)
        item_global = sample_cdf(self.item_cdf, u_item)
        return np.where(u_mode < self.interest_share, item_interest, item_global)

    def timeline(self, user: np.ndarray, pos: np.ndarray, stream: int = 10) -> np.ndarray:
        """The item at timeline position `pos` of `user` (pure function of seed, user, position)."""
        h = [hash_uniform(self.seed, stream + k, user, pos) for k in range(4)]
        return self.draw(user, *h)


def attention_similarity(target: np.ndarray, hist: np.ndarray, mask: np.ndarray, beta: float = 3.0):
    """Mean and softmax-attention-pooled similarity between target [n, d] and history [n, T, d]."""
    sim = np.einsum("nd,ntd->nt", target, hist, optimize=True) * math.sqrt(target.shape[1])
    cnt = mask.sum(1)
    mean = np.where(cnt > 0, (sim * mask).sum(1) / np.maximum(cnt, 1), 0.0)
    logits = np.where(mask, beta * sim, -np.inf)
    mx = np.max(np.where(mask, logits, -1e30), axis=1, keepdims=True)
    e = np.where(mask, np.exp(logits - mx), 0.0)
    attn = np.where(cnt > 0, (e * sim).sum(1) / np.maximum(e.sum(1), 1e-30), 0.0)
    return mean, attn


def _scaled_users(spec: DatasetSpec, rows: int, real_users: int) -> int:
    return int(min(real_users, max(10, round(spec.twin.n_users * rows / spec.twin.default_rows))))


class AmazonTwin:
    """AmazonElectronics_x1: user (meta) histories of items/categories; target = the user's next item or a
    random popular one (DIN's positive/negative construction); labels from the planted model."""

    MAX_LEN = 100

    def __init__(self, spec: DatasetSpec, rows: int, seed: int, knobs: TwinKnobs, card_ratio: float):
        rng = np.random.default_rng([seed, 0])
        self.spec, self.knobs = spec, knobs
        cap = max(16.0, card_ratio * rows)
        self.card_item = harmonic_cap(spec.feature("item_id").cardinality, cap)
        self.card_cate = harmonic_cap(spec.feature("cate_id").cardinality, cap)
        n_users = _scaled_users(spec, rows, 192_403)
        self.cat = Catalog(rng, seed, self.card_item - 2, self.card_cate - 2, n_users,
                           n_topics=max(4, (self.card_cate - 2) // 20))
        self.w_item = rng.standard_normal(self.card_item - 2)
        self.w_cate = rng.standard_normal(self.card_cate - 2) * 0.7
        self.max_len = spec.feature("item_history").max_len
        self.mean_len = spec.twin.mean_seq_len

    @property
    def vocab_sizes(self) -> dict[str, int]:
        return {"item_id": self.card_item, "cate_id": self.card_cate, "item_history": self.card_item,
                "cate_history": self.card_cate}

    def tables(self) -> dict[str, np.ndarray]:
        return {}

    def sample(self, rng: np.random.Generator, n: int, t: np.ndarray):
        c = self.cat
        user = c.users(rng, n)
        length = lognormal_lengths(rng, self.mean_len, 0.9, n)
        kept = np.minimum(length, self.max_len)
        cols = np.arange(self.max_len)[None, :]
        pos = length[:, None] - self.max_len + cols  # timeline position of each column (left padding < 0)
        mask = pos >= 0
        hist = np.full((n, self.max_len), -1, dtype=np.int64)
        uu = np.broadcast_to(user[:, None], pos.shape)
        hist[mask] = c.timeline(uu[mask], pos[mask])
        nxt = c.timeline(user, length)
        rnd = sample_cdf(c.item_cdf, rng.random(n))
        target = np.where(rng.random(n) < 0.5, nxt, rnd)
        tcate = c.item_cate[target]
        hcate = np.where(mask, c.item_cate[np.maximum(hist, 0)], -1)
        hvec = c.item_vec[np.maximum(hist, 0)]
        mean, attn = attention_similarity(c.item_vec[target], hvec, mask)
        match = np.log1p((hcate == tcate[:, None]).sum(1))
        first = self.w_item[target] + self.w_cate[tcate]
        blocks = {
            "categorical": np.stack([target + 1, tcate + 1], axis=1).astype(np.int32),
            "seq__item_history": np.where(mask, hist + 1, 0).astype(np.int32),
            "seq__cate_history": np.where(mask, hcate + 1, 0).astype(np.int32),
            "group_id": (user + 1).astype(np.int64),
        }
        parts = {"first": first, "rel_mean": mean, "rel_attn": attn, "cate_match": match}
        del kept
        return blocks, parts, 0.0

    def describe(self) -> dict:
        return {"n_users": self.cat.n_users, "n_items": self.cat.n_items, "n_cates": self.cat.n_cates,
                "n_topics": self.cat.n_topics, "item_zipf_exponent": self.cat.item_exponent,
                "mean_seq_len": self.mean_len, "target": "next timeline item (50%) or a popular random item"}


class TaobaoTwin:
    """TaobaoAd_x1: user profiles, an ad hierarchy (adgroup -> campaign -> customer -> brand -> category, price),
    behaviour histories of (category, brand, btag) driven by the user's interest topics."""

    PROFILE = ["cms_segid", "cms_group_id", "final_gender_code", "age_level", "pvalue_level", "shopping_level",
               "occupation", "new_user_class_level"]
    AD = ["adgroup_id", "cate_id", "campaign_id", "customer", "brand"]

    def __init__(self, spec: DatasetSpec, rows: int, seed: int, knobs: TwinKnobs, card_ratio: float):
        rng = np.random.default_rng([seed, 0])
        self.spec, self.knobs = spec, knobs
        cap = max(16.0, card_ratio * rows)
        n_users = _scaled_users(spec, rows, 1_140_000)
        self.cards = {f.name: harmonic_cap(f.cardinality, cap) for f in spec.categorical}
        self.cards["userid"] = n_users + 2
        self.cards["btag"] = spec.feature("btag").cardinality  # pv, cart, fav, buy + PAD + OOV
        self.cards["pid"] = spec.feature("pid").cardinality
        n_cates, n_brands = self.cards["cate_id"] - 2, self.cards["brand"] - 2
        self.cat = Catalog(rng, seed, n_brands, n_cates, n_users, n_topics=max(4, n_cates // 30))
        # the ad hierarchy
        n_ads, n_camp, n_cust = self.cards["adgroup_id"] - 2, self.cards["campaign_id"] - 2, self.cards["customer"] - 2
        self.cust_brand = sample_cdf(self.cat.item_cdf, rng.random(n_cust))
        self.camp_cust = sample_cdf(zipf_cdf(n_cust, 1.05), rng.random(n_camp))
        self.ad_camp = sample_cdf(zipf_cdf(n_camp, 1.05), rng.random(n_ads))
        own = self.cust_brand[self.camp_cust[self.ad_camp]]
        other = sample_cdf(self.cat.item_cdf, rng.random(n_ads))
        self.ad_brand = np.where(rng.random(n_ads) < 0.8, own, other)
        self.ad_cate = self.cat.item_cate[self.ad_brand]
        cate_price = rng.normal(4.0, 1.2, n_cates)
        self.ad_price = np.round(np.exp(cate_price[self.ad_cate] + 0.5 * rng.standard_normal(n_ads)), 2)
        self.ad_pop = np.arange(1, n_ads + 1, dtype=np.float64) ** -rng.uniform(1.0, 1.15)
        self.ad_cdf = np.cumsum(self.ad_pop) / self.ad_pop.sum()
        self.ads_by_cate = GroupedSampler(self.ad_cate, self.ad_pop, n_cates)
        # user profiles: gender and age drive cms_group_id, as in the real data
        self.profile = {}
        for name in self.PROFILE:
            nv = self.cards[name] - 2
            self.profile[name] = sample_cdf(zipf_cdf(nv, rng.uniform(0.6, 1.2)), rng.random(n_users)) + 1
        g, a = self.profile["final_gender_code"], self.profile["age_level"]
        n_grp = self.cards["cms_group_id"] - 2
        self.profile["cms_group_id"] = ((g - 1) * 7 + (a - 1)) % n_grp + 1
        # planted effects
        self.fields = {name: IdField(rng, name, self.cards[name], importance=float(rng.uniform(0.3, 1.0)))
                       for name in [f.name for f in spec.categorical]}
        self.fm_names = ["final_gender_code", "age_level", "pvalue_level", "shopping_level", "cms_group_id",
                         "occupation", "cate_id", "brand", "pid", "customer"]
        self.pairs = random_pairs(rng, len(self.fm_names), 0.4)
        # keep the pairs user-side x ad/context-side only (what an FM on this data would find)
        side = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 1])
        self.pairs *= (side[:, None] != side[None, :])
        self.mlp_names = ["final_gender_code", "age_level", "cate_id"]
        self.mlp = RandomMLP(rng, LATENT_DIM * 3)
        self.price_pref = rng.normal(0.0, 1.0, n_users)
        self.btag_weight = np.array([0.0, 1.0, 2.0, 2.0, 3.0])  # by btag id (1 = pv ... 4 = buy)
        self.max_len = spec.feature("cate_his").max_len
        self.mean_len = spec.twin.mean_seq_len

    @property
    def vocab_sizes(self) -> dict[str, int]:
        v = dict(self.cards)
        v.update({"cate_his": v["cate_id"], "brand_his": v["brand"], "btag_his": v["btag"]})
        return v

    def tables(self) -> dict[str, np.ndarray]:
        return {}

    def sample(self, rng: np.random.Generator, n: int, t: np.ndarray):
        c = self.cat
        user = c.users(rng, n)
        length = lognormal_lengths(rng, self.mean_len, 0.8, n)
        cols = np.arange(self.max_len)[None, :]
        pos = length[:, None] - self.max_len + cols
        mask = pos >= 0
        uu = np.broadcast_to(user[:, None], pos.shape)
        brand_h = np.full(pos.shape, -1, dtype=np.int64)
        brand_h[mask] = c.timeline(uu[mask], pos[mask])
        ub = np.zeros(pos.shape)
        ub[mask] = hash_uniform(self.seed_stream, 20, uu[mask], pos[mask])
        btag_h = np.where(mask, 1 + (ub > 0.9).astype(int) + (ub > 0.94).astype(int) + (ub > 0.97).astype(int), 0)
        cate_h = np.where(mask, c.item_cate[np.maximum(brand_h, 0)], -1)
        # the ad shown: targeted at the user's interests (40%) or by global popularity
        tb = c.draw(user, rng.random(n), rng.random(n), rng.random(n), rng.random(n))
        targeted = self.ads_by_cate.sample(c.item_cate[tb], rng.random(n))
        ad = np.where(rng.random(n) < 0.4, targeted, sample_cdf(self.ad_cdf, rng.random(n)))
        ids = {name: self.profile[name][user] for name in self.PROFILE}
        ids["userid"] = user + 1
        ids["adgroup_id"] = ad + 1
        ids["cate_id"] = self.ad_cate[ad] + 1
        ids["campaign_id"] = self.ad_camp[ad] + 1
        ids["customer"] = self.camp_cust[self.ad_camp[ad]] + 1
        ids["brand"] = self.ad_brand[ad] + 1
        ids["pid"] = 1 + (rng.random(n) < 0.35).astype(np.int64)
        ids["btag"] = np.ones(n, dtype=np.int64)
        names = [f.name for f in self.spec.categorical]
        cat = np.stack([ids[k] for k in names], axis=1).astype(np.int32)
        first = sum(self.fields[k].w[ids[k]] for k in names if k != "btag")
        v = np.stack([self.fields[k].v[ids[k]] for k in self.fm_names], axis=1)
        pair = pairwise_fm(v, self.pairs)
        higher = self.mlp(np.concatenate([self.fields[k].v[ids[k]] for k in self.mlp_names], axis=1))
        price = self.ad_price[ad]
        lp = np.log(price)
        numeric_effect = -0.5 * (lp - 4.0 - 0.8 * self.price_pref[user]) ** 2
        # relevance: target brand vs history brands, buys/carts/favs count more
        tvec = c.item_vec[self.ad_brand[ad]]
        hvec = c.item_vec[np.maximum(brand_h, 0)]
        sim = np.einsum("nd,ntd->nt", tvec, hvec, optimize=True) * math.sqrt(LATENT_DIM)
        wts = np.where(mask, self.btag_weight[btag_h], 0.0)
        e = np.where(mask, np.exp(2.0 * sim), 0.0) * wts
        rel = np.where(wts.sum(1) > 0, (e * sim).sum(1) / np.maximum(e.sum(1), 1e-30), 0.0)
        blocks = {
            "categorical": cat,
            "numeric": price.astype(np.float32)[:, None],
            "seq__cate_his": np.where(mask, cate_h + 1, 0).astype(np.int32),
            "seq__brand_his": np.where(mask, brand_h + 1, 0).astype(np.int32),
            "seq__btag_his": btag_h.astype(np.int32),
            "group_id": (user + 1).astype(np.int64),
        }
        parts = {"first": first, "pair": pair, "higher": higher, "numeric": numeric_effect, "rel_attn": rel}
        return blocks, parts, 0.0

    @property
    def seed_stream(self) -> int:
        return self.cat.seed

    def describe(self) -> dict:
        return {"n_users": self.cat.n_users, "n_brands": self.cat.n_items, "n_cates": self.cat.n_cates,
                "n_adgroups": int(self.ad_camp.shape[0]), "n_topics": self.cat.n_topics,
                "mean_seq_len": self.mean_len, "price": "raw float (BARS uses no normaliser)"}


class KuaiTwin:
    """KuaiVideo_x1: users, items with latent and visual factors, clicked/non-clicked histories (the oldest 100
    of the user's timeline prefix, as the x1 converter kept), and a 64-d pretrained item table correlated with
    the latent factors (item_id keeps only the popular items; rarer ones are OOV there but not in item_emb)."""

    WINDOW = 500  # timeline positions materialised per user: enough for 100 clicked and 100 non-clicked ids

    def __init__(self, spec: DatasetSpec, rows: int, seed: int, knobs: TwinKnobs, card_ratio: float):
        rng = np.random.default_rng([seed, 0])
        self.spec, self.knobs = spec, knobs
        cap = max(16.0, card_ratio * rows)
        n_users = _scaled_users(spec, rows, 10_000)
        self.card_emb = harmonic_cap(spec.feature("item_emb").cardinality, cap)
        n_all = self.card_emb - 2
        ratio = spec.feature("item_id").cardinality / spec.feature("item_emb").cardinality
        self.card_item = max(4, int(round(n_all * ratio)) + 2)
        self.card_user = n_users + 2
        self.cat = Catalog(rng, seed, n_all, max(4, n_all // 50), n_users, n_topics=max(4, n_all // 400),
                           interest_share=0.7)
        self.w_user = rng.standard_normal(n_users) * 0.5
        self.w_item = rng.standard_normal(n_all)
        d = LATENT_DIM
        self.visual = rng.standard_normal((n_all, d)) / math.sqrt(d)
        self.visual_appeal = rng.standard_normal(d)
        self.user_taste = rng.standard_normal((n_users, d)) * 0.7
        proj = rng.standard_normal((2 * d, 64)) / math.sqrt(2 * d)
        emb = np.concatenate([self.cat.item_vec, self.visual], axis=1) @ proj * math.sqrt(d)
        emb += 0.3 * rng.standard_normal(emb.shape)
        table = np.zeros((self.card_emb, 64), dtype=np.float32)
        table[1:-1] = emb
        self.table = table
        self.max_len = spec.feature("pos_items").max_len
        self.mean_len = spec.twin.mean_seq_len
        self._materialise(rng)

    def _materialise(self, rng):
        """Per user: the first WINDOW timeline items, whether each was clicked, and the first max_len clicked /
        non-clicked items in order."""
        c, w, m = self.cat, self.WINDOW, self.max_len
        users = np.repeat(np.arange(c.n_users), w)
        pos = np.tile(np.arange(w), c.n_users)
        items = c.timeline(users, pos)
        aff = np.einsum("nd,nd->n", c.user_vec[users], c.item_vec[items]) * LATENT_DIM
        p_click = sigmoid(-1.2 + aff + (self.visual[items] @ self.visual_appeal))
        clicked = (hash_uniform(c.seed, 30, users, pos) < p_click).reshape(c.n_users, w)
        items = items.reshape(c.n_users, w)
        self.cum = {}
        self.first_m = {}
        for key, sel in (("pos", clicked), ("neg", ~clicked)):
            cum = np.zeros((c.n_users, w + 1), dtype=np.int64)
            np.cumsum(sel, axis=1, out=cum[:, 1:])
            rank = cum[:, 1:] - 1  # 0-based order among selected
            keep = sel & (rank < m)
            first = np.full((c.n_users, m), -1, dtype=np.int64)
            ui, pi = np.nonzero(keep)
            first[ui, rank[ui, pi]] = items[ui, pi]
            self.cum[key], self.first_m[key] = cum, first
        self.click_rate = float(clicked.mean())

    @property
    def vocab_sizes(self) -> dict[str, int]:
        return {"user_id": self.card_user, "item_id": self.card_item, "item_emb": self.card_emb,
                "pos_items": self.card_item, "neg_items": self.card_item, "pos_items_emb": self.card_emb,
                "neg_items_emb": self.card_emb}

    def tables(self) -> dict[str, np.ndarray]:
        return {"item_emb": self.table}

    def _item_id(self, idx: np.ndarray) -> np.ndarray:
        """Item index -> item_id vocabulary id (rare items are OOV, 0 stays padding)."""
        oov = self.card_item - 1
        return np.where(idx < 0, 0, np.where(idx < self.card_item - 2, idx + 1, oov))

    def sample(self, rng: np.random.Generator, n: int, t: np.ndarray):
        c, m = self.cat, self.max_len
        user = c.users(rng, n)
        length = np.minimum(lognormal_lengths(rng, self.mean_len, 1.0, n), self.WINDOW)
        seqs = {}
        sims = {}
        target = c.draw(user, rng.random(n), rng.random(n), rng.random(n), rng.random(n))
        tvec = c.item_vec[target]
        for key in ("pos", "neg"):
            cnt = np.minimum(self.cum[key][user, length], m)
            idx = left_pad(self.first_m[key][user], cnt, m)  # item indices, padding = 0 from left_pad
            valid = np.arange(m)[None, :] >= (m - cnt[:, None])
            idx = np.where(valid, idx, -1)
            seqs[key] = idx
            sims[key] = attention_similarity(tvec, c.item_vec[np.maximum(idx, 0)], valid)
        first = self.w_user[user] + self.w_item[target]
        pair = np.einsum("nd,nd->n", c.user_vec[user], tvec)
        visual = self.visual[target] @ self.visual_appeal + np.einsum("nd,nd->n", self.user_taste[user],
                                                                         self.visual[target])
        blocks = {
            "categorical": np.stack([user + 1, self._item_id(target)], axis=1).astype(np.int32),
            "pretrained": (target + 1).astype(np.int32)[:, None],
            "seq__pos_items": self._item_id(seqs["pos"]).astype(np.int32),
            "seq__neg_items": self._item_id(seqs["neg"]).astype(np.int32),
            "seq__pos_items_emb": (seqs["pos"] + 1).astype(np.int32),
            "seq__neg_items_emb": (seqs["neg"] + 1).astype(np.int32),
            "group_id": (user + 1).astype(np.int64),
        }
        parts = {"first": first, "pair": pair, "visual": visual, "rel_pos": sims["pos"][1], "rel_neg": -sims["neg"][0]}
        return blocks, parts, 0.0

    def describe(self) -> dict:
        return {"n_users": self.cat.n_users, "n_items": self.cat.n_items, "item_id_vocab_items": self.card_item - 2,
                "n_topics": self.cat.n_topics, "history_click_rate": self.click_rate,
                "mean_seq_len": self.mean_len, "history": "oldest 100 clicked / non-clicked of the timeline prefix"}


BUILDERS = {
    "criteo_x1": TabularTwin, "criteo": TabularTwin, "criteo_terabyte": TabularTwin, "avazu_x1": TabularTwin,
    "avazu": TabularTwin, "amazonelectronics_x1": AmazonTwin, "taobaoad_x1": TaobaoTwin, "kuaivideo_x1": KuaiTwin,
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


def build_model(spec: DatasetSpec, rows: int, seed: int, card_ratio: float = 0.05):
    if spec.name not in BUILDERS:
        raise DataError(f"no synthetic twin for dataset {spec.name!r}; have {sorted(BUILDERS)}")
    knobs = KNOBS[spec.name]
    return BUILDERS[spec.name](spec, rows, seed, knobs, card_ratio), knobs


def generate_twin(
    spec: DatasetSpec,
    path: str | os.PathLike,
    *,
    rows: int | None = None,
    seed: int = 0,
    card_ratio: float = 0.05,
    auc_margin: float = 0.012,
    progress: bool | None = None,
) -> Cache:
    """Generate the synthetic twin of `spec` into a cache at `path` and open it.

    rows: total rows (default spec.twin.default_rows); card_ratio: vocabularies approach card_ratio * rows;
    auc_margin: the expected oracle AUC sits this much above spec.twin.best_published_auc.
    """
    from ctrbench import metrics

    rows = int(rows or spec.twin.default_rows)
    if rows < 100:
        raise DataError(f"a twin needs at least 100 rows, got {rows}")
    t0 = time.perf_counter()
    model, knobs = build_model(spec, rows, seed, card_ratio)
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
    mixer = SignalMixer(knobs.shares)
    mixer.fit(parts_all)
    target_auc = spec.twin.best_published_auc + auc_margin
    scale, bias = solve_scale(mixer(parts_all), offset_all, spec.twin.base_ctr, target_auc)
    t_tuned = time.perf_counter()

    writer = CacheWriter(path, spec)
    plan = split_plan(spec, rows, knobs)
    keep = {}
    show = progress if progress is not None else rows >= 5_000_000
    bar = _progress(rows, f"twin {spec.name}") if show else None
    try:
        for s_idx, (split, lo, hi) in enumerate(plan):
            labels, oracle, groups = [], [], []
            for c_idx, start in enumerate(range(lo, hi, knobs.chunk_rows)):
                n = min(knobs.chunk_rows, hi - start)
                rng = np.random.default_rng([seed, 2, s_idx, c_idx])
                t = (np.arange(start, start + n) + 0.5) / rows
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
            "seed": seed, "rows": rows, "card_ratio": card_ratio,
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
