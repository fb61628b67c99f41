"""Vocabularies, tokenising and numeric transforms with the FuxiCTR conventions, vectorised over Arrow/numpy.

Ids of a vocabulary: 0 = padding (of sequences; never a categorical value), 1..n = the tokens seen in train at
least `min_count` times, ordered by descending train frequency (ties by token, for determinism), n+1 =
out-of-vocabulary (unseen in train or below min_count); vocab_size = n + 2. A missing categorical value (a null
or empty cell) is one ordinary token, counted and ordered like the others (after the tokens it ties with), so
its embedding learns: the published x1 files write missing values as ordinary ids too (TaobaoAd_x1 as "0"), and
the twins store them as an ordinary id. (FuxiCTR 2.3.10 maps an empty cell to its OOV id, which also learns;
a token of its own keeps missing apart from unseen ids.) A missing value seen in train fewer than min_count
times, or never, is OOV. A sequence shares its target field's vocabulary:
as FuxiCTR's `Tokenizer.merge_vocab` does, the sequence's own frequent tokens that the target field lacks
are appended after the target's tokens (the OOV id moves to the new end). Sequences are split on their
splitter, empty tokens dropped, the most recent `max_len` kept and left-padded ("pre").
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# --------------------------------------------------------------------------- numeric transforms
# Each maps float64 values (NaN = missing) to (float32 values, mask of values outside the transform's domain
# or None). Missing values are filled with 0 before the transform, as every protocol does (FuxiCTR fill_na
# 0.0; torchrec and DLRM fill 0): so a missing value is ln(3) under log_plus3 and 0 under the others.


def _none(x: np.ndarray):
    return np.nan_to_num(x, nan=0.0).astype(np.float32), None


def _log1p_clip0(x: np.ndarray):
    """Original DLRM: negatives clipped to 0, then ln(x + 1) (fmax also maps NaN = missing to 0)."""
    return np.log1p(np.fmax(x, 0.0)).astype(np.float32), None


def _log_plus3(x: np.ndarray):
    """torchrec/MLPerf: ln(x + 3), missing filled with 0 first (ln 3); values <= -3 have no logarithm and are
    reported, not clamped."""
    bad = x <= -3.0  # NaN compares False: missing is not bad
    with np.errstate(invalid="ignore", divide="ignore"):
        y = np.log(np.nan_to_num(x, nan=0.0) + 3.0)
    return np.where(bad, 0.0, y).astype(np.float32), bad


def _criteo_bucket(x: np.ndarray):
    """FuxiCTR `convert_to_bucket` (Criteo_x4): floor(ln(x)^2) for x > 2, else int(x); missing -> 0."""
    v = np.nan_to_num(x, nan=0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        big = np.floor(np.log(np.where(v > 2, v, 1.0)) ** 2)
    return np.where(v > 2, big, np.trunc(v)).astype(np.float32), None


NUMERIC_TRANSFORMS: dict[str, Callable[[np.ndarray], tuple[np.ndarray, np.ndarray | None]]] = {
    "none": _none,
    "log1p_clip0": _log1p_clip0,
    "log_plus3": _log_plus3,
    "criteo_bucket": _criteo_bucket,
}


def transform_numeric(name: str, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Apply the named transform; an unknown name lists the valid ones."""
    from ctrbench.errors import UnknownNameError

    try:
        fn = NUMERIC_TRANSFORMS[name]
    except KeyError:
        raise UnknownNameError("numeric transform", name, NUMERIC_TRANSFORMS) from None
    return fn(x)


# --------------------------------------------------------------------------- token counting


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t)


