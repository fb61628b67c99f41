"""A suite entry's `system:` knobs (how a run executes, not what it computes) and how they resolve into a run.

Knobs that the trainer already has a setting for resolve into it, so a run's identity does not change with the
way it was asked for: `threads` and `batch_size` into `train:`, `embedding_gradients` into
`train.sparse_embeddings` / `train.fused_embedding_optimizer`, `embedding_backend` into the model's
`params.embedding_backend`. The others (`kernel_backend`, `dtype`, `world_size`, `dist_backend`, `prefetch`,
`repeat`) are kept in the run's `system` dict, and only where they differ from the default, so suites without
`system:` keep their run identities. ctrbench's design (specs/search.md §9.11), not the CubicML paper's.
"""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

from ctrbench.errors import CtrbenchError

KERNEL_BACKENDS = ("auto", "reference", "cpp", "triton", "cuda")
GRADIENTS = {  # embedding_gradients -> (train.sparse_embeddings, train.fused_embedding_optimizer)
    "dense": (False, None),
    "sparse": (True, None),
    "fused_sgd": (False, "sgd"),
    "fused_rowwise_adagrad": (False, "rowwise_adagrad"),
}
DTYPES = {"fp32": None, "bf16": "bfloat16"}  # knob -> autocast dtype (None: no autocast)


class SystemKnobs(BaseModel):
    """The `system:` block of a suite entry (defaults, overrides and `grid: {system.X: [...]}` too)."""

    model_config = ConfigDict(extra="forbid")

    threads: Optional[int] = Field(None, ge=1, description="intra-op threads per process (train.threads)")
    batch_size: Optional[int] = Field(None, gt=0, description="global batch size, over all processes "
                                      "(train.batch_size); each of world_size processes takes batch_size/world_size")
    embedding_backend: Optional[Literal["torch", "fused"]] = Field(
        None, description="the lookup op: plain torch embedding bags or ctrbench's fused kernels "
        "(params.embedding_backend)")
    kernel_backend: Literal["auto", "reference", "cpp", "triton", "cuda"] = Field(
        "auto", description="backend of ctrbench's fused ops ($CTRBENCH_BACKEND for the run; auto: cpp on the CPU, "
        "cuda/triton on a GPU)")
    embedding_gradients: Optional[Literal["dense", "sparse", "fused_sgd", "fused_rowwise_adagrad"]] = Field(
        None, description="dense or sparse table gradients, or the fused optimizer updating the rows inside the "
        "backward (train.sparse_embeddings / train.fused_embedding_optimizer)")
    dtype: Literal["fp32", "bf16"] = Field("fp32", description="fp32, or bf16 autocast of forward and loss")
    world_size: int = Field(1, ge=1, description="data-parallel processes (torch.distributed DDP, started as "
                            "torchrun starts them: world_size processes x threads threads)")
    dist_backend: Literal["auto", "gloo", "nccl"] = Field("auto", description="process-group backend (auto: nccl "
                                                          "on CUDA, gloo on the CPU)")
    prefetch: int = Field(0, ge=0, description="batches the training loader builds ahead in a background thread")
    repeat: int = Field(0, ge=0, description="a repeat index: the same config measured again as its own run "
                        "(the performance dataset's noise floor)")


RUN_KNOBS = ("kernel_backend", "dtype", "world_size", "dist_backend", "prefetch", "repeat")  # kept in run.system


class KnobError(CtrbenchError, ValueError):
    """A system knob that conflicts with the run's other settings; `key` is the knob (or train/params key) at fault,
    `section` where it sits ("system", "train" or "params"), so the suite loader can point at its YAML line."""

    def __init__(self, section: str, key: str, message: str):
        self.section, self.key = section, key
        super().__init__(message)


def resolve_system(knobs: SystemKnobs, train: dict, params: dict) -> tuple[dict, dict, dict]:
    """(train, params, run_system): the train settings and model params with the knobs that map onto them applied,
    and the run-level knobs that differ from their defaults. A knob that contradicts an explicit train or params
    setting is a KnobError, never a silent override."""
    train, params = dict(train), dict(params)

    def put(section: dict, name: str, key: str, value, knob: str) -> None:
        if key in section and section[key] != value:
            raise KnobError("system", knob, f"system.{knob} sets {name}.{key} to {value!r}, but {name}.{key} is "
                            f"{section[key]!r}; set it in one place")
        section[key] = value

    if knobs.threads is not None:
        put(train, "train", "threads", knobs.threads, "threads")
    if knobs.batch_size is not None:
        put(train, "train", "batch_size", knobs.batch_size, "batch_size")
    if knobs.embedding_backend is not None:
        put(params, "params", "embedding_backend", knobs.embedding_backend, "embedding_backend")
    if knobs.embedding_gradients is not None:
        sparse, fused = GRADIENTS[knobs.embedding_gradients]
        put(train, "train", "sparse_embeddings", sparse, "embedding_gradients")
        put(train, "train", "fused_embedding_optimizer", fused, "embedding_gradients")
        if fused is not None:
            if params.get("embedding_backend", "fused") != "fused":
                raise KnobError("system", "embedding_gradients", f"embedding_gradients {knobs.embedding_gradients!r} "
                                "needs embedding_backend 'fused' (the fused kernels update the rows), not "
                                f"{params['embedding_backend']!r}")
    if knobs.world_size > 1:
        if train.get("fused_embedding_optimizer") is not None:
            raise KnobError("system", "world_size", "world_size > 1 cannot use a fused embedding optimizer: each "
                            "process would update its tables inside its backward, before DDP averages the "
                            "gradients; use embedding_gradients dense or sparse")
        batch = train.get("batch_size", 2048)
        if batch % knobs.world_size:
            raise KnobError("system", "batch_size" if knobs.batch_size is not None else "world_size",
                            f"the global batch size {batch} does not split into world_size {knobs.world_size} "
                            "equal per-process batches")
    if knobs.kernel_backend in ("triton", "cuda") and not str(train.get("device", "cpu")).startswith(("cuda", "auto")):
        raise KnobError("system", "kernel_backend", f"kernel_backend {knobs.kernel_backend!r} runs on a GPU; this "
                        f"run's train.device is {train.get('device', 'cpu')!r}")
    if knobs.dist_backend == "nccl" and not str(train.get("device", "cpu")).startswith(("cuda", "auto")):
        raise KnobError("system", "dist_backend", "dist_backend 'nccl' needs CUDA devices; use gloo on the CPU")
    defaults = SystemKnobs()
    run = {k: getattr(knobs, k) for k in RUN_KNOBS if getattr(knobs, k) != getattr(defaults, k)}
    return train, params, run


def run_knobs(system: dict) -> SystemKnobs:
    """The knobs a run's `system` dict holds (its run-level ones; the others already live in train/params)."""
    return SystemKnobs(**{k: v for k, v in system.items() if k in RUN_KNOBS})


def protocol_of(system: dict):
    """The timing protocol a run's `system` dict asks for (suite `measure: {precision, max_steps}`), or None for the
    fixed `measure_steps` timed steps."""
    if system.get("measure_precision") is None:
        return None
    from ctrbench.cubicml.protocol import TimingProtocol

    steps = system.get("measure_steps", 10)
    return TimingProtocol(warmup=system.get("measure_warmup", 3), min_steps=steps,
                          precision=system["measure_precision"], max_steps=system.get("measure_max_steps", 20 * steps))
