"""`prepare_real`: a dataset's real files -> the columnar cache, streaming, in two passes.

Pass 1 reads train only and counts tokens per id column and per sequence column; the vocabularies are then
built with the FuxiCTR conventions (ctrbench.data.preprocess). Pass 2 reads every split, tokenises it and
appends blocks to a CacheWriter, which publishes the cache atomically: an interrupted or failed prepare
leaves nothing that looks complete. The reader is chosen by the spec's `file_format`; a dataset module may
pass options to it through a module-level READ_OPTIONS dict.
"""
from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pyarrow as pa

from ctrbench.data.cache import Cache, CacheWriter
from ctrbench.data.preprocess import GroupIds, TokenCounter, Vocabulary, pad_sequences, split_sequences
from ctrbench.data.progress import ByteProgress
from ctrbench.data.readers import DEFAULT_CHUNK_ROWS, BadRows, Rows, SourceReader, file_size, md5_file
from ctrbench.data.schema import DatasetSpec, Kind
from ctrbench.data.x1 import X1Reader
from ctrbench.errors import DataError, UnknownNameError


def _format_readers() -> dict[str, type[SourceReader]]:
    from ctrbench.data.avazu import AvazuReader
    from ctrbench.data.criteo import CriteoReader
    from ctrbench.data.criteo_terabyte import TerabyteReader

    return {"x1_csv": X1Reader, "criteo_tsv": CriteoReader, "criteo_terabyte_tsv": TerabyteReader,
            "avazu_csv": AvazuReader}


