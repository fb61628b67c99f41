// Interleaved attention on the CPU (kernels/interleaved_attention/reference.py is the definition):
// attention over [P always-valid prefix tokens | left-padded sequence of T slots] with per-row lengths,
// fused rotate-half RoPE, separate (PMA) queries, fully masked rows -> 0.
//
// One work item per (batch, head), split over threads with at::parallel_for (OpenMP). Each item first
// COMPACTS its valid keys (and, in self-attention, its valid queries) into small padded scratch tiles:
// the valid tokens are the prefix [0, P) and the last lengths[b] slots, and the rotary position of a
// valid token equals its compacted index, so one cos/sin table of Nk rows serves every row. Work then
// scales with (P + lengths[b])^2 rather than Nk^2. The products (QK^T, PV and the five backward ones)
// run through one register-tiled 4x16 micro-kernel that GCC vectorises; the float path is compiled twice
// (AVX2+FMA / AVX-512 clones and a baseline, picked at load time) because setup.py builds with plain -O3.
// The backward recomputes the probabilities (no saved logsumexp) and writes each (b, h)'s dq, dk, dv
// alone: no atomics, deterministic for any thread count. float16/bfloat16 inputs are computed in float.
//
// Defines ctrbench::_interleaved_attention_fwd / _bwd; the CUDA implementations of the same ops live in
// interleaved_attention_cuda_binding.cpp.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <tuple>
#include <vector>

#pragma GCC push_options
#pragma GCC optimize("no-trapping-math")

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define CTRBENCH_IA_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define CTRBENCH_IA_CLONES
#endif
#define CTRBENCH_IA_INLINE inline __attribute__((always_inline))

