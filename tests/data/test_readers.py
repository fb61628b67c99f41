"""Every reader on fixtures written in the exact real layouts (CRLF, empty fields, negative integers, hex
categoricals, '^' sequences, TaobaoAd's trailing-space header, the Kaggle CSV with Id, Terabyte day files
with .gz, KuaiVideo with its h5), checked against a plain-Python FuxiCTR-style reference."""
import dataclasses
import gzip
import math
from collections import Counter

import h5py
import numpy as np
import pytest

from ctrbench.data.cache import Cache
from ctrbench.data.loader import BatchLoader
from ctrbench.data.prepare import prepare_real
from ctrbench.data.registry import get_spec

CRITEO_FIELDS = ["label"] + [f"I{i}" for i in range(1, 14)] + [f"C{i}" for i in range(1, 27)]


# --------------------------------------------------------------------------- plain-Python reference


def ref_tokens(values, min_count=1):
    """Train tokens by count, ties by token; a missing value (None or "") is one token, None, after its ties."""
    cnt = Counter(None if v in (None, "") else v for v in values)
    return sorted((t for t, c in cnt.items() if c >= min_count), key=lambda t: (-cnt[t], t is None, t or ""))


def ref_encode(tokens, values):
    index = {t: i + 1 for i, t in enumerate(tokens)}
    oov = len(tokens) + 1
    return [index.get(None if v in (None, "") else v, oov) for v in values]


def ref_pad(ids, max_len):
    kept = ids[-max_len:]
    return [0] * (max_len - len(kept)) + kept


def prep(spec, src, tmp_path, tag="cache", **kw):
    return prepare_real(spec, src, tmp_path / tag, progress=False, **kw)


# --------------------------------------------------------------------------- Criteo raw


def criteo_rows(n, seed=0):
    """Raw DAC rows: label, 13 ints (empty = missing, some negative), 26 8-hex categoricals (some empty)."""
    rng = np.random.default_rng(seed)
    hexes = [[f"{int(x):08x}" for x in rng.integers(0, 2**32, 4)] for _ in range(26)]
    rows = []
    for _ in range(n):
        r = [str(int(rng.random() < 0.3))]
        for j in range(13):
            u = rng.random()
            r.append("" if u < 0.2 else str(int(rng.integers(-2, 0))) if u < 0.3 else str(int(rng.integers(0, 5000))))
        for j in range(26):
            u = rng.random()
            r.append("" if u < 0.1 else hexes[j][min(int(rng.zipf(1.6)) - 1, 3)])
        rows.append(r)
    return rows


def write_text(path, lines, crlf=False, gz=False):
    data = ("\r\n" if crlf else "\n").join(lines) + ("\r\n" if crlf else "\n")
    opener = gzip.open if gz else open
    with opener(path, "wb") as f:
        f.write(data.encode())


def criteo_expected(rows, transform):
    n = len(rows)
    per, extra = divmod(n, 7)
    sizes = [per + (1 if d < extra else 0) for d in range(7)]
    train_end = sum(sizes[:6])
    test_end = train_end + math.ceil(sizes[6] / 2)
    parts = {"train": rows[:train_end], "test": rows[train_end:test_end], "valid": rows[test_end:]}
    vocabs = [ref_tokens([r[14 + j] for r in parts["train"]], 10) for j in range(26)]
    out = {}
    for split, rs in parts.items():
        cat = np.array([ref_encode(vocabs[j], [r[14 + j] for r in rs]) for j in range(26)]).T.reshape(len(rs), 26)
        num = np.array([[transform(float(r[1 + j]) if r[1 + j] else None) for j in range(13)] for r in rs]).reshape(len(rs), 13)
        out[split] = (np.array([float(r[0]) for r in rs]), num, cat)
    return out, [len(v) + 2 for v in vocabs]


def log1p_clip0(x):
    return 0.0 if x is None else math.log1p(max(x, 0.0))


