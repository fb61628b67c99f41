"""Reusable search stages. `retrain_top_k`: NASRec's final step (specs/search.md §2.4) -- the k best distinct
candidates of a search (by its objective, whatever kind evaluated them) are trained again from scratch, and the
best of those on validation is the search's answer."""
from __future__ import annotations

import json
from dataclasses import dataclass, replace

from ctrbench.search.base import Evaluation
from ctrbench.search.evaluators.base import Evaluate
from ctrbench.search.objective import Objective


@dataclass
class StageResult:
    picked: list[Evaluation]  # the top-k evaluations of the search, best first
    retrained: list[Evaluation]  # their retraining, in the same order
    best: Evaluation | None  # the best retrained candidate on validation (None when none finished)


def _key(e: Evaluation) -> str:
    c = e.candidate
    return json.dumps(c.point if c.point is not None else [c.params, c.train], sort_keys=True)


def top_k(history: list[Evaluation], k: int, objective: Objective) -> list[Evaluation]:
    """The k best finished evaluations with distinct candidates, best first (ties: the earlier)."""
    scored = sorted(((objective.utility(e.value, e.metrics), e) for e in history if e.status == "ok" and
                     e.value is not None), key=lambda ue: (-ue[0], ue[1].candidate.index))
    out, seen = [], set()
    for _, e in scored:
        if _key(e) not in seen:
            seen.add(_key(e))
            out.append(e)
        if len(out) == k:
            break
    return out


def retrain_top_k(history: list[Evaluation], k: int, objective: Objective, evaluate: Evaluate, *,
                  kind: str = "train", first_index: int | None = None) -> StageResult:
    """Retrain the top-k of `history` as new `kind` candidates (indices after the search's) and pick the best."""
    if k < 1:
        raise ValueError(f"retrain_top_k: k must be >= 1, got {k}")
    picked = top_k(history, k, objective)
    start = first_index if first_index is not None else 1 + max((e.candidate.index for e in history), default=-1)
    batch = [replace(e.candidate, index=start + i, evaluation=kind) for i, e in enumerate(picked)]
    retrained = evaluate(batch) if batch else []
    ok = [(objective.utility(e.value, e.metrics), e) for e in retrained if e.status == "ok" and e.value is not None]
    best = max(ok, key=lambda ue: (ue[0], -ue[1].candidate.index))[1] if ok else None
    return StageResult(picked, retrained, best)
