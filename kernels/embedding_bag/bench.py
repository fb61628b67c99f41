"""Timings of embedding_bag_collection against the stock ways of doing the same work, in one run.

`bench(device, quick)` returns one row per (case, mode, impl): median / p20 / p80 milliseconds, GB/s of the
bytes the op must move and that as a fraction of this machine's copy bandwidth (a large tensor copy timed
in the same run), and speed-ups x_vs_<baseline> = baseline ms / impl ms.

Cases: T tables x E rows x D, batch B, bag size L (fixed), ids uniform or Zipf(1.0) over a random row
order; feature-major offsets (TBE/KJT layout). Modes:
- "fwd": pooled lookup only (no autograd);
- "fwd+bwd+sgd": forward, backward of a fixed output gradient, and an exact SGD step on the touched rows;
- "fwd+bwd+adagrad": the same with row-wise Adagrad (FBGEMM's rule; torch's element-wise Adagrad is shown
  as "per_table_sparse_adagrad_elementwise", a different optimizer with the same cost shape).
Impls on the CPU:
- ebc_<backend>: FusedEmbeddingBagCollection (fused optimizer in its backward);
- concat: one F.embedding_bag / nn.EmbeddingBag(sparse=True) + torch.optim.SGD over a concatenated table
  (ids shifted per table outside the timing; output [F*B, D], i.e. without the permute to [B, F*D]); on the
  CPU its table sits on the same transparent-huge-page memory the ebc module gives its weights (hugepages.py),
  so the two compare kernels on equal memory, not page sizes;
- per_table: 26 nn.EmbeddingBag modules looped, outputs concatenated (TorchRec's unsharded EBC);
- fbgemm_tbe: FBGEMM SplitTableBatchedEmbeddingBagsCodegen, HOST / CPU, EXACT_SGD / EXACT_ROWWISE_ADAGRAD
  (optional: `make extras`; rows are missing when fbgemm_gpu does not import);
- reference_compiled: the PyTorch reference under torch.compile (dense weight gradient + SGD step).
On CUDA the impls are ebc_cuda, ebc_triton, concat, per_table and the eager reference, timed with
triton.testing.do_bench. GB/s counts: forward = ids' rows read + output written; backward adds the output
gradient read and every touched row read and written (+ its momentum for Adagrad).
"""
from __future__ import annotations

import gc
from dataclasses import dataclass, replace
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ctrbench.kernels.backend import backend_status
from ctrbench.kernels.bench_util import copy_bandwidth_gbps, sig, steady_state_allocator, time_round_robin
from ctrbench.kernels.embedding_bag import reference as ref
from ctrbench.kernels.embedding_bag.hugepages import empty_huge
from ctrbench.kernels.embedding_bag.module import EmbeddingBagConfig, FusedEmbeddingBagCollection

OP = "embedding_bag"
LR = 1e-3


@dataclass(frozen=True)
class Case:
    T: int
    E: int
    D: int
    B: int
    L: int
    zipf: bool = False
    modes: tuple[str, ...] = ("fwd", "fwd+bwd+sgd", "fwd+bwd+adagrad")
    compiled: bool = False  # also time the torch.compile'd reference (compiles take tens of seconds)
    per_table: bool = True  # also time the per-table nn.EmbeddingBag loop
    elementwise_adagrad: bool = False  # ... and its sparse torch.optim.Adagrad step (~0.8 s per call)

    @property
    def dist(self) -> str:
        return "zipf1.0" if self.zipf else "uniform"


def cases(device: str, quick: bool) -> list[Case]:
    if quick:
        return [Case(8, 20_000, 64, 1024, 1, modes=("fwd", "fwd+bwd+sgd")),
                Case(8, 20_000, 64, 1024, 20, modes=("fwd", "fwd+bwd+sgd"))]
    big = 100_000
    full = dict(per_table=True, compiled=device == "cpu")
    return [
        Case(26, big, 64, 4096, 1, **full),
        Case(26, big, 64, 4096, 20, elementwise_adagrad=True, **full),
        Case(26, big, 64, 4096, 1, zipf=True, per_table=False),
        Case(26, big, 64, 4096, 20, zipf=True, per_table=False),
        Case(26, big, 16, 4096, 20, modes=("fwd", "fwd+bwd+sgd"), per_table=False),
        Case(26, big, 128, 4096, 20, modes=("fwd", "fwd+bwd+sgd"), per_table=False),
    ]


