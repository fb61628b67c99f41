// embedding_bag_collection, CPU kernels (OpenMP through at::parallel_for; built with -fopenmp).
//
// Layout (TBE / KJT, feature-major): weights [R, D] pack all tables, table t owns rows
// table_offsets[t]:table_offsets[t+1]; feature f reads table feature_table[f] (identity when absent);
// indices are table-local; bag (f, b) is indices[offsets[f*B+b]:offsets[f*B+b+1]]; out is [B, F*D].
//
// Forward: fp32 with D in {8, 16, 32, 64, 128} on an AVX2+FMA CPU runs embedding_bag_cpu_forward_avx2.h
// (feature-major over all bags, sums in ymm registers, rows prefetched a few ids ahead, ids and offsets
// checked inside the loop; why it is built that way is written there). Everything else (float64, other D,
// no AVX2) runs the portable kernel here: parallel over (feature, block of bags), D specialised at compile
// time for 8/16/32/64/128, offsets checked in a serial pass first. Ids are range-checked before their row
// is touched; a bad id or bad offsets produce a status vector [code, position] (codes in
// kernels/embedding_bag/validation.py), never a read out of range.
//
// Backward: per table, a stable counting sort (or a comparison sort for very sparse tables) builds
// row -> (bag, scale) lists, so each touched row's gradient is summed in index order; then a parallel
// pass over the unique rows writes the row-wise sparse gradient or applies SGD / row-wise Adagrad in
// place, each row exactly once. No atomics; the result does not depend on the thread count.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

#include "embedding_bag_cpu_forward_avx2.h"

