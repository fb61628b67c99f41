"""pytest-benchmark suite for entropy_weighted_fusion (run: pytest suites/kernels/bench_entropy_fusion.py).

Same shapes and providers as `ctrbench kernels bench` (ctrbench.kernels.entropy_fusion.bench): B up to 1M,
K = 2, 4, 8, forward and forward+backward, every backend available here against the eager and (on the CPU)
the torch.compile'd reference. Compare providers with `--benchmark-group-by=param:B,param:K,param:mode`.
"""
from __future__ import annotations

import pytest
import torch

from ctrbench.kernels.entropy_fusion.bench import MEMBERS, SIZES, providers

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
PROVIDERS = providers(DEVICE)


def _sync():
    if DEVICE == "cuda":
        torch.cuda.synchronize()


@pytest.mark.parametrize("provider", list(PROVIDERS))
@pytest.mark.parametrize("mode", ["fwd", "fwd+bwd"])
@pytest.mark.parametrize("K", MEMBERS)
@pytest.mark.parametrize("B", SIZES)
def test_entropy_fusion(benchmark, B, K, mode, provider):
    f = PROVIDERS[provider]
    x = torch.randn(B, K, device=DEVICE) * 3.0
    tau = torch.tensor(0.5, device=DEVICE, requires_grad=True)
    gf = torch.randn(B, device=DEVICE)
    benchmark.group = f"B={B} K={K} {mode}"
    benchmark.extra_info.update(device=DEVICE, threads=torch.get_num_threads())

    if mode == "fwd":
        def run():
            with torch.no_grad():
                out = f(x, tau)
            _sync()
            return out
    else:
        xg = x.clone().requires_grad_(True)

        def run():
            fused, _ = f(xg, tau)
            grads = torch.autograd.grad(fused, (xg, tau), gf)
            _sync()
            return grads

    result = benchmark.pedantic(run, rounds=10, iterations=1, warmup_rounds=2)
    assert result is not None
