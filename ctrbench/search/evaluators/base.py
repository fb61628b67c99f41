"""The evaluator interface and the dispatch of a mixed batch to the evaluator of each candidate's kind."""
from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Callable, ClassVar

from ctrbench.errors import CtrbenchError
from ctrbench.search.base import Candidate, Evaluation, Searcher, check_kinds

Evaluate = Callable[[list[Candidate]], list[Evaluation]]


class EvaluatorSetupError(CtrbenchError, ValueError):
    """A search cannot get its evaluator: `option` names the searcher option to set or fix (for the YAML path)."""

    def __init__(self, message: str, option: str = "evaluation"):
        super().__init__(message)
        self.option = option


class Evaluator(ABC):
    """Scores candidates of one kind (`kind` is set by @register_evaluator)."""

    kind: ClassVar[str]
    identity: dict = {}  # what of its inputs a search's identity includes (e.g. a lookup table's digest)

    @classmethod
    def for_search(cls, searcher: Searcher, base_dir: Path) -> "Evaluator":
        """The evaluator a suite's search uses, built from the searcher's options alone (files relative to
        `base_dir`, the suite file's folder). Kinds that need objects a suite cannot name refuse here."""
        raise EvaluatorSetupError(f"evaluation {cls.kind!r} needs objects a suite cannot name yet (e.g. a trained "
                                  "supernet); run such a search from Python with its evaluator")

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
