"""ctrbench.kernels: fused CTR ops (embedding-bag collection, interleaved attention, entropy fusion).

Usable without the rest of ctrbench. Backends per op: reference (PyTorch), triton, cpp (C++/OpenMP),
cuda; chosen by argument, else $CTRBENCH_BACKEND, else auto (see backend.py).
"""
from ctrbench.kernels.backend import (  # noqa: F401
    BACKENDS,
    BackendUnavailableError,
    available_backends,
    backend_status,
    resolve_backend,
)
