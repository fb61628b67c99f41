"""Synthetic twins: determinism, schema fidelity, base CTR, the tuned oracle AUC, and that the planted model
holds signal a logistic regression cannot reach."""
import hashlib
import math

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression

from ctrbench import metrics
from ctrbench.data.cache import Cache
from ctrbench.data.click_model import expected_auc
from ctrbench.data.registry import DATASETS, get_spec
from ctrbench.data.schema import Kind
from ctrbench.data.synthetic import generate_twin

ROWS = 20_000
NAMES = sorted(DATASETS)


@pytest.fixture(scope="module")
def twins(tmp_path_factory):
    root = tmp_path_factory.mktemp("twins")
    return {name: generate_twin(get_spec(name), root / name, rows=ROWS, seed=0) for name in NAMES}


def _digest(cache: Cache) -> dict:
    out = {}
    for f in sorted(cache.path.rglob("*")):
        if f.is_file() and f.name != "manifest.json":
            out[str(f.relative_to(cache.path))] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


def test_same_seed_same_bytes(tmp_path, monkeypatch):
    import dataclasses

    from ctrbench.data import synthetic

    spec = get_spec("kuaivideo_x1")  # histories, a pretrained table; small chunks -> several per split
    monkeypatch.setitem(synthetic.KNOBS, spec.name, dataclasses.replace(synthetic.KNOBS[spec.name], chunk_rows=3000))
    a = generate_twin(spec, tmp_path / "a", rows=12_000, seed=7)
    b = generate_twin(spec, tmp_path / "b", rows=12_000, seed=7)
    c = generate_twin(spec, tmp_path / "c", rows=12_000, seed=8)
    da, db, dc = _digest(a), _digest(b), _digest(c)
    assert da == db and "tables/item_emb.npy" in da and "train/seq__pos_items.bin" in da
    assert all(da[k] != dc[k] for k in da)
    assert a.manifest["twin"]["scale"] == b.manifest["twin"]["scale"]


@pytest.mark.parametrize("name", NAMES)
def test_schema_fidelity(twins, name):
    cache = twins[name]
    spec = cache.spec
    assert set(cache.split_names) == {"train", "valid", "test"}
    assert sum(cache.split(s).rows for s in cache.split_names) == ROWS
    vocab = cache.vocab_sizes
    for f in spec.features:
        if f.kind in (Kind.CATEGORICAL, Kind.PRETRAINED, Kind.SEQUENCE):
            assert vocab[f.vocab_owner] >= 4, f.name
            assert vocab[f.vocab_owner] <= max(f.cardinality, 4) or f.name == "userid" or f.kind == Kind.SEQUENCE
    for s in cache.split_names:
        d = cache.split(s)
        n = d.rows
        cat = np.asarray(d["categorical"])
        assert cat.dtype == np.int32 and cat.shape == (n, len(spec.categorical))
        for j, f in enumerate(spec.categorical):
            assert cat[:, j].min() >= 0 and cat[:, j].max() <= vocab[f.name] - 1, f.name
            if spec.name != "kuaivideo_x1":  # only KuaiVideo's item_id has OOV ids (min count 10 in the real set)
                assert cat[:, j].max() <= vocab[f.name] - 2, f.name
        if spec.numeric:
            num = np.asarray(d["numeric"])
            assert num.dtype == np.float32 and num.shape == (n, len(spec.numeric)) and np.isfinite(num).all()
        else:
            assert "numeric" not in d
        for f in spec.sequences:
            seq = np.asarray(d[f"seq__{f.name}"])
            assert seq.dtype == np.int32 and seq.shape == (n, f.max_len)
            assert seq.min() >= 0 and seq.max() <= vocab[f.vocab_owner] - 1
            nz = seq != 0
            assert np.array_equal(nz, np.sort(nz, axis=1)), f"{f.name} is not left-padded"
            assert nz.any(axis=1).mean() > 0.5
        if spec.pretrained:
            pre = np.asarray(d["pretrained"])
            assert pre.shape == (n, len(spec.pretrained)) and pre.min() >= 1
            assert pre.max() <= vocab[spec.pretrained[0].name] - 2
        assert ("group_id" in d) == (spec.group_id is not None)
        y, p = np.asarray(d["label"]), np.asarray(d["oracle_p"])
        assert set(np.unique(y)) <= {0.0, 1.0} and 0 < p.min() and p.max() < 1
    for f in spec.pretrained:
        table = cache.table(f.name)
        assert table.shape == (vocab[f.name], f.pretrained_dim) and not table[0].any() and not table[-1].any()
    tw = cache.manifest["twin"]
    assert tw["rows"] == ROWS and tw["seed"] == 0 and set(tw["oracle"]) == {"train", "valid", "test"}
    assert tw["valid_is_test_in_bars"] == spec.valid_is_test


