"""The trainer: metrics and history, early stopping with best-checkpoint restore, the NaN guard, optimizers
(dense/sparse Adam and Adagrad), L2, clipping, determinism, limits and callbacks."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent / "models"))
from tiny_cache import build_tiny_cache  # noqa: E402

from ctrbench.errors import ConfigError  # noqa: E402
from ctrbench.models import build_model  # noqa: E402
from ctrbench.models.base import CTRModel  # noqa: E402
from ctrbench.train import TrainConfig, fit, make_optimizers  # noqa: E402

SMALL_DNN = {"embedding_dim": 4, "hidden_units": [16]}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    return {
        "criteo": build_tiny_cache("criteo_x1", root / "criteo", rows=3000),
        "amazon": build_tiny_cache("amazonelectronics_x1", root / "amazon", rows=3000),
        "inverted": build_tiny_cache("criteo_x1", root / "inv", rows=3000, invert_valid=True),
    }


def _model(cache, name="dnn", params=SMALL_DNN, seed=0):
    return build_model(name, cache.spec, cache.vocab_sizes, params, seed=seed)


def test_fit_reports_metrics_history_and_oracle(caches):
    cache = caches["criteo"]
    res = fit(_model(cache), cache, TrainConfig(batch_size=256, max_epochs=2, patience=2, lr=3e-3))
    assert res.status == "ok" and res.error is None and res.nan_step is None
    assert res.epochs_run == len(res.history) == 2
    assert res.valid == res.history[res.best_epoch - 1]["valid"]
    assert res.test["auc"] > 0.65 and res.test["ne_background"] == "train" and "gauc" not in res.test
    assert 0.5 < res.oracle_test["oracle_auc"] <= 1 and res.oracle_test["n"] == res.test["n"]
    assert res.steps == res.history[-1]["steps"] == 2 * 12 and res.train_seconds > 0
    assert res.history[1]["train_loss"] < res.history[0]["train_loss"]


def test_gauc_on_a_dataset_with_groups(caches):
    cache = caches["amazon"]
    res = fit(_model(cache), cache, TrainConfig(batch_size=256, max_epochs=1, monitor="gauc"))
    assert res.status == "ok" and 0 <= res.test["gauc"] <= 1 and 0 <= res.valid["gauc"] <= 1
    with pytest.raises(ConfigError, match="train.monitor"):
        fit(_model(caches["criteo"]), caches["criteo"], TrainConfig(monitor="gauc"))


def test_early_stopping_patience_and_best_checkpoint_restored(caches):
    cache = caches["inverted"]  # the more it learns, the worse valid AUC gets
    model = _model(cache, "lr", {})
    snapshots = {}

    class Snap:
        def on_epoch_end(self, epoch, metrics):
            snapshots[epoch] = {k: v.clone() for k, v in model.state_dict().items()}

    res = fit(model, cache, TrainConfig(batch_size=256, max_epochs=8, patience=2, lr=1e-2), callbacks=Snap())
    assert res.status == "ok"
    assert res.best_epoch == 1 and res.epochs_run == 3  # epochs 2 and 3 did not improve: patience 2 exhausted
    assert [h["improved"] for h in res.history] == [True, False, False]
    assert res.history[2]["lr"] == pytest.approx(1e-3)  # reduced on the first plateau
    final = model.state_dict()
    assert all(torch.equal(final[k], snapshots[1][k]) for k in final)
    assert not all(torch.equal(final[k], snapshots[3][k]) for k in final)
    assert res.valid["auc"] == res.history[0]["valid"]["auc"] > res.history[2]["valid"]["auc"]


def test_evaluations_inside_an_epoch(caches):
    """evals_per_epoch=3: checkpoints every 4 of the 12 steps; patience counts evaluations; the best weights are
    those of a mid-epoch checkpoint; training resumes in train mode after a mid-epoch evaluation."""
    cache = caches["inverted"]  # the more it learns, the worse valid AUC gets: the first checkpoint is the best
    model = _model(cache, "lr", {})
    at_step, modes = {}, []

    class Snap:
        def on_batch_end(self, step, loss):
            modes.append(model.training)
            at_step[step] = {k: v.clone() for k, v in model.state_dict().items()}

    cfg = TrainConfig(batch_size=256, max_epochs=4, patience=2, lr=1e-2, evals_per_epoch=3)
    res = fit(model, cache, cfg, callbacks=Snap())
    assert [h["steps"] for h in res.history] == [4, 8, 12] and [h["epoch"] for h in res.history] == [1, 1, 1]
    assert [h["improved"] for h in res.history] == [True, False, False] and res.epochs_run == 1
    assert res.best_epoch == 1 and res.best_step == 4 and all(modes)
    assert all(torch.equal(model.state_dict()[k], at_step[4][k]) for k in at_step[4])
    full = fit(_model(caches["criteo"]), caches["criteo"],
               TrainConfig(batch_size=256, max_epochs=2, patience=9, evals_per_epoch=5))
    assert [h["steps"] for h in full.history] == [2, 5, 7, 10, 12, 14, 17, 19, 22, 24]  # round(i * 12 / 5) per epoch
    with pytest.raises(Exception, match="evals_per_epoch"):
        TrainConfig(evals_per_epoch=0)


class _NaNAt(CTRModel):
    """Gives NaN logits from training step `at` on."""

    def __init__(self, spec, vocab_sizes, at):
        super().__init__(spec, vocab_sizes, {})
        self.embedding = self.make_embedding(2)
        self.at, self.calls = at, 0

    def forward(self, batch):
        self.calls += self.training
        out = self.embedding(batch).sum(dim=(1, 2))
        return out * float("nan") if self.training and self.calls >= self.at else out


def test_nan_guard_stops_with_the_step(caches):
    cache = caches["criteo"]
    res = fit(_NaNAt(cache.spec, cache.vocab_sizes, at=15), cache, TrainConfig(batch_size=256, max_epochs=3))
    assert res.status == "nan" and res.nan_step == 15 and "not finite" in res.error
    assert res.test == {} and res.oracle_test is None and res.epochs_run == 1  # epoch 1 (12 steps) finished
    blown = fit(_model(cache), cache, TrainConfig(batch_size=256, lr=1e30, max_epochs=2))
    assert blown.status == "nan" and blown.nan_step is not None and blown.nan_step >= 1


@pytest.mark.parametrize("optimizer", ["adam", "adagrad"])
@pytest.mark.parametrize("sparse", [False, True])
def test_optimizers_dense_and_sparse(optimizer, sparse, caches):
    cache = caches["criteo"]
    cfg = TrainConfig(optimizer=optimizer, sparse_embeddings=sparse, embedding_l2=1e-4, grad_clip=1.0,
                      lr=3e-3 if optimizer == "adam" else 3e-2, batch_size=256, max_epochs=2, patience=2)
    model = _model(cache, "deepfm", SMALL_DNN)
    opts = make_optimizers(model, cfg)
    kinds = sorted(type(o).__name__ for o in opts)
    if not sparse:
        assert kinds == [("Adam" if optimizer == "adam" else "Adagrad")]
        assert opts[0].param_groups[1]["weight_decay"] == 1e-4  # the tables' L2 as weight decay
    else:
        assert kinds == (["Adam", "SparseAdam"] if optimizer == "adam" else ["Adagrad", "Adagrad"])
    res = fit(model, cache, cfg)
    assert res.status == "ok" and res.test["auc"] > 0.65
    assert model.embedding.weight.grad is None or model.embedding.weight.grad.is_sparse == sparse


def test_seeded_and_deterministic_runs_repeat(caches):
    cache = caches["criteo"]
    threads = torch.get_num_threads()
    cfg = TrainConfig(batch_size=256, max_epochs=1, seed=5, deterministic=True, threads=2, max_train_rows=1500)
    a, b = _model(cache, seed=1), _model(cache, seed=1)
    ra, rb = fit(a, cache, cfg), fit(b, cache, cfg)
    assert ra.test["auc"] == rb.test["auc"] and ra.test["logloss"] == rb.test["logloss"]
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert torch.get_num_threads() == threads and not torch.are_deterministic_algorithms_enabled()
    rc = fit(_model(cache, seed=1), cache, cfg.model_copy(update={"seed": 6}))
    assert rc.test["logloss"] != ra.test["logloss"]  # a different shuffle and dropout


def test_limits_and_callbacks(caches):
    cache = caches["criteo"]
    events = []

    class Rec:
        def on_epoch_start(self, epoch, n_batches):
            events.append(("start", epoch, n_batches))

        def on_batch_end(self, step, loss):
            events.append(("batch", step, loss))

        def on_epoch_end(self, epoch, metrics):
            events.append(("end", epoch, metrics["auc"]))

    res = fit(_model(cache), cache, TrainConfig(batch_size=100, max_train_rows=1000, max_steps=7, max_epochs=3),
              callbacks=Rec())
    assert res.status == "ok" and res.steps == 7 and res.epochs_run == 1
    assert events[0] == ("start", 1, 10)
    assert [e[1] for e in events if e[0] == "batch"] == list(range(1, 8))
    assert events[-1][0] == "end"


def test_train_config_rejects_unknown_keys():
    with pytest.raises(Exception, match="learning_rate"):
        TrainConfig(learning_rate=0.1)
