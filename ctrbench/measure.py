"""Cost of a model: parameters, FLOPs per sample, throughput, step-time percentiles, peak memory; and the
environment fingerprint every run record carries.

- FLOPs come from `torch.utils.flop_counter.FlopCounterMode` with ctrbench's rules (ctrbench.flops): a
  multiply-add is 2 FLOPs as torch counts matmuls; element-wise arithmetic (FM's and LR's sums and products,
  cross terms) 1 per element; a lookup (torch's or the fused embedding-bag collection's) 1 per element read,
  pooled or not; interleaved attention and entropy fusion by their registered formulas; backward is what its
  ops count. Activations, softmax, normalisation, the loss and the optimizer step count 0.
  Custom ops get a formula through `register_flop_formula`.
- Throughput: batches are gathered from the cache once and held in memory, so the timed steps measure the
  model (forward; forward + backward + optimizer step), not the loader. Median over `steps` timed steps after
  `warmup` untimed ones; the training steps run on a deep copy, so the measured model is not changed.
- Peak memory: on a GPU `torch.cuda.max_memory_allocated` (tensors only) over the measured steps; on the CPU
  the process's resident-set high-water mark (VmHWM, reset through /proc/self/clear_refs before measuring
  where the kernel allows, else the process-lifetime ru_maxrss) — it includes everything resident.
"""
from __future__ import annotations

import copy
import os
import platform
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from ctrbench.data.cache import Cache
from ctrbench.data.loader import BatchLoader
from ctrbench.flops import FLOPS_NOTE, count_flops, register_flop_formula  # noqa: F401  (part of this API)
from ctrbench.models.base import CTRModel
from ctrbench.train import TrainConfig, make_optimizers, training_step


def count_params(model: torch.nn.Module) -> dict[str, int]:
    """Trainable parameters: total, in the lookup tables, elsewhere; plus frozen parameters/buffers' elements."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    emb_ids = {id(p) for p in model.embedding_parameters()} if isinstance(model, CTRModel) else set()
    emb = sum(p.numel() for p in trainable if id(p) in emb_ids)
    total = sum(p.numel() for p in trainable)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    frozen += sum(b.numel() for n, b in model.named_buffers() if n.split(".")[-1].startswith("frozen_"))
    return {"params": total, "params_embedding": emb, "params_dense": total - emb, "params_frozen": frozen}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: torch.device) -> str:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return "cuda_max_allocated"
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        return "cpu_rss_hwm"
    except OSError:
        return "cpu_rss_lifetime_max"


def _peak_mb(device: torch.device, kind: str) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    if kind == "cpu_rss_hwm":
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _time_steps(step: Callable[[object], None], batches: list, warmup: int, device: torch.device) -> np.ndarray:
    times = []
    for i, batch in enumerate(batches):
        _sync(device)
        t0 = time.perf_counter()
        step(batch)
        _sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return np.asarray(times)


def _rank0_decides(device: torch.device, world: int) -> Callable[[bool], bool]:
    """Under DDP every rank must take as many timed steps as the others: rank 0's stop decision, broadcast."""
    if world == 1:
        return lambda stop: stop

    def agree(stop: bool) -> bool:
        import torch.distributed as dist

        flag = torch.tensor([int(stop)], device=device if device.type == "cuda" else "cpu")
        dist.broadcast(flag, 0)
        return bool(flag.item())

    return agree