namespace {

enum : int64_t { kSum = 0, kMean = 1 };
enum : int64_t { kOptNone = 0, kOptSgd = 1, kOptRowwiseAdagrad = 2 };
enum : int64_t { kStatusOk = 0, kStatusBadId = 1, kStatusBadOffsets = 2, kStatusBadTables = 3 };

constexpr int64_t kPrefetch = 16;      // indices ahead whose rows are prefetched
constexpr int64_t kBagsPerTask = 32;   // bags per forward work item (portable path)
constexpr int64_t kMinChunkWork = 1 << 20;  // element updates per thread chunk: below it a thread costs more than it saves

// at::parallel_for grain for `n` items of `work_per_item` element updates each (the whole range runs inline,
// without an OpenMP region, when it is smaller than one chunk).
inline int64_t grain_for(int64_t work_per_item) {
  return std::max<int64_t>(1, kMinChunkWork / std::max<int64_t>(1, work_per_item));
}

// Host-side description of the feature -> table mapping and the bag layout.
struct Layout {
  int64_t F = 0, B = 0, D = 0, nnz = 0, R = 0, T = 0;
  std::vector<int64_t> feat_base, feat_rows, feat_table;  // per feature
  std::vector<std::vector<int64_t>> table_feats;          // per table: its features, ascending
  at::Tensor offsets;                                     // int64, contiguous
  const int64_t* offs = nullptr;
  int64_t status_code = kStatusOk, status_pos = 0;
};

// Reads the layout and checks table_offsets, feature_table and offsets (O(T + F*B), serial).
// check_offsets=false leaves all but offsets[0] to the caller (the AVX2 forward checks each bag's offsets itself).
Layout make_layout(int64_t R, int64_t D, const at::Tensor& table_offsets, const c10::optional<at::Tensor>& feature_table,
                   const at::Tensor& indices, const at::Tensor& offsets, bool check_offsets = true) {
  TORCH_CHECK(table_offsets.device().is_cpu() && indices.device().is_cpu() && offsets.device().is_cpu(),
              "ebc CPU kernels need CPU tensors");
  TORCH_CHECK(table_offsets.scalar_type() == at::kLong && table_offsets.dim() == 1 && table_offsets.numel() >= 2,
              "table_offsets must be int64 [T+1]");
  Layout L;
  L.R = R;
  L.D = D;
  L.nnz = indices.numel();
  auto to = table_offsets.contiguous();
  const int64_t* top = to.data_ptr<int64_t>();
  L.T = to.numel() - 1;
  bool tables_ok = top[0] >= 0 && top[L.T] <= R;
  for (int64_t t = 0; t < L.T; ++t) tables_ok = tables_ok && top[t + 1] >= top[t];
  if (feature_table.has_value()) {
    auto ft = feature_table->contiguous();
    TORCH_CHECK(ft.scalar_type() == at::kLong && ft.dim() == 1, "feature_table must be int64 [F]");
    L.F = ft.numel();
    const int64_t* ftp = ft.data_ptr<int64_t>();
    L.feat_table.assign(ftp, ftp + L.F);
  } else {
    L.F = L.T;
    L.feat_table.resize(L.F);
    for (int64_t f = 0; f < L.F; ++f) L.feat_table[f] = f;
  }
  for (int64_t f = 0; f < L.F; ++f) tables_ok = tables_ok && L.feat_table[f] >= 0 && L.feat_table[f] < L.T;
  TORCH_CHECK(L.F >= 1 && (offsets.numel() - 1) % L.F == 0, "len(offsets) must be F*B+1");
  L.B = (offsets.numel() - 1) / L.F;
  if (!tables_ok) {
    L.status_code = kStatusBadTables;
    return L;
  }
  L.feat_base.resize(L.F);
  L.feat_rows.resize(L.F);
  L.table_feats.assign(L.T, {});
  for (int64_t f = 0; f < L.F; ++f) {
    int64_t t = L.feat_table[f];
    L.feat_base[f] = top[t];
    L.feat_rows[f] = top[t + 1] - top[t];
    L.table_feats[t].push_back(f);
  }
  L.offsets = offsets.to(at::kLong).contiguous();
  L.offs = L.offsets.data_ptr<int64_t>();
  const int64_t n = L.offsets.numel();
  if (L.offs[0] != 0) {
    L.status_code = kStatusBadOffsets;
    L.status_pos = 0;
    return L;
  }
  if (!check_offsets) return L;
  for (int64_t i = 1; i < n; ++i) {
    if (L.offs[i] < L.offs[i - 1]) {
      L.status_code = kStatusBadOffsets;
      L.status_pos = i;
      return L;
    }
  }
  if (L.offs[n - 1] != L.nnz) {
    L.status_code = kStatusBadOffsets;
    L.status_pos = n - 1;
  }
  return L;
}

inline void atomic_min(std::atomic<int64_t>& a, int64_t v) {
  int64_t cur = a.load(std::memory_order_relaxed);
  while (v < cur && !a.compare_exchange_weak(cur, v, std::memory_order_relaxed)) {
  }
}

template <typename scalar_t>
inline void prefetch_row(const scalar_t* p, int64_t D) {
  const char* c = reinterpret_cast<const char*>(p);
  const int64_t bytes = D * static_cast<int64_t>(sizeof(scalar_t));
  for (int64_t o = 0; o < bytes; o += 64) __builtin_prefetch(c + o, 0, 3);
}

template <typename scalar_t>
inline void prefetch_row_w(scalar_t* p, int64_t D) {
  const char* c = reinterpret_cast<const char*>(p);
  const int64_t bytes = D * static_cast<int64_t>(sizeof(scalar_t));
  for (int64_t o = 0; o < bytes; o += 64) __builtin_prefetch(c + o, 1, 3);
}

// acc[0:D] += w * row[0:D]; kD > 0 is the compile-time D.
template <int kD, typename acc_t, typename scalar_t>
inline void axpy(acc_t* __restrict acc, const scalar_t* __restrict row, acc_t w, int64_t D) {
  if constexpr (kD > 0) {
#pragma omp simd
    for (int d = 0; d < kD; ++d) acc[d] += w * static_cast<acc_t>(row[d]);
  } else {
#pragma omp simd
    for (int64_t d = 0; d < D; ++d) acc[d] += w * static_cast<acc_t>(row[d]);
  }
}

// acc[0:D] = w * row[0:D] (starting a sum from its first term instead of zeroing: a zeroing loop compiles to
// `rep stos`, which costs more than the whole update of a 64-float row).
template <int kD, typename acc_t, typename scalar_t>
inline void scale_set(acc_t* __restrict acc, const scalar_t* __restrict row, acc_t w, int64_t D) {
  if constexpr (kD > 0) {
#pragma omp simd
    for (int d = 0; d < kD; ++d) acc[d] = w * static_cast<acc_t>(row[d]);
  } else {
#pragma omp simd
    for (int64_t d = 0; d < D; ++d) acc[d] = w * static_cast<acc_t>(row[d]);
  }
}

template <int kD, typename acc_t, typename scalar_t>
inline void add(acc_t* __restrict acc, const scalar_t* __restrict row, int64_t D) {
  if constexpr (kD > 0) {
#pragma omp simd
    for (int d = 0; d < kD; ++d) acc[d] += static_cast<acc_t>(row[d]);
  } else {
#pragma omp simd
    for (int64_t d = 0; d < D; ++d) acc[d] += static_cast<acc_t>(row[d]);
  }
}

// ------------------------------------------------------------------------------------------------ forward

// Work items [w0, w1) of the forward (item = feature x block of bags); returns the first bad position seen.
// Always inlined into a baseline-ISA and an AVX2+FMA entry point (chosen at run time).
template <typename scalar_t, typename index_t, int kD, bool kPsw>
inline __attribute__((always_inline)) int64_t forward_range_body(const Layout& L, const scalar_t* __restrict W,
                                                                  const index_t* __restrict idx,
                                                                  const scalar_t* __restrict psw, bool mean,
                                                                  scalar_t* __restrict out, int64_t nblk, int64_t w0,
                                                                  int64_t w1) {
  using acc_t = scalar_t;  // float or double
  const int64_t D = kD > 0 ? kD : L.D;
  const int64_t F = L.F, B = L.B, FD = F * D;
  std::vector<acc_t> acc_buf(kD > 0 ? 0 : D);
  alignas(64) acc_t acc_fixed[kD > 0 ? kD : 1];
  acc_t* __restrict acc = kD > 0 ? acc_fixed : acc_buf.data();
  int64_t bad = std::numeric_limits<int64_t>::max();
  for (int64_t w = w0; w < w1; ++w) {
    const int64_t f = w / nblk, b0 = (w % nblk) * kBagsPerTask, b1 = std::min(B, b0 + kBagsPerTask);
    const uint64_t rows = static_cast<uint64_t>(L.feat_rows[f]);
    const scalar_t* Wf = W + L.feat_base[f] * D;
    const int64_t* bo = L.offs + f * B;
    const int64_t jlast = bo[B];  // prefetch across work items of the same feature (same table)
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t s = bo[b], e = bo[b + 1];
      bool empty = true;  // the first valid row starts the sum
      for (int64_t j = s; j < e; ++j) {
        if (j + kPrefetch < jlast) {
          const uint64_t pid = static_cast<uint64_t>(static_cast<int64_t>(idx[j + kPrefetch]));
          if (pid < rows) prefetch_row(Wf + pid * D, D);
        }
        const uint64_t id = static_cast<uint64_t>(static_cast<int64_t>(idx[j]));
        if (__builtin_expect(id >= rows, 0)) {
          bad = std::min(bad, j);
          continue;
        }
        const acc_t w = kPsw ? static_cast<acc_t>(psw[j]) : acc_t(1);
        if (empty) {
          scale_set<kD, acc_t>(acc, Wf + id * D, w, D);
          empty = false;
        } else if constexpr (kPsw) {
          axpy<kD, acc_t>(acc, Wf + id * D, w, D);
        } else {
          add<kD, acc_t>(acc, Wf + id * D, D);
        }
      }
      if (empty) std::fill(acc, acc + D, acc_t(0));
      const acc_t scale = (mean && e > s) ? acc_t(1) / static_cast<acc_t>(e - s) : acc_t(1);
      scalar_t* o = out + b * FD + f * D;
#pragma omp simd
      for (int64_t d = 0; d < D; ++d) o[d] = static_cast<scalar_t>(acc[d] * scale);
    }
  }
  return bad;
}

