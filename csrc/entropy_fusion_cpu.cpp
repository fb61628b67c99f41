// Entropy-weighted fusion on the CPU: one fused pass forward, one backward (kernels/entropy_fusion/
// reference.py is the definition). Rows are split into fixed blocks of kRowsPerBlock processed in
// parallel (at::parallel_for, OpenMP); within a block the transcendental work runs in flat vector loops
// (float: GCC vector extensions with branch-free Cephes exp/log, AVX2+FMA picked at run time).
// The tau gradient is summed per fixed block and then in block order: bit-identical for any thread count.
//
// Also defines the low-level ops ctrbench::_entropy_fusion_fwd / _bwd; the CUDA implementations of the
// same ops live in entropy_fusion_cuda_binding.cpp.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <limits>
#include <tuple>
#include <vector>

// The 32-byte vector types below never cross a non-inlined call boundary; silence the ABI note.
#pragma GCC diagnostic ignored "-Wpsabi"

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define CTRBENCH_EWF_X86 1
#else
#define CTRBENCH_EWF_X86 0
#endif
#define CTRBENCH_EWF_INLINE inline __attribute__((always_inline))

namespace ctrbench {
namespace entropy_fusion {
namespace {

constexpr int64_t kRowsPerBlock = 256;
constexpr int64_t kMaxLanes = 8;  // scratch is padded to a multiple of the widest vector

// The kernels are compiled twice: for AVX2+FMA (8 float lanes) and portably (4 lanes: SSE2 / NEON); the
// AVX2 copy is chosen at run time when the CPU has it. Compiling the whole kernel (not just its callers)
// for the target keeps GCC from splitting the 8-lane vectors before inlining.
#if CTRBENCH_EWF_X86
#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace avx2 {
#define CTRBENCH_EWF_LANES 8
#include "entropy_fusion_cpu_kernels.h"
#undef CTRBENCH_EWF_LANES
}  // namespace avx2
#pragma GCC pop_options
#endif
namespace portable {
#define CTRBENCH_EWF_LANES 4
#include "entropy_fusion_cpu_kernels.h"
#undef CTRBENCH_EWF_LANES
}  // namespace portable

// AVX2 when the CPU has it, unless CTRBENCH_CPU_PORTABLE=1 (lets the tests check the portable copy here).
bool use_avx2() {
#if CTRBENCH_EWF_X86
  static const bool yes = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                          !(std::getenv("CTRBENCH_CPU_PORTABLE") && std::string(std::getenv("CTRBENCH_CPU_PORTABLE")) == "1");
  return yes;
#else
  return false;
#endif
}

#if CTRBENCH_EWF_X86
#define CTRBENCH_EWF_DISPATCH(fn, ...) (use_avx2() ? avx2::fn(__VA_ARGS__) : portable::fn(__VA_ARGS__))
#else
#define CTRBENCH_EWF_DISPATCH(fn, ...) portable::fn(__VA_ARGS__)
#endif

inline int64_t padded(int64_t n, int64_t w) { return (n + w - 1) / w * w; }

inline void forward_block(const float* x, float* f, float* w, int64_t rows, int64_t K, double bound,
                          double inv_tau, bool logit, float* s) {
  CTRBENCH_EWF_DISPATCH(forward_block_f32, x, f, w, rows, K, static_cast<float>(bound), static_cast<float>(inv_tau),
                        logit, s);
}
inline void forward_block(const double* x, double* f, double* w, int64_t rows, int64_t K, double bound,
                          double inv_tau, bool logit, double* s) {
  CTRBENCH_EWF_DISPATCH(forward_block_f64, x, f, w, rows, K, bound, inv_tau, logit, s);
}
inline double backward_block(const float* x, const float* w, const float* gf, const float* gw, float* gx,
                             int64_t rows, int64_t K, double bound, double inv_tau, bool logit, bool detach,
                             float* s) {
  return CTRBENCH_EWF_DISPATCH(backward_block_f32, x, w, gf, gw, gx, rows, K, static_cast<float>(bound),
                               static_cast<float>(inv_tau), logit, detach, s);
}
inline double backward_block(const double* x, const double* w, const double* gf, const double* gw, double* gx,
                             int64_t rows, int64_t K, double bound, double inv_tau, bool logit, bool detach,
                             double* s) {
  return CTRBENCH_EWF_DISPATCH(backward_block_f64, x, w, gf, gw, gx, rows, K, bound, inv_tau, logit, detach, s);
}

// Blocks per parallel task: enough elements per task that forking threads pays off.
inline int64_t grain_blocks(int64_t K) { return std::max<int64_t>(1, 16384 / (kRowsPerBlock * K)); }

double clamp_bound(double eps) { return std::log1p(-eps) - std::log(eps); }

void check_common(const at::Tensor& logits, const at::Tensor& tau, int64_t space, double eps, const char* op) {
  TORCH_CHECK(logits.dim() == 2, op, ": logits must be 2-D [B, K], got ", logits.dim(), "-D");
  TORCH_CHECK(logits.size(1) > 0, op, ": logits must have K >= 1 members");
  TORCH_CHECK(tau.numel() == 1, op, ": tau must hold one value, got ", tau.numel());
  TORCH_CHECK(space == 0 || space == 1, op, ": space must be 0 (prob) or 1 (logit), got ", space);
  TORCH_CHECK(eps > 0.0 && eps < 0.5, op, ": eps must lie in (0, 0.5), got ", eps);
}

double inverse_tau(const at::Tensor& tau, const char* op) {
  const double t = tau.item<double>();
  TORCH_CHECK(t > 0.0 && std::isfinite(t), op, ": tau must be finite and > 0, got ", t);
  return 1.0 / t;
}

at::ScalarType compute_type(at::ScalarType t) { return t == at::kDouble ? at::kDouble : at::kFloat; }

std::tuple<at::Tensor, at::Tensor> forward_cpu(const at::Tensor& logits, const at::Tensor& tau, int64_t space,
                                               double eps) {
  const char* op = "ctrbench::_entropy_fusion_fwd (cpu)";
  check_common(logits, tau, space, eps, op);
  TORCH_CHECK(logits.device().is_cpu() && tau.device().is_cpu(), op, ": logits and tau must be CPU tensors");
  TORCH_CHECK(at::isFloatingType(logits.scalar_type()), op, ": logits must be floating point, got ",
              logits.scalar_type());
  const double inv_tau = inverse_tau(tau, op);
  const at::Tensor x = logits.to(compute_type(logits.scalar_type())).contiguous();
  const int64_t B = x.size(0), K = x.size(1);
  at::Tensor fused = at::empty({B}, x.options());
  at::Tensor w = at::empty({B, K}, x.options());
  const double bound = clamp_bound(eps);
  const bool logit = space == 1;
  const int64_t nblocks = (B + kRowsPerBlock - 1) / kRowsPerBlock;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "entropy_fusion_fwd_cpu", [&] {
    const scalar_t* xp = x.data_ptr<scalar_t>();
    scalar_t* fp = fused.data_ptr<scalar_t>();
    scalar_t* wp = w.data_ptr<scalar_t>();
    at::parallel_for(0, nblocks, grain_blocks(K), [&](int64_t b0, int64_t b1) {
      std::vector<scalar_t> scratch(2 * padded(kRowsPerBlock * K, kMaxLanes));
      for (int64_t b = b0; b < b1; ++b) {
        const int64_t r0 = b * kRowsPerBlock;
        const int64_t rows = std::min(kRowsPerBlock, B - r0);
        forward_block(xp + r0 * K, fp + r0, wp + r0 * K, rows, K, bound, inv_tau, logit, scratch.data());
      }
    });
  });
  return {fused.to(logits.scalar_type()), w.to(logits.scalar_type())};
}

std::tuple<at::Tensor, at::Tensor> backward_cpu(const at::Tensor& logits, const at::Tensor& tau,
                                                const at::Tensor& weights, const at::Tensor& grad_fused,
                                                const std::optional<at::Tensor>& grad_weights, int64_t space,
                                                bool detach_weights, bool need_tau_grad, double eps) {
  const char* op = "ctrbench::_entropy_fusion_bwd (cpu)";
  check_common(logits, tau, space, eps, op);
  const int64_t B = logits.size(0), K = logits.size(1);
  TORCH_CHECK(weights.sizes() == logits.sizes(), op, ": weights must have logits' shape");
  TORCH_CHECK(grad_fused.dim() == 1 && grad_fused.size(0) == B, op, ": grad_fused must have shape [B]");
  const bool has_gw = grad_weights.has_value() && grad_weights->defined() && !detach_weights;
  if (has_gw) TORCH_CHECK(grad_weights->sizes() == logits.sizes(), op, ": grad_weights must have logits' shape");
  const double inv_tau = inverse_tau(tau, op);
  const at::ScalarType ct = compute_type(logits.scalar_type());
  const at::Tensor x = logits.to(ct).contiguous();
  const at::Tensor w = weights.to(ct).contiguous();
  const at::Tensor gf = grad_fused.to(ct).contiguous();
  const at::Tensor gw = has_gw ? grad_weights->to(ct).contiguous() : at::Tensor();
  at::Tensor gx = at::empty({B, K}, x.options());
  const double bound = clamp_bound(eps);
  const bool logit = space == 1;
  const int64_t nblocks = (B + kRowsPerBlock - 1) / kRowsPerBlock;
  std::vector<double> partial(static_cast<size_t>(nblocks), 0.0);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "entropy_fusion_bwd_cpu", [&] {
    const scalar_t* xp = x.data_ptr<scalar_t>();
    const scalar_t* wp = w.data_ptr<scalar_t>();
    const scalar_t* gfp = gf.data_ptr<scalar_t>();
    const scalar_t* gwp = has_gw ? gw.data_ptr<scalar_t>() : nullptr;
    scalar_t* gxp = gx.data_ptr<scalar_t>();
    at::parallel_for(0, nblocks, grain_blocks(K), [&](int64_t b0, int64_t b1) {
      std::vector<scalar_t> scratch(4 * padded(kRowsPerBlock * K, kMaxLanes));
      for (int64_t b = b0; b < b1; ++b) {
        const int64_t r0 = b * kRowsPerBlock;
        const int64_t rows = std::min(kRowsPerBlock, B - r0);
        partial[b] = backward_block(xp + r0 * K, wp + r0 * K, gfp + r0, gwp ? gwp + r0 * K : nullptr,
                                    gxp + r0 * K, rows, K, bound, inv_tau, logit, detach_weights, scratch.data());
      }
    });
  });
  double total = 0.0;
  for (double p : partial) total += p;  // fixed order: deterministic
  const double gtau = (need_tau_grad && !detach_weights) ? -total * inv_tau * inv_tau : 0.0;
  at::Tensor grad_tau = at::scalar_tensor(gtau, tau.options().dtype(at::kDouble)).to(tau.scalar_type());
  return {gx.to(logits.scalar_type()), grad_tau};
}

}  // namespace
}  // namespace entropy_fusion
}  // namespace ctrbench

// Which copy of the float kernels runs here: "avx2" or "portable".
static std::string entropy_fusion_cpu_isa() { return ctrbench::entropy_fusion::use_avx2() ? "avx2" : "portable"; }

TORCH_LIBRARY_FRAGMENT(ctrbench, m) {
  m.def("_entropy_fusion_cpu_isa() -> str", &entropy_fusion_cpu_isa);
  m.def("_entropy_fusion_fwd(Tensor logits, Tensor tau, int space, float eps) -> (Tensor, Tensor)");
  m.def(
      "_entropy_fusion_bwd(Tensor logits, Tensor tau, Tensor weights, Tensor grad_fused, Tensor? grad_weights, "
      "int space, bool detach_weights, bool need_tau_grad, float eps) -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(ctrbench, CPU, m) {
  m.impl("_entropy_fusion_fwd", &ctrbench::entropy_fusion::forward_cpu);
  m.impl("_entropy_fusion_bwd", &ctrbench::entropy_fusion::backward_cpu);
}
