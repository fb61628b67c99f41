"""Cost measurements: parameter counts, throughput/latency/memory sanity, custom FLOP formulas, the environment
fingerprint (FLOPs against hand counts: test_flops.py)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent / "models"))
from tiny_cache import build_tiny_cache  # noqa: E402

from ctrbench.measure import environment, measure_cost, register_flop_formula  # noqa: E402
from ctrbench.models import build_model  # noqa: E402


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return build_tiny_cache("criteo_x1", tmp_path_factory.mktemp("measure") / "c", rows=2000)


def test_measure_cost_returns_sane_numbers(cache):
    model = build_model("dcnv2", cache.spec, cache.vocab_sizes,
                        {"embedding_dim": 4, "parallel_dnn_hidden_units": [16], "num_cross_layers": 2})
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cost = measure_cost(model, cache, 128, warmup=1, steps=3)
    emb = sum(p.numel() for p in model.embedding_parameters())
    assert cost["params"] == sum(p.numel() for p in model.parameters()) and cost["params_embedding"] == emb
    assert cost["params_dense"] == cost["params"] - emb > 0
    d_in = 39 * 4
    cross = 2 * 2 * d_in * d_in  # two full-rank cross layers' matmuls per sample
    assert cost["flops_fwd_per_sample"] >= cross
    assert cost["flops_train_per_sample"] == pytest.approx(3 * cost["flops_fwd_per_sample"], rel=0.05)
    for key in ("train_samples_per_s", "infer_samples_per_s", "step_time_p50_ms", "step_time_p90_ms",
                "peak_memory_mb"):
        assert cost[key] > 0, key
    assert cost["step_time_p90_ms"] >= cost["step_time_p50_ms"]
    assert cost["train_samples_per_s"] == pytest.approx(128 / cost["step_time_p50_ms"] * 1e3)
    assert cost["peak_memory_kind"] in ("cpu_rss_hwm", "cpu_rss_lifetime_max")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the model is untouched
    with pytest.raises(ValueError, match="fewer rows"):
        measure_cost(model, cache, 10**6)


def test_register_flop_formula_for_a_custom_op():
    lib = torch.library.Library("ctrbench_measure_test", "FRAGMENT")
    lib.define("scale3(Tensor x) -> Tensor")
    lib.impl("scale3", lambda x: x * 3, "CompositeExplicitAutograd")
    op = torch.ops.ctrbench_measure_test.scale3.default
    register_flop_formula(op, lambda x_shape, out_shape=None, **kw: 7 * x_shape[0])
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        torch.ops.ctrbench_measure_test.scale3(torch.ones(5))
    assert counter.get_total_flops() == 35


def test_environment_fingerprint():
    env = environment()
    for key in ("cpu", "cores", "torch_threads", "gpu", "python", "torch", "triton", "git_rev", "hostname",
                "platform"):
        assert key in env
    assert env["cores"] >= 1 and env["torch"] == torch.__version__
