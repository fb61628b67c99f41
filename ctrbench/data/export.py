"""`export_csv`: a cache (a twin, or any prepared cache) written back in its dataset's published BARS x1 CSV
layout, so another library (e.g. FuxiCTR) can be fed the very rows ctrbench trains on.

Every id is written as its decimal token (a twin's ids are its tokens; a prepared cache's ids stand for the
tokens they were made from), so the missing value, an ordinary id, stays an ordinary token, as in the published
files. Numeric values are written as the shortest text that reads back as the same float32. Sequences are their
non-padding ids joined by the feature's splitter, oldest first. When several features read one column (TaobaoAd's
userid is a field and the group id; KuaiVideo's item_id is a field and the pretrained item_emb), the column holds
the finest of their ids: the pretrained or group id, which never merges rare ids into OOV. KuaiVideo's
pretrained vectors go to the h5 file the spec names (datasets `key`, `value`).

Files follow spec.splits: the sequential sets publish train.csv and test.csv only (BARS validates on test); a
twin's own validation split, which those files have no place for, is written as valid.csv beside them. Reading
the export with `ctrbench data prepare` gives the same rows, and ids that are the export's tokens renumbered by
train frequency (tests/data/test_export.py checks this on twins).
"""
from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from ctrbench.data.cache import Cache
from ctrbench.data.readers import DATA_SPLITS
from ctrbench.data.schema import DatasetSpec, Feature, Kind
from ctrbench.errors import DataError

EXPORT_FORMATS = ("x1_csv",)
CHUNK_ROWS = 1 << 18
_PRIORITY = {Kind.PRETRAINED: 0, Kind.META: 1, Kind.CATEGORICAL: 2, Kind.NUMERIC: 2, Kind.SEQUENCE: 2}


def header(spec: DatasetSpec) -> list[str]:
    """The published header: a dataset module's HEADER where it has one, else the label then the columns of the
    features in spec order."""
    module = importlib.import_module(f"ctrbench.data.{spec.name}")
    names = getattr(module, "HEADER", None)
    if names is not None:
        return list(names)
    return list(dict.fromkeys([spec.label] + [f.column for f in spec.features]))


def column_sources(spec: DatasetSpec) -> dict[str, Feature]:
    """Column -> the feature whose stored ids it is written from (the finest, see the module docstring)."""
    def rank(f: Feature) -> int:  # a sequence is as fine as the vocabulary it shares
        return _PRIORITY[spec.feature(f.vocab_owner).kind if f.kind == Kind.SEQUENCE else f.kind]

    out: dict[str, Feature] = {}
    for f in spec.features:
        if f.column not in out or rank(f) < rank(out[f.column]):
            out[f.column] = f
    return out


def _ids_as_text(ids: np.ndarray) -> pa.Array:
    return pa.array(np.asarray(ids, np.int64)).cast(pa.string())


def _sequence_text(seq: np.ndarray, splitter: str) -> pa.Array:
    """[n, max_len] left-padded ids -> one splitter-joined string of the non-zero ids per row."""
    seq = np.asarray(seq)
    keep = seq != 0
    counts = keep.sum(1)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    lists = pa.ListArray.from_arrays(pa.array(offsets), _ids_as_text(seq[keep]))
    return pc.binary_join(lists, splitter)


def _column(spec: DatasetSpec, data, f: Feature, start: int, stop: int) -> pa.Array:
    if f.kind == Kind.SEQUENCE:
        return _sequence_text(data[f"seq__{f.name}"][start:stop], f.splitter)
    if f.kind == Kind.META:
        if f.name != spec.group_id or "group_id" not in data:
            raise DataError(f"cannot export meta column {f.column!r}: the cache stores no ids for it", field=f.name)
        return _ids_as_text(data["group_id"][start:stop])
    block = "pretrained" if f.kind == Kind.PRETRAINED else "categorical"
    j = [g.name for g in spec.of_kind(f.kind)].index(f.name)
    return _ids_as_text(data[block][start:stop, j])


