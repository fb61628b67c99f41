// embedding_bag_collection CUDA kernels: raw pointers, no torch headers (nvcc -arch=sm_90 -c builds it alone).
//
// forward:   a group of G lanes (G = D/vec rounded up to a power of two, at most 32) per bag; each lane owns
//            `vec` consecutive columns (float4 / 4 halves when D % 4 == 0), accumulates in fp32 registers,
//            four ids in flight per iteration; ids out of range are skipped (validate reports them).
// validate:  one thread per position checks offsets, table layout and ids; the first bad position of each
//            kind is kept with atomicMin, then a one-thread kernel writes [code, position].
// segment:   positions sorted by global row; a group per segment head sums the row's gradient in sorted
//            order (deterministic for a stable sort) and writes it or applies SGD / row-wise Adagrad once.
// psw_grad:  a group per position: dot(grad_out row, weight row), reduced with warp shuffles.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "embedding_bag_cuda.h"

namespace ctrbench_ebc {
namespace {

constexpr int kThreads = 256;
constexpr int kMaxChunks = 8;
constexpr int64_t kNone = INT64_MAX;

// Load / store VEC consecutive elements as fp32 (VEC 4 uses one 16-byte or 8-byte access).
template <int VEC>
__device__ __forceinline__ void load_vec(const float* p, float* v) {
  if constexpr (VEC == 4) {
    const float4 x = *reinterpret_cast<const float4*>(p);
    v[0] = x.x; v[1] = x.y; v[2] = x.z; v[3] = x.w;
  } else {
    v[0] = p[0];
  }
}
template <int VEC>
__device__ __forceinline__ void load_vec(const __half* p, float* v) {
  if constexpr (VEC == 4) {
    const uint2 raw = *reinterpret_cast<const uint2*>(p);
    const float2 a = __half22float2(*reinterpret_cast<const __half2*>(&raw.x));
    const float2 b = __half22float2(*reinterpret_cast<const __half2*>(&raw.y));
    v[0] = a.x; v[1] = a.y; v[2] = b.x; v[3] = b.y;
  } else {
    v[0] = __half2float(p[0]);
  }
}
template <int VEC>
__device__ __forceinline__ void load_vec(const __nv_bfloat16* p, float* v) {
  if constexpr (VEC == 4) {
    const uint2 raw = *reinterpret_cast<const uint2*>(p);
    const float2 a = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&raw.x));
    const float2 b = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&raw.y));
    v[0] = a.x; v[1] = a.y; v[2] = b.x; v[3] = b.y;
  } else {
    v[0] = __bfloat162float(p[0]);
  }
}
template <int VEC>
__device__ __forceinline__ void store_vec(float* p, const float* v) {
  if constexpr (VEC == 4) {
    *reinterpret_cast<float4*>(p) = make_float4(v[0], v[1], v[2], v[3]);
  } else {
    p[0] = v[0];
  }
}
template <int VEC>
__device__ __forceinline__ void store_vec(__half* p, const float* v) {
  if constexpr (VEC == 4) {
    __half2 a = __floats2half2_rn(v[0], v[1]);
    __half2 b = __floats2half2_rn(v[2], v[3]);
    uint2 raw;
    raw.x = *reinterpret_cast<unsigned int*>(&a);
    raw.y = *reinterpret_cast<unsigned int*>(&b);
    *reinterpret_cast<uint2*>(p) = raw;
  } else {
    p[0] = __float2half_rn(v[0]);
  }
}
template <int VEC>
__device__ __forceinline__ void store_vec(__nv_bfloat16* p, const float* v) {
  if constexpr (VEC == 4) {
    __nv_bfloat162 a = __floats2bfloat162_rn(v[0], v[1]);
    __nv_bfloat162 b = __floats2bfloat162_rn(v[2], v[3]);
    uint2 raw;
    raw.x = *reinterpret_cast<unsigned int*>(&a);
    raw.y = *reinterpret_cast<unsigned int*>(&b);
    *reinterpret_cast<uint2*>(p) = raw;
  } else {
    p[0] = __float2bfloat16_rn(v[0]);
  }
}

// Lanes per bag/row: enough for D columns at `vec` per lane, a power of two in [1, 32].
inline int group_size(int64_t D, int vec) {
  const int64_t need = (D + vec - 1) / vec;
  int g = 1;
  while (g < 32 && g < need) g *= 2;
  return g;
}

