"""What a search optimises: a validation metric with its direction, and optional cost terms (FLOPs, latency,
params against a target), folded into one utility where higher is better.

Cost forms, with r = cost / target and weight w >= 0:
  linear  utility -= w * (r - 1)     NASRec's latency penalty (objective = loss + beta (latency/target - 1))
  abs     utility -= w * |r - 1|     TuNAS's absolute reward (the cost is pulled to the target from both sides)
  hinge   utility -= w * max(0, r - 1)   only costs over the target are penalised
"""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat

from ctrbench.errors import CtrbenchError
from ctrbench.metrics import METRIC_DIRECTIONS

Metric = Literal["auc", "gauc", "logloss", "ne"]


class ObjectiveError(CtrbenchError, ValueError):
    """An evaluation lacks a value the objective needs."""


class CostTerm(BaseModel):
    """One cost against a target (a metric of the evaluation, e.g. 'flops' per example or 'latency_ms')."""

    model_config = ConfigDict(extra="forbid")
    name: Literal["flops", "params", "latency_ms"]
    target: PositiveFloat
    weight: float = Field(ge=0)
    form: Literal["linear", "abs", "hinge"] = "linear"

    def penalty(self, cost: float) -> float:
        r = cost / self.target - 1.0
        return self.weight * {"linear": r, "abs": abs(r), "hinge": max(0.0, r)}[self.form]


class Objective(BaseModel):
    """A metric, its direction (from METRIC_DIRECTIONS) and cost terms."""

    model_config = ConfigDict(extra="forbid")
    metric: Metric = "auc"
    costs: list[CostTerm] = Field(default_factory=list)

    @property
    def direction(self) -> int:
        return METRIC_DIRECTIONS[self.metric]

    def utility(self, value: float, metrics: dict | None = None, *, where: str = "") -> float:
        """Signed metric minus cost penalties; `metrics` holds the cost values by name."""
        u = self.direction * value
        for c in self.costs:
            if not metrics or metrics.get(c.name) is None:
                have = ", ".join(sorted(metrics or {})) or "none"
                raise ObjectiveError(f"cost term {c.name!r} needs metric {c.name!r}{where}; the evaluation has: {have}")
            u -= c.penalty(float(metrics[c.name]))
        return u
