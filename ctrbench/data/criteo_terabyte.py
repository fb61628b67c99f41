"""Criteo 1TB click logs, MLPerf DLRM protocol: day_0..day_23 TSV; days 0-22 train, day 23 halves valid/test.

Dense ln(x + 3) with missing -> 0 (torchrec preprocessing; values <= -3 are reported, not clamped);
categoricals parsed base-16, made contiguous per column on train in value order (torchrec's np.unique), then
folded modulo the MLPerf v2 table sizes (40M cap). Day 23: first half (ceil) valid, second half test
(torchrec InMemoryBinaryCriteoIterDataPipe). A missing categorical is filled with 0 before the contiguous
ids, as torchrec does (an ordinary id); the last id = unseen-in-train; see
ctrbench.data.preprocess.ContiguousModuloVocabulary for how the table sizes are honoured.
"""
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ctrbench.data.preprocess import ContiguousModuloVocabulary, parse_hex
from ctrbench.data.readers import (BadRows, Problems, SourceReader, as_array, convert_rows, file_size,
                                   missing_files_error, skip_scan, stream_text)
from ctrbench.data.schema import DatasetSpec, TwinProfile, categorical, numeric

TABLE_SIZES = [40000000, 39060, 17295, 7424, 20265, 3, 7122, 1543, 63, 40000000, 3067956, 405282, 10,
               2209, 11938, 155, 4, 976, 14, 40000000, 40000000, 40000000, 590152, 12973, 108, 36]
DAYS = 24

SPEC = DatasetSpec(
    name="criteo_terabyte",
    title="Criteo 1TB Click Logs (MLPerf DLRMv2 protocol)",
    features=tuple(numeric(f"I{i}", transform="log_plus3") for i in range(1, 14))
    + tuple(categorical(f"C{i}", s) for i, s in enumerate(TABLE_SIZES, start=1)),
    label="label",
    file_format="criteo_terabyte_tsv",
    splits={"train": "day_{0..22}", "valid": "day_23 (first half)", "test": "day_23 (second half)"},
    published_at="Criteo 1TB Click Logs (ailab.criteo.com; files day_0.gz .. day_23.gz)",
    embedding_dim=128,
    twin=TwinProfile(base_ctr=0.034, best_published_auc=0.8030, default_rows=240_000, days=DAYS),
    notes="MLPerf DLRMv2 target 0.80275 AUC. Table size per column = modulo applied to contiguous ids.",
)


# --------------------------------------------------------------------------- reader of the real files


def day_file(source: Path, day: int) -> Path | None:
    """day_N or day_N.gz (the published files are gzipped)."""
    for name in (f"day_{day}", f"day_{day}.gz"):
        if (source / name).is_file():
            return source / name
    return None


class TerabyteReader(SourceReader):
    """The 24 day files of Criteo 1TB, MLPerf DLRM protocol."""

    protocol = ("mlperf-dlrm: days 0-22 train, day 23 first half (ceil) valid / second half test; dense ln(x+3), "
                "missing 0; categoricals base-16, contiguous per column on train (value order), modulo the MLPerf "
                "v2 table sizes")

    def __init__(self, spec, source: Path, **kw):
        from ctrbench.data.criteo import criteo_text_file

        super().__init__(spec, source, **kw)
        paths = [day_file(self.source, d) for d in range(DAYS)]
        missing = [f"day_{d}" for d, p in enumerate(paths) if p is None]
        if missing:
            raise missing_files_error(spec, self.source, missing, [f"day_{{0..{DAYS - 1}}}[.gz] (TAB, no header)"])
        self.days = [criteo_text_file(p) for p in paths]
        self.valid_rows: int | None = None

    def files(self) -> list[Path]:
        return [tf.path for tf in self.days]

    def train_bytes(self) -> int:
        return sum(file_size(tf.path) for tf in self.days[:-1])

    def scan_bytes(self) -> int:
        return file_size(self.days[-1].path)

    def scan(self, bad: BadRows, on_bytes=None) -> None:
        last = self.days[-1]
        rows = skip_scan(last, bad, on_bytes)
        self.valid_rows = math.ceil(rows / 2)
        self.notes["day_23"] = {"rows_incl_bad": rows, "valid_rows_incl_bad": self.valid_rows}

    def convert(self, raw, bad):
        spec = self.spec

        def columns(table: pa.Table, problems: Problems) -> dict[str, pa.Array]:
            out = {}
            for f in spec.categorical:
                raw_col = as_array(table[f.column])
                parsed, nonhex = parse_hex(raw_col)
                problems.add(nonhex, f.column, "not a hexadecimal id", raw_col)
                out[f.column] = pc.fill_null(parsed, 0)  # torchrec: missing -> 0, an ordinary value
            return out

        return convert_rows(spec, raw, bad, columns)

    def chunks(self, bad, *, train_only, on_bytes=None):
        days = self.days[:-1] if train_only else self.days
        for d, tf in enumerate(days):
            last = d == DAYS - 1
            if last and self.valid_rows is None:
                self.scan(bad)
            include = self.fit_include(tf.include, bad, train_only)
            for raw in stream_text(tf, bad, chunk_rows=self.chunk_rows, on_bytes=on_bytes, include=include):
                rows = self.convert(raw, bad)
                if not last:
                    yield "train", rows
                    continue
                cut = int(np.searchsorted(rows.lines - tf.header_lines - 1, self.valid_rows))
                if cut:
                    yield "valid", rows.slice(0, cut)
                if cut < len(rows):
                    yield "test", rows.slice(cut, len(rows))

    def vocabulary(self, feature, counter):
        return ContiguousModuloVocabulary(counter.tokens_by_value(feature.min_count), feature.cardinality)
