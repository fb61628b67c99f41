"""The readers on the real sample rows in ../shared/data/samples (skipped only when that folder is absent).
Samples in another layout are rewritten here into the dataset's published layout, as noted per test."""
import csv
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from ctrbench.data.prepare import prepare_real
from ctrbench.data.registry import get_spec

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "data" / "samples"  # ../shared beside the project
pytestmark = pytest.mark.skipif(not SAMPLES.exists(), reason="shared/data/samples is not present")


def ref_tokens(values, min_count=1):
    """Train tokens by count, ties by token; a missing value (None or "") is one token, None, after its ties."""
    cnt = Counter(None if v in (None, "") else v for v in values)
    return sorted((t for t, c in cnt.items() if c >= min_count), key=lambda t: (-cnt[t], t is None, t or ""))


def ref_encode(tokens, values):
    index = {t: i + 1 for i, t in enumerate(tokens)}
    return [index.get(None if v in (None, "") else v, len(tokens) + 1) for v in values]


def prep(name, src, out):
    return prepare_real(get_spec(name), src, out, progress=False)


def criteo_sample_rows():
    """DeepCTR's 200 real DAC rows; its integers were re-typed as floats by pandas ("260.0")."""
    with open(SAMPLES / "criteo" / "deepctr_criteo_sample.txt") as f:
        rows = list(csv.reader(f))
    assert rows[0][:2] == ["label", "I1"] and len(rows) == 201
    return [[r[0]] + [v[:-2] if v.endswith(".0") else v for v in r[1:14]] + r[14:] for r in rows[1:]]


def test_criteo_sample_as_raw_tsv_and_as_csv(tmp_path):
    rows = criteo_sample_rows()
    tsv = tmp_path / "tsv"
    tsv.mkdir()
    (tsv / "train.txt").write_text("".join("\t".join(r) + "\n" for r in rows))  # the raw train.txt layout
    cache = prep("criteo", tsv, tmp_path / "c1")
    assert sum(cache.split(s).rows for s in ("train", "valid", "test")) == 200
    assert sum(float(np.sum(cache.split(s)["label"])) for s in ("train", "valid", "test")) == 49
    train = rows[:sum([29, 29, 29, 29, 28, 28])]  # 200 = 6 * 28 + 4 * 1 extra rows on the first days
    assert cache.split("train").rows == len(train) == 172
    for j in (0, 5, 25):
        tokens = ref_tokens([r[14 + j] for r in train], 10)
        np.testing.assert_array_equal(np.asarray(cache.split("train")["categorical"])[:, j],
                                      ref_encode(tokens, [r[14 + j] for r in train]))
    i3 = [math.log1p(max(float(r[3]), 0)) if r[3] else 0.0 for r in train]
    np.testing.assert_allclose(np.asarray(cache.split("train")["numeric"])[:, 2], i3, rtol=1e-6)
    # the sample file itself (CSV with a label,I1.. header, float-typed ints) reads the same
    direct = tmp_path / "csv"
    direct.mkdir()
    (direct / "train.csv").write_bytes((SAMPLES / "criteo" / "deepctr_criteo_sample.txt").read_bytes())
    same = prep("criteo", direct, tmp_path / "c2")
    for s in ("train", "valid", "test"):
        for block in ("label", "numeric", "categorical"):
            np.testing.assert_array_equal(np.asarray(cache.split(s)[block]), np.asarray(same.split(s)[block]))


def test_criteo_sample_as_terabyte_days(tmp_path):
    rows = criteo_sample_rows()
    src = tmp_path / "days"
    src.mkdir()
    for d in range(24):  # 8 rows a day, day 23 the last 16: the day_N TSV layout
        part = rows[d * 8:(d + 1) * 8] if d < 23 else rows[23 * 8:]
        (src / f"day_{d}").write_text("".join("\t".join(r) + "\n" for r in part))
    cache = prep("criteo_terabyte", src, tmp_path / "tb")
    assert [cache.split(s).rows for s in ("train", "valid", "test")] == [184, 8, 8]
    train = rows[:184]
    spec = get_spec("criteo_terabyte")
    for j in (0, 12, 25):  # C13's MLPerf table has 10 rows: its ids fold modulo 10
        values = [int(r[14 + j], 16) if r[14 + j] else 0 for r in train]  # torchrec fills missing with 0
        keys = sorted(set(values))
        modulus = min(len(keys), spec.categorical[j].cardinality)
        expect = [keys.index(v) % modulus + 1 for v in values]
        np.testing.assert_array_equal(np.asarray(cache.split("train")["categorical"])[:, j], expect)
    assert cache.vocab_sizes["C13"] == 12  # 10 folded ids + PAD + OOV