class TokenCounter:
    """Counts tokens over streamed chunks (pyarrow value_counts per chunk, merged with a group-by sum)."""

    COMPACT_EVERY = 16

    def __init__(self):
        self._parts: list[pa.Table] = []
        self.missing = 0  # null and "" values: the missing token

    def update(self, values: pa.Array | pa.ChunkedArray) -> None:
        """Count the tokens of one chunk; null and "" both count as the one missing token."""
        if len(values) == 0:
            return
        vc = pc.value_counts(values)
        tokens = vc.field("values")
        keep = pc.is_valid(tokens)
        if _is_text(tokens.type):
            keep = pc.and_(keep, pc.greater(pc.binary_length(tokens), 0).fill_null(False))
        t = pa.table({"token": tokens, "count": vc.field("counts")})
        if keep.false_count:
            self.missing += int(pc.sum(t["count"].filter(pc.invert(keep))).as_py())
            t = t.filter(keep)
        self._parts.append(t)
        if len(self._parts) >= self.COMPACT_EVERY:
            self._compact()

    def _compact(self) -> None:
        if len(self._parts) > 1:
            t = pa.concat_tables(self._parts).group_by("token").aggregate([("count", "sum")])
            self._parts = [t.rename_columns(["token", "count"]).select(["token", "count"])]

    def most_common(self, min_count: int = 1) -> tuple[pa.Array, np.ndarray]:
        """Tokens with count >= min_count, by descending count, ties by ascending token (the missing token, a
        null, after the tokens it ties with); and their counts."""
        self._compact()
        t = self._parts[0] if self._parts else pa.table({"token": pa.array([], pa.string()),
                                                          "count": pa.array([], pa.int64())})
        if self.missing:
            t = pa.concat_tables([t, pa.table({"token": pa.nulls(1, t["token"].type),
                                               "count": pa.array([self.missing], pa.int64())})])
        t = t.filter(pc.greater_equal(t["count"], min_count))
        order = pc.sort_indices(t, sort_keys=[("count", "descending"), ("token", "ascending")],
                                null_placement="at_end")
        t = t.take(order)
        return t["token"].combine_chunks(), t["count"].to_numpy()

    def tokens_by_value(self, min_count: int = 1) -> np.ndarray:
        """Integer tokens with count >= min_count, sorted by value (torchrec's contiguous order). The readers
        of value-ordered vocabularies fill missing values first (torchrec fills 0), so none is counted."""
        if self.missing:
            raise ValueError("value-ordered vocabularies need missing values filled before counting")
        tokens, _ = self.most_common(min_count)
        return np.sort(tokens.to_numpy(zero_copy_only=False))


# --------------------------------------------------------------------------- vocabularies


def _as_array(values) -> pa.Array:
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values


class Vocabulary:
    """A FuxiCTR vocabulary over string (or integer) tokens: 0 = PAD, 1..n by train frequency (a null token =
    the missing value), n+1 = OOV."""

    def __init__(self, tokens: pa.Array):
        self.tokens = _as_array(tokens)
        nulls = np.flatnonzero(pc.is_null(self.tokens).to_numpy(zero_copy_only=False)) if len(self.tokens) else []
        self.missing_id = int(nulls[0]) + 1 if len(nulls) else None  # None: missing was never (often) seen

    @classmethod
    def from_counter(cls, counter: TokenCounter, min_count: int = 1) -> "Vocabulary":
        return cls(counter.most_common(min_count)[0])

    @property
    def n(self) -> int:
        return len(self.tokens)

    @property
    def oov(self) -> int:
        return self.n + 1

    @property
    def size(self) -> int:
        return self.n + 2

    def extended(self, more) -> "Vocabulary":
        """This vocabulary plus the tokens of `more` (in their order) that it lacks: FuxiCTR's merge_vocab."""
        more = _as_array(more).cast(self.tokens.type) if len(more) else _as_array(more)
        if len(more) == 0:
            return self
        new = more.filter(pc.invert(pc.is_in(more, value_set=self.tokens)))
        if len(new) == 0:
            return self
        return Vocabulary(pa.concat_arrays([self.tokens, new.cast(self.tokens.type)]))

    def encode(self, values) -> np.ndarray:
        """int32 ids of `values`: missing (null or "") -> the missing token's id (OOV when train lacked it),
        unknown -> OOV; never 0."""
        n = len(values)
        if n == 0:
            return np.zeros(0, np.int32)
        if values.type != self.tokens.type:
            values = values.cast(self.tokens.type)
        idx = pc.index_in(values, value_set=self.tokens, skip_nulls=True)  # null where unknown or missing
        ids = pc.fill_null(idx, -1).to_numpy(zero_copy_only=False).astype(np.int32, copy=False) + 1
        present = _present_mask(values)
        ids[(ids == 0) & present] = self.oov
        ids[~present] = self.missing_id if self.missing_id is not None else self.oov
        return ids

    def lookup(self, token) -> int:
        """The id of one token (for tests and debugging)."""
        return int(self.encode(pa.array([token], self.tokens.type))[0])