def assert_split(cache, split, expected):
    label, num, cat = expected
    d = cache.split(split)
    assert d.rows == len(label)
    np.testing.assert_array_equal(np.asarray(d["label"]), label)
    np.testing.assert_allclose(np.asarray(d["numeric"]), num, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(d["categorical"]), cat)


def test_criteo_raw_tsv_crlf_days_vocab_and_transform(tmp_path):
    rows = criteo_rows(150)
    src = tmp_path / "src"
    src.mkdir()
    write_text(src / "train.txt", ["\t".join(r) for r in rows], crlf=True)
    cache = prep(get_spec("criteo"), src, tmp_path)
    expected, sizes = criteo_expected(rows, log1p_clip0)
    for split in ("train", "valid", "test"):
        assert_split(cache, split, expected[split])
    assert [cache.vocab_sizes[f"C{j}"] for j in range(1, 27)] == sizes
    assert cache.manifest["days"]["rows_per_day"] == [22, 22, 22, 21, 21, 21, 21]
    assert cache.manifest["source"]["files"]["train.txt"]["size"] == (src / "train.txt").stat().st_size
    assert "dlrm-kaggle" in cache.manifest["protocol"]


def test_criteo_kaggle_csv_with_id_and_gzip_read_the_same(tmp_path):
    rows = criteo_rows(60, seed=1)
    tsv, csv_dir, gz_dir = tmp_path / "tsv", tmp_path / "csv", tmp_path / "gz"
    for d in (tsv, csv_dir, gz_dir):
        d.mkdir()
    write_text(tsv / "train.txt", ["\t".join(r) for r in rows])
    header = "Id,Label," + ",".join(CRITEO_FIELDS[1:])
    write_text(csv_dir / "train.csv", [header] + [",".join([str(10000000 + i)] + r) for i, r in enumerate(rows)])
    write_text(gz_dir / "train.txt.gz", ["\t".join(r) for r in rows], gz=True)
    spec = get_spec("criteo")
    caches = [prep(spec, d, tmp_path, tag=d.name + "_cache") for d in (tsv, csv_dir, gz_dir)]
    for split in ("train", "valid", "test"):
        blocks = [c.split(split) for c in caches]
        for name in ("label", "numeric", "categorical"):
            for other in blocks[1:]:
                np.testing.assert_array_equal(np.asarray(blocks[0][name]), np.asarray(other[name]))


# --------------------------------------------------------------------------- Criteo Terabyte


def test_terabyte_days_gz_halves_contiguous_modulo(tmp_path):
    base = get_spec("criteo_terabyte")
    # small tables so that the modulo folds C1 (3 -> 2 ids) while C2 fits
    feats = tuple(dataclasses.replace(f, cardinality=3) if f.name == "C1" else f for f in base.features)
    spec = dataclasses.replace(base, features=feats)
    src = tmp_path / "days"
    src.mkdir()
    rng = np.random.default_rng(3)
    all_rows = []
    for d in range(24):
        n = 5 if d == 23 else 3
        day = criteo_rows(n, seed=100 + d)
        for r in day:  # uppercase/leading-zero hex must parse base-16
            r[14] = rng.choice(["0000000a", "0000000B", "000000ff", "00000abc", ""])
        all_rows.append(day)
        write_text(src / (f"day_{d}.gz" if d % 5 == 0 else f"day_{d}"), ["\t".join(r) for r in day], gz=d % 5 == 0)
    cache = prep(spec, src, tmp_path)
    train = [r for day in all_rows[:23] for r in day]
    valid, test = all_rows[23][:3], all_rows[23][3:]  # ceil(5 / 2) = 3 rows valid
    assert [cache.split(s).rows for s in ("train", "valid", "test")] == [69, 3, 2]
    for j, f in enumerate(spec.categorical):

        def value(r):  # torchrec fills a missing id with 0: an ordinary value
            return int(r[14 + j], 16) if r[14 + j] else 0

        keys = sorted({value(r) for r in train})
        modulus = min(len(keys), f.cardinality)
        rank = {k: i for i, k in enumerate(keys)}

        def ids(rs):
            return [rank[value(r)] % modulus + 1 if value(r) in rank else modulus + 1 for r in rs]

        for split, rs in (("train", train), ("valid", valid), ("test", test)):
            np.testing.assert_array_equal(np.asarray(cache.split(split)["categorical"])[:, j], ids(rs))
        assert cache.vocab_sizes[f.name] == modulus + 2
    num = np.asarray(cache.split("test")["numeric"])
    expect = [[math.log((float(v) if v else 0.0) + 3) for v in r[1:14]] for r in test]
    np.testing.assert_allclose(num, expect, rtol=1e-6)


