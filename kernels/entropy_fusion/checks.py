"""Input checks for entropy_weighted_fusion: each failure is a FusionInputError naming the argument.

`check_static` looks only at shapes, dtypes and devices, so it also runs on fake tensors (torch.compile);
`check_tau_value` reads tau and runs on CPU only (on CUDA it would cost a host sync per call; there the
kernels turn a non-positive tau into NaN outputs instead).
"""
from __future__ import annotations

import math

import torch

from ctrbench.kernels.entropy_fusion.reference import SPACES, compute_dtype

LOGIT_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
# smallest eps with 1 - eps < 1 in the math dtype of each logits dtype
_MIN_EPS = {dt: torch.finfo(compute_dtype(dt)).eps for dt in LOGIT_DTYPES}


class FusionInputError(ValueError):
    """Bad argument to entropy_weighted_fusion; `argument` names it."""

    def __init__(self, argument: str, message: str):
        self.argument = argument
        super().__init__(f"entropy_weighted_fusion: argument {argument!r}: {message}")


def check_static(logits: torch.Tensor, tau: torch.Tensor, space: str, eps: float) -> None:
    """Shape / dtype / device / option checks (fake-tensor safe)."""
    if not isinstance(logits, torch.Tensor):
        raise FusionInputError("logits", f"must be a tensor, got {type(logits).__name__}")
    if logits.dim() != 2:
        raise FusionInputError("logits", f"must be 2-D [B, K], got shape {tuple(logits.shape)}")
    if logits.shape[1] == 0:
        raise FusionInputError("logits", "must have K >= 1 members (got K = 0)")
    if logits.dtype not in LOGIT_DTYPES:
        raise FusionInputError("logits", f"dtype must be one of float32/float64/float16/bfloat16, got {logits.dtype}")
    if not isinstance(tau, torch.Tensor):
        raise FusionInputError("tau", f"must be a 0-d tensor, got {type(tau).__name__}")
    if tau.dim() != 0:
        raise FusionInputError("tau", f"must be a 0-d tensor (a scalar), got shape {tuple(tau.shape)}")
    if not tau.dtype.is_floating_point:
        raise FusionInputError("tau", f"must be floating point, got {tau.dtype}")
    if tau.device != logits.device:
        raise FusionInputError("tau", f"must be on logits' device {logits.device}, got {tau.device}")
    if space not in SPACES:
        raise FusionInputError("space", f"must be one of {SPACES}, got {space!r}")
    tiny = _MIN_EPS[logits.dtype]
    if not (isinstance(eps, (int, float)) and tiny <= eps < 0.5):
        raise FusionInputError("eps", f"must lie in [{tiny:.3g}, 0.5) for {logits.dtype} logits, got {eps!r}")


def check_tau_value(tau: torch.Tensor) -> None:
    """tau must be finite and > 0; checked where reading it is free (CPU)."""
    if tau.device.type != "cpu":
        return
    value = float(tau)
    if not (value > 0.0 and math.isfinite(value)):
        raise FusionInputError("tau", f"must be finite and > 0, got {value}")
