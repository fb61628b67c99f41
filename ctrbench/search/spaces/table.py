"""A space restricted to the points of a benchmark table, so searchers compared on the `lookup` evaluator only
ever propose points the table can answer. CTR-NAS-Bench samples a few hundred points of a space of ~10^30, so a
plain mutation almost never lands in it; as NAS benchmarks over sampled architectures do, moves are snapped to
the table (our choice, documented here):

- `sample`: a table point, uniformly;
- `mutate`: the base space's mutation, then the nearest *other* table point to it by L1 distance between the
  base space's encodings (ties broken by the RNG);
- `neighbours`: the `k` nearest other table points by that distance;
- `decode`: the nearest table point to the base space's decoding (so a predictor's or TPE's vector maps in);
- hashing, JSON, FLOPs, candidates and encodings are the base space's, so table hashes are the lookup's keys.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import pandas as pd

from ctrbench.errors import DataError
from ctrbench.search.registry import get_space, register_space
from ctrbench.search.spaces.space import Space, SpacePointError, canonical_json


class TableSpace(Space):
    """The points of a table over `base` (a list of points, e.g. a CTR-NAS-Bench lookup table's `point` column)."""

    def __init__(self, base: Space, points: list[dict], k: int = 10):
        if len(points) < 2:
            raise ValueError(f"a table space needs at least 2 points, got {len(points)}")
        self.base, self.k = base, k
        self.name, self.model = f"{base.name}@table", base.model
        self.points = [base.validate(p) for p in points]
        self.hashes = [base.hash(p) for p in self.points]
        self.row = {h: i for i, h in enumerate(self.hashes)}
        self.codes = np.stack([base.encode(p) for p in self.points]).astype(np.float64)
        values: dict[str, dict] = {}
        for p in self.points:
            for name, v in base.knobs(p).items():
                values.setdefault(name, {})[canonical_json(v)] = v
        self._choices = {name: tuple(vs[key] for key in sorted(vs)) for name, vs in values.items()}

    def _distances(self, vector) -> np.ndarray:
        return np.abs(self.codes - np.asarray(vector, dtype=np.float64)).sum(axis=1)

    def _nearest(self, vector, exclude: int | None, rng: np.random.Generator | None = None) -> dict:
        d = self._distances(vector)
        if exclude is not None:
            d[exclude] = np.inf
        ties = np.flatnonzero(d == d.min())
        pick = ties[int(rng.integers(len(ties)))] if rng is not None and len(ties) > 1 else ties[0]
        return self.points[int(pick)]

    def index(self, point: dict) -> int:
        h = self.base.hash(point)
        if h not in self.row:
            raise SpacePointError(self.name, "top", f"point {h} is not in the table ({len(self.points)} points)")
        return self.row[h]

    def validate(self, point) -> dict:
        return self.points[self.index(self.base.validate(point))]

    def sample(self, rng: np.random.Generator) -> dict:
        return self.points[int(rng.integers(len(self.points)))]

    def mutate(self, point: dict, rng: np.random.Generator) -> dict:
        moved = self.base.mutate(point, rng)
        return self._nearest(self.base.encode(moved), self.index(point), rng)

    def neighbours(self, point: dict) -> list[dict]:
        i = self.index(point)
        d = self._distances(self.codes[i])
        d[i] = np.inf
        order = np.argsort(d, kind="stable")[:min(self.k, len(self.points) - 1)]
        return [self.points[int(j)] for j in order]

    def encode(self, point: dict) -> np.ndarray:
        return self.base.encode(point)

    def decode(self, vector) -> dict:
        return self._nearest(self.base.encode(self.base.decode(vector)), None)

    @property
    def encoding_size(self) -> int:
        return self.base.encoding_size

    def flops(self, point: dict, spec) -> int:
        return self.base.flops(point, spec)

    def candidate(self, point: dict) -> tuple[dict, dict]:
        return self.base.candidate(point)

    def knobs(self, point: dict) -> dict:
        return self.base.knobs(point)

    def choices(self) -> dict[str, tuple]:
        """The knob values the table's points hold: what sampling the table can reach."""
        return self._choices

    def hash(self, point: dict) -> str:
        return self.base.hash(point)


@functools.lru_cache(maxsize=8)
def _table_points(path: str, mtime: float) -> tuple[str, ...]:
    try:
        frame = pd.read_csv(path, usecols=["point"])
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise DataError(f"cannot read the table's `point` column: {exc}", file=path) from None
    return tuple(frame["point"])


@register_space("bench_table")
def bench_table(space: str, table: str, space_options: dict | None = None, k: int = 10) -> TableSpace:
    """The points of benchmark table `table` (a CSV with a `point` column of JSON points, e.g.
    results/nasbench/nasrec_small_criteo_x1.csv; relative to the working directory) over space `space`."""
    base = get_space(space, **(space_options or {}))
    path = os.path.abspath(table)
    if not Path(path).is_file():
        raise DataError("no benchmark table here", file=path)
    points = []
    for line, text in enumerate(_table_points(path, os.path.getmtime(path)), start=2):
        try:
            points.append(base.from_json(text))
        except SpacePointError as exc:
            raise DataError(f"the point is not in space {space!r}: {exc}", file=path, line=line) from None
    return TableSpace(base, points, k)
