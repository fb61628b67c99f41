"""The ops of ctrbench.kernels that `ctrbench kernels verify | bench` and the build tests iterate over.

Each name is a sub-package of ctrbench.kernels providing:
  verify.verify(device) -> list[dict]   one row per (backend, case): keys op, backend, case, ok (True, False,
                                        or None when the backend cannot run here) and detail (errors / reason)
  bench.bench(device, quick=False) -> list[dict]   one row per timed configuration (flat, CSV-ready)
  triton.AOT_SPECS                      [(jit kernel, signature dict, constexprs dict)] compiled for sm_90
"""
OPS = ("embedding_bag", "entropy_fusion", "interleaved_attention")
