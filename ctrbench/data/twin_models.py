"""The per-dataset generators behind the synthetic twins: how rows, ids and the click model's signal parts are
drawn for Criteo/Avazu-style tables and for the sequential AmazonElectronics, TaobaoAd and KuaiVideo sets.

Each builder is constructed from (spec, TwinSize, seed, TwinKnobs) with all its parameters drawn from
rng(seed, 0) (plus rng(seed, 3) for frequency pilots), and offers `sample(rng, n, t) -> (blocks, parts, offset)`:
the cache blocks of n rows, the unscaled signal parts (combined by the driver's SignalMixer) and a logit offset
(drift). Learnability at the twin's size: an id's planted effects are shrunk by sqrt(m / (m + kappa)), m = its
expected number of training rows times the information a row carries at the twin's CTR (4 ctr (1 - ctr), 1 at
50%), so ids too rare to be learned from this many rows (clicks, at a low CTR) carry little signal
(a hierarchical prior: rare ids behave like their field's average); the driver then scales the whole signal to
the target oracle AUC, so the difficulty sits in effects a model can actually estimate.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ctrbench.data.click_model import GroupedSampler, harmonic_cap, hash_uniform, sample_cdf, sigmoid, zipf_cdf
from ctrbench.data.schema import DatasetSpec
from ctrbench.errors import DataError

LATENT_DIM = 8  # item/user latent factors of the sequential catalogs
FIELD_DIM = 4  # latent factors of categorical fields (FM pairs, cross terms): low rank keeps them learnable
ZIPF_RANGE = (1.1, 1.4)  # per-field Zipf exponents: Criteo/Avazu fields are dominated by a few head ids


@dataclass(frozen=True)
class TwinSize:
    """How big a twin is: rows, training rows, the vocabulary cap ratio, the learnability constant and the
    information one training row carries about an id's effect at the twin's CTR (`row_information`)."""

    rows: int
    train_rows: int
    card_ratio: float = 0.005
    kappa: float = 3000.0
    row_information: float = 1.0  # 4 * ctr * (1 - ctr): a logistic row's Fisher information, 1 at a 50% CTR

    @property
    def cap(self) -> float:
        return max(16.0, self.card_ratio * self.rows)

    def card(self, published: int) -> int:
        return harmonic_cap(published, self.cap)

    def shrink(self, expected_train_count: np.ndarray) -> np.ndarray:
        """sqrt(m / (m + kappa)) with m = expected training rows x row_information: a 5%-CTR row says about a
        fifth of what a 50%-CTR row says about an id's effect, so a low-CTR twin needs more rows per id."""
        m = np.asarray(expected_train_count, dtype=np.float64) * self.row_information
        return np.sqrt(m / (m + self.kappa)) if self.kappa > 0 else np.ones_like(m)


@dataclass(frozen=True)
class TwinKnobs:
    """Per-dataset generator settings (the defaults live in synthetic.KNOBS)."""

    shares: dict  # signal part -> variance share
    split_fractions: tuple = (0.8, 0.1, 0.1)
    chunk_rows: int = 131_072
    trend: float = 0.0  # logit offset slope over t (avazu_x1's falling CTR)
    days: int = 0
    drift_angle: float = 0.0  # radians the first-order effects rotate over all days
    weekly_wave: float = 0.0  # logit amplitude of a 7-day bias wave
    missing: str = "none"  # "criteo": Criteo-like missing rates for categoricals and numerics


# =========================================================================================== shared pieces


class IdField:
    """One categorical field: a Zipf sampler (id 1 the most frequent) and its planted effects."""

    def __init__(self, rng: np.random.Generator, name: str, cardinality: int, *, missing_rate: float = 0.0,
                 importance: float = 1.0, drift: bool = False):
        self.name, self.card = name, int(cardinality)
        self.missing_rate = missing_rate
        # Zipf ids 1..n; with missing values, id n+1 = C-2 is the missing token (an ordinary, learnable id, as
        # `data prepare` makes an empty cell); C-1 is OOV (never generated); 0 is padding (never generated)
        self.n = self.card - (3 if missing_rate > 0 else 2)
        if self.n < 1:
            raise DataError(f"field {name}: vocabulary {self.card} leaves no room for ids", field=name)
        self.missing_id = self.n + 1 if missing_rate > 0 else None
        self.exponent = float(rng.uniform(*ZIPF_RANGE))
        self.cdf = zipf_cdf(self.n, self.exponent)
        self.w = (rng.standard_normal(self.card) * importance).astype(np.float32)
        self.v = (rng.standard_normal((self.card, FIELD_DIM)) / math.sqrt(FIELD_DIM)).astype(np.float32)
        self.w2 = (rng.standard_normal(self.card) * importance).astype(np.float32) if drift else None
        self.shrink(np.r_[0.0, np.ones(self.card - 2), 0.0])  # padding and OOV carry no effect

    def probabilities(self) -> np.ndarray:
        """P(id) for ids 0..C-1 (0 = padding, C-2 = missing when the field has missing values, C-1 = OOV)."""
        p = np.zeros(self.card)
        p[1:self.n + 1] = (1 - self.missing_rate) * np.diff(self.cdf, prepend=0.0)
        if self.missing_id is not None:
            p[self.missing_id] = self.missing_rate
        return p

    def shrink(self, g: np.ndarray) -> None:
        g = g.astype(np.float32)
        self.w *= g
        self.v *= g[:, None]
        if self.w2 is not None:
            self.w2 *= g

    def sample(self, u: np.ndarray, u_missing: np.ndarray | None = None) -> np.ndarray:
        ids = sample_cdf(self.cdf, u) + 1
        if self.missing_rate > 0 and u_missing is not None:
            ids[u_missing < self.missing_rate] = self.missing_id
        return ids.astype(np.int32)


