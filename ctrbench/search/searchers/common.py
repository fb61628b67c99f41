"""What every searcher over a Space shares: the space (by name and options), its candidates, and a seeded RNG
whose state is JSON (so a searcher's state can be saved and restored exactly)."""
from __future__ import annotations

import numpy as np
from pydantic import Field, model_validator

from ctrbench.errors import UnknownNameError
from ctrbench.search.base import Candidate, Searcher, SearcherParams
from ctrbench.search.registry import SPACES, SpaceOptionsError, get_space
from ctrbench.search.spaces.space import SpacePointError


class SpaceSearcherParams(SearcherParams):
    space: str = "dcnv2"  # a registered search space (ctrbench.search.spaces)
    space_options: dict = Field(default_factory=dict)  # the space's options, e.g. {scale: 0.125} for NASRec

    @model_validator(mode="after")
    def _options_fit_space(self):
        if self.space in SPACES or self.space_options:  # an unknown name is reported when the searcher is built
            try:
                get_space(self.space, **self.space_options)
            except UnknownNameError:
                pass
            except (SpaceOptionsError, SpacePointError, TypeError) as exc:
                raise ValueError(str(exc)) from None
        return self


def rng_state(rng: np.random.Generator) -> dict:
    return rng.bit_generator.state


def rng_from_state(state: dict) -> np.random.Generator:
    rng = np.random.default_rng()
    rng.bit_generator.state = state
    return rng


class SpaceSearcher(Searcher):
    """A searcher whose candidates are points of a Space."""

    Params = SpaceSearcherParams

    def __init__(self, params: SpaceSearcherParams):
        super().__init__(params)
        self.space = get_space(params.space, **params.space_options)
        self.rng = np.random.default_rng(params.seed)

    @property
    def model(self) -> str:
        return self.space.model

    def candidate(self, index: int, point: dict) -> Candidate:
        params, train = self.space.candidate(point)
        return Candidate(index, params, train, self.params.evaluation, point)