# --------------------------------------------------------------------------- Avazu raw

AVAZU_HEADER = ("id,click,hour,C1,banner_pos,site_id,site_domain,site_category,app_id,app_domain,app_category,"
                "device_id,device_ip,device_model,device_type,device_conn_type,C14,C15,C16,C17,C18,C19,C20,C21")


def test_avazu_raw_by_day_split_and_hour_fields(tmp_path):
    rng = np.random.default_rng(5)
    lines, rows = [AVAZU_HEADER], []
    days = [21, 22, 26, 28, 29, 29, 30]  # 141026 is a Sunday
    for i in range(70):
        day = days[i % len(days)]
        hour = f"1410{day:02d}{i % 24:02d}"
        cats = [rng.choice(["1005", "1002"]), rng.choice(["0", "1"])] + \
               [rng.choice(["1fbe01fe", "85f751fd", "d6137915"]) for _ in range(9)] + \
               [rng.choice(["1", "0"]), rng.choice(["0", "2"])] + [str(int(rng.integers(-1, 3))) for _ in range(8)]
        rid = str(10000169349117863715 + i)  # > int64: must never be parsed
        r = [rid, str(int(rng.random() < 0.2)), hour] + cats
        lines.append(",".join(r))
        rows.append(r)
    src = tmp_path / "avazu"
    src.mkdir()
    write_text(src / "train.csv", lines)
    cache = prep(get_spec("avazu"), src, tmp_path)
    by = {s: [r for r in rows if r[2][4:6] in ds] for s, ds in
          (("train", {"21", "22", "26", "28"}), ("valid", {"29"}), ("test", {"30"}))}
    assert {s: cache.split(s).rows for s in by} == {s: len(v) for s, v in by.items()}
    weekday = {"21": "2", "22": "3", "26": "0", "28": "2", "29": "3", "30": "4"}  # %w, Sunday = 0

    def derived(r):
        wd = weekday[r[2][4:6]]
        return [str(int(r[2][6:8])), wd, "1" if wd in ("0", "6") else "0"]

    table = {s: [r[3:] + derived(r) for r in rs] for s, rs in by.items()}
    spec = get_spec("avazu")
    for j, f in enumerate(spec.categorical):
        tokens = ref_tokens([t[j] for t in table["train"]], f.min_count)
        for s in by:
            np.testing.assert_array_equal(np.asarray(cache.split(s)["categorical"])[:, j],
                                          ref_encode(tokens, [t[j] for t in table[s]]))


# --------------------------------------------------------------------------- BARS x1


def write_csv(path, header, rows):
    write_text(path, [",".join(header)] + [",".join(r) for r in rows])


