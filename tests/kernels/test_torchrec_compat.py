"""The TorchRec front door against TorchRec itself: outputs, gradients, one fused step, state_dicts, errors.

References: torchrec.EmbeddingBagCollection (per-table nn.EmbeddingBag) for outputs and gradients, and
torchrec's FusedEmbeddingBagCollection -- FBGEMM's CPU TBE (SplitTableBatchedEmbeddingBagsCodegen with
EXACT_SGD / EXACT_ROWWISE_ADAGRAD) behind TorchRec's API -- for the fused step. Needs `make extras`
(`make test` runs it), so these tests run in CI rather than skip.
"""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import torchrec
from hypothesis import given, settings
from hypothesis import strategies as st
from torchrec import EmbeddingBagConfig, KeyedJaggedTensor, PoolingType
from torchrec.models.dlrm import DLRM
from torchrec.modules.fused_embedding_modules import FusedEmbeddingBagCollection as TorchRecFusedEBC
from torchrec.optim import RowWiseAdagrad
from torchrec.optim.apply_optimizer_in_backward import apply_optimizer_in_backward

from ctrbench.kernels.embedding_bag.torchrec_compat import EmbeddingBagCollection, KJTInputError

FEATURES = ["f0", "f1", "f2", "f3"]


@st.composite
def configs_and_kjt(draw, one_pooling=False):
    """1-3 tables (dims 4/8, SUM/MEAN, 1-2 features, a feature may be shared) and a KJT over them (any key order).

    one_pooling: every table pools alike (TorchRec's FusedEmbeddingBagCollection concatenates its pooling groups
    in group order under keys in table order, so it mislabels columns when SUM and MEAN tables interleave)."""
    weighted = draw(st.booleans())
    poolings = [PoolingType.SUM] if weighted else [PoolingType.SUM, PoolingType.MEAN]
    if one_pooling:
        poolings = [draw(st.sampled_from(poolings))]
    tables = []
    for t in range(draw(st.integers(1, 3))):
        feats = draw(st.lists(st.sampled_from(FEATURES), min_size=1, max_size=2, unique=True))
        pooling = draw(st.sampled_from(poolings))
        tables.append(EmbeddingBagConfig(name=f"t{t}", embedding_dim=draw(st.sampled_from([4, 8])),
                                         num_embeddings=draw(st.integers(1, 9)), feature_names=feats, pooling=pooling))
    rows = {}
    for t in tables:
        for f in t.feature_names:
            rows[f] = min(rows.get(f, t.num_embeddings), t.num_embeddings)
    keys = draw(st.permutations(sorted(rows) + (["unused"] if draw(st.booleans()) else [])))
    B = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**16))
    dtypes = draw(st.tuples(st.sampled_from([torch.int32, torch.int64]), st.sampled_from([torch.int32, torch.int64])))
    return tables, make_kjt(keys, rows, B, seed, weighted, dtypes=dtypes), weighted


def make_kjt(keys, rows, B, seed, weighted, max_len=3, dtypes=(torch.int64, torch.int64)):
    """A random KJT (values / lengths dtypes `dtypes`) whose ids fit the smallest table reading each key."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(0, max_len + 1, (len(keys) * B,), generator=g)
    values = torch.cat([torch.randint(0, rows.get(k, 5), (int(lengths[i * B:(i + 1) * B].sum()),), generator=g)
                        for i, k in enumerate(keys)])
    weights = torch.rand(values.shape[0], generator=g) if weighted else None
    return KeyedJaggedTensor.from_lengths_sync(keys, values.to(dtypes[0]), lengths.to(dtypes[1]), weights=weights)


def pair(tables, weighted, **kwargs):
    """TorchRec's collection and ours on the same weights."""
    ref = torchrec.EmbeddingBagCollection(tables=tables, is_weighted=weighted)
    ours = EmbeddingBagCollection(tables=tables, is_weighted=weighted, backend="cpp", **kwargs)
    ours.load_state_dict(ref.state_dict())
    return ref, ours


