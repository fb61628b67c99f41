"""Device guard for the Triton launchers: every tensor on one device, which is a GPU, or the CPU with kernels
that run in the Triton interpreter (TRITON_INTERPRET=1 when triton decorated them). Anything else would crash
inside triton or read another device's memory; the guard raises TritonDeviceError naming the tensors instead.
"""
from __future__ import annotations

import os
from typing import Optional

import torch


class TritonDeviceError(ValueError):
    """Tensors a Triton kernel cannot run on: not one device, or a CPU device without the interpreter."""


def interpreted(kernel) -> bool:
    """True when `kernel` (a @triton.jit function) runs in the interpreter, i.e. accepts CPU tensors."""
    try:
        from triton.runtime.interpreter import InterpretedFunction
    except ImportError:  # a triton without the class: fall back on the variable that selects it
        return os.environ.get("TRITON_INTERPRET") == "1"
    return isinstance(kernel, InterpretedFunction)


def check_launch(where: str, kernel, **tensors: Optional[torch.Tensor]) -> torch.device:
    """The one device of `tensors` (None entries ignored) if `kernel` can run on it; else TritonDeviceError."""
    devices = {name: t.device for name, t in tensors.items() if t is not None}
    if len(set(devices.values())) > 1:
        listed = ", ".join(f"{name} on {dev}" for name, dev in devices.items())
        raise TritonDeviceError(f"{where}: the Triton kernels need every tensor on one device, got {listed}")
    device = next(iter(devices.values()), torch.device("cpu"))
    if device.type == "cuda":
        return device
    if device.type == "cpu":
        if interpreted(kernel):
            return device
        raise TritonDeviceError(
            f"{where}: the Triton kernels got CPU tensors, which they read only in the interpreter: set "
            "TRITON_INTERPRET=1 before triton is imported, or use the cpp or reference backend on the CPU")
    raise TritonDeviceError(f"{where}: the Triton kernels run on CUDA tensors (or CPU ones in the interpreter), "
                            f"got {device.type} tensors")
