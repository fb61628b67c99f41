"""The Space API: a search space as data. A point is a JSON-able dict; a space samples, mutates and lists the
neighbours of points, encodes a point to a fixed-length vector (for predictors) and back, hashes it stably,
round-trips it through JSON, gives its analytic FLOPs per example, and turns it into a candidate's model params
and train overrides. `SearchSpace` is the knob space (one distribution per hyper-parameter, e.g. DCNv2's)."""
from __future__ import annotations

import hashlib
import json
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from pydantic import ValidationError

from ctrbench.errors import CtrbenchError


class SpacePointError(CtrbenchError, ValueError):
    """A point that is not in its space; the message names the space and where in the point (e.g. blocks[3])."""

    def __init__(self, space: str, where: str, message: str):
        self.space, self.where = space, where
        super().__init__(f"point not in space {space!r} at {where}: {message}")


def parse_point(model: type, point: Any, space: str):
    """`point` validated by the pydantic `model`; its first error as a SpacePointError naming where (blocks[3].x)."""
    try:
        return model.model_validate(point)
    except ValidationError as exc:
        e = exc.errors()[0]
        where = "".join(f"[{x}]" if isinstance(x, int) else f".{x}" for x in e["loc"]).lstrip(".") or "top"
        raise SpacePointError(space, where, e["msg"]) from None


def canonical_json(point: Any) -> str:
    return json.dumps(point, sort_keys=True, separators=(",", ":"))


class Space(ABC):
    """Subclasses set `name` and `model` (the registered model a point builds) and implement the abstract methods."""

    name: str
    model: str

    @abstractmethod
    def validate(self, point: Any) -> dict:
        """The canonical form of `point`; SpacePointError when it is not in this space."""

    @abstractmethod
    def sample(self, rng: np.random.Generator) -> dict:
        """A random point."""

    @abstractmethod
    def mutate(self, point: dict, rng: np.random.Generator) -> dict:
        """A point that differs from `point` in one randomly chosen knob (redrawn: it may come back unchanged)."""

    @abstractmethod
    def neighbours(self, point: dict) -> list[dict]:
        """Every point one local move away (one knob changed to another value)."""

    @abstractmethod
    def encode(self, point: dict) -> np.ndarray:
        """A fixed-length float vector (`encoding_size`) for predictors."""

    @abstractmethod
    def decode(self, vector) -> dict:
        """The point of an encoding (inverse of `encode`)."""

    @property
    @abstractmethod
    def encoding_size(self) -> int:
        ...

    @abstractmethod
    def flops(self, point: dict, spec) -> int:
        """Analytic FLOPs per example of `point` on dataset `spec` (a DatasetSpec)."""

    @abstractmethod
    def candidate(self, point: dict) -> tuple[dict, dict]:
        """(model params, train overrides) of a point."""

    @abstractmethod
    def knobs(self, point: dict) -> dict[str, Any]:
        """The point's discrete choices by name (what `choices` enumerates)."""

    @abstractmethod
    def choices(self) -> dict[str, tuple]:
        """Every discrete knob and all its values (sampling must reach each)."""

    def canonical(self, point: dict) -> dict:
        """The point as the model it builds (what `hash` identifies): points that build the same model share it, so
        searchers' dedup by hash does not spend trials on them. Default: the validated point itself."""
        return self.validate(point)

    def hash(self, point: dict) -> str:
        """A stable 16-hex-digit id: SHA-256 of the canonical JSON of the canonical point."""
        return hashlib.sha256(canonical_json(self.canonical(point)).encode()).hexdigest()[:16]

    def to_json(self, point: dict) -> str:
        return canonical_json(self.validate(point))

    def from_json(self, text: str) -> dict:
        try:
            return self.validate(json.loads(text))
        except json.JSONDecodeError as exc:
            raise SpacePointError(self.name, f"JSON line {exc.lineno} column {exc.colno}", exc.msg) from None


# --- the knob space -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Choice:
    """Uniform over a list of values (any JSON-able values, e.g. MLP layer lists)."""

    values: tuple

    def sample(self, rng: np.random.Generator):
        return _jsonable(self.values[int(rng.integers(len(self.values)))])

    def index(self, value) -> int:
        for i, v in enumerate(self.values):
            if _jsonable(v) == value:
                return i
        raise ValueError(f"{value!r} not in {[_jsonable(v) for v in self.values]}")

    @property
    def size(self) -> int:
        return len(self.values)

    def encode(self, value) -> list[float]:
        out = [0.0] * self.size
        out[self.index(value)] = 1.0
        return out

    def decode(self, vec):
        return _jsonable(self.values[int(np.argmax(vec))])

    def others(self, value) -> list:
        i = self.index(value)
        return [_jsonable(v) for j, v in enumerate(self.values) if j != i]