@settings(max_examples=15, deadline=None)
@given(configs_and_kjt())
def test_outputs_and_gradients_match_torchrec(case):
    """Pooled values, keys, widths, table gradients and (weighted KJTs) per-sample-weight gradients."""
    tables, kjt, weighted = case
    psw = kjt.weights_or_none()
    if psw is not None:
        psw.requires_grad_()
    ref, ours = pair(tables, weighted)
    a, b = ref(kjt), ours(kjt)
    assert b.keys() == a.keys() and b.length_per_key() == a.length_per_key()
    torch.testing.assert_close(b.values(), a.values(), rtol=1e-5, atol=1e-6)
    grad = torch.randn_like(a.values())
    a.values().backward(grad)
    ref_psw_grad = None if psw is None or psw.grad is None else psw.grad.clone()
    if psw is not None:
        psw.grad = None
    b.values().backward(grad)
    ours_grads = {t.name: g for t, g in zip(tables, _split_grads(ours, tables))}
    for t in tables:
        torch.testing.assert_close(ours_grads[t.name], ref.embedding_bags[t.name].weight.grad, rtol=1e-5, atol=1e-6)
    if ref_psw_grad is not None:
        torch.testing.assert_close(psw.grad, ref_psw_grad, rtol=1e-5, atol=1e-6)


def _split_grads(ours, tables):
    grads = {}
    for m in ours.fused:
        to = m.table_offsets.tolist()
        for k, name in enumerate(m.table_names):
            grads[name] = m.weight.grad[to[k]:to[k + 1]]
    return [grads[t.name] for t in tables]


@pytest.mark.parametrize("optimizer_type", [torch.optim.SGD, RowWiseAdagrad])
@settings(max_examples=6, deadline=None)
@given(case=configs_and_kjt(one_pooling=True))
def test_fused_steps_match_fbgemm_tbe(optimizer_type, case):
    """Two fused steps (forward, backward = update) equal FBGEMM TBE's through TorchRec's fused collection."""
    tables, kjt, weighted = case
    kwargs = {"lr": 0.1, "eps": 1e-3} if optimizer_type is RowWiseAdagrad else {"lr": 0.1}
    ref = TorchRecFusedEBC(tables, optimizer_type=optimizer_type, optimizer_kwargs=kwargs, is_weighted=weighted)
    ours = EmbeddingBagCollection(tables, is_weighted=weighted, optimizer_type=optimizer_type, optimizer_kwargs=kwargs,
                                  backend="cpp")
    ours.load_state_dict(ref.state_dict())
    g = torch.Generator().manual_seed(1)
    for _ in range(2):
        a, b = ref(kjt), ours(kjt)
        torch.testing.assert_close(b.values(), a.values(), rtol=1e-5, atol=1e-6)
        grad = torch.randn(a.values().shape, generator=g)
        a.values().backward(grad)
        b.values().backward(grad)
    ref_sd, ours_sd = ref.state_dict(), ours.state_dict()
    assert sorted(ours_sd) == sorted(ref_sd)
    for key in ref_sd:
        torch.testing.assert_close(ours_sd[key], ref_sd[key], rtol=1e-5, atol=1e-6)
    ref_opt, ours_opt = ref.fused_optimizer().state_dict()["state"], ours.fused_optimizer().state_dict()["state"]
    assert {k: sorted(v) for k, v in ours_opt.items()} == {k: sorted(v) for k, v in ref_opt.items()}
    for key, state in ref_opt.items():
        for name, value in state.items():
            torch.testing.assert_close(ours_opt[key][name], value, rtol=1e-5, atol=1e-7)


def test_fused_optimizer_state_loads_from_torchrec_and_sets_lr():
    tables = [EmbeddingBagConfig(name="t0", embedding_dim=4, num_embeddings=6, feature_names=["f0"])]
    kjt = make_kjt(["f0"], {"f0": 6}, 3, 0, False)
    ref = TorchRecFusedEBC(tables, optimizer_type=RowWiseAdagrad, optimizer_kwargs={"lr": 0.1})
    ref(kjt).values().sum().backward()
    ours = EmbeddingBagCollection(tables, optimizer_type=RowWiseAdagrad, optimizer_kwargs={"lr": 0.1})
    ours.fused_optimizer().load_state_dict(ref.fused_optimizer().state_dict())
    ref_m = ref.fused_optimizer().state_dict()["state"]["t0.weight"]["t0.weight.momentum_1"]
    torch.testing.assert_close(ours.fused[0].momentum, ref_m)
    assert ref_m.abs().sum() > 0
    opt = ours.fused_optimizer()
    opt.param_groups[0]["lr"] = 0.25
    opt.step()
    assert ours.fused[0].lr == 0.25


