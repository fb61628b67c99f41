"""Vocabulary, sequence and numeric conventions (FuxiCTR): frequency order, min count -> OOV = last id,
0 = padding, a missing value = an ordinary token, shared vocabularies, left padding keeping the most recent ids."""
import math

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ctrbench.data.preprocess import (NUMERIC_TRANSFORMS, ContiguousModuloVocabulary, GroupIds, TokenCounter,
                                      Vocabulary, pad_sequences, parse_hex, split_sequences, transform_numeric)
from ctrbench.errors import UnknownNameError


def counted(*chunks):
    c = TokenCounter()
    for chunk in chunks:
        c.update(pa.array(chunk, pa.string()))
    return c


def test_vocabulary_frequency_order_ties_by_token_and_ids():
    c = counted(["b", "a", "c", "b", "a", "d", "b", None, ""])
    v = Vocabulary.from_counter(c)
    # b:3, then a:2 and missing (null + ""):2 tied -> the token first, then c:1 and d:1 tied -> by token
    assert v.tokens.to_pylist() == ["b", "a", None, "c", "d"]
    assert v.size == 7 and v.oov == 6 and v.missing_id == 3
    ids = v.encode(pa.array(["b", "a", "c", "d", "zzz", None, ""], pa.string()))
    assert ids.tolist() == [1, 2, 4, 5, 6, 3, 3]  # missing is a learnable token, never the padding id 0
    assert ids.dtype == np.int32


def test_missing_value_unseen_or_rare_in_train_is_oov_not_padding():
    v = Vocabulary.from_counter(counted(["a", "a", None]), min_count=2)
    assert v.tokens.to_pylist() == ["a"] and v.missing_id is None
    assert v.encode(pa.array(["a", None, ""])).tolist() == [1, 2, 2]


def test_min_count_maps_rare_tokens_to_oov_which_is_last():
    c = counted(["x"] * 3 + ["y"] * 2 + ["z"])
    v = Vocabulary.from_counter(c, min_count=2)
    assert v.tokens.to_pylist() == ["x", "y"]
    assert v.encode(pa.array(["z", "x", "y", "never"])).tolist() == [3, 1, 2, 3]
    assert v.size == 4  # PAD + 2 + OOV


def test_counter_merges_chunks_like_one_count():
    rng = np.random.default_rng(0)
    tokens = [f"t{int(x)}" for x in rng.zipf(1.5, 5000) % 300]
    chunks = [tokens[i:i + 250] for i in range(0, len(tokens), 250)]  # 20 chunks: compaction runs
    c = counted(*chunks)
    got_tokens, got_counts = c.most_common()
    uniq, counts = np.unique(np.array(tokens), return_counts=True)
    expect = sorted(zip(uniq.tolist(), counts.tolist()), key=lambda t: (-t[1], t[0]))
    assert list(zip(got_tokens.to_pylist(), got_counts.tolist())) == expect


def test_shared_vocabulary_appends_sequence_only_tokens_before_oov():
    target = Vocabulary(pa.array(["i1", "i2"]))
    seq_tokens = pa.array(["i3", "i1", "i4"])  # i1 already known
    merged = target.extended(seq_tokens)
    assert merged.tokens.to_pylist() == ["i1", "i2", "i3", "i4"]
    assert merged.oov == 5 and merged.size == 6
    assert target.extended(pa.array([], pa.string())) is target


def test_split_sequences_drops_empty_tokens_and_tracks_rows():
    col = pa.array(["a^b^c", "", None, "^d^^e^", "f"])
    flat, rows = split_sequences(col, "^")
    assert flat.to_pylist() == ["a", "b", "c", "d", "e", "f"]
    assert rows.tolist() == [0, 0, 0, 3, 3, 4]


def test_pad_left_keeps_most_recent():
    ids = np.array([1, 2, 3, 4, 5, 6, 7], np.int32)
    rows = np.array([0, 0, 0, 0, 0, 2, 2])
    out = pad_sequences(ids, rows, 3, max_len=3)
    assert out.tolist() == [[3, 4, 5], [0, 0, 0], [0, 6, 7]]
    post = pad_sequences(ids, rows, 3, max_len=3, padding="post")
    assert post.tolist() == [[1, 2, 3], [0, 0, 0], [6, 7, 0]]
    with pytest.raises(ValueError):
        pad_sequences(ids, rows, 3, 3, padding="middle")


