"""The fused kernel module as the models' embedding backend: same lookups as the torch backend, and a model
trained with it matches one trained with the plain-PyTorch tables."""
import pytest
import torch

from ctrbench.data.loader import BatchLoader
from ctrbench.kernels.backend import available_backends
from ctrbench.models import build_model, model_tables
from ctrbench.train import TrainConfig, fit

CPU_BACKENDS = [b for b in ("reference", "cpp") if b in available_backends("cpu")]


def _pair(cache, name, kernel_backend, params=None):
    params = dict(params or {})
    ref = build_model(name, cache.spec, cache.vocab_sizes, params, model_tables(cache), seed=0)
    fused = build_model(name, cache.spec, cache.vocab_sizes,
                        {**params, "embedding_backend": "fused", "kernel_backend": kernel_backend},
                        model_tables(cache), seed=0)
    missing, unexpected = fused.load_state_dict(ref.state_dict(), strict=False)
    assert not unexpected and all(k.split(".")[-1] in ("table_offsets", "feature_table", "momentum") for k in missing)
    return ref, fused


def test_cpp_backend_is_built():
    assert "cpp" in CPU_BACKENDS  # the extension is part of the install; without it the comparison is half done


@pytest.mark.parametrize("kernel_backend", CPU_BACKENDS)
@pytest.mark.parametrize("dataset", ["criteo_x1", "amazonelectronics_x1", "kuaivideo_x1"])
def test_fused_lookup_and_gradients_match_torch(dataset, kernel_backend, tiny_caches):
    cache = tiny_caches[dataset]
    ref, fused = _pair(cache, "deepfm", kernel_backend, {"embedding_dim": 8, "hidden_units": [16], "net_dropout": 0})
    batch = next(iter(BatchLoader(cache, "train", 128)))
    out_r, out_f = ref.embedding(batch), fused.embedding(batch)
    torch.testing.assert_close(out_f, out_r, rtol=1e-5, atol=1e-6)
    ref(batch).sum().backward()
    fused(batch).sum().backward()
    torch.testing.assert_close(fused.embedding.weight.grad, ref.embedding.weight.grad, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(fused.linear.embedding.weight.grad, ref.linear.embedding.weight.grad,
                               rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("sparse", [False, True])
def test_model_trained_with_fused_matches_reference(sparse, tiny_caches):
    cache = tiny_caches["amazonelectronics_x1"]
    ref, fused = _pair(cache, "dnn", "cpp", {"embedding_dim": 8, "hidden_units": [32], "net_dropout": 0})
    cfg = TrainConfig(batch_size=256, max_epochs=2, patience=2, lr=3e-3, monitor="gauc", sparse_embeddings=sparse)
    r_ref, r_fused = fit(ref, cache, cfg), fit(fused, cache, cfg)
    assert r_ref.status == r_fused.status == "ok"
    assert r_fused.test["auc"] == pytest.approx(r_ref.test["auc"], abs=2e-3)
    assert r_fused.test["logloss"] == pytest.approx(r_ref.test["logloss"], rel=2e-3)
    torch.testing.assert_close(fused.embedding.weight, ref.embedding.weight, rtol=1e-2, atol=1e-4)


# -- the fused optimizer: the tables updated inside the backward --------------------------------------------

def _one_step(model, batch, cfg):
    from ctrbench.train import make_optimizers, training_step
    model.train()
    opts = make_optimizers(model, cfg)
    training_step(model, batch, opts, cfg)
    return opts


@pytest.mark.parametrize("kind", ["sgd", "rowwise_adagrad"])
def test_fused_optimizer_step_equals_the_hand_update(kind, tiny_caches):
    cache = tiny_caches["amazonelectronics_x1"]
    ref, fused = _pair(cache, "din", "cpp", {"embedding_dim": 8, "hidden_units": [16], "net_dropout": 0,
                                             "attention_hidden_units": [8], "embedding_init_std": 0.05})
    batch = next(iter(BatchLoader(cache, "train", 128)))
    lr, eps = 0.05, 1e-8
    w0 = ref.embedding.weight.detach().clone()
    ref.train()
    ref.loss(ref(batch), batch).backward()
    g = ref.embedding.weight.grad
    touched = g.abs().sum(1) > 0
    if kind == "sgd":
        expect = w0 - lr * g
    else:
        state = g.pow(2).mean(1, keepdim=True)
        expect = torch.where(touched[:, None], w0 - lr * g / (state.sqrt() + eps), w0)
    cfg = TrainConfig(lr=lr, fused_embedding_optimizer=kind, fused_embedding_eps=eps)
    _one_step(fused, batch, cfg)
    assert fused.embedding.weight.grad is None  # nothing left for an optimizer
    torch.testing.assert_close(fused.embedding.weight.detach(), expect, rtol=1e-4, atol=1e-6)
    assert torch.all(fused.embedding.weight[0] == 0)  # padding stays zero


@pytest.mark.parametrize("name,params", [
    ("din", {"attention_hidden_units": [8]}), ("interformer", {"num_layers": 1}), ("dien", {}), ("bst", {})])
def test_every_table_read_of_a_forward_is_one_kernel_call(name, params, tiny_caches, monitor_calls):
    cache = tiny_caches["amazonelectronics_x1"]
    model = build_model(name, cache.spec, cache.vocab_sizes, {"embedding_dim": 8, **params}, model_tables(cache))
    batch = next(iter(BatchLoader(cache, "train", 64)))
    calls = monitor_calls(type(model.embedding.tables), "forward")
    model(batch)
    assert calls() == 1


@pytest.fixture
def monitor_calls(monkeypatch):
    def watch(cls, method):
        count = [0]
        orig = getattr(cls, method)

        def counted(self, *a, **k):
            count[0] += 1
            return orig(self, *a, **k)
        monkeypatch.setattr(cls, method, counted)
        return lambda: count[0]
    return watch


def test_sequential_models_train_with_the_fused_optimizer(tiny_caches):
    cache = tiny_caches["amazonelectronics_x1"]
    for name in ("din", "interformer"):
        model = build_model(name, cache.spec, cache.vocab_sizes, {"embedding_dim": 8}, model_tables(cache), seed=0)
        res = fit(model, cache, TrainConfig(batch_size=512, max_epochs=2, lr=3e-3, embedding_lr=0.05,
                                            fused_embedding_optimizer="rowwise_adagrad", monitor="gauc"))
        assert res.status == "ok" and res.test["auc"] > 0.55, (name, res.test)


def test_the_plateau_rule_reaches_the_fused_tables(tiny_caches):
    cache = tiny_caches["criteo_x1"]
    model = build_model("dnn", cache.spec, cache.vocab_sizes, {"embedding_dim": 4})
    batch = next(iter(BatchLoader(cache, "train", 64)))
    opts = _one_step(model, batch, TrainConfig(lr=1e-3, embedding_lr=0.2, fused_embedding_optimizer="sgd"))
    assert model.embedding.tables.lr == pytest.approx(0.2)
    opts[-1].param_groups[0]["lr"] = 0.02  # what the trainer's reduce-on-plateau does to every group
    model(batch)
    assert model.embedding.tables.lr == pytest.approx(0.02)


def test_fused_optimizer_misconfigurations_are_refused(tiny_caches):
    from ctrbench.errors import ConfigError
    from ctrbench.train import make_optimizers
    import pydantic
    cache = tiny_caches["criteo_x1"]
    torch_model = build_model("dnn", cache.spec, cache.vocab_sizes, {"embedding_backend": "torch"})
    with pytest.raises(ConfigError, match="embedding_backend 'fused'"):
        make_optimizers(torch_model, TrainConfig(fused_embedding_optimizer="sgd"))
    with pytest.raises(pydantic.ValidationError, match="sparse_embeddings"):
        TrainConfig(fused_embedding_optimizer="sgd", sparse_embeddings=True)
    with pytest.raises(pydantic.ValidationError, match="embedding_l2"):
        TrainConfig(fused_embedding_optimizer="rowwise_adagrad", embedding_l2=1e-4)
