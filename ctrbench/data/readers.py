"""Streaming readers of the real dataset files: delimited text through pyarrow's block CSV reader (every
column as string, so hex stays hex and "007" stays "007"; numbers parsed here so a bad value can be named
by file, line and field), gzip accepted, chunks of ~`chunk_rows` rows, never a whole file in memory.

Malformed rows (wrong field count, a non-numeric value in a numeric field, a label that is not 0/1) raise
`DataError(file, line, field)` or, with on_bad_rows="skip", are dropped and counted per file and reason.
Line numbers: physical, 1-based, header included. CSV quoting is never needed by these formats, so one
row is one line; pyarrow reports no line for a wrong field count or invalid UTF-8, so on those error paths
the file is scanned (vectorised) for the first offending line. A corrupt .gz (truncated, bad CRC, not gzip)
is a DataError naming the file and the last line read before the damage.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from ctrbench.data.preprocess import Vocabulary, transform_numeric
from ctrbench.data.schema import DatasetSpec, Feature, Kind
from ctrbench.errors import DataError

BLOCK_SIZE = 4 << 20  # pyarrow parse block: small blocks stream fastest here
DEFAULT_CHUNK_ROWS = 1 << 19  # rows handed to tokenising at once (amortises vocabulary hash builds) ...
CHUNK_BYTES = 192 << 20  # ... unless the rows are wide: then ~this many bytes of text,
SEQUENCE_CHUNK_BYTES = 32 << 20  # and less with histories (each token costs ~40 bytes while tokenised)
DATA_SPLITS = ("train", "valid", "test")
BAD_ROW_MODES = ("error", "skip")


# --------------------------------------------------------------------------- bad rows


class BadRows:
    """The bad-row policy of one prepare: raise at the first bad row, or skip and count per file and reason."""

    def __init__(self, mode: str = "error", count: bool = True):
        if mode not in BAD_ROW_MODES:
            raise DataError(f"on_bad_rows must be one of {', '.join(BAD_ROW_MODES)}, got {mode!r}")
        self.mode, self.count = mode, count
        self.skipped: dict[str, dict[str, int]] = {}

    @property
    def skip(self) -> bool:
        return self.mode == "skip"

    def add(self, file: str, reason: str, n: int) -> None:
        if self.count and n:
            per = self.skipped.setdefault(file, {})
            per[reason] = per.get(reason, 0) + int(n)

    def per_file(self) -> dict[str, int]:
        return {f: sum(r.values()) for f, r in self.skipped.items()}


class Problems:
    """Bad-value checks of one chunk; `resolve` raises on the earliest bad row or returns the rows to keep."""

    def __init__(self, file: str, lines: np.ndarray):
        self.file, self.lines = file, lines
        self._checks: list[tuple[np.ndarray, str, str, object]] = []

    def add(self, mask: np.ndarray | None, field: str, reason: str, values=None) -> None:
        if mask is not None and mask.any():
            self._checks.append((mask, field, reason, values))

    def resolve(self, bad: BadRows) -> np.ndarray | None:
        if not self._checks:
            return None
        if not bad.skip:
            first = min(self._checks, key=lambda c: int(np.argmax(c[0])))
            mask, fld, reason, values = first
            i = int(np.argmax(mask))
            shown = ""
            if values is not None:
                v = values[i]
                v = v.as_py() if hasattr(v, "as_py") else v
                shown = f": {v!r}"
            raise DataError(f"{reason}{shown}", file=self.file, line=int(self.lines[i]), field=fld)
        any_bad = np.zeros(len(self.lines), bool)
        for mask, _fld, reason, _values in self._checks:
            new = mask & ~any_bad  # a row counts once, under its first reason
            bad.add(self.file, reason, int(new.sum()))
            any_bad |= mask
        return ~any_bad


# --------------------------------------------------------------------------- number parsing

_NUM_RE = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"


def as_array(values) -> pa.Array:
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values


def parse_numbers(col) -> tuple[np.ndarray, np.ndarray | None]:
    """Strings -> float64 (NaN = missing) and a mask of non-numeric values (None when there are none).
    Text pyarrow would read as nan/inf counts as non-numeric: nothing non-finite gets through."""
    bad = None
    try:
        f = pc.cast(col, pa.float64())
    except pa.ArrowInvalid:
        ok = pc.match_substring_regex(col, _NUM_RE)
        bad = pc.invert(ok).fill_null(False).to_numpy(zero_copy_only=False)
        f = pc.cast(pc.if_else(ok, col, pa.scalar(None, col.type)), pa.float64())
    x = f.to_numpy(zero_copy_only=False)
    if f.null_count == len(f):
        return np.full(len(f), np.nan), bad
    nonfinite = ~np.isfinite(x)
    if f.null_count:
        nonfinite &= pc.is_valid(f).to_numpy(zero_copy_only=False)
    if nonfinite.any():
        bad = nonfinite if bad is None else (bad | nonfinite)
        x = np.where(nonfinite, np.nan, x)
    return x, bad


def check_label(table: pa.Table, column: str, problems: Problems) -> np.ndarray:
    """The label as float32; missing, non-numeric and not-0/1 labels are reported."""
    raw = table[column]
    x, bad = parse_numbers(raw)
    problems.add(bad, column, "label is not a number", raw)
    missing = np.isnan(x) if bad is None else (np.isnan(x) & ~bad)
    problems.add(missing, column, "label is missing", raw)
    problems.add((x != 0) & (x != 1) & ~np.isnan(x), column, "label must be 0 or 1", raw)
    return np.nan_to_num(x, nan=0.0).astype(np.float32)


def check_numeric(table: pa.Table, features: tuple[Feature, ...], problems: Problems) -> np.ndarray:
    """[n, len(features)] float32 of the features' transforms; bad values and transform domain errors reported."""
    out = np.zeros((table.num_rows, len(features)), np.float32)
    for j, f in enumerate(features):
        raw = table[f.column]
        x, bad = parse_numbers(raw)
        problems.add(bad, f.column, "not a number", raw)
        y, outside = transform_numeric(f.transform, x)
        problems.add(outside, f.column, f"outside the domain of transform {f.transform!r}", raw)
        out[:, j] = y
    return out


