"""How the trainer and the cost measurement apply a run's system knobs: data parallelism (DDP over the process
group torchrun-style launches set up), bf16 autocast, the loader's prefetch and the kernel backend."""
from __future__ import annotations

import os
import queue
import threading
from contextlib import contextmanager, nullcontext
from typing import Iterable, Iterator

import torch

from ctrbench.cubicml.system import DTYPES, SystemKnobs


def rank_and_world() -> tuple[int, int]:
    """(rank, world size) of this process: (0, 1) outside an initialised torch.distributed process group."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def data_parallel(model: torch.nn.Module) -> torch.nn.Module:
    """The module a training step calls: `model` wrapped in DistributedDataParallel inside a process group of more
    than one process (gradients averaged over the ranks in the backward), else `model` itself. Unused parameters
    are allowed (models skip parts on some datasets), at the cost of a graph walk per step."""
    _, world = rank_and_world()
    if world == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    device = next(model.parameters()).device
    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)


def autocast_dtype(knobs: SystemKnobs | None) -> torch.dtype | None:
    """The autocast dtype of a run (None: full fp32)."""
    name = DTYPES[knobs.dtype] if knobs is not None else None
    return getattr(torch, name) if name else None


def autocast(device: torch.device, dtype: torch.dtype | None):
    """torch.autocast on `device` in `dtype`, or nothing for fp32."""
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


@contextmanager
def kernel_backend(knobs: SystemKnobs | None):
    """$CTRBENCH_BACKEND set to the run's kernel backend while the block runs ('auto': left as it is)."""
    from ctrbench.kernels.backend import ENV_VAR

    if knobs is None or knobs.kernel_backend == "auto":
        yield
        return
    old = os.environ.get(ENV_VAR)
    os.environ[ENV_VAR] = knobs.kernel_backend
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(ENV_VAR, None)
        else:
            os.environ[ENV_VAR] = old


_DONE = object()


def prefetched(batches: Iterable, ahead: int) -> Iterator:
    """Iterate `batches`, building up to `ahead` of them in a background thread (0: in the caller's thread).
    An error in the thread is raised in the caller at the batch where it happened; leaving the loop early stops
    the thread at its next batch."""
    if ahead <= 0:
        yield from batches
        return
    q: queue.Queue = queue.Queue(maxsize=ahead)
    stop = threading.Event()

    def fill() -> None:
        try:
            for b in batches:
                while not stop.is_set():
                    try:
                        q.put(b, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(_DONE)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            q.put(exc)

    thread = threading.Thread(target=fill, name="ctrbench-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)
