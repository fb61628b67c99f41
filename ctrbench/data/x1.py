"""BARS x1 CSV splits (train.csv, valid.csv, test.csv with a header) and FuxiCTR's pretrained-embedding h5:
the reader shared by Criteo_x1, Avazu_x1, AmazonElectronics_x1, TaobaoAd_x1 and KuaiVideo_x1."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ctrbench.data.readers import (DATA_SPLITS, BadRows, Problems, RawChunk, Rows, SourceReader, TextFile,
                                   canonical_float_ids, convert_rows, file_size, missing_files_error,
                                   read_header, stream_text, token_columns)
from ctrbench.data.schema import DatasetSpec, Kind
from ctrbench.errors import DataError


def read_h5_table(path: Path, dim: int) -> tuple[pa.Array, "object"]:
    """FuxiCTR pretrained-embedding h5: datasets `key` (ids) and `value` ([n, dim]); keys as strings."""
    import h5py

    try:
        hf = h5py.File(path, "r")
    except OSError as exc:
        raise DataError(f"cannot open the pretrained-embedding file: {exc}", file=path.name) from None
    for k in ("key", "value"):
        if k not in hf:
            hf.close()
            raise DataError(f"pretrained-embedding file lacks dataset {k!r} (has {sorted(hf.keys())})",
                            file=path.name, field=k)
    keys = hf["key"][:]
    value = hf["value"]
    if value.ndim != 2 or value.shape[0] != len(keys) or value.shape[1] != dim:
        shape = value.shape
        hf.close()
        raise DataError(f"`value` has shape {shape}; expected ({len(keys)}, {dim})", file=path.name, field="value")
    if keys.dtype.kind in "iu":
        tokens = pa.array(keys.astype(np.int64)).cast(pa.string())
    elif keys.dtype.kind == "f":
        tokens = canonical_float_ids(pa.array(keys))[0]
    else:
        tokens = pa.array([k.decode() if isinstance(k, bytes) else str(k) for k in keys.tolist()], pa.string())
    if len(pc.unique(tokens)) != len(tokens):
        hf.close()
        raise DataError("duplicate ids in `key`", file=path.name, field="key")
    return tokens, hf


class X1Reader(SourceReader):
    """BARS x1 CSV splits (train.csv, valid.csv, test.csv with a header), plus a FuxiCTR pretrained h5 when
    the spec has pretrained features. `float_ids`: id columns BARS reads as dtype float (Criteo_x1, Avazu_x1)."""

    protocol = "bars-x1"

    def __init__(self, spec: DatasetSpec, source: Path, *, float_ids: bool = False, **kw):
        super().__init__(spec, source, **kw)
        self.float_ids = float_ids
        splits = {s: spec.splits[s] for s in DATA_SPLITS if s in spec.splits}
        # one stored split per file; the others alias it (BARS's valid = test for the sequential sets)
        self.file_split: dict[str, str] = {}
        for s, fname in splits.items():
            if fname not in self.file_split or s == "test":
                self.file_split[fname] = s
        for s, fname in splits.items():
            if self.file_split[fname] != s:
                self.aliases[s] = self.file_split[fname]
        side = [spec.splits["pretrained"]] if spec.pretrained else []
        layout = list(dict.fromkeys(list(splits.values()) + side))
        missing = [x for x in layout if not (self.source / x).is_file()]
        if missing:
            raise missing_files_error(spec, self.source, missing, layout)
        self.split_files = {s: self.source / f for f, s in self.file_split.items()}
        self.pretrained_file = self.source / side[0] if side else None
        self.needed = list(dict.fromkeys([spec.label] + [f.column for f in spec.features]))
        self.headers = {}
        for s, p in self.split_files.items():
            names = read_header(p)
            lacking = [c for c in self.needed if c not in names]
            if lacking:
                raise DataError(f"header lacks column(s) {lacking}; {spec.name} needs {self.needed}",
                                file=p.name, line=1, field=lacking[0])
            self.headers[s] = names
        self._pretrained_keys: dict[str, pa.Array] = {}

    def files(self) -> list[Path]:
        out = [self.split_files[s] for s in DATA_SPLITS if s in self.split_files]
        return out + ([self.pretrained_file] if self.pretrained_file else [])

    def train_bytes(self) -> int:
        return file_size(self.split_files["train"])

    def all_bytes(self) -> int:
        return sum(file_size(p) for p in self.split_files.values())

    def chunks(self, bad, *, train_only, on_bytes=None):
        for split in DATA_SPLITS:
            if split not in self.split_files or (train_only and split != "train"):
                continue
            path = self.split_files[split]
            tf = TextFile(path, self.headers[split], ",", header_lines=1, include=self.needed)
            include = self.fit_include(self.needed, bad, train_only)
            for raw in stream_text(tf, bad, chunk_rows=self.chunk_rows, on_bytes=on_bytes, include=include,
                                   chunk_bytes=self.chunk_bytes):
                yield split, self.convert(raw, bad)

    def convert(self, raw: RawChunk, bad: BadRows) -> Rows:
        if not self.float_ids:
            return convert_rows(self.spec, raw, bad)
        spec = self.spec
        id_cols = {f.column for f in spec.features if f.kind in (Kind.CATEGORICAL, Kind.META, Kind.PRETRAINED)}

        def columns(table: pa.Table, problems: Problems) -> dict[str, pa.Array]:
            out = {}
            for c in token_columns(spec):
                col = table[c]
                if c in id_cols:
                    col, nonnum = canonical_float_ids(col)
                    problems.add(nonnum, c, "id is not a number (BARS reads it as float)", table[c])
                out[c] = col
            return out

        return convert_rows(spec, raw, bad, columns)

    # pretrained: vocabulary = train ids (min count), merged sequence ids, then every key of the h5 file
    # (FuxiCTR load_pretrained_vocab), so test ids with a vector keep it; OOV stays the last id.
    def finish_vocabulary(self, feature, vocab):
        if feature.kind != Kind.PRETRAINED or self.pretrained_file is None:
            return vocab
        keys, hf = read_h5_table(self.pretrained_file, feature.pretrained_dim)
        hf.close()
        self._pretrained_keys[feature.name] = keys
        return vocab.extended(keys)

    def tables(self, vocabs):
        out = {}
        for f in self.spec.pretrained:
            vocab = vocabs[f.name]
            keys, hf = read_h5_table(self.pretrained_file, f.pretrained_dim)
            try:
                ids = vocab.encode(keys)
                table = np.zeros((vocab.size, f.pretrained_dim), np.float32)  # PAD, OOV, id without vector: 0
                value = hf["value"]
                step = 1 << 18
                for a in range(0, len(ids), step):
                    table[ids[a:a + step]] = value[a:a + step].astype(np.float32)
            finally:
                hf.close()
            has = np.zeros(vocab.size, bool)
            has[ids] = True
            self.notes.setdefault("pretrained", {})[f.name] = {
                "file": self.pretrained_file.name, "vectors": int(len(keys)), "rows": int(vocab.size),
                "ids_without_vector": int(vocab.size - 2 - has[1:vocab.oov].sum()),
            }
            out[f.name] = table
        return out
