"""Supernet warm-up on a data budget (specs/search.md §3.1, §9.5): a NASRec supernet trained for `epochs` epochs
(NASRec: one) on the first `fraction` of the training rows, sampling a path per step. 0% is the supernet at
initialisation (zero-shot), 100% the one-shot supernet; SiGeo's sub-one-shot levels lie between. The budget is
rows, not steps: NASRec's full-path warm-up (`warmup_steps`, full path with probability 1 - step / T) is set once
from the 100% budget (`full_path_share` x its steps; NASRec's Criteo scripts use T = 15,000 of ~71,600 steps, about
0.2) and kept at every level, so a 1% warm-up trains an almost-full-path supernet, as in the authors' runs.

The optimizer and learning rates are the trainer's (ctrbench.train: make_optimizers, training_step), set here to
CTR-NAS-Bench's recipe (suites/nasbench_small.yaml: Adam, lr 3e-3, embedding lr 3e-2, embedding L2 3e-3) at
NASRec's supernet batch of 512. The seconds of the training loop are recorded (the cost of a warm-up level).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import time
from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from ctrbench.data.loader import BatchLoader
from ctrbench.models.registry import build_model, model_tables
from ctrbench.train import TrainConfig, make_optimizers, training_step


class WarmupConfig(BaseModel):
    """One warm-up: which supernet, on what share of the training rows, trained how."""

    model_config = ConfigDict(extra="forbid")
    space: Literal["small", "full", "xlarge_zeros"] = "small"
    scale: float = Field(0.125, gt=0, le=1)
    fraction: float = Field(ge=0, le=1, description="share of the training rows (the data budget)")
    epochs: int = Field(1, ge=1)
    batch_size: int = Field(512, gt=0)
    optimizer: Literal["adam", "adagrad"] = "adam"
    lr: float = Field(3e-3, gt=0)
    embedding_lr: float | None = Field(3e-2, gt=0)
    embedding_l2: float = Field(3e-3, ge=0)
    full_path_share: float = Field(0.2, ge=0, le=1, description="NASRec's full-path decay length, as a share of "
                                   "the 100% budget's steps")
    seed: int = 0
    model_params: dict = Field(default_factory=dict, description="extra supernet params (e.g. numeric_norm)")

    def key(self) -> str:
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:16]


class WarmupResult(BaseModel):
    fraction: float
    rows: int  # the training rows the supernet saw (the first `rows` of the split)
    steps: int
    seconds: float  # wall time of the training loop
    cpu_seconds: float | None = None  # this process's CPU time over the loop (robust to a shared box)
    mean_loss: float | None = None  # mean training loss of the last epoch


def budget_rows(train_rows: int, fraction: float) -> int:
    """The rows a warm-up of `fraction` trains on."""
    return int(round(fraction * train_rows))


def build_supernet(cache, cfg: WarmupConfig):
    train_rows = cache.split("train").rows
    full_steps = cfg.epochs * math.ceil(train_rows / cfg.batch_size)
    params = {**cfg.model_params, "space": cfg.space, "scale": cfg.scale, "path_seed": cfg.seed,
              "warmup_steps": int(round(cfg.full_path_share * full_steps))}
    return build_model("nasrec_supernet", cache.spec, cache.vocab_sizes, params, model_tables(cache), seed=cfg.seed)


def warm_up(cache, cfg: WarmupConfig):
    """(the supernet in eval mode, WarmupResult) after training on the first budget_rows of the train split."""
    sup = build_supernet(cache, cfg)
    rows = budget_rows(cache.split("train").rows, cfg.fraction)
    steps, seen, loss_sum, n = 0, 0, 0.0, 0
    t0, c0 = time.perf_counter(), time.process_time()
    if rows:
        train = TrainConfig(optimizer=cfg.optimizer, lr=cfg.lr, embedding_lr=cfg.embedding_lr,
                            embedding_l2=cfg.embedding_l2, batch_size=cfg.batch_size, seed=cfg.seed)
        optimizers = make_optimizers(sup, train)
        loader = BatchLoader(cache, "train", cfg.batch_size, shuffle=True, seed=cfg.seed, max_rows=rows)
        sup.train()
        for epoch in range(cfg.epochs):
            loader.set_epoch(epoch)
            seen, loss_sum, n = 0, 0.0, 0
            for batch in loader:
                loss_sum += float(training_step(sup, batch, optimizers, train))
                seen, n, steps = seen + batch.batch_size, n + 1, steps + 1
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    return sup.eval(), WarmupResult(fraction=cfg.fraction, rows=seen, steps=steps, seconds=seconds, cpu_seconds=cpu,
                                    mean_loss=loss_sum / n if n else None)


def cached_warm_up(cache, cfg: WarmupConfig, folder: str | os.PathLike):
    """warm_up, kept in `folder` (state dict + result JSON, keyed by the config and the dataset) so a resumed
    scoring job reuses the supernet it scored with; the recorded seconds are the original warm-up's."""
    folder = Path(folder)
    tag = hashlib.sha256(f"{cache.path}|{cfg.key()}".encode()).hexdigest()[:16]
    weights, meta = folder / f"supernet-{tag}.pt", folder / f"supernet-{tag}.json"
    if weights.is_file() and meta.is_file():
        sup = build_supernet(cache, cfg)
        sup.load_state_dict(torch.load(weights, weights_only=True))
        return sup.eval(), WarmupResult(**json.loads(meta.read_text()))
    sup, result = warm_up(cache, cfg)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = weights.with_suffix(".tmp")
    torch.save(sup.state_dict(), tmp)
    os.replace(tmp, weights)
    meta.write_text(result.model_dump_json())
    return sup, result
