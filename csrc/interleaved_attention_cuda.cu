// Interleaved attention CUDA kernels (kernels/interleaved_attention/reference.py is the definition).
// Raw pointers and a cudaStream_t only: no torch headers, so `nvcc -arch=sm_90 -c` compiles this file on
// its own; interleaved_attention_cuda_binding.cpp turns tensors into these launches.
//
// Valid keys are the prefix [0, P) and the last lengths[b] of the T sequence slots. Every kernel walks
// COMPACTED valid tokens (index c -> physical row c < P ? c : c + T - L), and a valid token's rotary
// position equals its compacted index, so padding costs neither work nor position shifts.
//
// forward      grid (B*H, ceil(Nq/16)), 4 warps; a warp owns 4 query rows (online softmax state and the
//              output row in registers, lane d owns dims d, d+32, ...); keys and values are staged in
//              shared memory 32 at a time (one key per lane for the scores).
// backward     (1) rows kernel, grid (B*H, ceil(Nq/16)): per query row the base-2 logsumexp, D = sum p*dp,
//              and dq (three passes over the keys); it writes lse and D to a workspace.
//              (2) keys kernel, grid (B*H, ceil(Nk/16)): a warp owns 4 key rows and sweeps the valid queries
//              32 at a time for dk and dv.
//              No atomics: deterministic. All math in fp32; storage float, __half or __nv_bfloat16.
// Requires Dh <= 128 and lengths already checked to lie in [0, T] (the Python op checks them); the
// kernels never read outside the tensors even if they were not.
// NaN contract (reference.py): masked slots (padded keys / values, padded query rows and their grad_out) are
// never read; padded query rows are written 0 and masked keys get dk = dv = 0 explicitly (not as a product
// with 0, which a NaN in valid input would poison); whether a row outputs 0 comes from the counts, not from
// its softmax sum, so a NaN in valid input propagates.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "interleaved_attention_cuda.h"

