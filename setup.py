"""Installs ctrbench and ctrbench.kernels (from kernels/), and builds ctrbench.kernels._C from csrc/.

C++ sources are always compiled with -fopenmp (at::parallel_for is serial without it). CUDA sources
(csrc/*.cu plus csrc/*_cuda_binding.cpp) are compiled in only when torch is a CUDA build and nvcc exists.
"""
import glob
import os
import shutil

from setuptools import find_packages, setup
from torch.utils import cpp_extension

HERE = os.path.dirname(os.path.abspath(__file__))


def _cuda_build_possible() -> bool:
    """A CUDA extension needs a CUDA build of torch and an nvcc; a CPU torch cannot link one."""
    import torch

    if os.environ.get("CTRBENCH_NO_CUDA") == "1":
        return False
    return torch.version.cuda is not None and shutil.which("nvcc") is not None and cpp_extension.CUDA_HOME is not None


def _extension():
    all_cpp = sorted(glob.glob(os.path.join("csrc", "*.cpp")))
    cuda_bindings = [s for s in all_cpp if s.endswith("_cuda_binding.cpp")]
    cpu_sources = [s for s in all_cpp if s not in cuda_bindings]
    cxx_flags = ["-O3", "-fopenmp", "-std=c++17"]
    if _cuda_build_possible():
        sources = cpu_sources + cuda_bindings + sorted(glob.glob(os.path.join("csrc", "*.cu")))
        return cpp_extension.CUDAExtension(
            "ctrbench.kernels._C",
            sources,
            extra_compile_args={"cxx": cxx_flags + ["-DCTRBENCH_WITH_CUDA"], "nvcc": ["-O3", "-lineinfo"]},
            extra_link_args=["-fopenmp"],
        )
    return cpp_extension.CppExtension(
        "ctrbench.kernels._C", cpu_sources, extra_compile_args=cxx_flags, extra_link_args=["-fopenmp"]
    )


packages = find_packages(include=["ctrbench", "ctrbench.*"])
kernel_packages = ["ctrbench.kernels"] + [
    "ctrbench.kernels." + p for p in find_packages(where="kernels")
]

setup(
    name="ctrbench",
    version="0.1.0",
    description="CTR-prediction benchmark suite and kernel library",
    python_requires=">=3.11",
    packages=packages + kernel_packages,
    package_dir={"ctrbench.kernels": "kernels"},
    ext_modules=[_extension()],
    cmdclass={"build_ext": cpp_extension.BuildExtension.with_options(use_ninja=True)},
    entry_points={"console_scripts": ["ctrbench=ctrbench.cli:main"]},
    extras_require={"ray": ["ray[default]==2.52.0"]},
)
