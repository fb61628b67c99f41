"""The one trainer: `fit(model, cache, cfg)` trains with BARS/FuxiCTR-style early stopping and evaluates on test.

- Optimizers: Adam or Adagrad; embeddings dense (one optimizer, tables in their own group), sparse
  (SparseAdam / sparse Adagrad on the lookup tables, the dense optimizer for the rest), or fused
  (`fused_embedding_optimizer`: SGD / row-wise Adagrad applied to the touched rows inside the backward by the
  embedding-bag kernels, FBGEMM-TBE style; `FusedEmbeddingOptimizer` carries their learning rate).
- Embedding L2 (BARS `embedding_regularizer`, λ/2·‖W‖²): dense tables get it as the optimizer's weight decay
  (the same gradient λ·W); sparse tables cannot (a full-table term densifies the gradient), so they get the lazy
  form λ/2·Σ‖w_r‖² over the rows each batch reads.
- Early stopping as FuxiCTR's `checkpoint_and_earlystop`: at each evaluation (the end of every epoch, or
  `evals_per_epoch` evenly spaced points in it, as FuxiCTR's eval_steps) the monitored validation metric
  either improves (keep an in-memory copy of the weights) or counts towards `patience`, and the learning rate
  is divided by 10 on a plateau (reduce_lr_on_plateau, floor 1e-6); at the end the best weights are restored.
- Gradient clipping by global norm (with sparse tables: over the dense parameters only).
- A loss that is NaN or infinite stops the run at once with status "nan" and the step; so do non-finite
  validation/test predictions. Other exceptions propagate to the caller (which records "failed").
- Evaluation: predictions of a whole split are concatenated and scored in one `ctrbench.metrics.evaluate`
  call (gAUC where the dataset has a group id; NE against the training CTR); on twins, the oracle's metrics
  on the same test rows.
"""
from __future__ import annotations

import math
import os
import random
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ctrbench.data.cache import Cache
from ctrbench.data.loader import BatchLoader
from ctrbench.errors import ConfigError
from ctrbench.metrics import better
from ctrbench.models.base import CTRModel

MIN_DELTA = 1e-6  # FuxiCTR's default min_delta
MIN_LR = 1e-6  # FuxiCTR's reduce_lr_on_plateau floor


class TrainConfig(BaseModel):
    """Trainer settings (a suite entry's `train:` block)."""

    model_config = ConfigDict(extra="forbid")

    optimizer: Literal["adam", "adagrad"] = "adam"
    lr: float = Field(1e-3, gt=0, allow_inf_nan=False)
    embedding_lr: float | None = Field(None, gt=0, allow_inf_nan=False,
                                       description="learning rate of the lookup tables; None = lr")
    sparse_embeddings: bool = False
    fused_embedding_optimizer: Literal["sgd", "rowwise_adagrad"] | None = Field(
        None, description="update the lookup tables inside the backward with SGD or FBGEMM's row-wise Adagrad "
        "(fused kernels, lr = embedding_lr or lr; needs the model's embedding_backend 'fused'); None = the tables "
        "train with `optimizer` like every other parameter")
    fused_embedding_eps: float = Field(1e-8, gt=0, allow_inf_nan=False, description="row-wise Adagrad's epsilon")
    embedding_l2: float = Field(0.0, ge=0, allow_inf_nan=False,
                                description="BARS embedding_regularizer λ (λ/2·‖W‖²)")
    batch_size: int = Field(2048, gt=0)
    eval_batch_size: int = Field(16384, gt=0)
    max_epochs: int = Field(5, ge=1)
    patience: int = Field(1, ge=1, description="evaluations without improvement before stopping (BARS uses 2)")
    evals_per_epoch: int = Field(1, ge=1, description="validation checkpoints per epoch, evenly spaced in steps "
                                 "(FuxiCTR's eval_steps); >1 resolves a best checkpoint inside the first epochs")
    monitor: Literal["auc", "gauc", "logloss"] = "auc"
    reduce_lr_on_plateau: bool = True
    grad_clip: float | None = Field(None, gt=0, allow_inf_nan=False,
                                    description="max global gradient norm; None = no clipping")
    seed: int = 0
    deterministic: bool = False
    threads: int | None = Field(None, ge=1)
    max_train_rows: int | None = Field(None, ge=1)
    max_steps: int | None = Field(None, ge=1, description="stop training after this many optimizer steps")
    device: str = Field("cpu", description="'cpu', 'cuda', 'cuda:N' or 'auto' (cuda when available)")

    @model_validator(mode="after")
    def _fused_optimizer_fits(self) -> "TrainConfig":
        if self.fused_embedding_optimizer is not None:
            if self.sparse_embeddings:
                raise ValueError("fused_embedding_optimizer updates the tables in the backward; it excludes "
                                 "sparse_embeddings (set one of them)")
            if self.embedding_l2 > 0:
                raise ValueError("fused_embedding_optimizer has no embedding L2 term; set embedding_l2: 0 or train "
                                 "the tables with the dense optimizer")
        return self

    @field_validator("device")
    @classmethod
    def _known_device(cls, v: str) -> str:
        if not re.fullmatch(r"cpu|auto|cuda(:\d+)?", v):
            raise ValueError(f"unknown device {v!r}; valid: cpu, cuda, cuda:N (N = 0, 1, ...), auto")
        return v


