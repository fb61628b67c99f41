"""NASWOT (Mellor et al., ICML 2021): the log-determinant of the Hamming kernel of the ReLU activation codes over
one batch. Each example's code is the on/off pattern of every ReLU output of a forward pass (ReLUs are caught as
torch functions, so functional and module ReLUs alike count); K[i, j] = the number of units where examples i and j
agree, and the score is log|det K|. It is -inf where K is singular (two examples with the same code, or a model
with no ReLU at all): such a model separates the batch worst. Eval mode, no gradient. Higher = better."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from ctrbench.search.proxies.base import Proxy, preserved
from ctrbench.search.registry import register_proxy

RELUS = {F.relu, torch.relu, torch.relu_, torch.Tensor.relu, torch.Tensor.relu_, F.relu_}


class ReluCodes(TorchFunctionMode):
    """Collects (output > 0) of every ReLU call, flattened per example."""

    def __init__(self):
        super().__init__()
        self.codes: list[torch.Tensor] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func in RELUS:
            self.codes.append((out > 0).reshape(out.shape[0], -1).double())
        return out


def hamming_kernel(codes: torch.Tensor) -> torch.Tensor:
    """K = c c^T + (1 - c)(1 - c)^T for binary codes [examples, units]."""
    return codes @ codes.T + (1 - codes) @ (1 - codes).T


@register_proxy("naswot")
class NASWOT(Proxy):
    def score(self, model: nn.Module, batches: Sequence) -> float:
        self.check_batches(batches)
        batch = batches[0]
        with preserved(model), torch.no_grad():
            model.eval()
            mode = ReluCodes()
            with mode:
                model(batch)
        if not mode.codes:
            return float("-inf")
        codes = torch.cat(mode.codes, dim=1)
        return float(torch.linalg.slogdet(hamming_kernel(codes)).logabsdet)
