"""Avazu raw Kaggle CSV (24 columns, header). Protocol "avazu-x4-features, by-day split": `id` dropped,
`hour` (YYMMDDHH) -> hour-of-day, weekday, is_weekend; everything else categorical (min count 2);
days 1-8 (141021-141028) train, day 9 valid, day 10 test. Derived fields as FuxiCTR's avazu.py: hour-of-day
HH, weekday as strftime('%w') (Sunday = 0), weekend = weekday in {0, 6}.
"""
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ctrbench.data.readers import (DATA_SPLITS, Problems, SourceReader, TextFile, as_array, convert_rows,
                                   read_header, stream_text)
from ctrbench.data.schema import DatasetSpec, TwinProfile, categorical
from ctrbench.errors import DataError

RAW_CATEGORICAL = ["C1", "banner_pos", "site_id", "site_domain", "site_category", "app_id", "app_domain",
                   "app_category", "device_id", "device_ip", "device_model", "device_type", "device_conn_type",
                   "C14", "C15", "C16", "C17", "C18", "C19", "C20", "C21"]
DERIVED = ["hour", "weekday", "weekend"]  # from the raw `hour` column
RAW_COLUMNS = ["id", "click", "hour"] + RAW_CATEGORICAL
_CARD = {"C1": 9, "banner_pos": 9, "site_id": 3480, "site_domain": 4271, "site_category": 26, "app_id": 4864,
         "app_domain": 305, "app_category": 33, "device_id": 228186, "device_ip": 1048285, "device_model": 6515,
         "device_type": 6, "device_conn_type": 6, "C14": 1940, "C15": 10, "C16": 11, "C17": 349, "C18": 6,
         "C19": 61, "C20": 171, "C21": 52, "hour": 26, "weekday": 9, "weekend": 4}

SPEC = DatasetSpec(
    name="avazu",
    title="Avazu CTR Prediction (raw Kaggle train CSV)",
    features=tuple(categorical(c, _CARD[c], min_count=2) for c in RAW_CATEGORICAL + DERIVED),
    label="click",
    file_format="avazu_csv",
    splits={"train": "train.csv"},
    published_at="Kaggle competition 'avazu-ctr-prediction' (train.gz)",
    embedding_dim=16,
    twin=TwinProfile(base_ctr=0.17, best_published_auc=0.7672, default_rows=200_000),
    notes="By-day split: 141021-141028 train, 141029 valid, 141030 test.",
)


# --------------------------------------------------------------------------- reader of the real files

CANDIDATES = ["train.csv", "train.gz", "train.csv.gz", "train"]
SPLIT_DAYS = {"train": range(141021, 141029), "valid": range(141029, 141030), "test": range(141030, 141031)}


def derive_hour_fields(col, problems: Problems) -> tuple[dict[str, pa.Array], np.ndarray]:
    """YYMMDDHH -> hour-of-day, weekday (%w), weekend tokens, and YYMMDD per row (0 where invalid)."""
    col = as_array(col)
    ok = pc.match_substring_regex(col, r"^[0-9]{8}$").fill_null(False).to_numpy(zero_copy_only=False)
    v = pc.cast(pc.if_else(pa.array(ok), col, "14102100"), pa.int64()).to_numpy()
    ymd, hh = v // 100, v % 100
    yy, mm, dd = ymd // 10000, (ymd // 100) % 100, ymd % 100
    month_ok = (mm >= 1) & (mm <= 12)
    month = (yy + 30).astype("datetime64[Y]").astype("datetime64[M]") + np.where(month_ok, mm - 1, 0)
    date = month.astype("datetime64[D]") + (dd - 1)
    valid = ok & month_ok & (dd >= 1) & (hh <= 23) & (date.astype("datetime64[M]") == month)
    problems.add(~valid, "hour", "hour is not a YYMMDDHH time", col)
    weekday = (date.astype(np.int64) + 4) % 7  # 1970-01-01 was a Thursday (%w = 4)
    out = {
        "hour": pa.array(hh).cast(pa.string()),
        "weekday": pa.array(weekday).cast(pa.string()),
        "weekend": pa.array(((weekday == 0) | (weekday == 6)).astype(np.int64)).cast(pa.string()),
    }
    return out, np.where(valid, ymd, 0)


class AvazuReader(SourceReader):
    """Avazu's raw Kaggle train CSV (24 columns), split by day."""

    protocol = ("avazu-by-day: id dropped; hour -> hour-of-day, weekday, weekend; days 141021-141028 train, "
                "141029 valid, 141030 test; min count 2")

    def __init__(self, spec, source: Path, **kw):
        super().__init__(spec, source, **kw)
        path = self.single_file(CANDIDATES, "train.csv (or the Kaggle train.gz: CSV with header id,click,hour,...)")
        names = read_header(path)
        if names != RAW_COLUMNS:
            lacking = [c for c in RAW_COLUMNS if c not in names]
            raise DataError(f"Avazu's header must be {','.join(RAW_COLUMNS)}; got {len(names)} columns"
                            + (f", lacking {lacking}" if lacking else " in another order"),
                            file=path.name, line=1, field=lacking[0] if lacking else None)
        self.tf = TextFile(path, names, ",", header_lines=1, include=RAW_COLUMNS[1:])

    def files(self) -> list[Path]:
        return [self.tf.path]

    def convert(self, raw, bad):
        day_holder = {}

        def columns(table: pa.Table, problems: Problems) -> dict[str, pa.Array]:
            out = {c: as_array(table[c]) for c in RAW_CATEGORICAL}
            derived, ymd = derive_hour_fields(table["hour"], problems)
            out.update(derived)
            in_window = np.isin(ymd, np.arange(141021, 141031))
            problems.add((ymd != 0) & ~in_window, "hour", "day outside the training window 141021-141030",
                         as_array(table["hour"]))
            day_holder["ymd"] = ymd
            return out

        rows = convert_rows(self.spec, raw, bad, columns)
        ymd = day_holder["ymd"]
        if len(rows) != len(ymd):  # bad rows were skipped: align the days with the kept rows
            keep = np.isin(raw.lines, rows.lines)
            ymd = ymd[keep]
        return rows, ymd

    def chunks(self, bad, *, train_only, on_bytes=None):
        for raw in stream_text(self.tf, bad, chunk_rows=self.chunk_rows, on_bytes=on_bytes):
            rows, ymd = self.convert(raw, bad)
            for split in DATA_SPLITS:
                if train_only and split != "train":
                    continue
                days = SPLIT_DAYS[split]
                sel = (ymd >= days.start) & (ymd < days.stop)
                if sel.all():
                    yield split, rows
                elif sel.any():
                    yield split, rows.filter(sel)
