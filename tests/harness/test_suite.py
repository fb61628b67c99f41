"""Suite files: expansion (entries × datasets × seeds, grids, overrides) and ConfigErrors that name the YAML
path, the line and the valid choices."""
from __future__ import annotations

import pytest

from ctrbench.errors import ConfigError
from ctrbench.harness.suite import load_suite
from ctrbench.models.registry import MODELS, get_model_class

SUITE = """
name: t
defaults:
  train: {max_epochs: 1, batch_size: 256}
  dataset: {rows: 3000}
datasets:
  - {name: criteo_x1}
  - name: amazonelectronics_x1
    rows: 2000
seeds: [0, 1]
entries:
  - {name: lr, model: lr}
  - name: dcn
    model: dcnv2
    params: {num_cross_layers: 2}
    grid: {train.lr: [0.001, 0.003]}
  - {name: rs, kind: searcher, searcher: random, search: {budget: 3}, datasets: [criteo_x1], seeds: [0]}
overrides:
  - {datasets: [amazonelectronics_x1], train: {batch_size: 128}}
"""


def test_expansion(write_suite):
    s = load_suite(write_suite(SUITE))
    assert len(s.runs) == (1 + 2) * 2 * 2 and len(s.searches) == 1
    assert len({r.config_hash for r in s.runs}) == len(s.runs)
    by = {(r.entry, r.dataset, r.seed): r for r in s.runs}
    dcn = by[("dcn[lr=0.003]", "amazonelectronics_x1", 1)]
    assert dcn.train["lr"] == 0.003 and dcn.train["batch_size"] == 128 and dcn.train["seed"] == 1
    assert dcn.params["num_cross_layers"] == 2 and dcn.rows == 2000
    assert dcn.params == get_model_class("dcnv2").Params(num_cross_layers=2).model_dump(mode="json")
    assert by[("lr", "criteo_x1", 0)].train["batch_size"] == 256 and by[("lr", "criteo_x1", 0)].rows == 3000
    assert dcn.system == {"measure_warmup": 3, "measure_steps": 10}
    fewer = load_suite(write_suite(SUITE + "measure: {steps: 4}\n", "m.yaml"))
    assert fewer.runs[0].system["measure_steps"] == 4 and fewer.runs[0].config_hash != s.runs[0].config_hash
    search = s.searches[0]
    assert search.dataset.name == "criteo_x1" and search.seed == 0 and search.model == "dcnv2"
    c = s.candidate_spec(search, 1, {"num_cross_layers": 1}, {"lr": 0.002})
    assert c.kind == "candidate" and c.search_id == search.search_id and c.candidate_index == 1
    assert c.params["num_cross_layers"] == 1 and c.train["lr"] == 0.002
    # renaming the suite keeps every run's identity (resume across renames); --only filters entries
    renamed = load_suite(write_suite(SUITE.replace("name: t\n", "name: t2\n"), "t2.yaml"))
    assert [r.config_hash for r in renamed.runs] == [r.config_hash for r in s.runs]
    assert {r.entry for r in s.only(["dcn"]).runs} == {"dcn[lr=0.001]", "dcn[lr=0.003]"}


def check(write_suite, old, new, path, *needles, line=None):
    text = SUITE.replace(old, new)
    assert text != SUITE
    with pytest.raises(ConfigError) as ei:
        load_suite(write_suite(text))
    err = ei.value
    assert err.path == path, str(err)
    for n in needles:
        assert n in str(err), str(err)
    if line is not None:
        assert f"suite.yaml:{line} " in str(err), str(err)
    return str(err)


def test_unknown_key(write_suite):
    check(write_suite, "{name: lr, model: lr}", "{name: lr, model: lr, parms: {}}", "entries[0].parms",
          "unknown key 'parms'", "params", "grid", line=11)
    check(write_suite, "seeds: [0, 1]", "seeds: [0, 1]\nseed: 3", "seed", "unknown key 'seed'", "seeds", line=10)


