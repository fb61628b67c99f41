"""Meta's ranking AutoML searcher (specs/search.md §4.2 and §9.9; the method details are our reading of a
secondary source [note-CN], not checked against the paper): rounds of
  1. refit the predictor ensemble (predictors/ensemble.py) on every candidate evaluated so far, labelled with its
     validation loss (NE, the paper's metric: the low-fidelity curve-trend NE, fidelity.py; for a metric where
     higher is better, such as AUC, its negative) and its log10 FLOPs;
  2. train a REINFORCE policy -- one categorical per decision of the space -- on the ensemble's mean, reward
     r = -(1-α)·NE_z - α·FLOPs_z, where NE_z and FLOPs_z are the predictions standardised by the mean and std of
     the predictor's training labels (this normalisation is a ctrbench choice: the paper's is not public);
  3. sample `pool` points from the policy, keep the `per_round` unseen ones with the highest predicted reward and
     train them for real at low fidelity.
The first round trains `initial` points drawn from the uniform policy. The policy's logits carry over from round
to round. The decisions are the space's `decisions()` (exact points, e.g. `dhen`); a space without them (NASRec, a
benchmark table's points) is searched over its `choices()` knobs, each draw taken to the space point agreeing on
the most knobs (knob_points.KnobMap; a ctrbench choice), so the same searcher runs on CTR-NAS-Bench's `lookup`.
Its state (logits, baseline, RNG, labelled data, the predictor's weights) is JSON, so a killed search
resumes with the same policy and the same next proposals."""
from __future__ import annotations

import math

import numpy as np
from pydantic import Field, model_validator

from ctrbench.metrics import METRIC_DIRECTIONS
from ctrbench.search.base import Candidate, Evaluation
from ctrbench.search.fidelity import CurveError, Fidelity, record_curve
from ctrbench.search.knob_points import KnobMap
from ctrbench.search.objective import Metric
from ctrbench.search.predictors.ensemble import EnsemblePredictor, PredictorConfig
from ctrbench.search.registry import register_searcher
from ctrbench.search.searchers.common import SpaceSearcher, SpaceSearcherParams, rng_from_state, rng_state


class AutoMLParams(SpaceSearcherParams):
    space: str = "dhen"
    metric: Metric = "ne"
    initial: int = Field(8, ge=2, description="random candidates of the first round (the predictor's first data)")
    per_round: int = Field(4, ge=1, description="top-k candidates trained for real per round")
    alpha: float = Field(0.1, ge=0, le=1, description="weight of FLOPs against NE in the reward")
    pool: int = Field(256, ge=1, description="points sampled from the trained policy per round to pick the top-k of")
    policy_steps: int = Field(300, ge=1, description="REINFORCE updates per round")
    policy_batch: int = Field(32, ge=1, description="samples per REINFORCE update")
    policy_lr: float = Field(0.2, gt=0)
    fidelity: Fidelity = Field(default_factory=lambda: Fidelity(fraction=1.0))
    predictor: PredictorConfig = Field(default_factory=PredictorConfig)
    space_pool: int = Field(512, ge=1, description="space samples a draw's nearest point is found among (spaces "
                                                   "without decisions)")

    @model_validator(mode="after")
    def _fits(self):
        if self.initial > self.budget:
            raise ValueError(f"initial {self.initial} exceeds budget {self.budget}")
        return self


class CategoricalPolicy:
    """Independent softmax categoricals, one per decision, trained by REINFORCE with a mean-reward baseline."""

    def __init__(self, decisions: dict[str, tuple], logits: dict[str, list] | None = None):
        self.decisions = decisions
        self.logits = {k: np.asarray(logits[k] if logits else np.zeros(len(v)), dtype=np.float64)
                       for k, v in decisions.items()}

    def probs(self, name: str) -> np.ndarray:
        z = np.exp(self.logits[name] - self.logits[name].max())
        return z / z.sum()

    def sample(self, rng: np.random.Generator, n: int) -> list[dict[str, int]]:
        """n draws, each {decision: index}."""
        draws = {k: rng.choice(len(v), size=n, p=self.probs(k)) for k, v in self.decisions.items()}
        return [{k: int(draws[k][i]) for k in self.decisions} for i in range(n)]

    def values(self, draw: dict[str, int]) -> dict:
        return {k: self.decisions[k][i] for k, i in draw.items()}

    def update(self, draws: list[dict[str, int]], rewards: np.ndarray, lr: float) -> None:
        """One REINFORCE step: logits += lr · mean_b (r_b − mean r) · ∇ log π(a_b) (∇ = onehot(a) − p)."""
        adv = np.asarray(rewards, dtype=np.float64) - float(np.mean(rewards))
        for k in self.decisions:
            p = self.probs(k)
            chosen = np.fromiter((d[k] for d in draws), dtype=np.int64, count=len(draws))
            grad = np.bincount(chosen, weights=adv, minlength=len(p)) - adv.sum() * p
            self.logits[k] = self.logits[k] + lr * grad / len(draws)

    def state_dict(self) -> dict:
        return {k: v.tolist() for k, v in self.logits.items()}


