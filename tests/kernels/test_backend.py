"""Backend choice (kernels/backend.py): argument > $CTRBENCH_BACKEND > auto, and errors naming what is missing."""
from __future__ import annotations

import pytest
import torch

import ctrbench.kernels.entropy_fusion.op as fusion_op
from ctrbench.kernels.backend import (
    BACKENDS,
    ENV_VAR,
    BackendUnavailableError,
    available_backends,
    backend_status,
    resolve_backend,
)
from ctrbench.kernels.entropy_fusion import entropy_weighted_fusion


@pytest.fixture
def clean_env(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    return monkeypatch


def test_status_lists_every_backend_with_a_reason(clean_env):
    for device in ("cpu", "cuda"):
        status = backend_status(device)
        assert [s.name for s in status] == list(BACKENDS)
        assert all(s.reason for s in status)
    assert available_backends("cpu")[0] == "reference"


def test_auto_picks_cpp_on_cpu(clean_env):
    assert resolve_backend(None, "cpu") == "cpp"
    assert resolve_backend("auto", "cpu") == "cpp"


def test_env_overrides_auto_and_argument_overrides_env(clean_env):
    clean_env.setenv(ENV_VAR, "reference")
    assert resolve_backend(None, "cpu") == "reference"
    assert resolve_backend("cpp", "cpu") == "cpp"


def test_unknown_backend_is_named(clean_env):
    with pytest.raises(BackendUnavailableError, match="'fastest'.*valid: reference, triton, cpp, cuda"):
        resolve_backend("fastest", "cpu")
    clean_env.setenv(ENV_VAR, "nope")
    with pytest.raises(BackendUnavailableError, match="'nope'"):
        resolve_backend(None, "cpu")


def test_cuda_for_cpu_tensors_says_why(clean_env):
    why = "CUDA kernels need CUDA tensors" if torch.cuda.is_available() else "no CUDA device"
    with pytest.raises(BackendUnavailableError, match=f"'cuda'.*{why}"):
        resolve_backend("cuda", "cpu")


def test_cpp_is_unavailable_for_cuda_tensors(clean_env):
    with pytest.raises(BackendUnavailableError, match="'cpp'.*CPU tensors only"):
        resolve_backend("cpp", "cuda")


def test_triton_on_cpu_needs_the_interpreter(clean_env):
    with pytest.raises(BackendUnavailableError, match="'triton'.*TRITON_INTERPRET=1"):
        resolve_backend("triton", "cpu")
    clean_env.setenv("TRITON_INTERPRET", "1")
    assert resolve_backend("triton", "cpu") == "triton"


def test_the_op_dispatches_on_the_env_choice(clean_env):
    calls = []
    for name in ("reference", "cpp"):
        original = fusion_op._FORWARD[name]
        clean_env.setitem(fusion_op._FORWARD, name, lambda *a, _n=name, _f=original: calls.append(_n) or _f(*a))
    x = torch.randn(4, 3)
    entropy_weighted_fusion(x, 1.0)
    clean_env.setenv(ENV_VAR, "reference")
    entropy_weighted_fusion(x, 1.0)
    entropy_weighted_fusion(x, 1.0, backend="cpp")
    assert calls == ["cpp", "reference", "cpp"]
    clean_env.setenv(ENV_VAR, "cuda")
    with pytest.raises(BackendUnavailableError, match="cuda"):
        entropy_weighted_fusion(x, 1.0)
