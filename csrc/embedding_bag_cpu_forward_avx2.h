// embedding_bag_collection CPU forward for fp32, D in {8, 16, 32, 64, 128}, on AVX2+FMA
// (included by embedding_bag_cpu.cpp, which keeps a portable path for everything else).
//
// What limits this op (profiled with perf against one F.embedding_bag over the concatenated table, which
// runs FBGEMM's JIT EmbeddingSpMDM): most of the time sits on the software prefetch of a row a few ids
// ahead, which must finish its page walk (random rows of a 100k-row table miss the TLB; under a hypervisor
// the walk is two-dimensional) before it retires. Throughput is then set by how many ids fit in the
// reorder window, i.e. by the instructions spent per id and per bag, and by keeping the page-table entries
// being walked in cache. Hence:
// - bags are visited feature-major, like the ids: one table at a time, so the page-table entries of that
//   table (50 KB for 25 MB of rows) stay in L2. Visiting all features per tile of batch rows (to keep the
//   output rows hot) was 2-3x slower, and interleaving even 2 features per row cost 15% at bag size 20;
// - each bag's sum lives in NV ymm registers, rows are added with memory operands (the old kernel kept the
//   sum in a stack array: a load and a store per vector per id, and 60 instructions per 1-id bag);
// - the row kPrefetch ids ahead in the same feature is prefetched line by line (FBGEMM's scheme);
// - checks stay in the loop at one compare per id (unsigned, so negative ids fail too) and two per bag
//   (0 <= offsets[q] <= offsets[q+1] <= nnz), so there is no separate validation pass over the offsets; a
//   bag whose offsets are out of order is read as empty and reported; nothing out of range is read;
// - an output larger than kStreamBytes is written with streaming stores: each bag writes D floats into a
//   row F*D floats long, so consecutive writes land on different pages and a write-allocate would first
//   read every output line from memory; such an output does not stay in cache for its consumer anyway
//   (the same rule as memcpy's non-temporal threshold). Measured: 10% at bag size 1, nothing at 20;
// - threads take chunks of bags from an atomic counter (a thread descheduled on a shared machine does not
//   hold the other up); each bag is summed by one thread in id order, so results do not depend on threads.
#pragma once

#include <ATen/Parallel.h>
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <limits>