namespace ctrbench {
namespace interleaved_attention {
namespace {

constexpr int64_t kMR = 4;   // micro-kernel rows
constexpr int64_t kNR = 16;  // micro-kernel columns

CTRBENCH_IA_INLINE int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

CTRBENCH_IA_INLINE float bits_to_float(int32_t i) {
  float f;
  std::memcpy(&f, &i, sizeof f);
  return f;
}

// Cephes-style expf, branch-free so the softmax loop vectorises (~1 ulp on [-87, 88]; below -87 it
// returns ~1e-38 instead of 0, which is what every masked entry's exp(-inf) never reaches: masked keys
// are compacted away, not set to -inf).
struct ExpF32 {
  static CTRBENCH_IA_INLINE float exp(float x) {
    float xc = x < -87.0f ? -87.0f : x;
    xc = xc > 88.0f ? 88.0f : xc;
    const float n = __builtin_floorf(xc * 1.44269504088896341f + 0.5f);  // no std:: calls: they are not
    // inlined into the target clones, which would stop the loop from vectorising
    const float r = xc - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    return p * bits_to_float((static_cast<int32_t>(n) + 127) << 23);
  }
};
struct ExpF64 {
  static CTRBENCH_IA_INLINE double exp(double x) { return std::exp(x); }
};
template <typename T> struct ExpOf;
template <> struct ExpOf<float> { using type = ExpF32; };
template <> struct ExpOf<double> { using type = ExpF64; };

// C[M, N] = A[M, K] * B[K, N] (row-major, leading dims given), M % kMR == 0, N % kNR == 0. The
// kMR x kNR accumulator tile stays in registers across the K loop.
template <typename T>
CTRBENCH_IA_INLINE void gemm_nn(int64_t M, int64_t N, int64_t K, const T* __restrict A, int64_t lda,
                                const T* __restrict B, int64_t ldb, T* __restrict C, int64_t ldc) {
  for (int64_t i0 = 0; i0 < M; i0 += kMR) {
    for (int64_t j0 = 0; j0 < N; j0 += kNR) {
      T acc[kMR][kNR];
      for (int r = 0; r < kMR; ++r)
        for (int c = 0; c < kNR; ++c) acc[r][c] = T(0);
      const T* a = A + i0 * lda;
      const T* b = B + j0;
      for (int64_t kk = 0; kk < K; ++kk) {
        const T* brow = b + kk * ldb;
        for (int r = 0; r < kMR; ++r) {
          const T ar = a[r * lda + kk];
#pragma omp simd
          for (int c = 0; c < kNR; ++c) acc[r][c] += ar * brow[c];
        }
      }
      for (int r = 0; r < kMR; ++r) {
        T* crow = C + (i0 + r) * ldc + j0;
#pragma omp simd
        for (int c = 0; c < kNR; ++c) crow[c] = acc[r][c];
      }
    }
  }
}

// Row-wise exp(S - rowmax) of S[0:nq, 0:nk] in place (ld = row stride); rinv[i] = 1 / row sum. The
// forward folds the normalisation into the output rows (cheaper than normalising P).
template <typename T>
CTRBENCH_IA_INLINE void softmax_rows_unnormalised(T* __restrict S, T* __restrict rinv, int64_t nq, int64_t nk,
                                                  int64_t ld) {
  using E = typename ExpOf<T>::type;
  for (int64_t i = 0; i < nq; ++i) {
    T* row = S + i * ld;
    T mx = row[0];
#pragma omp simd reduction(max : mx)
    for (int64_t c = 1; c < nk; ++c) mx = row[c] > mx ? row[c] : mx;
    T sum = T(0);
#pragma omp simd reduction(+ : sum)
    for (int64_t c = 0; c < nk; ++c) {
      const T e = E::exp(row[c] - mx);
      row[c] = e;
      sum += e;
    }
    rinv[i] = T(1) / sum;
  }
}

// Shapes of one call and the per-(b, h) scratch layout.
struct Dims {
  int64_t B, H, Nq, Nk, Dh, P, T;
  bool rope, sepq;
  int64_t half, dpad, nkp, nqp;  // dpad: Dh rounded to kNR; nkp: Nk rounded to kNR; nqp: Nq rounded to kMR
};

Dims make_dims(const at::Tensor& q, const at::Tensor& k, int64_t P, bool rope, bool sepq) {
  Dims d;
  d.B = q.size(0);
  d.H = q.size(1);
  d.Nq = q.size(2);
  d.Dh = q.size(3);
  d.Nk = k.size(2);
  d.P = P;
  d.T = d.Nk - P;
  d.rope = rope;
  d.sepq = sepq;
  d.half = d.Dh / 2;
  d.dpad = round_up(std::max<int64_t>(d.Dh, 1), kNR);
  d.nkp = round_up(std::max<int64_t>(d.Nk, 1), std::max(kNR, kMR));
  d.nqp = round_up(std::max<int64_t>(d.Nq, 1), std::max(kNR, kMR));
  return d;
}

// cos/sin [Nk, Dh/2] for positions 0..Nk-1 (a valid token's position is its compacted index).
template <typename T>
void rope_table(const Dims& d, double base, std::vector<T>& cs, std::vector<T>& sn) {
  cs.assign(std::max<int64_t>(d.Nk * d.half, 1), T(0));
  sn.assign(std::max<int64_t>(d.Nk * d.half, 1), T(0));
  for (int64_t i = 0; i < d.half; ++i) {
    const double inv_freq = std::pow(base, -2.0 * static_cast<double>(i) / static_cast<double>(d.Dh));
    for (int64_t p = 0; p < d.Nk; ++p) {
      const double a = static_cast<double>(p) * inv_freq;
      cs[p * d.half + i] = static_cast<T>(std::cos(a));
      sn[p * d.half + i] = static_cast<T>(std::sin(a));
    }
  }
}

// Physical row of compacted valid token c: prefix tokens first, then the last L sequence slots.
CTRBENCH_IA_INLINE int64_t phys(int64_t c, int64_t P, int64_t shift) { return c < P ? c : c + shift; }

// dst[0:Dh] = rot(src) * mult (or src * mult without rope), for the token at position pos.
template <typename T>
CTRBENCH_IA_INLINE void load_row(const T* __restrict src, T* __restrict dst, const Dims& d, bool rotate, int64_t pos, const T* cs,
                                 const T* sn, T mult) {
  if (rotate) {
    const T* c = cs + pos * d.half;
    const T* s = sn + pos * d.half;
    const int64_t h = d.half;
    for (int64_t i = 0; i < h; ++i) {
      const T x1 = src[i], x2 = src[i + h];
      dst[i] = (x1 * c[i] - x2 * s[i]) * mult;
      dst[i + h] = (x2 * c[i] + x1 * s[i]) * mult;
    }
  } else {
    for (int64_t i = 0; i < d.Dh; ++i) dst[i] = src[i] * mult;
  }
}

// dst[0:Dh] = rot^T(g) * mult: the gradient w.r.t. the un-rotated row.
template <typename T>
CTRBENCH_IA_INLINE void store_grad_row(const T* __restrict g, T* __restrict dst, const Dims& d, bool rotate, int64_t pos, const T* cs,
                                       const T* sn, T mult) {
  if (rotate) {
    const T* c = cs + pos * d.half;
    const T* s = sn + pos * d.half;
    const int64_t h = d.half;
    for (int64_t i = 0; i < h; ++i) {
      const T g1 = g[i], g2 = g[i + h];
      dst[i] = (g1 * c[i] + g2 * s[i]) * mult;
      dst[i + h] = (g2 * c[i] - g1 * s[i]) * mult;
    }
  } else {
    for (int64_t i = 0; i < d.Dh; ++i) dst[i] = g[i] * mult;
  }
}

template <typename T>
struct Tile {  // scratch for one (b, h), reused across the items of a thread's chunk
  std::vector<T> buf;
  T *Qs, *KT, *Kc, *Vc, *S, *O, *rinv;     // forward
  T *dO, *VT, *dP, *dST, *PT, *dQ, *dK, *dV;  // backward
  explicit Tile(const Dims& d, bool backward) {
    const int64_t nq = d.nqp, nk = d.nkp, dp = d.dpad;
    const int64_t n_fwd = nq * dp + dp * nk + nk * dp + nk * dp + nq * nk + nq * dp + nq;
    const int64_t n_bwd = backward ? nq * dp + dp * nk + nq * nk + nk * nq + nk * nq + nq * dp + nk * dp + nk * dp : 0;
    buf.assign(n_fwd + n_bwd, T(0));
    T* p = buf.data();
    auto take = [&p](int64_t n) { T* r = p; p += n; return r; };
    Qs = take(nq * dp); KT = take(dp * nk); Kc = take(nk * dp); Vc = take(nk * dp); S = take(nq * nk); O = take(nq * dp); rinv = take(nq);
    dO = dQ = dK = dV = VT = dP = dST = PT = nullptr;
    if (backward) {
      dO = take(nq * dp); VT = take(dp * nk); dP = take(nq * nk); dST = take(nk * nq); PT = take(nk * nq);
      dQ = take(nq * dp); dK = take(nk * dp); dV = take(nk * dp);
    }
  }
};

// Gathers the (b, h) item's valid queries and keys into the tile and computes exp(S - rowmax) in t.S
// with the inverse row sums in t.rinv.
// Returns (nq, nk): the numbers of compacted query rows and key rows.
template <typename T>
CTRBENCH_IA_INLINE std::pair<int64_t, int64_t> gather_and_softmax(const T* q, const T* k, const T* v, int64_t L,
                                                                  const Dims& d, T scale, const T* cs, const T* sn,
                                                                  Tile<T>& t, bool want_vt) {
  const int64_t nk = d.P + L;
  const int64_t shift = d.T - L;
  const int64_t nq = d.sepq ? d.Nq : nk;
  if (nk == 0 || nq == 0) return {nq, nk};
  const int64_t dp = d.dpad, ldk = d.nkp;
  for (int64_t i = 0; i < nq; ++i) {
    const int64_t row = d.sepq ? i : phys(i, d.P, shift);
    load_row(q + row * d.Dh, t.Qs + i * dp, d, d.rope && !d.sepq, i, cs, sn, scale);
  }
  for (int64_t c = 0; c < nk; ++c) {
    const int64_t row = phys(c, d.P, shift);
    T* kc = t.Kc + c * dp;
    load_row(k + row * d.Dh, kc, d, d.rope, c, cs, sn, T(1));
    const T* vr = v + row * d.Dh;
    T* vc = t.Vc + c * dp;
    for (int64_t i = 0; i < d.Dh; ++i) {
      t.KT[i * ldk + c] = kc[i];
      vc[i] = vr[i];
    }
    if (want_vt)
      for (int64_t i = 0; i < d.Dh; ++i) t.VT[i * ldk + c] = vr[i];
  }
  gemm_nn<T>(round_up(nq, kMR), round_up(nk, kNR), d.Dh, t.Qs, dp, t.KT, ldk, t.S, ldk);
  softmax_rows_unnormalised<T>(t.S, t.rinv, nq, nk, ldk);
  return {nq, nk};
}

template <typename T>
CTRBENCH_IA_INLINE void forward_item(const T* q, const T* k, const T* v, T* out, int64_t L, const Dims& d, T scale,
                                     const T* cs, const T* sn, Tile<T>& t) {
  const auto [nq, nk] = gather_and_softmax(q, k, v, L, d, scale, cs, sn, t, false);
  std::fill(out, out + d.Nq * d.Dh, T(0));  // padded query rows and rows without keys stay 0
  if (nk == 0 || nq == 0) return;
  const int64_t dp = d.dpad, shift = d.T - L;
  gemm_nn<T>(round_up(nq, kMR), dp, nk, t.S, d.nkp, t.Vc, dp, t.O, dp);
  for (int64_t i = 0; i < nq; ++i) {
    const int64_t row = d.sepq ? i : phys(i, d.P, shift);
    const T r = t.rinv[i];
    const T* __restrict o = t.O + i * dp;
    T* __restrict dst = out + row * d.Dh;
#pragma omp simd
    for (int64_t c = 0; c < d.Dh; ++c) dst[c] = o[c] * r;
  }
}

template <typename T>
CTRBENCH_IA_INLINE void backward_item(const T* go, const T* q, const T* k, const T* v, T* dq, T* dk, T* dv, int64_t L,
                                      const Dims& d, T scale, const T* cs, const T* sn, Tile<T>& t) {
  const auto [nq, nk] = gather_and_softmax(q, k, v, L, d, scale, cs, sn, t, true);
  std::fill(dq, dq + d.Nq * d.Dh, T(0));
  std::fill(dk, dk + d.Nk * d.Dh, T(0));
  std::fill(dv, dv + d.Nk * d.Dh, T(0));
  if (nk == 0 || nq == 0) return;
  const int64_t dp = d.dpad, ldk = d.nkp, ldq = d.nqp, shift = d.T - L;
  const int64_t nq4 = round_up(nq, kMR), nk16 = round_up(nk, kNR);
  for (int64_t i = 0; i < nq; ++i) {
    const int64_t row = d.sepq ? i : phys(i, d.P, shift);
    std::memcpy(t.dO + i * dp, go + row * d.Dh, sizeof(T) * d.Dh);
  }
  // dP = dO V^T; dS = P * (dP - rowsum(P * dP))
  gemm_nn<T>(nq4, nk16, d.Dh, t.dO, dp, t.VT, ldk, t.dP, ldk);
  for (int64_t i = 0; i < nq; ++i) {
    T* __restrict p = t.S + i * ldk;
    T* __restrict ds = t.dP + i * ldk;
    const T r = t.rinv[i];
#pragma omp simd
    for (int64_t c = 0; c < nk; ++c) p[c] *= r;
    T D = T(0);
#pragma omp simd reduction(+ : D)
    for (int64_t c = 0; c < nk; ++c) D += p[c] * ds[c];
#pragma omp simd
    for (int64_t c = 0; c < nk; ++c) ds[c] = p[c] * (ds[c] - D);
    for (int64_t c = 0; c < nk; ++c) {  // transposes for the key-side products
      t.dST[c * ldq + i] = ds[c];
      t.PT[c * ldq + i] = p[c];
    }
  }
  gemm_nn<T>(nq4, dp, nk, t.dP, ldk, t.Kc, dp, t.dQ, dp);   // dQr = dS Kr   (times scale below)
  gemm_nn<T>(nk16, dp, nq, t.dST, ldq, t.Qs, dp, t.dK, dp);  // dKr = dS^T (scale Qr)
  gemm_nn<T>(nk16, dp, nq, t.PT, ldq, t.dO, dp, t.dV, dp);   // dV = P^T dO
  for (int64_t i = 0; i < nq; ++i) {
    const int64_t row = d.sepq ? i : phys(i, d.P, shift);
    store_grad_row(t.dQ + i * dp, dq + row * d.Dh, d, d.rope && !d.sepq, i, cs, sn, scale);
  }
  for (int64_t c = 0; c < nk; ++c) {
    const int64_t row = phys(c, d.P, shift);
    store_grad_row(t.dK + c * dp, dk + row * d.Dh, d, d.rope, c, cs, sn, T(1));
    std::memcpy(dv + row * d.Dh, t.dV + c * dp, sizeof(T) * d.Dh);
  }
}

// The float path is multiversioned (see the header comment); double is for gradcheck and stays plain.
CTRBENCH_IA_CLONES void forward_range_f32(int64_t begin, int64_t end, const float* q, const float* k, const float* v,
                                          float* out, const int64_t* lengths, const Dims* d, float scale,
                                          const float* cs, const float* sn) {
  Tile<float> t(*d, false);
  for (int64_t bh = begin; bh < end; ++bh) {
    const int64_t b = bh / d->H;
    forward_item<float>(q + bh * d->Nq * d->Dh, k + bh * d->Nk * d->Dh, v + bh * d->Nk * d->Dh,
                        out + bh * d->Nq * d->Dh, lengths[b], *d, scale, cs, sn, t);
  }
}

CTRBENCH_IA_CLONES void backward_range_f32(int64_t begin, int64_t end, const float* go, const float* q, const float* k,
                                           const float* v, float* dq, float* dk, float* dv, const int64_t* lengths,
                                           const Dims* d, float scale, const float* cs, const float* sn) {
  Tile<float> t(*d, true);
  for (int64_t bh = begin; bh < end; ++bh) {
    const int64_t b = bh / d->H;
    const int64_t oq = bh * d->Nq * d->Dh, ok = bh * d->Nk * d->Dh;
    backward_item<float>(go + oq, q + oq, k + ok, v + ok, dq + oq, dk + ok, dv + ok, lengths[b], *d, scale, cs, sn, t);
  }
}

void forward_range(int64_t begin, int64_t end, const float* q, const float* k, const float* v, float* out,
                   const int64_t* lengths, const Dims* d, float scale, const float* cs, const float* sn) {
  forward_range_f32(begin, end, q, k, v, out, lengths, d, scale, cs, sn);
}
void forward_range(int64_t begin, int64_t end, const double* q, const double* k, const double* v, double* out,
                   const int64_t* lengths, const Dims* d, double scale, const double* cs, const double* sn) {
  Tile<double> t(*d, false);
  for (int64_t bh = begin; bh < end; ++bh) {
    const int64_t b = bh / d->H;
    forward_item<double>(q + bh * d->Nq * d->Dh, k + bh * d->Nk * d->Dh, v + bh * d->Nk * d->Dh,
                         out + bh * d->Nq * d->Dh, lengths[b], *d, scale, cs, sn, t);
  }
}
void backward_range(int64_t begin, int64_t end, const float* go, const float* q, const float* k, const float* v,
                    float* dq, float* dk, float* dv, const int64_t* lengths, const Dims* d, float scale,
                    const float* cs, const float* sn) {
  backward_range_f32(begin, end, go, q, k, v, dq, dk, dv, lengths, d, scale, cs, sn);
}
void backward_range(int64_t begin, int64_t end, const double* go, const double* q, const double* k, const double* v,
                    double* dq, double* dk, double* dv, const int64_t* lengths, const Dims* d, double scale,
                    const double* cs, const double* sn) {
  Tile<double> t(*d, true);
  for (int64_t bh = begin; bh < end; ++bh) {
    const int64_t b = bh / d->H;
    const int64_t oq = bh * d->Nq * d->Dh, ok = bh * d->Nk * d->Dh;
    backward_item<double>(go + oq, q + oq, k + ok, v + ok, dq + oq, dk + ok, dv + ok, lengths[b], *d, scale, cs, sn, t);
  }
}

// Work per (b, h) grows with (P + L)^2 * Dh; a grain of ~1 MFLOP keeps the OpenMP overhead small.
int64_t grain(const Dims& d) {
  const int64_t per_item = std::max<int64_t>(1, d.Nq * d.Nk * std::max<int64_t>(d.Dh, 1) * 4);
  return std::max<int64_t>(1, (1 << 20) / per_item);
}

void check_args(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& lengths,
                int64_t num_prefix, bool rope, bool sepq, const char* where) {
  TORCH_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4, where, ": q, k, v must be 4-D [B, H, N, Dh]");
  TORCH_CHECK(k.sizes() == v.sizes(), where, ": k and v must have the same shape");
  TORCH_CHECK(k.size(0) == q.size(0) && k.size(1) == q.size(1) && k.size(3) == q.size(3), where,
              ": k must be [B, H, Nk, Dh] matching q");
  TORCH_CHECK(sepq || q.size(2) == k.size(2), where, ": self-attention needs Nq == Nk");
  TORCH_CHECK(lengths.dim() == 1 && lengths.size(0) == q.size(0), where, ": lengths must be [B]");
  TORCH_CHECK(num_prefix >= 0 && num_prefix <= k.size(2), where, ": num_prefix must lie in [0, Nk]");
  TORCH_CHECK(!rope || q.size(3) % 2 == 0, where, ": rope needs an even head dim");
  TORCH_CHECK(q.scalar_type() == k.scalar_type() && q.scalar_type() == v.scalar_type(), where,
              ": q, k, v must share a dtype");
  TORCH_CHECK(!at::isFloatingType(lengths.scalar_type()), where, ": lengths must be integer");
}

at::Tensor lengths_checked(const at::Tensor& lengths, int64_t T, const char* where) {
  at::Tensor l = lengths.to(at::kLong).contiguous();
  const int64_t* p = l.data_ptr<int64_t>();
  for (int64_t b = 0; b < l.numel(); ++b)
    TORCH_CHECK(p[b] >= 0 && p[b] <= T, where, ": lengths[", b, "] = ", p[b], " outside [0, T=", T, "]");
  return l;
}

at::ScalarType compute_type(at::ScalarType t) { return t == at::kDouble ? at::kDouble : at::kFloat; }

at::Tensor forward_cpu(const at::Tensor& q_in, const at::Tensor& k_in, const at::Tensor& v_in,
                       const at::Tensor& lengths_in, int64_t num_prefix, bool rope, double rope_base, double scale,
                       bool separate_queries) {
  const char* where = "ctrbench::_interleaved_attention_fwd (cpu)";
  check_args(q_in, k_in, v_in, lengths_in, num_prefix, rope, separate_queries, where);
  const auto ct = compute_type(q_in.scalar_type());
  const at::Tensor q = q_in.to(ct).contiguous(), k = k_in.to(ct).contiguous(), v = v_in.to(ct).contiguous();
  const Dims d = make_dims(q, k, num_prefix, rope, separate_queries);
  const at::Tensor lengths = lengths_checked(lengths_in, d.T, where);
  at::Tensor out = at::empty(q.sizes(), q.options());
  if (out.numel() == 0) return out.to(q_in.scalar_type());
  AT_DISPATCH_FLOATING_TYPES(ct, "interleaved_attention_fwd_cpu", [&] {
    std::vector<scalar_t> cs, sn;
    rope_table<scalar_t>(d, rope_base, cs, sn);
    const scalar_t* qp = q.data_ptr<scalar_t>();
    const scalar_t* kp = k.data_ptr<scalar_t>();
    const scalar_t* vp = v.data_ptr<scalar_t>();
    scalar_t* op = out.data_ptr<scalar_t>();
    const int64_t* lp = lengths.data_ptr<int64_t>();
    at::parallel_for(0, d.B * d.H, grain(d), [&](int64_t begin, int64_t end) {
      forward_range(begin, end, qp, kp, vp, op, lp, &d, static_cast<scalar_t>(scale), cs.data(), sn.data());
    });
  });
  return out.to(q_in.scalar_type());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> backward_cpu(const at::Tensor& grad_out, const at::Tensor& q_in,
                                                            const at::Tensor& k_in, const at::Tensor& v_in,
                                                            const at::Tensor& lengths_in, int64_t num_prefix, bool rope,
                                                            double rope_base, double scale, bool separate_queries) {
  const char* where = "ctrbench::_interleaved_attention_bwd (cpu)";
  check_args(q_in, k_in, v_in, lengths_in, num_prefix, rope, separate_queries, where);
  TORCH_CHECK(grad_out.sizes() == q_in.sizes(), where, ": grad_out must have q's shape");
  const auto ct = compute_type(q_in.scalar_type());
  const at::Tensor q = q_in.to(ct).contiguous(), k = k_in.to(ct).contiguous(), v = v_in.to(ct).contiguous();
  const at::Tensor go = grad_out.to(ct).contiguous();
  const Dims d = make_dims(q, k, num_prefix, rope, separate_queries);
  const at::Tensor lengths = lengths_checked(lengths_in, d.T, where);
  at::Tensor dq = at::empty(q.sizes(), q.options());
  at::Tensor dk = at::empty(k.sizes(), k.options());
  at::Tensor dv = at::empty(v.sizes(), v.options());
  if (d.B * d.H > 0 && d.Dh > 0) {
    AT_DISPATCH_FLOATING_TYPES(ct, "interleaved_attention_bwd_cpu", [&] {
      std::vector<scalar_t> cs, sn;
      rope_table<scalar_t>(d, rope_base, cs, sn);
      const scalar_t* gp = go.data_ptr<scalar_t>();
      const scalar_t* qp = q.data_ptr<scalar_t>();
      const scalar_t* kp = k.data_ptr<scalar_t>();
      const scalar_t* vp = v.data_ptr<scalar_t>();
      scalar_t* dqp = dq.data_ptr<scalar_t>();
      scalar_t* dkp = dk.data_ptr<scalar_t>();
      scalar_t* dvp = dv.data_ptr<scalar_t>();
      const int64_t* lp = lengths.data_ptr<int64_t>();
      at::parallel_for(0, d.B * d.H, grain(d), [&](int64_t begin, int64_t end) {
        backward_range(begin, end, gp, qp, kp, vp, dqp, dkp, dvp, lp, &d, static_cast<scalar_t>(scale), cs.data(),
                       sn.data());
      });
    });
  }
  const auto dt = q_in.scalar_type();
  return {dq.to(dt), dk.to(dt), dv.to(dt)};
}

}  // namespace
}  // namespace interleaved_attention
}  // namespace ctrbench

#pragma GCC pop_options

TORCH_LIBRARY_FRAGMENT(ctrbench, m) {
  m.def(
      "_interleaved_attention_fwd(Tensor q, Tensor k, Tensor v, Tensor lengths, int num_prefix, bool rope, "
      "float rope_base, float scale, bool separate_queries) -> Tensor");
  m.def(
      "_interleaved_attention_bwd(Tensor grad_out, Tensor q, Tensor k, Tensor v, Tensor lengths, int num_prefix, "
      "bool rope, float rope_base, float scale, bool separate_queries) -> (Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(ctrbench, CPU, m) {
  m.impl("_interleaved_attention_fwd", &ctrbench::interleaved_attention::forward_cpu);
  m.impl("_interleaved_attention_bwd", &ctrbench::interleaved_attention::backward_cpu);
}