template <typename scalar_t, typename index_t, int kD, bool kPsw>
int64_t forward_range(const Layout& L, const scalar_t* W, const index_t* idx, const scalar_t* psw, bool mean,
                      scalar_t* out, int64_t nblk, int64_t w0, int64_t w1) {
  return forward_range_body<scalar_t, index_t, kD, kPsw>(L, W, idx, psw, mean, out, nblk, w0, w1);
}

template <typename scalar_t, typename index_t, int kD, bool kPsw>
__attribute__((target("avx2,fma"))) int64_t forward_range_avx2(const Layout& L, const scalar_t* W, const index_t* idx,
                                                                const scalar_t* psw, bool mean, scalar_t* out,
                                                                int64_t nblk, int64_t w0, int64_t w1) {
  return forward_range_body<scalar_t, index_t, kD, kPsw>(L, W, idx, psw, mean, out, nblk, w0, w1);
}

inline bool cpu_has_avx2() {
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return ok;
}

template <typename scalar_t, typename index_t, int kD>
void forward_impl(const Layout& L, const scalar_t* W, const index_t* idx, const scalar_t* psw, bool mean, scalar_t* out,
                  std::atomic<int64_t>& first_bad) {
  const int64_t nblk = (L.B + kBagsPerTask - 1) / kBagsPerTask;
  if (nblk == 0) return;
  const bool avx2 = cpu_has_avx2();
  const int64_t avg_len = std::max<int64_t>(1, L.nnz / std::max<int64_t>(1, L.F * L.B));
  at::parallel_for(0, L.F * nblk, grain_for(kBagsPerTask * avg_len * L.D), [&](int64_t w0, int64_t w1) {
    int64_t bad;
    if (psw != nullptr) {
      bad = avx2 ? forward_range_avx2<scalar_t, index_t, kD, true>(L, W, idx, psw, mean, out, nblk, w0, w1)
                 : forward_range<scalar_t, index_t, kD, true>(L, W, idx, psw, mean, out, nblk, w0, w1);
    } else {
      bad = avx2 ? forward_range_avx2<scalar_t, index_t, kD, false>(L, W, idx, psw, mean, out, nblk, w0, w1)
                 : forward_range<scalar_t, index_t, kD, false>(L, W, idx, psw, mean, out, nblk, w0, w1);
    }
    if (bad != std::numeric_limits<int64_t>::max()) atomic_min(first_bad, bad);
  });
}

template <typename scalar_t, typename index_t>
void forward_dispatch_d(const Layout& L, const scalar_t* W, const index_t* idx, const scalar_t* psw, bool mean,
                        scalar_t* out, std::atomic<int64_t>& first_bad) {
  if constexpr (std::is_same_v<scalar_t, float>) {
    switch (L.D) {
      case 8: return forward_impl<scalar_t, index_t, 8>(L, W, idx, psw, mean, out, first_bad);
      case 16: return forward_impl<scalar_t, index_t, 16>(L, W, idx, psw, mean, out, first_bad);
      case 32: return forward_impl<scalar_t, index_t, 32>(L, W, idx, psw, mean, out, first_bad);
      case 64: return forward_impl<scalar_t, index_t, 64>(L, W, idx, psw, mean, out, first_bad);
      case 128: return forward_impl<scalar_t, index_t, 128>(L, W, idx, psw, mean, out, first_bad);
      default: break;
    }
  }
  forward_impl<scalar_t, index_t, 0>(L, W, idx, psw, mean, out, first_bad);
}

void check_common(const at::Tensor& weights, const at::Tensor& indices, const c10::optional<at::Tensor>& psw) {
  TORCH_CHECK(weights.device().is_cpu(), "ebc CPU kernels need CPU weights");
  TORCH_CHECK(weights.dim() == 2, "weights must be [R, D]");
  TORCH_CHECK(weights.scalar_type() == at::kFloat || weights.scalar_type() == at::kDouble,
              "ebc CPU kernels support float32 and float64 weights, got ", weights.scalar_type());
  TORCH_CHECK(indices.scalar_type() == at::kInt || indices.scalar_type() == at::kLong, "indices must be int32 or int64");
  TORCH_CHECK(indices.dim() == 1, "indices must be 1-D");
  if (psw.has_value()) {
    TORCH_CHECK(psw->scalar_type() == weights.scalar_type(), "per_sample_weights must have the weights' dtype");
    TORCH_CHECK(psw->numel() == indices.numel(), "per_sample_weights must match indices");
  }
}

