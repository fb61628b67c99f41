"""Tiny caches shared by the model tests (session-scoped, built once) and one torch thread per test
(tests/conftest.py says why)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ctrbench.data.api import open_dataset

sys.path.insert(0, str(Path(__file__).parent))
from tiny_cache import build_tiny_cache  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Every model test runs on one torch thread (tests/conftest.py)."""


TWIN_ROWS = 5000


@pytest.fixture(scope="session")
def tiny_caches(tmp_path_factory):
    """name -> a 5000-row synthetic twin (the real generator) of a non-sequential, a sequential and a pretrained
    dataset."""
    root = tmp_path_factory.mktemp("twins")
    return {name: open_dataset(name, "synthetic", rows=TWIN_ROWS, data_root=root) for name in
            ("criteo_x1", "amazonelectronics_x1", "kuaivideo_x1")}


@pytest.fixture(scope="session")
def planted_cache(tmp_path_factory):
    """A planted-logistic criteo-layout cache (tiny_cache.py), for cases a twin cannot set up."""
    return build_tiny_cache("criteo_x1", tmp_path_factory.mktemp("planted") / "c", rows=3000)