@dataclass
class TrainResult:
    status: str  # "ok" | "nan" | "failed"
    error: str | None = None
    nan_step: int | None = None
    epochs_run: int = 0
    best_epoch: int | None = None
    best_step: int | None = None  # optimizer steps at the best evaluation
    valid: dict = field(default_factory=dict)
    test: dict = field(default_factory=dict)
    oracle_test: dict | None = None
    history: list[dict] = field(default_factory=list)
    train_seconds: float = 0.0
    steps: int = 0
    test_components: dict = field(default_factory=dict)  # component name -> its test metrics (model.component_logits)
    test_diagnostics: dict = field(default_factory=dict)  # name -> mean over the test split (model.diagnostics)


class NonFiniteLoss(Exception):
    """Raised inside the loop when the loss (or a prediction) is NaN or infinite."""

    def __init__(self, step: int, what: str):
        self.step, self.what = step, what
        super().__init__(f"{what} is not finite at step {step}")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@contextmanager
def _run_settings(cfg: TrainConfig):
    """Threads and determinism for the duration of a run; restores the process's previous settings."""
    old_threads = torch.get_num_threads()
    old_det = torch.are_deterministic_algorithms_enabled()
    old_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        if cfg.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True)
        yield
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det, warn_only=old_warn)


class FusedEmbeddingOptimizer(torch.optim.Optimizer):
    """The lookup tables' optimizer when the fused kernels update them inside the backward: `step` has nothing
    left to do, and its param group's `lr` is the rate the tables read at every forward, so the plateau rule
    (or any scheduler that edits param groups) governs them like the dense optimizer's groups."""

    def __init__(self, params, kind: str, lr: float):
        super().__init__(params, {"lr": lr, "kind": kind})

    @torch.no_grad()
    def step(self, closure=None):  # the update already happened in the backward
        return None if closure is None else closure()


