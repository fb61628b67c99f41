"""The loader's prefetch keeps the order, raises a producer's error at its batch and stops when the loop leaves;
the kernel-backend knob sets $CTRBENCH_BACKEND for the block only."""
from __future__ import annotations

import os

import pytest

from ctrbench.cubicml.execution import kernel_backend, prefetched
from ctrbench.cubicml.system import SystemKnobs


def test_prefetch_keeps_order_and_raises_at_the_failing_batch():
    assert list(prefetched(range(20), 3)) == list(range(20))
    assert list(prefetched(range(5), 0)) == list(range(5))

    def broken():
        yield 1
        yield 2
        raise OSError("disk gone at batch 3")

    got = []
    with pytest.raises(OSError, match="batch 3"):
        for b in prefetched(broken(), 2):
            got.append(b)
    assert got == [1, 2]


def test_prefetch_stops_when_the_loop_leaves_early():
    it = prefetched(iter(range(10**6)), 4)
    assert next(it) == 0
    it.close()  # the generator's finally stops and joins the thread


def test_kernel_backend_sets_the_environment_for_the_block(monkeypatch):
    monkeypatch.delenv("CTRBENCH_BACKEND", raising=False)
    with kernel_backend(SystemKnobs(kernel_backend="reference")):
        assert os.environ["CTRBENCH_BACKEND"] == "reference"
    assert "CTRBENCH_BACKEND" not in os.environ
    with kernel_backend(SystemKnobs()):
        assert "CTRBENCH_BACKEND" not in os.environ