def make_ids(c: Case, device: str, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Table-local ids [T*B*L] (feature-major) and offsets [T*B+1] with every bag of size L."""
    g = torch.Generator().manual_seed(seed)
    n = c.T * c.B * c.L
    if c.zipf:
        probs = 1.0 / torch.arange(1, c.E + 1, dtype=torch.float64)
        ranks = torch.multinomial(probs, n, replacement=True, generator=g)
        idx = torch.randperm(c.E, generator=g)[ranks]
    else:
        idx = torch.randint(0, c.E, (n,), generator=g)
    offs = torch.arange(0, n + 1, c.L, dtype=torch.int64)
    return idx.to(device), offs.to(device)


def bytes_moved(c: Case, idx: torch.Tensor, mode: str, elem: int = 4) -> int:
    fwd = (idx.numel() * c.D + c.B * c.T * c.D) * elem
    if mode == "fwd":
        return fwd
    gid = idx.view(c.T, -1) + torch.arange(c.T, device=idx.device)[:, None] * c.E
    touched = int(torch.unique(gid).numel())
    bwd = c.B * c.T * c.D * elem + 2 * touched * c.D * elem + (2 * touched * 4 if mode.endswith("adagrad") else 0)
    return fwd + bwd


# ---------------------------------------------------------------------------------------------- impls
# Each maker returns {mode: fn} for one case; fn runs one timed call. Tensors are built once per case.


def _module_call(m: Callable, mode: str, idx, offs, grad) -> Callable:
    """One timed call of a module m(idx, offs) whose backward steps its own optimizer: a no-grad forward for
    "fwd", else forward + backward of `grad`."""
    if mode == "fwd":
        def fwd():
            with torch.no_grad():
                return m(idx, offs)
        return fwd

    def step():
        m(idx, offs).backward(grad)
    return step


def _ebc_impls(c: Case, idx, offs, grad, backend: str, device: str) -> dict[str, Callable]:
    out = {}
    for mode in c.modes:
        opt = {"fwd": "none", "fwd+bwd+sgd": "sgd", "fwd+bwd+adagrad": "rowwise_adagrad"}[mode]
        m = FusedEmbeddingBagCollection.from_sizes([f"t{t}" for t in range(c.T)], [c.E] * c.T, c.D, optimizer=opt,
                                                   lr=LR, backend=backend, device=device)
        out[mode] = _module_call(m, mode, idx, offs, grad)
    return out


def _like_ebc_memory(weight: torch.Tensor) -> torch.Tensor:
    """`weight` copied onto huge-page memory where FusedEmbeddingBagCollection would put its own (CPU, >= 32 MB)."""
    if weight.device.type != "cpu":
        return weight
    huge = empty_huge(weight.shape[0], weight.shape[1], weight.dtype)
    return weight if huge is None else huge.copy_(weight)


def _concat_impls(c: Case, idx, offs, grad, device: str) -> dict[str, Callable]:
    gid = (idx.view(c.T, -1) + torch.arange(c.T, device=device)[:, None] * c.E).reshape(-1)
    starts = offs[:-1]
    out = {}
    if "fwd" in c.modes:
        weight = _like_ebc_memory(torch.rand(c.T * c.E, c.D, device=device))

        def fwd():
            return F.embedding_bag(gid, weight, starts, mode="sum")
        out["fwd"] = fwd
    if "fwd+bwd+sgd" in c.modes:
        bag = nn.EmbeddingBag(c.T * c.E, c.D, mode="sum", sparse=True, device=device)
        bag.weight = nn.Parameter(_like_ebc_memory(bag.weight.detach()))
        opt = torch.optim.SGD(bag.parameters(), lr=LR)
        grad_fm = grad.view(c.B, c.T, c.D).transpose(0, 1).reshape(c.T * c.B, c.D).contiguous()

        def step():
            opt.zero_grad(set_to_none=True)
            bag(gid, starts).backward(grad_fm)
            opt.step()
        out["fwd+bwd+sgd"] = step
    return out


def _per_table_impls(c: Case, idx, offs, grad, device: str) -> dict[str, Callable]:
    n = c.B * c.L
    ids = [idx[t * n:(t + 1) * n] for t in range(c.T)]
    starts = [offs[t * c.B:(t + 1) * c.B] - offs[t * c.B] for t in range(c.T)]
    out = {}

    def make(sparse: bool):
        return nn.ModuleList(nn.EmbeddingBag(c.E, c.D, mode="sum", sparse=sparse, device=device) for _ in range(c.T))

    def run(bags):
        return torch.cat([bags[t](ids[t], starts[t]) for t in range(c.T)], 1)

    if "fwd" in c.modes:
        bags_f = make(False)

        def fwd():
            with torch.no_grad():
                return run(bags_f)
        out["fwd"] = fwd
    for mode, optim in (("fwd+bwd+sgd", torch.optim.SGD), ("fwd+bwd+adagrad", torch.optim.Adagrad)):
        if mode not in c.modes or (mode == "fwd+bwd+adagrad" and not c.elementwise_adagrad):
            continue
        bags = make(True)
        opt = optim(bags.parameters(), lr=LR)

        def step(bags=bags, opt=opt):
            opt.zero_grad(set_to_none=True)
            run(bags).backward(grad)
            opt.step()
        out[mode] = step
    return out


def _tbe_impls(c: Case, idx, offs, grad) -> dict[str, Callable]:
    try:
        from fbgemm_gpu.split_embedding_configs import EmbOptimType
        from fbgemm_gpu.split_table_batched_embeddings_ops_common import EmbeddingLocation
        from fbgemm_gpu.split_table_batched_embeddings_ops_training import (
            ComputeDevice,
            SplitTableBatchedEmbeddingBagsCodegen,
        )
    except Exception:  # optional peer (`make extras`); absent -> no rows
        return {}
    specs = [(c.E, c.D, EmbeddingLocation.HOST, ComputeDevice.CPU)] * c.T
    out = {}
    for mode, opt in (("fwd", EmbOptimType.EXACT_SGD), ("fwd+bwd+sgd", EmbOptimType.EXACT_SGD),
                      ("fwd+bwd+adagrad", EmbOptimType.EXACT_ROWWISE_ADAGRAD)):
        if mode not in c.modes:
            continue
        tbe = SplitTableBatchedEmbeddingBagsCodegen(specs, optimizer=opt, learning_rate=LR, eps=1e-8)
        out[mode] = _module_call(tbe, mode, idx, offs, grad)
    return out


def _compiled_impls(c: Case, idx, offs, grad, device: str) -> dict[str, Callable]:
    to = torch.arange(c.T + 1, dtype=torch.int64, device=device) * c.E
    fwd_c = torch.compile(ref.forward, dynamic=False)
    weight = torch.rand(c.T * c.E, c.D, device=device)
    out = {}
    if "fwd" in c.modes:
        def fwd():
            with torch.no_grad():
                return fwd_c(weight, to, idx, offs)
        out["fwd"] = fwd
    if "fwd+bwd+sgd" in c.modes:
        w = nn.Parameter(torch.rand(c.T * c.E, c.D, device=device))
        opt = torch.optim.SGD([w], lr=LR)

        def step():
            opt.zero_grad(set_to_none=True)
            fwd_c(w, to, idx, offs).backward(grad)
            opt.step()
        out["fwd+bwd+sgd"] = step
    return out


def _eager_reference_impls(c: Case, idx, offs, grad, device: str) -> dict[str, Callable]:
    to = torch.arange(c.T + 1, dtype=torch.int64, device=device) * c.E
    weight = torch.rand(c.T * c.E, c.D, device=device)
    out = {}
    if "fwd" in c.modes:
        def fwd():
            with torch.no_grad():
                return ref.forward(weight, to, idx, offs)
        out["fwd"] = fwd
    m = torch.zeros(c.T * c.E, device=device)
    for mode, opt in (("fwd+bwd+sgd", "sgd"), ("fwd+bwd+adagrad", "rowwise_adagrad")):
        if mode in c.modes:
            def step(opt=opt):
                ref.forward(weight, to, idx, offs)
                ref.fused_update_(weight, m, grad, to, idx, offs, optimizer=opt, lr=LR)
            out[mode] = step
    return out


# ---------------------------------------------------------------------------------------------- driver


def _tbe_available() -> bool:
    try:
        import fbgemm_gpu  # noqa: F401
    except Exception:
        return False
    return True


def plan(c: Case, device: str) -> list[tuple[str, str, str]]:
    """(maker, impl, mode) in timing order: the baselines of each mode come before the impls compared with them."""
    out: list[tuple[str, str, str]] = []

    def add(maker, impl, modes):
        out.extend((maker, impl, m) for m in c.modes if m in modes)

    add("concat", "concat", ("fwd", "fwd+bwd+sgd"))
    if device == "cpu" and _tbe_available():
        add("fbgemm_tbe", "fbgemm_tbe", c.modes)
    if c.per_table:
        add("per_table", "per_table", ("fwd", "fwd+bwd+sgd"))
        if c.elementwise_adagrad:
            add("per_table", "per_table_sparse_adagrad_elementwise", ("fwd+bwd+adagrad",))
    if device == "cpu" and c.compiled:
        add("reference_compiled", "reference_compiled", ("fwd", "fwd+bwd+sgd"))
    if device != "cpu":
        add("reference", "reference", c.modes)
    avail = [s.name for s in backend_status(device) if s.available]
    for backend in ("cpp", "cuda", "triton"):
        if backend in avail and not (backend == "triton" and device == "cpu"):
            add(f"ebc_{backend}", f"ebc_{backend}", c.modes)
    return out


def make_impls(maker: str, c: Case, idx, offs, grad, device: str) -> dict[str, Callable]:
    """{mode: fn} of one maker for one case (modules and tables built here, once)."""
    if maker.startswith("ebc_"):
        return _ebc_impls(c, idx, offs, grad, maker[4:], device)
    return {"concat": lambda: _concat_impls(c, idx, offs, grad, device),
            "per_table": lambda: _per_table_impls(c, idx, offs, grad, device),
            "fbgemm_tbe": lambda: _tbe_impls(c, idx, offs, grad),
            "reference_compiled": lambda: _compiled_impls(c, idx, offs, grad, device),
            "reference": lambda: _eager_reference_impls(c, idx, offs, grad, device)}[maker]()


BASELINES = ("concat", "per_table", "fbgemm_tbe", "reference_compiled", "reference")


def speedups(mode: str, ms: float, timings: dict[tuple[str, str], float]) -> dict[str, float | None]:
    """x_vs_<baseline> = baseline ms / ms for every baseline timed for this mode."""
    return {f"x_vs_{b}": (sig(timings[(mode, b)] / ms, 3) if (mode, b) in timings else None) for b in BASELINES}


def _bench_case(c: Case, device: str, copy_gbps: float) -> list[dict]:
    idx, offs = make_ids(c, device)
    grad = torch.randn(c.B, c.T * c.D, device=device)
    timings: dict[tuple[str, str], tuple[float, float, float]] = {}
    steps = plan(c, device)
    for mode in c.modes:  # every impl of one mode built at once and timed in turns
        one = replace(c, modes=(mode,))
        fns = {}
        for maker, impl, m in steps:
            if m == mode:
                fns[impl] = make_impls(maker, one, idx, offs, grad, device)[mode]
        for impl, t in time_round_robin(fns, device).items():
            timings[(mode, impl)] = t
        del fns
        gc.collect()
    medians = {k: v[0] for k, v in timings.items()}
    rows = []
    nbytes = {mode: bytes_moved(c, idx, mode) for mode in c.modes}
    for (mode, impl), (p50, p20, p80) in timings.items():
        gbps = nbytes[mode] / (p50 * 1e-3) / 1e9
        row = {"op": OP, "device": device, "T": c.T, "E": c.E, "D": c.D, "B": c.B, "L": c.L, "ids": c.dist,
               "mode": mode, "impl": impl, "ms_p50": sig(p50, 4), "ms_p20": sig(p20, 4), "ms_p80": sig(p80, 4),
               "GBps": sig(gbps, 3), "frac_of_copy": sig(gbps / copy_gbps, 3)}
        row.update(speedups(mode, p50, medians))
        row["copy_GBps"] = sig(copy_gbps, 3)
        row["threads"] = torch.get_num_threads()
        rows.append(row)
    return rows


def bench(device: str = "cpu", quick: bool = False) -> list[dict]:
    """Rows as described in the module docstring."""
    torch.manual_seed(0)
    if device == "cpu":
        steady_state_allocator()
    copy_gbps = copy_bandwidth_gbps(device)
    rows: list[dict] = []
    for c in cases(device, quick):
        rows += _bench_case(c, device, copy_gbps)
        gc.collect()
    # drop the x_vs_* columns no row uses (e.g. the compiled reference outside its cases)
    used = {k for r in rows for k, v in r.items() if k.startswith("x_vs_") and v is not None}
    return [{k: v for k, v in r.items() if not k.startswith("x_vs_") or k in used} for r in rows]
