"""The searcher contract. A searcher proposes candidates; something evaluates them; the searcher sees the results.

- `ask(history)` returns the next batch of candidates given every evaluation so far ([] when the search is done).
- A candidate names how it is evaluated (`evaluation`): `train` (a full run by the harness), `inherit` (weights
  from a trained supernet, head fine-tuned), `proxy` (a zero-cost score), `predict` (a predictor's estimate),
  `lookup` (a benchmark table) or `measure` (system measurement only). It carries its space point when it has one.
- The objective is a validation metric with its direction plus optional cost terms (objective.py); `best` picks
  on it, never on test metrics.
- A searcher's state (rng, population, ...) is JSON (`state_dict` / `load_state_dict`), so `run_search` with a
  journal (journal.py) resumes a killed search with exactly the proposals it would have made.
"""
from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, PositiveInt

from ctrbench.errors import CtrbenchError
from ctrbench.search.objective import CostTerm, Metric, Objective

EVALUATION_KINDS = ("train", "inherit", "proxy", "predict", "lookup", "measure")
EvaluationKind = Literal["train", "inherit", "proxy", "predict", "lookup", "measure"]


class NoEvaluatorError(CtrbenchError, KeyError):
    """A candidate names an evaluation kind the search has no evaluator for."""

    def __str__(self) -> str:
        return self.args[0]


def check_kinds(batch: list["Candidate"], kinds) -> None:
    """Refuse a batch holding a candidate whose evaluation kind is not among `kinds` (never run it as another)."""
    for c in batch:
        if c.evaluation not in kinds:
            raise NoEvaluatorError(f"candidate {c.index} is evaluated by {c.evaluation!r}, but this search has "
                                   f"evaluators for: {', '.join(sorted(kinds)) or 'none'}")


@dataclass(frozen=True)
class Candidate:
    """One proposal: model params and train-config overrides, numbered within its search, with how it is
    evaluated and (when the searcher works on a space) its point."""

    index: int
    params: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)
    evaluation: str = "train"
    point: dict | None = None

    def __post_init__(self):
        if self.evaluation not in EVALUATION_KINDS:
            raise ValueError(f"candidate {self.index}: unknown evaluation {self.evaluation!r}; valid: "
                             f"{', '.join(EVALUATION_KINDS)}")

    def to_json(self) -> dict:
        return {"index": self.index, "params": self.params, "train": self.train, "evaluation": self.evaluation,
                "point": self.point}

    @classmethod
    def from_json(cls, d: dict) -> "Candidate":
        return cls(**d)


@dataclass
class Evaluation:
    """A candidate's outcome: status, the objective's metric on validation (`value`), other metrics (costs such
    as flops, test metrics), the evaluator's record (a run record for `train`; opaque here) and the seconds the
    evaluation cost (run_search fills in a batch's share of its wall time where the evaluator did not say)."""

    candidate: Candidate
    status: str
    value: float | None
    record: Any = None
    metrics: dict = field(default_factory=dict)
    seconds: float | None = None

    @property
    def kind(self) -> str:
        return self.candidate.evaluation

    def to_json(self) -> dict:
        rec = getattr(self.record, "config_hash", None)
        return {"candidate": self.candidate.to_json(), "kind": self.kind, "status": self.status, "value": self.value,
                "metrics": self.metrics, "record": rec, "seconds": self.seconds}

    @classmethod
    def from_json(cls, d: dict) -> "Evaluation":
        return cls(Candidate.from_json(d["candidate"]), d["status"], d["value"], d.get("record"), d.get("metrics", {}),
                   d.get("seconds"))


@dataclass
class SearchResult:
    history: list[Evaluation]
    best: Evaluation | None


class SearcherParams(BaseModel):
    """Options every searcher takes; subclasses add their own."""

    model_config = ConfigDict(extra="forbid")
    budget: PositiveInt = 4  # candidates to evaluate
    seed: int = 0  # the searcher's own randomness (the runs' seed comes from the suite)
    metric: Metric = "auc"  # validation metric the best is chosen on
    costs: list[CostTerm] = Field(default_factory=list)  # cost terms added to the objective (objective.py)
    evaluation: EvaluationKind = "train"  # how the candidates are evaluated
    table: Optional[str] = None  # evaluation lookup: the benchmark CSV (evaluators/lookup.py), relative to the suite

    @property
    def objective(self) -> Objective:
        return Objective(metric=self.metric, costs=self.costs)


class Searcher(ABC):
    """Base class. Subclasses set `name`, `Params` and implement `model` and `ask`; stateful searchers also
    `state_dict` / `load_state_dict`."""

    name: ClassVar[str]
    Params: ClassVar[type[SearcherParams]] = SearcherParams

    def __init__(self, params: SearcherParams):
        self.params = params
        self.objective = params.objective

    @property
    @abstractmethod
    def model(self) -> str:
        """The registered model every candidate builds."""

    @abstractmethod
    def ask(self, history: list[Evaluation]) -> list[Candidate]:
        """The next candidates to evaluate given everything evaluated so far; [] when the search is done."""

    def state_dict(self) -> dict:
        """Everything `ask` depends on besides the history, as JSON (a stateless searcher has none)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore `state_dict()`'s output."""

    def utility(self, e: Evaluation) -> float | None:
        """The objective of a finished evaluation (higher is better); None when it has no value."""
        if e.status != "ok" or e.value is None:
            return None
        return self.objective.utility(e.value, e.metrics, where=f" (candidate {e.candidate.index})")

    def best(self, history: list[Evaluation]) -> Evaluation | None:
        """The finished candidate with the best objective (None when none finished); ties go to the earlier."""
        scored = [(u, e) for e in history if (u := self.utility(e)) is not None]
        if not scored:
            return None
        return max(scored, key=lambda ue: (ue[0], -ue[1].candidate.index))[1]


def run_search(searcher: Searcher, evaluate: Callable[[list[Candidate]], list[Evaluation]],
               journal=None) -> SearchResult:
    """Drive a searcher: ask, evaluate the batch, repeat. With a journal (journal.FileJournal, or StoreJournal in
    the run store) the searcher's state is saved after every ask and every evaluation is appended, and a journal
    that already holds a search resumes it: the state is restored, the unevaluated part of the last batch is
    evaluated, and asking goes on exactly as if the search had never stopped. `evaluate.kinds` lists the
    evaluation kinds it handles (a plain function handles `train` only; evaluators.base.dispatch several); a
    candidate of another kind is an error."""
    kinds = getattr(evaluate, "kinds", ("train",))
    history: list[Evaluation] = []
    pending: list[Candidate] = []
    if journal is not None:
        history = journal.history()
        saved = journal.load_state()
        if saved is not None:
            state, batch = saved
            searcher.load_state_dict(state)
            done = {e.candidate.index for e in history}
            pending = [c for c in batch if c.index not in done]
    while True:
        if not pending:
            pending = searcher.ask(history)
            if not pending:
                break
            if journal is not None:
                journal.save_state(searcher.state_dict(), pending)
        check_kinds(pending, kinds)
        t0 = time.perf_counter()
        done = evaluate(pending)
        share = (time.perf_counter() - t0) / max(1, len(done))
        for e in done:
            if e.seconds is None:
                e.seconds = share
            history.append(e)
            if journal is not None:
                journal.append(e)
        pending = []
    return SearchResult(history, searcher.best(history))
