"""SynFlow (Tanaka et al., NeurIPS 2020; as a NAS proxy in Abdelfattah et al. 2021): with every weight replaced
by its absolute value, in float64 and eval mode, R = the sum of the model's outputs on an all-ones input, and the
score is sum |theta * dR/dtheta| over every parameter. A CTR input has ids besides numbers: the numeric features
are set to 1 and the first batch's categorical ids are kept (an "all-ones" id has no meaning). Data-independent up
to those ids; run on a copy, so the model is untouched. Higher = better."""
from __future__ import annotations

import copy
import dataclasses
from typing import Sequence

import torch
from torch import nn

from ctrbench.search.proxies.base import Proxy
from ctrbench.search.registry import register_proxy


@register_proxy("synflow")
class SynFlow(Proxy):
    def score(self, model: nn.Module, batches: Sequence) -> float:
        self.check_batches(batches)
        net = copy.deepcopy(model).double().eval()
        with torch.no_grad():
            for p in net.parameters():
                p.abs_()
                p.requires_grad_(True)
        batch = batches[0]
        ones = dataclasses.replace(batch, dense=torch.ones_like(batch.dense, dtype=torch.float64))
        net.zero_grad(set_to_none=True)
        net(ones).sum().backward()
        return float(sum((p.detach() * p.grad).abs().sum() for p in net.parameters() if p.grad is not None))