inline unsigned int grid_for(int64_t items, int group) {
  const int64_t threads = items * group;
  return static_cast<unsigned int>((threads + kThreads - 1) / kThreads);
}

// Shuffle mask of the calling lane's group (groups are aligned within the warp).
__device__ __forceinline__ unsigned int group_mask(int group) {
  if (group == 32) return 0xffffffffu;
  const int first = (threadIdx.x & 31) / group * group;
  return ((1u << group) - 1u) << first;
}

__device__ __forceinline__ float group_sum(float v, int group) {
  const unsigned int mask = group_mask(group);
  for (int o = group / 2; o > 0; o /= 2) v += __shfl_xor_sync(mask, v, o, group);
  return v;
}

// ------------------------------------------------------------------------------------------ validate

template <typename index_t>
__global__ void validate_kernel(const int64_t* __restrict__ TO, int64_t T, int64_t R, const int64_t* __restrict__ FT,
                                int64_t F, int64_t B, const index_t* __restrict__ IDX,
                                const int64_t* __restrict__ OFFS, int64_t nnz, unsigned long long* __restrict__ first) {
  const int64_t nbags = F * B;
  int64_t n = nnz;
  if (nbags + 1 > n) n = nbags + 1;
  if (T + 1 > n) n = T + 1;
  if (F > n) n = F;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    if (i <= T) {
      const int64_t v = TO[i];
      const bool bad = (i == 0 && v < 0) || (i == T && v > R) || (i > 0 && v < TO[i - 1]);
      if (bad) atomicMin(&first[0], static_cast<unsigned long long>(i));
    }
    if (FT != nullptr && i < F) {
      const int64_t t = FT[i];
      if (t < 0 || t >= T) atomicMin(&first[0], static_cast<unsigned long long>(T + 1 + i));
    }
    if (i <= nbags) {
      const int64_t o = OFFS[i];
      const bool bad = (i == 0 && o != 0) || (i > 0 && o < OFFS[i - 1]) || (i == nbags && o != nnz);
      if (bad) atomicMin(&first[1], static_cast<unsigned long long>(i));
    }
    if (i < nnz && B > 0) {
      // Feature of position i: the last f with OFFS[f*B] <= i (exact when offsets are valid).
      int64_t lo = 0, hi = F;
      while (hi - lo > 1) {
        const int64_t mid = (lo + hi) / 2;
        if (OFFS[mid * B] <= i) lo = mid; else hi = mid;
      }
      const int64_t t = FT != nullptr ? FT[lo] : lo;
      if (t >= 0 && t < T) {
        const int64_t rows = TO[t + 1] - TO[t];
        const int64_t id = static_cast<int64_t>(IDX[i]);
        if (id < 0 || id >= rows) atomicMin(&first[2], static_cast<unsigned long long>(i));
      }
    }
  }
}

__global__ void finalize_status_kernel(const unsigned long long* __restrict__ first, int64_t* __restrict__ status) {
  const unsigned long long none = static_cast<unsigned long long>(kNone);
  if (first[0] != none) {
    status[0] = 3; status[1] = static_cast<int64_t>(first[0]);
  } else if (first[1] != none) {
    status[0] = 2; status[1] = static_cast<int64_t>(first[1]);
  } else if (first[2] != none) {
    status[0] = 1; status[1] = static_cast<int64_t>(first[2]);
  } else {
    status[0] = 0; status[1] = 0;
  }
}

// ------------------------------------------------------------------------------------------ forward

