"""`lookup`: answer from a benchmark table (space hash -> metrics), so searchers can be compared over many search
seeds at no training cost. A point missing from the table is a failed evaluation that says so. A suite's lookup
search names its table (search option `table`: a CSV with a `point_hash` column, the space's hash of each point,
and metric columns; relative to the suite file). The value a searcher sees is the validation metric: the column
`valid_<metric>` where the table has it (CTR-NAS-Bench's tables do, bench_table.py), else `<metric>`; the test
metrics travel in the evaluation's metrics, for reporting only."""
from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from ctrbench.errors import DataError
from ctrbench.search.base import Candidate, Evaluation
from ctrbench.search.evaluators.base import Evaluator, EvaluatorSetupError
from ctrbench.search.registry import register_evaluator


def value_column(columns, metric: str) -> str:
    """The column a lookup answers `metric` from: its validation column when the table has one."""
    return f"valid_{metric}" if f"valid_{metric}" in columns else metric


def read_table(path: str | os.PathLike, metric: str) -> dict[str, dict]:
    """A benchmark CSV as {point_hash: {column: value}} (empty cells left out); errors name the file and line."""
    try:
        frame = pd.read_csv(path, dtype={"point_hash": str})
    except OSError as exc:
        raise DataError(f"cannot read the lookup table: {exc.strerror or exc}", file=str(path)) from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"unreadable lookup table: {exc}", file=str(path)) from None
    for column in ("point_hash", value_column(frame.columns, metric)):
        if column not in frame.columns:
            raise DataError(f"the lookup table has no {column!r} column; it has: {', '.join(frame.columns)}",
                            file=str(path))
    dup = frame["point_hash"].duplicated()
    if dup.any():
        i = int(dup.to_numpy().argmax())
        raise DataError(f"point_hash {frame['point_hash'].iloc[i]} appears twice", file=str(path), line=i + 2)
    return {row.pop("point_hash"): {k: v for k, v in row.items() if pd.notna(v)}
            for row in frame.to_dict(orient="records")}


@register_evaluator("lookup")
class LookupEvaluator(Evaluator):
    """`table[space.hash(point)]` is a metrics dict holding the value column of `metric` and any costs."""

    def __init__(self, space, table: Mapping[str, Mapping], metric: str):
        self.space, self.table, self.metric = space, table, metric
        self.column = value_column({k for row in table.values() for k in row}, metric)

    @classmethod
    def for_search(cls, searcher, base_dir: Path) -> "LookupEvaluator":
        table, space = getattr(searcher.params, "table", None), getattr(searcher, "space", None)
        if space is None:
            raise EvaluatorSetupError(f"evaluation 'lookup' answers by space point; searcher {searcher.name!r} has "
                                      "no space")
        if table is None:
            raise EvaluatorSetupError("evaluation 'lookup' needs `table`: a CSV of the benchmark (point_hash and "
                                      "metric columns), relative to the suite file", option="evaluation")
        path = Path(base_dir) / table
        if not path.is_file():
            raise EvaluatorSetupError(f"no lookup table at {path}", option="table")
        try:
            ev = cls(space, read_table(path, searcher.params.metric), searcher.params.metric)
        except DataError as exc:
            raise EvaluatorSetupError(str(exc), option="table") from None
        ev.identity = {"table_sha256": hashlib.sha256(path.read_bytes()).hexdigest()[:16]}
        return ev

    def __call__(self, batch: list[Candidate]) -> list[Evaluation]:
        out = []
        for c in batch:
            row = self.table.get(self.space.hash(c.point)) if c.point is not None else None
            if row is None or row.get(self.column) is None:
                out.append(Evaluation(c, "failed", None, metrics={"error": f"not in the table ({self.column})"}))
            else:
                out.append(Evaluation(c, "ok", float(row[self.column]), metrics=dict(row)))
        return out
