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


# --- twin generator options (`twin:`) ----------------------------------------------------------------------
TWIN = SUITE.replace("  dataset: {rows: 3000}", "  dataset: {rows: 3000, twin: {kappa: 100, card_ratio: 0.01}}")
TWIN = TWIN.replace("    rows: 2000\n",
                    "    rows: 2000\n    twin: {card_ratio: 0.002, shares: {first: 1, rel_attn: 0.5}}\n")


def test_twin_options_merge_key_by_key_and_enter_the_identity(write_suite):
    plain, twin = load_suite(write_suite(SUITE)), load_suite(write_suite(TWIN, "twin.yaml"))
    by = {(r.entry, r.dataset, r.seed): r for r in twin.runs}
    assert by[("lr", "criteo_x1", 0)].twin == {"kappa": 100.0, "card_ratio": 0.01}
    assert by[("lr", "amazonelectronics_x1", 0)].twin == {"kappa": 100.0, "card_ratio": 0.002,
                                                         "shares": {"first": 1.0, "rel_attn": 0.5}}
    assert {r.config_hash for r in plain.runs}.isdisjoint(r.config_hash for r in twin.runs)
    assert all(r.twin == {} and "twin" not in r.identity()["dataset"] for r in plain.runs)
    assert twin.searches[0].dataset.twin == {"kappa": 100.0, "card_ratio": 0.01}
    assert twin.searches[0].search_id != plain.searches[0].search_id
    cand = twin.candidate_spec(twin.searches[0], 0, {}, {})
    assert cand.twin == {"kappa": 100.0, "card_ratio": 0.01} and cand.identity()["dataset"]["twin"] == cand.twin
    # the defaults' options go to the synthetic datasets only
    one_real = TWIN.replace("  - {name: criteo_x1}", "  - {name: criteo_x1, source: real}")
    real = load_suite(write_suite(one_real, "r.yaml"))
    assert {r.twin.get("kappa") for r in real.runs if r.dataset == "criteo_x1"} == {None}


def test_run_identity_holds_the_twin_generator_version(monkeypatch):
    """An empty `twin:` hashes as none; a synthetic run's and search's identity change with the twin generator's
    version (so a rerun after a generator change is not resumed from the old twin's runs), a real one's does not."""
    from ctrbench.data import synthetic
    from ctrbench.runs.records import RunSpec
    from ctrbench.harness.suite import DatasetRef, SearchSpec

    kw = dict(suite="s", entry="e", model="lr", params={"a": 1}, train={"lr": 0.001, "seed": 0}, dataset="criteo_x1",
              rows=2000, data_seed=3, seed=1, system={"measure_steps": 10})
    search = dict(suite="s", entry="rs", searcher="random", options={"budget": 2}, model="lr", params={}, train={},
                  seed=0)

    def ids():
        return (RunSpec(**kw).config_hash, RunSpec(**kw, twin={}).config_hash, RunSpec(**kw, source="real").config_hash,
                SearchSpec(**search, dataset=DatasetRef("criteo_x1", "synthetic", 2000, 3)).search_id)

    before = ids()
    assert before[0] == before[1] != before[2]
    assert RunSpec(**kw, twin={"kappa": 1.0}).config_hash != before[0]
    monkeypatch.setattr(synthetic, "GENERATOR_VERSION", synthetic.GENERATOR_VERSION + 1)
    after = ids()
    assert after[0] != before[0] and after[3] != before[3] and after[2] == before[2]


def test_twin_option_errors(write_suite):
    def bad(new, path, *needles):
        with pytest.raises(ConfigError) as ei:
            load_suite(write_suite(TWIN.replace("card_ratio: 0.002, shares: {first: 1, rel_attn: 0.5}", new)))
        assert ei.value.path == path, str(ei.value)
        for n in needles:
            assert n in str(ei.value), str(ei.value)
        return str(ei.value)

    from ctrbench.data.synthetic import KNOBS

    msg = bad("shares: {first: 1, foo: 0.5}", "datasets[1].twin.shares.foo", "plants no signal part 'foo'",
              "suite.yaml:9 ")
    assert all(p in msg for p in KNOBS["amazonelectronics_x1"].shares)
    bad("card_ratio: 0", "datasets[1].twin.card_ratio", "greater than 0")
    bad("card_ratio: -1", "datasets[1].twin.card_ratio", "greater than 0")
    bad("kappa: -1", "datasets[1].twin.kappa", "greater than or equal to 0")
    bad("shares: {first: 0}", "datasets[1].twin.shares", "at least one share must be > 0")
    bad("shares: {first: -1}", "datasets[1].twin.shares.first", "greater than or equal to 0")
    bad("kapa: 3", "datasets[1].twin.kapa", "unknown key 'kapa'", "card_ratio", "auc_margin", "shares")
    bad("auc_margin: 0.5", "datasets[1].twin.auc_margin", "(0.5, 1)")
    with pytest.raises(ConfigError) as ei:  # an entry's twin options on a real dataset
        load_suite(write_suite(TWIN.replace("    rows: 2000\n", "    rows: 2000\n    source: real\n")))
    assert ei.value.path == "datasets[1].twin" and "synthetic only" in str(ei.value)
    # a share key from the defaults is wrong for a dataset that does not plant that part
    with pytest.raises(ConfigError) as ei:
        load_suite(write_suite(TWIN.replace("kappa: 100,", "shares: {rel_attn: 1},")))
    assert ei.value.path == "defaults.dataset.twin.shares.rel_attn" and "criteo_x1" in str(ei.value)
    with pytest.raises(ConfigError) as ei:  # default options where no dataset is synthetic
        load_suite(write_suite(TWIN.replace("  dataset: {rows: 3000,", "  dataset: {source: real, rows: 3000,")
                               .replace("    twin: {card_ratio: 0.002, shares: {first: 1, rel_attn: 0.5}}\n", "")))
    assert ei.value.path == "defaults.dataset.twin" and "no dataset here is synthetic" in str(ei.value)