namespace ebc_avx2 {

constexpr int64_t kNone = std::numeric_limits<int64_t>::max();
constexpr int64_t kStreamBytes = int64_t(16) << 20;  // outputs at least this big are written with streaming stores

template <typename index_t>
struct FwdArgs {
  const float* W;            // packed weights [R, D]
  const index_t* idx;        // [nnz] table-local ids
  const int64_t* offs;       // [F*B+1]
  const float* psw;          // [nnz] or nullptr
  const int64_t* feat_base;  // [F] first packed row of each feature's table
  const int64_t* feat_rows;  // [F] rows of that table
  float* out;                // [B, F*D]
  int64_t F, B, D, nnz;
  bool mean;
  int64_t prefetch;          // ids ahead whose rows are prefetched
};

inline bool supported(int64_t D) { return D == 8 || D == 16 || D == 32 || D == 64 || D == 128; }

inline void atomic_min(std::atomic<int64_t>& a, int64_t v) {
  int64_t cur = a.load(std::memory_order_relaxed);
  while (v < cur && !a.compare_exchange_weak(cur, v, std::memory_order_relaxed)) {
  }
}

template <int NV>
__attribute__((target("avx2,fma"), always_inline)) inline void prefetch_row(const float* r) {
#pragma GCC unroll 8
  for (int l = 0; l < (NV + 1) / 2; ++l) _mm_prefetch(reinterpret_cast<const char*>(r + 16 * l), _MM_HINT_T0);
}

// Flattened bags q in [q0, q1) (q = f*B + b, feature-major). The first out-of-range id and the first offsets
// position that breaks monotonicity are min-ed into bad_id / bad_off.
template <int NV, bool kPsw, bool kStream, typename index_t>
__attribute__((target("avx2,fma"))) void forward_bags(const FwdArgs<index_t>& a, int64_t q0, int64_t q1,
                                                      int64_t& bad_id, int64_t& bad_off) {
  constexpr int64_t D = 8 * NV;
  const int64_t B = a.B, FD = a.F * D, nnz = a.nnz, P = a.prefetch;
  const index_t* __restrict idx = a.idx;
  const int64_t* __restrict offs = a.offs;
  const float* __restrict psw = a.psw;
  const bool mean = a.mean;
  int64_t my_bad_id = kNone, my_bad_off = kNone;
  for (int64_t f = q0 / B; f * B < q1; ++f) {
    const int64_t qa = std::max(q0, f * B), qb = std::min(q1, (f + 1) * B);
    const float* __restrict Wf = a.W + a.feat_base[f] * D;
    const uint64_t rows = static_cast<uint64_t>(a.feat_rows[f]);
    // prefetch only ids of this feature (same table) that exist
    const int64_t jpf = std::min(nnz, std::max<int64_t>(0, offs[qb])) - P;
    float* __restrict o = a.out + (qa - f * B) * FD + f * D;
    int64_t s = offs[qa];
    for (int64_t q = qa; q < qb; ++q, o += FD) {
      const int64_t e = offs[q + 1];
      __m256 acc[NV];
#pragma GCC unroll 16
      for (int v = 0; v < NV; ++v) acc[v] = _mm256_setzero_ps();
      // 0 <= s <= e <= nnz in two unsigned compares (a negative value is huge as unsigned)
      if (__builtin_expect(static_cast<uint64_t>(s) > static_cast<uint64_t>(e) ||
                               static_cast<uint64_t>(e) > static_cast<uint64_t>(nnz), 0)) {
        if (e < s) my_bad_off = std::min(my_bad_off, q + 1);
        s = e;  // the bag reads nothing and its output row stays zero
      }
      for (int64_t j = s; j < e; ++j) {
        if (j < jpf) prefetch_row<NV>(Wf + static_cast<int64_t>(idx[j + P]) * D);
        const uint64_t id = static_cast<uint64_t>(static_cast<int64_t>(idx[j]));
        if (__builtin_expect(id >= rows, 0)) {
          my_bad_id = std::min(my_bad_id, j);
          continue;
        }
        const float* r = Wf + static_cast<int64_t>(id) * D;
        if constexpr (kPsw) {
          const __m256 w = _mm256_broadcast_ss(psw + j);
#pragma GCC unroll 16
          for (int v = 0; v < NV; ++v) acc[v] = _mm256_fmadd_ps(w, _mm256_loadu_ps(r + 8 * v), acc[v]);
        } else {
#pragma GCC unroll 16
          for (int v = 0; v < NV; ++v) acc[v] = _mm256_add_ps(acc[v], _mm256_loadu_ps(r + 8 * v));
        }
      }
      if (mean && e > s) {
        const __m256 sc = _mm256_set1_ps(1.0f / static_cast<float>(e - s));
#pragma GCC unroll 16
        for (int v = 0; v < NV; ++v) acc[v] = _mm256_mul_ps(acc[v], sc);
      }
#pragma GCC unroll 16
      for (int v = 0; v < NV; ++v) {
        if constexpr (kStream) {
          _mm256_stream_ps(o + 8 * v, acc[v]);  // 32-byte aligned: checked by the caller
        } else {
          _mm256_storeu_ps(o + 8 * v, acc[v]);
        }
      }
      s = e;
    }
  }
  if constexpr (kStream) _mm_sfence();  // streaming stores visible before the threads join
  bad_id = std::min(bad_id, my_bad_id);
  bad_off = std::min(bad_off, my_bad_off);
}

// All F*B bags, in chunks of consecutive bags handed out from an atomic counter.
template <int NV, bool kPsw, bool kStream, typename index_t>
void forward_all(const FwdArgs<index_t>& a, int64_t& bad_id, int64_t& bad_off) {
  const int64_t nq = a.F * a.B;
  if (nq == 0) return;
  const int64_t threads = at::get_num_threads();
  const int64_t work = (a.nnz + nq) * a.D;  // floats read + written
  if (threads <= 1 || work < (int64_t(1) << 18) || at::in_parallel_region()) {
    forward_bags<NV, kPsw, kStream, index_t>(a, 0, nq, bad_id, bad_off);
    return;
  }
  const int64_t nchunks = std::min<int64_t>(nq, 8 * threads);
  const int64_t per = (nq + nchunks - 1) / nchunks;
  std::atomic<int64_t> next{0}, g_bad_id{kNone}, g_bad_off{kNone};
  at::parallel_for(0, threads, 1, [&](int64_t, int64_t) {
    int64_t my_id = kNone, my_off = kNone;
    for (int64_t c = next.fetch_add(1, std::memory_order_relaxed); c * per < nq;
         c = next.fetch_add(1, std::memory_order_relaxed)) {
      forward_bags<NV, kPsw, kStream, index_t>(a, c * per, std::min(nq, (c + 1) * per), my_id, my_off);
    }
    atomic_min(g_bad_id, my_id);
    atomic_min(g_bad_off, my_off);
  });
  bad_id = std::min(bad_id, g_bad_id.load());
  bad_off = std::min(bad_off, g_bad_off.load());
}

template <bool kPsw, bool kStream, typename index_t>
void forward_d(const FwdArgs<index_t>& a, int64_t& bad_id, int64_t& bad_off) {
  switch (a.D) {
    case 8: return forward_all<1, kPsw, kStream, index_t>(a, bad_id, bad_off);
    case 16: return forward_all<2, kPsw, kStream, index_t>(a, bad_id, bad_off);
    case 32: return forward_all<4, kPsw, kStream, index_t>(a, bad_id, bad_off);
    case 64: return forward_all<8, kPsw, kStream, index_t>(a, bad_id, bad_off);
    case 128: return forward_all<16, kPsw, kStream, index_t>(a, bad_id, bad_off);
    default: return;
  }
}

// Pooled lookup into a.out; callers check supported(a.D) and that the CPU has AVX2 and FMA.
template <typename index_t>
void forward(const FwdArgs<index_t>& a, int64_t& bad_id, int64_t& bad_off) {
  const bool stream = a.F * a.B * a.D * static_cast<int64_t>(sizeof(float)) >= kStreamBytes &&
                      reinterpret_cast<uintptr_t>(a.out) % 32 == 0;  // rows then stay 32-byte aligned (D % 8 == 0)
  if (a.psw != nullptr) {
    return stream ? forward_d<true, true, index_t>(a, bad_id, bad_off) : forward_d<true, false, index_t>(a, bad_id, bad_off);
  }
  return stream ? forward_d<false, true, index_t>(a, bad_id, bad_off) : forward_d<false, false, index_t>(a, bad_id, bad_off);
}

}  // namespace ebc_avx2