def test_criteo_x1_float_ids_and_numeric_as_given(tmp_path):
    header = CRITEO_FIELDS
    rng = np.random.default_rng(7)
    rows = []
    for i in range(40):
        num = ["" if rng.random() < 0.2 else f"{rng.normal():.4f}" for _ in range(13)]
        ids = [str(int(rng.integers(0, 5))) + (".0" if rng.random() < 0.5 else "") for _ in range(26)]
        rows.append([str(i % 2)] + num + ids)
    src = tmp_path / "x1"
    src.mkdir()
    for name, part in (("train.csv", rows[:30]), ("valid.csv", rows[30:35]), ("test.csv", rows[35:])):
        write_csv(src / name, header, part)
    cache = prep(get_spec("criteo_x1"), src, tmp_path)
    canon = [[str(int(float(v))) for v in r[14:]] for r in rows]  # "3" and "3.0" are one id
    for j in range(26):
        tokens = ref_tokens([c[j] for c in canon[:30]])
        np.testing.assert_array_equal(np.asarray(cache.split("train")["categorical"])[:, j],
                                      ref_encode(tokens, [c[j] for c in canon[:30]]))
        np.testing.assert_array_equal(np.asarray(cache.split("test")["categorical"])[:, j],
                                      ref_encode(tokens, [c[j] for c in canon[35:]]))
    num = [[float(v) if v else 0.0 for v in r[1:14]] for r in rows[30:35]]
    np.testing.assert_allclose(np.asarray(cache.split("valid")["numeric"]), num, rtol=1e-6)


TAOBAO_HEADER = ["clk", "btag_his", "cate_his", "brand_his", "userid", "cms_segid", "cms_group_id",
                 "final_gender_code", "age_level", "pvalue_level", "shopping_level", "occupation",
                 "new_user_class_level ", "adgroup_id", "cate_id", "campaign_id", "customer", "brand", "price",
                 "pid", "btag"]


def taobao_rows(n, seed):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        hist_len = int(rng.integers(0, 70))
        cates = [str(int(x)) for x in rng.integers(1, 6, hist_len)]
        brands = [str(int(x)) for x in rng.integers(100, 104, hist_len)]
        btags = [str(int(x)) for x in rng.integers(1, 3, hist_len)]
        profile = [str(int(rng.integers(0, 3))) for _ in range(8)]
        ad = [str(int(rng.integers(1, 4))) for _ in range(3)] + [str(int(rng.integers(100, 106)))]
        rows.append([str(int(rng.random() < 0.1)), "^".join(btags), "^".join(cates), "^".join(brands),
                     f"u{int(rng.integers(0, 12))}"] + profile + [str(int(rng.integers(1, 4)))] + ad[:3]
                    + [ad[3], f"{rng.uniform(1, 300):.2f}", "430548_1007", "1"])
    return rows


def test_taobaoad_x1_trailing_space_header_shared_vocab_and_valid_alias(tmp_path):
    train, test = taobao_rows(120, 1), taobao_rows(30, 2)
    src = tmp_path / "taobao"
    src.mkdir()
    write_csv(src / "train.csv", TAOBAO_HEADER, train)
    write_csv(src / "test.csv", TAOBAO_HEADER, test)
    spec = get_spec("taobaoad_x1")
    cache = prep(spec, src, tmp_path)
    col = {n.strip(): i for i, n in enumerate(TAOBAO_HEADER)}
    # cate_id vocabulary: its own tokens (min 10), then cate_his's frequent tokens it lacks (FuxiCTR merge)
    cate_tokens = ref_tokens([r[col["cate_id"]] for r in train], 10)
    his_tokens = ref_tokens([t for r in train for t in r[col["cate_his"]].split("^") if t], 10)
    shared = cate_tokens + [t for t in his_tokens if t not in cate_tokens]
    assert cache.vocab_sizes["cate_id"] == cache.vocab_sizes["cate_his"] == len(shared) + 2
    cat_names = [f.name for f in spec.categorical]
    for split, rows in (("train", train), ("test", test)):
        d = cache.split(split)
        np.testing.assert_array_equal(np.asarray(d["categorical"])[:, cat_names.index("cate_id")],
                                      ref_encode(shared, [r[col["cate_id"]] for r in rows]))
        expect = [ref_pad(ref_encode(shared, [t for t in r[col["cate_his"]].split("^") if t]), 50) for r in rows]
        np.testing.assert_array_equal(np.asarray(d["seq__cate_his"]), expect)
        np.testing.assert_allclose(np.asarray(d["numeric"])[:, 0], [float(r[col["price"]]) for r in rows], rtol=1e-6)
        nucl = ref_tokens([r[col["new_user_class_level"]] for r in train], 10)
        np.testing.assert_array_equal(np.asarray(d["categorical"])[:, cat_names.index("new_user_class_level")],
                                      ref_encode(nucl, [r[col["new_user_class_level"]] for r in rows]))
    # group ids: users in first-appearance order, unseen test users get new ids
    users = list(dict.fromkeys(r[col["userid"]] for r in train + test))
    np.testing.assert_array_equal(np.asarray(cache.split("test")["group_id"]),
                                  [users.index(r[col["userid"]]) + 1 for r in test])
    assert cache.manifest["splits"]["valid"]["alias_of"] == "test"
    np.testing.assert_array_equal(np.asarray(cache.split("valid")["label"]), np.asarray(cache.split("test")["label"]))
    assert not (tmp_path / "cache" / "valid").exists()  # no second copy


