"""Low-fidelity evaluation and the curve-trend label of Meta's ranking AutoML (specs/search.md §4.2, Eq. 2 as
our reading of a secondary source [note-CN]): a candidate trains on a stated fraction of the training rows, its
validation NE is read at evenly spaced checkpoints, and the label is the NE extrapolated along the line
NE(l) = m·l + c fitted on the late checkpoints to the full run's length: NE_long = NE_short + m·(L_full − l_last).
`kendall_tau` measures how well one ranking (e.g. low fidelity) agrees with another (full fidelity)."""
from __future__ import annotations

import math

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, model_validator
from scipy.stats import kendalltau

from ctrbench.errors import CtrbenchError


class CurveError(CtrbenchError, ValueError):
    """A learning curve the trend label cannot use (too few points, non-finite values, unordered lengths)."""


class FidelityError(CtrbenchError, ValueError):
    """A low-fidelity run that does not match its stated fidelity."""


class Fidelity(BaseModel):
    """How candidates are trained for real: on `fraction` of the `train_rows` training rows (one pass, validated
    at `checkpoints` evenly spaced points, never stopped early), labelled with the trend over the last
    `late_points` checkpoints when `trend` is set. `train_rows` is the dataset's training-split size, stated."""

    model_config = ConfigDict(extra="forbid")
    fraction: float = Field(0.5, gt=0, le=1, description="share of the training rows a candidate trains on")
    train_rows: PositiveInt | None = Field(None, description="rows of the training split (needed when fraction < 1)")
    checkpoints: int = Field(4, ge=2, description="validation points along the low-fidelity run")
    late_points: int = Field(2, ge=2, description="last checkpoints the trend line is fitted on")
    trend: bool = True

    @model_validator(mode="after")
    def _consistent(self):
        if self.fraction < 1 and self.train_rows is None:
            raise ValueError(f"fraction {self.fraction} needs train_rows (the training split's size)")
        if self.late_points > self.checkpoints:
            raise ValueError(f"late_points {self.late_points} exceeds checkpoints {self.checkpoints}")
        return self

    def train_overrides(self) -> dict:
        """The TrainConfig settings of a low-fidelity run."""
        out = {"max_epochs": 1, "evals_per_epoch": self.checkpoints, "patience": self.checkpoints + 1}
        if self.fraction < 1:
            out["max_train_rows"] = max(1, math.floor(self.fraction * self.train_rows))
        return out

    def check_rows(self, trained_rows: int | None, where: str) -> None:
        """Refuse a run that trained on fewer rows than this fidelity asks for: `train_rows` overstates the split,
        so the fraction and the trend's horizon would be wrong."""
        want = self.train_overrides().get("max_train_rows")
        if want is not None and trained_rows is not None and trained_rows < want:
            raise FidelityError(f"{where} trained on {trained_rows} rows, fewer than the {want} its fidelity asks for "
                                f"({self.fraction} of train_rows {self.train_rows}): train_rows exceeds the dataset's "
                                "training split; state the split's size")

    def label(self, curve: list[tuple[float, float]]) -> float:
        """The accuracy label of a run's (examples seen, validation NE) curve: the trend label, or the last NE."""
        if not self.trend or self.train_rows is None:
            return float(curve[-1][1])
        return trend_label(curve, horizon=self.train_rows, late_points=self.late_points)


def trend_label(curve, horizon: float, late_points: int = 2) -> float:
    """NE at `horizon` (in the curve's length unit) along the least-squares line through the last `late_points`
    points of `curve` [(length, NE), ...]; the last NE itself when the curve already reaches the horizon."""
    pts = np.asarray(curve, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) < late_points or late_points < 2:
        raise CurveError(f"the trend needs at least {max(2, late_points)} (length, NE) points, got {len(pts)}")
    if not np.isfinite(pts).all():
        raise CurveError(f"non-finite point in the curve {pts.tolist()}")
    late = pts[-late_points:]
    if np.any(np.diff(late[:, 0]) <= 0):
        raise CurveError(f"curve lengths must increase, got {late[:, 0].tolist()}")
    slope, _ = np.polyfit(late[:, 0], late[:, 1], 1)
    return float(late[-1, 1] + slope * max(0.0, horizon - late[-1, 0]))


def history_curve(history: list[dict], batch_size: int, metric: str = "ne") -> list[tuple[float, float]]:
    """A trainer history's validation curve: (examples seen = steps x batch size, valid[metric]) per checkpoint."""
    return [(float(h["steps"] * batch_size), float(h["valid"][metric])) for h in history
            if metric in (h.get("valid") or {})]


def record_curve(record, metric: str = "ne") -> list[tuple[float, float]]:
    """A run record's validation curve (history_curve of its history and batch size)."""
    batch = record.batch_size or (record.config.get("train", {}) or {}).get("batch_size") or 1
    return history_curve(record.history, batch, metric)


def kendall_tau(a, b) -> float:
    """Kendall's τ-b between two scorings of the same items (scipy)."""
    return float(kendalltau(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)).statistic)