at::Tensor status_tensor(int64_t code, int64_t pos) {
  auto s = at::empty({2}, at::TensorOptions().dtype(at::kLong));
  s.data_ptr<int64_t>()[0] = code;
  s.data_ptr<int64_t>()[1] = pos;
  return s;
}

std::tuple<at::Tensor, at::Tensor> ebc_forward_cpu(const at::Tensor& weights, const at::Tensor& table_offsets,
                                                   const c10::optional<at::Tensor>& feature_table,
                                                   const at::Tensor& indices, const at::Tensor& offsets,
                                                   const c10::optional<at::Tensor>& per_sample_weights,
                                                   int64_t pooling) {
  check_common(weights, indices, per_sample_weights);
  const auto W = weights.contiguous();
  const bool fast = W.scalar_type() == at::kFloat && ebc_avx2::supported(W.size(1)) && cpu_has_avx2();
  Layout L = make_layout(W.size(0), W.size(1), table_offsets, feature_table, indices, offsets, /*check_offsets=*/!fast);
  auto out = at::empty({L.B, L.F * L.D}, W.options());
  if (L.status_code != kStatusOk) return {out, status_tensor(L.status_code, L.status_pos)};
  const auto idx = indices.contiguous();
  c10::optional<at::Tensor> psw;
  if (per_sample_weights.has_value()) psw = per_sample_weights->contiguous();
  if (fast) {
    int64_t bad_id = ebc_avx2::kNone, bad_off = ebc_avx2::kNone;
    AT_DISPATCH_INDEX_TYPES(idx.scalar_type(), "ebc_forward_cpu_avx2", [&] {
      ebc_avx2::FwdArgs<index_t> a{W.data_ptr<float>(), idx.data_ptr<index_t>(), L.offs,
                                   psw.has_value() ? psw->data_ptr<float>() : nullptr, L.feat_base.data(),
                                   L.feat_rows.data(), out.data_ptr<float>(), L.F, L.B, L.D, L.nnz,
                                   pooling == kMean, kPrefetch};
      ebc_avx2::forward(a, bad_id, bad_off);
    });
    if (bad_off != ebc_avx2::kNone) return {out, status_tensor(kStatusBadOffsets, bad_off)};
    if (L.offs[L.F * L.B] != L.nnz) return {out, status_tensor(kStatusBadOffsets, L.F * L.B)};
    if (bad_id != ebc_avx2::kNone) return {out, status_tensor(kStatusBadId, bad_id)};
    return {out, status_tensor(kStatusOk, 0)};
  }
  std::atomic<int64_t> first_bad{std::numeric_limits<int64_t>::max()};
  AT_DISPATCH_FLOATING_TYPES(W.scalar_type(), "ebc_forward_cpu", [&] {
    const scalar_t* pw = psw.has_value() ? psw->data_ptr<scalar_t>() : nullptr;
    AT_DISPATCH_INDEX_TYPES(idx.scalar_type(), "ebc_forward_cpu_idx", [&] {
      forward_dispatch_d<scalar_t, index_t>(L, W.data_ptr<scalar_t>(), idx.data_ptr<index_t>(), pw, pooling == kMean,
                                            out.data_ptr<scalar_t>(), first_bad);
    });
  });
  const int64_t bad = first_bad.load();
  if (bad != std::numeric_limits<int64_t>::max()) return {out, status_tensor(kStatusBadId, bad)};
  return {out, status_tensor(kStatusOk, 0)};
}

// ------------------------------------------------------------------------------------------------ backward

// Per table: its touched rows in ascending order, and for each row its (bag, scale) entries in index order.
template <typename acc_t>
struct TableRows {
  std::vector<int64_t> urow;  // unique table-local rows, ascending
  std::vector<int64_t> seg;   // U+1 entry starts
  std::vector<int32_t> grow;  // per entry: the grad_out row b*F + f (grad_out viewed as [B*F, D])
  std::vector<acc_t> scale;   // per entry (empty when every scale is 1)
};