def test_sequences_follow_the_catalog(twins):
    """item -> category is one mapping shared by the targets and the histories."""
    d = twins["amazonelectronics_x1"].split("train")
    cat = np.asarray(d["categorical"])
    ih, ch = np.asarray(d["seq__item_history"]), np.asarray(d["seq__cate_history"])
    mapping = {}
    for item, cate in zip(np.r_[cat[:, 0], ih[ih > 0]], np.r_[cat[:, 1], ch[ih > 0]]):
        assert mapping.setdefault(item, cate) == cate
    assert np.array_equal(ih > 0, ch > 0)
    k = twins["kuaivideo_x1"].split("train")  # item_id and item_emb histories are the same items
    pos, pos_emb = np.asarray(k["seq__pos_items"]), np.asarray(k["seq__pos_items_emb"])
    assert np.array_equal(pos > 0, pos_emb > 0)


def _hanley_mcneil_se(a: float, n_pos: int, n_neg: int) -> float:
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    return math.sqrt((a * (1 - a) + (n_pos - 1) * (q1 - a * a) + (n_neg - 1) * (q2 - a * a)) / (n_pos * n_neg))


@pytest.mark.parametrize("name", NAMES)
def test_base_ctr_and_oracle_auc_band(twins, name):
    cache = twins[name]
    spec, tw = cache.spec, cache.manifest["twin"]
    y = np.concatenate([np.asarray(cache.split(s)["label"]) for s in cache.split_names])
    p = np.concatenate([np.asarray(cache.split(s)["oracle_p"]) for s in cache.split_names])
    base = spec.twin.base_ctr
    assert abs(y.mean() - base) < 0.15 * base + 3 * math.sqrt(base * (1 - base) / ROWS)
    assert abs(p.mean() - base) < 0.1 * base
    target = tw["target_oracle_auc"]
    assert spec.twin.best_published_auc + 0.005 <= target <= spec.twin.best_published_auc + 0.02
    a = metrics.auc(y, p)
    se = _hanley_mcneil_se(a, int(y.sum()), int((1 - y).sum()))
    assert abs(a - target) < 4 * se + 0.003, (a, target, se)


def _design(cache: Cache, split: str, scaler=None):
    """One-hot ids (categorical, pretrained ids), length-normalised bags of history ids, standardised numerics."""
    spec, d, vocab = cache.spec, cache.split(split), cache.vocab_sizes
    owners = sorted({f.vocab_owner for f in spec.features if f.kind in (Kind.CATEGORICAL, Kind.SEQUENCE, Kind.PRETRAINED)})
    base = dict(zip(owners, np.cumsum([0] + [vocab[o] for o in owners[:-1]])))
    width = sum(vocab[o] for o in owners)
    n = d.rows
    mats = []
    cat = np.asarray(d["categorical"]).astype(np.int64)
    for j, f in enumerate(spec.categorical):
        mats.append(sp.csr_matrix((np.ones(n), (np.arange(n), cat[:, j] + base[f.name])), shape=(n, width)))
    for j, f in enumerate(spec.pretrained):
        ids = np.asarray(d["pretrained"])[:, j].astype(np.int64)
        mats.append(sp.csr_matrix((np.ones(n), (np.arange(n), ids + base[f.name])), shape=(n, width)))
    for f in spec.sequences:
        seq = np.asarray(d[f"seq__{f.name}"]).astype(np.int64)
        r, c = np.nonzero(seq)
        lens = np.maximum((seq != 0).sum(1), 1)
        mats.append(sp.csr_matrix((1.0 / lens[r], (r, seq[r, c] + base[f.vocab_owner])), shape=(n, width)))
    x = sum(mats[1:], mats[0]).tocsr()
    if spec.numeric:
        num = np.log1p(np.maximum(np.asarray(d["numeric"], dtype=np.float64), 0))
        if scaler is None:
            scaler = (num.mean(0), num.std(0) + 1e-9)
        x = sp.hstack([x, sp.csr_matrix((num - scaler[0]) / scaler[1])]).tocsr()
    return x, np.asarray(d["label"]), np.asarray(d["oracle_p"]), scaler


