"""Values that used to fail only when a run started (or trained silently, like hidden_units [0]) are refused
when the suite loads, with the YAML path and line; the dataset-dependent checks agree with the models' build."""
from __future__ import annotations

import pytest

from ctrbench.errors import ConfigError, ParamError
from ctrbench.harness.suite import load_suite
from ctrbench.models.registry import build_model, get_model_class

SUITE = """
name: values
defaults:
  train: {max_epochs: 1}
  dataset: {rows: 3000}
datasets: [{name: DATASET}]
entries:
  - {name: e, model: ENTRY}
"""

BAD = [  # (dataset, entry body, YAML path, words of the message)
    ("criteo_x1", "dnn, params: {hidden_units: [0]}", "entries[0].params.hidden_units[0]", "greater than 0"),
    ("criteo_x1", "dnn, params: {hidden_units: [-4]}", "entries[0].params.hidden_units[0]", "greater than 0"),
    ("criteo_x1", "dcnv2, params: {parallel_dnn_hidden_units: [8, 0]}",
     "entries[0].params.parallel_dnn_hidden_units[1]", "greater than 0"),
    ("criteo_x1", "xdeepfm, params: {cin_hidden_units: [0]}", "entries[0].params.cin_hidden_units[0]", "greater"),
    ("criteo_x1", "dnn, params: {net_dropout: 1.0}", "entries[0].params.net_dropout", "less than 1"),
    ("criteo_x1", "autoint_plus, params: {num_heads: 3, attention_dim: 16}", "entries[0].params.attention_dim",
     "not divisible by num_heads=3"),
    ("criteo_x1", "dnn, train: {lr: .inf}", "entries[0].train.lr", "finite"),
    ("criteo_x1", "dnn, train: {grad_clip: .nan}", "entries[0].train.grad_clip", "finite"),
    ("criteo_x1", "dnn, train: {device: tpu}", "entries[0].train.device", "unknown device 'tpu'", "cuda:N"),
    ("criteo_x1", "dnn, train: {device: 'cuda:x'}", "entries[0].train.device", "unknown device"),
    ("criteo_x1", "cetnet, params: {tau: .inf}", "entries[0].params.tau", "finite"),
    ("criteo_x1", "din", "entries[0].model", "criteo_x1 has no sequence field"),
    ("criteo_x1", "interformer, params: {embedding_dim: 12, num_heads: 4}", "entries[0].params.num_heads",
     "even head width"),
    ("amazonelectronics_x1", "din, params: {sequence_groups: [[nope]]}", "entries[0].params.sequence_groups",
     "'nope' is not a sequence field"),
    ("amazonelectronics_x1", "dmin, params: {num_heads: 5}", "entries[0].params.num_heads",
     "not divisible by num_heads=5"),
    ("amazonelectronics_x1", "transact, params: {first_k: 0, concat_max_pool: false}",
     "entries[0].params.concat_max_pool", "first_k > 0 or concat_max_pool"),
    ("amazonelectronics_x1", "cetnet, params: {members: [{model: dnn}, {model: bst, params: {num_heads: 5}}]}",
     "entries[0].params.members", "member 1 (bst)", "num_heads=5"),
]


@pytest.mark.parametrize("dataset,entry,path,words", [(d, e, p, w) for d, e, p, *w in BAD], ids=[b[1] for b in BAD])
def test_values_that_fail_at_run_time_are_refused_at_load(write_suite, dataset, entry, path, words):
    with pytest.raises(ConfigError) as ei:
        load_suite(write_suite(SUITE.replace("DATASET", dataset).replace("ENTRY", entry)))
    msg = str(ei.value)
    assert ei.value.path == path and "suite.yaml:7" in msg, msg
    assert all(w in msg for w in words), msg


@pytest.mark.parametrize("entry", ["dnn, train: {device: 'cuda:1'}", "dnn, train: {device: auto}", "bst", "dmin",
                                   "transact", "din", "interformer", "cetnet"])
def test_defaults_and_good_values_still_load(write_suite, entry):
    assert len(load_suite(write_suite(SUITE.replace("DATASET", "amazonelectronics_x1").replace("ENTRY", entry))).runs)


@pytest.mark.parametrize("model,params", [
    ("bst", {"num_heads": h}) for h in (1, 3, 5, 7)] + [("dmin", {"num_heads": h}) for h in (2, 3, 5)] + [
    ("transact", {"num_heads": h, "ffn_dim": 8}) for h in (3, 5, 7)] + [
    ("interformer", {"embedding_dim": d, "num_heads": h, "num_layers": 1}) for d, h in ((8, 2), (12, 4), (10, 4))])
def test_dataset_checks_agree_with_the_build(model, params, data_root):
    """Params.check_dataset refuses exactly the params the model's constructor would refuse on that dataset."""
    from ctrbench.data.api import open_dataset

    cache = open_dataset("amazonelectronics_x1", "synthetic", rows=3000, seed=0, data_root=data_root)
    p = get_model_class(model).Params(**params)
    try:
        p.check_dataset(cache.spec)
        refused = None
    except ParamError as exc:
        refused = exc
    try:
        build_model(model, cache.spec, cache.vocab_sizes, params)
        built = True
    except (ValueError, AssertionError):  # nn.MultiheadAttention asserts its width splits into the heads
        built = False
    assert built == (refused is None), (params, refused)
