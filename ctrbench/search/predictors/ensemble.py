"""The predictor of Meta's ranking AutoML (specs/search.md §4.2, our reading of a secondary source [note-CN],
extending Wen et al.'s Neural Predictor): an ensemble of MLPs, each a shared trunk [input, 50, 50] with one
linear head per target (NE and FLOPs), trained with a pairwise margin ranking loss (margin 0.001) or MSE. The
ensemble's mean is the prediction and its spread (std over members) the uncertainty. Generic over feature
vectors, so any search (a space's encodings, CubicML's system configs) can use it.

ctrbench choices (not from the paper): each member gets its own initialisation seed and a bootstrap resample of
the training rows; targets are standardised per head before training (so the margin is in target stds); Adam,
full-batch, `epochs` steps; the whole state (weights, scalers, RNG) is JSON for resumable searches."""
from __future__ import annotations

import base64
import io
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from ctrbench.errors import CtrbenchError


class PredictorError(CtrbenchError, ValueError):
    """Training data or queries of the wrong shape, or a query before any fit."""


def pairwise_margin_loss(pred: torch.Tensor, target: torch.Tensor, margin: float) -> torch.Tensor:
    """torch's MarginRankingLoss over every pair (i, j) with target_i != target_j: the prediction must order the
    pair as the targets do, by at least `margin` (mean over those pairs; 0 when all targets tie)."""
    i, j = torch.triu_indices(len(pred), len(pred), offset=1)
    sign = torch.sign(target[i] - target[j])
    keep = sign != 0
    if not bool(keep.any()):
        return pred.sum() * 0.0
    return nn.functional.margin_ranking_loss(pred[i][keep], pred[j][keep], sign[keep], margin=margin)


class PredictorConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    members: int = Field(10, ge=1, description="ensemble size (the paper: 10)")
    hidden: list[int] = Field(default_factory=lambda: [50, 50], min_length=1, description="shared trunk widths")
    loss: Literal["pairwise", "mse"] = "pairwise"
    margin: float = Field(0.001, ge=0, description="pairwise margin, in standardised target units")
    epochs: int = Field(300, ge=1, description="full-batch Adam steps per fit")
    lr: float = Field(0.01, gt=0)
    bootstrap: bool = True
    seed: int = 0


class Member(nn.Module):
    """A shared trunk and one linear head per target."""

    def __init__(self, inputs: int, hidden: list[int], heads: int):
        super().__init__()
        layers, width = [], inputs
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        self.trunk = nn.Sequential(*layers)
        self.heads = nn.Linear(width, heads)  # one output per head, each reading the shared trunk

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.heads(self.trunk(x))


class EnsemblePredictor:
    """fit(X, y_ne, y_flops) then query(X) -> (mean, std), each [n, 2] (columns: NE, FLOPs) in target units
    (for the pairwise loss the outputs are scores with the targets' order, not calibrated values)."""

    HEADS = ("ne", "flops")

    def __init__(self, config: PredictorConfig | None = None):
        self.config = config or PredictorConfig()
        self.members: list[Member] = []
        self.scale: tuple[list, list] | None = None  # per-head mean and std of the training targets
        self.fits = 0

    def _targets(self, X, y_ne, y_flops) -> tuple[torch.Tensor, torch.Tensor]:
        X = np.asarray(X, dtype=np.float64)
        y_ne, y_flops = np.asarray(y_ne, dtype=np.float64), np.asarray(y_flops, dtype=np.float64)
        if X.ndim != 2 or y_ne.shape != y_flops.shape or y_ne.shape != (len(X),):
            raise PredictorError(f"X must be [n, features] with one NE and one FLOPs label per row; got X "
                                 f"{X.shape}, NE labels {y_ne.shape}, FLOPs labels {y_flops.shape}")
        Y = np.stack([y_ne, y_flops], axis=1)
        if len(X) < 2 or not (np.isfinite(X).all() and np.isfinite(Y).all()):
            raise PredictorError(f"need at least 2 rows of finite features and labels, got {len(X)}")
        return torch.tensor(X, dtype=torch.float32), torch.tensor(Y, dtype=torch.float32)

    def fit(self, X, y_ne, y_flops) -> "EnsemblePredictor":
        """Train every member from scratch on the rows (X[i], y_ne[i], y_flops[i])."""
        x, y = self._targets(X, y_ne, y_flops)
        mean, std = y.mean(0), y.std(0).clamp_min(1e-12)
        self.scale = (mean.tolist(), std.tolist())
        z = (y - mean) / std
        cfg = self.config
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + self.fits)
        self.members = []
        with torch.random.fork_rng(devices=[]):  # seeded inits without moving the caller's torch RNG
            for _ in range(cfg.members):
                torch.manual_seed(int(torch.randint(2**31 - 1, (1,), generator=gen)))
                member = Member(x.shape[1], cfg.hidden, len(self.HEADS))
                rows = torch.randint(len(x), (len(x),), generator=gen) if cfg.bootstrap else torch.arange(len(x))
                self._train(member, x[rows], z[rows])
                self.members.append(member)
        self.fits += 1
        return self

    def _train(self, member: Member, x: torch.Tensor, z: torch.Tensor) -> None:
        cfg = self.config
        opt = torch.optim.Adam(member.parameters(), lr=cfg.lr)
        for _ in range(cfg.epochs):
            opt.zero_grad()
            out = member(x)
            if cfg.loss == "mse":
                loss = nn.functional.mse_loss(out, z)
            else:
                loss = sum(pairwise_margin_loss(out[:, h], z[:, h], cfg.margin) for h in range(z.shape[1]))
            loss.backward()
            opt.step()

    def member_predictions(self, X) -> np.ndarray:
        """[members, n, 2] predictions in target units."""
        if not self.members:
            raise PredictorError("query before fit: the predictor has not been trained")
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.members[0].trunk[0].in_features:
            raise PredictorError(f"X must be [n, {self.members[0].trunk[0].in_features}], got {X.shape}")
        x = torch.tensor(X, dtype=torch.float32)
        with torch.no_grad():
            z = torch.stack([m(x) for m in self.members]).double().numpy()
        mean, std = self.scale
        return z * np.asarray(std) + np.asarray(mean)

    def query(self, X) -> tuple[np.ndarray, np.ndarray]:
        """The ensemble's mean and std over members, each [n, 2] (NE, FLOPs)."""
        preds = self.member_predictions(X)
        return preds.mean(0), preds.std(0)

    # --- JSON state -----------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Weights (torch.save, base64), scalers and the fit counter, as JSON."""
        buf = io.BytesIO()
        torch.save([m.state_dict() for m in self.members], buf)
        inputs = self.members[0].trunk[0].in_features if self.members else None
        return {"config": self.config.model_dump(), "scale": self.scale, "fits": self.fits, "inputs": inputs,
                "weights": base64.b64encode(buf.getvalue()).decode() if self.members else None}

    @classmethod
    def from_state(cls, state: dict) -> "EnsemblePredictor":
        out = cls(PredictorConfig(**state["config"]))
        out.scale, out.fits = state["scale"], int(state["fits"])
        if state["weights"] is not None:
            weights = torch.load(io.BytesIO(base64.b64decode(state["weights"])), weights_only=True)
            for w in weights:
                m = Member(state["inputs"], out.config.hidden, len(cls.HEADS))
                m.load_state_dict(w)
                out.members.append(m)
        return out
