"""`data export` and the one missing-value rule: a twin exported to its published CSV layout and prepared with the
CSV path gives the same rows, and ids that are the twin's ids renumbered by train frequency (FuxiCTR's order),
the missing value included as an ordinary, learnable id in both (never the padding id 0)."""
from collections import Counter

import h5py
import numpy as np
import pytest

from ctrbench.cli import main
from ctrbench.data.export import export_csv
from ctrbench.data.prepare import prepare_real
from ctrbench.data.registry import get_spec
from ctrbench.data.synthetic import generate_twin
from ctrbench.errors import DataError


def ref_vocab(train_tokens, min_count=1, extra=()):
    """Token -> id by the documented rule (independent of ctrbench.data.preprocess): train count descending,
    ties by token text; then `extra` tokens (a shared sequence's own) in their order; 0 = padding."""
    cnt = Counter(train_tokens)
    tokens = sorted((t for t, c in cnt.items() if c >= min_count), key=lambda t: (-cnt[t], t))
    tokens += [t for t in extra if t not in tokens]
    return {t: i + 1 for i, t in enumerate(tokens)}


def encode(vocab, ids):
    oov = len(vocab) + 1
    return np.array([vocab.get(str(int(i)), oov) for i in np.ravel(ids)]).reshape(np.shape(ids))


def twin_and_prepared(tmp_path, name, rows, **kw):
    spec = get_spec(name)
    twin = generate_twin(spec, tmp_path / "twin", rows=rows, seed=3, **kw)
    export_csv(twin, tmp_path / "csv")
    return twin, prepare_real(spec, tmp_path / "csv", tmp_path / "real", progress=False)


def test_criteo_x1_twin_through_the_csv_path_gives_the_same_rows_and_ids(tmp_path):
    twin, real = twin_and_prepared(tmp_path, "criteo_x1", 4000, card_ratio=0.002)
    spec = twin.spec
    missing = twin.manifest["twin"]["model"]["missing_rates"]
    assert missing, "the criteo_x1 twin plants missing values"
    train_ids = np.asarray(twin.split("train")["categorical"])
    vocabs = [ref_vocab([str(i) for i in train_ids[:, j]]) for j in range(len(spec.categorical))]
    for split in ("train", "valid", "test"):
        t, r = twin.split(split), real.split(split)
        np.testing.assert_array_equal(np.asarray(r["label"]), np.asarray(t["label"]))
        np.testing.assert_array_equal(np.asarray(r["numeric"]), np.asarray(t["numeric"]))  # float32 round trip
        tc, rc = np.asarray(t["categorical"]), np.asarray(r["categorical"])
        assert (tc > 0).all() and (rc > 0).all()  # no value is the padding id, missing included
        for j in range(tc.shape[1]):
            np.testing.assert_array_equal(rc[:, j], encode(vocabs[j], tc[:, j]))
    for j, f in enumerate(spec.categorical):
        assert real.vocab_sizes[f.name] == len(vocabs[j]) + 2
        if f.name in missing:  # the twin's missing id C-2 is frequent in train: an ordinary id in both paths
            miss = twin.vocab_sizes[f.name] - 2
            assert 0 < vocabs[j][str(miss)] < real.vocab_sizes[f.name] - 1


def test_sequential_twin_through_the_csv_path_shares_vocabularies_and_padding(tmp_path):
    twin, real = twin_and_prepared(tmp_path, "amazonelectronics_x1", 3000)
    spec = twin.spec
    tr = twin.split("train")
    for target, seq in (("item_id", "item_history"), ("cate_id", "cate_history")):
        j = [f.name for f in spec.categorical].index(target)
        hist = np.asarray(tr[f"seq__{seq}"])
        hist_cnt = Counter(str(i) for i in hist[hist > 0])
        extra = sorted(hist_cnt, key=lambda t: (-hist_cnt[t], t))
        vocab = ref_vocab([str(i) for i in np.asarray(tr["categorical"])[:, j]], extra=extra)
        assert real.vocab_sizes[target] == real.vocab_sizes[seq] == len(vocab) + 2
        for split in ("train", "test"):  # the published layout: train.csv and test.csv (valid = test in BARS)
            t, r = twin.split(split), real.split(split)
            np.testing.assert_array_equal(np.asarray(r["categorical"])[:, j],
                                          encode(vocab, np.asarray(t["categorical"])[:, j]))
            th, rh = np.asarray(t[f"seq__{seq}"]), np.asarray(r[f"seq__{seq}"])
            np.testing.assert_array_equal(rh == 0, th == 0)  # padding stays padding, nothing else becomes it
            np.testing.assert_array_equal(rh[th > 0], encode(vocab, th[th > 0]))
    np.testing.assert_array_equal(np.asarray(real.split("valid")["label"]), np.asarray(twin.split("test")["label"]))
    assert (tmp_path / "csv" / "valid.csv").is_file()  # the twin's own validation split, beside the layout


def test_kuaivideo_export_writes_the_pretrained_table_and_the_finest_ids(tmp_path):
    spec = get_spec("kuaivideo_x1")
    twin = generate_twin(spec, tmp_path / "twin", rows=2000, seed=1)
    summary = export_csv(twin, tmp_path / "csv")
    assert summary["columns_from"]["item_id"] == "item_emb"  # not the OOV-cut item_id field
    table = np.asarray(twin.table("item_emb"))
    with h5py.File(tmp_path / "csv" / spec.splits["pretrained"], "r") as hf:
        np.testing.assert_array_equal(hf["key"][:], np.arange(1, table.shape[0] - 1))
        np.testing.assert_array_equal(hf["value"][:], table[1:-1])
    real = prepare_real(spec, tmp_path / "csv", tmp_path / "real", progress=False)
    t, r = twin.split("test"), real.split("test")
    rt, tt = np.asarray(real.table("item_emb")), table
    np.testing.assert_array_equal(rt[np.asarray(r["pretrained"])[:, 0]], tt[np.asarray(t["pretrained"])[:, 0]])


def test_export_refuses_layouts_it_cannot_write(tmp_path):
    twin = generate_twin(get_spec("criteo"), tmp_path / "twin", rows=500, seed=0)
    with pytest.raises(DataError, match="x1 CSV layout only"):
        export_csv(twin, tmp_path / "csv")


def test_cli_twin_prints_the_oracle_and_export_writes_the_files(tmp_path, capsys):
    root, out = tmp_path / "root", tmp_path / "out"
    args = ["--rows", "2000", "--data-root", str(root)]
    assert main(["data", "twin", "avazu_x1", *args]) == 0
    printed = capsys.readouterr().out
    oracle = generate_twin(get_spec("avazu_x1"), tmp_path / "again", rows=2000, seed=0).manifest["twin"]["oracle"]
    assert "oracle" in printed and f"{oracle['test']['oracle_auc']:.4f}" in printed
    assert main(["data", "export", "avazu_x1", "--out", str(out), *args]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["export.json", "test.csv", "train.csv", "valid.csv"]
    assert (out / "train.csv").read_text().splitlines()[0] == ",".join(["label"] + [f"feat_{i}" for i in range(1, 23)])
    assert main(["data", "export", "avazu_x1", "--source", "real", "--rows", "5", "--out", str(out)]) == 2
    assert "--rows names a twin" in capsys.readouterr().err
