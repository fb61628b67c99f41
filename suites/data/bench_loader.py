"""pytest-benchmark for the BatchLoader (run: pytest suites/data/bench_loader.py).

A Criteo-shaped cache — the criteo_x1 twin with 2M rows (13 numeric + 26 categorical; train split 1.44M rows),
built once under the data root ($CTRBENCH_DATA_ROOT, else ~/.cache/ctrbench) — iterated for one full epoch at
batch 4096, shuffled and in order; plus the AmazonElectronics twin (two 100-long sequences) for reference.
Each benchmark records rows/s in `extra_info["rows_per_s"]` (rows of the epoch / median wall time) and, since
a shared machine's wall time says more about its neighbours than about the loader, `rows_per_cpu_s` (rows /
median process CPU time of an epoch).
Target (issue 2): >= 2M rows/s for the shuffled Criteo-shaped case on a 2-core machine.
CTRBENCH_BENCH_LOADER_ROWS overrides the Criteo twin size.
"""
from __future__ import annotations

import os
import statistics
import time

import pytest

from ctrbench.data.api import open_dataset
from ctrbench.data.loader import BatchLoader

ROWS = int(os.environ.get("CTRBENCH_BENCH_LOADER_ROWS", 2_000_000))
BATCH = 4096


@pytest.fixture(scope="module")
def criteo():
    return open_dataset("criteo_x1", "synthetic", rows=ROWS, seed=0)


@pytest.fixture(scope="module")
def amazon():
    return open_dataset("amazonelectronics_x1", "synthetic", seed=0)


def _bench_epoch(benchmark, cache, shuffle: bool, rounds: int):
    loader = BatchLoader(cache, "train", BATCH, shuffle=shuffle, seed=0)
    cpu = []

    def epoch():
        loader.set_epoch(loader.epoch + 1)
        t0 = time.process_time()
        n = 0
        for batch in loader:
            n += batch.batch_size
        cpu.append(time.process_time() - t0)
        return n

    rows = benchmark.pedantic(epoch, rounds=rounds, warmup_rounds=1)
    assert rows == loader.rows
    benchmark.extra_info["rows"] = rows
    benchmark.extra_info["batch_size"] = BATCH
    benchmark.extra_info["rows_per_s"] = rows / benchmark.stats.stats.median
    benchmark.extra_info["rows_per_cpu_s"] = rows / statistics.median(cpu[1:] or cpu)  # skip the warm-up
    return benchmark.extra_info["rows_per_s"]


@pytest.mark.parametrize("shuffle", [True, False], ids=["shuffled", "in-order"])
def test_criteo_shaped_epoch(benchmark, criteo, shuffle):
    benchmark.group = "loader-criteo_x1"
    _bench_epoch(benchmark, criteo, shuffle, rounds=5)


def test_amazon_sequential_epoch(benchmark, amazon):
    benchmark.group = "loader-amazonelectronics_x1"
    _bench_epoch(benchmark, amazon, True, rounds=3)
