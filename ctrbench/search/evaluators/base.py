"""The evaluator interface and the dispatch of a mixed batch to the evaluator of each candidate's kind."""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable, ClassVar

from ctrbench.errors import CtrbenchError
from ctrbench.search.base import Candidate, Evaluation

Evaluate = Callable[[list[Candidate]], list[Evaluation]]


class NoEvaluatorError(CtrbenchError, KeyError):
    """A candidate names an evaluation kind no evaluator was given for."""

    def __str__(self) -> str:
        return self.args[0]


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
        by_kind: dict[str, list[Candidate]] = {}
        for c in batch:
            if c.evaluation not in evaluators:
                raise NoEvaluatorError(f"candidate {c.index} is evaluated by {c.evaluation!r}, but this search has "
                                       f"evaluators for: {', '.join(sorted(evaluators)) or 'none'}")
            by_kind.setdefault(c.evaluation, []).append(c)
        done = {e.candidate.index: e for kind, cs in by_kind.items() for e in evaluators[kind](cs)}
        return [done[c.index] for c in batch]

    return evaluate
