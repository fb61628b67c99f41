"""Optuna's TPE (Tree-structured Parzen Estimator) as a searcher over any Space: the Bayesian-optimisation peer of
issue 17. Optuna does the modelling and sampling through its ask/tell interface; this module only translates.

- Parameters: one per knob of the space (`decisions()` where the space has them, else `choices()`), its value an
  index into the knob's values: an integer (so TPE's kernel uses the order) where the values are increasing
  numbers, a categorical otherwise. A proposal's point is built from the suggested knobs (knob_points.KnobMap:
  exact for spaces with decisions, else the nearest point of the space not proposed yet).
- Each `ask` rebuilds the study from the history, as Optuna rebuilds a study from its storage: every evaluated
  candidate is a trial with the parameters kept for it (the suggestion, or the knobs of the point actually built)
  and the objective's utility as its value (maximised); failures are FAIL trials. The sampler's seed comes from
  the searcher's seed and how many candidates were proposed, so a resumed search makes the same proposals.
- A suggestion that lands on a point already proposed is told the value that point got (Optuna's usual
  duplicate handling) and TPE is asked again, up to `max_draws` times per candidate.
- Options are Optuna's (`n_startup_trials`, `n_ei_candidates`, `multivariate`, `group`, `constant_liar`) with
  Optuna's defaults; `batch_size` > 1 asks several trials before any is told (the pending ones are RUNNING, so
  the constant liar spreads them)."""
from __future__ import annotations

import logging
import warnings

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution
from optuna.trial import TrialState
from pydantic import Field

from ctrbench.search.base import Candidate, Evaluation
from ctrbench.search.knob_points import KnobMap
from ctrbench.search.registry import register_searcher
from ctrbench.search.searchers.common import SpaceSearcher, SpaceSearcherParams

optuna.logging.set_verbosity(logging.WARNING)


class TPEParams(SpaceSearcherParams):
    batch_size: int = Field(1, ge=1, description="candidates per ask (1: classic sequential TPE)")
    n_startup_trials: int = Field(10, ge=0, description="Optuna: random trials before TPE's model is used")
    n_ei_candidates: int = Field(24, ge=1, description="Optuna: samples scored by the EI ratio per suggestion")
    multivariate: bool | None = Field(None, description="Optuna: joint Parzen estimator (None: Optuna's default)")
    group: bool = Field(False, description="Optuna: decompose conditional parameters into groups")
    constant_liar: bool = Field(True, description="Optuna: pending trials count as bad (batches spread out)")
    max_draws: int = Field(100, ge=1, description="suggestions per candidate before giving up on an unseen point")
    pool: int = Field(256, ge=1, description="space samples the nearest point is found among (spaces without "
                                             "decisions)")
    climb: int = Field(10, ge=0, description="neighbour moves towards the suggested knobs (spaces without decisions)")


def knob_distribution(values: tuple) -> BaseDistribution:
    """An index over `values`: an integer when they are increasing numbers (ordered), else a categorical."""
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    if numeric and len(values) > 1 and all(a < b for a, b in zip(values, values[1:])):
        return IntDistribution(0, len(values) - 1)
    return CategoricalDistribution(tuple(range(len(values))))


@register_searcher("tpe")
class TPESearcher(SpaceSearcher):
    """See the module docstring. State: the proposed hashes and the parameters each candidate is told with."""

    Params = TPEParams

    def __init__(self, params: TPEParams):
        super().__init__(params)
        self.knobs = KnobMap(self.space, pool=params.pool, climb=params.climb, seed=params.seed)
        self.distributions = {k: knob_distribution(v) for k, v in self.knobs.choices.items()}
        self.seen: list[str] = []
        self.told: dict[int, dict[str, int]] = {}  # candidate index -> its trial's parameters

    def sampler(self) -> optuna.samplers.TPESampler:
        p = self.params
        seed = int(np.random.SeedSequence([p.seed, len(self.seen)]).generate_state(1)[0])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(n_startup_trials=p.n_startup_trials, n_ei_candidates=p.n_ei_candidates,
                                              multivariate=p.multivariate, group=p.group, seed=seed,
                                              constant_liar=p.constant_liar)

    def trial(self, e: Evaluation) -> optuna.trial.FrozenTrial | None:
        """The evaluation as a finished Optuna trial (None for a candidate this searcher did not propose)."""
        params = self.told.get(e.candidate.index)
        if params is None:
            return None
        dists = {k: self.distributions[k] for k in params}
        u = self.utility(e)
        if u is None:
            return optuna.trial.create_trial(state=TrialState.FAIL, params=params, distributions=dists)
        return optuna.trial.create_trial(value=u, params=params, distributions=dists)

    def study(self, history: list[Evaluation]) -> optuna.Study:
        """A fresh in-memory study holding the history's trials, in order."""
        study = optuna.create_study(sampler=self.sampler(), direction="maximize")
        study.add_trials([t for e in history if (t := self.trial(e)) is not None])
        return study

    def ask(self, history: list[Evaluation]) -> list[Candidate]:
        p = self.params
        n = min(p.batch_size, p.budget - len(self.seen))
        if n <= 0:
            return []
        study = self.study(history)
        value_of = {self.space.hash(e.candidate.point): u for e in history
                    if e.candidate.point is not None and (u := self.utility(e)) is not None}
        out: list[Candidate] = []
        seen = set(self.seen)
        for _ in range(n):
            for _ in range(p.max_draws):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    trial = study.ask(self.distributions)
                point = self.knobs.point(trial.params, seen)
                h = self.space.hash(point)
                if h not in seen:
                    break
                study.tell(trial, value_of.get(h), state=TrialState.COMPLETE if h in value_of else TrialState.FAIL)
            else:
                return out  # the space (as TPE samples it) seems exhausted
            seen.add(h)
            self.seen.append(h)
            index = len(self.seen) - 1
            self.told[index] = dict(trial.params) if self.knobs.exact else self.knobs.indices(point)
            out.append(self.candidate(index, point))
        return out

    def state_dict(self) -> dict:
        return {"seen": self.seen, "told": {str(i): t for i, t in self.told.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.seen = list(state["seen"])
        self.told = {int(i): {k: int(v) for k, v in t.items()} for i, t in state["told"].items()}
