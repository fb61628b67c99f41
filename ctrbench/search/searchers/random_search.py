"""Random search over any space: `budget` distinct points (by the space's hash), proposed in one batch, or in
batches of `batch_size`."""
from __future__ import annotations

from pydantic import Field

from ctrbench.search.base import Candidate, Evaluation
from ctrbench.search.registry import register_searcher
from ctrbench.search.searchers.common import SpaceSearcher, SpaceSearcherParams, rng_from_state, rng_state


class RandomSearchParams(SpaceSearcherParams):
    max_draws: int = Field(1000, ge=1)  # give up finding distinct candidates after this many draws (small spaces)
    batch_size: int | None = Field(None, ge=1)  # candidates per ask; None = the whole budget at once


@register_searcher("random")
class RandomSearch(SpaceSearcher):
    """Samples the space with its own seeded RNG; duplicates are redrawn so every candidate is distinct."""

    Params = RandomSearchParams

    def __init__(self, params: RandomSearchParams):
        super().__init__(params)
        self.seen: list[str] = []
        self.draws = 0

    def _draw(self, n: int) -> list[Candidate]:
        out, seen = [], set(self.seen)
        while len(out) < n and self.draws < self.params.max_draws:
            self.draws += 1
            point = self.space.validate(self.space.sample(self.rng))
            h = self.space.hash(point)
            if h not in seen:
                seen.add(h)
                self.seen.append(h)
                out.append(self.candidate(len(self.seen) - 1, point))
        return out

    def ask(self, history: list[Evaluation]) -> list[Candidate]:
        if self.params.batch_size is None:  # one batch, then done
            return [] if history or self.seen else self._draw(self.params.budget)
        return self._draw(min(self.params.batch_size, self.params.budget - len(self.seen)))

    def candidates(self) -> list[Candidate]:
        """The whole budget, as a fresh searcher proposes it."""
        return type(self)(self.params).ask([])

    def state_dict(self) -> dict:
        return {"rng": rng_state(self.rng), "seen": self.seen, "draws": self.draws}

    def load_state_dict(self, state: dict) -> None:
        self.rng, self.seen, self.draws = rng_from_state(state["rng"]), list(state["seen"]), int(state["draws"])
