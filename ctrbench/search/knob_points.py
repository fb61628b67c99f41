"""Points of any Space from wanted knob values, for searchers that model a space knob by knob (Optuna's TPE, the
automl policy). A space with `decisions()` / `from_decisions()` (e.g. `dhen`) builds the point exactly. Other
spaces have no inverse of `knobs()` in the Space API (a NASRec point's input lists must stay consistent), so the
point is found (a ctrbench choice): of a pool of the space's own samples, the one that has the most knobs as wanted,
then moves along `neighbours` while a move agrees with more of them; a searcher may exclude the points it already
proposed, so a suggestion near an evaluated point lands on the nearest unevaluated one (in a benchmark table of a
few hundred points, snapping alone would return the incumbent again and again). Knob values are indices into
`choices()`."""
from __future__ import annotations

import numpy as np

from ctrbench.search.spaces.space import Space, canonical_json


def _key(value):
    """A knob value as a dict key: numbers and strings as they are (True and 1 kept apart), the rest as JSON."""
    if isinstance(value, (int, float, str)) and not isinstance(value, bool):
        return value
    return canonical_json(value)


class KnobMap:
    """Knob indices of points (`indices`) and points of wanted knob indices (`point`, `nearest`) on one space.
    The pool is drawn once from its own seed, so the same map finds the same points (resumable searches)."""

    def __init__(self, space: Space, pool: int = 256, climb: int = 20, seed: int = 0):
        self.space, self.pool_size, self.climb, self.seed = space, pool, climb, seed
        self.exact = hasattr(space, "decisions") and hasattr(space, "from_decisions")
        self.choices: dict[str, tuple] = space.decisions() if self.exact else space.choices()
        self.names = list(self.choices)
        self._index = {k: {_key(v): i for i, v in enumerate(vs)} for k, vs in self.choices.items()}
        self._pool: list[dict] | None = None
        self._pool_codes: np.ndarray | None = None
        self._pool_hashes: np.ndarray | None = None

    def indices(self, point: dict) -> dict[str, int]:
        """The point's knob values as indices into `choices` (knobs it lacks, e.g. unused layer slots, left out)."""
        out = {}
        for k, v in self.space.knobs(point).items():
            i = self._index.get(k, {}).get(_key(v))
            if i is not None:
                out[k] = i
        return out

    def values(self, wanted: dict[str, int]) -> dict:
        return {k: self.choices[k][i] for k, i in wanted.items()}

    def _codes(self, points: list[dict]) -> np.ndarray:
        """[points, knobs] knob indices, -1 where a point lacks the knob."""
        out = np.full((len(points), len(self.names)), -1, dtype=np.int64)
        col = {k: j for j, k in enumerate(self.names)}
        for r, p in enumerate(points):
            for k, i in self.indices(p).items():
                out[r, col[k]] = i
        return out

    def _ensure_pool(self) -> None:
        if self._pool is not None:
            return
        rng, seen, pool = np.random.default_rng(self.seed), set(), []
        for _ in range(self.pool_size):
            p = self.space.validate(self.space.sample(rng))
            if (h := self.space.hash(p)) not in seen:
                seen.add(h)
                pool.append(p)
        self._pool, self._pool_codes = pool, self._codes(pool)
        self._pool_hashes = np.array([self.space.hash(p) for p in pool])

    def _want_row(self, wanted: dict[str, int]) -> np.ndarray:
        return np.array([wanted.get(k, -2) for k in self.names], dtype=np.int64)

    def nearest(self, wanted: list[dict[str, int]], exclude=frozenset()) -> list[dict]:
        """For each wanted set, the point that matches it: exact where the space allows, else the pool point
        agreeing on the most knobs (ties to the earlier pool point), skipping points whose hash is in `exclude`
        while the pool has others."""
        if self.exact:
            return [self.space.from_decisions(self.values(w)) for w in wanted]
        self._ensure_pool()
        rows = np.stack([self._want_row(w) for w in wanted])
        agree = (self._pool_codes[None, :, :] == rows[:, None, :]).sum(axis=2)
        if exclude:
            taken = np.isin(self._pool_hashes, list(exclude))
            if not taken.all():
                agree[:, taken] = -1
        return [self._pool[int(i)] for i in agree.argmax(axis=1)]

    def point(self, wanted: dict[str, int], exclude=frozenset()) -> dict:
        """`nearest` (skipping the hashes in `exclude`), then up to `climb` moves to the neighbour (not in
        `exclude`) agreeing on the most wanted knobs while that is more than the current point's."""
        best = self.nearest([wanted], exclude)[0]
        if self.exact:
            return best
        row = self._want_row(wanted)
        score = int((self._codes([best])[0] == row).sum())
        for _ in range(self.climb):
            near = [n for n in self.space.neighbours(best) if not exclude or self.space.hash(n) not in exclude]
            if not near:
                break
            scores = (self._codes(near) == row[None, :]).sum(axis=1)
            j = int(scores.argmax())
            if scores[j] <= score:
                break
            best, score = near[j], int(scores[j])
        return self.space.validate(best)
