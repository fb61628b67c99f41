"""`lookup`: answer from a benchmark table (space hash -> metrics), so searchers can be compared over many search
seeds at no training cost. A point missing from the table is a failed evaluation that says so."""
from __future__ import annotations

from collections.abc import Mapping

from ctrbench.search.base import Candidate, Evaluation
from ctrbench.search.evaluators.base import Evaluator
from ctrbench.search.registry import register_evaluator


@register_evaluator("lookup")
class LookupEvaluator(Evaluator):
    """`table[space.hash(point)]` is a metrics dict holding `metric` (the validation value) and any costs."""

    def __init__(self, space, table: Mapping[str, Mapping], metric: str):
        self.space, self.table, self.metric = space, table, metric

    def __call__(self, batch: list[Candidate]) -> list[Evaluation]:
        out = []
        for c in batch:
            row = self.table.get(self.space.hash(c.point)) if c.point is not None else None
            if row is None or row.get(self.metric) is None:
                out.append(Evaluation(c, "failed", None, metrics={"error": f"not in the table ({self.metric})"}))
            else:
                out.append(Evaluation(c, "ok", float(row[self.metric]), metrics=dict(row)))
        return out