def canonical_float_ids(col) -> tuple[pa.Array, np.ndarray | None]:
    """Ids that BARS reads with dtype float ("12" and "12.0" are one id): integral values as their integer
    string, others as float text; null stays null. Returns (strings, mask of non-numeric values)."""
    try:
        return pc.cast(pc.cast(col, pa.int64()), pa.string()), None
    except pa.ArrowInvalid:
        pass
    x, bad = parse_numbers(col)
    valid = ~np.isnan(x)
    integral = valid & (np.floor(x) == x) & (np.abs(x) < 2.0**53)
    as_int = pa.array(np.where(integral, x, 0).astype(np.int64), mask=~integral).cast(pa.string())
    if integral.sum() == valid.sum():
        return as_int, bad
    as_flt = pa.array(x, mask=~valid).cast(pa.string())
    return pc.if_else(pa.array(integral), as_int, as_flt), bad


# --------------------------------------------------------------------------- rows


@dataclass
class Rows:
    """A validated chunk: label, transformed numerics (spec order), raw token columns by column name."""

    label: np.ndarray
    numeric: np.ndarray
    columns: dict[str, pa.Array]
    lines: np.ndarray

    def __len__(self) -> int:
        return len(self.label)

    def filter(self, keep: np.ndarray | None) -> "Rows":
        if keep is None or keep.all():
            return self
        mask = pa.array(keep)
        return Rows(self.label[keep], self.numeric[keep], {k: v.filter(mask) for k, v in self.columns.items()},
                    self.lines[keep])

    def slice(self, start: int, stop: int) -> "Rows":
        return Rows(self.label[start:stop], self.numeric[start:stop],
                    {k: v.slice(start, stop - start) for k, v in self.columns.items()}, self.lines[start:stop])


def convert_rows(spec: DatasetSpec, raw: RawChunk, bad: BadRows,
                 columns_fn: Callable[[pa.Table, Problems], dict[str, pa.Array]] | None = None) -> Rows:
    """Validate one raw chunk: label, numeric features (parsed and transformed), id columns (as they are, or
    through `columns_fn`); bad rows raise or are dropped per `bad`."""
    problems = Problems(raw.file, raw.lines)
    label = check_label(raw.table, spec.label, problems)
    if all(f.column in raw.table.column_names for f in spec.numeric):
        numeric = check_numeric(raw.table, spec.numeric, problems)
    else:  # pass 1 of an erroring prepare reads no numeric column (see SourceReader.fit_include)
        numeric = np.zeros((raw.table.num_rows, 0), np.float32)
    if columns_fn is None:
        columns = {c: raw.table[c] for c in token_columns(spec)}
    else:
        columns = columns_fn(raw.table, problems)
    keep = problems.resolve(bad)
    return Rows(label, numeric, columns, raw.lines).filter(keep)


