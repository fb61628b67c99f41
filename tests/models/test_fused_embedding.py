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