class RandomMLP:
    """A fixed random tanh network: the higher-order cross term over a few fields' latent factors."""

    def __init__(self, rng: np.random.Generator, n_in: int, hidden: int = 16):
        self.w1 = (rng.standard_normal((n_in, hidden)) * (2.0 / math.sqrt(n_in))).astype(np.float32)
        self.b1 = (rng.standard_normal(hidden) * 0.5).astype(np.float32)
        self.w2 = (rng.standard_normal(hidden) / math.sqrt(hidden)).astype(np.float32)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.tanh(x @ self.w1 + self.b1) @ self.w2


def pairwise_fm(v: np.ndarray, r: np.ndarray) -> np.ndarray:
    """sum_{f<g} r_fg <v_f, v_g> for latent factors v [k, n, F] (factor-major) and a symmetric weight matrix
    r [F, F] with zero diagonal; one GEMM over all k*n rows."""
    k, n, f = v.shape
    flat = v.reshape(k * n, f)
    return 0.5 * ((flat @ r) * flat).sum(1).reshape(k, n).sum(0)


def clique_pairs(rng: np.random.Generator, n_fields: int, members: np.ndarray, spread: float = 0.25) -> np.ndarray:
    """A symmetric [F, F] weight matrix whose non-zero pairs are all pairs among `members` (an FM-like clique,
    weights 1 +- spread, so a field-weighted FM fits it exactly and a plain FM nearly)."""
    r = np.zeros((n_fields, n_fields), dtype=np.float32)
    m = np.asarray(members)
    w = rng.uniform(1 - spread, 1 + spread, (len(m), len(m)))
    r[np.ix_(m, m)] = np.triu(w, 1) + np.triu(w, 1).T
    return r


def lognormal_lengths(rng: np.random.Generator, mean: float, sigma: float, n: int) -> np.ndarray:
    """Long-tailed history lengths >= 1 with (about) the given mean before truncation."""
    mu = math.log(max(mean, 1.0)) - 0.5 * sigma * sigma
    return np.maximum(1, np.round(np.exp(mu + sigma * rng.standard_normal(n)))).astype(np.int64)


def left_pad(values: np.ndarray, lengths: np.ndarray, width: int, fill=0) -> np.ndarray:
    """Row i: the first lengths[i] entries of values[i] right-aligned in a row of `width` (rest = fill)."""
    n = values.shape[0]
    src = np.arange(width)[None, :] - (width - lengths[:, None])
    mask = src >= 0
    out = np.full((n, width), fill, dtype=values.dtype)
    out[mask] = values[np.nonzero(mask)[0], src[mask]]
    return out


def expected_counts(ids: np.ndarray, card: int, pilot_rows: int, train_rows: int) -> np.ndarray:
    """Expected training-row count of every id 0..card-1 from a frequency pilot of `pilot_rows` rows."""
    return np.bincount(ids.reshape(-1), minlength=card)[:card] * (train_rows / pilot_rows)


def attention_similarity(target: np.ndarray, item_vec: np.ndarray, hist: np.ndarray, beta: float = 3.0,
                         weights: np.ndarray | None = None):
    """Mean- and softmax-attention-pooled similarity between each row's target vector [n, d] and the vectors
    of its history items (hist [n, T] item indices, -1 = padding); computed on the valid cells only.
    `weights` [n, T] (optional) multiply the attention weights (e.g. by behaviour type)."""
    n = hist.shape[0]
    rows, cols = np.nonzero(hist >= 0)  # row-major, so each row's cells are contiguous
    items = hist[rows, cols]
    sim = np.einsum("md,md->m", target[rows], item_vec[items]) * math.sqrt(target.shape[1])
    cnt = np.bincount(rows, minlength=n)
    mean = np.bincount(rows, weights=sim, minlength=n) / np.maximum(cnt, 1)
    mx = np.full(n, 0.0)
    if rows.size:
        starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
        mx[rows[starts]] = np.maximum.reduceat(sim, starts)
    e = np.exp(beta * (sim - mx[rows]))
    if weights is not None:
        e = e * weights[rows, cols]
    den = np.bincount(rows, weights=e, minlength=n)
    attn = np.where(den > 0, np.bincount(rows, weights=e * sim, minlength=n) / np.maximum(den, 1e-300), 0.0)
    return mean, attn