def _present_mask(values) -> np.ndarray:
    """True where a value is neither null nor the empty string (string lengths come from the offsets)."""
    if _is_text(values.type):
        return pc.fill_null(pc.binary_length(values), 0).to_numpy(zero_copy_only=False) > 0
    if values.null_count == 0:
        return np.ones(len(values), bool)
    return pc.is_valid(values).to_numpy(zero_copy_only=False)


class ContiguousModuloVocabulary:
    """MLPerf DLRM ids: train values made contiguous per column in value order (torchrec's np.unique order),
    then folded modulo the table. A missing value is filled with 0 first, as torchrec does, so it is the value
    0's ordinary id; 0 stays padding (never produced) and the last id = unseen in train.

    MLPerf's table size T counts the values (missing = 0 among them); the n train values fold into T ids 1..T
    (rank % T + 1) only when n > T, and OOV is the id after them: size = min(n, T) + 2 (at most T+2). With
    n <= T nothing collides.
    """

    def __init__(self, keys: np.ndarray, table_size: int):
        if table_size < 1:
            raise ValueError(f"table size must be >= 1, got {table_size}")
        self.keys = np.asarray(keys)
        self.table_size = int(table_size)
        self.modulus = min(len(self.keys), self.table_size)

    @property
    def n(self) -> int:
        return self.modulus

    @property
    def oov(self) -> int:
        return self.modulus + 1

    @property
    def size(self) -> int:
        return self.modulus + 2

    def encode(self, values) -> np.ndarray:
        n = len(values)
        if n == 0:
            return np.zeros(0, np.int32)
        v = pc.fill_null(values, 0).to_numpy(zero_copy_only=False).astype(self.keys.dtype, copy=False)
        if len(self.keys) == 0:
            ids = np.full(n, self.oov, np.int64)
        else:
            pos = np.searchsorted(self.keys, v)
            found = self.keys[np.minimum(pos, len(self.keys) - 1)] == v
            ids = np.where(found, pos % self.modulus + 1, self.oov)
        return ids.astype(np.int32)


class GroupIds:
    """Ids for a meta (group) column: 1.. in order of first appearance over the stream train -> valid -> test,
    extended on every split (as FuxiCTR's encode_meta), so unseen test users stay distinct groups; 0 = missing."""

    def __init__(self, value_type=pa.string()):
        self.tokens = pa.array([], value_type)

    @property
    def size(self) -> int:
        return len(self.tokens) + 1

    def encode(self, values) -> np.ndarray:
        if values.type != self.tokens.type:
            if len(self.tokens) == 0:
                self.tokens = self.tokens.cast(values.type)
            else:
                values = values.cast(self.tokens.type)
        present = _present_mask(values)
        idx = pc.index_in(values, value_set=self.tokens)
        ids = pc.fill_null(idx, -1).to_numpy(zero_copy_only=False).astype(np.int64) + 1
        unseen = (ids == 0) & present
        if unseen.any():
            new = pc.unique(values.filter(pa.array(unseen)))  # first-appearance order
            self.tokens = pa.concat_arrays([self.tokens, new.combine_chunks() if isinstance(new, pa.ChunkedArray) else new])
            idx = pc.index_in(values, value_set=self.tokens)
            ids = pc.fill_null(idx, -1).to_numpy(zero_copy_only=False).astype(np.int64) + 1
        ids[~present] = 0
        return ids


# --------------------------------------------------------------------------- sequences


