"""pytest-benchmark suite for embedding_bag_collection (run: pytest suites/kernels/bench_embedding_bag.py).

Same cases and impls as `ctrbench kernels bench` (ctrbench.kernels.embedding_bag.bench): 26 tables x 100k
rows, D 16/64/128, batch 4096, bag size 1 and 20, uniform and Zipf ids; modes fwd, fwd+bwd+sgd,
fwd+bwd+adagrad; our FusedEmbeddingBagCollection against the concatenated F.embedding_bag, the per-table
nn.EmbeddingBag loop, FBGEMM TBE on the CPU (when fbgemm_gpu imports) and the torch.compile'd reference.
Baselines run first in each case, and every benchmark records x_vs_<baseline> (baseline median / its
median) in `extra_info`. CTRBENCH_BENCH_QUICK=1 runs the small smoke cases. Group with
`--benchmark-group-by=group`.
"""
from __future__ import annotations

import gc
import os

import pytest
import torch

from ctrbench.kernels.embedding_bag import bench as ebc_bench

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
QUICK = os.environ.get("CTRBENCH_BENCH_QUICK") == "1"
if DEVICE == "cpu":
    ebc_bench.steady_state_allocator()
CASES = ebc_bench.cases(DEVICE, QUICK)
PARAMS = [(k, maker, impl, mode) for k, c in enumerate(CASES) for maker, impl, mode in ebc_bench.plan(c, DEVICE)]
MEDIANS: dict[tuple[int, str, str], float] = {}  # (case, mode, impl) -> median ms, for the ratios
_BUILT: dict = {}  # the one (case, maker) whose tables are built


def _case_id(p):
    k, _, impl, mode = p
    c = CASES[k]
    return f"T{c.T}-E{c.E}-D{c.D}-B{c.B}-L{c.L}-{c.dist}-{mode}-{impl}"


def _fns(k: int, maker: str):
    key = (k, maker)
    if key not in _BUILT:
        _BUILT.clear()
        gc.collect()
        c = CASES[k]
        idx, offs = ebc_bench.make_ids(c, DEVICE)
        grad = torch.randn(c.B, c.T * c.D, device=DEVICE)
        _BUILT[key] = ebc_bench.make_impls(maker, c, idx, offs, grad, DEVICE)
    return _BUILT[key]


def _sync():
    if DEVICE == "cuda":
        torch.cuda.synchronize()


@pytest.mark.parametrize("param", PARAMS, ids=[_case_id(p) for p in PARAMS])
def test_embedding_bag(benchmark, param):
    k, maker, impl, mode = param
    c = CASES[k]
    fn = _fns(k, maker)[mode]

    def run():
        out = fn()
        _sync()
        return out

    benchmark.group = f"T={c.T} E={c.E} D={c.D} B={c.B} L={c.L} {c.dist} {mode}"
    benchmark.pedantic(run, rounds=10, iterations=1, warmup_rounds=2)
    median_ms = benchmark.stats.stats.median * 1e3
    MEDIANS[(k, mode, impl)] = median_ms
    timed = {(m, i): v for (kk, m, i), v in MEDIANS.items() if kk == k}
    benchmark.extra_info.update(device=DEVICE, threads=torch.get_num_threads(), impl=impl, mode=mode,
                                **{key: v for key, v in ebc_bench.speedups(mode, median_ms, timed).items()
                                   if v is not None})
    assert median_ms > 0
