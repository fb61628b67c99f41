"""`import ctrbench.kernels` alone registers every torch.ops.ctrbench op, on a box without the data and harness
layers (pydantic, pyarrow: the GPU box lacks them) and without triton; `python -m ctrbench.kernels_cli` runs there.

Each check runs in a fresh child process whose imports of the blocked packages fail (a sitecustomize), so
nothing imported by this test session can register an op on the kernels' behalf.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HARNESS_LAYERS = ("pydantic", "pyarrow", "pandas", "yaml")

# The public, differentiable ops (each registers autograd); every custom op must also have a fake kernel.
DIFFERENTIABLE = ("embedding_bag_collection", "embedding_bag_collection_fused", "interleaved_attention",
                  "entropy_weighted_fusion")


def python_ops() -> list[str]:
    """Every op defined in Python: torch.library.custom_op("ctrbench::NAME") in kernels/*/op.py."""
    return sorted({m for p in (ROOT / "kernels").glob("*/*.py")
                   for m in re.findall(r'custom_op\(\s*"ctrbench::(\w+)"', p.read_text())})


def extension_ops(with_cuda: bool) -> list[str]:
    """Every op the C++ extension defines (m.def("NAME(...")); the *_cuda_binding.cpp ones only in a CUDA build."""
    sources = [p for p in (ROOT / "csrc").glob("*.cpp") if with_cuda or not p.name.endswith("_cuda_binding.cpp")]
    return sorted({m for p in sources for m in re.findall(r'm\.def\(\s*"(\w+)\(', p.read_text())})


def run_bare(tmp_path: Path, args: list[str], blocked: tuple[str, ...]) -> subprocess.CompletedProcess:
    """Run `python ARGS` in a child whose imports of `blocked` top-level packages raise ImportError."""
    (tmp_path / "sitecustomize.py").write_text(
        "import builtins\n_real = builtins.__import__\n"
        f"BLOCKED = {tuple(blocked)!r}\n"
        "def _imp(name, *a, **k):\n"
        "    if name.split('.')[0] in BLOCKED:\n"
        "        raise ImportError('blocked for the test: ' + name)\n"
        "    return _real(name, *a, **k)\n"
        "builtins.__import__ = _imp\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    env.pop("TRITON_INTERPRET", None)
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)


CHILD = r"""
import sys, torch
import ctrbench.kernels
from torch._library.simple_registry import singleton

python_ops, differentiable, cpu_ops, all_ext_ops = sys.argv[1].split(","), sys.argv[2].split(","), \
    sys.argv[3].split(","), sys.argv[4].split(",")
for name in python_ops:
    getattr(torch.ops.ctrbench, name)  # AttributeError when not registered
    assert singleton.find("ctrbench::" + name).fake_impl.kernel is not None, f"{name}: no fake kernel"
for name in differentiable:
    assert torch._C._dispatch_has_kernel_for_dispatch_key("ctrbench::" + name, "Autograd"), f"{name}: no autograd"
ext_ops = all_ext_ops if torch.ops.ctrbench.built_with_cuda() else cpu_ops
for name in ext_ops:
    getattr(torch.ops.ctrbench, name)

# the registered ops run forward and backward through torch.ops alone (reference backend, tiny inputs)
w = torch.randn(5, 2, requires_grad=True)
out = torch.ops.ctrbench.embedding_bag_collection(w, torch.tensor([0, 2, 5]), torch.tensor([1, 0, 2]),
                                                  torch.tensor([0, 2, 3]), None, None, "sum", "reference",
                                                  False, True)
q = torch.randn(1, 1, 3, 2, requires_grad=True)
att = torch.ops.ctrbench.interleaved_attention(q, q, q, torch.tensor([2]), 1, False, 1e4, 0.5, False, "reference")
logits = torch.randn(3, 2, requires_grad=True)
fused, weights = torch.ops.ctrbench.entropy_weighted_fusion(logits, torch.tensor(1.0), "prob", False, 1e-6,
                                                              "reference")
(out.sum() + att.sum() + fused.sum()).backward()
assert w.grad is not None and q.grad is not None and logits.grad is not None
print("registered", len(python_ops), "python ops,", len(ext_ops), "extension ops;",
      "triton imported:", "triton" in sys.modules)
"""


def test_importing_ctrbench_kernels_registers_every_op(tmp_path):
    args = ["-c", CHILD, ",".join(python_ops()), ",".join(DIFFERENTIABLE), ",".join(extension_ops(False)),
            ",".join(extension_ops(True))]
    res = run_bare(tmp_path, args, HARNESS_LAYERS + ("triton",))
    assert res.returncode == 0, res.stdout + res.stderr[-4000:]
    assert "triton imported: False" in res.stdout, res.stdout


def test_the_op_lists_are_found():
    """The source scan behind the test above finds the ops (an empty list would make it pass vacuously)."""
    assert {"embedding_bag_collection", "interleaved_attention", "entropy_weighted_fusion"} <= set(python_ops())
    assert {"ebc_forward_cpu", "_interleaved_attention_fwd", "built_with_cuda"} <= set(extension_ops(False))
    assert "ebc_forward_cuda" in set(extension_ops(True)) - set(extension_ops(False))


@pytest.mark.parametrize("blocked", [HARNESS_LAYERS, HARNESS_LAYERS + ("triton",)], ids=["with-triton", "no-triton"])
def test_kernels_cli_runs_without_the_data_and_harness_layers(tmp_path, blocked):
    """`python -m ctrbench.kernels_cli` (what .ci/gpu_check runs on a bare GPU box) imports neither pydantic nor
    pyarrow: a child process where those imports fail still lists the backends."""
    res = run_bare(tmp_path, ["-m", "ctrbench.kernels_cli", "info", "--device", "cpu"], blocked)
    assert res.returncode == 0, res.stderr[-4000:]
    assert "embedding_bag" in res.stdout and "cpp" in res.stdout