def split_sequences(col, splitter: str = "^") -> tuple[pa.Array, np.ndarray]:
    """Split a column of joined id lists: (flat non-empty tokens, the row of each token), no per-row Python."""
    n = len(col)
    if n == 0:
        return pa.array([], pa.string()), np.zeros(0, np.int64)
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        col = col.cast(pa.string())
    lists = pc.split_pattern(col, pattern=splitter)
    lengths = pc.fill_null(pc.list_value_length(lists), 0).to_numpy(zero_copy_only=False)
    flat = pc.list_flatten(lists)
    rows = np.repeat(np.arange(n, dtype=np.int32 if n < 2**31 else np.int64), lengths)
    keep = pc.not_equal(flat, "").fill_null(False)
    keep_np = keep.to_numpy(zero_copy_only=False)
    if keep_np.all():
        return flat, rows
    return flat.filter(keep), rows[keep_np]


def pad_sequences(ids: np.ndarray, rows: np.ndarray, n_rows: int, max_len: int, padding: str = "pre") -> np.ndarray:
    """[n_rows, max_len] int32 from flat ids grouped by (sorted) row. "pre": keep the last max_len ids and
    right-align them (zeros first), as FuxiCTR/keras pad_sequences(padding="pre", truncating="pre");
    "post": keep the first max_len, zeros last."""
    out = np.zeros((n_rows, max_len), np.int32)
    if len(ids) == 0 or max_len == 0:
        return out
    rows = rows.astype(np.int32, copy=False) if n_rows < 2**31 else rows
    counts = np.bincount(rows, minlength=n_rows).astype(np.int32)
    starts = np.cumsum(counts, dtype=np.int64) - counts
    pos = (np.arange(len(rows), dtype=np.int64) - starts[rows]).astype(np.int32)  # position within its row
    if padding == "pre":
        from_end = counts[rows] - pos  # 1 = most recent
        keep = from_end <= max_len
        out[rows[keep], max_len - from_end[keep]] = ids[keep]
    elif padding == "post":
        keep = pos < max_len
        out[rows[keep], pos[keep]] = ids[keep]
    else:
        raise ValueError(f"padding must be 'pre' or 'post', got {padding!r}")
    return out


# --------------------------------------------------------------------------- parsing helpers

_HEX = np.full(256, 255, np.uint8)
for _i, _c in enumerate(b"0123456789abcdef"):
    _HEX[_c] = _i
for _i, _c in enumerate(b"ABCDEF"):
    _HEX[_c] = 10 + _i


def parse_hex(col) -> tuple[pa.Array, np.ndarray]:
    """Hex strings -> uint64 (null stays null), vectorised over the Arrow buffers; returns (values, bad mask).
    Up to 16 hex digits; anything else (other characters, longer strings) is flagged bad."""
    col = _as_array(col)
    if not pa.types.is_string(col.type):
        col = col.cast(pa.string())
    n = len(col)
    valid = pc.is_valid(col).to_numpy(zero_copy_only=False) if col.null_count else np.ones(n, bool)
    offsets = np.frombuffer(col.buffers()[1], dtype=np.int32)[col.offset : col.offset + n + 1].astype(np.int64)
    data_buf = col.buffers()[2]
    data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    lengths = np.diff(offsets)
    bad = valid & ((lengths == 0) | (lengths > 16))
    value = np.zeros(n, np.uint64)
    max_len = int(lengths.max()) if n else 0
    max_len = min(max_len, 16)
    if max_len and len(data):
        starts = offsets[:-1]
        for k in range(max_len):  # one vectorised step per digit position (<= 16)
            has = lengths > k
            ch = np.where(has, data[np.minimum(starts + k, len(data) - 1)], ord("0"))
            nib = _HEX[ch]
            bad |= has & (nib == 255) & valid
            value = np.where(has, (value << np.uint64(4)) | nib.astype(np.uint64), value)
    value[~valid | bad] = 0
    mask = ~valid | bad
    return pa.array(value, pa.uint64(), mask=mask), bad