def test_amazonelectronics_x1_histories_truncate_to_most_recent(tmp_path):
    rng = np.random.default_rng(11)
    header = ["label", "user_id", "item_id", "cate_id", "item_history", "cate_history"]

    def rows(n, seed_users):
        out = []
        for i in range(n):
            k = int(rng.integers(0, 160))  # some longer than max_len 100
            items = [str(int(x)) for x in rng.integers(0, 40, k)]
            out.append([str(i % 2), str(seed_users + i // 2), str(int(rng.integers(0, 45))), str(int(rng.integers(0, 6))),
                        "^".join(items), "^".join(str(int(x) % 6) for x in items)])
        return out

    train, test = rows(40, 0), rows(10, 1000)
    src = tmp_path / "amazon"
    src.mkdir()
    write_csv(src / "train.csv", header, train)
    write_csv(src / "test.csv", header, test)
    spec = get_spec("amazonelectronics_x1")
    cache = prep(spec, src, tmp_path)
    items = ref_tokens([r[2] for r in train])
    items += [t for t in ref_tokens([t for r in train for t in r[4].split("^") if t]) if t not in items]
    for split, rs in (("train", train), ("test", test)):
        d = cache.split(split)
        assert d["categorical"].shape == (len(rs), 2)  # user_id is meta, not a model input
        expect = [ref_pad(ref_encode(items, [t for t in r[4].split("^") if t]), 100) for r in rs]
        np.testing.assert_array_equal(np.asarray(d["seq__item_history"]), expect)
    assert cache.vocab_sizes["item_id"] == len(items) + 2
    batch = next(iter(BatchLoader(cache, "train", 16)))
    assert batch.sequences["item_history"].shape == (16, 100)
    assert batch.group_id is not None and batch.group_id.dtype.is_floating_point is False


def test_kuaivideo_x1_pretrained_table_aligned_to_its_vocabulary(tmp_path):
    rng = np.random.default_rng(13)
    header = ["timestamp", "user_id", "item_id", "is_click", "is_like", "is_follow", "pos_items", "neg_items"]

    def rows(n, t0):
        out = []
        for i in range(n):
            pos = [str(int(x)) for x in rng.integers(0, 30, int(rng.integers(0, 12)))]
            neg = [str(int(x)) for x in rng.integers(0, 30, int(rng.integers(0, 12)))]
            out.append([str(t0 + i), str(int(rng.integers(0, 5))), str(int(rng.integers(0, 25))),
                        str(int(rng.random() < 0.3)), "0", "0", "^".join(pos), "^".join(neg)])
        return out

    train, test = rows(200, 0), rows(30, 1000)
    test[0][2] = "777"  # an item unseen in train but present in the h5 file
    src = tmp_path / "kuai"
    src.mkdir()
    write_csv(src / "train.csv", header, train)
    write_csv(src / "test.csv", header, test)
    keys = np.array([k for k in range(0, 40) if k != 7] + [777], np.int64)  # item 7 has no vector
    vectors = rng.normal(size=(len(keys), 64)).astype(np.float32)
    with h5py.File(src / "item_visual_emb_dim64.h5", "w") as hf:
        hf.create_dataset("key", data=keys)
        hf.create_dataset("value", data=vectors)
    spec = get_spec("kuaivideo_x1")
    cache = prep(spec, src, tmp_path)
    # item_emb: train item ids (min count 1), merged history ids, then the h5 keys it lacks; OOV last
    emb_tokens = ref_tokens([r[2] for r in train])
    for seq_col in (6, 7):
        emb_tokens += [t for t in ref_tokens([t for r in train for t in r[seq_col].split("^") if t]) if t not in emb_tokens]
    emb_tokens += [str(k) for k in keys if str(k) not in emb_tokens]
    assert cache.vocab_sizes["item_emb"] == len(emb_tokens) + 2
    table = cache.table("item_emb")
    assert table.shape == (len(emb_tokens) + 2, 64)
    vec = {str(k): vectors[i] for i, k in enumerate(keys)}
    for i, t in enumerate(emb_tokens):
        np.testing.assert_array_equal(table[i + 1], vec.get(t, np.zeros(64, np.float32)))
    assert not table[0].any() and not table[-1].any()  # padding and OOV rows are zero
    pre = np.asarray(cache.split("test")["pretrained"])[:, 0]
    np.testing.assert_array_equal(pre, ref_encode(emb_tokens, [r[2] for r in test]))
    assert np.array_equal(table[pre[0]], vec["777"])  # the unseen-in-train item keeps its vector
    expect = [ref_pad(ref_encode(emb_tokens, [t for t in r[6].split("^") if t]), 100) for r in test]
    np.testing.assert_array_equal(np.asarray(cache.split("test")["seq__pos_items_emb"]), expect)
    # item_id (min count 10) and its histories: rare ids are OOV
    item_tokens = ref_tokens([r[2] for r in train], 10)
    for seq_col in (6, 7):
        item_tokens += [t for t in ref_tokens([t for r in train for t in r[seq_col].split("^") if t], 10)
                        if t not in item_tokens]
    expect = [ref_pad(ref_encode(item_tokens, [t for t in r[7].split("^") if t]), 100) for r in train]
    np.testing.assert_array_equal(np.asarray(cache.split("train")["seq__neg_items"]), expect)
    assert cache.manifest["pretrained"]["item_emb"]["ids_without_vector"] == 1
    batch = next(iter(BatchLoader(cache, "valid", 8)))
    assert set(batch.sequences) == {"pos_items", "neg_items", "pos_items_emb", "neg_items_emb"}
    assert Cache.exists(cache.path)


def test_avazu_x1_all_categorical_three_splits(tmp_path):
    rng = np.random.default_rng(17)
    header = ["label"] + [f"feat_{i}" for i in range(1, 23)]
    rows = [[str(int(rng.random() < 0.17))] + [str(int(rng.integers(0, 6)) + 100 * j) for j in range(22)]
            for _ in range(60)]
    src = tmp_path / "avazu_x1"
    src.mkdir()
    for name, part in (("train.csv", rows[:40]), ("valid.csv", rows[40:50]), ("test.csv", rows[50:])):
        write_csv(src / name, header, part)
    cache = prep(get_spec("avazu_x1"), src, tmp_path)
    assert "numeric" not in cache.split("train")
    for j in range(22):
        tokens = ref_tokens([r[1 + j] for r in rows[:40]])
        for split, part in (("valid", rows[40:50]), ("test", rows[50:])):
            np.testing.assert_array_equal(np.asarray(cache.split(split)["categorical"])[:, j],
                                          ref_encode(tokens, [r[1 + j] for r in part]))
    assert cache.positive_rate("valid") == pytest.approx(np.mean([float(r[0]) for r in rows[40:50]]))