def test_apply_optimizer_in_backward_steps_like_torchrec():
    """TorchRec's apply_optimizer_in_backward (per-parameter hooks, unfused) works on the packed weight too."""
    tables = [EmbeddingBagConfig(name="t0", embedding_dim=4, num_embeddings=10, feature_names=["f0", "f1"])]
    ref, ours = pair(tables, False)
    before = ours.state_dict()["embedding_bags.t0.weight"].clone()
    for m in (ref, ours):
        apply_optimizer_in_backward(RowWiseAdagrad, m.parameters(), {"lr": 0.1})
    kjt = make_kjt(["f1", "f0"], {"f0": 10, "f1": 10}, 3, 5, False)
    ref(kjt).values().sum().backward()
    ours(kjt).values().sum().backward()
    after = ours.state_dict()["embedding_bags.t0.weight"]
    torch.testing.assert_close(after, ref.state_dict()["embedding_bags.t0.weight"])
    assert not torch.equal(after, before)


def test_dlrm_switches_by_one_constructor_and_checkpoints_cross():
    """TorchRec's DLRM with either collection: the same state_dict keys, and a checkpoint moves both ways."""
    tables = [EmbeddingBagConfig(name=f"t{i}", embedding_dim=8, num_embeddings=20, feature_names=[f"f{i}"])
              for i in range(3)]

    def dlrm(ebc):
        return DLRM(embedding_bag_collection=ebc, dense_in_features=5, dense_arch_layer_sizes=[16, 8],
                    over_arch_layer_sizes=[8, 1])

    torch.manual_seed(0)
    theirs = dlrm(torchrec.EmbeddingBagCollection(tables=tables))
    ours = dlrm(EmbeddingBagCollection(tables=tables))
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.load_state_dict(theirs.state_dict())
    dense = torch.randn(4, 5)
    kjt = make_kjt([f"f{i}" for i in range(3)], {f"f{i}": 20 for i in range(3)}, 4, 3, False)
    torch.testing.assert_close(ours(dense, kjt), theirs(dense, kjt))
    with torch.no_grad():
        ours.sparse_arch.embedding_bag_collection.split_embedding_weights()["t1"].add_(1.0)
    theirs.load_state_dict(ours.state_dict())
    torch.testing.assert_close(theirs(dense, kjt), ours(dense, kjt))


def test_from_torchrec_copies_tables_and_weights():
    tables = [EmbeddingBagConfig(name="t0", embedding_dim=4, num_embeddings=7, feature_names=["f0", "f1"]),
              EmbeddingBagConfig(name="t1", embedding_dim=8, num_embeddings=3, feature_names=["f2"],
                                 pooling=PoolingType.MEAN)]
    ref = torchrec.EmbeddingBagCollection(tables=tables)
    ours = EmbeddingBagCollection.from_torchrec(ref, optimizer_type=torch.optim.SGD, optimizer_kwargs={"lr": 0.5})
    kjt = make_kjt(["f2", "f1", "f0"], {"f0": 7, "f1": 7, "f2": 3}, 3, 4, False)
    torch.testing.assert_close(ours(kjt).values(), ref(kjt).values())
    assert len(ours.fused) == 2 and ours.fused[0].lr == 0.5


# ---------------------------------------------------------------------------------------------- errors

def _small(weighted=False):
    tables = [EmbeddingBagConfig(name="users", embedding_dim=4, num_embeddings=5, feature_names=["user"]),
              EmbeddingBagConfig(name="items", embedding_dim=4, num_embeddings=3, feature_names=["item"])]
    return EmbeddingBagCollection(tables, is_weighted=weighted)


def test_id_out_of_range_names_key_table_position_and_sample():
    bad_item = KeyedJaggedTensor.from_lengths_sync(["user", "item"], torch.tensor([0, 4, 1, 0, 2, 7]),
                                                   torch.tensor([1, 2, 1, 2]))
    with pytest.raises(KJTInputError, match=r"key 'item': id 7 at values\(\)\[5\] \(sample 1\).*table 'items' "
                                            r"with 3 rows") as info:
        _small()(bad_item)
    where = (info.value.key, info.value.table_name, info.value.kjt_position, info.value.sample)
    assert where == ("item", "items", 5, 1)
    bad_user_keys_swapped = KeyedJaggedTensor.from_lengths_sync(["item", "user"], torch.tensor([0, 2, 1, 5, 0, 1]),
                                                                torch.tensor([1, 2, 1, 2]))
    with pytest.raises(KJTInputError, match=r"key 'user': id 5 at values\(\)\[3\] \(sample 0\).*'users' with 5 rows"):
        _small()(bad_user_keys_swapped)