template <typename acc_t, typename index_t>
void build_table_rows(const Layout& L, int64_t t, const index_t* idx, const acc_t* psw, bool mean, TableRows<acc_t>& out) {
  const auto& feats = L.table_feats[t];
  const int64_t B = L.B;
  int64_t n = 0;
  for (int64_t f : feats) n += L.offs[(f + 1) * B] - L.offs[f * B];
  if (n == 0) {
    out.seg.assign(1, 0);
    return;
  }
  const int64_t rows = L.feat_rows[feats[0]];
  const bool need_scale = psw != nullptr || mean;
  out.grow.resize(n);
  if (need_scale) out.scale.resize(n);
  const int64_t F = L.F;
  auto check = [&](int64_t id, int64_t j) {
    TORCH_CHECK_INDEX(static_cast<uint64_t>(id) < static_cast<uint64_t>(rows), "ebc backward: indices[", j, "] = ", id,
                      " is out of range for table ", t, " with ", rows, " rows");
  };
  if (rows <= 8 * n + 65536) {
    // Stable counting sort by row.
    std::vector<int32_t> cnt(rows, 0);  // n < 2^31 (checked by the caller)
    for (int64_t f : feats)
      for (int64_t j = L.offs[f * B]; j < L.offs[(f + 1) * B]; ++j) {
        const int64_t id = static_cast<int64_t>(idx[j]);
        check(id, j);
        ++cnt[id];
      }
    // Exclusive prefix sum and the list of touched rows, branch-free (about half the rows are touched).
    out.urow.resize(std::min(rows, n) + 1);
    out.seg.resize(std::min(rows, n) + 2);
    int64_t* ur = out.urow.data();
    int64_t* sg = out.seg.data();
    int64_t U = 0;
    int32_t run = 0;
    for (int64_t r = 0; r < rows; ++r) {
      const int32_t c = cnt[r];
      ur[U] = r;
      sg[U] = run;
      U += c != 0;
      cnt[r] = run;
      run += c;
    }
    out.urow.resize(U);
    out.seg.resize(U);
    out.seg.push_back(run);
    for (int64_t f : feats) {
      const int64_t* bo = L.offs + f * B;
      for (int64_t b = 0; b < B; ++b) {
        const int64_t s = bo[b], e = bo[b + 1];
        const acc_t sc = (mean && e > s) ? acc_t(1) / static_cast<acc_t>(e - s) : acc_t(1);
        const int32_t gr = static_cast<int32_t>(b * F + f);
        for (int64_t j = s; j < e; ++j) {
          const int32_t p = cnt[static_cast<int64_t>(idx[j])]++;
          out.grow[p] = gr;
          if (need_scale) out.scale[p] = psw ? psw[j] * sc : sc;
        }
      }
    }
  } else {
    // Very sparse table (rows >> touched entries): sort (row, entry) pairs instead of counting over all rows.
    std::vector<std::pair<int64_t, int64_t>> keys(n);
    std::vector<int32_t> tb(n);
    std::vector<acc_t> ts(need_scale ? n : 0);
    int64_t k = 0;
    for (int64_t f : feats) {
      const int64_t* bo = L.offs + f * B;
      for (int64_t b = 0; b < B; ++b) {
        const int64_t s = bo[b], e = bo[b + 1];
        const acc_t sc = (mean && e > s) ? acc_t(1) / static_cast<acc_t>(e - s) : acc_t(1);
        for (int64_t j = s; j < e; ++j, ++k) {
          const int64_t id = static_cast<int64_t>(idx[j]);
          check(id, j);
          keys[k] = {id, k};
          tb[k] = static_cast<int32_t>(b * F + f);
          if (need_scale) ts[k] = psw ? psw[j] * sc : sc;
        }
      }
    }
    std::sort(keys.begin(), keys.end());
    for (int64_t p = 0; p < n; ++p) {
      if (p == 0 || keys[p].first != keys[p - 1].first) {
        out.urow.push_back(keys[p].first);
        out.seg.push_back(p);
      }
      out.grow[p] = tb[keys[p].second];
      if (need_scale) out.scale[p] = ts[keys[p].second];
    }
    out.seg.push_back(n);
  }
}

template <typename acc_t, typename index_t>
std::vector<TableRows<acc_t>> build_all(const Layout& L, const index_t* idx, const acc_t* psw, bool mean) {
  std::vector<TableRows<acc_t>> tabs(L.T);
  const int64_t grain = L.nnz * 16 < kMinChunkWork ? L.T : 1;  // counting sort: ~16 element updates per id
  at::parallel_for(0, L.T, grain, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) build_table_rows<acc_t, index_t>(L, t, idx, psw, mean, tabs[t]);
  });
  return tabs;
}

// Unique rows [u0, u1) (global numbering over the tables): sum each row's gradient, then write or update.
// Always inlined into a baseline-ISA and an AVX2+FMA entry point (chosen at run time).
template <int kD, int kMode, typename scalar_t>
inline __attribute__((always_inline)) void apply_range_body(const Layout& L, const std::vector<TableRows<scalar_t>>& tabs,
                                                            const int64_t* ustart, const int64_t* table_base,
                                                            const scalar_t* __restrict grad, scalar_t* __restrict W,
                                                            scalar_t* __restrict momentum, double lr, double eps,
                                                            int64_t* __restrict out_rows,
                                                            scalar_t* __restrict out_grads, int64_t u0, int64_t u1) {
  using acc_t = scalar_t;
  const int64_t D = kD > 0 ? kD : L.D;
  std::vector<acc_t> acc_buf(kD > 0 ? 0 : D);
  alignas(64) acc_t acc_fixed[kD > 0 ? kD : 1];
  acc_t* __restrict acc = kD > 0 ? acc_fixed : acc_buf.data();
  const acc_t a_lr = static_cast<acc_t>(lr), a_eps = static_cast<acc_t>(eps);
  int64_t t = std::upper_bound(ustart, ustart + L.T + 1, u0) - ustart - 1;
  while (u0 < u1) {
    while (u0 >= ustart[t + 1]) ++t;
    const TableRows<acc_t>& tr = tabs[t];
    const int64_t i0 = u0 - ustart[t], i1 = std::min(u1, ustart[t + 1]) - ustart[t];
    const int64_t* __restrict urow = tr.urow.data();
    const int64_t* __restrict seg = tr.seg.data();
    const int32_t* __restrict grow = tr.grow.data();
    const acc_t* __restrict scale = tr.scale.empty() ? nullptr : tr.scale.data();
    const int64_t pend = seg[i1];
    scalar_t* Wt = W + table_base[t] * D;
    for (int64_t i = i0; i < i1; ++i) {
      if (kMode != kOptNone && i + kPrefetch < i1) prefetch_row_w(Wt + urow[i + kPrefetch] * D, D);
      for (int64_t p = seg[i]; p < seg[i + 1]; ++p) {  // every segment has at least one entry
        if (p + kPrefetch < pend) prefetch_row(grad + static_cast<int64_t>(grow[p + kPrefetch]) * D, D);
        const scalar_t* g = grad + static_cast<int64_t>(grow[p]) * D;
        const acc_t sc = scale != nullptr ? scale[p] : acc_t(1);
        if (p == seg[i]) {
          scale_set<kD, acc_t>(acc, g, sc, D);
        } else if (scale != nullptr) {
          axpy<kD, acc_t>(acc, g, sc, D);
        } else {
          add<kD, acc_t>(acc, g, D);
        }
      }
      const int64_t row = urow[i];
      if constexpr (kMode == kOptNone) {
        const int64_t u = ustart[t] + i;
        out_rows[u] = table_base[t] + row;
        scalar_t* o = out_grads + u * D;
#pragma omp simd
        for (int64_t d = 0; d < D; ++d) o[d] = acc[d];
      } else if constexpr (kMode == kOptSgd) {
        scalar_t* w = Wt + row * D;
#pragma omp simd
        for (int64_t d = 0; d < D; ++d) w[d] -= a_lr * acc[d];
      } else {
        acc_t ss = 0;
#pragma omp simd reduction(+ : ss)
        for (int64_t d = 0; d < D; ++d) ss += acc[d] * acc[d];
        const int64_t grow_global = table_base[t] + row;
        const acc_t m = momentum[grow_global] + ss / static_cast<acc_t>(D);
        momentum[grow_global] = m;
        const acc_t a = a_lr / (std::sqrt(m) + a_eps);
        scalar_t* w = Wt + row * D;
#pragma omp simd
        for (int64_t d = 0; d < D; ++d) w[d] -= a * acc[d];
      }
    }
    u0 = ustart[t] + i1;
  }
}