@pytest.mark.parametrize("name", NAMES)
def test_oracle_clearly_beats_logistic_regression(twins, name):
    """LR fitted on train, compared on valid+test by the AUC expected under the oracle's probabilities (no label
    noise in the comparison, so a small twin suffices even at a 3-5% CTR)."""
    cache = twins[name]
    x_tr, y_tr, _, scaler = _design(cache, "train")
    held = [_design(cache, s, scaler) for s in ("valid", "test")]
    x_ev, p_ev = sp.vstack([h[0] for h in held]).tocsr(), np.concatenate([h[2] for h in held])
    lr = LogisticRegression(C=0.1, max_iter=400).fit(x_tr, y_tr)
    auc_lr = expected_auc(p_ev, lr.predict_proba(x_ev)[:, 1])
    auc_oracle = expected_auc(p_ev)
    assert auc_oracle - auc_lr > 0.02, (auc_oracle, auc_lr)
    assert auc_lr > 0.55  # the first-order signal is there for LR to find


def test_terabyte_days_and_avazu_trend(twins):
    tb = twins["criteo_terabyte"]
    days = {s: np.unique(np.asarray(tb.split(s)["day"])) for s in tb.split_names}
    assert list(days["train"]) == list(range(23)) and list(days["valid"]) == [23] == list(days["test"])
    assert tb.manifest["twin"]["days"] == 24 and tb.manifest["twin"]["drift"]["block"] == "day"
    av = twins["avazu_x1"]
    assert av.positive_rate("train") > av.positive_rate("test")  # the x1 split's falling CTR


def test_unknown_dataset_is_an_error(tmp_path):
    import dataclasses

    from ctrbench.errors import DataError

    spec = dataclasses.replace(get_spec("criteo_x1"), name="nope")
    with pytest.raises(DataError, match="no synthetic twin"):
        generate_twin(spec, tmp_path / "x", rows=1000)
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("name", ["criteo_x1", "criteo", "criteo_terabyte"])
def test_numeric_effect_is_a_function_of_the_stored_value(name):
    """The oracle must not know more than a model: a numeric column's planted effect depends on its stored value
    only (a missing count and a zero count are stored alike, so they must act alike)."""
    from ctrbench.data.synthetic import build_model

    model, _ = build_model(get_spec(name), 20_000, seed=0)
    stored, effects = model.numeric_columns(np.random.default_rng(5), 20_000)
    for j in range(stored.shape[1]):
        _, group = np.unique(stored[:, j], return_inverse=True)
        lo = np.full(group.max() + 1, np.inf)
        hi = np.full(group.max() + 1, -np.inf)
        np.minimum.at(lo, group, effects[:, j])
        np.maximum.at(hi, group, effects[:, j])
        assert np.all(hi - lo < 1e-9), f"{name} numeric column {j}: one stored value, several effects"


def test_recency_pool_weighs_the_latest_behaviour_beyond_the_row_mean():
    """Short-term intent: age 0 (the last slot) weighs 1, age 1 weighs 0.5; padding is ignored; a history with
    the same value everywhere carries no recency (centred on the row's mean); tanh bounds the result."""
    from ctrbench.data.twin_models import recency_pool

    valid = np.array([[False, True, True], [False, True, True], [True, True, True], [False, False, False]])
    values = np.array([[9.0, 0.0, 1.0], [9.0, 1.0, 0.0], [1.0, 1.0, 1.0], [5.0, 5.0, 5.0]])
    out = recency_pool(values, valid)
    assert out[0] == pytest.approx(math.tanh(0.5 * 1 + (-0.5) * 0.5))  # padded 9 ignored, mean 0.5
    assert out[1] == pytest.approx(math.tanh(-0.5 + 0.5 * 0.5))
    assert out[2] == 0.0 and out[3] == 0.0
    wide = np.random.default_rng(0).normal(0, 50, (100, 20))
    assert np.all(np.abs(recency_pool(wide, np.ones((100, 20), bool))) <= 1)