def recency_pool(values: np.ndarray, valid: np.ndarray, half_life: float = 1.0) -> np.ndarray:
    """Short-term intent: sum over a left-padded history of (value_j - the row's mean value) * 2^(-age_j /
    half_life), age 0 = the last slot (the latest behaviour), padded cells ignored. With half_life 1 the latest
    behaviour weighs 1, the one before 0.5, ...; centring on the row's mean keeps only what the latest
    behaviours say beyond the user's long-term mix, so a mean over the whole history cannot read it: only a
    model that sees positions (recent tokens, position embeddings) can. The sum goes through tanh so that a rare
    long same-category streak saturates instead of pushing the click probability to 1."""
    width = values.shape[1]
    v = np.where(valid, values, 0.0)
    mean = v.sum(1, keepdims=True) / np.maximum(valid.sum(1, keepdims=True), 1)
    decay = 2.0 ** (-np.arange(width - 1, -1, -1, dtype=np.float64) / half_life)
    return np.tanh(np.where(valid, v - mean, 0.0) @ decay)


# =========================================================================================== tabular twins

# Criteo-like numeric shapes per I-field: (missing rate, median count, log-sigma, zero share, min value)
CRITEO_NUMERIC = [(0.45, 1, 1.2, 0.3, 0), (0.0, 3, 2.0, 0.1, -3), (0.21, 7, 1.5, 0.1, 0), (0.22, 6, 1.0, 0.05, 0),
                  (0.03, 1400, 1.8, 0.02, 0), (0.23, 30, 1.7, 0.1, 0), (0.04, 3, 1.6, 0.2, 0), (0.0005, 8, 1.2, 0.05, 0),
                  (0.04, 40, 1.4, 0.02, 0), (0.45, 1, 0.6, 0.5, 0), (0.04, 1, 1.0, 0.3, 0), (0.77, 1, 1.3, 0.6, 0),
                  (0.22, 5, 1.2, 0.1, 0)]
# Criteo categorical missing rates C1..C26 (approximate shares of empty cells in train.txt)
CRITEO_CAT_MISSING = [0, 0, 0.03, 0.03, 0, 0.12, 0, 0, 0, 0, 0, 0.03, 0, 0, 0, 0.03, 0, 0, 0.44, 0.44, 0.03, 0.76,
                      0, 0.03, 0.44, 0.44]


