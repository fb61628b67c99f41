"""One DNAS search (specs/search.md §6.3, §9.8; the DNAS reference design ravikucb/dnas and DARTS' first-order
alternation, ctrbench's knobs where the DistDNAS paper is silent):

1. `dnas_supernet` over a distdnas space; weights and architecture logits trained apart.
2. `warmup_steps` weight-only steps, then alternation: after every `arch_every` weight steps on training
   batches (the trainer's `training_step`, weights only), one architecture step on a validation batch:
   BCE of the Gumbel-softmax supernet + the expected-FLOPs cost term (cost.py) under softmax(logits), with the
   weights frozen. Validation batches never reach a weight step and training batches never an architecture step.
3. The temperature anneals from `tau0` to `tau_min` over the search (`schedule`; `exponential` is the reference's
   tau0 · exp(-decay · t) with the decay that reaches tau_min at the end).
4. The result: the logits, and their argmax as a point of the space (`discretise`), which `retrain` builds as
   `dnas_subnet` and trains from scratch with the one trainer.
"""
from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, model_validator

from ctrbench.data.loader import BatchLoader
from ctrbench.models.registry import build_model, model_tables
from ctrbench.search.dnas.aggregate import argmax_choice
from ctrbench.search.dnas.cost import CostForm, cost_term, expected_flops, max_flops
from ctrbench.train import TrainConfig, TrainResult, fit, make_optimizers, training_step


class DNASConfig(BaseModel):
    """The knobs of one search (every one ctrbench's choice; the defaults follow FBNet / DARTS where they say)."""

    model_config = ConfigDict(extra="forbid")
    steps: PositiveInt = Field(1000, description="weight steps (training batches)")
    warmup_steps: int = Field(0, ge=0, description="weight-only steps before the first architecture step")
    arch_every: PositiveInt = Field(1, description="one architecture step after every this many weight steps")
    batch_size: PositiveInt = 512
    optimizer: Literal["adam", "adagrad"] = "adam"
    lr: float = Field(1e-3, gt=0, allow_inf_nan=False, description="weights' learning rate")
    arch_lr: float = Field(3e-4, gt=0, allow_inf_nan=False, description="logits' Adam learning rate (DARTS)")
    arch_weight_decay: float = Field(1e-3, ge=0, allow_inf_nan=False, description="logits' weight decay (DARTS)")
    tau0: float = Field(5.0, gt=0, allow_inf_nan=False, description="initial Gumbel temperature (FBNet: 5)")
    tau_min: float = Field(0.1, gt=0, allow_inf_nan=False, description="final temperature")
    schedule: Literal["exponential", "linear", "constant"] = "exponential"
    hard: bool = Field(False, description="straight-through Gumbel-softmax")
    sample_per: Literal["example", "batch"] = "example"
    cost_form: CostForm = "linear"
    cost_coefficient: float = Field(0.0, ge=0, allow_inf_nan=False, description="λ of the cost term (0: none)")
    cost_reference: float | None = Field(None, gt=0, description="F_ref; None = the supernet's costliest point")
    seed: int = 0
    log_every: PositiveInt = 50

    @model_validator(mode="after")
    def _temperatures(self):
        if self.tau_min > self.tau0:
            raise ValueError(f"tau_min {self.tau_min} exceeds tau0 {self.tau0} (the temperature anneals downward)")
        return self


def temperature(cfg: DNASConfig, progress: float) -> float:
    """The temperature at `progress` in [0, 1] of the search."""
    p = min(max(progress, 0.0), 1.0)
    if cfg.schedule == "constant":
        return cfg.tau0
    if cfg.schedule == "linear":
        return cfg.tau0 + (cfg.tau_min - cfg.tau0) * p
    return cfg.tau0 * math.exp(math.log(cfg.tau_min / cfg.tau0) * p)


@dataclass
class DNASResult:
    status: str  # "ok" | "nan"
    arch_logits: dict[str, list[list[float]]]  # slot -> [num_blocks][n_ops]
    point: dict | None  # the argmax, a point of the space
    expected_flops: float  # under softmax(final logits)
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None


def endless(loader: BatchLoader):
    """The loader's batches epoch after epoch (a fresh shuffle each epoch)."""
    epoch = 0
    while True:
        loader.set_epoch(epoch)
        yield from loader
        epoch += 1