def token_columns(spec: DatasetSpec) -> list[str]:
    """Raw columns that hold ids or id lists (categorical, meta, pretrained, sequence), deduplicated, in order."""
    cols: list[str] = []
    for f in spec.features:
        if f.kind != Kind.NUMERIC and f.column not in cols:
            cols.append(f.column)
    return cols


# --------------------------------------------------------------------------- streaming text


def open_input(path: Path):
    """(stream, raw file) for a plain or .gz file; raw.tell() is the compressed bytes consumed (progress)."""
    raw = pa.OSFile(str(path), "rb")
    if path.suffix == ".gz":
        return pa.CompressedInputStream(raw, "gzip"), raw
    return raw, raw


GZIP_ERRORS = (EOFError, gzip.BadGzipFile, zlib.error)  # truncated, bad CRC or header, not gzip at all


def lines_before_damage(path: Path) -> int:
    """Complete lines of a corrupt .gz that decompress before the damage (zlib streams every byte it can before
    a bad CRC or the cut, which gzip.open's buffered reads would drop; error path only)."""
    lines, d = 0, zlib.decompressobj(wbits=31)

    def feed(block: bytes) -> None:
        nonlocal lines, d
        while block:
            lines += d.decompress(block).count(b"\n")
            block = d.unused_data if d.eof else b""  # a next gzip member follows
            if d.eof:
                d = zlib.decompressobj(wbits=31)

    with open(path, "rb") as f:
        while block := f.read(1 << 16):
            saved, before = d.copy(), lines
            try:
                feed(block)
            except zlib.error:  # replay the block byte by byte: keep what decompresses before the damage
                d, lines = saved, before
                try:
                    for i in range(len(block)):
                        feed(block[i:i + 1])
                except zlib.error:
                    pass
                break
    return lines


def corrupt_gzip_error(path: Path, exc: BaseException) -> DataError:
    """The located error for a .gz source that cannot be decompressed: file, and the line the damage follows."""
    lines_read = lines_before_damage(path)
    where = f"after line {lines_read}" if lines_read else "before its first line"
    return DataError(f"corrupt or truncated gzip ({type(exc).__name__}: {exc}), {where}; download the file again "
                     f"(`ctrbench data verify` checks the published md5)", file=path.name, line=lines_read + 1)


def read_first_line(path: Path) -> str:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            line = f.readline(1 << 20)
    except GZIP_ERRORS as exc:
        raise corrupt_gzip_error(path, exc) from None
    return line.decode("utf-8-sig", errors="replace").rstrip("\r\n")


@dataclass
class TextFile:
    """One delimited file: its field names in file order, delimiter, header lines and the columns to keep."""

    path: Path
    names: list[str]
    delimiter: str
    header_lines: int = 0
    include: list[str] | None = None
    skipped_lines: np.ndarray | None = None  # wrong-field-count lines already found by scan_lines (skip mode)

    @property
    def name(self) -> str:
        return self.path.name


@dataclass
class RawChunk:
    file: str
    table: pa.Table
    lines: np.ndarray  # physical 1-based line of every row


def _line_mapper(header: int, skipped: np.ndarray | None) -> Callable[[np.ndarray], np.ndarray]:
    """Row index (among rows pyarrow yields) -> physical line, given the sorted skipped lines."""
    if skipped is None or len(skipped) == 0:
        return lambda r: r + header + 1
    s = np.sort(np.asarray(skipped, np.int64))
    before = s - np.arange(len(s)) - header - 1  # rows yielded before each skipped line
    return lambda r: r + header + 1 + np.searchsorted(before, r, side="right")