def make_optimizers(model: CTRModel, cfg: TrainConfig) -> list[torch.optim.Optimizer]:
    """The optimizer(s) for `model` under `cfg` (see the module docstring); the one place that sets how the
    model's tables are updated (dense, sparse or fused), so the trainer and the cost measurement agree."""
    emb = [p for p in model.embedding_parameters() if p.requires_grad]
    dense = model.dense_parameters()
    emb_lr = cfg.embedding_lr or cfg.lr
    opt_cls = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.Adagrad
    model.set_sparse_embeddings(cfg.sparse_embeddings)
    model.set_fused_embedding_optimizer(None)
    if cfg.fused_embedding_optimizer is not None and emb:
        backends = {c.backend for c in model.embedding_collections() if c.weight is not None}
        if backends != {"fused"}:
            raise ConfigError(f"train.fused_embedding_optimizer needs params.embedding_backend 'fused'; this "
                              f"{model.name} model's is {sorted(backends)}", path="train.fused_embedding_optimizer")
        fused = FusedEmbeddingOptimizer(emb, cfg.fused_embedding_optimizer, emb_lr)
        model.set_fused_embedding_optimizer(cfg.fused_embedding_optimizer, fused.param_groups[0],
                                            cfg.fused_embedding_eps)
        return ([opt_cls(dense, lr=cfg.lr)] if dense else []) + [fused]
    if not cfg.sparse_embeddings:
        groups = [g for g in ({"params": dense}, {"params": emb, "lr": emb_lr, "weight_decay": cfg.embedding_l2}) if g["params"]]
        return [opt_cls(groups, lr=cfg.lr)]
    opts = []
    if dense:
        opts.append(opt_cls(dense, lr=cfg.lr))
    if emb:
        opts.append(torch.optim.SparseAdam(emb, lr=emb_lr) if cfg.optimizer == "adam" else torch.optim.Adagrad(emb, lr=emb_lr))
    return opts


@torch.inference_mode()
def predict(model: CTRModel, cache: Cache, split: str, batch_size: int, device: torch.device,
            max_rows: int | None = None, components: bool = False) -> dict[str, Any]:
    """Click probabilities of a whole split, batched; returns preds, labels, group_ids, oracle_p arrays and, with
    `components=True`, "components" (name -> probabilities of model.component_logits) and "diagnostics"
    (name -> mean of model.diagnostics over the split's rows)."""
    was_training = model.training
    model.eval()
    preds, labels, groups, oracle = [], [], [], []
    comp: dict[str, list] = {}
    diag_sum: dict[str, float] = {}
    n_rows = 0
    for batch in BatchLoader(cache, split, batch_size, max_rows=max_rows):
        preds.append(torch.sigmoid(model(batch.to(device)).float()).cpu())
        if components:
            for name, logit in model.component_logits().items():
                comp.setdefault(name, []).append(torch.sigmoid(logit.float()).cpu())
            b = batch.label.shape[0]
            for name, value in model.diagnostics().items():  # row-weighted, so the result is the split's mean
                diag_sum[name] = diag_sum.get(name, 0.0) + float(value.double().mean()) * b
            n_rows += b
        labels.append(batch.label)
        if batch.group_id is not None:
            groups.append(batch.group_id)
        if batch.oracle_p is not None:
            oracle.append(batch.oracle_p)
    model.train(was_training)
    cat = lambda xs: torch.cat(xs).numpy() if xs else None  # noqa: E731
    out = {"preds": cat(preds), "labels": cat(labels), "group_ids": cat(groups), "oracle_p": cat(oracle)}
    if components:
        out["components"] = {k: cat(v) for k, v in comp.items()}
        out["diagnostics"] = {k: v / max(n_rows, 1) for k, v in diag_sum.items()}
    return out


def evaluate_split(model: CTRModel, cache: Cache, split: str, cfg: TrainConfig, device: torch.device,
                   *, oracle: bool = False, extras: dict | None = None) -> tuple[dict, dict | None]:
    """Metrics of `split` (one metrics call over the concatenated predictions) and, with `oracle=True` on
    a twin, the oracle's metrics on the same rows. NE's background CTR is the training CTR. A dict passed as
    `extras` is filled with "components" (name -> metrics of each model.component_logits predictor) and
    "diagnostics" (name -> mean of model.diagnostics over the split)."""
    from ctrbench.metrics import evaluate, oracle_metrics

    out = predict(model, cache, split, cfg.eval_batch_size, device, components=extras is not None)
    if not np.isfinite(out["preds"]).all():
        raise NonFiniteLoss(-1, f"a {split} prediction")
    train_ctr = cache.positive_rate("train")
    metrics = evaluate(out["labels"], out["preds"], out["group_ids"], train_ctr=train_ctr)
    if extras is not None:
        extras["components"] = {name: evaluate(out["labels"], p, out["group_ids"], train_ctr=train_ctr)
                                for name, p in out["components"].items() if np.isfinite(p).all()}
        extras["diagnostics"] = out["diagnostics"]
    oracle_res = None
    if oracle and out["oracle_p"] is not None:
        oracle_res = oracle_metrics(out["labels"], out["oracle_p"], out["group_ids"], train_ctr=train_ctr)
    return metrics, oracle_res