template <int kD, int kMode, typename scalar_t>
void apply_range(const Layout& L, const std::vector<TableRows<scalar_t>>& tabs, const int64_t* ustart,
                 const int64_t* table_base, const scalar_t* grad, scalar_t* W, scalar_t* momentum, double lr,
                 double eps, int64_t* out_rows, scalar_t* out_grads, int64_t u0, int64_t u1) {
  apply_range_body<kD, kMode, scalar_t>(L, tabs, ustart, table_base, grad, W, momentum, lr, eps, out_rows, out_grads,
                                        u0, u1);
}

template <int kD, int kMode, typename scalar_t>
__attribute__((target("avx2,fma"))) void apply_range_avx2(const Layout& L, const std::vector<TableRows<scalar_t>>& tabs,
                                                           const int64_t* ustart, const int64_t* table_base,
                                                           const scalar_t* grad, scalar_t* W, scalar_t* momentum,
                                                           double lr, double eps, int64_t* out_rows,
                                                           scalar_t* out_grads, int64_t u0, int64_t u1) {
  apply_range_body<kD, kMode, scalar_t>(L, tabs, ustart, table_base, grad, W, momentum, lr, eps, out_rows, out_grads,
                                        u0, u1);
}

// One pass over every unique row (parallel, contiguous chunks); each row is owned by exactly one thread.
template <int kD, int kMode, typename scalar_t>
void apply_rows(const Layout& L, const std::vector<TableRows<scalar_t>>& tabs, const int64_t* table_base,
                const scalar_t* grad, scalar_t* W, scalar_t* momentum, double lr, double eps, int64_t* out_rows,
                scalar_t* out_grads) {
  std::vector<int64_t> ustart(L.T + 1, 0);
  for (int64_t t = 0; t < L.T; ++t) ustart[t + 1] = ustart[t] + static_cast<int64_t>(tabs[t].urow.size());
  const int64_t U = ustart[L.T];
  const bool avx2 = cpu_has_avx2();
  const int64_t per_row = (L.nnz / std::max<int64_t>(1, U) + 2) * L.D;  // entries summed + the row's update
  at::parallel_for(0, U, std::max<int64_t>(256, grain_for(per_row)), [&](int64_t u0, int64_t u1) {
    if (avx2) {
      apply_range_avx2<kD, kMode, scalar_t>(L, tabs, ustart.data(), table_base, grad, W, momentum, lr, eps, out_rows,
                                            out_grads, u0, u1);
    } else {
      apply_range<kD, kMode, scalar_t>(L, tabs, ustart.data(), table_base, grad, W, momentum, lr, eps, out_rows,
                                       out_grads, u0, u1);
    }
  });
}

template <int kMode, typename scalar_t>
void apply_rows_dispatch(const Layout& L, const std::vector<TableRows<scalar_t>>& tabs, const int64_t* table_base,
                         const scalar_t* grad, scalar_t* W, scalar_t* momentum, double lr, double eps, int64_t* out_rows,
                         scalar_t* out_grads) {
  if constexpr (std::is_same_v<scalar_t, float>) {
    switch (L.D) {
      case 16: return apply_rows<16, kMode>(L, tabs, table_base, grad, W, momentum, lr, eps, out_rows, out_grads);
      case 32: return apply_rows<32, kMode>(L, tabs, table_base, grad, W, momentum, lr, eps, out_rows, out_grads);
      case 64: return apply_rows<64, kMode>(L, tabs, table_base, grad, W, momentum, lr, eps, out_rows, out_grads);
      case 128: return apply_rows<128, kMode>(L, tabs, table_base, grad, W, momentum, lr, eps, out_rows, out_grads);
      default: break;
    }
  }
  apply_rows<0, kMode>(L, tabs, table_base, grad, W, momentum, lr, eps, out_rows, out_grads);
}