def stream_text(tf: TextFile, bad: BadRows, *, chunk_rows: int = DEFAULT_CHUNK_ROWS,
                on_bytes: Callable[[int], None] | None = None, include: list[str] | None = None,
                chunk_bytes: int = CHUNK_BYTES) -> Iterator[RawChunk]:
    """Chunks of ~chunk_rows rows (or ~chunk_bytes of text) of `tf` as string tables with their line numbers
    (columns `include`, else `tf.include`)."""
    state = {"bad_text": None}

    def on_invalid(row) -> str:
        if bad.skip:
            if tf.skipped_lines is None:  # scan_lines did not count them already
                bad.add(tf.name, "wrong field count", 1)
            return "skip"
        state["bad_text"] = row.text
        return "error"

    types = {n: pa.string() for n in tf.names}
    reader_opts = pacsv.ReadOptions(column_names=tf.names, skip_rows=tf.header_lines, block_size=BLOCK_SIZE)
    parse_opts = pacsv.ParseOptions(delimiter=tf.delimiter, quote_char=False, ignore_empty_lines=False,
                                    invalid_row_handler=on_invalid)
    conv_opts = pacsv.ConvertOptions(column_types=types, strings_can_be_null=True, null_values=[""],
                                     include_columns=include if include is not None else tf.include)
    to_line = _line_mapper(tf.header_lines, tf.skipped_lines)
    stream, raw = open_input(tf.path)
    done_bytes = 0
    rows_seen = 0
    pending: list[pa.RecordBatch] = []
    pending_rows = pending_bytes = 0

    def flush():
        nonlocal pending, pending_rows, pending_bytes, rows_seen
        table = pa.Table.from_batches(pending)
        lines = to_line(np.arange(rows_seen, rows_seen + table.num_rows, dtype=np.int64))
        rows_seen += table.num_rows
        pending, pending_rows, pending_bytes = [], 0, 0
        return RawChunk(tf.name, table, lines)

    try:
        try:
            reader = pacsv.open_csv(stream, read_options=reader_opts, parse_options=parse_opts,
                                    convert_options=conv_opts)
            for batch in reader:
                if on_bytes is not None:
                    pos = raw.tell()
                    on_bytes(pos - done_bytes)
                    done_bytes = pos
                if batch.num_rows == 0:
                    continue
                pending.append(batch)
                pending_rows += batch.num_rows
                pending_bytes += batch.nbytes
                if pending_rows >= chunk_rows or pending_bytes >= chunk_bytes:
                    yield flush()
        except pa.ArrowInvalid as exc:
            if state["bad_text"] is not None or ("Expected" in str(exc) and "columns" in str(exc)):
                raise_field_count_error(tf)
            if "UTF8" in str(exc):
                raise_invalid_utf8_error(tf)
            raise DataError(f"unreadable {tf.delimiter!r}-delimited text: {exc}", file=tf.name) from None
        except OSError as exc:  # truncated or corrupt gzip (pyarrow's decompressor)
            if tf.path.suffix == ".gz":
                raise corrupt_gzip_error(tf.path, exc) from None
            raise DataError(f"cannot read: {exc}", file=tf.name) from None
        if pending:
            yield flush()
        if on_bytes is not None:
            on_bytes(max(0, raw.size() - done_bytes))
    finally:
        stream.close()
        if raw is not stream:
            raw.close()


# --------------------------------------------------------------------------- line scanning


@dataclass
class ScanResult:
    rows: int  # data lines (header excluded, empty lines included: they are rows of missing values)
    bad_lines: np.ndarray  # physical 1-based lines whose field count is wrong
    bad_fields: np.ndarray  # their field counts


