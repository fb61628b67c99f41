"""Every Triton launcher refuses tensors it cannot run on with TritonDeviceError, before triton sees them: CPU
tensors with compiled (not interpreted) kernels, tensors on different devices, devices that are neither CUDA nor
the CPU. The compiled-mode checks run in this process; the interpreted ones in a TRITON_INTERPRET=1 child
(triton_interp.py says why)."""
from __future__ import annotations

import pytest
import torch
from triton_interp import INTERPRETED, run_interpreted

from ctrbench.kernels.embedding_bag import triton as ebc_triton
from ctrbench.kernels.entropy_fusion import triton as ewf_triton
from ctrbench.kernels.interleaved_attention import triton as ia_triton
from ctrbench.kernels.triton_device import TritonDeviceError


def _ia(odd):
    q = torch.randn(1, 1, 3, 4)
    lengths = torch.tensor([2], device=odd)
    return {"ia_forward": lambda: ia_triton.forward(q, q, q, lengths, 1, False, 1e4, 0.5, False),
            "ia_backward": lambda: ia_triton.backward(q, q, q, q, lengths, 1, False, 1e4, 0.5, False)}


def _ebc(odd):
    w, to, g = torch.randn(5, 2), torch.tensor([0, 2, 5]), torch.randn(1, 4)
    idx, offs = torch.tensor([1, 0, 2], device=odd), torch.tensor([0, 2, 3])
    return {"ebc_forward": lambda: ebc_triton.forward(w, to, None, idx, offs, None, "sum"),
            "ebc_grad_rows": lambda: ebc_triton.grad_rows(g, to, None, idx, offs, None, "sum", True),
            "ebc_fused_update": lambda: ebc_triton.fused_update_(w, torch.zeros(5), g, to, None, idx, offs, None,
                                                                 "sum", "sgd", 0.1, 1e-8, True),
            "ebc_psw_grad": lambda: ebc_triton.psw_grad(g, w, to, None, idx, offs, "sum")}


def _ewf(odd):
    x, tau = torch.randn(3, 2), torch.tensor(1.0, device=odd)
    return {"ewf_forward": lambda: ewf_triton.forward(x, tau, "prob", 1e-6),
            "ewf_backward": lambda: ewf_triton.backward(x, tau, x, torch.ones(3), None, "prob", False, 1e-6, True)}


def launchers(odd: str) -> dict:
    """Every launcher on tiny CPU inputs, one of them (ids, lengths or tau) on device `odd`."""
    return {**_ia(odd), **_ebc(odd), **_ewf(odd)}


NAMES = list(launchers("cpu"))


@pytest.mark.parametrize("name", NAMES)
def test_mixed_devices_are_a_typed_error(name):
    with pytest.raises(TritonDeviceError, match="one device.*on meta"):
        launchers("meta")[name]()


if not INTERPRETED:

    def test_interpreted_checks():
        run_interpreted(__file__)

    @pytest.mark.parametrize("name", NAMES)
    def test_cpu_tensors_need_the_interpreter(name):
        with pytest.raises(TritonDeviceError, match="TRITON_INTERPRET=1.*cpp or reference"):
            launchers("cpu")[name]()

else:

    @pytest.mark.parametrize("name", NAMES)
    def test_cpu_tensors_run_in_the_interpreter(name):
        launchers("cpu")[name]()


def test_other_devices_are_a_typed_error():
    from ctrbench.kernels.triton_device import check_launch

    with pytest.raises(TritonDeviceError, match="got meta tensors"):
        check_launch("x", ia_triton.interleaved_attention_fwd_kernel, q=torch.empty(1, device="meta"))
