"""The evaluator interface and the dispatch of a mixed batch to the evaluator of each candidate's kind."""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable, ClassVar

from ctrbench.search.base import Candidate, Evaluation, check_kinds

Evaluate = Callable[[list[Candidate]], list[Evaluation]]


class Evaluator(ABC):
    """Scores candidates of one kind (`kind` is set by @register_evaluator)."""

    kind: ClassVar[str]

    @abstractmethod
    def __call__(self, batch: list[Candidate]) -> list[Evaluation]:
        """One evaluation per candidate, in order."""


def dispatch(evaluators: dict[str, Evaluate]) -> Evaluate:
    """An evaluate function for run_search that sends each candidate to the evaluator of its kind (several
    kinds may share one batch) and returns the evaluations in the batch's order."""

    def evaluate(batch: list[Candidate]) -> list[Evaluation]:
        check_kinds(batch, evaluators)
        by_kind: dict[str, list[Candidate]] = {}
        for c in batch:
            by_kind.setdefault(c.evaluation, []).append(c)
        done = {e.candidate.index: e for kind, cs in by_kind.items() for e in evaluators[kind](cs)}
        return [done[c.index] for c in batch]

    evaluate.kinds = tuple(evaluators)
    return evaluate