namespace ctrbench {
namespace interleaved_attention_cuda {
namespace {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kRows = 16;        // query rows (forward / rows kernel) or key rows (keys kernel) per block
constexpr int kRowsPerWarp = kRows / kWarps;
constexpr int kTile = 32;        // tokens staged per shared-memory tile: one per lane
constexpr unsigned kFull = 0xffffffffu;
constexpr float kLog2e = 1.4426950408889634f;
constexpr int kDpl = static_cast<int>(kMaxHeadDim / 32);  // head dims per lane (registers; unused ones idle)

template <typename T> __device__ __forceinline__ float to_f(T x);
template <> __device__ __forceinline__ float to_f<float>(float x) { return x; }
template <> __device__ __forceinline__ float to_f<__half>(__half x) { return __half2float(x); }
template <> __device__ __forceinline__ float to_f<__nv_bfloat16>(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T> __device__ __forceinline__ T from_f(float x);
template <> __device__ __forceinline__ float from_f<float>(float x) { return x; }
template <> __device__ __forceinline__ __half from_f<__half>(float x) { return __float2half_rn(x); }
template <> __device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }

__device__ __forceinline__ float warp_max(float x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(kFull, x, o));
  return x;
}
__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(kFull, x, o);
  return x;
}

// Per-(b, h) geometry: L valid sequence tokens, n valid tokens in all, physical row of compacted c.
struct Item {
  int64_t L, shift, n_valid, first;
  __device__ Item(const Shape& s, const int64_t* lengths, int64_t b) {
    int64_t l = lengths[b];
    l = l < 0 ? 0 : (l > s.T ? s.T : l);  // memory safety only; the op has checked the range
    L = l;
    shift = s.T - l;
    n_valid = s.P + l;
    first = s.P + shift;
  }
  __device__ __forceinline__ int64_t phys(int64_t c, int64_t P) const { return c < P ? c : c + shift; }
  __device__ __forceinline__ bool valid(int64_t row, int64_t P) const { return row < P || row >= first; }
  __device__ __forceinline__ int64_t compact(int64_t row, int64_t P) const { return row < P ? row : row - shift; }
};

__device__ __forceinline__ void rope_cs(const Shape& s, int64_t pos, int i, float* c, float* sn) {
  const float inv_freq = exp2f(-2.0f * static_cast<float>(i) / static_cast<float>(s.Dh) * s.log2_base);
  sincosf(static_cast<float>(pos) * inv_freq, sn, c);
}

// Stages `count` token rows (compacted indices c0 .. c0+count-1 of one (b, h) slab) into dst[kTile][ld]
// as floats, rotated when `rotate`, times `mult`; rows count..kTile-1 are zero-filled. Whole block.
template <typename T>
__device__ void stage_rows(const T* __restrict__ src, float* dst, int ld, const Shape& s, const Item& it,
                           int64_t c0, int count, int rows_cap, bool rotate, float mult, bool sequential) {
  const int Dh = static_cast<int>(s.Dh);
  if (rotate) {
    const int half = Dh / 2;
    for (int idx = threadIdx.x; idx < rows_cap * half; idx += kThreads) {
      const int r = idx / half, i = idx % half;
      float x1 = 0.f, x2 = 0.f;
      if (r < count) {
        const int64_t c = c0 + r;
        const int64_t row = sequential ? c : it.phys(c, s.P);
        const T* p = src + row * s.Dh;
        float cs, sn;
        rope_cs(s, c, i, &cs, &sn);
        const float a = to_f(p[i]), b = to_f(p[i + half]);
        x1 = (a * cs - b * sn) * mult;
        x2 = (b * cs + a * sn) * mult;
      }
      dst[r * ld + i] = x1;
      dst[r * ld + i + half] = x2;
    }
  } else {
    for (int idx = threadIdx.x; idx < rows_cap * Dh; idx += kThreads) {
      const int r = idx / Dh, d = idx % Dh;
      float x = 0.f;
      if (r < count) {
        const int64_t c = c0 + r;
        const int64_t row = sequential ? c : it.phys(c, s.P);
        x = to_f(src[row * s.Dh + d]) * mult;
      }
      dst[r * ld + d] = x;
    }
  }
}

// Writes a warp's gradient row g (shared, Dh floats, w.r.t. the ROTATED row) un-rotated to dst.
template <typename T>
__device__ __forceinline__ void store_unrotated(const float* g, T* dst, const Shape& s, bool rotate, int64_t pos,
                                                float mult) {
  const int Dh = static_cast<int>(s.Dh), lane = threadIdx.x & 31;
  for (int d = lane; d < Dh; d += 32) {
    float out = g[d];
    if (rotate) {
      const int half = Dh / 2;
      const int i = d < half ? d : d - half;
      float cs, sn;
      rope_cs(s, pos, i, &cs, &sn);
      out = d < half ? g[d] * cs + g[d + half] * sn : g[d] * cs - g[i] * sn;
    }
    dst[d] = from_f<T>(out * mult);
  }
}

__host__ __device__ __forceinline__ int odd_ld(int64_t Dh) { return static_cast<int>(Dh % 2 ? Dh : Dh + 1); }

// ------------------------------------------------------------------------------------------- forward

template <typename T>
__global__ void __launch_bounds__(kThreads) fwd_kernel(const T* __restrict__ q, const T* __restrict__ k,
                                                       const T* __restrict__ v, T* __restrict__ out,
                                                       const int64_t* __restrict__ lengths, Shape s) {
  extern __shared__ float smem[];
  const int ld = odd_ld(s.Dh);
  float* qs = smem;                 // [kRows][ld]
  float* ks = qs + kRows * ld;      // [kTile][ld]
  float* vs = ks + kTile * ld;      // [kTile][ld]
  const int64_t bh = blockIdx.x, b = bh / s.H;
  const Item it(s, lengths, b);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int Dh = static_cast<int>(s.Dh);
  const T* qb = q + bh * s.Nq * s.Dh;
  const T* kb = k + bh * s.Nk * s.Dh;
  const T* vb = v + bh * s.Nk * s.Dh;
  T* ob = out + bh * s.Nq * s.Dh;

  // This block's query rows: physical rows r0 .. r0+kRows-1.
  const int64_t r0 = static_cast<int64_t>(blockIdx.y) * kRows;
  bool any_valid = false;
  for (int r = 0; r < kRows; ++r) {
    const int64_t row = r0 + r;
    any_valid |= row < s.Nq && (s.sepq || it.valid(row, s.P));
  }
  if (!any_valid || it.n_valid == 0) {  // padded rows and rows without keys output 0
    for (int idx = threadIdx.x; idx < kRows * Dh; idx += kThreads) {
      const int64_t row = r0 + idx / Dh;
      if (row < s.Nq) ob[row * s.Dh + idx % Dh] = from_f<T>(0.f);
    }
    return;
  }
  // Stage the query rows (rotated at their own positions in self-attention), scaled for exp2.
  const float qmult = s.scale * kLog2e;
  for (int idx = threadIdx.x; idx < kRows * Dh; idx += kThreads) {
    const int r = idx / Dh, d = idx % Dh;
    const int64_t row = r0 + r;
    float x = 0.f;
    if (row < s.Nq && (s.sepq || it.valid(row, s.P))) {  // padded query rows are never read
      const T* p = qb + row * s.Dh;
      if (s.rope && !s.sepq) {
        const int half = Dh / 2;
        const int i = d < half ? d : d - half;
        float cs, sn;
        rope_cs(s, it.compact(row, s.P), i, &cs, &sn);
        const float a = to_f(p[i]), bb = to_f(p[i + half]);
        x = d < half ? a * cs - bb * sn : bb * cs + a * sn;
      } else {
        x = to_f(p[d]);
      }
    }
    qs[r * ld + d] = x * qmult;
  }

  float m[kRowsPerWarp], l[kRowsPerWarp], acc[kRowsPerWarp][kDpl];
#pragma unroll
  for (int j = 0; j < kRowsPerWarp; ++j) {
    m[j] = -1e30f;
    l[j] = 0.f;
#pragma unroll
    for (int e = 0; e < kDpl; ++e) acc[j][e] = 0.f;
  }
  for (int64_t c0 = 0; c0 < it.n_valid; c0 += kTile) {
    const int count = static_cast<int>(it.n_valid - c0 < kTile ? it.n_valid - c0 : kTile);
    __syncthreads();  // previous tile consumed (and qs written, first time round)
    stage_rows(kb, ks, ld, s, it, c0, count, kTile, s.rope, 1.f, false);
    stage_rows(vb, vs, ld, s, it, c0, count, kTile, false, 1.f, false);
    __syncthreads();
#pragma unroll
    for (int j = 0; j < kRowsPerWarp; ++j) {
      const int r = warp + j * kWarps;
      const float* qr = qs + r * ld;
      const float* kr = ks + lane * ld;
      float sc = 0.f;
      for (int d = 0; d < Dh; ++d) sc += qr[d] * kr[d];
      sc = lane < count ? sc : -INFINITY;
      const float m_new = fmaxf(m[j], warp_max(sc));
      const float p = exp2f(sc - m_new);
      const float alpha = exp2f(m[j] - m_new);
      l[j] = l[j] * alpha + warp_sum(p);
      m[j] = m_new;
#pragma unroll
      for (int e = 0; e < kDpl; ++e) acc[j][e] *= alpha;
      for (int jj = 0; jj < count; ++jj) {
        const float pj = __shfl_sync(kFull, p, jj);
        const float* vr = vs + jj * ld;
#pragma unroll
        for (int e = 0; e < kDpl; ++e) {
          const int d = lane + 32 * e;
          if (d < Dh) acc[j][e] += pj * vr[d];
        }
      }
    }
  }
#pragma unroll
  for (int j = 0; j < kRowsPerWarp; ++j) {
    const int64_t row = r0 + warp + j * kWarps;
    if (row >= s.Nq) continue;
    const bool ok = s.sepq || it.valid(row, s.P);  // n_valid > 0 here; a NaN sum l must reach the output
    const float inv = 1.f / l[j];
#pragma unroll
    for (int e = 0; e < kDpl; ++e) {
      const int d = lane + 32 * e;
      if (d < Dh) ob[row * s.Dh + d] = from_f<T>(ok ? acc[j][e] * inv : 0.f);
    }
  }
}

// ------------------------------------------------------------------------------------------- backward

// Per query row: lse (base 2, +inf for rows that output 0), D = sum_j p_j dp_j, and dq.
template <typename T>
__global__ void __launch_bounds__(kThreads) bwd_rows_kernel(const T* __restrict__ go, const T* __restrict__ q,
                                                            const T* __restrict__ k, const T* __restrict__ v,
                                                            T* __restrict__ dq, float* __restrict__ lse_ws,
                                                            float* __restrict__ delta_ws,
                                                            const int64_t* __restrict__ lengths, Shape s) {
  extern __shared__ float smem[];
  const int ld = odd_ld(s.Dh);
  const int Dh = static_cast<int>(s.Dh);
  float* qs = smem;               // [kRows][ld]  rotated q * scale * log2e
  float* dos = qs + kRows * ld;   // [kRows][ld]  grad_out rows
  float* ks = dos + kRows * ld;   // [kTile][ld]
  float* vs = ks + kTile * ld;    // [kTile][ld]
  float* gbuf = vs + kTile * ld;  // [kWarps][Dh] a warp's dq row before un-rotation
  const int64_t bh = blockIdx.x, b = bh / s.H;
  const Item it(s, lengths, b);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t qoff = bh * s.Nq * s.Dh, koff = bh * s.Nk * s.Dh;
  const int64_t r0 = static_cast<int64_t>(blockIdx.y) * kRows;
  const float qmult = s.scale * kLog2e;

  for (int idx = threadIdx.x; idx < kRows * Dh; idx += kThreads) {
    const int r = idx / Dh, d = idx % Dh;
    const int64_t row = r0 + r;
    float x = 0.f, g = 0.f;
    if (row < s.Nq && (s.sepq || it.valid(row, s.P))) {  // padded query rows and their grad_out are never read
      const T* p = q + qoff + row * s.Dh;
      if (s.rope && !s.sepq) {
        const int half = Dh / 2;
        const int i = d < half ? d : d - half;
        float cs, sn;
        rope_cs(s, it.compact(row, s.P), i, &cs, &sn);
        const float a = to_f(p[i]), bb = to_f(p[i + half]);
        x = d < half ? a * cs - bb * sn : bb * cs + a * sn;
      } else {
        x = to_f(p[d]);
      }
      g = to_f(go[qoff + row * s.Dh + d]);
    }
    qs[r * ld + d] = x * qmult;
    dos[r * ld + d] = g;
  }

  float m[kRowsPerWarp], l[kRowsPerWarp], D[kRowsPerWarp], acc[kRowsPerWarp][kDpl];
#pragma unroll
  for (int j = 0; j < kRowsPerWarp; ++j) {
    m[j] = -1e30f;
    l[j] = 0.f;
    D[j] = 0.f;
#pragma unroll
    for (int e = 0; e < kDpl; ++e) acc[j][e] = 0.f;
  }
  // pass 0: logsumexp; pass 1: D; pass 2: dq.
  for (int pass = 0; pass < 3; ++pass) {
    for (int64_t c0 = 0; c0 < it.n_valid; c0 += kTile) {
      const int count = static_cast<int>(it.n_valid - c0 < kTile ? it.n_valid - c0 : kTile);
      __syncthreads();
      stage_rows(k + koff, ks, ld, s, it, c0, count, kTile, s.rope, 1.f, false);
      if (pass > 0) stage_rows(v + koff, vs, ld, s, it, c0, count, kTile, false, 1.f, false);
      __syncthreads();
#pragma unroll
      for (int j = 0; j < kRowsPerWarp; ++j) {
        const int r = warp + j * kWarps;
        const float* qr = qs + r * ld;
        const float* kr = ks + lane * ld;
        float sc = 0.f;
        for (int d = 0; d < Dh; ++d) sc += qr[d] * kr[d];
        sc = lane < count ? sc : -INFINITY;
        if (pass == 0) {
          const float m_new = fmaxf(m[j], warp_max(sc));
          l[j] = l[j] * exp2f(m[j] - m_new) + warp_sum(exp2f(sc - m_new));
          m[j] = m_new;
          continue;
        }
        const float p = exp2f(sc - m[j]);  // m holds the lse from pass 0 on (+inf: p = 0)
        const float* dr = dos + r * ld;
        const float* vr = vs + lane * ld;
        float dp = 0.f;
        for (int d = 0; d < Dh; ++d) dp += dr[d] * vr[d];
        if (pass == 1) {
          D[j] += warp_sum(p * dp);
          continue;
        }
        const float ds = p * (dp - D[j]);
        for (int jj = 0; jj < count; ++jj) {
          const float dsj = __shfl_sync(kFull, ds, jj);
          const float* kk = ks + jj * ld;
#pragma unroll
          for (int e = 0; e < kDpl; ++e) {
            const int d = lane + 32 * e;
            if (d < Dh) acc[j][e] += dsj * kk[d];
          }
        }
      }
    }
    if (pass == 0) {
#pragma unroll
      for (int j = 0; j < kRowsPerWarp; ++j) {
        const int64_t row = r0 + warp + j * kWarps;
        const bool ok = row < s.Nq && (s.sepq || it.valid(row, s.P)) && it.n_valid > 0;  // not l > 0: NaN
        m[j] = ok ? m[j] + log2f(l[j]) : INFINITY;
      }
    }
  }
#pragma unroll
  for (int j = 0; j < kRowsPerWarp; ++j) {
    const int64_t row = r0 + warp + j * kWarps;
    if (row >= s.Nq) continue;  // warp-uniform
    if (lane == 0) {
      lse_ws[bh * s.Nq + row] = m[j];
      delta_ws[bh * s.Nq + row] = D[j];
    }
    float* g = gbuf + warp * Dh;
    const bool ok = s.sepq || it.valid(row, s.P);  // padded rows: dq = 0 exactly (0 * NaN of a valid v otherwise)
#pragma unroll
    for (int e = 0; e < kDpl; ++e) {
      const int d = lane + 32 * e;
      if (d < Dh) g[d] = ok ? acc[j][e] : 0.f;
    }
    __syncwarp();
    const bool rotate = s.rope && !s.sepq;
    store_unrotated(g, dq + qoff + row * s.Dh, s, rotate, it.compact(row, s.P), s.scale);
    __syncwarp();
  }
}

// Per key row: dv = sum_i p_i dO_i and dk = scale * sum_i ds_i q_i over the valid queries.
template <typename T>
__global__ void __launch_bounds__(kThreads) bwd_keys_kernel(const T* __restrict__ go, const T* __restrict__ q,
                                                            const T* __restrict__ k, const T* __restrict__ v,
                                                            T* __restrict__ dk, T* __restrict__ dv,
                                                            const float* __restrict__ lse_ws,
                                                            const float* __restrict__ delta_ws,
                                                            const int64_t* __restrict__ lengths, Shape s) {
  extern __shared__ float smem[];
  const int ld = odd_ld(s.Dh);
  const int Dh = static_cast<int>(s.Dh);
  float* kr_s = smem;               // [kRows][ld] this block's rotated key rows
  float* vr_s = kr_s + kRows * ld;  // [kRows][ld]
  float* qs = vr_s + kRows * ld;    // [kTile][ld] query rows (rotated, unscaled)
  float* dos = qs + kTile * ld;     // [kTile][ld]
  float* lse = dos + kTile * ld;    // [kTile]
  float* dl = lse + kTile;          // [kTile]
  float* gbuf = dl + kTile;         // [kWarps][Dh]
  const int64_t bh = blockIdx.x, b = bh / s.H;
  const Item it(s, lengths, b);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t qoff = bh * s.Nq * s.Dh, koff = bh * s.Nk * s.Dh;
  const int64_t r0 = static_cast<int64_t>(blockIdx.y) * kRows;  // physical key rows r0 .. r0+kRows-1

  for (int idx = threadIdx.x; idx < kRows * Dh; idx += kThreads) {
    const int r = idx / Dh, d = idx % Dh;
    const int64_t row = r0 + r;
    float x = 0.f, y = 0.f;
    if (row < s.Nk && it.valid(row, s.P)) {
      const T* p = k + koff + row * s.Dh;
      if (s.rope) {
        const int half = Dh / 2;
        const int i = d < half ? d : d - half;
        float cs, sn;
        rope_cs(s, it.compact(row, s.P), i, &cs, &sn);
        const float a = to_f(p[i]), bb = to_f(p[i + half]);
        x = d < half ? a * cs - bb * sn : bb * cs + a * sn;
      } else {
        x = to_f(p[d]);
      }
      y = to_f(v[koff + row * s.Dh + d]);
    }
    kr_s[r * ld + d] = x;
    vr_s[r * ld + d] = y;
  }
  float adk[kRowsPerWarp][kDpl], adv[kRowsPerWarp][kDpl];
#pragma unroll
  for (int j = 0; j < kRowsPerWarp; ++j)
#pragma unroll
    for (int e = 0; e < kDpl; ++e) adk[j][e] = adv[j][e] = 0.f;

  const int64_t n_q = s.sepq ? s.Nq : it.n_valid;  // compacted valid queries
  const float s2 = s.scale * kLog2e;
  for (int64_t c0 = 0; c0 < n_q; c0 += kTile) {
    const int count = static_cast<int>(n_q - c0 < kTile ? n_q - c0 : kTile);
    __syncthreads();
    stage_rows(q + qoff, qs, ld, s, it, c0, count, kTile, s.rope && !s.sepq, 1.f, s.sepq);
    stage_rows(go + qoff, dos, ld, s, it, c0, count, kTile, false, 1.f, s.sepq);
    if (threadIdx.x < kTile) {
      const int r = threadIdx.x;
      float a = INFINITY, dd = 0.f;
      if (r < count) {
        const int64_t row = s.sepq ? c0 + r : it.phys(c0 + r, s.P);
        a = lse_ws[bh * s.Nq + row];
        dd = delta_ws[bh * s.Nq + row];
      }
      lse[r] = a;
      dl[r] = dd;
    }
    __syncthreads();
#pragma unroll
    for (int j = 0; j < kRowsPerWarp; ++j) {
      const int r = warp + j * kWarps;
      const int64_t krow = r0 + r;
      if (krow >= s.Nk || !it.valid(krow, s.P)) continue;  // warp-uniform
      const float* kk = kr_s + r * ld;
      const float* vv = vr_s + r * ld;
      const float* qi = qs + lane * ld;
      const float* di = dos + lane * ld;
      float sc = 0.f, dp = 0.f;
      for (int d = 0; d < Dh; ++d) {
        sc += qi[d] * kk[d];
        dp += di[d] * vv[d];
      }
      const float p = lane < count ? exp2f(sc * s2 - lse[lane]) : 0.f;
      const float ds = p * (dp - dl[lane]);
      for (int ii = 0; ii < count; ++ii) {
        const float pi = __shfl_sync(kFull, p, ii);
        const float dsi = __shfl_sync(kFull, ds, ii);
        const float* qrow = qs + ii * ld;
        const float* drow = dos + ii * ld;
#pragma unroll
        for (int e = 0; e < kDpl; ++e) {
          const int d = lane + 32 * e;
          if (d < Dh) {
            adv[j][e] += pi * drow[d];
            adk[j][e] += dsi * qrow[d];
          }
        }
      }
    }
  }
#pragma unroll
  for (int j = 0; j < kRowsPerWarp; ++j) {
    const int64_t krow = r0 + warp + j * kWarps;
    if (krow >= s.Nk) continue;  // warp-uniform
    const bool ok = it.valid(krow, s.P);
    float* g = gbuf + warp * Dh;
#pragma unroll
    for (int e = 0; e < kDpl; ++e) {
      const int d = lane + 32 * e;
      if (d < Dh) {
        g[d] = ok ? adk[j][e] : 0.f;
        dv[koff + krow * s.Dh + d] = from_f<T>(ok ? adv[j][e] : 0.f);
      }
    }
    __syncwarp();
    store_unrotated(g, dk + koff + krow * s.Dh, s, s.rope, it.compact(krow, s.P), s.scale);
    __syncwarp();
  }
}

// ------------------------------------------------------------------------------------------- launchers

// Opts a kernel in to more than the default 48 KB of dynamic shared memory when it needs it.
template <typename Kernel>
cudaError_t allow_smem(Kernel kernel, size_t smem) {
  if (smem <= 48 * 1024) return cudaSuccess;
  return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
}

template <typename T>
cudaError_t forward_t(const void* q, const void* k, const void* v, void* out, const int64_t* lengths, const Shape& s,
                      cudaStream_t stream) {
  const int ld = odd_ld(s.Dh);
  const size_t smem = sizeof(float) * static_cast<size_t>((kRows + 2 * kTile) * ld);
  auto kernel = fwd_kernel<T>;
  const cudaError_t e = allow_smem(kernel, smem);
  if (e != cudaSuccess) return e;
  const dim3 grid(static_cast<unsigned>(s.B * s.H), static_cast<unsigned>((s.Nq + kRows - 1) / kRows));
  kernel<<<grid, kThreads, smem, stream>>>(static_cast<const T*>(q), static_cast<const T*>(k),
                                           static_cast<const T*>(v), static_cast<T*>(out), lengths, s);
  return cudaGetLastError();
}

template <typename T>
cudaError_t backward_t(const void* go, const void* q, const void* k, const void* v, void* dq, void* dk, void* dv,
                       float* lse_ws, float* delta_ws, const int64_t* lengths, const Shape& s, cudaStream_t stream) {
  const int ld = odd_ld(s.Dh);
  const unsigned bh = static_cast<unsigned>(s.B * s.H);
  if (s.Nq > 0) {  // rows kernel first: it writes the lse / D workspace the keys kernel reads
    const size_t smem = sizeof(float) * static_cast<size_t>((2 * kRows + 2 * kTile) * ld + kWarps * s.Dh);
    auto kernel = bwd_rows_kernel<T>;
    cudaError_t e = allow_smem(kernel, smem);
    if (e != cudaSuccess) return e;
    kernel<<<dim3(bh, static_cast<unsigned>((s.Nq + kRows - 1) / kRows)), kThreads, smem, stream>>>(
        static_cast<const T*>(go), static_cast<const T*>(q), static_cast<const T*>(k), static_cast<const T*>(v),
        static_cast<T*>(dq), lse_ws, delta_ws, lengths, s);
    e = cudaGetLastError();
    if (e != cudaSuccess) return e;
  }
  if (s.Nk > 0) {
    const size_t smem = sizeof(float) * static_cast<size_t>((2 * kRows + 2 * kTile) * ld + 2 * kTile + kWarps * s.Dh);
    auto kernel = bwd_keys_kernel<T>;
    cudaError_t e = allow_smem(kernel, smem);
    if (e != cudaSuccess) return e;
    kernel<<<dim3(bh, static_cast<unsigned>((s.Nk + kRows - 1) / kRows)), kThreads, smem, stream>>>(
        static_cast<const T*>(go), static_cast<const T*>(q), static_cast<const T*>(k), static_cast<const T*>(v),
        static_cast<T*>(dk), static_cast<T*>(dv), lse_ws, delta_ws, lengths, s);
    return cudaGetLastError();
  }
  return cudaSuccess;
}

}  // namespace