def _split_table(spec: DatasetSpec, data, names: list[str], sources: dict[str, Feature], start: int,
                 stop: int) -> pa.Table:
    numeric = {f.column: j for j, f in enumerate(spec.numeric)}
    cols = {}
    for name in names:
        if name == spec.label:
            cols[name] = _ids_as_text(np.asarray(data["label"][start:stop]).astype(np.int64))
        elif name in numeric:
            cols[name] = pa.array(np.asarray(data["numeric"][start:stop, numeric[name]], np.float32)).cast(pa.string())
        elif name in sources:
            cols[name] = _column(spec, data, sources[name], start, stop)
        else:
            raise DataError(f"published column {name!r} is read by no feature of {spec.name}", field=name)
    return pa.table(cols)


def export_files(spec: DatasetSpec, cache: Cache) -> dict[str, str]:
    """Published file name -> the cache split written into it: where valid and test share a published file,
    test keeps it, and a twin's own validation split (not an alias of test) gets valid.csv."""
    out: dict[str, str] = {}
    for split in DATA_SPLITS:
        fname = spec.splits.get(split)
        if fname is not None and split in cache.split_names and (fname not in out or split == "test"):
            out[fname] = split
    valid = cache.manifest["splits"].get("valid")
    if valid is not None and "alias_of" not in valid and "valid" not in out.values():
        out["valid.csv"] = "valid"
    return out


def export_csv(cache: Cache, out_dir: str | Path, *, chunk_rows: int = CHUNK_ROWS) -> dict:
    """Write `cache` in its dataset's published x1 CSV layout under `out_dir`; returns what was written (also
    stored as export.json beside the files)."""
    spec = cache.spec
    if spec.file_format not in EXPORT_FORMATS:
        raise DataError(f"{spec.name}: export writes the BARS x1 CSV layout only ({', '.join(EXPORT_FORMATS)}); "
                        f"{spec.name} is published as {spec.file_format}")
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    names = header(spec)
    sources = column_sources(spec)
    options = pacsv.WriteOptions(include_header=False, quoting_style="none")  # pyarrow would quote the header
    schema = pa.schema([(n, pa.string()) for n in names])
    written = {}
    for fname, split in export_files(spec, cache).items():
        data = cache.split(split)
        with open(out / fname, "wb") as f:
            f.write((",".join(names) + "\n").encode())
            with pacsv.CSVWriter(f, schema, write_options=options) as writer:
                for start in range(0, data.rows, chunk_rows):
                    stop = min(data.rows, start + chunk_rows)
                    writer.write_table(_split_table(spec, data, names, sources, start, stop))
        written[fname] = {"split": split, "rows": data.rows}
    for f in spec.pretrained:
        table = np.asarray(cache.table(f.name))
        _write_pretrained(out / spec.splits["pretrained"], table)
        written[spec.splits["pretrained"]] = {"table": f.name, "vectors": int(table.shape[0] - 2)}
    m = cache.manifest
    summary = {"dataset": spec.name, "from_cache": str(cache.path), "source": m.get("source"), "files": written,
               "header": names,
               "columns_from": {c: f.name for c, f in sources.items()},
               "oracle": (m.get("twin") or {}).get("oracle"),
               "twin_generator_version": (m.get("twin") or {}).get("generator_version")}
    (out / "export.json").write_text(json.dumps(summary, indent=1, default=str))
    return summary


def _write_pretrained(path: Path, table: np.ndarray) -> None:
    """The pretrained vectors of ids 1..C-2 (0 = padding and C-1 = OOV have none) as FuxiCTR's h5 layout."""
    import h5py

    with h5py.File(path, "w") as hf:
        hf.create_dataset("key", data=np.arange(1, table.shape[0] - 1, dtype=np.int64))
        hf.create_dataset("value", data=table[1:-1].astype(np.float32))
