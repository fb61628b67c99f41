"""Criteo Kaggle DAC raw train.txt (TAB, no header, hex categoricals) or the Kaggle CSV (Id,Label,...).

Protocol (named in results as "dlrm-kaggle"): dense ln(max(x, 0) + 1) with missing -> 0 (facebookresearch/dlrm);
the file is cut into 7 equal pseudo-days in row order (divmod: the first n % 7 days get one more row), days 0-5
train, day 6 split as DLRM's `np.array_split(day6, 2)`: first half (ceil) test, second half valid
(facebookresearch/dlrm dlrm_data_pytorch.py). Categoricals are kept as hex strings and tokenised with min
count 10 (BARS x4_001 threshold).
"""
import math
from pathlib import Path

import numpy as np

from ctrbench.data.criteo_x1 import CARDINALITIES
from ctrbench.data.readers import (BadRows, RawChunk, SourceReader, TextFile, convert_rows, file_size,
                                   read_first_line, skip_scan, stream_text)
from ctrbench.data.schema import DatasetSpec, TwinProfile, categorical, numeric
from ctrbench.errors import DataError

SPEC = DatasetSpec(
    name="criteo",
    title="Criteo Kaggle DAC (raw train.txt / Kaggle CSV)",
    features=tuple(numeric(f"I{i}", transform="log1p_clip0") for i in range(1, 14))
    + tuple(categorical(f"C{i}", c, min_count=10) for i, c in enumerate(CARDINALITIES, start=1)),
    label="label",
    file_format="criteo_tsv",
    splits={"train": "train.txt"},
    published_at="Criteo Display Advertising Challenge (dac.tar.gz; Kaggle 'criteo-display-ad-challenge')",
    embedding_dim=16,
    md5={"train.txt": "4dcfe6c4b7783585d4ae3c714994f26a", "test.txt": "94ccf2787a67fd3d6e78a62129af0ed9"},
    twin=TwinProfile(base_ctr=0.256, best_published_auc=0.8150, default_rows=200_000),
    notes="7 pseudo-days: 0-5 train, day 6 first half test / second half valid (dlrm-kaggle protocol).",
)


# --------------------------------------------------------------------------- reader of the real files

FIELDS = ["label"] + [f"I{i}" for i in range(1, 14)] + [f"C{i}" for i in range(1, 27)]
CANDIDATES = ["train.txt", "train.txt.gz", "train.csv", "train.csv.gz"]
DAYS = 7


def criteo_text_file(path: Path) -> TextFile:
    """The layout of a Criteo file, told by its first line: raw TSV without header (train.txt, day_N), the
    Kaggle CSV with header `Id,Label,I1..,C1..`, or a CSV with header `label,I1..,C1..`."""
    first = read_first_line(path)
    if "\t" not in first and "," in first:
        names = [x.strip() for x in first.split(",")]
        lower = [x.lower() for x in names]
        if lower == ["id"] + [x.lower() for x in FIELDS]:
            return TextFile(path, ["Id"] + FIELDS, ",", header_lines=1, include=FIELDS)
        if lower == [x.lower() for x in FIELDS]:
            return TextFile(path, FIELDS, ",", header_lines=1, include=FIELDS)
        raise DataError(f"a Criteo CSV needs the header Id,Label,I1..I13,C1..C26 (or label,I1..,C1..); got "
                        f"{names[:4]}... ({len(names)} columns)", file=path.name, line=1)
    return TextFile(path, FIELDS, "\t", header_lines=0, include=FIELDS)


class CriteoReader(SourceReader):
    """Criteo Kaggle train.txt (or the Kaggle CSV) cut into 7 equal pseudo-days by row order (DLRM)."""

    protocol = ("dlrm-kaggle: 7 equal pseudo-days by row order (the first n % 7 days one row longer), days 0-5 "
                "train, day 6 first half (ceil) test and second half valid; dense ln(max(x,0)+1), missing 0; "
                "categoricals as hex strings, min count 10")

    def __init__(self, spec, source: Path, **kw):
        super().__init__(spec, source, **kw)
        path = self.single_file(CANDIDATES, "train.txt (TAB, no header; or the Kaggle train.csv with Id,Label,...)")
        self.tf = criteo_text_file(path)
        self.bounds: np.ndarray | None = None  # data-row index where train / test / valid end

    def files(self) -> list[Path]:
        return [self.tf.path]

    def scan_bytes(self) -> int:
        return file_size(self.tf.path)

    def scan(self, bad: BadRows, on_bytes=None) -> None:
        n = skip_scan(self.tf, bad, on_bytes)
        per, extra = divmod(n, DAYS)
        sizes = np.array([per + (1 if d < extra else 0) for d in range(DAYS)], np.int64)
        train_end = int(sizes[:-1].sum())
        test_n = math.ceil(sizes[-1] / 2)
        self.bounds = np.array([train_end, train_end + test_n, n], np.int64)
        self.notes["days"] = {"rows_per_day": sizes.tolist(), "train_rows_incl_bad": train_end,
                              "test_rows_incl_bad": test_n, "valid_rows_incl_bad": int(sizes[-1] - test_n)}

    def chunks(self, bad, *, train_only, on_bytes=None):
        if self.bounds is None:
            self.scan(bad)
        names = ("train", "test", "valid")
        include = self.fit_include(self.tf.include, bad, train_only)
        for raw in stream_text(self.tf, bad, chunk_rows=self.chunk_rows, on_bytes=on_bytes, include=include):
            index = raw.lines - self.tf.header_lines - 1  # data-row index, bad lines included
            if train_only:  # validate and count train rows only
                cut = int(np.searchsorted(index, self.bounds[0]))
                if cut == 0:
                    return
                if cut < len(index):
                    raw = RawChunk(raw.file, raw.table.slice(0, cut), raw.lines[:cut])
            rows = convert_rows(self.spec, raw, bad)
            part = np.searchsorted(self.bounds, rows.lines - self.tf.header_lines - 1, side="right")
            for p in np.unique(part):
                if train_only and p != 0:
                    continue
                sel = np.flatnonzero(part == p)
                yield names[p], rows.slice(int(sel[0]), int(sel[-1]) + 1)
