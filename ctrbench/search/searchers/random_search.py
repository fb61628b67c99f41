"""Random search: `budget` distinct draws from a search space, all proposed in one batch."""
from __future__ import annotations

import json

import numpy as np

from ctrbench.search.base import Candidate, Evaluation, Searcher, SearcherParams
from ctrbench.search.registry import get_space, register_searcher


class RandomSearchParams(SearcherParams):
    space: str = "dcnv2"  # a registered search space (ctrbench.search.spaces)
    max_draws: int = 1000  # give up finding distinct candidates after this many draws (small spaces)


@register_searcher("random")
class RandomSearch(Searcher):
    """Samples the space with its own seeded RNG; duplicates are redrawn so every candidate is distinct."""

    Params = RandomSearchParams

    def __init__(self, params: RandomSearchParams):
        super().__init__(params)
        self.space = get_space(params.space)

    @property
    def model(self) -> str:
        return self.space.model

    def candidates(self) -> list[Candidate]:
        rng = np.random.default_rng(self.params.seed)
        seen, out = set(), []
        for _ in range(self.params.max_draws):
            if len(out) == self.params.budget:
                break
            params, train = self.space.sample(rng)
            key = json.dumps([params, train], sort_keys=True)
            if key not in seen:
                seen.add(key)
                out.append(Candidate(len(out), params, train))
        return out

    def ask(self, history: list[Evaluation]) -> list[Candidate]:
        return [] if history else self.candidates()
