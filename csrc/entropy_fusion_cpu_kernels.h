// Entropy-weighted fusion CPU block kernels (see entropy_fusion_cpu.cpp). No include guard on purpose:
// entropy_fusion_cpu.cpp includes this file once per instruction set, inside its own namespace and with
// CTRBENCH_EWF_LANES (float lanes per vector) defined, after <cmath>, <cstdint> and <cstring>.
// Exposes forward_block_f32/_f64 and backward_block_f32/_f64.

// float runs CTRBENCH_EWF_LANES lanes at a time through GCC vector extensions; double runs one lane with
// std::exp/std::log (it exists for gradcheck).
typedef float f32xN __attribute__((vector_size(4 * CTRBENCH_EWF_LANES)));
typedef int32_t i32xN __attribute__((vector_size(4 * CTRBENCH_EWF_LANES)));

// Cephes expf / logf: ~1 ulp, branch-free; NaN in gives NaN out.
struct LanesF32 {
  using S = float;
  using V = f32xN;
  static constexpr int64_t W = CTRBENCH_EWF_LANES;
  static CTRBENCH_EWF_INLINE V splat(float f) { return V{} + f; }
  static CTRBENCH_EWF_INLINE V load(const float* p, int64_t remaining) {
    V v;
    if (remaining >= W) {
      std::memcpy(&v, p, sizeof v);  // one unaligned vector load
    } else {
      v = V{};
      for (int64_t i = 0; i < remaining; ++i) v[i] = p[i];
    }
    return v;
  }
  static CTRBENCH_EWF_INLINE void store(float* p, V v) { std::memcpy(p, &v, sizeof v); }
  static CTRBENCH_EWF_INLINE V exp(V x) {
    V xc = x < -87.0f ? splat(-87.0f) : x;
    xc = xc > 88.0f ? splat(88.0f) : xc;
    const V t = xc * 1.44269504088896341f;
    const i32xN ni = __builtin_convertvector(t + (t < 0.0f ? splat(-0.5f) : splat(0.5f)), i32xN);  // round
    const V n = __builtin_convertvector(ni, V);
    const V r = xc - n * 0.693359375f + n * 2.12194440e-4f;
    V q = splat(1.9875691500e-4f);
    q = q * r + 1.3981999507e-3f;
    q = q * r + 8.3334519073e-3f;
    q = q * r + 4.1665795894e-2f;
    q = q * r + 1.6666665459e-1f;
    q = q * r + 5.0000001201e-1f;
    const V y = (q * r * r + r + 1.0f) * (V)((ni + 127) << 23);  // vector cast = bit reinterpretation
    return x < -87.0f ? splat(0.0f) : y;  // underflow to 0 (inputs here are <= 0)
  }
  // log for positive normal x (here x = 1 + e in [1, 2]).
  static CTRBENCH_EWF_INLINE V log(V x) {
    const i32xN bits = (i32xN)x;
    V e = __builtin_convertvector((bits >> 23) - 126, V);
    const i32xN mbits = (bits & 0x007fffff) | 0x3f000000;
    V m = (V)mbits;  // mantissa in [0.5, 1)
    const i32xN small = m < 0.707106781186547524f;
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

// Forward over `rows` rows starting at x; scratch holds 2 * padded(rows * K) values. KC > 0 fixes K at
// compile time (the common K = 2, 4, 8: the per-row loops unroll), KC = 0 takes K at run time.
template <typename Lanes, int64_t KC>
CTRBENCH_EWF_INLINE void forward_block_impl(const typename Lanes::S* x, typename Lanes::S* fused,
                                            typename Lanes::S* w, int64_t rows, int64_t k_runtime,
                                            typename Lanes::S bound, typename Lanes::S inv_tau,
                                            bool logit_space, typename Lanes::S* scratch) {
  using S = typename Lanes::S;
  constexpr int64_t W = Lanes::W;
  const int64_t K = KC > 0 ? KC : k_runtime;
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
// scratch holds 4 * padded(rows * K) values. KC as for forward_block_impl.
template <typename Lanes, int64_t KC>
CTRBENCH_EWF_INLINE double backward_block_impl(const typename Lanes::S* x, const typename Lanes::S* w,
                                               const typename Lanes::S* gf, const typename Lanes::S* gw,
                                               typename Lanes::S* gx, int64_t rows, int64_t k_runtime,
                                               typename Lanes::S bound, typename Lanes::S inv_tau,
                                               bool logit_space, bool detach, typename Lanes::S* scratch) {
  using S = typename Lanes::S;
  using V = typename Lanes::V;
  constexpr int64_t W = Lanes::W;
  const int64_t K = KC > 0 ? KC : k_runtime;
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

#define CTRBENCH_EWF_BY_K(call)       \
  switch (K) {                        \
    case 2: return call(2);           \
    case 4: return call(4);           \
    case 8: return call(8);           \
    default: return call(0);          \
  }

void forward_block_f32(const float* x, float* fused, float* w, int64_t rows, int64_t K, float bound, float inv_tau,
                       bool logit_space, float* scratch) {
#define CTRBENCH_EWF_CALL(kc) forward_block_impl<LanesF32, kc>(x, fused, w, rows, K, bound, inv_tau, logit_space, scratch)
  CTRBENCH_EWF_BY_K(CTRBENCH_EWF_CALL)
#undef CTRBENCH_EWF_CALL
}
void forward_block_f64(const double* x, double* fused, double* w, int64_t rows, int64_t K, double bound,
                       double inv_tau, bool logit_space, double* scratch) {
  forward_block_impl<LanesF64, 0>(x, fused, w, rows, K, bound, inv_tau, logit_space, scratch);
}
double backward_block_f32(const float* x, const float* w, const float* gf, const float* gw, float* gx, int64_t rows,
                          int64_t K, float bound, float inv_tau, bool logit_space, bool detach, float* scratch) {
#define CTRBENCH_EWF_CALL(kc) \
  backward_block_impl<LanesF32, kc>(x, w, gf, gw, gx, rows, K, bound, inv_tau, logit_space, detach, scratch)
  CTRBENCH_EWF_BY_K(CTRBENCH_EWF_CALL)
#undef CTRBENCH_EWF_CALL
}
double backward_block_f64(const double* x, const double* w, const double* gf, const double* gw, double* gx,
                          int64_t rows, int64_t K, double bound, double inv_tau, bool logit_space, bool detach,
                          double* scratch) {
  return backward_block_impl<LanesF64, 0>(x, w, gf, gw, gx, rows, K, bound, inv_tau, logit_space, detach, scratch);
}
#undef CTRBENCH_EWF_BY_K
