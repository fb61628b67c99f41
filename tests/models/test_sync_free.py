"""Models read no device tensor back to the host in their forward (no `.item()`, `bool()`, `int()`, `float()`,
`.tolist()` or a `nonzero` of a tensor): counted on the CPU path by patching those entry points, since on a GPU
each would stall the stream. Ids are checked where batches are built (the loader), sizes of jagged work come
from the batch's host lengths. Reads inside ctrbench.kernels are the ops' own business (the C++ kernels report
bad ids through a host status tensor) and are not counted here."""
from __future__ import annotations

import contextlib
import os
import sys

import numpy as np
import pytest
import torch

from ctrbench.data.loader import BatchLoader
from ctrbench.models import MODELS, build_model, model_tables
from ctrbench.search.registry import get_space

KERNELS = os.sep + "kernels" + os.sep
READS = ("item", "tolist", "__bool__", "__int__", "__float__", "__index__", "nonzero")


@contextlib.contextmanager
def count_host_reads():
    """Count calls of the Tensor methods that copy a value to the host; yields the dict of counts."""
    counts = {name: 0 for name in READS}
    saved = {name: getattr(torch.Tensor, name) for name in READS}

    def wrap(name):
        orig = saved[name]

        def counted(self, *args, **kwargs):
            if KERNELS not in sys._getframe(1).f_code.co_filename:
                counts[name] += 1
            return orig(self, *args, **kwargs)
        return counted

    try:
        for name in READS:
            setattr(torch.Tensor, name, wrap(name))
        saved_nonzero = torch.nonzero
        torch.nonzero = lambda *a, **k: (counts.__setitem__("nonzero", counts["nonzero"] + 1), saved_nonzero(*a, **k))[1]
        yield counts
    finally:
        for name, fn in saved.items():
            setattr(torch.Tensor, name, fn)
        torch.nonzero = saved_nonzero


def test_the_counter_sees_a_read():
    x = torch.ones(3)
    with count_host_reads() as counts:
        bool(x.any())
        x.sum().item()
    assert counts["__bool__"] == 1 and counts["item"] == 1


def _params(name: str) -> dict:
    """The defaults, or for a model that has none for a required param (a NASRec subnet's point) a sampled one."""
    if name == "nasrec_subnet":
        space = get_space("nasrec_small", scale=0.125)
        return space.candidate(space.sample(np.random.default_rng(0)))[0]
    if name == "dnas_subnet":  # every module of the distdnas space
        ops = zip(("fc", "dp", "dcn", "fm", "gating", "skip"), ("efc", "attn", "skip") * 2)
        return get_space("distdnas", num_blocks=6, dense_dim=8).candidate(
            {"blocks": [{"dense": d, "sparse": s} for d, s in ops]})[0]
    return {}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_forward_reads_nothing_back(name, tiny_caches):
    fitted = 0
    for dataset in ("criteo_x1", "amazonelectronics_x1", "kuaivideo_x1"):
        cache = tiny_caches[dataset]
        try:
            model = build_model(name, cache.spec, cache.vocab_sizes, _params(name), model_tables(cache), seed=0)
        except ValueError:  # a model that does not fit this dataset (e.g. a sequential one on Criteo)
            continue
        fitted += 1
        model.train()
        batch = next(iter(BatchLoader(cache, "train", 64)))
        model(batch)  # warm-up: lazy buffers and caches are built once, outside the count
        with count_host_reads() as counts:
            model(batch)
        assert sum(counts.values()) == 0, f"{name} on {dataset} read device tensors back: {counts}"
    assert fitted, f"{name} fits none of the test datasets"
