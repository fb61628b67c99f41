"""A search space: per knob a distribution, for model params and train-config overrides."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Choice:
    """Uniform over a list of values (any JSON-able values, e.g. MLP layer lists)."""

    values: tuple

    def sample(self, rng: np.random.Generator):
        return self.values[int(rng.integers(len(self.values)))]


@dataclass(frozen=True)
class LogUniform:
    """Log-uniform between low and high, rounded to `digits` significant digits (stable hashes and names)."""

    low: float
    high: float
    digits: int = 3

    def sample(self, rng: np.random.Generator) -> float:
        x = math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        return float(f"{x:.{self.digits}g}")


@dataclass(frozen=True)
class SearchSpace:
    """Named distributions over one model's Params (`params`) and TrainConfig fields (`train`)."""

    name: str
    model: str
    params: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)

    def sample(self, rng: np.random.Generator) -> tuple[dict, dict]:
        """One draw: (model params, train overrides); lists come back as lists (JSON-like)."""
        def draw(dist):
            v = dist.sample(rng)
            return list(v) if isinstance(v, tuple) else v

        return {k: draw(d) for k, d in self.params.items()}, {k: draw(d) for k, d in self.train.items()}
