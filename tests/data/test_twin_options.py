"""Twin generator options (a suite's `twin:`): a variant lands in its own cache folder, and its manifest records
the options the generator actually used."""
from __future__ import annotations

import pytest

from ctrbench.data.api import open_dataset, twin_tag
from ctrbench.data.synthetic import GENERATOR_VERSION, KNOBS
from ctrbench.errors import DataError


def test_twin_tag_without_options_is_unchanged_and_options_hash_stably():
    assert twin_tag(2000, 3) == twin_tag(2000, 3, {}) == f"twin-v{GENERATOR_VERSION}-2000r-seed3"
    a = twin_tag(2000, 3, {"kappa": 100, "shares": {"first": 1, "pair": 0.5}})
    assert a.startswith(f"twin-v{GENERATOR_VERSION}-2000r-seed3-o") and len(a) == len(twin_tag(2000, 3)) + 10
    assert a == twin_tag(2000, 3, {"shares": {"pair": 0.5, "first": 1.0}, "kappa": 100.0})  # canonical: order, ints
    assert a != twin_tag(2000, 3, {"kappa": 100, "shares": {"first": 1, "pair": 0.6}})
    assert a != twin_tag(2000, 3, {"kappa": 101, "shares": {"first": 1, "pair": 0.5}})
    with pytest.raises(DataError, match="unknown twin option 'kapa'"):
        twin_tag(2000, 3, {"kapa": 1})


def test_open_dataset_variant_has_its_own_cache_and_records_its_options(tmp_path):
    default = open_dataset("criteo_x1", rows=8000, seed=0, data_root=tmp_path)
    variant = open_dataset("criteo_x1", rows=8000, seed=0, data_root=tmp_path,
                           twin={"shares": {"first": 1.0}, "card_ratio": 0.001})
    assert default.path != variant.path and default.path.name == twin_tag(8000, 0)
    assert variant.path.name == twin_tag(8000, 0, {"shares": {"first": 1.0}, "card_ratio": 0.001})
    d, v = default.manifest["twin"], variant.manifest["twin"]
    assert v["mixer"]["shares"] == {"first": 1.0}
    assert set(d["mixer"]["shares"]) == {k for k, x in KNOBS["criteo_x1"].shares.items() if x > 0}
    assert v["card_ratio"] == 0.001 and d["card_ratio"] == 0.005 and v["kappa"] == d["kappa"]
    # vocabularies approach max(16, card_ratio * rows): 40 by default, 16 here
    assert sum(variant.vocab_sizes.values()) < sum(default.vocab_sizes.values())
    assert all(variant.vocab_sizes[f] <= default.vocab_sizes[f] for f in default.vocab_sizes)
    # reopening finds the built variant (same folder, same manifest)
    again = open_dataset("criteo_x1", rows=8000, seed=0, data_root=tmp_path,
                         twin={"card_ratio": 0.001, "shares": {"first": 1}})
    assert again.path == variant.path and again.manifest["twin"]["mixer"] == v["mixer"]


def test_bad_twin_options_are_data_errors(tmp_path):
    valid = ", ".join(KNOBS["criteo_x1"].shares)
    with pytest.raises(DataError, match=f"plants no signal part 'rel_attn'; valid: {valid}"):
        open_dataset("criteo_x1", rows=500, data_root=tmp_path, twin={"shares": {"rel_attn": 1.0}})
    with pytest.raises(DataError, match="one of them > 0"):
        open_dataset("criteo_x1", rows=500, data_root=tmp_path, twin={"shares": {"first": 0.0}})
    with pytest.raises(DataError, match="synthetic only"):
        open_dataset("criteo_x1", "real", data_root=tmp_path, twin={"kappa": 10.0})
