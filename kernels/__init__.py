"""ctrbench.kernels: fused CTR ops (embedding-bag collection, interleaved attention, entropy fusion).

Usable without the rest of ctrbench. Backends per op: reference (PyTorch), triton, cpp (C++/OpenMP),
cuda; chosen by argument, else $CTRBENCH_BACKEND, else auto (see backend.py).

Importing this package registers every `torch.ops.ctrbench.*` op: each op's sub-package defines its
custom ops (schemas, fake kernels, autograd) on import, and the C++/CUDA extension, when built, adds
its low-level kernels. It needs only torch: triton is imported lazily by the Triton backends, and
nothing here imports the data or harness layers (pydantic, pyarrow).
"""
from ctrbench.kernels.backend import (  # noqa: F401
    BACKENDS,
    BackendUnavailableError,
    available_backends,
    backend_status,
    load_extension,
    resolve_backend,
)
from ctrbench.kernels import embedding_bag, entropy_fusion, interleaved_attention  # noqa: F401,E402

load_extension()  # registers ctrbench::_*_fwd / _bwd / ebc_*_cpu (and *_cuda); None with the reason if not built
