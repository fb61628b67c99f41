"""Fixtures of the search tests: a tiny planted criteo-layout cache, one torch thread per test."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "models"))
from tiny_cache import build_tiny_cache  # noqa: E402

from bench_tables import planted_table  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Every search test runs on one torch thread (tests/conftest.py)."""


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory):
    """A 600-row planted-logistic cache with Criteo's layout (13 numeric, 26 categorical fields)."""
    return build_tiny_cache("criteo_x1", tmp_path_factory.mktemp("nasrec") / "c", rows=600)


@pytest.fixture(scope="session")
def table(tmp_path_factory):
    """A 40-point planted table (planted_table) and its points by hash."""
    path = tmp_path_factory.mktemp("bench") / "t.csv"
    return path, planted_table(path, 40)
