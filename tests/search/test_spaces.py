"""Space properties: moves stay in the space, encode/decode and JSON round trips, stable hashes, sampling reaches
every choice, bad points and options fail with where."""
from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ctrbench.search.registry import SpaceOptionsError, get_space
from ctrbench.search.spaces import SpacePointError
from ctrbench.search.spaces.space import canonical_json

SPACES = [("dcnv2", {}), ("nasrec_small", {"scale": 0.125}), ("nasrec_full", {"scale": 0.125}),
          ("nasrec_xlarge_zeros", {"scale": 0.125}), ("nasrec_full", {}), ("distdnas", {"num_blocks": 3}),
          ("dhen", {})]
IDS = [f"{n}{o.get('scale', '')}" for n, o in SPACES]
seeds = st.integers(0, 2**32 - 1)


@pytest.fixture(params=SPACES, ids=IDS)
def space(request):
    name, opts = request.param
    return get_space(name, **opts)


@settings(max_examples=10, deadline=None)
@given(seed=seeds)
@pytest.mark.parametrize("name,opts", SPACES, ids=IDS)
def test_moves_stay_in_space_and_round_trip(name, opts, seed):
    space = get_space(name, **opts)
    rng = np.random.default_rng(seed)
    p = space.sample(rng)
    assert space.validate(p) == p
    near = space.neighbours(p)
    picks = rng.choice(len(near), min(len(near), 25), replace=False)  # a sample of them, to stay fast
    for q in [space.mutate(p, rng) for _ in range(5)] + [near[int(i)] for i in picks]:
        q = space.validate(q)  # raises SpacePointError when a move leaves the space
        assert space.decode(space.encode(q)) == q
        assert space.from_json(space.to_json(q)) == q
    v = space.encode(p)
    assert v.shape == (space.encoding_size,) and v.dtype == np.float64
    moves = space.neighbours(p) + [p]
    assert len({space.to_json(q) for q in moves}) == len(moves)  # every neighbour is another point
    # ... and hashes alike exactly where the canonical points (the models they build) are alike
    assert len({space.hash(q) for q in moves}) == len({canonical_json(space.canonical(q)) for q in moves})


def test_hash_is_canonical_and_stable():
    space = get_space("nasrec_small", scale=0.125)
    p = space.sample(np.random.default_rng(7))
    shuffled = json.loads(json.dumps(p))
    shuffled["blocks"] = [dict(reversed(list(b.items())), dense_idx=list(reversed(b["dense_idx"])))
                          for b in shuffled["blocks"]]
    assert space.hash(shuffled) == space.hash(p)
    # pinned: a change to the canonical form or the hash function would silently split stored results
    blocks = [dict(dense_idx=[i], sparse_idx=[0], dense_left_idx=0, dense_right_idx=i, dense_node="fc",
                   sparse_node="efc", dense_dim=16, sparse_dim=4, dense_sparse_interact=i % 2, deep_fm=0)
              for i in range(7)]
    assert space.hash({"dp_tokens": 16, "blocks": blocks}) == "5d5ef89bd46cb5fb"
    dcn = get_space("dcnv2")
    q = {"params": {"embedding_dim": 8, "num_cross_layers": 2, "parallel_dnn_hidden_units": [64, 64],
                    "net_dropout": 0.1}, "train": {"lr": 0.001}}
    assert dcn.hash(q) == "b8a378ae2eaecb2f"


@pytest.mark.parametrize("name,opts", SPACES[:4], ids=IDS[:4])
def test_sampling_covers_every_choice(name, opts):
    space = get_space(name, **opts)
    rng = np.random.default_rng(0)
    seen: dict[str, set] = {}
    for _ in range(600):
        for k, v in space.knobs(space.sample(rng)).items():
            seen.setdefault(k, set()).add(json.dumps(v))
    for k, values in space.choices().items():
        assert seen[k] == {json.dumps(v) for v in values}, k


def test_nasrec_space_follows_the_paper():
    full = get_space("nasrec_full")
    assert full.cfg.dense_dims == (16, 32, 64, 128, 256, 512, 768, 1024) and full.cfg.sparse_dims == (16, 32, 48, 64)
    assert full.cfg.dense_nodes == ("fc", "dp", "sg", "sum") and full.cfg.sparse_nodes == ("attn", "efc")
    assert get_space("nasrec_small").cfg.dense_nodes == ("fc", "dp") and full.cfg.num_blocks == 7
    assert full.cfg.k == 45  # round(sqrt(2 * 1024))
    small = get_space("nasrec_small", scale=0.125)
    assert small.cfg.dense_dims == (2, 4, 8, 16, 32, 64, 96, 128) and small.cfg.sparse_dims == (2, 4, 6, 8)
    rng = np.random.default_rng(1)
    for _ in range(200):
        for i, b in enumerate(small.sample(rng)["blocks"]):
            assert 1 <= len(b["dense_idx"]) <= min(4, i + 1) and 1 <= len(b["sparse_idx"]) <= min(4, i + 1)
            assert max(b["dense_idx"] + b["sparse_idx"] + [b["dense_left_idx"], b["dense_right_idx"]]) <= i
    zeros = get_space("nasrec_xlarge_zeros", scale=0.125)
    assert all(not (b["dense_node"] == b["sparse_node"] == "zeros") for _ in range(200)
               for b in zeros.sample(rng)["blocks"])


def test_bad_points_say_where(space):
    p = space.sample(np.random.default_rng(3))
    with pytest.raises(SpacePointError, match="encoding"):
        space.decode(np.zeros(space.encoding_size + 1))
    with pytest.raises(SpacePointError, match="JSON line 1"):
        space.from_json("{not json")


def test_bad_nasrec_points_name_the_block():
    space = get_space("nasrec_small", scale=0.125)
    p = space.sample(np.random.default_rng(3))
    bad = json.loads(json.dumps(p))
    bad["blocks"][2]["dense_dim"] = 100
    with pytest.raises(SpacePointError, match=r"blocks\[2\]\.dense_dim: 100 not in"):
        space.validate(bad)
    bad = json.loads(json.dumps(p))
    bad["blocks"][1]["dense_idx"] = [0, 1, 2]
    with pytest.raises(SpacePointError, match="block 1 sees sources 0..1"):
        space.validate(bad)
    bad = json.loads(json.dumps(p))
    bad["blocks"][4]["sparse_node"] = "attn"  # not in NASRec-Small
    with pytest.raises(SpacePointError, match=r"blocks\[4\]\.sparse_node"):
        space.validate(bad)
    bad = json.loads(json.dumps(p))
    bad["blocks"][5]["dense_idx"] = [0, 1, 2, 3, 4]
    with pytest.raises(SpacePointError, match=r"blocks\[5\]\.dense_idx"):
        space.validate(bad)
    with pytest.raises(SpacePointError, match="3 blocks; the space has 7"):
        space.validate({**p, "blocks": p["blocks"][:3]})


def test_space_options_are_checked():
    with pytest.raises(SpaceOptionsError, match="search space 'nasrec_small': scale 0.01 merges widths"):
        get_space("nasrec_small", scale=0.01)
    with pytest.raises(SpaceOptionsError, match="unknown option 'width'.*valid: scale"):
        get_space("nasrec_small", width=2)
    with pytest.raises(SpaceOptionsError, match=r"valid: \(none\)"):
        get_space("dcnv2", scale=0.5)
