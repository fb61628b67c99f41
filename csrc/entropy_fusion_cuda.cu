// Entropy-weighted fusion CUDA kernels (definition: kernels/entropy_fusion/reference.py). One thread per
// row; the K members are streamed twice (an online max/sum pass, then the write pass) with the member math
// recomputed, so any K works without local arrays. Inputs may be fp32, fp16, bf16 (math in fp32) or fp64.
// The backward writes one tau-gradient partial per block (block-reduced in a fixed order: deterministic).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "entropy_fusion_cuda.h"

namespace ctrbench {
namespace entropy_fusion {
namespace {

constexpr int kThreads = 256;

inline unsigned blocks_for(int64_t rows) { return static_cast<unsigned>((rows + kThreads - 1) / kThreads); }

template <typename T> struct MathOf { using type = float; };
template <> struct MathOf<double> { using type = double; };

__device__ __forceinline__ float to_math(float v) { return v; }
__device__ __forceinline__ double to_math(double v) { return v; }
__device__ __forceinline__ float to_math(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_math(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T> __device__ __forceinline__ T from_float(float v);
template <> __device__ __forceinline__ float from_float<float>(float v) { return v; }
template <> __device__ __forceinline__ __half from_float<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }
template <typename T> __device__ __forceinline__ T from_math(float v) { return from_float<T>(v); }
template <typename T> __device__ __forceinline__ T from_math(double v) { return static_cast<T>(v); }

__device__ __forceinline__ float exp_(float x) { return expf(x); }
__device__ __forceinline__ double exp_(double x) { return exp(x); }
__device__ __forceinline__ float log1p_(float x) { return log1pf(x); }
__device__ __forceinline__ double log1p_(double x) { return log1p(x); }

template <typename M> __device__ __forceinline__ M inf_();
template <> __device__ __forceinline__ float inf_<float>() { return __int_as_float(0x7f800000); }
template <> __device__ __forceinline__ double inf_<double>() { return __longlong_as_double(0x7ff0000000000000LL); }
template <typename M> __device__ __forceinline__ M nan_();
template <> __device__ __forceinline__ float nan_<float>() { return __int_as_float(0x7fc00000); }
template <> __device__ __forceinline__ double nan_<double>() { return __longlong_as_double(0x7ff8000000000000LL); }

// Clamped logit, p, p(1-p) and confidence c = -log(1+e) - e|x̂|/(1+e), e = exp(-|x̂|) (= p log p + q log q).
template <typename M>
struct Member {
  M xh, p, pq, c;
};

template <typename M>
__device__ __forceinline__ Member<M> member(M x, M bound) {
  Member<M> m;
  m.xh = x < -bound ? -bound : (x > bound ? bound : x);  // NaN stays NaN (fmin/fmax would drop it)
  const M a = m.xh < M(0) ? -m.xh : m.xh;
  const M e = exp_(-a);
  const M r = M(1) / (M(1) + e);
  const M er = e * r;
  m.p = m.xh >= M(0) ? r : er;
  m.pq = er * r;
  m.c = -log1p_(e) - er * a;
  return m;
}

template <typename M>
__device__ __forceinline__ M inverse_tau(const M* tau) {
  const M t = *tau;
  return (t > M(0) && t < inf_<M>()) ? M(1) / t : nan_<M>();
}

template <typename T>
__global__ void __launch_bounds__(kThreads) forward_kernel(const T* __restrict__ x,
                                                           const typename MathOf<T>::type* __restrict__ tau,
                                                           T* __restrict__ fused, T* __restrict__ w, int64_t B,
                                                           int64_t K, typename MathOf<T>::type bound,
                                                           bool logit_space) {
  using M = typename MathOf<T>::type;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (row >= B) return;
  const M inv_tau = inverse_tau(tau);
  const T* xr = x + row * K;
  // Pass 1: online softmax — running max m, sum s of exp(z - m) and numerator sum of exp(z - m) * v.
  M mx = -inf_<M>(), s = M(0), num = M(0);
  for (int64_t k = 0; k < K; ++k) {
    const Member<M> mb = member<M>(to_math(xr[k]), bound);
    const M z = mb.c * inv_tau;
    const M v = logit_space ? mb.xh : mb.p;
    if (z > mx) {
      const M scale = exp_(mx - z);
      s = s * scale + M(1);
      num = num * scale + v;
      mx = z;
    } else {
      const M ez = exp_(z - mx);  // NaN z lands here and makes s NaN: the whole row turns NaN
      s += ez;
      num += ez * v;
    }
  }
  const M inv_s = M(1) / s;
  fused[row] = from_math<T>(num * inv_s);
  // Pass 2: weights (the row is still in L1).
  T* wr = w + row * K;
  for (int64_t k = 0; k < K; ++k) {
    const Member<M> mb = member<M>(to_math(xr[k]), bound);
    wr[k] = from_math<T>(exp_(mb.c * inv_tau - mx) * inv_s);
  }
}

template <typename M>
__device__ __forceinline__ M warp_sum(M v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
  return v;
}

template <typename T>
__global__ void __launch_bounds__(kThreads) backward_kernel(
    const T* __restrict__ x, const typename MathOf<T>::type* __restrict__ tau, const T* __restrict__ w,
    const T* __restrict__ gf, const T* __restrict__ gw, T* __restrict__ gx,
    typename MathOf<T>::type* __restrict__ tau_partials, int64_t B, int64_t K, typename MathOf<T>::type bound,
    bool logit_space, bool detach) {
  using M = typename MathOf<T>::type;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const M inv_tau = inverse_tau(tau);
  M tau_sum = M(0);  // sum_k dz_k c_k of this row
  if (row < B) {
    const int64_t o = row * K;
    const M g_f = to_math(gf[row]);
    M gbar = M(0);  // sum_k w_k g_k, g_k = d loss / d w_k
    if (!detach) {
      for (int64_t k = 0; k < K; ++k) {
        const Member<M> mb = member<M>(to_math(x[o + k]), bound);
        const M v = logit_space ? mb.xh : mb.p;
        const M g = (gw ? to_math(gw[o + k]) : M(0)) + g_f * v;
        gbar += to_math(w[o + k]) * g;
      }
    }
    for (int64_t k = 0; k < K; ++k) {
      const M xk = to_math(x[o + k]);
      const Member<M> mb = member<M>(xk, bound);
      const bool inside = xk >= -bound && xk <= bound;  // torch.clamp passes the gradient on the bounds
      const M wk = to_math(w[o + k]);
      M g_x = inside ? g_f * wk * (logit_space ? M(1) : mb.pq) : M(0);
      if (!detach) {
        const M v = logit_space ? mb.xh : mb.p;
        const M g = (gw ? to_math(gw[o + k]) : M(0)) + g_f * v;
        const M dz = wk * (g - gbar);
        if (inside) g_x += dz * inv_tau * mb.xh * mb.pq;
        tau_sum += dz * mb.c;
      }
      gx[o + k] = from_math<T>(g_x);
    }
  }
  if (tau_partials == nullptr) return;  // uniform across the block
  __shared__ M warp_sums[kThreads / 32];
  tau_sum = warp_sum(tau_sum);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) warp_sums[warp] = tau_sum;
  __syncthreads();
  if (warp == 0) {
    M v = lane < kThreads / 32 ? warp_sums[lane] : M(0);
    v = warp_sum(v);
    if (lane == 0) tau_partials[blockIdx.x] = -v * inv_tau * inv_tau;
  }
}

template <typename T>
cudaError_t forward_typed(const void* x, const void* tau, void* fused, void* w, int64_t B, int64_t K, double bound,
                          bool logit_space, cudaStream_t stream) {
  using M = typename MathOf<T>::type;
  if (B == 0) return cudaSuccess;
  const unsigned blocks = blocks_for(B);
  forward_kernel<T><<<blocks, kThreads, 0, stream>>>(static_cast<const T*>(x), static_cast<const M*>(tau),
                                                     static_cast<T*>(fused), static_cast<T*>(w), B, K,
                                                     static_cast<M>(bound), logit_space);
  return cudaGetLastError();
}

template <typename T>
cudaError_t backward_typed(const void* x, const void* tau, const void* w, const void* gf, const void* gw, void* gx,
                           void* tau_partials, int64_t B, int64_t K, double bound, bool logit_space, bool detach,
                           cudaStream_t stream) {
  using M = typename MathOf<T>::type;
  if (B == 0) return cudaSuccess;
  const unsigned blocks = blocks_for(B);
  backward_kernel<T><<<blocks, kThreads, 0, stream>>>(
      static_cast<const T*>(x), static_cast<const M*>(tau), static_cast<const T*>(w), static_cast<const T*>(gf),
      static_cast<const T*>(gw), static_cast<T*>(gx), static_cast<M*>(tau_partials), B, K, static_cast<M>(bound),
      logit_space, detach);
  return cudaGetLastError();
}

}  // namespace

int64_t backward_num_blocks(int64_t rows) { return blocks_for(rows); }

cudaError_t launch_forward(DType dtype, const void* logits, const void* tau, void* fused, void* weights, int64_t B,
                           int64_t K, double bound, bool logit_space, cudaStream_t stream) {
  switch (dtype) {
    case DType::kF32: return forward_typed<float>(logits, tau, fused, weights, B, K, bound, logit_space, stream);
    case DType::kF16: return forward_typed<__half>(logits, tau, fused, weights, B, K, bound, logit_space, stream);
    case DType::kBF16:
      return forward_typed<__nv_bfloat16>(logits, tau, fused, weights, B, K, bound, logit_space, stream);
    case DType::kF64: return forward_typed<double>(logits, tau, fused, weights, B, K, bound, logit_space, stream);
  }
  return cudaErrorInvalidValue;
}

cudaError_t launch_backward(DType dtype, const void* logits, const void* tau, const void* weights,
                            const void* grad_fused, const void* grad_weights, void* grad_logits, void* tau_partials,
                            int64_t B, int64_t K, double bound, bool logit_space, bool detach_weights,
                            cudaStream_t stream) {
  switch (dtype) {
    case DType::kF32:
      return backward_typed<float>(logits, tau, weights, grad_fused, grad_weights, grad_logits, tau_partials, B, K,
                                   bound, logit_space, detach_weights, stream);
    case DType::kF16:
      return backward_typed<__half>(logits, tau, weights, grad_fused, grad_weights, grad_logits, tau_partials, B, K,
                                    bound, logit_space, detach_weights, stream);
    case DType::kBF16:
      return backward_typed<__nv_bfloat16>(logits, tau, weights, grad_fused, grad_weights, grad_logits,
                                           tau_partials, B, K, bound, logit_space, detach_weights, stream);
    case DType::kF64:
      return backward_typed<double>(logits, tau, weights, grad_fused, grad_weights, grad_logits, tau_partials, B, K,
                                    bound, logit_space, detach_weights, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace entropy_fusion
}  // namespace ctrbench