def test_missing_key_and_missing_weights_and_variable_batch_are_typed_errors():
    with pytest.raises(KJTInputError, match=r"no key 'item' \(read by table 'items'\); its keys are \['user'\]"):
        _small()(KeyedJaggedTensor.from_lengths_sync(["user"], torch.tensor([0]), torch.tensor([1])))
    with pytest.raises(KJTInputError, match="is_weighted=True but the KeyedJaggedTensor has no weights"):
        _small(weighted=True)(KeyedJaggedTensor.from_lengths_sync(["user", "item"], torch.tensor([0, 1]),
                                                                  torch.tensor([1, 1])))
    vbe = KeyedJaggedTensor(keys=["user", "item"], values=torch.tensor([0, 1, 2]), lengths=torch.tensor([1, 1, 1]),
                            stride_per_key_per_rank=[[1], [2]])
    with pytest.raises(KJTInputError, match="variable batch size per key"):
        _small()(vbe)
    with pytest.raises(TypeError, match="takes a torchrec KeyedJaggedTensor"):
        _small()(torch.tensor([0, 1]))


@pytest.mark.parametrize("tables, kwargs, message", [
    ([EmbeddingBagConfig(name="t", embedding_dim=4, num_embeddings=3, pooling=PoolingType.MEAN)],
     {"is_weighted": True}, "table 't': per-sample weights with MEAN pooling"),
    ([EmbeddingBagConfig(name="t", embedding_dim=4, num_embeddings=3, pooling=PoolingType.NONE)], {},
     "table 't': pooling NONE is not supported"),
    ([EmbeddingBagConfig(name="t", embedding_dim=4, num_embeddings=3, data_type=torchrec.DataType.FP16)], {},
     "table 't': data_type FP16 is not supported"),
    ([EmbeddingBagConfig(name="t", embedding_dim=4, num_embeddings=3)] * 2, {}, "Duplicate table name t"),
    ([EmbeddingBagConfig(name="t", embedding_dim=4, num_embeddings=3)], {"optimizer_type": torch.optim.Adam},
     "cannot be fused"),
    ([EmbeddingBagConfig(name="t", embedding_dim=4, num_embeddings=3)],
     {"optimizer_type": torch.optim.SGD, "optimizer_kwargs": {"lr": 0.1, "weight_decay": 0.01}},
     r"optimizer_kwargs\['weight_decay'\] = 0.01 is not supported"),
    ([EmbeddingBagConfig(name="t", embedding_dim=4, num_embeddings=3)], {"optimizer_kwargs": {"lr": 0.1}},
     "without a fused optimizer_type"),
])
def test_bad_configs_raise_value_errors_naming_the_table_or_option(tables, kwargs, message):
    with pytest.raises(ValueError, match=message):
        EmbeddingBagCollection(tables, **kwargs)


def test_state_dict_errors_use_torchrec_keys():
    ours = _small()
    sd = ours.state_dict()
    with pytest.raises(RuntimeError, match=r'Missing key\(s\) in state_dict: "embedding_bags.items.weight"'):
        ours.load_state_dict({"embedding_bags.users.weight": sd["embedding_bags.users.weight"]})
    with pytest.raises(RuntimeError, match=r"size mismatch for embedding_bags.users.weight: .*\(6, 4\)"):
        ours.load_state_dict({**sd, "embedding_bags.users.weight": torch.zeros(6, 4)})
    with pytest.raises(RuntimeError, match=r'Unexpected key\(s\) in state_dict: "embedding_bags.other.weight"'):
        ours.load_state_dict({**sd, "embedding_bags.other.weight": torch.zeros(2, 4)})


def test_kernels_import_without_torchrec_and_front_door_says_how_to_install():
    """ctrbench.kernels must not need TorchRec; the front door's ImportError names `make extras`."""
    code = ("import sys; sys.modules['torchrec'] = None\n"
            "import ctrbench.kernels, ctrbench.kernels.embedding_bag\n"
            "try:\n    import ctrbench.kernels.embedding_bag.torchrec_compat\n"
            "except ImportError as e:\n    print('ImportError:', e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "run `make extras`" in out.stdout
