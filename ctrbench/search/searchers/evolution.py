"""Regularized evolution as NASRec runs it (specs/search.md §2.4, nasrec/searcher/searcher.py): a random initial
population; then each generation draws `sample_size` members, takes the best as the parent, proposes `children`
mutants of it and, once they are evaluated, removes the oldest members so the population keeps its size
(age-based removal). A child gets (G - g) // max(20, G // 5) + 1 mutations in generation g of G (more early, one
late), and children already proposed (same space hash) are redrawn; a child with no unseen mutant is an unseen
random point (in a finite space, such as a benchmark table's, the parent's neighbourhood runs out). `budget` counts every evaluation, the initial
population included (NASRec: 128 + 240 x 8)."""
from __future__ import annotations

import math

from pydantic import Field, model_validator

from ctrbench.search.base import Candidate, Evaluation
from ctrbench.search.registry import register_searcher
from ctrbench.search.searchers.common import SpaceSearcher, SpaceSearcherParams, rng_from_state, rng_state


class EvolutionParams(SpaceSearcherParams):
    population: int = Field(128, ge=2, description="initial random architectures and population size")
    sample_size: int = Field(64, ge=1, description="members drawn per tournament; the best is the parent")
    children: int = Field(8, ge=1, description="mutants per generation (and members removed, oldest first)")
    max_redraws: int = Field(100, ge=1, description="tries to find an unseen child before giving up on it")

    @model_validator(mode="after")
    def _sizes(self):
        if self.sample_size > self.population:
            raise ValueError(f"sample_size {self.sample_size} exceeds population {self.population}")
        if self.population > self.budget:
            raise ValueError(f"population {self.population} exceeds budget {self.budget}")
        return self


@register_searcher("evolution")
class RegularizedEvolution(SpaceSearcher):
    """State: the RNG, the population (oldest first: index, point, utility), every proposed hash, the generation
    and how much of the history has been read."""

    Params = EvolutionParams

    def __init__(self, params: EvolutionParams):
        super().__init__(params)
        self.population: list[dict] = []
        self.seen: list[str] = []
        self.generation = 0
        self.consumed = 0

    @property
    def generations(self) -> int:
        p = self.params
        return math.ceil((p.budget - p.population) / p.children)

    def mutations(self, g: int) -> int:
        """NASRec's decaying mutation count."""
        big_g = self.generations
        return (big_g - g) // max(20, big_g // 5) + 1

    def _tell(self, history: list[Evaluation]) -> None:
        for e in history[self.consumed:]:
            u = self.utility(e)
            if u is not None and e.candidate.point is not None:
                self.population.append({"index": e.candidate.index, "point": e.candidate.point, "utility": u})
        self.consumed = len(history)
        self.population.sort(key=lambda m: m["index"])
        del self.population[:max(0, len(self.population) - self.params.population)]  # the oldest leave

    def _new(self, point: dict) -> Candidate | None:
        h = self.space.hash(point)
        if h in self.seen:
            return None
        self.seen.append(h)
        return self.candidate(len(self.seen) - 1, point)

    def ask(self, history: list[Evaluation]) -> list[Candidate]:
        self._tell(history)
        p = self.params
        left = p.budget - len(self.seen)
        if left <= 0:
            return []
        out: list[Candidate] = []
        if len(self.seen) < p.population:  # the initial random population
            for _ in range(p.max_redraws * p.population):
                if len(out) == min(p.population, left):
                    break
                c = self._new(self.space.validate(self.space.sample(self.rng)))
                if c is not None:
                    out.append(c)
            return out
        parent = self._tournament()
        n_mut = self.mutations(self.generation)
        for _ in range(min(p.children, left)):
            c = self._child(parent, n_mut) or self._child(None, 0)
            if c is not None:
                out.append(c)
        self.generation += 1
        return out

    def _child(self, parent: dict | None, n_mut: int) -> Candidate | None:
        """An unseen mutant of `parent` (`n_mut` mutations), or an unseen random point when `parent` is None;
        None after `max_redraws` tries. A parent whose mutants are all seen (a small or finite space, such as a
        benchmark table's) gets a random unseen child instead, so the search only ends when the space is spent."""
        for _ in range(self.params.max_redraws):
            point = parent
            if point is None:
                point = self.space.sample(self.rng)
            else:
                for _ in range(n_mut):
                    point = self.space.mutate(point, self.rng)
            c = self._new(self.space.validate(point))
            if c is not None:
                return c
        return None

    def _tournament(self) -> dict | None:
        if not self.population:
            return None
        k = min(self.params.sample_size, len(self.population))
        picks = self.rng.choice(len(self.population), k, replace=False)
        best = max((self.population[int(i)] for i in picks), key=lambda m: (m["utility"], -m["index"]))
        return best["point"]

    def state_dict(self) -> dict:
        return {"rng": rng_state(self.rng), "population": self.population, "seen": self.seen,
                "generation": self.generation, "consumed": self.consumed}

    def load_state_dict(self, state: dict) -> None:
        self.rng = rng_from_state(state["rng"])
        self.population = [dict(m) for m in state["population"]]
        self.seen = list(state["seen"])
        self.generation, self.consumed = int(state["generation"]), int(state["consumed"])