def _iter_bytes(path: Path, size: int = 16 << 20) -> Iterator[bytes]:
    """The bytes of a plain or .gz file in blocks; a corrupt .gz raises the located DataError."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            while True:
                b = f.read(size)
                if not b:
                    return
                yield b
    except GZIP_ERRORS as exc:
        raise corrupt_gzip_error(path, exc) from None


def first_invalid_utf8(path: Path) -> tuple[int, int] | None:
    """(1-based line, 0-based byte column) of the first invalid UTF-8 in a file, or None (whole lines are
    decoded at a time, so a character never straddles two blocks)."""
    lines, carry = 0, b""
    for block in _iter_bytes(path):
        buf = carry + block
        cut = buf.rfind(b"\n") + 1
        whole, carry = buf[:cut], buf[cut:]
        try:
            whole.decode("utf-8")
        except UnicodeDecodeError as exc:
            start = whole.rfind(b"\n", 0, exc.start) + 1
            return lines + whole.count(b"\n", 0, exc.start) + 1, exc.start - start
        lines += whole.count(b"\n")
    try:
        carry.decode("utf-8")
    except UnicodeDecodeError as exc:
        return lines + 1, exc.start
    return None


def count_lines(path: Path, header_lines: int = 0, on_bytes: Callable[[int], None] | None = None) -> int:
    """Data lines of a file (a last line without newline counts), at memchr speed."""
    n, last = 0, b"\n"
    for chunk in _iter_bytes(path):
        n += chunk.count(b"\n")
        last = chunk[-1:]
        if on_bytes is not None:
            on_bytes(len(chunk))
    if last != b"\n":
        n += 1
    return max(0, n - header_lines)


def scan_lines(path: Path, delimiter: str, n_fields: int, header_lines: int = 0, *,
               stop_at_first_bad: bool = False, on_bytes: Callable[[int], None] | None = None) -> ScanResult:
    """Count the data lines of a file and find every line with the wrong number of fields (vectorised)."""
    d = ord(delimiter)
    line_no = 0  # lines completed so far
    carry = b""
    bad_lines: list[np.ndarray] = []
    bad_fields: list[np.ndarray] = []

    def process(buf: bytes, final: bool) -> bytes:
        nonlocal line_no
        arr = np.frombuffer(buf, np.uint8)
        ends = np.flatnonzero(arr == 10)
        if final and len(arr) and (len(ends) == 0 or ends[-1] != len(arr) - 1):
            ends = np.append(ends, len(arr))
        if len(ends) == 0:
            return buf
        starts = np.concatenate(([0], ends[:-1] + 1))
        delims = np.flatnonzero(arr == d)
        fields = np.searchsorted(delims, ends) - np.searchsorted(delims, starts) + 1
        length = ends - starts
        cr = (length > 0) & (arr[np.maximum(ends - 1, 0)] == 13)
        empty = (length == 0) | ((length == 1) & cr)
        numbers = line_no + 1 + np.arange(len(ends))
        wrong = (fields != n_fields) & ~empty & (numbers > header_lines)
        if wrong.any():
            bad_lines.append(numbers[wrong])
            bad_fields.append(fields[wrong])
        line_no += len(ends)
        return buf[int(ends[-1]) + 1:] if not final else b""

    for chunk in _iter_bytes(path):
        carry = process(carry + chunk, final=False)
        if on_bytes is not None:
            on_bytes(len(chunk))
        if stop_at_first_bad and bad_lines:
            break
    else:
        if carry:
            process(carry, final=True)
    lines = np.concatenate(bad_lines) if bad_lines else np.zeros(0, np.int64)
    fields = np.concatenate(bad_fields) if bad_fields else np.zeros(0, np.int64)
    return ScanResult(max(0, line_no - header_lines), lines, fields)


def skip_scan(tf: TextFile, bad: BadRows, on_bytes: Callable[[int], None] | None = None) -> int:
    """The data lines of `tf` for a position-based split. Erroring: a plain newline count (a wrong field count
    then fails in the stream, at its line). Skipping: a full scan, so that the skipped lines are known and
    every kept row keeps its exact line number, hence its position."""
    if not bad.skip:
        return count_lines(tf.path, tf.header_lines, on_bytes)
    result = scan_lines(tf.path, tf.delimiter, len(tf.names), tf.header_lines, on_bytes=on_bytes)
    bad.add(tf.name, "wrong field count", len(result.bad_lines))
    tf.skipped_lines = result.bad_lines
    return result.rows


def raise_field_count_error(tf: TextFile, scan: ScanResult | None = None) -> None:
    """Raise the DataError for the first line of `tf` with the wrong number of fields."""
    n = len(tf.names)
    if scan is None:
        scan = scan_lines(tf.path, tf.delimiter, n, tf.header_lines, stop_at_first_bad=True)
    if len(scan.bad_lines) == 0:
        raise DataError(f"a row does not have {n} fields", file=tf.name)
    line, got = int(scan.bad_lines[0]), int(scan.bad_fields[0])
    fld = tf.names[got] if got < n else f"extra field {n + 1} after {tf.names[-1]}"  # the first missing / extra one
    raise DataError(f"wrong field count: expected {n} {tf.delimiter!r}-separated fields, found {got}",
                    file=tf.name, line=line, field=fld)


def raise_invalid_utf8_error(tf: TextFile) -> None:
    """Raise the DataError for the first line of `tf` that is not valid UTF-8, with its field."""
    found = first_invalid_utf8(tf.path)
    if found is None:
        raise DataError("invalid UTF-8 text", file=tf.name)
    line, col = found
    with (gzip.open if tf.path.suffix == ".gz" else open)(tf.path, "rb") as f:
        for _ in range(line - 1):
            f.readline()
        text = f.readline()
    field_idx = text[:col].count(tf.delimiter.encode())
    fld = tf.names[field_idx] if field_idx < len(tf.names) else None
    raise DataError(f"invalid UTF-8 at byte {col + 1} of the line: {text[max(0, col - 8):col + 8]!r}",
                    file=tf.name, line=line, field=fld)


# --------------------------------------------------------------------------- files and checksums


def missing_files_error(spec: DatasetSpec, source: Path, missing: list[str], layout: list[str]) -> DataError:
    """The error for absent source files: names the expected layout and where the data is published."""
    return DataError(
        f"{spec.name}: missing {', '.join(missing)} under {source}; expected layout: "
        + ", ".join(f"{source}/{x}" for x in layout)
        + f". The files are published at {spec.published_at}",
        file=str(source / missing[0]),
    )


def md5_file(path: Path, on_bytes: Callable[[int], None] | None = None, block: int = 8 << 20) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while True:
            b = f.read(block)
            if not b:
                break
            h.update(b)
            if on_bytes is not None:
                on_bytes(len(b))
    return h.hexdigest()


def file_size(path: Path) -> int:
    return os.stat(path).st_size


# --------------------------------------------------------------------------- the reader interface


class SourceReader:
    """A dataset's real files as validated chunks: `chunks(train_only)` yields (split, Rows).

    Subclasses set `protocol`, list their files and convert raw chunks; the pipeline in prepare.py counts
    tokens over train (pass 1), builds the vocabularies and tokenises every split (pass 2)."""

    protocol = ""

    def __init__(self, spec: DatasetSpec, source: Path, *, chunk_rows: int = DEFAULT_CHUNK_ROWS):
        self.spec, self.source, self.chunk_rows = spec, Path(source), chunk_rows
        self.chunk_bytes = SEQUENCE_CHUNK_BYTES if spec.sequences else CHUNK_BYTES
        self.aliases: dict[str, str] = {}  # split -> split whose stored rows it shares (valid -> test)
        self.notes: dict = {}

    def files(self) -> list[Path]:
        raise NotImplementedError

    def single_file(self, candidates: list[str], layout: str) -> Path:
        """The source when it is a file, else the first of `candidates` in the source folder; none there is a
        missing_files_error for candidates[0] that describes `layout`."""
        if self.source.is_file():
            return self.source
        path = next((self.source / c for c in candidates if (self.source / c).is_file()), None)
        if path is None:
            raise missing_files_error(self.spec, self.source, [candidates[0]], [layout])
        return path

    def stored_splits(self) -> list[str]:
        """The splits written to the cache (aliases excluded)."""
        return [s for s in DATA_SPLITS if s not in self.aliases]

    def scan_bytes(self) -> int:
        """Bytes `scan` reads (0: the reader needs no line-count pass)."""
        return 0

    def scan(self, bad: BadRows, on_bytes: Callable[[int], None] | None = None) -> None:
        """A cheap line-count pass where the split depends on row positions (Criteo's pseudo-days)."""
        return None

    def fit_include(self, include: list[str], bad: BadRows, train_only: bool) -> list[str]:
        """Columns to read: pass 1 of an erroring prepare needs only the label and the id columns (numeric
        values are checked in pass 2, which raises on the first bad one all the same). A skipping prepare
        checks every column in pass 1 too, so that the rows it drops are not counted into vocabularies."""
        if not train_only or bad.skip:
            return include
        numeric = {f.column for f in self.spec.numeric}
        return [c for c in include if c not in numeric]

    def train_bytes(self) -> int:
        return sum(file_size(p) for p in self.files())

    def all_bytes(self) -> int:
        return sum(file_size(p) for p in self.files())

    def chunks(self, bad: BadRows, *, train_only: bool,
               on_bytes: Callable[[int], None] | None = None) -> Iterator[tuple[str, Rows]]:
        raise NotImplementedError

    def vocabulary(self, feature: Feature, counter) -> object:
        """The vocabulary of an id field fitted on train (FuxiCTR frequency order by default)."""
        return Vocabulary.from_counter(counter, feature.min_count)

    def finish_vocabulary(self, feature: Feature, vocab):
        """Last word on an owner's vocabulary after the sequences were merged in (pretrained keys, ...)."""
        return vocab

    def tables(self, vocabs: dict) -> dict[str, np.ndarray]:
        """Side tables to store with the cache (pretrained vectors aligned to their vocabulary)."""
        return {}


def read_header(path: Path, delimiter: str = ",") -> list[str]:
    """Field names of a header line, stripped (TaobaoAd's `new_user_class_level ` has a trailing space)."""
    names = [n.strip() for n in read_first_line(path).split(delimiter)]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise DataError(f"duplicate header columns {dup}", file=path.name, line=1, field=dup[0])
    return names