def _improved(value: float, best: float | None, monitor: str) -> bool:
    if best is None:
        return not math.isnan(value)
    return better(monitor, value, best, MIN_DELTA)


def training_step(model: CTRModel, batch, optimizers: list[torch.optim.Optimizer], cfg: TrainConfig, *,
                  forward: torch.nn.Module | None = None, autocast_dtype: torch.dtype | None = None) -> torch.Tensor:
    """One optimizer step on `batch` as the trainer takes it (the model's loss + aux loss + lazy embedding L2,
    backward, clipping, every optimizer's step); returns the detached loss. The cost measurement times this.
    System knobs: `forward` is the module called on the batch (a DDP wrapper of `model`; None = `model`), and
    `autocast_dtype` runs forward and loss under torch.autocast (bf16; None = fp32)."""
    from ctrbench.cubicml.execution import autocast

    with autocast(batch.label.device, autocast_dtype):
        loss = model.loss((forward or model)(batch), batch)  # BCE, or the model's own supervised loss
        aux = model.aux_loss()
        if aux is not None:
            loss = loss + aux
        if cfg.sparse_embeddings and cfg.embedding_l2 > 0:
            loss = loss + 0.5 * cfg.embedding_l2 * model.embedding_sq_norm(batch)
    loss = loss.float()
    for opt in optimizers:
        opt.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.grad_clip is not None:  # sparse tables' row gradients are not clipped
        clip_params = model.dense_parameters() if cfg.sparse_embeddings else list(model.parameters())
        torch.nn.utils.clip_grad_norm_(clip_params, cfg.grad_clip)
    for opt in optimizers:
        opt.step()
    return loss.detach()


def _call(callbacks, name: str, *args) -> None:
    fn = getattr(callbacks, name, None) if callbacks is not None else None
    if fn is not None:
        fn(*args)


def fit(model: CTRModel, cache: Cache, cfg: TrainConfig | dict[str, Any] | None = None, callbacks=None,
        system=None) -> TrainResult:
    """Train `model` on cache's train split with early stopping on `valid`, restore the best weights,
    evaluate on test. Returns status "nan" (with the step) on a non-finite loss; other errors raise.
    `system` (ctrbench.cubicml.system.SystemKnobs; None = the defaults) sets bf16 autocast and the loader's
    prefetch; inside a torch.distributed process group each rank trains its shard of every global batch
    (cfg.batch_size / world size rows) through DDP, and every rank evaluates the whole split with the same
    weights, so all ranks take the same early-stopping decisions."""
    cfg = cfg if isinstance(cfg, TrainConfig) else TrainConfig(**(cfg or {}))
    if cfg.monitor == "gauc" and cache.spec.group_id is None:
        raise ConfigError(f"monitor 'gauc' needs a group id, and {cache.spec.name} has none; use 'auc' or 'logloss'",
                          path="train.monitor")
    device = resolve_device(cfg.device)
    with _run_settings(cfg):
        seed_everything(cfg.seed)
        model.to(device)
        return _fit(model, cache, cfg, callbacks, device, system)