class TabularTwin:
    """Criteo/Avazu-style twins: independent Zipf fields, FM pairs, random-MLP + 3-way cross term, numeric counts."""

    def __init__(self, spec: DatasetSpec, size: TwinSize, seed: int, knobs: TwinKnobs):
        rng = np.random.default_rng([seed, 0])
        self.spec, self.knobs = spec, knobs
        crit = knobs.missing == "criteo"
        self.fields = [
            IdField(rng, f.name, size.card(f.cardinality),
                    missing_rate=(CRITEO_CAT_MISSING[i] if crit and i < len(CRITEO_CAT_MISSING) else 0.0),
                    importance=float(rng.uniform(0.4, 1.0)), drift=knobs.days > 0)
            for i, f in enumerate(spec.categorical)
        ]
        for f in self.fields:
            f.shrink(size.shrink(f.probabilities() * size.train_rows))
        nf = len(self.fields)
        # interactions live among the smallest third of the fields (by scaled vocabulary), where this many
        # rows can pin them down
        small = np.argsort([f.card for f in self.fields], kind="stable")[: max(4, nf // 3)]
        self.fm_fields = np.sort(rng.choice(small, size=max(3, (3 * len(small)) // 4), replace=False))
        self.pairs = clique_pairs(rng, nf, self.fm_fields)
        self.mlp_fields = np.sort(rng.choice(small, size=3, replace=False))
        self.mlp = RandomMLP(rng, FIELD_DIM * len(self.mlp_fields))
        self.triple = np.sort(rng.choice(small, size=min(3, len(small)), replace=False))
        self.numeric = spec.numeric
        nn_ = len(self.numeric)
        self.num_shape = [CRITEO_NUMERIC[j % len(CRITEO_NUMERIC)] for j in range(nn_)]
        self.num_coef = rng.standard_normal(nn_)
        self.num_bump = rng.standard_normal(nn_)
        self.num_center = rng.uniform(0.5, 3.0, nn_)
        # criteo_x1 stores [0, 1] floats: log1p(min(x, cap)) / log1p(cap), cap ~ the 99.9% quantile
        self.num_cap = np.array([math.exp(math.log(m + 1) + 3.1 * s) for (_, m, s, _, _) in self.num_shape])
        self.day_phase = float(rng.uniform(0, 2 * math.pi))
        # all fields' tables concatenated: a chunk's effects are one gather each
        self.offsets = np.cumsum([0] + [f.card for f in self.fields[:-1]]).astype(np.int64)
        self.w_all = np.concatenate([f.w for f in self.fields]).astype(np.float64)
        self.v_all_t = np.ascontiguousarray(np.concatenate([f.v for f in self.fields]).T)  # [k, sum C]
        self.w2_all = np.concatenate([f.w2 for f in self.fields]).astype(np.float64) if knobs.days else None

    @property
    def vocab_sizes(self) -> dict[str, int]:
        return {f.name: f.card for f in self.fields}

    def tables(self) -> dict[str, np.ndarray]:
        return {}

    def _numeric(self, rng: np.random.Generator, n: int):
        """Raw counts -> stored values per the spec's transform, and their summed effect on the logit."""
        if not self.numeric:
            return None, np.zeros(n)
        stored, effects = self.numeric_columns(rng, n)
        return stored, effects.sum(1)

    def numeric_columns(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Stored values [n, n_numeric] and each column's effect on the logit [n, n_numeric]: column j's effect
        is a function of its stored value alone."""
        nn_ = len(self.numeric)
        stored = np.empty((n, nn_), dtype=np.float32)
        effects = np.empty((n, nn_))
        for j, f in enumerate(self.numeric):
            miss, med, sig, zero, lo = self.num_shape[j]
            x = np.floor(np.exp(math.log(med + 0.5) + sig * rng.standard_normal(n)))
            x[rng.random(n) < zero] = 0
            if lo < 0:
                neg = rng.random(n) < 0.05
                x[neg] = rng.integers(lo, 0, int(neg.sum()))
            missing = rng.random(n) < miss
            # the effect sees only what is stored: a missing value reads as 0 (every transform stores it so),
            # and criteo_x1's floats are capped, so the oracle never knows more than a model can
            cap = self.num_cap[j] if f.transform == "none" else np.inf
            z = np.log1p(np.where(missing, 0.0, np.minimum(np.maximum(x, 0), cap)))
            effects[:, j] = self.num_coef[j] * z / 3.0 + self.num_bump[j] * np.exp(-0.5 * (z - self.num_center[j]) ** 2)
            if f.transform == "log1p_clip0":  # dlrm-kaggle: ln(max(x, 0) + 1), missing -> 0
                v = np.log1p(np.maximum(x, 0))
                v[missing] = 0.0
            elif f.transform == "log_plus3":  # torchrec/MLPerf: missing -> 0, then ln(x + 3)
                v = np.log(np.where(missing, 0.0, np.maximum(x, -2)) + 3.0)
            elif f.transform == "none":  # criteo_x1: already-transformed floats in [0, 1] (log-scaled counts)
                v = np.log1p(np.minimum(np.maximum(x, 0), self.num_cap[j])) / math.log1p(self.num_cap[j])
                v[missing] = 0.0
            else:
                raise DataError(f"twin has no generator for numeric transform {f.transform!r}", field=f.name)
            stored[:, j] = v
        return stored, effects

    def sample(self, rng: np.random.Generator, n: int, t: np.ndarray):
        nf = len(self.fields)
        u = rng.random((n, nf))
        um = rng.random((n, nf))
        ids = np.empty((n, nf), dtype=np.int32)
        for j, f in enumerate(self.fields):
            ids[:, j] = f.sample(u[:, j], um[:, j])
        offset = self.knobs.trend * (t - 0.5)
        flat = ids + self.offsets
        first = self.w_all[flat].sum(1)
        blocks = {"categorical": ids}
        if self.knobs.days:
            day = np.minimum((t * self.knobs.days).astype(np.int64), self.knobs.days - 1)
            theta = self.knobs.drift_angle * day / max(1, self.knobs.days - 1)
            first = np.cos(theta) * first + np.sin(theta) * self.w2_all[flat].sum(1)
            offset = offset + self.knobs.weekly_wave * np.sin(2 * math.pi * day / 7 + self.day_phase)
            blocks["day"] = day.astype(np.int32)
        v = self.v_all_t[:, flat]  # [k, n, F]
        pair = pairwise_fm(v, self.pairs)
        mlp_in = v[:, :, self.mlp_fields].transpose(1, 2, 0).reshape(n, -1)
        higher = self.mlp(mlp_in) + np.prod(v[:, :, self.triple], axis=2).sum(0) * 4.0
        stored, num_effect = self._numeric(rng, n)
        if stored is not None:
            blocks["numeric"] = stored
        parts = {"first": first, "pair": pair, "higher": higher, "numeric": num_effect}
        return blocks, parts, offset

    def describe(self) -> dict:
        return {
            "zipf_exponents": {f.name: round(f.exponent, 4) for f in self.fields},
            "missing_rates": {f.name: f.missing_rate for f in self.fields if f.missing_rate},
            "fm_fields": [self.fields[i].name for i in self.fm_fields],
            "mlp_fields": [self.fields[i].name for i in self.mlp_fields],
            "triple_fields": [self.fields[i].name for i in self.triple],
        }


# =========================================================================================== sequential twins


class Catalog:
    """Topics -> categories -> items (or brands) with Zipf popularity and latent factors that follow the tree,
    and users with 1-3 interest topics. A user's timeline is a hash of (seed, user, position)."""

    def __init__(self, rng: np.random.Generator, seed: int, n_items: int, n_cates: int, n_users: int,
                 n_topics: int, interest_share: float = 0.8, item_spread: float = 0.6):
        self.seed = seed
        self.n_items, self.n_cates, self.n_users, self.n_topics = n_items, n_cates, n_users, n_topics
        d = LATENT_DIM
        self.topic_vec = rng.standard_normal((n_topics, d))
        self.cate_topic = rng.integers(0, n_topics, n_cates)
        self.cate_vec = self.topic_vec[self.cate_topic] + 0.6 * rng.standard_normal((n_cates, d))
        cate_pop = np.arange(1, n_cates + 1, dtype=np.float64) ** -rng.uniform(0.9, 1.1)
        self.item_cate = sample_cdf(np.cumsum(cate_pop) / cate_pop.sum(), rng.random(n_items))
        k = min(n_cates, n_items)  # every category owns at least one item when there are enough items
        self.item_cate[rng.permutation(n_items)[:k]] = np.arange(k)
        self.item_noise = rng.standard_normal((n_items, d))
        self.item_spread = item_spread
        self.item_vec = self._item_vec(np.ones(n_items))
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
        self.user_topics = sample_cdf(np.cumsum(topic_pop) / topic_pop.sum(), rng.random((n_users, 3)))
        w = rng.dirichlet(np.ones(3) * 0.7, n_users)
        self.user_topic_cdf = np.cumsum(w, axis=1)
        self.user_topic_cdf[:, -1] = 1.0
        self.user_vec = (np.einsum("ut,utd->ud", w, self.topic_vec[self.user_topics])
                         + 0.5 * rng.standard_normal((n_users, d))) / math.sqrt(d)
        act = rng.lognormal(0.0, 1.0, n_users)
        self.user_cdf = np.cumsum(act) / act.sum()
        self.user_cdf[-1] = 1.0
        self.interest_share = interest_share

    def _item_vec(self, g: np.ndarray) -> np.ndarray:
        v = (self.cate_vec[self.item_cate] + self.item_spread * g[:, None] * self.item_noise) / math.sqrt(LATENT_DIM)
        return v.astype(np.float32)

    def shrink_items(self, g: np.ndarray) -> None:
        """Rare items keep only their category's direction (their own deviation is unlearnable at this size)."""
        self.item_vec = self._item_vec(g)

    def users(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return sample_cdf(self.user_cdf, rng.random(n))

    def draw(self, user: np.ndarray, u_mode: np.ndarray, u_topic: np.ndarray, u_cate: np.ndarray,
             u_item: np.ndarray) -> np.ndarray:
        """Item index from the user's interests (prob. interest_share) or from global popularity."""
        slot = (u_topic[:, None] >= self.user_topic_cdf[user]).sum(1).clip(0, 2)
        cate = self.cates_by_topic.sample(self.user_topics[user, slot], u_cate)
        item_interest = self.items_by_cate.sample(cate, u_item)
        item_global = sample_cdf(self.item_cdf, u_item)
        return np.where(u_mode < self.interest_share, item_interest, item_global)

    def draw_rng(self, rng: np.random.Generator, user: np.ndarray) -> np.ndarray:
        n = user.shape[0]
        return self.draw(user, rng.random(n), rng.random(n), rng.random(n), rng.random(n))

    def timeline(self, user: np.ndarray, pos: np.ndarray, stream: int = 10) -> np.ndarray:
        """The item at timeline position `pos` of `user` (a pure function of seed, user and position)."""
        return self.draw(user, *(hash_uniform(self.seed, stream + k, user, pos) for k in range(4)))

    def history(self, user: np.ndarray, length: np.ndarray, width: int):
        """Timeline items at positions [length - width, length) per row, left-padded: (items or -1, mask)."""
        pos = length[:, None] - width + np.arange(width)[None, :]
        mask = pos >= 0
        items = np.full(pos.shape, -1, dtype=np.int64)
        items[mask] = self.timeline(np.broadcast_to(user[:, None], pos.shape)[mask], pos[mask])
        return items, mask, pos


def scaled_users(spec: DatasetSpec, rows: int, real_users: int) -> int:
    return int(min(real_users, max(10, round(spec.twin.n_users * rows / spec.twin.default_rows))))


FREQ_PILOT_ROWS = 50_000


class AmazonTwin:
    """AmazonElectronics_x1: user (meta) histories of items and their categories; the target is the user's next
    timeline item (50%) or a popular random item (DIN's positive/negative construction); the planted model
    decides the label."""

    def __init__(self, spec: DatasetSpec, size: TwinSize, seed: int, knobs: TwinKnobs):
        rng = np.random.default_rng([seed, 0])
        self.spec, self.knobs = spec, knobs
        self.card_item = size.card(spec.feature("item_id").cardinality)
        self.card_cate = size.card(spec.feature("cate_id").cardinality)
        n_users = scaled_users(spec, size.rows, 192_403)
        self.cat = Catalog(rng, seed, self.card_item - 2, self.card_cate - 2, n_users,
                           n_topics=max(4, (self.card_cate - 2) // 20))
        self.w_item = rng.standard_normal(self.card_item - 2)
        self.w_cate = rng.standard_normal(self.card_cate - 2) * 0.7
        self.max_len = spec.feature("item_history").max_len
        self.mean_len = spec.twin.mean_seq_len
        # learnability: shrink by expected training occurrences (as target and in histories)
        n = min(FREQ_PILOT_ROWS, size.rows)
        _, _, target, hist, _ = self._rows(np.random.default_rng([seed, 3]), n)
        cnt_t = expected_counts(target, self.cat.n_items, n, size.train_rows)
        cnt_h = expected_counts(hist[hist >= 0], self.cat.n_items, n, size.train_rows)
        self.w_item *= size.shrink(cnt_t)
        self.w_cate *= size.shrink(np.bincount(self.cat.item_cate, weights=cnt_t, minlength=self.cat.n_cates))
        self.cat.shrink_items(size.shrink(cnt_t + cnt_h))

    def _rows(self, rng: np.random.Generator, n: int):
        c = self.cat
        user = c.users(rng, n)
        length = lognormal_lengths(rng, self.mean_len, 0.9, n)
        hist, mask, _ = c.history(user, length, self.max_len)
        nxt = c.timeline(user, length)
        rnd = sample_cdf(c.item_cdf, rng.random(n))
        target = np.where(rng.random(n) < 0.5, nxt, rnd)
        return user, length, target, hist, mask

    @property
    def vocab_sizes(self) -> dict[str, int]:
        return {"item_id": self.card_item, "cate_id": self.card_cate, "item_history": self.card_item,
                "cate_history": self.card_cate}

    def tables(self) -> dict[str, np.ndarray]:
        return {}

    def sample(self, rng: np.random.Generator, n: int, t: np.ndarray):
        c = self.cat
        user, _, target, hist, mask = self._rows(rng, n)
        tcate = c.item_cate[target]
        hcate = np.where(mask, c.item_cate[np.maximum(hist, 0)], -1)
        mean, attn = attention_similarity(c.item_vec[target], c.item_vec, hist)
        same_cate = hcate == tcate[:, None]
        match = np.log1p(same_cate.sum(1))
        blocks = {
            "categorical": np.stack([target + 1, tcate + 1], axis=1).astype(np.int32),
            "seq__item_history": np.where(mask, hist + 1, 0).astype(np.int32),
            "seq__cate_history": np.where(mask, hcate + 1, 0).astype(np.int32),
            "group_id": (user + 1).astype(np.int64),
        }
        parts = {"first": self.w_item[target] + self.w_cate[tcate], "rel_mean": mean, "rel_attn": attn,
                 "cate_match": match, "recent": recency_pool(same_cate.astype(np.float64), mask)}
        return blocks, parts, 0.0

    def describe(self) -> dict:
        return {"n_users": self.cat.n_users, "n_items": self.cat.n_items, "n_cates": self.cat.n_cates,
                "n_topics": self.cat.n_topics, "item_zipf_exponent": self.cat.item_exponent,
                "mean_seq_len": self.mean_len, "target": "next timeline item (50%) or a popular random item"}


class TaobaoTwin:
    """TaobaoAd_x1: user profiles (gender and age drive cms_group_id), an ad hierarchy (adgroup -> campaign ->
    customer -> brand -> category, price), behaviour histories of (category, brand, btag) from the user's
    interest topics; ads are targeted at the user's interests 40% of the time."""

    PROFILE = ["cms_segid", "cms_group_id", "final_gender_code", "age_level", "pvalue_level", "shopping_level",
               "occupation", "new_user_class_level"]
    FM = ["final_gender_code", "age_level", "pvalue_level", "shopping_level", "cms_group_id", "occupation",
          "cate_id", "brand", "pid", "customer"]
    FM_SIDE = [0, 0, 0, 0, 0, 0, 1, 1, 1, 1]  # user side x ad/context side pairs only
    MLP = ["final_gender_code", "age_level", "cate_id"]

    def __init__(self, spec: DatasetSpec, size: TwinSize, seed: int, knobs: TwinKnobs):
        rng = np.random.default_rng([seed, 0])
        self.spec, self.knobs = spec, knobs
        n_users = scaled_users(spec, size.rows, 1_140_000)
        self.cards = {f.name: size.card(f.cardinality) for f in spec.categorical}
        self.cards["userid"] = n_users + 2
        for small in ("btag", "pid"):  # pv/cart/fav/buy and the two ad slots keep their published size
            self.cards[small] = spec.feature(small).cardinality
        n_cates, n_brands = self.cards["cate_id"] - 2, self.cards["brand"] - 2
        self.cat = Catalog(rng, seed, n_brands, n_cates, n_users, n_topics=max(4, n_cates // 30))
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
        ad_pop = np.arange(1, n_ads + 1, dtype=np.float64) ** -rng.uniform(1.0, 1.15)
        self.ad_cdf = np.cumsum(ad_pop) / ad_pop.sum()
        self.ads_by_cate = GroupedSampler(self.ad_cate, ad_pop, n_cates)
        self.profile = {}
        for name in self.PROFILE:
            nv = self.cards[name] - 2
            self.profile[name] = sample_cdf(zipf_cdf(nv, rng.uniform(0.6, 1.2)), rng.random(n_users)) + 1
        g, a = self.profile["final_gender_code"], self.profile["age_level"]
        self.profile["cms_group_id"] = ((g - 1) * 7 + (a - 1)) % (self.cards["cms_group_id"] - 2) + 1
        self.fields = {f.name: IdField(rng, f.name, self.cards[f.name], importance=float(rng.uniform(0.3, 1.0)))
                       for f in spec.categorical}
        side = np.array(self.FM_SIDE)
        self.pairs = clique_pairs(rng, len(self.FM), np.arange(len(self.FM))) * (side[:, None] != side[None, :])
        self.mlp = RandomMLP(rng, FIELD_DIM * len(self.MLP))
        self.price_pref = rng.normal(0.0, 1.0, n_users)
        self.btag_weight = np.array([0.0, 1.0, 2.0, 2.0, 3.0])  # by btag id (1 = pv, 2 = cart, 3 = fav, 4 = buy)
        self.max_len = spec.feature("cate_his").max_len
        self.mean_len = spec.twin.mean_seq_len
        # learnability: shrink every field's effects by its ids' expected training count
        n = min(FREQ_PILOT_ROWS, size.rows)
        ids, brand_h, _, _, _ = self._rows(np.random.default_rng([seed, 3]), n)
        for name, f in self.fields.items():
            f.shrink(size.shrink(expected_counts(ids[name], f.card, n, size.train_rows)))
        cnt_b = expected_counts(np.r_[ids["brand"] - 1, brand_h[brand_h >= 0]], n_brands, n, size.train_rows)
        self.cat.shrink_items(size.shrink(cnt_b))
        self.price_pref *= size.shrink(expected_counts(ids["userid"] - 1, n_users, n, size.train_rows))

    def _rows(self, rng: np.random.Generator, n: int):
        c = self.cat
        user = c.users(rng, n)
        length = lognormal_lengths(rng, self.mean_len, 0.8, n)
        brand_h, mask, pos = c.history(user, length, self.max_len)
        ub = np.zeros(pos.shape)
        ub[mask] = hash_uniform(c.seed, 20, np.broadcast_to(user[:, None], pos.shape)[mask], pos[mask])
        btag_h = np.where(mask, 1 + (ub > 0.9).astype(int) + (ub > 0.94).astype(int) + (ub > 0.97).astype(int), 0)
        targeted = self.ads_by_cate.sample(c.item_cate[c.draw_rng(rng, user)], rng.random(n))
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
        return ids, brand_h, btag_h, mask, (user, ad)

    @property
    def vocab_sizes(self) -> dict[str, int]:
        v = dict(self.cards)
        v.update({"cate_his": v["cate_id"], "brand_his": v["brand"], "btag_his": v["btag"]})
        return v

    def tables(self) -> dict[str, np.ndarray]:
        return {}

    def sample(self, rng: np.random.Generator, n: int, t: np.ndarray):
        c = self.cat
        ids, brand_h, btag_h, mask, (user, ad) = self._rows(rng, n)
        names = [f.name for f in self.spec.categorical]
        first = sum(self.fields[k].w[ids[k]].astype(np.float64) for k in names if k != "btag")
        v = np.stack([self.fields[k].v[ids[k]].T for k in self.FM], axis=2)  # [k, n, F]
        pair = pairwise_fm(np.ascontiguousarray(v), self.pairs)
        higher = self.mlp(np.concatenate([self.fields[k].v[ids[k]] for k in self.MLP], axis=1))
        price = self.ad_price[ad]
        numeric_effect = -0.5 * (np.log(price) - 4.0 - 0.8 * self.price_pref[user]) ** 2
        # relevance: target brand vs history brands; carts, favourites and buys weigh more than views
        _, rel = attention_similarity(c.item_vec[self.ad_brand[ad]], c.item_vec, brand_h, beta=2.0,
                                      weights=self.btag_weight[btag_h])
        cate_h = np.where(mask, c.item_cate[np.maximum(brand_h, 0)] + 1, 0)
        blocks = {
            "categorical": np.stack([ids[k] for k in names], axis=1).astype(np.int32),
            "numeric": price.astype(np.float32)[:, None],
            "seq__cate_his": cate_h.astype(np.int32),
            "seq__brand_his": np.where(mask, brand_h + 1, 0).astype(np.int32),
            "seq__btag_his": btag_h.astype(np.int32),
            "group_id": (user + 1).astype(np.int64),
        }
        same_cate = cate_h == ids["cate_id"][:, None]
        parts = {"first": first, "pair": pair, "higher": higher, "numeric": numeric_effect, "rel_attn": rel,
                 "recent": recency_pool(same_cate.astype(np.float64), mask)}
        return blocks, parts, 0.0

    def describe(self) -> dict:
        return {"n_users": self.cat.n_users, "n_brands": self.cat.n_items, "n_cates": self.cat.n_cates,
                "n_adgroups": int(self.ad_camp.shape[0]), "n_topics": self.cat.n_topics,
                "mean_seq_len": self.mean_len, "price": "raw float, as BARS feeds it (no normaliser)"}


class KuaiTwin:
    """KuaiVideo_x1: users, items with latent and visual factors, clicked / non-clicked histories (the oldest 100
    of the user's timeline prefix, as the x1 converter kept them), and a 64-d pretrained item table correlated
    with the items' factors. item_id keeps only the popular items (rarer ones are OOV there, as min count 10
    does), item_emb covers every item — so the frozen vectors carry signal the id embedding cannot."""

    WINDOW = 500  # timeline positions materialised per user: room for 100 clicked and 100 non-clicked ids

    def __init__(self, spec: DatasetSpec, size: TwinSize, seed: int, knobs: TwinKnobs):
        rng = np.random.default_rng([seed, 0])
        self.spec, self.knobs = spec, knobs
        n_users = scaled_users(spec, size.rows, 10_000)
        self.card_emb = size.card(spec.feature("item_emb").cardinality)
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
        self.proj = rng.standard_normal((2 * d, 64)) / math.sqrt(2 * d)
        self.emb_noise = rng.standard_normal((n_all, 64)).astype(np.float32)
        self.max_len = spec.feature("pos_items").max_len
        self.mean_len = spec.twin.mean_seq_len
        # learnability: shrink item effects by expected training occurrences (the visual factors stay: the
        # pretrained table exposes them for every item)
        n = min(FREQ_PILOT_ROWS, size.rows)
        frng = np.random.default_rng([seed, 3])
        user = self.cat.users(frng, n)
        cnt = expected_counts(self.cat.draw_rng(frng, user), n_all, n, size.train_rows)
        self.w_item *= size.shrink(cnt)
        # the user's own effects (bias, visual taste, affinity in `pair`) by the user's expected training rows
        self.user_shrink = size.shrink(expected_counts(user, n_users, n, size.train_rows))
        self.w_user *= self.user_shrink
        self.user_taste *= self.user_shrink[:, None]
        self.cat.shrink_items(size.shrink(cnt * (1 + self.mean_len)))
        emb = np.concatenate([self.cat.item_vec, self.visual], axis=1) @ self.proj * math.sqrt(d)
        self.table = np.zeros((self.card_emb, 64), dtype=np.float32)
        self.table[1:-1] = emb + 0.3 * self.emb_noise
        self._materialise()

    def _materialise(self):
        """Per user: the first WINDOW timeline items, whether each was clicked, and the first max_len clicked /
        non-clicked items in order (the histories of every row are prefixes of these)."""
        c, w, m = self.cat, self.WINDOW, self.max_len
        users = np.repeat(np.arange(c.n_users), w)
        pos = np.tile(np.arange(w), c.n_users)
        items = c.timeline(users, pos)
        aff = np.einsum("nd,nd->n", c.user_vec[users], c.item_vec[items]) * LATENT_DIM
        p_click = sigmoid(-1.2 + aff + self.visual[items] @ self.visual_appeal)
        clicked = (hash_uniform(c.seed, 30, users, pos) < p_click).reshape(c.n_users, w)
        items = items.reshape(c.n_users, w)
        self.cum, self.first_m = {}, {}
        for key, sel in (("pos", clicked), ("neg", ~clicked)):
            cum = np.zeros((c.n_users, w + 1), dtype=np.int64)
            np.cumsum(sel, axis=1, out=cum[:, 1:])
            rank = cum[:, 1:] - 1
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
        """Item index -> item_id vocabulary id: rare items are OOV, -1 (padding) becomes 0."""
        return np.where(idx < 0, 0, np.where(idx < self.card_item - 2, idx + 1, self.card_item - 1))

    def sample(self, rng: np.random.Generator, n: int, t: np.ndarray):
        c, m = self.cat, self.max_len
        user = c.users(rng, n)
        length = np.minimum(lognormal_lengths(rng, self.mean_len, 1.0, n), self.WINDOW)
        target = c.draw_rng(rng, user)
        tvec = c.item_vec[target]
        seqs, sims = {}, {}
        for key in ("pos", "neg"):
            cnt = np.minimum(self.cum[key][user, length], m)
            idx = left_pad(self.first_m[key][user], cnt, m, fill=-1)
            seqs[key] = idx
            sims[key] = attention_similarity(tvec, c.item_vec, idx)
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
        latest = seqs["pos"]  # similarity to the latest clicked items (the pretrained table exposes item_vec)
        latest_sim = np.einsum("nd,ntd->nt", tvec, c.item_vec[np.maximum(latest, 0)])
        parts = {"first": self.w_user[user] + self.w_item[target],
                 "pair": self.user_shrink[user] * np.einsum("nd,nd->n", c.user_vec[user], tvec), "visual": visual,
                 "rel_pos": sims["pos"][1], "rel_neg": -sims["neg"][0], "recent": recency_pool(latest_sim, latest >= 0)}
        return blocks, parts, 0.0

    def describe(self) -> dict:
        return {"n_users": self.cat.n_users, "n_items": self.cat.n_items, "item_id_vocab_items": self.card_item - 2,
                "n_topics": self.cat.n_topics, "history_click_rate": self.click_rate, "mean_seq_len": self.mean_len,
                "history": "oldest 100 clicked / non-clicked ids of the timeline prefix"}


BUILDERS = {
    "criteo_x1": TabularTwin, "criteo": TabularTwin, "criteo_terabyte": TabularTwin, "avazu_x1": TabularTwin,
    "avazu": TabularTwin, "amazonelectronics_x1": AmazonTwin, "taobaoad_x1": TaobaoTwin, "kuaivideo_x1": KuaiTwin,
}