def test_avazu_sample_raw_kaggle_layout(tmp_path):
    src = tmp_path / "avazu"
    src.mkdir()
    (src / "train.csv").write_bytes((SAMPLES / "avazu" / "deepctr_avazu_sample.txt").read_bytes())
    cache = prep("avazu", src, tmp_path / "av")
    train = cache.split("train")
    assert train.rows == 100 and float(np.sum(train["label"])) == 20
    assert cache.split("valid").rows == 0 and cache.split("test").rows == 0  # the sample is hour 14102100 only
    names = [f.name for f in get_spec("avazu").categorical]
    cats = np.asarray(train["categorical"])
    for f in ("hour", "weekday", "weekend"):  # one value each (hour 0 of Tuesday 2014-10-21): id 1
        assert (cats[:, names.index(f)] == 1).all()
    with open(SAMPLES / "avazu" / "deepctr_avazu_sample.txt") as f:
        raw = list(csv.DictReader(f))
    tokens = ref_tokens([r["device_model"] for r in raw], 2)
    np.testing.assert_array_equal(cats[:, names.index("device_model")],
                                  ref_encode(tokens, [r["device_model"] for r in raw]))


TAOBAO_X1 = ["clk", "btag_his", "cate_his", "brand_his", "userid", "cms_segid", "cms_group_id", "final_gender_code",
             "age_level", "pvalue_level", "shopping_level", "occupation", "new_user_class_level ", "adgroup_id",
             "cate_id", "campaign_id", "customer", "brand", "price", "pid", "btag"]


def test_taobaoad_sample_in_x1_layout(tmp_path):
    """FuxiCTR's tiny joined Tianchi rows rewritten as TaobaoAd_x1 CSV: its converter's column order, the
    trailing-space header, missing cells written as "0", btag = 1; the tiny files carry no behaviour
    histories, so the three history columns are empty."""
    src = tmp_path / "taobao"
    src.mkdir()
    tables = {}
    for split, name in (("train", "train"), ("test", "test")):
        with open(SAMPLES / "taobaoad" / f"fuxictr_tiny_csv_{name}_sample.csv") as f:
            raw = list(csv.DictReader(f))
        rows = [[r["clk"], "", "", ""] + [r[c.strip()] or "0" for c in TAOBAO_X1[4:19]] + [r["pid"], "1"]
                for r in raw]
        tables[split] = rows
        (src / f"{split}.csv").write_text(",".join(TAOBAO_X1) + "\n" + "".join(",".join(r) + "\n" for r in rows))
    cache = prep("taobaoad_x1", src, tmp_path / "tb")
    spec = get_spec("taobaoad_x1")
    assert cache.split("train").rows == 100 and float(np.sum(cache.split("train")["label"])) == 4
    assert cache.split("valid").rows == cache.split("test").rows == 100
    names = [f.name for f in spec.categorical]
    for c in ("pid", "cms_group_id", "new_user_class_level", "brand"):
        j = TAOBAO_X1.index(c if c != "new_user_class_level" else c + " ")
        tokens = ref_tokens([r[j] for r in tables["train"]], 10)
        np.testing.assert_array_equal(np.asarray(cache.split("test")["categorical"])[:, names.index(c)],
                                      ref_encode(tokens, [r[j] for r in tables["test"]]))
    assert not np.asarray(cache.split("train")["seq__cate_his"]).any()
    np.testing.assert_allclose(np.asarray(cache.split("train")["numeric"])[:, 0],
                               [float(r[18]) for r in tables["train"]], rtol=1e-6)


def test_amazonelectronics_din_sample_in_x1_layout(tmp_path):
    """PaddleRec's DIN-processed rows (`hist items;hist cates;item;cate;label`) rewritten as
    AmazonElectronics_x1 CSV; the sample has no user column, so each row gets its own user id."""
    lines = (SAMPLES / "amazonelectronics" / "paddlerec_din_sample_data.txt").read_text().splitlines()
    rows = []
    for i, line in enumerate(lines):
        hist, cates, item, cate, label = line.split(";")
        rows.append([label, f"r{i}", item, cate, "^".join(hist.split()), "^".join(cates.split())])
    header = "label,user_id,item_id,cate_id,item_history,cate_history\n"
    src = tmp_path / "amazon"
    src.mkdir()
    (src / "train.csv").write_text(header + "".join(",".join(r) + "\n" for r in rows[:80]))
    (src / "test.csv").write_text(header + "".join(",".join(r) + "\n" for r in rows[80:]))
    cache = prep("amazonelectronics_x1", src, tmp_path / "am")
    train = rows[:80]
    items = ref_tokens([r[2] for r in train])
    items += [t for t in ref_tokens([t for r in train for t in r[4].split("^") if t]) if t not in items]
    longest = max(range(len(rows)), key=lambda i: len(rows[i][4].split("^")))
    assert len(rows[longest][4].split("^")) == 152
    split, k = ("train", longest) if longest < 80 else ("test", longest - 80)
    got = np.asarray(cache.split(split)["seq__item_history"])[k]
    assert got.tolist() == ref_encode(items, rows[longest][4].split("^")[-100:])  # the most recent 100, no padding
    assert float(np.sum(cache.split("train")["label"])) == sum(int(r[0]) for r in train)