@dataclass(frozen=True)
class LogUniform:
    """Log-uniform between low and high, rounded to `digits` significant digits (stable hashes and names)."""

    low: float
    high: float
    digits: int = 3

    def sample(self, rng: np.random.Generator) -> float:
        return self.round(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))

    def round(self, x: float) -> float:
        return float(f"{x:.{self.digits}g}")

    def index(self, value) -> None:
        if not isinstance(value, (int, float)) or not self.low <= value <= self.high:
            raise ValueError(f"{value!r} outside [{self.low}, {self.high}]")

    size = 1

    def encode(self, value) -> list[float]:
        return [(math.log(value) - math.log(self.low)) / (math.log(self.high) - math.log(self.low))]

    def decode(self, vec):
        u = min(max(float(vec[0]), 0.0), 1.0)
        return self.round(math.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low))))

    def others(self, value) -> list:
        """The values a tenth of the log-range below and above (within the bounds)."""
        step = 0.1 * math.log(self.high / self.low)
        near = (self.round(math.exp(math.log(value) + s)) for s in (-step, step))
        return [v for v in near if self.low <= v <= self.high and v != value]


def _jsonable(v):
    return [_jsonable(x) for x in v] if isinstance(v, (tuple, list)) else v


@dataclass(frozen=True)
class SearchSpace(Space):
    """Named distributions over one model's Params (`params`) and TrainConfig fields (`train`). A point is
    {"params": {...}, "train": {...}}. `flops_fn(point, spec)` gives the model's analytic FLOPs when known."""

    name: str
    model: str
    params: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)
    flops_fn: Callable[[dict, Any], int] | None = None

    def _knobs(self):
        return [("params", k, d) for k, d in self.params.items()] + [("train", k, d) for k, d in self.train.items()]

    def validate(self, point) -> dict:
        if not isinstance(point, dict) or set(point) != {"params", "train"}:
            raise SpacePointError(self.name, "top level", "a point is {'params': {...}, 'train': {...}}")
        for part, dists in (("params", self.params), ("train", self.train)):
            if not isinstance(point[part], dict) or set(point[part]) != set(dists):
                got = sorted(point[part]) if isinstance(point[part], dict) else point[part]
                raise SpacePointError(self.name, part, f"keys {got}; expected {sorted(dists)}")
            for k, d in dists.items():
                try:
                    d.index(point[part][k])
                except ValueError as exc:
                    raise SpacePointError(self.name, f"{part}.{k}", str(exc)) from None
        return {"params": dict(point["params"]), "train": dict(point["train"])}

    def sample(self, rng) -> dict:
        return {"params": {k: d.sample(rng) for k, d in self.params.items()},
                "train": {k: d.sample(rng) for k, d in self.train.items()}}

    def mutate(self, point, rng) -> dict:
        part, k, d = self._knobs()[int(rng.integers(len(self._knobs())))]
        out = {"params": dict(point["params"]), "train": dict(point["train"])}
        out[part][k] = d.sample(rng)
        return out

    def neighbours(self, point) -> list[dict]:
        out = []
        for part, k, d in self._knobs():
            for v in d.others(point[part][k]):
                n = {"params": dict(point["params"]), "train": dict(point["train"])}
                n[part][k] = v
                out.append(n)
        return out

    @property
    def encoding_size(self) -> int:
        return sum(d.size for _, _, d in self._knobs())

    def encode(self, point) -> np.ndarray:
        return np.array([x for part, k, d in self._knobs() for x in d.encode(point[part][k])], dtype=np.float64)

    def decode(self, vector) -> dict:
        vector = np.asarray(vector, dtype=np.float64)
        if vector.shape != (self.encoding_size,):
            raise SpacePointError(self.name, "encoding", f"shape {vector.shape}; expected ({self.encoding_size},)")
        out: dict = {"params": {}, "train": {}}
        at = 0
        for part, k, d in self._knobs():
            out[part][k] = d.decode(vector[at:at + d.size])
            at += d.size
        return out

    def flops(self, point, spec) -> int:
        if self.flops_fn is None:
            raise NotImplementedError(f"space {self.name!r} has no analytic FLOPs (give it a flops_fn)")
        return self.flops_fn(self.validate(point), spec)

    def candidate(self, point) -> tuple[dict, dict]:
        return dict(point["params"]), dict(point["train"])

    def knobs(self, point) -> dict:
        return {f"{part}.{k}": point[part][k] for part, k, d in self._knobs() if isinstance(d, Choice)}

    def choices(self) -> dict[str, tuple]:
        return {f"{part}.{k}": tuple(_jsonable(v) for v in d.values) for part, k, d in self._knobs()
                if isinstance(d, Choice)}
