"""Which kernel backend runs an op: the argument, else $CTRBENCH_BACKEND, else auto; and which one did run.

Auto picks the CUDA kernels for tensors on a GPU and the C++ kernels on the CPU (falling back to the
reference only when the extension is not built). Asking for a backend that cannot run is an error
that names what is missing, never a silent fallback. Each op's dispatcher reports the backend it resolved
through `note_backend`; `record_backends()` collects those reports (what a run record's `backend` holds).
"""
from __future__ import annotations

import importlib
import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache

import torch

BACKENDS = ("reference", "triton", "cpp", "cuda")
ENV_VAR = "CTRBENCH_BACKEND"


class BackendUnavailableError(RuntimeError):
    """Raised when a requested backend cannot run here; the message says why."""


@dataclass(frozen=True)
class BackendStatus:
    name: str
    available: bool
    reason: str  # why it is (un)available, for `ctrbench kernels info`


@lru_cache(maxsize=1)
def load_extension():
    """Import ctrbench.kernels._C (registers the C++/CUDA kernels); None with the reason if absent."""
    try:
        return importlib.import_module("ctrbench.kernels._C"), "built"
    except ImportError as exc:  # not built: pip install --no-build-isolation -e .
        return None, f"extension ctrbench.kernels._C not importable ({exc}); build it with `pip install --no-build-isolation -e .`"


def extension_has_cuda() -> bool:
    """True when the extension was compiled with CUDA kernels (only on a CUDA torch with nvcc)."""
    ext, _ = load_extension()
    if ext is None:
        return False
    return bool(torch.ops.ctrbench.built_with_cuda())


def backend_status(device: torch.device | str = "cpu") -> list[BackendStatus]:
    """Availability of every backend for tensors on `device`, each with its reason."""
    device = torch.device(device)
    out = [BackendStatus("reference", True, "pure PyTorch, runs everywhere")]
    try:
        import triton  # noqa: F401

        if device.type == "cuda" and torch.cuda.is_available():
            out.append(BackendStatus("triton", True, f"triton {triton.__version__} on {torch.cuda.get_device_name(device)}"))
        elif device.type == "cpu" and os.environ.get("TRITON_INTERPRET") == "1":
            out.append(BackendStatus("triton", True, f"triton {triton.__version__} in the interpreter (TRITON_INTERPRET=1)"))
        else:
            out.append(BackendStatus("triton", False, f"triton {triton.__version__} needs a CUDA device, or TRITON_INTERPRET=1 for CPU tensors"))
    except ImportError as exc:
        out.append(BackendStatus("triton", False, f"triton not installed ({exc})"))
    ext, why = load_extension()
    if device.type == "cpu":
        out.append(BackendStatus("cpp", ext is not None, "C++ OpenMP kernels in ctrbench.kernels._C" if ext else why))
    else:
        out.append(BackendStatus("cpp", False, "the C++ kernels run on CPU tensors only"))
    if not torch.cuda.is_available():
        out.append(BackendStatus("cuda", False, "no CUDA device (torch.cuda.is_available() is False)"))
    elif ext is None:
        out.append(BackendStatus("cuda", False, why))
    elif not extension_has_cuda():
        out.append(BackendStatus("cuda", False, "ctrbench.kernels._C was built without CUDA (needs a CUDA torch and nvcc at build time)"))
    else:
        out.append(BackendStatus("cuda", device.type == "cuda", "CUDA kernels in ctrbench.kernels._C" if device.type == "cuda" else "CUDA kernels need CUDA tensors"))
    return out


def available_backends(device: torch.device | str = "cpu") -> list[str]:
    return [s.name for s in backend_status(device) if s.available]


def resolve_backend(requested: str | None = None, device: torch.device | str = "cpu") -> str:
    """Argument > $CTRBENCH_BACKEND > auto; raises BackendUnavailableError naming what is missing."""
    device = torch.device(device)
    choice = requested or os.environ.get(ENV_VAR) or "auto"
    if choice == "auto":
        avail = available_backends(device)
        for name in (("cuda", "triton") if device.type == "cuda" else ("cpp",)):
            if name in avail:
                return name
        return "reference"
    if choice not in BACKENDS:
        raise BackendUnavailableError(f"unknown backend {choice!r}; valid: {', '.join(BACKENDS)} or 'auto'")
    status = {s.name: s for s in backend_status(device)}[choice]
    if not status.available:
        raise BackendUnavailableError(f"backend {choice!r} is not available for {device.type} tensors: {status.reason}")
    return choice


# ------------------------------------------------------------------------------------------ what ran

_recorders: tuple[dict, ...] = ()  # the open record_backends() dicts; replaced, never mutated, so readers need no lock
_recorders_lock = threading.Lock()


def note_backend(op: str, backend: str) -> str:
    """Report that `op` runs on `backend` (each op's dispatcher calls this); returns `backend`, so a dispatcher
    can wrap its resolution in it. Outside any record_backends() it costs one empty loop."""
    for seen in _recorders:
        seen[op] = backend
    return backend


@contextmanager
def record_backends():
    """Collect {op: backend it ran on} of every op dispatched in this process (any thread, autograd's backward
    included) while the block runs; the last backend an op reported wins. Nestable."""
    global _recorders
    seen: dict[str, str] = {}
    with _recorders_lock:
        _recorders = (*_recorders, seen)
    try:
        yield seen
    finally:
        with _recorders_lock:
            _recorders = tuple(r for r in _recorders if r is not seen)
