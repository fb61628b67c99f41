"""Aggregation of several searches' architecture parameters into one architecture (DistDNAS: one search per
data day, then "combining architecture weights learned on each day"; the rule is NOT FOUND in the paper, so it is
a selectable knob, ctrbench's choice). Pure functions on numpy arrays.

Input: one dict per search, slot -> logits [num_blocks, n_ops] (InteractionSupernet.arch_logits()). Output: slot
-> scores [num_blocks, n_ops] whose per-block argmax is the aggregated choice.
  mean_probabilities   the mean over searches of softmax(logits)
  mean_logits          the mean over searches of the logits
  majority_vote        votes per op (each search votes its argmax); ties broken by the mean probability, then
                       by the first op: the scores are votes + mean probability / 2 (< 1, so never outvoting)
"""
from __future__ import annotations

from typing import Literal

import numpy as np
from scipy.special import softmax

Rule = Literal["mean_probabilities", "mean_logits", "majority_vote"]
Logits = dict[str, np.ndarray]


def _stack(searches: list[Logits]) -> dict[str, np.ndarray]:
    """slot -> [n_searches, num_blocks, n_ops]; every search must have the same slots and shapes."""
    if not searches:
        raise ValueError("aggregate: no searches to aggregate")
    slots = set(searches[0])
    out = {}
    for s in slots:
        arrays = []
        for i, search in enumerate(searches):
            if set(search) != slots:
                raise ValueError(f"aggregate: search {i} has slots {sorted(search)}; search 0 has {sorted(slots)}")
            a = np.asarray(search[s], dtype=np.float64)
            if a.ndim != 2 or a.shape != np.shape(searches[0][s]):
                raise ValueError(f"aggregate: search {i} slot {s!r} has shape {a.shape}; search 0 has "
                                 f"{np.shape(searches[0][s])} ([num_blocks, n_ops])")
            if not np.isfinite(a).all():
                raise ValueError(f"aggregate: search {i} slot {s!r} holds non-finite logits")
            arrays.append(a)
        out[s] = np.stack(arrays)
    return out


def mean_probabilities(searches: list[Logits]) -> Logits:
    return {s: softmax(a, axis=-1).mean(0) for s, a in _stack(searches).items()}


def mean_logits(searches: list[Logits]) -> Logits:
    return {s: a.mean(0) for s, a in _stack(searches).items()}


def majority_vote(searches: list[Logits]) -> Logits:
    out = {}
    for s, a in _stack(searches).items():
        votes = np.zeros(a.shape[1:])
        for per_search in a.argmax(-1):  # [num_blocks]
            votes[np.arange(len(per_search)), per_search] += 1
        out[s] = votes + softmax(a, axis=-1).mean(0) / 2
    return out


RULES = {"mean_probabilities": mean_probabilities, "mean_logits": mean_logits, "majority_vote": majority_vote}


def aggregate(searches: list[Logits], rule: Rule) -> Logits:
    """The aggregated scores of `searches` under `rule`."""
    try:
        fn = RULES[rule]
    except KeyError:
        raise ValueError(f"unknown aggregation rule {rule!r}; valid: {', '.join(RULES)}") from None
    return fn(searches)


def argmax_choice(scores: Logits) -> dict[str, list[int]]:
    """slot -> the chosen op index per block (the first on a tie), for InteractionSpace.point_of."""
    return {s: [int(i) for i in np.asarray(a).argmax(-1)] for s, a in scores.items()}
