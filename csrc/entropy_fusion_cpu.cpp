// Entropy-weighted fusion on the CPU: one fused pass forward, one backward (kernels/entropy_fusion/
// reference.py is the definition). Rows are split into fixed blocks of kRowsPerBlock processed in
// parallel (at::parallel_for, OpenMP); within a block the transcendental work runs in flat loops 8 lanes
// wide (float: GCC vector extensions with branch-free Cephes exp/log, an AVX2+FMA clone picked at load time).
// The tau gradient is summed per fixed block and then in block order: bit-identical for any thread count.
//
// Also defines the low-level ops ctrbench::_entropy_fusion_fwd / _bwd; the CUDA implementations of the
// same ops live in entropy_fusion_cuda_binding.cpp.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <tuple>
#include <vector>

// The 32-byte vector types below never cross a non-inlined call boundary; silence the ABI note.
#pragma GCC diagnostic ignored "-Wpsabi"

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define CTRBENCH_EWF_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define CTRBENCH_EWF_CLONES
#endif
#define CTRBENCH_EWF_INLINE inline __attribute__((always_inline))

namespace ctrbench {
namespace entropy_fusion {
namespace {

constexpr int64_t kRowsPerBlock = 256;

// float runs 8 lanes at a time through GCC vector extensions (AVX2+FMA in the x86-64-v3 clone, SSE pairs
// otherwise; portable C++ elsewhere); double runs one lane with std::exp/std::log (it exists for gradcheck).
typedef float f32x8 __attribute__((vector_size(32)));
typedef int32_t i32x8 __attribute__((vector_size(32)));

// Cephes expf / logf: ~1 ulp, branch-free; NaN in gives NaN out.
struct LanesF32 {
  using S = float;
  using V = f32x8;
  static constexpr int64_t W = 8;
  static CTRBENCH_EWF_INLINE V splat(float f) { return V{} + f; }
  static CTRBENCH_EWF_INLINE V load(const float* p, int64_t remaining) {
    V v = V{};
    std::memcpy(&v, p, sizeof(float) * static_cast<size_t>(remaining < W ? remaining : W));
    return v;
  }
  static CTRBENCH_EWF_INLINE void store(float* p, V v) { std::memcpy(p, &v, sizeof v); }
  static CTRBENCH_EWF_INLINE V exp(V x) {
    V xc = x < -87.0f ? splat(-87.0f) : x;
    xc = xc > 88.0f ? splat(88.0f) : xc;
    const V t = xc * 1.44269504088896341f;
    const i32x8 ni = __builtin_convertvector(t + (t < 0.0f ? splat(-0.5f) : splat(0.5f)), i32x8);  // round
    const V n = __builtin_convertvector(ni, V);
    const V r = xc - n * 0.693359375f + n * 2.12194440e-4f;
    V q = splat(1.9875691500e-4f);
    q = q * r + 1.3981999507e-3f;
    q = q * r + 8.3334519073e-3f;
    q = q * r + 4.1665795894e-2f;
    q = q * r + 1.6666665459e-1f;
    q = q * r + 5.0000001201e-1f;
    const V y = (q * r * r + r + 1.0f) * reinterpret_cast<const V&>(static_cast<const i32x8&>((ni + 127) << 23));
    return x < -87.0f ? splat(0.0f) : y;  // underflow to 0 (inputs here are <= 0)
  }
  // log for positive normal x (here x = 1 + e in [1, 2]).
  static CTRBENCH_EWF_INLINE V log(V x) {
    const i32x8 bits = reinterpret_cast<const i32x8&>(x);
    V e = __builtin_convertvector((bits >> 23) - 126, V);
    const i32x8 mbits = (bits & 0x007fffff) | 0x3f000000;
    V m = reinterpret_cast<const V&>(mbits);  // mantissa in [0.5, 1)
    const i32x8 small = m < 0.707106781186547524f;
    e = small ? e - 1.0f : e;
    m = small ? m + m - 1.0f : m - 1.0f;
    const V z = m * m;
    V y = splat(7.0376836292e-2f);
    y = y * m - 1.1514610310e-1f;
    y = y * m + 1.1676998740e-1f;
    y = y * m - 1.2420140846e-1f;
    y = y * m + 1.4249322787e-1f;
    y = y * m - 1.6668057665e-1f;
    y = y * m + 2.0000714765e-1f;
    y = y * m - 2.4999993993e-1f;
    y = y * m + 3.3333331174e-1f;
    y = y * m * z;
    y += -2.12194440e-4f * e;
    y += -0.5f * z;
    const V out = m + y + 0.693359375f * e;
    return x != x ? x : out;
  }
};

struct LanesF64 {
  using S = double;
  using V = double;
  static constexpr int64_t W = 1;
  static CTRBENCH_EWF_INLINE V load(const double* p, int64_t) { return *p; }
  static CTRBENCH_EWF_INLINE void store(double* p, V v) { *p = v; }
  static CTRBENCH_EWF_INLINE V exp(V x) { return std::exp(x); }
  static CTRBENCH_EWF_INLINE V log(V x) { return std::log(x); }
};

// Per element: clamped logit, p, p(1-p) and the confidence c = p log p + (1-p) log(1-p), written as
// c = -log(1 + e) - e|x̂|/(1 + e) with e = exp(-|x̂|) (no cancellation near p = 0 or 1).
template <typename Lanes>
struct Member {
  typename Lanes::V xh, p, pq, c;
};

template <typename Lanes>
CTRBENCH_EWF_INLINE Member<Lanes> member(typename Lanes::V x, typename Lanes::S bound) {
  using V = typename Lanes::V;
  using S = typename Lanes::S;
  const V xh = x < -bound ? -bound : (x > bound ? bound : x);  // NaN stays NaN
  const V a = xh < S(0) ? -xh : xh;
  const V e = Lanes::exp(-a);
  const V d = S(1) + e;
  const V r = S(1) / d;
  const V er = e * r;
  Member<Lanes> out;
  out.xh = xh;
  out.p = xh >= S(0) ? r : er;
  out.pq = er * r;
  out.c = -Lanes::log(d) - er * a;
  return out;
}

inline int64_t padded(int64_t n, int64_t w) { return (n + w - 1) / w * w; }

// Forward over `rows` rows starting at x; scratch holds 2 * padded(rows * K) values.
template <typename Lanes>
CTRBENCH_EWF_INLINE void forward_block_impl(const typename Lanes::S* x, typename Lanes::S* fused,
                                            typename Lanes::S* w, int64_t rows, int64_t K,
                                            typename Lanes::S bound, typename Lanes::S inv_tau,
                                            bool logit_space, typename Lanes::S* scratch) {
  using S = typename Lanes::S;
  constexpr int64_t W = Lanes::W;
  const int64_t n = rows * K;
  const int64_t np = padded(n, W);
  S* z = scratch;
  S* v = scratch + np;
  for (int64_t i = 0; i < np; i += W) {
    const Member<Lanes> m = member<Lanes>(Lanes::load(x + i, n - i), bound);
    Lanes::store(z + i, m.c * inv_tau);
    Lanes::store(v + i, logit_space ? m.xh : m.p);
  }
  for (int64_t r = 0; r < rows; ++r) {
    S* zr = z + r * K;
    S mx = zr[0];
    for (int64_t k = 1; k < K; ++k) mx = zr[k] > mx ? zr[k] : mx;
    for (int64_t k = 0; k < K; ++k) zr[k] -= mx;
  }
  for (int64_t i = 0; i < np; i += W) Lanes::store(z + i, Lanes::exp(Lanes::load(z + i, W)));
  for (int64_t r = 0; r < rows; ++r) {
    const S* zr = z + r * K;
    const S* vr = v + r * K;
    S s = 0;
    for (int64_t k = 0; k < K; ++k) s += zr[k];
    const S inv_s = S(1) / s;
    S acc = 0;
    S* wr = w + r * K;
    for (int64_t k = 0; k < K; ++k) {
      const S wk = zr[k] * inv_s;
      wr[k] = wk;
      acc += wk * vr[k];
    }
    fused[r] = acc;
  }
}

// Backward over one block; returns sum_k dz_k * c_k over the block (the tau gradient is -that / tau^2).
// scratch holds 4 * padded(rows * K) values.
template <typename Lanes>
CTRBENCH_EWF_INLINE double backward_block_impl(const typename Lanes::S* x, const typename Lanes::S* w,
                                               const typename Lanes::S* gf, const typename Lanes::S* gw,
                                               typename Lanes::S* gx, int64_t rows, int64_t K,
                                               typename Lanes::S bound, typename Lanes::S inv_tau,
                                               bool logit_space, bool detach, typename Lanes::S* scratch) {
  using S = typename Lanes::S;
  using V = typename Lanes::V;
  constexpr int64_t W = Lanes::W;
  const int64_t n = rows * K;
  const int64_t np = padded(n, W);
  S* c = scratch;
  S* v = scratch + np;
  S* dv = scratch + 2 * np;  // d value / d x (0 where the clamp is active)
  S* dc = scratch + 3 * np;  // d confidence / d x = x̂ p (1 - p) (0 where the clamp is active)
  const V zero = V{} + S(0);
  const V one = zero + S(1);
  for (int64_t i = 0; i < np; i += W) {
    const V xi = Lanes::load(x + i, n - i);
    const Member<Lanes> m = member<Lanes>(xi, bound);
    const auto inside = (xi >= -bound) & (xi <= bound);
    Lanes::store(c + i, m.c);
    Lanes::store(v + i, logit_space ? m.xh : m.p);
    Lanes::store(dv + i, inside ? (logit_space ? one : m.pq) : zero);
    Lanes::store(dc + i, inside ? m.xh * m.pq : zero);
  }
  double tau_acc = 0.0;
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t o = r * K;
    const S g_f = gf[r];
    if (detach) {
      for (int64_t k = 0; k < K; ++k) gx[o + k] = g_f * w[o + k] * dv[o + k];
      continue;
    }
    S gbar = 0;
    for (int64_t k = 0; k < K; ++k) {
      const S g = (gw ? gw[o + k] : S(0)) + g_f * v[o + k];
      gbar += w[o + k] * g;
    }
    S row_tau = 0;
    for (int64_t k = 0; k < K; ++k) {
      const S wk = w[o + k];
      const S g = (gw ? gw[o + k] : S(0)) + g_f * v[o + k];
      const S dz = wk * (g - gbar);
      gx[o + k] = g_f * wk * dv[o + k] + dz * inv_tau * dc[o + k];
      row_tau += dz * c[o + k];
    }
    tau_acc += static_cast<double>(row_tau);
  }
  return tau_acc;
}

CTRBENCH_EWF_CLONES void forward_block_f32(const float* x, float* fused, float* w, int64_t rows, int64_t K,
                                           float bound, float inv_tau, bool logit_space, float* scratch) {
  forward_block_impl<LanesF32>(x, fused, w, rows, K, bound, inv_tau, logit_space, scratch);
}
void forward_block_f64(const double* x, double* fused, double* w, int64_t rows, int64_t K, double bound,
                       double inv_tau, bool logit_space, double* scratch) {
  forward_block_impl<LanesF64>(x, fused, w, rows, K, bound, inv_tau, logit_space, scratch);
}
CTRBENCH_EWF_CLONES double backward_block_f32(const float* x, const float* w, const float* gf, const float* gw,
                                              float* gx, int64_t rows, int64_t K, float bound, float inv_tau,
                                              bool logit_space, bool detach, float* scratch) {
  return backward_block_impl<LanesF32>(x, w, gf, gw, gx, rows, K, bound, inv_tau, logit_space, detach, scratch);
}
double backward_block_f64(const double* x, const double* w, const double* gf, const double* gw, double* gx,
                          int64_t rows, int64_t K, double bound, double inv_tau, bool logit_space, bool detach,
                          double* scratch) {
  return backward_block_impl<LanesF64>(x, w, gf, gw, gx, rows, K, bound, inv_tau, logit_space, detach, scratch);
}

inline void forward_block(const float* x, float* f, float* w, int64_t rows, int64_t K, double bound,
                          double inv_tau, bool logit, float* s) {
  forward_block_f32(x, f, w, rows, K, static_cast<float>(bound), static_cast<float>(inv_tau), logit, s);
}
inline void forward_block(const double* x, double* f, double* w, int64_t rows, int64_t K, double bound,
                          double inv_tau, bool logit, double* s) {
  forward_block_f64(x, f, w, rows, K, bound, inv_tau, logit, s);
}
inline double backward_block(const float* x, const float* w, const float* gf, const float* gw, float* gx,
                             int64_t rows, int64_t K, double bound, double inv_tau, bool logit, bool detach,
                             float* s) {
  return backward_block_f32(x, w, gf, gw, gx, rows, K, static_cast<float>(bound), static_cast<float>(inv_tau),
                            logit, detach, s);
}
inline double backward_block(const double* x, const double* w, const double* gf, const double* gw, double* gx,
                             int64_t rows, int64_t K, double bound, double inv_tau, bool logit, bool detach,
                             double* s) {
  return backward_block_f64(x, w, gf, gw, gx, rows, K, bound, inv_tau, logit, detach, s);
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
  const double t = tau.to(at::kDouble).item<double>();
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
      std::vector<scalar_t> scratch(2 * padded(kRowsPerBlock * K, 8));
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
      std::vector<scalar_t> scratch(4 * padded(kRowsPerBlock * K, 8));
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

TORCH_LIBRARY_FRAGMENT(ctrbench, m) {
  m.def("_entropy_fusion_fwd(Tensor logits, Tensor tau, int space, float eps) -> (Tensor, Tensor)");
  m.def(
      "_entropy_fusion_bwd(Tensor logits, Tensor tau, Tensor weights, Tensor grad_fused, Tensor? grad_weights, "
      "int space, bool detach_weights, bool need_tau_grad, float eps) -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(ctrbench, CPU, m) {
  m.impl("_entropy_fusion_fwd", &ctrbench::entropy_fusion::forward_cpu);
  m.impl("_entropy_fusion_bwd", &ctrbench::entropy_fusion::backward_cpu);
}