Layout backward_layout(const at::Tensor& grad_out, const at::Tensor& table_offsets,
                       const c10::optional<at::Tensor>& feature_table, const at::Tensor& indices,
                       const at::Tensor& offsets, int64_t R) {
  const int64_t F = feature_table.has_value() ? feature_table->numel() : table_offsets.numel() - 1;
  TORCH_CHECK(grad_out.dim() == 2 && F > 0 && grad_out.size(1) % F == 0, "grad_out must be [B, F*D]");
  Layout L = make_layout(R, grad_out.size(1) / F, table_offsets, feature_table, indices, offsets);
  TORCH_CHECK(L.status_code == kStatusOk, "ebc backward: invalid table_offsets / feature_table / offsets (status ",
              L.status_code, " at ", L.status_pos, ")");
  TORCH_CHECK(grad_out.size(0) == L.B, "grad_out has ", grad_out.size(0), " rows, expected B = ", L.B);
  TORCH_CHECK(L.B * L.F < (int64_t(1) << 31) && L.nnz < (int64_t(1) << 31),
              "ebc CPU backward: F*B and len(indices) must be < 2^31");
  return L;
}

std::tuple<at::Tensor, at::Tensor> ebc_grad_rows_cpu(const at::Tensor& grad_out, const at::Tensor& table_offsets,
                                                     const c10::optional<at::Tensor>& feature_table,
                                                     const at::Tensor& indices, const at::Tensor& offsets,
                                                     const c10::optional<at::Tensor>& per_sample_weights,
                                                     int64_t pooling) {
  check_common(grad_out, indices, per_sample_weights);
  const auto G = grad_out.contiguous();
  const auto to = table_offsets.contiguous();
  Layout L = backward_layout(G, to, feature_table, indices, offsets, std::numeric_limits<int64_t>::max());
  const auto idx = indices.contiguous();
  c10::optional<at::Tensor> psw;
  if (per_sample_weights.has_value()) psw = per_sample_weights->contiguous();
  at::Tensor rows, grads;
  AT_DISPATCH_FLOATING_TYPES(G.scalar_type(), "ebc_grad_rows_cpu", [&] {
    const scalar_t* pw = psw.has_value() ? psw->data_ptr<scalar_t>() : nullptr;
    std::vector<TableRows<scalar_t>> tabs;
    AT_DISPATCH_INDEX_TYPES(idx.scalar_type(), "ebc_grad_rows_cpu_idx", [&] {
      tabs = build_all<scalar_t, index_t>(L, idx.data_ptr<index_t>(), pw, pooling == kMean);
    });
    int64_t U = 0;
    for (const auto& tr : tabs) U += static_cast<int64_t>(tr.urow.size());
    rows = at::empty({U}, idx.options().dtype(at::kLong));
    grads = at::empty({U, L.D}, G.options());
    apply_rows_dispatch<kOptNone, scalar_t>(L, tabs, to.data_ptr<int64_t>(), G.data_ptr<scalar_t>(), nullptr, nullptr, 0,
                                            0, rows.data_ptr<int64_t>(), grads.data_ptr<scalar_t>());
  });
  return {rows, grads};
}

void ebc_fused_update_cpu(at::Tensor& weights, at::Tensor& momentum, const at::Tensor& grad_out,
                          const at::Tensor& table_offsets, const c10::optional<at::Tensor>& feature_table,
                          const at::Tensor& indices, const at::Tensor& offsets,
                          const c10::optional<at::Tensor>& per_sample_weights, int64_t pooling, int64_t optimizer,
                          double lr, double eps) {
  check_common(weights, indices, per_sample_weights);
  TORCH_CHECK(weights.is_contiguous(), "fused update needs contiguous weights (updated in place)");
  TORCH_CHECK(grad_out.scalar_type() == weights.scalar_type(), "grad_out must have the weights' dtype");
  TORCH_CHECK(optimizer == kOptSgd || optimizer == kOptRowwiseAdagrad, "optimizer must be 1 (sgd) or 2 (rowwise adagrad)");
  if (optimizer == kOptRowwiseAdagrad) {
    TORCH_CHECK(momentum.is_contiguous() && momentum.scalar_type() == weights.scalar_type() && momentum.dim() == 1 &&
                    momentum.numel() == weights.size(0),
                "row-wise Adagrad needs a contiguous momentum [rows] with the weights' dtype");
  }
  const auto G = grad_out.contiguous();
  const auto to = table_offsets.contiguous();
  Layout L = backward_layout(G, to, feature_table, indices, offsets, weights.size(0));
  TORCH_CHECK(L.D == weights.size(1), "grad_out is [B, F*D] with D = ", L.D, " but weights have D = ", weights.size(1));
  const auto idx = indices.contiguous();
  c10::optional<at::Tensor> psw;
  if (per_sample_weights.has_value()) psw = per_sample_weights->contiguous();
  AT_DISPATCH_FLOATING_TYPES(weights.scalar_type(), "ebc_fused_update_cpu", [&] {
    const scalar_t* pw = psw.has_value() ? psw->data_ptr<scalar_t>() : nullptr;
    std::vector<TableRows<scalar_t>> tabs;
    AT_DISPATCH_INDEX_TYPES(idx.scalar_type(), "ebc_fused_update_cpu_idx", [&] {
      tabs = build_all<scalar_t, index_t>(L, idx.data_ptr<index_t>(), pw, pooling == kMean);
    });
    scalar_t* m = optimizer == kOptRowwiseAdagrad ? momentum.data_ptr<scalar_t>() : nullptr;
    if (optimizer == kOptSgd) {
      apply_rows_dispatch<kOptSgd, scalar_t>(L, tabs, to.data_ptr<int64_t>(), G.data_ptr<scalar_t>(),
                                             weights.data_ptr<scalar_t>(), m, lr, eps, nullptr, nullptr);
    } else {
      apply_rows_dispatch<kOptRowwiseAdagrad, scalar_t>(L, tabs, to.data_ptr<int64_t>(), G.data_ptr<scalar_t>(),
                                                        weights.data_ptr<scalar_t>(), m, lr, eps, nullptr, nullptr);
    }
  });
}