def test_amazon_recency_part_is_read_from_stored_order():
    """The AmazonElectronics twin's `recent` part is a function of the stored category history and its order (so a
    model can learn it, and only one that sees positions), and nearly uncorrelated with the mean-poolable match."""
    from ctrbench.data.synthetic import build_model
    from ctrbench.data.twin_models import recency_pool

    model, _ = build_model(get_spec("amazonelectronics_x1"), 20_000, seed=0)
    rng = np.random.default_rng(7)
    blocks, parts, _ = model.sample(rng, 5_000, rng.random(5_000))
    hist, target = blocks["seq__cate_history"], blocks["categorical"][:, 1]
    same, valid = (hist == target[:, None]).astype(float), hist > 0
    np.testing.assert_allclose(parts["recent"], recency_pool(same, valid))
    reversed_rows = np.array([np.r_[h[~v], h[v][::-1]] for h, v in zip(hist, valid)])  # same bag, other order
    moved = recency_pool((reversed_rows == target[:, None]).astype(float), valid)
    assert np.mean(np.abs(moved - parts["recent"]) > 1e-9) > 0.2
    assert abs(np.corrcoef(parts["recent"], parts["cate_match"])[0, 1]) < 0.15


def test_shrinkage_counts_information_not_rows(monkeypatch):
    """A 5%-CTR row carries 0.19 of a 50%-CTR row's information about an id's effect, so the same expected rows
    keep less of the effect on a low-CTR twin; build_model takes the factor from the spec's base CTR."""
    from ctrbench.data import synthetic
    from ctrbench.data.twin_models import TwinSize

    rows = np.array([0.0, 100.0, 3000.0, 1e6])
    even, low = TwinSize(1000, 800), TwinSize(1000, 800, row_information=0.19)
    np.testing.assert_allclose(low.shrink(rows), even.shrink(rows * 0.19))
    assert np.all(low.shrink(rows)[1:3] < even.shrink(rows)[1:3])
    assert even.shrink(np.array([3000.0]))[0] == pytest.approx(math.sqrt(0.5))  # kappa 3000: half the variance
    seen = []
    monkeypatch.setattr(synthetic, "TwinSize", lambda *a, **k: seen.append(k["row_information"]) or TwinSize(*a, **k))
    synthetic.build_model(get_spec("taobaoad_x1"), 2_000, seed=0)
    synthetic.build_model(get_spec("amazonelectronics_x1"), 2_000, seed=0)
    assert seen == pytest.approx([4 * 0.05 * 0.95, 1.0])


@pytest.mark.parametrize("name", ["taobaoad_x1", "kuaivideo_x1"])
def test_user_effects_are_shrunk_by_the_users_rows(name):
    """Per-user planted effects (TaobaoAd's price preference, KuaiVideo's user bias / taste / affinity) follow the
    learnability rule like every other id's: a user with few expected training rows keeps little of them."""
    from ctrbench.data.synthetic import build_model

    model, _ = build_model(get_spec(name), 20_000, seed=0)
    users = model.cat.users(np.random.default_rng(11), 200_000)
    rows = np.bincount(users, minlength=model.cat.n_users)
    effect = np.abs(model.price_pref) if name == "taobaoad_x1" else np.abs(model.w_user)
    heavy, light = rows >= np.quantile(rows, 0.9), rows <= np.quantile(rows, 0.1)
    assert effect[heavy].mean() > 3 * effect[light].mean()
    if name == "kuaivideo_x1":
        assert np.all((model.user_shrink > 0) & (model.user_shrink < 1))


@pytest.mark.parametrize("name", NAMES)
def test_no_categorical_value_is_the_padding_id(twins, name):
    """0 is padding (a zero row that never learns): no twin stores it as a value, missing included."""
    for split in ("train", "valid", "test"):
        assert (np.asarray(twins[name].split(split)["categorical"]) > 0).all()


@pytest.mark.parametrize("name", ["criteo", "criteo_x1", "criteo_terabyte"])
def test_missing_categorical_is_the_ordinary_id_before_oov(twins, name):
    cache = twins[name]
    rates = cache.manifest["twin"]["model"]["missing_rates"]
    cat = np.asarray(cache.split("train")["categorical"])
    assert len(rates) >= 10
    for j, f in enumerate(cache.spec.categorical):
        share = float((cat[:, j] == cache.vocab_sizes[f.name] - 2).mean())  # id C-2 = missing, C-1 = OOV
        if f.name in rates:
            assert abs(share - rates[f.name]) < 0.02
        assert not (cat[:, j] == cache.vocab_sizes[f.name] - 1).any()
