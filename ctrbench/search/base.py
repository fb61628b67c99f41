"""The searcher interface: a searcher proposes candidate configs; the harness runs each as its own run.

Searchers bring no training loop: `ask` returns the next batch of candidates (empty when done), the
harness evaluates them through the same `execute_run` and store as any run (each linked to its search
by search id and candidate index), and `best` picks the winner on the validation metric (never test).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, PositiveInt

MINIMISED = ("logloss", "ne")


@dataclass(frozen=True)
class Candidate:
    """One proposal: model params and train-config overrides, numbered within its search."""

    index: int
    params: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)


@dataclass
class Evaluation:
    """A candidate's outcome: run status, the monitored validation value, and the run record (opaque here)."""

    candidate: Candidate
    status: str
    value: float | None
    record: Any = None


@dataclass
class SearchResult:
    history: list[Evaluation]
    best: Evaluation | None


class SearcherParams(BaseModel):
    """Options every searcher takes; subclasses add their own."""

    model_config = ConfigDict(extra="forbid")
    budget: PositiveInt = 4  # candidates to evaluate
    seed: int = 0  # the searcher's own randomness (the runs' seed comes from the suite)
    metric: Literal["auc", "gauc", "logloss", "ne"] = "auc"  # validation metric the best is chosen on


class Searcher(ABC):
    """Base class. Subclasses set `name`, `Params` and implement `model` and `ask`."""

    name: ClassVar[str]
    Params: ClassVar[type[SearcherParams]] = SearcherParams

    def __init__(self, params: SearcherParams):
        self.params = params

    @property
    @abstractmethod
    def model(self) -> str:
        """The registered model every candidate builds."""

    @abstractmethod
    def ask(self, history: list[Evaluation]) -> list[Candidate]:
        """The next candidates to evaluate given everything evaluated so far; [] when the search is done."""

    def best(self, history: list[Evaluation]) -> Evaluation | None:
        """The finished candidate with the best validation metric (None when none finished)."""
        done = [e for e in history if e.status == "ok" and e.value is not None]
        if not done:
            return None
        sign = -1.0 if self.params.metric in MINIMISED else 1.0
        return max(done, key=lambda e: (sign * e.value, -e.candidate.index))


def run_search(searcher: Searcher, evaluate: Callable[[list[Candidate]], list[Evaluation]]) -> SearchResult:
    """Drive a searcher: ask, evaluate the batch (the harness runs and stores each candidate), repeat."""
    history: list[Evaluation] = []
    while True:
        batch = searcher.ask(history)
        if not batch:
            break
        history.extend(evaluate(batch))
    return SearchResult(history, searcher.best(history))
