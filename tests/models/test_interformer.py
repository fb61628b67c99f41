"""InterFormer on the three sequential layouts: forward/backward, every interleaving mode and interaction arch
trains, left padding is respected (padded ids are invisible, "most recent" = the last valid slots, trimming
all-padding columns is exact), empty histories stay finite, and its Params are strict."""
import dataclasses

import pydantic
import pytest
import torch
import torch.nn.functional as F

from ctrbench.data.loader import BatchLoader
from ctrbench.models import build_model, model_tables
from ctrbench.models.interformer import InterFormer, recent_tokens
from tiny_cache import build_tiny_cache

SMALL = {"embedding_dim": 8, "num_layers": 1, "num_heads": 2, "head_units": [16], "dcn_low_rank": 4}


@pytest.fixture(scope="module")
def caches(tiny_caches, tmp_path_factory):
    """amazon and kuai from the shared tiny caches plus a tiny taobao (numeric field, three sequences)."""
    taobao = build_tiny_cache("taobaoad_x1", tmp_path_factory.mktemp("tiny_taobao") / "t", rows=1200)
    return {"amazonelectronics_x1": tiny_caches["amazonelectronics_x1"], "taobaoad_x1": taobao,
            "kuaivideo_x1": tiny_caches["kuaivideo_x1"]}


def _model(cache, **params):
    return build_model("interformer", cache.spec, cache.vocab_sizes, {**SMALL, **params}, model_tables(cache), seed=0)


def _batch(cache, n=64, split="valid"):
    return next(iter(BatchLoader(cache, split, n)))


def _loss_falls(model, cache, steps=3, n_batches=3, lr=1e-2):
    """Loss over a fixed set of batches before and after a few passes (a fall means it learns)."""
    batches = [b for _, b in zip(range(n_batches), BatchLoader(cache, "train", 128))]
    opt = torch.optim.Adam(model.parameters(), lr=lr)

    def total():
        with torch.no_grad():
            return sum(F.binary_cross_entropy_with_logits(model(b), b.label).item() for b in batches)

    before = total()
    for _ in range(steps):
        for b in batches:
            loss = F.binary_cross_entropy_with_logits(model(b), b.label)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return before, total()


@pytest.mark.parametrize("dataset", ["amazonelectronics_x1", "taobaoad_x1", "kuaivideo_x1"])
def test_forward_backward_every_parameter_gets_a_gradient(dataset, caches):
    cache = caches[dataset]
    model = _model(cache, num_layers=2)
    b = _batch(cache)
    out = model(b)
    assert out.shape == (64,) and torch.isfinite(out).all()
    F.binary_cross_entropy_with_logits(out, b.label).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, missing
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("variant", [{"mode": m} for m in ("sole", "sep", "s2n", "n2s", "int")]
                         + [{"interaction": "dot"}, {"interaction": "dcnv2"}])
def test_modes_and_interaction_archs_learn(variant, caches):
    cache = caches["amazonelectronics_x1"]
    model = _model(cache, **variant)
    before, after = _loss_falls(model, cache)
    assert after < before - 0.02, (variant, before, after)


def test_modes_change_the_flows(caches):
    """The ablation switches really cut the exchange: without n2s the sequence arch never sees X."""
    cache = caches["amazonelectronics_x1"]
    sizes = {m: _model(cache, mode=m) for m in ("int", "sep", "s2n", "n2s", "sole")}
    assert sizes["int"].s2n and sizes["int"].n2s
    assert not sizes["sep"].s2n and not sizes["sep"].n2s and sizes["sep"].static_summary is not None
    assert sizes["s2n"].s2n and not sizes["s2n"].n2s
    assert sizes["n2s"].n2s and not sizes["n2s"].s2n and sizes["n2s"].static_summary is None
    assert not sizes["sole"].has_sequence and not hasattr(sizes["sole"], "sequence")
    # n2s: the sequence summary depends on the target item; sep: the sequence summary does not
    b = _batch(cache, 8)
    for mode, depends in (("n2s", True), ("sep", False)):
        model = sizes[mode].eval()
        b2 = dataclasses.replace(b, sparse=dataclasses.replace(b.sparse, values=(b.sparse.values % 30) + 1))
        seq1, _ = _sequence_summary(model, b)
        seq2, _ = _sequence_summary(model, b2)
        assert (not torch.allclose(seq1, seq2)) == depends, mode


def _sequence_summary(model, batch):
    """S_sum of the head (the last Cross Arch), captured with a forward hook."""
    got = {}
    h = model.cross[-1].s_gate.register_forward_hook(lambda m, i, o: got.setdefault("s", o))
    with torch.no_grad():
        out = model(batch)
    h.remove()
    return got["s"], out


