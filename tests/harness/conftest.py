"""Shared fixtures of the harness tests: a session data root (tiny twins built once), suite writers, and the
fast stand-in for execute_run (harness_fakes) for the tests of the harness's own logic."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from harness_fakes import fake_execute_run

TINY_ROWS = 3000


@pytest.fixture(autouse=True)
def _data_root_env(data_root_env):
    """Every harness test keeps its dataset caches in the session's data root (tests/conftest.py)."""


@pytest.fixture
def write_suite(tmp_path):
    def write(text: str, name: str = "suite.yaml") -> Path:
        p = tmp_path / name
        p.write_text(textwrap.dedent(text).lstrip())
        return p

    return write


@pytest.fixture
def fake_execute(monkeypatch):
    import ctrbench.harness.runner as runner

    calls = []

    def fake(run, **kw):
        calls.append(run)
        return fake_execute_run(run, **kw)

    monkeypatch.setattr(runner, "execute_run", fake)
    return calls