@register_searcher("automl")
class AutoMLSearcher(SpaceSearcher):
    """See the module docstring. `budget` counts every trained candidate, the first round's included."""

    Params = AutoMLParams

    def __init__(self, params: AutoMLParams):
        super().__init__(params)
        self.knobs = KnobMap(self.space, pool=params.space_pool, climb=0, seed=params.seed)
        self.policy = CategoricalPolicy(self.knobs.choices)
        self.predictor = EnsemblePredictor(params.predictor)
        self.seen: list[str] = []
        self.data: list[dict] = []  # labelled evaluations: point, loss (validation NE or trend label), log10 flops
        self.consumed = 0

    def candidate(self, index: int, point: dict) -> Candidate:
        params, train = self.space.candidate(point)
        return Candidate(index, params, {**train, **self.params.fidelity.train_overrides()}, self.params.evaluation,
                         point)

    def label(self, e: Evaluation) -> dict | None:
        """The (loss, log10 FLOPs) label of a finished evaluation: the loss is its validation metric (the value;
        for a train run with a curve, the fidelity's trend label of the metric's curve), negated where higher is
        better. None when it failed or lacks a metric; FidelityError when its run trained on fewer rows than the
        fidelity states."""
        if e.status != "ok" or e.candidate.point is None or not e.metrics.get("flops"):
            return None
        self.params.fidelity.check_rows(getattr(e.record, "train_rows", None), f"candidate {e.candidate.index}")
        value = e.value
        try:
            curve = record_curve(e.record, self.params.metric) if hasattr(e.record, "history") else []
            if len(curve) >= self.params.fidelity.late_points:
                value = self.params.fidelity.label(curve)
        except CurveError:
            pass  # a curve too short or broken for the trend: the final validation value is the label
        if value is None or not math.isfinite(value):
            return None
        loss = -METRIC_DIRECTIONS[self.params.metric] * float(value)
        return {"point": e.candidate.point, "loss": loss, "flops": math.log10(float(e.metrics["flops"]))}

    def _tell(self, history: list[Evaluation]) -> None:
        for e in history[self.consumed:]:
            if (row := self.label(e)) is not None:
                self.data.append(row)
        self.consumed = len(history)

    def reward(self, points: list[dict]) -> np.ndarray:
        """−(1−α)·loss_z − α·FLOPs_z of the ensemble's mean (standardised by the training labels' mean, std)."""
        mean, _ = self.predictor.query(np.stack([self.space.encode(p) for p in points]))
        mu, sd = (np.asarray(v) for v in self.predictor.scale)
        z = (mean - mu) / sd
        return -(1 - self.params.alpha) * z[:, 0] - self.params.alpha * z[:, 1]

    def train_policy(self) -> None:
        p = self.params
        for _ in range(p.policy_steps):
            draws = self.policy.sample(self.rng, p.policy_batch)
            self.policy.update(draws, self.reward(self.knobs.nearest(draws)), p.policy_lr)

    def _fresh(self, points: list[dict], n: int) -> list[Candidate]:
        out, seen = [], set(self.seen)
        for point in points:
            h = self.space.hash(point)
            if h not in seen and len(out) < n:
                seen.add(h)
                self.seen.append(h)
                out.append(self.candidate(len(self.seen) - 1, point))
        return out

    def _policy_points(self, n: int) -> list[dict]:
        return self.knobs.nearest(self.policy.sample(self.rng, n))

    def ask(self, history: list[Evaluation]) -> list[Candidate]:
        """The next round: uniform draws first (or while fewer than 2 evaluations are labelled), then the
        policy's top-k on the refitted predictor; [] once `budget` candidates have been proposed."""
        self._tell(history)
        p = self.params
        n = min(p.per_round if self.seen else p.initial, p.budget - len(self.seen))
        if n <= 0:
            return []
        if len(self.data) < 2:
            return self._fresh(self._policy_points(20 * n), n)
        self.predictor.fit(np.stack([self.space.encode(r["point"]) for r in self.data]),
                           [r["loss"] for r in self.data], [r["flops"] for r in self.data])
        self.train_policy()
        pool = self._policy_points(p.pool)
        order = np.argsort(-self.reward(pool), kind="stable")
        return self._fresh([pool[int(i)] for i in order], n)

    def state_dict(self) -> dict:
        return {"rng": rng_state(self.rng), "seen": self.seen, "data": self.data, "consumed": self.consumed,
                "policy": self.policy.state_dict(), "predictor": self.predictor.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.rng, self.seen, self.data = rng_from_state(state["rng"]), list(state["seen"]), list(state["data"])
        self.consumed = int(state["consumed"])
        self.policy = CategoricalPolicy(self.knobs.choices, state["policy"])
        self.predictor = EnsemblePredictor.from_state(state["predictor"])