def _fit(model: CTRModel, cache: Cache, cfg: TrainConfig, callbacks, device: torch.device, system) -> TrainResult:
    from ctrbench.cubicml.execution import autocast_dtype, data_parallel, prefetched, rank_and_world

    optimizers = make_optimizers(model, cfg)
    rank, world = rank_and_world()
    if cfg.batch_size % world:
        raise ConfigError(f"batch_size {cfg.batch_size} does not split into {world} processes", path="train.batch_size")
    forward, amp = data_parallel(model), autocast_dtype(system)
    ahead = system.prefetch if system is not None else 0
    loader = BatchLoader(cache, "train", cfg.batch_size // world, shuffle=True, seed=cfg.seed,
                         max_rows=cfg.max_train_rows, rank=rank, world_size=world)
    result = TrainResult(status="ok")
    best_value, best_state, bad_evals, step = None, None, 0, 0
    started = time.perf_counter()

    def checkpoint(epoch: int, loss_sum: torch.Tensor, n_batches: int, since: float) -> bool:
        """Validate, keep the best weights, count a plateau (lr / 10); True when training should stop."""
        nonlocal best_value, best_state, bad_evals
        valid, _ = evaluate_split(model, cache, "valid", cfg, device)
        model.train()  # evaluation switched to eval mode; a mid-epoch checkpoint goes on training
        value = valid.get(cfg.monitor, math.nan)
        improved = _improved(value, best_value, cfg.monitor)
        lr_now = optimizers[0].param_groups[0]["lr"] if optimizers else cfg.lr
        record = {"epoch": epoch, "steps": step, "train_loss": float(loss_sum) / max(n_batches, 1), "valid": valid,
                  "lr": lr_now, "improved": improved, "seconds": time.perf_counter() - since}
        result.history.append(record)
        if improved:
            best_value, bad_evals, result.valid = value, 0, valid
            result.best_epoch, result.best_step = epoch, step
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            bad_evals += 1
            if cfg.reduce_lr_on_plateau:
                for opt in optimizers:
                    for g in opt.param_groups:
                        g["lr"] = max(g["lr"] * 0.1, MIN_LR)
        return bad_evals >= cfg.patience or (cfg.max_steps is not None and step >= cfg.max_steps)

    try:
        for epoch in range(1, cfg.max_epochs + 1):
            since = time.perf_counter()
            loader.set_epoch(epoch)
            n_steps = len(loader)
            _call(callbacks, "on_epoch_start", epoch, n_steps)
            # evaluation points: k evenly spaced batch counts, the last one the epoch's end
            points = {max(1, round(i * n_steps / cfg.evals_per_epoch)) for i in range(1, cfg.evals_per_epoch + 1)}
            model.train()
            loss_sum = torch.zeros((), dtype=torch.float64)
            done, n_since, stop = 0, 0, False
            for batch in prefetched(loader, ahead):
                step += 1
                batch = batch.to(device)
                loss_value = float(training_step(model, batch, optimizers, cfg, forward=forward, autocast_dtype=amp))
                if not math.isfinite(loss_value):  # the step is taken; its weights are never kept (status nan)
                    raise NonFiniteLoss(step, "the training loss")
                loss_sum += loss_value
                done, n_since = done + 1, n_since + 1
                _call(callbacks, "on_batch_end", step, loss_value)
                at_max_steps = cfg.max_steps is not None and step >= cfg.max_steps
                if done in points or at_max_steps:
                    stop = checkpoint(epoch, loss_sum, n_since, since)
                    loss_sum, n_since, since = torch.zeros((), dtype=torch.float64), 0, time.perf_counter()
                    if stop:
                        break
            if n_since or not done:  # batches after the last point (a short loader), or an epoch without batches
                stop = checkpoint(epoch, loss_sum, n_since, since)
            result.epochs_run = epoch
            last = result.history[-1]
            _call(callbacks, "on_epoch_end", epoch, {"train_loss": last["train_loss"], **last["valid"]})
            if stop:
                break
    except NonFiniteLoss as exc:
        result.status, result.error = "nan", str(exc)
        result.nan_step = exc.step if exc.step >= 0 else step
        result.steps = step
        result.train_seconds = time.perf_counter() - started
        return result
    result.train_seconds = time.perf_counter() - started
    result.steps = step
    if best_state is not None:
        model.load_state_dict(best_state)
    try:
        extras: dict = {}
        result.test, result.oracle_test = evaluate_split(model, cache, "test", cfg, device, oracle=True, extras=extras)
        result.test_components, result.test_diagnostics = extras["components"], extras["diagnostics"]
    except NonFiniteLoss as exc:
        result.status, result.error, result.nan_step = "nan", str(exc), step
    return result