def test_bad_value(write_suite):
    check(write_suite, "seeds: [0, 1]", "seeds: [0, -1]", "seeds[1]", "greater than or equal to 0", line=9)
    check(write_suite, "{name: lr, model: lr}", "{name: lr, kind: modle, model: lr}", "entries[0].kind",
          "'model' or 'searcher'")
    check(write_suite, "train: {max_epochs: 1, batch_size: 256}", "train: {max_epochs: 1, batch_size: -5}",
          "defaults.train.batch_size", "greater than 0", line=3)
    check(write_suite, "train: {batch_size: 128}", "train: {batch_size: lots}", "overrides[0].train.batch_size",
          "valid integer", line=18)
    check(write_suite, "grid: {train.lr: [0.001, 0.003]}", "grid: {train.lr: [0.001, abc]}",
          "entries[1].grid['train.lr']", "valid number")


def test_unknown_model(write_suite):
    msg = check(write_suite, "{name: lr, model: lr}", "{name: lr, model: logreg}", "entries[0].model",
                "unknown model 'logreg'", line=11)
    for name in ("lr", "fm", "dnn", "deepfm", "dcnv2", "dlrm"):
        assert name in MODELS and name in msg


def test_unknown_param(write_suite):
    msg = check(write_suite, "params: {num_cross_layers: 2}", "params: {cross_layers: 2}",
                "entries[1].params.cross_layers", "unknown param 'cross_layers'", "num_cross_layers", line=14)
    assert all(f in msg for f in get_model_class("dcnv2").Params.model_fields)
    check(write_suite, "params: {num_cross_layers: 2}", "params: {num_cross_layers: many}",
          "entries[1].params.num_cross_layers", "valid integer", line=14)


def test_unknown_dataset(write_suite):
    check(write_suite, "  - {name: criteo_x1}", "  - {name: criteo_x2}", "datasets[0].name",
          "unknown dataset 'criteo_x2'", "criteo_x1", "avazu_x1", "taobaoad_x1", line=6)
    check(write_suite, "datasets: [criteo_x1], seeds", "datasets: [avazu_x1], seeds", "entries[2].datasets[0]",
          "not in this suite's datasets", "amazonelectronics_x1")


def test_unknown_train_setting_and_searcher_errors(write_suite):
    check(write_suite, "train: {max_epochs: 1, batch_size: 256}", "train: {max_epoch: 1}",
          "defaults.train.max_epoch", "unknown train setting", "max_epochs", "patience")
    check(write_suite, "searcher: random", "searcher: rnd", "entries[2].searcher", "unknown searcher 'rnd'", "random")
    check(write_suite, "search: {budget: 3}", "search: {budget: 3, spce: x}", "entries[2].search.spce",
          "unknown key 'spce'", "space", "budget")
    check(write_suite, "search: {budget: 3}", "search: {budget: 0}", "entries[2].search.budget", "greater than 0")
    check(write_suite, "search: {budget: 3}", "search: {space: nope}", "entries[2].search.space",
          "unknown search space 'nope'", "dcnv2")


def test_yaml_problems(write_suite):
    check(write_suite, "    model: dcnv2\n", "    model: dcnv2\n    model: lr\n", "entries[1].model", "duplicate key")
    with pytest.raises(ConfigError, match=r"invalid YAML.*suite.yaml:10"):
        load_suite(write_suite(SUITE.replace("seeds: [0, 1]", "seeds: [0, 1")))


def test_gauc_monitor_needs_a_group_id(write_suite):
    ok = SUITE.replace("train: {batch_size: 128}", "train: {batch_size: 128, monitor: gauc}")
    load_suite(write_suite(ok))  # amazonelectronics_x1 has user_id groups
    check(write_suite, "train: {max_epochs: 1, batch_size: 256}", "train: {max_epochs: 1, monitor: gauc}",
          "defaults.train.monitor", "needs a group id", "criteo_x1")