@contextmanager
def frozen(params):
    """Turn off the gradients of `params` for the duration (the other half of the model trains)."""
    params = [p for p in params if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def discretise(space, arch_logits) -> dict:
    """The point of the per-block argmax of `arch_logits` (or of aggregated scores)."""
    return space.point_of(argmax_choice(arch_logits))


class DNASSearch:
    """The supernet, its two optimizers and the two batch streams; `run` drives the alternation."""

    def __init__(self, cache, space, cfg: DNASConfig):
        self.cache, self.space, self.cfg = cache, space, cfg
        self.model = self.build_supernet()
        self.train_cfg = TrainConfig(optimizer=cfg.optimizer, lr=cfg.lr, batch_size=cfg.batch_size, seed=cfg.seed)
        self.weight_optimizers = make_optimizers(self.model, self.train_cfg)
        self.arch_optimizer = torch.optim.Adam(self.model.arch_parameters(), lr=cfg.arch_lr, betas=(0.5, 0.999),
                                               weight_decay=cfg.arch_weight_decay)
        self.reference = cfg.cost_reference or self.default_reference()
        self.train_batches = endless(BatchLoader(cache, "train", cfg.batch_size, shuffle=True, seed=cfg.seed))
        self.valid_batches = endless(BatchLoader(cache, "valid", cfg.batch_size, shuffle=True, seed=cfg.seed))

    def build_supernet(self):
        """The supernet over the space (a subclass searches another supernet: nasrec_search.py)."""
        cfg, cache = self.cfg, self.cache
        params = {**self.space.supernet_params(), "hard": cfg.hard, "sample_per": cfg.sample_per,
                  "gumbel_seed": cfg.seed}
        return build_model("dnas_supernet", cache.spec, cache.vocab_sizes, params, model_tables(cache), seed=cfg.seed)

    def default_reference(self) -> float:
        """F_ref when the config names none: the supernet's costliest point."""
        return max_flops(self.model.op_costs(), self.model.params.num_blocks, self.model.fixed_flops())

    def expected_flops(self) -> torch.Tensor:
        probs = {k: F.softmax(v, dim=-1) for k, v in self.model.alpha.items()}
        return expected_flops(probs, self.model.op_costs(), self.model.fixed_flops())

    def discretise(self, logits) -> dict:
        return discretise(self.space, logits)

    def weight_step(self, batch) -> float:
        self.model.train()
        with frozen(self.model.arch_parameters()):
            return float(training_step(self.model, batch, self.weight_optimizers, self.train_cfg))

    def arch_step(self, batch) -> tuple[float, float]:
        """One logits update on a validation batch; returns (its BCE, expected FLOPs)."""
        self.model.train()
        with frozen(self.model.dense_parameters() + self.model.embedding_parameters()):
            bce = self.model.loss(self.model(batch), batch)
            exp = self.expected_flops()
            loss = bce + cost_term(exp, self.cfg.cost_form, self.cfg.cost_coefficient, self.reference).to(bce.dtype)
            self.arch_optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.arch_optimizer.step()
        return float(bce.detach()), float(exp.detach())

    def run(self) -> DNASResult:
        cfg, started, history = self.cfg, time.perf_counter(), []
        train_loss = valid_loss = math.nan
        status, error = "ok", None
        for step in range(1, cfg.steps + 1):
            self.model.tau = temperature(cfg, (step - 1) / max(cfg.steps - 1, 1))
            train_loss = self.weight_step(next(self.train_batches))
            losses = [train_loss]
            if step > cfg.warmup_steps and (step - cfg.warmup_steps) % cfg.arch_every == 0:
                valid_loss, _ = self.arch_step(next(self.valid_batches))
                losses.append(valid_loss)
            if not all(map(math.isfinite, losses)):
                status, error = "nan", f"a non-finite loss at step {step} (train {train_loss}, valid {valid_loss})"
                break
            if step % cfg.log_every == 0 or step == cfg.steps:
                history.append({"step": step, "tau": self.model.tau, "train_loss": train_loss,
                                "valid_loss": valid_loss, "expected_flops": float(self.expected_flops().detach())})
        logits = self.model.arch_logits()
        finite = all(torch.isfinite(v).all() for v in logits.values())
        return DNASResult(status, {k: v.tolist() for k, v in logits.items()},
                          self.discretise(logits) if status == "ok" and finite else None,
                          float(self.expected_flops().detach()), history, time.perf_counter() - started, error)


def run_dnas(cache, space, cfg: DNASConfig | dict | None = None) -> DNASResult:
    """Search `space` (an InteractionSpace) on `cache`'s train (weights) and valid (architecture) splits."""
    cfg = cfg if isinstance(cfg, DNASConfig) else DNASConfig(**(cfg or {}))
    return DNASSearch(cache, space, cfg).run()


def retrain(cache, space, point: dict, train: TrainConfig | dict | None = None, *, seed: int = 0):
    """Build `point` as a standalone `dnas_subnet` and train it from scratch; returns (model, TrainResult)."""
    params, _ = space.candidate(point)
    model = build_model(space.model, cache.spec, cache.vocab_sizes, params, model_tables(cache), seed=seed)
    result: TrainResult = fit(model, cache, train)
    return model, result
