"""FLOP counts (ctrbench.flops) against hand counts: LR, FM, DNN, an embedding-bag lookup on the torch and the fused
paths, interleaved attention, entropy fusion; and every registered model counts more than 0 FLOPs."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).parent / "models"))
from tiny_cache import build_tiny_cache  # noqa: E402

from ctrbench.data.loader import BatchLoader  # noqa: E402
from ctrbench.flops import count_flops, count_flops_by_op, flop_counter_mode  # noqa: E402
from ctrbench.kernels.embedding_bag import embedding_bag_collection, embedding_bag_collection_fused  # noqa: E402
from ctrbench.kernels.entropy_fusion import entropy_weighted_fusion  # noqa: E402
from ctrbench.kernels.interleaved_attention import interleaved_attention  # noqa: E402
from ctrbench.models import MODELS, build_model, model_tables  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

B = 8
N_CAT, N_NUM = 26, 13  # criteo_x1's fields
N_FIELDS = N_CAT + N_NUM


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    root = tmp_path_factory.mktemp("flops")
    return {name: build_tiny_cache(name, root / name, rows=300) for name in ("criteo_x1", "amazonelectronics_x1")}


def _batch(cache, n=B):
    return next(iter(BatchLoader(cache, "train", n)))


def _flops(fn, counter=None) -> dict[str, int]:
    """{op: FLOPs} of fn() under `counter` (default: ctrbench's, flop_counter_mode())."""
    counter = counter or flop_counter_mode()
    with counter:
        fn()
    return {str(op): n for op, n in counter.get_flop_counts().get("Global", {}).items() if n}


def _registered_flops(fn) -> int:
    """FLOPs of fn() under a bare FlopCounterMode: torch's formulas plus the ones registered for ctrbench ops."""
    return sum(_flops(fn, FlopCounterMode(display=False)).values())


def _model(cache, name, **params):
    return build_model(name, cache.spec, cache.vocab_sizes, {"embedding_backend": "torch", **params},
                       model_tables(cache), seed=0)


def test_lr_counts_its_lookups_and_its_sum(caches):
    # per sample: 26 lookups of 1-d weights (26), the numeric fields' value x weight (13), the sum of the 39
    # terms (38 adds) and the bias (1)
    model = _model(caches["criteo_x1"], "lr")
    assert count_flops(model, _batch(caches["criteo_x1"]), train=False) == B * (N_CAT + N_NUM + (N_FIELDS - 1) + 1)


def test_fm_counts_its_interaction(caches):
    d = 4
    model = _model(caches["criteo_x1"], "fm", embedding_dim=d)
    linear = N_CAT + N_NUM + (N_FIELDS - 1) + 1
    fields = N_CAT * d + N_NUM * d  # the d-dim lookups and numeric value x vector
    # 0.5·Σ_d((Σ_i e_i)² − Σ_i e_i²): Σ_i (38d adds), square (d), e_i² (39d), Σ_i (38d), minus (d), Σ_d (d-1),
    # x 0.5 (1); then linear + second order (1)
    second = (N_FIELDS - 1) * d + d + N_FIELDS * d + (N_FIELDS - 1) * d + d + (d - 1) + 1
    assert count_flops(model, _batch(caches["criteo_x1"]), train=False) == B * (linear + fields + second + 1)


def test_dnn_counts_matmuls_and_lookups(caches):
    d, h = 4, 8
    cache = caches["criteo_x1"]
    inputs = N_CAT * d + N_NUM * d  # lookups + numeric value x vector
    linear = _model(cache, "dnn", embedding_dim=d, hidden_units=[])
    assert count_flops(linear, _batch(cache), train=False) == B * (inputs + 2 * N_FIELDS * d)
    by_op = count_flops_by_op(linear, _batch(cache), train=True)
    # backward: the Linear's input and weight gradients (2 matmuls) and the lookups' weight gradient
    assert by_op["aten.mm"] == 2 * by_op["aten.addmm"] == B * 4 * N_FIELDS * d
    assert by_op["aten._embedding_bag_backward"] == by_op["aten._embedding_bag"] == B * N_CAT * d
    hidden = _model(cache, "dnn", embedding_dim=d, hidden_units=[h])
    assert count_flops(hidden, _batch(cache), train=False) == B * (inputs + 2 * (N_FIELDS * d * h + h))
    # the fused embedding path counts the same lookups and lookup gradients as the torch path
    fused = count_flops_by_op(_model(cache, "dnn", embedding_dim=d, hidden_units=[], embedding_backend="fused"),
                              _batch(cache), train=True)
    assert fused["ctrbench.embedding_bag_collection"] == fused["ctrbench.ebc_grad_rows"] == B * N_CAT * d


@pytest.mark.parametrize("backend", ["reference", "cpp"])
def test_embedding_bag_lookup_counts_the_same_on_the_torch_and_fused_paths(backend):
    rows, d, feats = 50, 4, 3
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, rows, (feats * B * 2,), generator=g)  # 2 ids per bag
    offsets = torch.arange(0, ids.numel() + 1, 2)
    w = torch.randn(rows, d, requires_grad=True)
    psw = torch.rand(ids.numel())
    lookup = ids.numel() * d  # 1 FLOP per element read; its weight gradient the same

    def torch_path():
        F.embedding_bag(ids, w, offsets[:-1], mode="sum", per_sample_weights=psw).sum().backward()

    def fused_path():
        table_offsets = torch.tensor([0, rows])
        feature_table = torch.zeros(feats, dtype=torch.int64)
        embedding_bag_collection(w, table_offsets, ids, offsets, psw, feature_table=feature_table,
                                 backend=backend).sum().backward()

    def fused_optimizer_path():
        wf = w.detach().clone().requires_grad_()
        embedding_bag_collection_fused(wf, torch.empty(0), torch.tensor([0, rows]), ids, offsets, psw,
                                       feature_table=torch.zeros(feats, dtype=torch.int64), optimizer="sgd",
                                       backend=backend).sum().backward()

    torch_ops, fused_ops, fused_opt_ops = _flops(torch_path), _flops(fused_path), _flops(fused_optimizer_path)
    assert torch_ops["aten._embedding_bag"] == torch_ops["aten._embedding_bag_backward"] == lookup
    assert fused_ops["ctrbench.embedding_bag_collection"] == fused_ops["ctrbench.ebc_grad_rows"] == lookup
    assert (fused_opt_ops["ctrbench.embedding_bag_collection_fused"] == fused_opt_ops["ctrbench.ebc_fused_update"]
            == lookup)
    psw.requires_grad_()  # a per-sample-weight gradient is a dot product per id: 2·d
    assert _flops(fused_path)["ctrbench.ebc_psw_grad"] == 2 * ids.numel() * d
    # a bare FlopCounterMode counts no lookup on either path (the rules are count_flops'), as before ctrbench
    assert _registered_flops(torch_path) == _registered_flops(fused_path) == 0