cudaError_t forward(DType dtype, const void* q, const void* k, const void* v, void* out, const int64_t* lengths,
                    const Shape& s, cudaStream_t stream) {
  if (s.Dh < 1 || s.Dh > kMaxHeadDim || (s.rope && s.Dh % 2)) return cudaErrorInvalidValue;
  if (s.B * s.H == 0 || s.Nq == 0) return cudaSuccess;
  switch (dtype) {
    case DType::kFloat32: return forward_t<float>(q, k, v, out, lengths, s, stream);
    case DType::kFloat16: return forward_t<__half>(q, k, v, out, lengths, s, stream);
    case DType::kBFloat16: return forward_t<__nv_bfloat16>(q, k, v, out, lengths, s, stream);
  }
  return cudaErrorInvalidValue;
}

cudaError_t backward(DType dtype, const void* grad_out, const void* q, const void* k, const void* v, void* dq,
                     void* dk, void* dv, float* lse_ws, float* delta_ws, const int64_t* lengths, const Shape& s,
                     cudaStream_t stream) {
  if (s.Dh < 1 || s.Dh > kMaxHeadDim || (s.rope && s.Dh % 2)) return cudaErrorInvalidValue;
  if (s.B * s.H == 0) return cudaSuccess;
  switch (dtype) {
    case DType::kFloat32:
      return backward_t<float>(grad_out, q, k, v, dq, dk, dv, lse_ws, delta_ws, lengths, s, stream);
    case DType::kFloat16:
      return backward_t<__half>(grad_out, q, k, v, dq, dk, dv, lse_ws, delta_ws, lengths, s, stream);
    case DType::kBFloat16:
      return backward_t<__nv_bfloat16>(grad_out, q, k, v, dq, dk, dv, lse_ws, delta_ws, lengths, s, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace interleaved_attention_cuda
}  // namespace ctrbench