template <typename scalar_t, typename index_t, int VEC>
__global__ void forward_kernel(const scalar_t* __restrict__ W, int64_t D, const int64_t* __restrict__ TO,
                               const int64_t* __restrict__ FT, int64_t F, int64_t B, const index_t* __restrict__ IDX,
                               const int64_t* __restrict__ OFFS, int64_t nnz, const float* __restrict__ PSW, bool mean,
                               scalar_t* __restrict__ OUT, int group) {
  const int64_t bag = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / group;
  const int lane = threadIdx.x % group;
  if (bag >= F * B) return;
  const int64_t f = bag / B, b = bag - f * B;
  const int64_t t = FT != nullptr ? FT[f] : f;
  const int64_t base = TO[t], rows = TO[t + 1] - base;
  int64_t s = OFFS[bag], e = OFFS[bag + 1];
  s = s < 0 ? 0 : s;
  e = e > nnz ? nnz : e;
  const scalar_t* Wt = W + base * D;
  const float inv = (mean && e > s) ? 1.0f / static_cast<float>(e - s) : 1.0f;
  scalar_t* out = OUT + b * F * D + f * D;
  for (int64_t c0 = static_cast<int64_t>(lane) * VEC; c0 < D; c0 += static_cast<int64_t>(group) * VEC) {
    float acc[VEC];
#pragma unroll
    for (int k = 0; k < VEC; ++k) acc[k] = 0.f;
    int64_t j = s;
    for (; j + 4 <= e; j += 4) {
      int64_t id[4];
      float w[4], v[4][VEC];
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        id[u] = static_cast<int64_t>(IDX[j + u]);
        const bool ok = id[u] >= 0 && id[u] < rows;
        w[u] = ok ? (PSW != nullptr ? PSW[j + u] : 1.f) : 0.f;
        id[u] = ok ? id[u] : 0;
      }
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        if (rows > 0) {
          load_vec<VEC>(Wt + id[u] * D + c0, v[u]);
        } else {
#pragma unroll
          for (int k = 0; k < VEC; ++k) v[u][k] = 0.f;
        }
      }
#pragma unroll
      for (int u = 0; u < 4; ++u)
#pragma unroll
        for (int k = 0; k < VEC; ++k) acc[k] += w[u] * v[u][k];
    }
    for (; j < e; ++j) {
      const int64_t id = static_cast<int64_t>(IDX[j]);
      if (id < 0 || id >= rows) continue;
      const float w = PSW != nullptr ? PSW[j] : 1.f;
      float v[VEC];
      load_vec<VEC>(Wt + id * D + c0, v);
#pragma unroll
      for (int k = 0; k < VEC; ++k) acc[k] += w * v[k];
    }
#pragma unroll
    for (int k = 0; k < VEC; ++k) acc[k] *= inv;
    store_vec<VEC>(out + c0, acc);
  }
}

// ------------------------------------------------------------------------------------------ segment

template <typename scalar_t, int VEC, int MODE>
__global__ void segment_kernel(const int64_t* __restrict__ SROWS, const int64_t* __restrict__ GROW,
                               const float* __restrict__ SCALE, int64_t nnz, const int64_t* __restrict__ SLOT,
                               const scalar_t* __restrict__ G, scalar_t* __restrict__ W, int64_t D,
                               float* __restrict__ M, float lr, float eps, int64_t* __restrict__ OUT_ROWS,
                               float* __restrict__ OUT_G, int group) {
  const int64_t head = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / group;
  const int lane = threadIdx.x % group;
  if (head >= nnz) return;
  const int64_t row = SROWS[head];
  if (head > 0 && SROWS[head - 1] == row) return;  // not the first position of its row: the head does it
  const int64_t span = static_cast<int64_t>(group) * VEC;
  float acc[kMaxChunks][VEC];
#pragma unroll
  for (int c = 0; c < kMaxChunks; ++c)
#pragma unroll
    for (int k = 0; k < VEC; ++k) acc[c][k] = 0.f;
  for (int64_t j = head; j < nnz && SROWS[j] == row; ++j) {
    const scalar_t* g = G + GROW[j] * D;
    const float sc = SCALE != nullptr ? SCALE[j] : 1.f;
#pragma unroll
    for (int c = 0; c < kMaxChunks; ++c) {
      const int64_t col = c * span + static_cast<int64_t>(lane) * VEC;
      if (col < D) {
        float v[VEC];
        load_vec<VEC>(g + col, v);
#pragma unroll
        for (int k = 0; k < VEC; ++k) acc[c][k] += sc * v[k];
      }
    }
  }
  if constexpr (MODE == kModeGrads) {
    const int64_t slot = SLOT[head];
    if (lane == 0) OUT_ROWS[slot] = row;
#pragma unroll
    for (int c = 0; c < kMaxChunks; ++c) {
      const int64_t col = c * span + static_cast<int64_t>(lane) * VEC;
      if (col < D) store_vec<VEC>(OUT_G + slot * D + col, acc[c]);
    }
  } else {
    float mult = lr;
    if constexpr (MODE == kModeRowwiseAdagrad) {
      float ss = 0.f;
#pragma unroll
      for (int c = 0; c < kMaxChunks; ++c)
#pragma unroll
        for (int k = 0; k < VEC; ++k) ss += acc[c][k] * acc[c][k];  // columns >= D hold 0
      ss = group_sum(ss, group);
      const float m = M[row] + ss / static_cast<float>(D);
      if (lane == 0) M[row] = m;
      mult = lr / (sqrtf(m) + eps);
    }
    scalar_t* w = W + row * D;
#pragma unroll
    for (int c = 0; c < kMaxChunks; ++c) {
      const int64_t col = c * span + static_cast<int64_t>(lane) * VEC;
      if (col < D) {
        float v[VEC];
        load_vec<VEC>(w + col, v);
#pragma unroll
        for (int k = 0; k < VEC; ++k) v[k] -= mult * acc[c][k];
        store_vec<VEC>(w + col, v);
      }
    }
  }
}