@pytest.mark.parametrize("rope,separate", [(False, False), (True, False), (True, True)])
def test_interleaved_attention_counts_two_matmuls_forward_five_backward_and_rope(rope, separate):
    b, h, nq, nk, dh = 2, 2, 3 if separate else 6, 6, 4
    q = torch.randn(b, h, nq, dh, requires_grad=True)
    k, v = (torch.randn(b, h, nk, dh, requires_grad=True) for _ in range(2))
    lengths = torch.tensor([3, 5])
    rotated = 3 * (k.numel() + (0 if separate else q.numel()))  # 2 multiplies + 1 add per rotated element
    forward = 2 * (2 * b * h * nq * nk * dh) + (rotated if rope else 0)  # q·kᵀ and p·v
    backward = 5 * (2 * b * h * nq * nk * dh) + (rotated if rope else 0)  # recomputed scores + 4 gradient matmuls

    def run(train):
        out = interleaved_attention(q, k, v, lengths, num_prefix=1, rope=rope, separate_queries=separate)
        if train:
            out.sum().backward()

    assert _registered_flops(lambda: run(False)) == forward
    assert _registered_flops(lambda: run(True)) == forward + backward


@pytest.mark.parametrize("path", ["eager", "op"])
def test_entropy_fusion_counts_per_member_logit(path):
    n, members = 5, 3
    logits = torch.randn(n, members, requires_grad=True)
    tau = torch.tensor(0.5, requires_grad=True)

    def run(detach, train):
        if path == "eager":
            fused, _ = entropy_weighted_fusion(logits, tau, detach_weights=detach)
        else:  # the registered op, as torch.compile runs it
            fused, _ = torch.ops.ctrbench.entropy_weighted_fusion(logits, tau, "prob", detach, 1e-6, None)
        if train:
            fused.sum().backward()

    # forward: confidence p·log p + (1-p)·log(1-p) (4), / tau (1), Σ_k w_k p_k (2)
    forward = 7 * n * members
    assert _registered_flops(lambda: run(False, False)) == forward
    # backward: p(1-p) (2), grad·w·p' (2), dz = w(g - Σ w g) with g = grad·p (5), dz/tau·x̂·p(1-p) added (4),
    # tau's gradient Σ dz·c (2); with detached weights only the first two
    assert _registered_flops(lambda: run(False, True)) == forward + 15 * n * members
    assert _registered_flops(lambda: run(True, True)) == forward + 4 * n * members


def _required_params(name) -> dict:
    """Params a model cannot default (a NASRec subnet needs its architecture point)."""
    if name == "nasrec_subnet":
        import numpy as np

        from ctrbench.models.nasrec.arch import ARCH_CONFIGS, sample_point

        return {"point": sample_point(ARCH_CONFIGS["small"].scaled(0.25), np.random.default_rng(0)).to_json_dict()}
    if name == "dnas_subnet":
        return {"point": {"blocks": [{"dense": "dp", "sparse": "attn"}, {"dense": "dcn", "sparse": "efc"}]},
                "dense_dim": 8}
    return {}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_registered_model_counts_flops(name, caches):
    cache = caches["amazonelectronics_x1"]  # categorical fields and sequences: every model's every part runs
    model = build_model(name, cache.spec, cache.vocab_sizes, _required_params(name), model_tables(cache), seed=0)
    by_op = count_flops_by_op(model, _batch(cache), train=False)
    assert sum(by_op.values()) > 0, by_op
    assert any("embedding" in op for op in by_op), f"{name}: its lookups count nothing: {by_op}"
    if name in ("interformer", "cetnet"):
        assert by_op.get("ctrbench.interleaved_attention", 0) > 0, by_op
    if name == "cetnet":  # eager on auto: the C++ kernel's op (the registered op under torch.compile)
        assert by_op.get("ctrbench._entropy_fusion_fwd", 0) > 0, by_op
