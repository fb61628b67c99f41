"""Fixtures of the CubicML tests: the session's data root for tiny twins (shared with subprocesses)."""
from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _data_root_env(data_root_env):
    """Every CubicML test keeps its dataset caches in the session's data root (tests/conftest.py)."""