// ------------------------------------------------------------------------------------------ psw grad

template <typename scalar_t, int VEC>
__global__ void psw_grad_kernel(const int64_t* __restrict__ GROW, const int64_t* __restrict__ WROW,
                                const float* __restrict__ INV, int64_t nnz, const scalar_t* __restrict__ G,
                                const scalar_t* __restrict__ W, int64_t D, float* __restrict__ OUT, int group) {
  const int64_t p = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / group;
  const int lane = threadIdx.x % group;
  if (p >= nnz) return;
  const scalar_t* g = G + GROW[p] * D;
  const scalar_t* w = W + WROW[p] * D;
  float dot = 0.f;
  for (int64_t c = static_cast<int64_t>(lane) * VEC; c < D; c += static_cast<int64_t>(group) * VEC) {
    float a[VEC], b[VEC];
    load_vec<VEC>(g + c, a);
    load_vec<VEC>(w + c, b);
#pragma unroll
    for (int k = 0; k < VEC; ++k) dot += a[k] * b[k];
  }
  dot = group_sum(dot, group);
  if (lane == 0) OUT[p] = INV != nullptr ? dot * INV[p] : dot;
}

// ------------------------------------------------------------------------------------------ dispatch helpers

template <typename F>
cudaError_t with_weight_type(int weight_type, F&& fn) {
  switch (weight_type) {
    case kFloat32: return fn(static_cast<float*>(nullptr));
    case kFloat16: return fn(static_cast<__half*>(nullptr));
    case kBFloat16: return fn(static_cast<__nv_bfloat16*>(nullptr));
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace

cudaError_t validate(const int64_t* table_offsets, int64_t T, int64_t R, const int64_t* feature_table, int64_t F,
                     int64_t B, const void* indices, bool indices_int64, const int64_t* offsets, int64_t nnz,
                     int64_t* first, int64_t* status, cudaStream_t stream) {
  int64_t n = nnz;
  if (F * B + 1 > n) n = F * B + 1;
  if (T + 1 > n) n = T + 1;
  if (F > n) n = F;
  int64_t blocks = (n + kThreads - 1) / kThreads;
  if (blocks > 65535) blocks = 65535;  // grid-stride loop covers the rest
  auto* f = reinterpret_cast<unsigned long long*>(first);
  if (indices_int64) {
    validate_kernel<int64_t><<<static_cast<unsigned int>(blocks), kThreads, 0, stream>>>(
        table_offsets, T, R, feature_table, F, B, static_cast<const int64_t*>(indices), offsets, nnz, f);
  } else {
    validate_kernel<int32_t><<<static_cast<unsigned int>(blocks), kThreads, 0, stream>>>(
        table_offsets, T, R, feature_table, F, B, static_cast<const int32_t*>(indices), offsets, nnz, f);
  }
  finalize_status_kernel<<<1, 1, 0, stream>>>(f, status);
  return cudaGetLastError();
}

cudaError_t forward(const void* weights, int weight_type, int64_t D, const int64_t* table_offsets,
                    const int64_t* feature_table, int64_t F, int64_t B, const void* indices, bool indices_int64,
                    const int64_t* offsets, int64_t nnz, const float* psw, bool mean, void* out, bool vec4,
                    cudaStream_t stream) {
  if (F * B == 0 || D == 0) return cudaSuccess;
  return with_weight_type(weight_type, [&](auto* tag) -> cudaError_t {
    using scalar_t = std::remove_pointer_t<decltype(tag)>;
    const auto* W = static_cast<const scalar_t*>(weights);
    auto* O = static_cast<scalar_t*>(out);
    auto launch = [&](auto idx_tag, auto vec_tag) {
      using index_t = std::remove_pointer_t<decltype(idx_tag)>;
      constexpr int VEC = decltype(vec_tag)::value;
      const int group = group_size(D, VEC);
      forward_kernel<scalar_t, index_t, VEC><<<grid_for(F * B, group), kThreads, 0, stream>>>(
          W, D, table_offsets, feature_table, F, B, static_cast<const index_t*>(indices), offsets, nnz, psw, mean, O,
          group);
    };
    if (indices_int64) {
      if (vec4) launch(static_cast<int64_t*>(nullptr), std::integral_constant<int, 4>{});
      else launch(static_cast<int64_t*>(nullptr), std::integral_constant<int, 1>{});
    } else {
      if (vec4) launch(static_cast<int32_t*>(nullptr), std::integral_constant<int, 4>{});
      else launch(static_cast<int32_t*>(nullptr), std::integral_constant<int, 1>{});
    }
    return cudaGetLastError();
  });
}

cudaError_t segment_update(int mode, const int64_t* sorted_rows, const int64_t* grad_row, const float* scale,
                           int64_t nnz, const int64_t* slot, const void* grad, void* weights, int weight_type,
                           int64_t D, float* momentum, float lr, float eps, int64_t* out_rows, float* out_grads,
                           bool vec4, cudaStream_t stream) {
  if (nnz == 0 || D == 0) return cudaSuccess;
  if (D > (vec4 ? kMaxDimVec4 : kMaxDimScalar)) return cudaErrorInvalidValue;
  return with_weight_type(weight_type, [&](auto* tag) -> cudaError_t {
    using scalar_t = std::remove_pointer_t<decltype(tag)>;
    const auto* G = static_cast<const scalar_t*>(grad);
    auto* W = static_cast<scalar_t*>(weights);
    auto launch = [&](auto vec_tag, auto mode_tag) {
      constexpr int VEC = decltype(vec_tag)::value;
      constexpr int MODE = decltype(mode_tag)::value;
      const int group = group_size(D, VEC);
      segment_kernel<scalar_t, VEC, MODE><<<grid_for(nnz, group), kThreads, 0, stream>>>(
          sorted_rows, grad_row, scale, nnz, slot, G, W, D, momentum, lr, eps, out_rows, out_grads, group);
    };
    auto by_mode = [&](auto vec_tag) {
      switch (mode) {
        case kModeGrads: launch(vec_tag, std::integral_constant<int, kModeGrads>{}); break;
        case kModeSgd: launch(vec_tag, std::integral_constant<int, kModeSgd>{}); break;
        default: launch(vec_tag, std::integral_constant<int, kModeRowwiseAdagrad>{}); break;
      }
    };
    if (vec4) by_mode(std::integral_constant<int, 4>{});
    else by_mode(std::integral_constant<int, 1>{});
    return cudaGetLastError();
  });
}

cudaError_t psw_grad(const int64_t* grad_row, const int64_t* w_row, const float* inv_len, int64_t nnz,
                     const void* grad, const void* weights, int weight_type, int64_t D, float* out, bool vec4,
                     cudaStream_t stream) {
  if (nnz == 0) return cudaSuccess;
  return with_weight_type(weight_type, [&](auto* tag) -> cudaError_t {
    using scalar_t = std::remove_pointer_t<decltype(tag)>;
    const auto* G = static_cast<const scalar_t*>(grad);
    const auto* W = static_cast<const scalar_t*>(weights);
    if (vec4) {
      const int group = group_size(D, 4);
      psw_grad_kernel<scalar_t, 4><<<grid_for(nnz, group), kThreads, 0, stream>>>(grad_row, w_row, inv_len, nnz, G, W,
                                                                                  D, out, group);
    } else {
      const int group = group_size(D, 1);
      psw_grad_kernel<scalar_t, 1><<<grid_for(nnz, group), kThreads, 0, stream>>>(grad_row, w_row, inv_len, nnz, G, W,
                                                                                  D, out, group);
    }
    return cudaGetLastError();
  });
}

}  // namespace ctrbench_ebc