def test_synthetic_identity_is_unchanged_by_the_real_cache_field():
    """Old synthetic run hashes stay valid: the dataset part is exactly what it was (no 'cache' key)."""
    import hashlib

    from ctrbench.data.synthetic import GENERATOR_VERSION
    from ctrbench.runs.records import RunSpec, canonical_json

    spec = RunSpec(suite="s", entry="e", model="lr", params={"a": 1}, train={"lr": 0.001, "seed": 0},
                   dataset="criteo_x1", rows=2000, data_seed=3, seed=1, system={"measure_steps": 10})
    before = {"entry": "e", "model": "lr", "params": {"a": 1}, "train": {"lr": 0.001, "seed": 0},
              "dataset": {"name": "criteo_x1", "source": "synthetic", "rows": 2000, "data_seed": 3,
                          "generator": GENERATOR_VERSION}, "seed": 1, "system": {"measure_steps": 10}}
    assert spec.config_hash == hashlib.sha256(canonical_json(before).encode()).hexdigest()[:16]


def test_real_runs_are_tied_to_their_prepared_cache(write_suite, tmp_path, data_root, fake_execute):
    """A real dataset prepared again from other files (or with other bad-row handling) gives its runs a new
    identity: they run again instead of resuming results of other data as 'finished before'."""
    import json
    import shutil

    from ctrbench.data.api import open_dataset
    from ctrbench.data.cache import cache_dir
    from ctrbench.harness.runner import run_suite
    from ctrbench.runs.store import RunStore

    twin = open_dataset("criteo_x1", "synthetic", rows=3000, seed=0, data_root=data_root)
    root = tmp_path / "root"
    real = cache_dir(root, "criteo_x1", "real")
    shutil.copytree(twin.path, real)  # stands in for `ctrbench data prepare criteo_x1 --source ...`
    manifest_path = real / "manifest.json"

    def prepare(md5: str, on_bad_rows: str = "error") -> None:
        m = json.loads(manifest_path.read_text())
        m.update(protocol="test", on_bad_rows=on_bad_rows, source={"files": {"train.csv": {"md5": md5, "size": 9}}})
        manifest_path.write_text(json.dumps(m))

    prepare("aaa")
    suite = load_suite(write_suite("""
        name: r
        defaults: {train: {max_epochs: 1}, dataset: {source: real}}
        datasets: [{name: criteo_x1}]
        seeds: [0, 1]
        entries: [{name: lr, model: lr}, {name: rs, kind: searcher, searcher: random, search: {budget: 2}}]
        """, "real.yaml"))
    first = suite.with_caches(root)
    ident = first.runs[0].identity()["dataset"]["cache"]
    assert ident["protocol"] == "test" and ident["files"] == {"train.csv": "aaa"} and ident["rows"]["train"] > 0
    assert {r.config_hash for r in first.runs}.isdisjoint(r.config_hash for r in suite.runs)
    store = RunStore(tmp_path / "runs.sqlite")
    assert run_suite(suite, store, data_root=root).executed == suite.planned_runs
    assert run_suite(suite, store, data_root=root).skipped == suite.planned_runs  # same data: resumed
    for change in (("bbb",), ("bbb", "skip")):  # other source files; then also other bad-row handling
        prepare(*change)
        assert run_suite(suite, store, data_root=root).executed == suite.planned_runs
    assert len({r.config_hash for r in store.records()}) == 3 * suite.planned_runs
    shutil.rmtree(real)
    with pytest.raises(Exception, match="has not been prepared"):
        suite.with_caches(root)