@settings(max_examples=25, deadline=None)
@given(st.lists(st.lists(st.integers(1, 50), max_size=12), min_size=1, max_size=20), st.integers(1, 8))
def test_pad_matches_keras_pre_padding(seqs, max_len):
    ids = np.array([x for s in seqs for x in s], np.int32)
    rows = np.array([i for i, s in enumerate(seqs) for _ in s], np.int64)
    out = pad_sequences(ids, rows, len(seqs), max_len)
    for i, s in enumerate(seqs):
        kept = s[-max_len:]
        assert out[i].tolist() == [0] * (max_len - len(kept)) + kept


def test_sequence_tokenised_with_shared_vocabulary_end_to_end():
    vocab = Vocabulary(pa.array(["10", "20", "30"]))
    col = pa.array(["10^99^20^30^10", "", "30"])
    flat, rows = split_sequences(col)
    out = pad_sequences(vocab.encode(flat), rows, 3, max_len=4)
    assert out.tolist() == [[4, 2, 3, 1], [0, 0, 0, 0], [0, 0, 0, 3]]  # 99 unseen -> OOV 4, most recent 4 kept


def test_numeric_transforms():
    x = np.array([np.nan, -5.0, -1.0, 0.0, 2.0, 10.0])
    none, bad = transform_numeric("none", x)
    assert none.tolist() == [0, -5, -1, 0, 2, 10] and bad is None
    clip, _ = transform_numeric("log1p_clip0", x)
    assert np.allclose(clip, [0, 0, 0, 0, math.log(3), math.log(11)])
    l3, bad = transform_numeric("log_plus3", x)
    assert bad.tolist() == [False, True, False, False, False, False]  # -5 + 3 has no logarithm
    # torchrec fills missing with 0 before ln(x + 3)
    assert np.allclose(l3[[0, 2, 3, 4, 5]], [math.log(3), math.log(2), math.log(3), math.log(5), math.log(13)])
    bucket, _ = transform_numeric("criteo_bucket", np.array([np.nan, 1.0, 2.0, 3.0, 100.0]))
    assert bucket.tolist() == [0, 1, 2, math.floor(math.log(3) ** 2), math.floor(math.log(100) ** 2)]
    assert all(v.dtype == np.float32 for v in (none, clip, l3, bucket))
    with pytest.raises(UnknownNameError, match="log1p_clip0"):
        transform_numeric("log2", x)
    assert set(NUMERIC_TRANSFORMS) >= {"none", "log1p_clip0", "log_plus3", "criteo_bucket"}


def test_group_ids_first_appearance_across_splits():
    g = GroupIds()
    assert g.encode(pa.array(["u2", "u1", "u2", None])).tolist() == [1, 2, 1, 0]
    assert g.encode(pa.array(["u3", "u1"])).tolist() == [3, 2]  # an unseen test user is a new group
    assert g.size == 4


def test_parse_hex():
    col = pa.array(["0000000a", "ff", "DEADBEEF", None, "xyz", "", "1" * 17, "0f"])
    values, bad = parse_hex(col)
    assert values.to_pylist()[:4] == [10, 255, 0xDEADBEEF, None]
    assert bad.tolist() == [False, False, False, False, True, True, True, False]
    assert values.to_pylist()[7] == 15


def test_contiguous_modulo_vocabulary():
    keys = np.array([5, 9, 100, 7, 0], np.uint64)  # 0: the value torchrec fills missing with
    v = ContiguousModuloVocabulary(np.sort(keys), table_size=10)  # fits: no folding
    vals = pa.array([0, 5, 7, 9, 100, 8, None], pa.uint64())
    assert v.encode(vals).tolist() == [1, 2, 3, 4, 5, 6, 1]  # value order, unseen -> OOV 6, missing = value 0
    small = ContiguousModuloVocabulary(np.sort(keys), table_size=3)  # 5 values fold into 3 ids
    assert small.encode(vals).tolist() == [1, 2, 3, 1, 2, 4, 1]
    assert small.size == 5