def measure_cost(model: CTRModel, cache: Cache, batch_size: int, *, warmup: int = 3, steps: int = 10,
                 train: TrainConfig | None = None, split: str = "train", system=None, protocol=None) -> dict:
    """Params, FLOPs per sample, train and inference samples/s and step-time percentiles, peak memory, on real
    batches of `cache` (device: the model's). A training step is the trainer's own (`train.training_step`) with
    the run's optimizers and table updates (`train`: dense, sparse or fused; None = TrainConfig's defaults).
    See the module docstring for what each number includes.
    `system` (ctrbench.cubicml.system.SystemKnobs) adds bf16 autocast; inside a torch.distributed process group
    every rank times DDP steps on its batch_size / world size rows and samples/s counts the global batch.
    `protocol` (ctrbench.cubicml.protocol.TimingProtocol) times training steps until the median is known to its
    precision instead of exactly `steps`; either way the machine's load around the timing is recorded (`load`,
    and `loaded` when other processes used the CPUs meanwhile)."""
    from ctrbench.cubicml.execution import autocast, autocast_dtype, data_parallel, rank_and_world
    from ctrbench.cubicml.protocol import LoadProbe, TimingProtocol, time_until_stable

    if steps < 1 or warmup < 0:
        raise ValueError("measure_cost needs steps >= 1 and warmup >= 0")
    device = next(model.parameters()).device
    rank, world = rank_and_world()
    if batch_size % world:
        raise ValueError(f"batch_size {batch_size} does not split into {world} processes")
    per_rank = batch_size // world
    loader = BatchLoader(cache, split, per_rank, shuffle=True, seed=0, drop_last=True, rank=rank, world_size=world)
    n = warmup + steps
    if len(loader) == 0:
        raise ValueError(f"split {split!r} has fewer rows than one batch of {batch_size}")
    batches = []
    while len(batches) < n:  # cycle through epochs if the split is small
        for b in loader:
            batches.append(b.to(device))
            if len(batches) == n:
                break
        loader.set_epoch(loader.epoch + 1)
    out: dict = dict(count_params(model))
    out["batch_size"] = batch_size
    b0 = batches[0]
    work = copy.deepcopy(model)
    out["flops_fwd_per_sample"] = count_flops(work, b0, train=False) / per_rank
    out["flops_train_per_sample"] = count_flops(work, b0, train=True) / per_rank
    out["flops_note"] = FLOPS_NOTE

    kind = _reset_peak(device)
    amp = autocast_dtype(system)
    # inference
    model_was = model.training
    model.eval()

    def infer(batch):
        with torch.inference_mode(), autocast(device, amp):
            model(batch)

    t_inf = _time_steps(infer, batches, warmup, device)
    model.train(model_was)
    # training (on the copy)
    work.train()
    cfg = train or TrainConfig()
    optimizers = make_optimizers(work, cfg)
    forward = data_parallel(work)

    def train_step(i):
        training_step(work, batches[i % len(batches)], optimizers, cfg, forward=forward, autocast_dtype=amp)

    protocol = protocol or TimingProtocol(warmup=warmup, min_steps=steps, max_steps=steps, precision=None)
    with LoadProbe() as probe:
        timing = time_until_stable(train_step, protocol, sync=lambda: _sync(device),
                                   agree=_rank0_decides(device, world))
    t_train = timing.times
    out.update(timing.summary)
    out["load"], out["loaded"] = probe.result, probe.result["loaded"]
    out["world_size"] = world
    out["peak_memory_mb"] = _peak_mb(device, kind)
    out["peak_memory_kind"] = kind
    out["train_samples_per_s"] = batch_size / float(np.median(t_train))
    out["infer_samples_per_s"] = batch_size / float(np.median(t_inf))
    out["step_time_p50_ms"] = float(np.percentile(t_train, 50) * 1e3)
    out["step_time_p90_ms"] = float(np.percentile(t_train, 90) * 1e3)
    out["infer_time_p50_ms"] = float(np.percentile(t_inf, 50) * 1e3)
    out["infer_time_p90_ms"] = float(np.percentile(t_inf, 90) * 1e3)
    out["device"] = str(device)
    out["torch_threads"] = torch.get_num_threads()
    return out


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@lru_cache(maxsize=1)
def _git_rev() -> str | None:
    root = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5)
        return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def environment() -> dict:
    """Machine and software fingerprint of this process."""
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    gpu = None
    if torch.cuda.is_available():
        gpu = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "cpu": _cpu_model(),
        "cores": usable,
        "cores_total": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": gpu,
        "cuda": torch.version.cuda,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "triton": triton_version,
        "numpy": np.__version__,
        "git_rev": _git_rev(),
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
    }