def make_reader(spec: DatasetSpec, source: str | Path, *, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> SourceReader:
    """The reader of `spec`'s real files under `source` (checks the layout: missing files are an error)."""
    readers = _format_readers()
    if spec.file_format not in readers:
        raise UnknownNameError("file format", spec.file_format, readers)
    source = Path(source).expanduser()
    if not source.exists():
        raise DataError(f"{spec.name}: source folder does not exist; expected the files "
                        f"{sorted(set(spec.splits.values()))} there (published at {spec.published_at})",
                        file=str(source))
    try:
        options = getattr(importlib.import_module(f"ctrbench.data.{spec.name}"), "READ_OPTIONS", {})
    except ModuleNotFoundError:
        options = {}
    return readers[spec.file_format](spec, source, chunk_rows=chunk_rows, **options)


def describe_sources(spec: DatasetSpec, files: list[Path], bar: ByteProgress, checksums: bool = True) -> dict:
    """Size and md5 of each source file, and whether it matches the published md5 where the spec has one."""
    out = {}
    advance = bar.task("checksums", sum(file_size(p) for p in files)) if checksums else None
    for p in files:
        entry = {"size": file_size(p)}
        if checksums:
            entry["md5"] = md5_file(p, advance)
            if p.name in spec.md5:
                entry["published_md5"] = spec.md5[p.name]
                entry["matches_published"] = entry["md5"] == spec.md5[p.name]
        out[p.name] = entry
    return out


def _split_cache(rows: Rows, spec: DatasetSpec) -> dict:
    """Each sequence column split once per chunk (several features may read the same column)."""
    out = {}
    for s in spec.sequences:
        key = (s.column, s.splitter)
        if key not in out:
            out[key] = split_sequences(rows.columns[s.column], s.splitter)
    return out


def fit_vocabularies(spec: DatasetSpec, reader: SourceReader, bad: BadRows, advance=None) -> dict:
    """Pass 1: count train tokens, then build every owner's vocabulary and merge its sequences' tokens."""
    owners = spec.of_kind(Kind.CATEGORICAL, Kind.PRETRAINED)
    col_counters = {f.column: TokenCounter() for f in owners}
    seq_counters = {(s.column, s.splitter): TokenCounter() for s in spec.sequences}
    train_rows = 0
    for _split, rows in reader.chunks(bad, train_only=True, on_bytes=advance):
        train_rows += len(rows)
        for c, counter in col_counters.items():
            counter.update(rows.columns[c])
        for key, (flat, _rows) in _split_cache(rows, spec).items():
            seq_counters[key].update(flat)
    if train_rows == 0:
        raise DataError(f"{spec.name}: no training rows (every row empty or skipped as bad)",
                        file=", ".join(p.name for p in reader.files()))
    names = {f.name for f in owners}
    for s in spec.sequences:
        if s.share_vocab is not None and s.share_vocab not in names:
            raise DataError(f"sequence {s.name!r} shares the vocabulary of {s.share_vocab!r}, which is not an id field "
                            f"of {spec.name}")
    vocabs = {}
    for f in owners:
        vocab = reader.vocabulary(f, col_counters[f.column])
        for s in spec.sequences:
            if s.share_vocab == f.name:
                vocab = vocab.extended(seq_counters[(s.column, s.splitter)].most_common(s.min_count)[0])
        vocabs[f.name] = reader.finish_vocabulary(f, vocab)
    for s in spec.sequences:
        if s.share_vocab is None:
            vocabs[s.name] = Vocabulary.from_counter(seq_counters[(s.column, s.splitter)], s.min_count)
    return vocabs


def _encode_shared(vocab, arrays: list) -> list[np.ndarray]:
    """Encode several arrays with one vocabulary in one lookup (one hash build per chunk, not one per field)."""
    if len(arrays) == 1:
        return [vocab.encode(arrays[0])]
    tokens_type = vocab.tokens.type if hasattr(vocab, "tokens") else None
    chunks = []
    for a in arrays:
        a = a.cast(tokens_type) if tokens_type is not None and a.type != tokens_type else a
        chunks.extend(a.chunks if isinstance(a, pa.ChunkedArray) else [a])
    if not chunks:
        return [np.zeros(0, np.int32) for _ in arrays]
    ids = vocab.encode(pa.chunked_array(chunks, type=chunks[0].type))
    bounds = np.cumsum([len(a) for a in arrays])[:-1]
    return np.split(ids, bounds)


def encode_rows(spec: DatasetSpec, vocabs: dict, groups: GroupIds | None, rows: Rows) -> dict[str, np.ndarray]:
    """One chunk of validated rows -> the cache's blocks (see ctrbench.data.cache). Every field and sequence
    that shares a vocabulary is looked up together."""
    n = len(rows)
    blocks: dict[str, np.ndarray] = {"label": rows.label.astype(np.float32, copy=False)}
    if spec.numeric:
        blocks["numeric"] = rows.numeric.astype(np.float32, copy=False)
    splits = _split_cache(rows, spec)
    requests: dict[str, list[tuple[str, object]]] = {}  # vocabulary -> [(feature, values)]
    for f in spec.of_kind(Kind.CATEGORICAL, Kind.PRETRAINED):
        requests.setdefault(f.name, []).append((f.name, rows.columns[f.column]))
    for s in spec.sequences:
        requests.setdefault(s.vocab_owner, []).append((s.name, splits[(s.column, s.splitter)][0]))
    ids: dict[str, np.ndarray] = {}
    for owner, reqs in requests.items():
        for (name, _values), out in zip(reqs, _encode_shared(vocabs[owner], [v for _n, v in reqs])):
            ids[name] = out
    for block, feats in (("categorical", spec.categorical), ("pretrained", spec.pretrained)):
        if feats:
            out = np.empty((n, len(feats)), np.int32)
            for j, f in enumerate(feats):
                out[:, j] = ids[f.name]
            blocks[block] = out
    for s in spec.sequences:
        owner_rows = splits[(s.column, s.splitter)][1]
        blocks[f"seq__{s.name}"] = pad_sequences(ids[s.name], owner_rows, n, s.max_len, s.padding)
    if spec.group_id is not None and groups is not None:
        blocks["group_id"] = groups.encode(rows.columns[spec.feature(spec.group_id).column])
    return blocks


def _empty_rows(spec: DatasetSpec) -> Rows:
    cols = {f.column: pa.array([], pa.string()) for f in spec.features if f.kind != Kind.NUMERIC}
    return Rows(np.zeros(0, np.float32), np.zeros((0, len(spec.numeric)), np.float32), cols, np.zeros(0, np.int64))


def vocab_sizes(spec: DatasetSpec, vocabs: dict, groups: GroupIds | None) -> dict[str, int]:
    out = {}
    for f in spec.features:
        if f.kind in (Kind.CATEGORICAL, Kind.PRETRAINED):
            out[f.name] = vocabs[f.name].size
        elif f.kind == Kind.SEQUENCE:
            out[f.name] = vocabs[f.vocab_owner].size
        elif f.kind == Kind.META and f.name == spec.group_id and groups is not None:
            out[f.name] = groups.size
    return out


def prepare_real(
    spec: DatasetSpec,
    source_dir: str | Path,
    out_path: str | Path,
    on_bad_rows: str = "error",
    progress: bool = True,
    *,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    checksums: bool = True,
) -> Cache:
    """Read `spec`'s real files under `source_dir` and publish their cache at `out_path`.

    on_bad_rows: "error" raises DataError(file, line, field) at the first malformed row; "skip" drops
    malformed rows and counts them per file (and reason) in the manifest."""
    bad = BadRows(on_bad_rows)
    reader = make_reader(spec, source_dir, chunk_rows=chunk_rows)
    with ByteProgress(progress) as bar:
        source = {"dir": str(Path(source_dir).expanduser().resolve()),
                  "files": describe_sources(spec, reader.files(), bar, checksums)}
        if reader.scan_bytes():
            reader.scan(bad, bar.task("counting lines", reader.scan_bytes()))
        vocabs = fit_vocabularies(spec, reader, BadRows(on_bad_rows, count=False),
                                  bar.task("pass 1/2: counting train tokens", reader.train_bytes()))
        groups = GroupIds() if spec.group_id is not None else None
        writer = CacheWriter(out_path, spec)
        try:
            written = set()
            advance = bar.task("pass 2/2: tokenising", reader.all_bytes())
            for split, rows in reader.chunks(bad, train_only=False, on_bytes=advance):
                if len(rows) or split not in written:
                    writer.append(split, encode_rows(spec, vocabs, groups, rows))
                    written.add(split)
            for split in reader.stored_splits():
                if split not in written:  # every row of it was bad and skipped: keep the split, empty
                    writer.append(split, encode_rows(spec, vocabs, groups, _empty_rows(spec)))
            for name, table in reader.tables(vocabs).items():
                writer.add_table(name, table)
            for split, of in reader.aliases.items():
                writer.alias(split, of)
            extra = {
                "protocol": reader.protocol,
                "on_bad_rows": on_bad_rows,
                "bad_rows_skipped": bad.per_file(),
                "bad_rows_by_reason": bad.skipped,
                "valid_is_test": spec.valid_is_test,
                "split_aliases": dict(reader.aliases),
                **reader.notes,
            }
            return writer.finalize(vocab_sizes(spec, vocabs, groups), source, extra)
        except BaseException:
            writer.abort()
            raise
