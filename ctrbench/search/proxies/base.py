"""The zero-cost proxy interface and what the gradient proxies share.

A proxy scores a model from a few batches without training it: `score(model, batches) -> float`, where **higher
means the proxy predicts a better model** (a loss enters negated). A proxy leaves the model as it found it: the
parameters, the buffers (BatchNorm running statistics), `requires_grad` flags, `.grad` and the train/eval mode.

Gradient proxies (ZiCo, SiGeo, Fisher-Rao, gradient norm, SNIP, the training loss) read one `GradientStats`: the
loss and the gradient of every trainable parameter on each batch, at the model's current weights, in train mode
(as the trainer would take them; no optimizer step). `score` collects it; the proxy evaluator collects it once per
model and hands it to every gradient proxy's `from_stats`, so the proxies cost one pass together.
"""
from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Iterator, Sequence

import torch
from torch import nn

from ctrbench.errors import CtrbenchError


class ProxyError(CtrbenchError, ValueError):
    """A proxy cannot score this model on these batches (too few batches, an option out of range, ...)."""


@dataclass
class GradientStats:
    """Per-batch losses and gradients at fixed weights: `grads[b][i]` is the float64 gradient of `params[i]`
    (named `names[i]`) on batch b; `params` holds float64 copies of the weights the gradients were taken at."""

    names: list[str]
    params: list[torch.Tensor]
    grads: list[list[torch.Tensor]]
    losses: list[float]

    def stacked(self, i: int) -> torch.Tensor:
        """Parameter i's gradients over the batches, [n_batches, *shape]."""
        return torch.stack([g[i] for g in self.grads])

    def mean_grad(self, i: int) -> torch.Tensor:
        """Parameter i's gradient of the mean loss over the batches (the mean of the per-batch gradients)."""
        return self.stacked(i).mean(0)


class Proxy(ABC):
    """A zero-cost proxy (`name` is set by @register_proxy). Options are keyword arguments of the constructor."""

    name: ClassVar[str]
    needs_grad_stats: ClassVar[bool] = False  # True: scored from GradientStats (one shared pass)
    min_batches: ClassVar[int] = 1

    @abstractmethod
    def score(self, model: nn.Module, batches: Sequence) -> float:
        """The proxy's score of `model` on `batches` (higher = predicted better); the model is left unchanged."""

    def check_batches(self, batches: Sequence) -> None:
        if len(batches) < self.min_batches:
            raise ProxyError(f"proxy {self.name!r} needs at least {self.min_batches} batches, got {len(batches)}")


class GradientProxy(Proxy):
    """A proxy computed from the per-batch gradients at the current weights."""

    needs_grad_stats = True

    def score(self, model: nn.Module, batches: Sequence) -> float:
        self.check_batches(batches)
        return self.from_stats(gradient_stats(model, batches))

    @abstractmethod
    def from_stats(self, stats: GradientStats) -> float:
        """The score from gradients already collected (by gradient_stats)."""


@contextlib.contextmanager
def preserved(model: nn.Module, params: bool = False) -> Iterator[None]:
    """Restore the model's buffers, training mode, `requires_grad` flags and `.grad` (and, with `params=True`,
    the parameter values) when the block ends, whatever the block did."""
    mode = model.training
    flags = [(p, p.requires_grad, p.grad) for p in model.parameters()]
    buffers = {k: v.detach().clone() for k, v in model.named_buffers()}
    values = [(p, p.detach().clone()) for p in model.parameters()] if params else []
    try:
        yield
    finally:
        with torch.no_grad():
            for k, v in model.named_buffers():
                v.copy_(buffers[k])
            for p, v in values:
                p.copy_(v)
        for p, flag, grad in flags:
            p.requires_grad_(flag)
            p.grad = grad
        model.train(mode)


def batch_loss(model: nn.Module, batch) -> torch.Tensor:
    """The model's own training loss on a batch (BCE with the labels for a CTR model)."""
    return model.loss(model(batch), batch)


def gradient_stats(model: nn.Module, batches: Sequence) -> GradientStats:
    """Loss and gradient of every trainable (non-empty) parameter on each batch, in train mode, weights
    unchanged."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad and p.numel()]  # empty: no gradient
    if not named:
        raise ProxyError("the model has no trainable parameters to take gradients of")
    grads, losses = [], []
    with preserved(model):
        model.train()
        for batch in batches:
            for _, p in named:
                p.grad = None
            loss = batch_loss(model, batch)
            loss.backward()
            losses.append(float(loss.detach()))
            grads.append([(p.grad.to_dense() if p.grad is not None and p.grad.is_sparse else
                           p.grad if p.grad is not None else torch.zeros_like(p)).detach().double().clone()
                          for _, p in named])
    return GradientStats([n for n, _ in named], [p.detach().double().clone() for _, p in named], grads, losses)


def log_or_skip(total: torch.Tensor) -> float | None:
    """log(total) for a positive sum, None for zero (a layer without signal is left out, as ZiCo does)."""
    value = float(total)
    return None if value <= 0 else float(torch.log(torch.tensor(value, dtype=torch.float64)))
