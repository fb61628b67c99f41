"""Fixtures shared by several test folders."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch


@pytest.fixture
def one_torch_thread():
    """Run the test on one torch thread and restore the count after (the suite runs beside other processes on
    2 cores, where 2 torch threads thrash)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> Path:
    """The session's dataset root: tiny twins are built once and shared by the tests (and their subprocesses)."""
    return tmp_path_factory.mktemp("ctrbench-data")


@pytest.fixture
def data_root_env(data_root, monkeypatch):
    """Keep the test's dataset caches in the session's data root (CTRBENCH_DATA_ROOT), never in ~/.cache."""
    monkeypatch.setenv("CTRBENCH_DATA_ROOT", str(data_root))