@pytest.mark.parametrize("dataset", ["amazonelectronics_x1", "kuaivideo_x1"])
def test_padded_ids_are_invisible(dataset, caches):
    cache = caches[dataset]
    model = _model(cache, num_layers=2).eval()
    b = _batch(cache)
    with torch.no_grad():
        ref = model(b)
    g = torch.Generator().manual_seed(0)
    seqs, changed_valid = {}, {}
    for name, s in b.sequences.items():
        t = s.shape[1]
        pad = torch.arange(t)[None, :] < (t - b.lengths[name])[:, None]
        noise = torch.randint(1, cache.vocab_sizes[name] - 1, s.shape, generator=g)
        seqs[name] = torch.where(pad, noise, s)
        last = s.clone()
        last[:, -1] = torch.where(b.lengths[name] > 0, noise[:, -1], s[:, -1])  # the most recent valid id
        changed_valid[name] = last
    with torch.no_grad():
        out = model(dataclasses.replace(b, sequences=seqs))
        moved = model(dataclasses.replace(b, sequences=changed_valid))
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    assert (moved - ref).abs().max() > 1e-4  # valid ids do matter (the test can fail)


def test_trimming_all_padding_columns_is_exact(caches):
    """A row's output does not depend on the longest history in its batch."""
    cache = caches["amazonelectronics_x1"]
    model = _model(cache, num_layers=2).eval()
    b = _batch(cache, 128)
    lengths = torch.stack(list(b.lengths.values())).amax(0)
    short = (lengths <= 4).nonzero().flatten()
    assert 0 < len(short) < 128
    sub = dataclasses.replace(
        b, dense=b.dense[short], label=b.label[short],
        sparse=type(b.sparse).from_single_valued(b.sparse.keys, b.sparse.to_dense()[short]),
        sequences={k: v[short] for k, v in b.sequences.items()}, lengths={k: v[short] for k, v in b.lengths.items()},
        group_id=None, oracle_p=None)
    with torch.no_grad():
        torch.testing.assert_close(model(sub), model(b)[short], rtol=1e-5, atol=1e-5)


def test_recent_tokens_are_the_last_valid_slots():
    seq = torch.arange(1, 7, dtype=torch.float32).view(1, 6, 1).repeat(4, 1, 2)  # slots hold 1..6
    lengths = torch.tensor([6, 3, 1, 0])
    out = recent_tokens(seq, lengths, 2)[..., 0]
    assert out.tolist() == [[5.0, 6.0], [5.0, 6.0], [0.0, 6.0], [0.0, 0.0]]


@pytest.mark.parametrize("dataset", ["amazonelectronics_x1", "taobaoad_x1", "kuaivideo_x1"])
def test_empty_histories_give_finite_outputs_and_gradients(dataset, caches):
    cache = caches[dataset]
    model = _model(cache, num_layers=2)
    b = _batch(cache, 16)
    empty = dataclasses.replace(b, sequences={k: torch.zeros_like(v) for k, v in b.sequences.items()},
                                lengths={k: torch.zeros_like(v) for k, v in b.lengths.items()})
    out = model(empty)
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("options", [
    {"head_input": "layer"}, {"gating": "paper"}, {"pffn": "mlp"}, {"pma_over_cls": False},
    {"dhen_ensemble": "sum", "dhen_layers": 2}, {"num_pma": 0, "num_recent": 0}, {"rope": False},
    {"max_seq_len": 3}, {"summary_hidden": [6]}, {"dcn_low_rank": None},
])
def test_open_question_switches_run(options, caches):
    cache = caches["taobaoad_x1"]
    model = _model(cache, num_layers=2, **options)
    b = _batch(cache, 32)
    out = model(b)
    assert out.shape == (32,) and torch.isfinite(out).all()
    out.sum().backward()


def test_params_are_strict_and_presets_fill_only_unset_keys():
    with pytest.raises(pydantic.ValidationError, match="num_clss"):
        InterFormer.Params(num_clss=4)
    with pytest.raises(pydantic.ValidationError):
        InterFormer.Params(mode="interleaved")
    with pytest.raises(pydantic.ValidationError):
        InterFormer.Params(embedding_backend="magic")
    paper = InterFormer.Params(preset="paper")
    assert paper.embedding_dim is None and paper.num_layers == 3 and paper.head_units == [1024, 512, 256]
    assert InterFormer.Params(preset="paper", num_layers=1).num_layers == 1
    dumped = InterFormer.Params(preset="paper", num_heads=2).model_dump()
    assert InterFormer.Params(**dumped) == InterFormer.Params(preset="paper", num_heads=2)


def test_bad_head_split_is_an_error(caches):
    cache = caches["amazonelectronics_x1"]
    with pytest.raises(ValueError, match="heads"):
        _model(cache, embedding_dim=8, num_heads=3)
