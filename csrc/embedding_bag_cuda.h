// Raw-pointer launchers of the embedding_bag_collection CUDA kernels (csrc/embedding_bag_cuda.cu).
// No torch types: the .cu compiles with plain nvcc; csrc/embedding_bag_cuda_binding.cpp wraps them.
// All pointers are device pointers. Layout as in csrc/embedding_bag_cpu.cpp: weights [R, D] packed,
// table_offsets int64 [T+1], feature_table int64 [F] or null (identity), offsets int64 [F*B+1]
// (feature-major bags), indices int32 or int64 table-local ids, out [B, F*D].
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace ctrbench_ebc {

enum WeightType : int { kFloat32 = 0, kFloat16 = 1, kBFloat16 = 2 };
enum Mode : int { kModeGrads = 0, kModeSgd = 1, kModeRowwiseAdagrad = 2 };

// Largest D the backward / psw-grad kernels hold in registers: 32 lanes x 8 chunks x vec.
constexpr int64_t kMaxDimVec4 = 1024;
constexpr int64_t kMaxDimScalar = 256;

// Checks table_offsets, feature_table, offsets and every id; `first` (3 x int64, preset to INT64_MAX)
// receives the first bad table entry / offsets position / index position; `status` (2 x int64) gets
// [code, position] with code 0 ok, 1 bad id, 2 bad offsets, 3 bad tables.
cudaError_t validate(const int64_t* table_offsets, int64_t T, int64_t R, const int64_t* feature_table, int64_t F,
                     int64_t B, const void* indices, bool indices_int64, const int64_t* offsets, int64_t nnz,
                     int64_t* first, int64_t* status, cudaStream_t stream);

// Pooled forward; psw (float32, nullable) are per-sample weights; vec4 requires D % 4 == 0 and 16-byte
// aligned weights/out. Ids out of range are skipped (validate reports them), never read.
cudaError_t forward(const void* weights, int weight_type, int64_t D, const int64_t* table_offsets,
                    const int64_t* feature_table, int64_t F, int64_t B, const void* indices, bool indices_int64,
                    const int64_t* offsets, int64_t nnz, const float* psw, bool mean, void* out, bool vec4,
                    cudaStream_t stream);

// Backward over positions sorted by global row (sorted_rows [nnz]); grad_row [nnz] is each position's
// row of grad_out viewed as [B*F, D]; scale [nnz] (nullable) its per-sample weight / bag length.
// One thread group per segment head sums the segment in order, then:
//   kModeGrads: out_rows[slot[head]] = row, out_grads[slot[head]] = sum (float32)
//   kModeSgd: weights[row] -= lr * sum
//   kModeRowwiseAdagrad: momentum[row] += mean(sum^2); weights[row] -= lr * sum / (sqrt(momentum[row]) + eps)
cudaError_t segment_update(int mode, const int64_t* sorted_rows, const int64_t* grad_row, const float* scale,
                           int64_t nnz, const int64_t* slot, const void* grad, void* weights, int weight_type,
                           int64_t D, float* momentum, float lr, float eps, int64_t* out_rows, float* out_grads,
                           bool vec4, cudaStream_t stream);

// d out / d psw[j] = <grad_out row grad_row[j], weights row w_row[j]> * inv_len[j] (inv_len nullable).
cudaError_t psw_grad(const int64_t* grad_row, const int64_t* w_row, const float* inv_len, int64_t nnz,
                     const void* grad, const void* weights, int weight_type, int64_t D, float* out, bool vec4,
                     cudaStream_t stream);

}  // namespace ctrbench_ebc