// d out / d per_sample_weights[j] = <grad_out[b, f*D:(f+1)*D], W[row_j]> (/ bag length for mean).
template <typename scalar_t, typename index_t>
void psw_grad_impl(const Layout& L, const scalar_t* g, const scalar_t* w, const index_t* ip, bool mean, scalar_t* o) {
  const int64_t D = L.D, B = L.B, FD = L.F * D;
  const int64_t avg_len = std::max<int64_t>(1, L.nnz / std::max<int64_t>(1, L.F * B));
  at::parallel_for(0, L.F * B, std::max<int64_t>(64, grain_for(avg_len * D * 2)), [&](int64_t q0, int64_t q1) {
    for (int64_t q = q0; q < q1; ++q) {
      const int64_t f = q / B, b = q - f * B;
      const int64_t s = L.offs[q], e = L.offs[q + 1], rows = L.feat_rows[f];
      const scalar_t sc = (mean && e > s) ? scalar_t(1) / static_cast<scalar_t>(e - s) : scalar_t(1);
      const scalar_t* gr = g + b * FD + f * D;
      for (int64_t j = s; j < e; ++j) {
        const int64_t id = static_cast<int64_t>(ip[j]);
        TORCH_CHECK_INDEX(static_cast<uint64_t>(id) < static_cast<uint64_t>(rows), "indices[", j, "] out of range");
        const scalar_t* wr = w + (L.feat_base[f] + id) * D;
        scalar_t dot = 0;
#pragma omp simd reduction(+ : dot)
        for (int64_t d = 0; d < D; ++d) dot += gr[d] * wr[d];
        o[j] = dot * sc;
      }
    }
  });
}

at::Tensor ebc_psw_grad_cpu(const at::Tensor& grad_out, const at::Tensor& weights, const at::Tensor& table_offsets,
                            const c10::optional<at::Tensor>& feature_table, const at::Tensor& indices,
                            const at::Tensor& offsets, int64_t pooling) {
  check_common(weights, indices, c10::nullopt);
  TORCH_CHECK(grad_out.scalar_type() == weights.scalar_type(), "grad_out must have the weights' dtype");
  const auto G = grad_out.contiguous();
  const auto W = weights.contiguous();
  Layout L = backward_layout(G, table_offsets, feature_table, indices, offsets, W.size(0));
  const auto idx = indices.contiguous();
  auto out = at::empty({L.nnz}, W.options());
  AT_DISPATCH_FLOATING_TYPES(W.scalar_type(), "ebc_psw_grad_cpu", [&] {
    AT_DISPATCH_INDEX_TYPES(idx.scalar_type(), "ebc_psw_grad_cpu_idx", [&] {
      psw_grad_impl<scalar_t, index_t>(L, G.data_ptr<scalar_t>(), W.data_ptr<scalar_t>(), idx.data_ptr<index_t>(),
                                       pooling == kMean, out.data_ptr<scalar_t>());
    });
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(ctrbench, m) {
  m.def(
      "ebc_forward_cpu(Tensor weights, Tensor table_offsets, Tensor? feature_table, Tensor indices, Tensor offsets, "
      "Tensor? per_sample_weights, int pooling) -> (Tensor, Tensor)");
  m.def(
      "ebc_grad_rows_cpu(Tensor grad_out, Tensor table_offsets, Tensor? feature_table, Tensor indices, Tensor offsets, "
      "Tensor? per_sample_weights, int pooling) -> (Tensor, Tensor)");
  m.def(
      "ebc_fused_update_cpu(Tensor(a!) weights, Tensor(b!) momentum, Tensor grad_out, Tensor table_offsets, "
      "Tensor? feature_table, Tensor indices, Tensor offsets, Tensor? per_sample_weights, int pooling, int optimizer, "
      "float lr, float eps) -> ()");
  m.def(
      "ebc_psw_grad_cpu(Tensor grad_out, Tensor weights, Tensor table_offsets, Tensor? feature_table, Tensor indices, "
      "Tensor offsets, int pooling) -> Tensor");
}

TORCH_LIBRARY_IMPL(ctrbench, CPU, m) {
  m.impl("ebc_forward_cpu", &ebc_forward_cpu);
  m.impl("ebc_grad_rows_cpu", &ebc_grad_rows_cpu);
  m.impl("ebc_fused_update_cpu", &ebc_fused_update_cpu);
  m.impl("ebc_psw_grad_cpu", &ebc_psw_grad_cpu);
}
