"""DHEN: the layer keeps the token shape, its dot module is the Gram upper triangle, every ensemble/module
choice trains, and the registered baseline learns on a tabular and a sequential tiny cache."""
import pydantic
import pytest
import torch
import torch.nn.functional as F

from ctrbench.data.loader import BatchLoader
from ctrbench.models import build_model, model_tables
from ctrbench.models.dhen import DHEN as DHENModel
from ctrbench.models.layers.dhen import DHEN, DHENLayer, DotModule


def test_dot_module_reads_the_pairwise_inner_products():
    torch.manual_seed(0)
    mod = DotModule(4, 3)
    x = torch.randn(5, 4, 3)
    gram = x @ x.transpose(1, 2)
    i, j = torch.triu_indices(4, 4, offset=1)
    expected = F.linear(gram[:, i, j], mod.proj.weight, mod.proj.bias).view(5, 4, 3)
    torch.testing.assert_close(mod(x), expected)
    with pytest.raises(ValueError, match="at least 2 tokens"):
        DotModule(1, 3)


@pytest.mark.parametrize("modules,ensemble", [(["dot", "dcn"], "concat"), (["dot", "dcn"], "sum"), (["dot"], "concat"),
                                              (["dcn"], "sum")])
def test_layers_keep_shape_and_learn_a_pairwise_target(modules, ensemble):
    torch.manual_seed(0)
    net = DHEN(5, 4, num_layers=2, modules=modules, ensemble=ensemble, low_rank=3)
    head = torch.nn.Linear(20, 1)
    x = torch.randn(256, 5, 4)
    y = (x[:, 0] * x[:, 1]).sum(-1, keepdim=True)  # a second-order interaction
    assert net(x).shape == x.shape
    opt = torch.optim.Adam([*net.parameters(), *head.parameters()], lr=1e-2)
    first = None
    for _ in range(60):
        loss = F.mse_loss(head(net(x).flatten(1)), y)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first, (modules, ensemble, first, loss.item())


def test_layer_rejects_bad_choices():
    with pytest.raises(ValueError, match="unknown DHEN module"):
        DHENLayer(3, 2, modules=["attention"])
    with pytest.raises(ValueError, match="ensemble"):
        DHENLayer(3, 2, ensemble="max")
    with pytest.raises(ValueError, match="at least one"):
        DHENLayer(3, 2, modules=[])


@pytest.mark.parametrize("dataset", ["criteo_x1", "amazonelectronics_x1", "kuaivideo_x1"])
def test_dhen_model_trains(dataset, tiny_caches):
    cache = tiny_caches[dataset]
    model = build_model("dhen", cache.spec, cache.vocab_sizes, {"embedding_dim": 8, "hidden_units": [32],
                        "low_rank": 4}, model_tables(cache), seed=0)
    batches = [b for _, b in zip(range(4), BatchLoader(cache, "train", 256))]
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)

    def total():
        with torch.no_grad():
            return sum(F.binary_cross_entropy_with_logits(model(b), b.label).item() for b in batches)

    before = total()
    for _ in range(3):
        for b in batches:
            loss = F.binary_cross_entropy_with_logits(model(b), b.label)
            opt.zero_grad()
            loss.backward()
            opt.step()
    assert total() < before - 0.05
    assert all(p.grad is not None for p in model.dense_parameters())


def test_dhen_params_are_strict():
    with pytest.raises(pydantic.ValidationError, match="num_layer"):
        DHENModel.Params(num_layer=2)
    with pytest.raises(pydantic.ValidationError):
        DHENModel.Params(modules=["attention"])
    with pytest.raises(pydantic.ValidationError):
        DHENModel.Params(modules=[])
    assert DHENModel.Params().modules == ["dot", "dcn"]
