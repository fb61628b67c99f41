// Owns the `ctrbench` op namespace and the Python module ctrbench.kernels._C.
// Each op's binding adds its low-level kernels with TORCH_LIBRARY_FRAGMENT / TORCH_LIBRARY_IMPL in its
// own file; the public ops (ctrbench::embedding_bag_collection, ...) are defined in Python
// (kernels/<op>/op.py) on top of them, with fake implementations and autograd.
#include <Python.h>
#include <torch/library.h>

static bool built_with_cuda() {
#ifdef CTRBENCH_WITH_CUDA
  return true;
#else
  return false;
#endif
}

TORCH_LIBRARY(ctrbench, m) {
  m.def("built_with_cuda() -> bool", &built_with_cuda);
}

static struct PyModuleDef ctrbench_C_module = {PyModuleDef_HEAD_INIT, "_C", "ctrbench C++/CUDA kernels", -1, nullptr};

PyMODINIT_FUNC PyInit__C(void) { return PyModule_Create(&ctrbench_C_module); }
