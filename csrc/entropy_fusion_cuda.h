// Raw-pointer launchers of the entropy-weighted fusion CUDA kernels (entropy_fusion_cuda.cu); no torch
// types, so the .cu compiles with plain `nvcc -c`. The binding (entropy_fusion_cuda_binding.cpp) checks
// the tensors and calls these on the current stream.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace ctrbench {
namespace entropy_fusion {

// Element type of logits / weights / gradients. Math runs in float (double for kF64); tau and the tau
// gradient partials use that math type.
enum class DType : int { kF32 = 0, kF16 = 1, kBF16 = 2, kF64 = 3 };

// Rows per thread block of the backward kernel: one tau-gradient partial is written per block.
int64_t backward_num_blocks(int64_t rows);

// fused[B], weights[B, K] from logits[B, K] (row-major, contiguous); tau points at one math-type value.
// bound = log((1 - eps) / eps). A tau that is not finite and > 0 yields NaN outputs (no host sync).
cudaError_t launch_forward(DType dtype, const void* logits, const void* tau, void* fused, void* weights,
                           int64_t B, int64_t K, double bound, bool logit_space, cudaStream_t stream);

// grad_logits[B, K] and, when tau_partials is not null, backward_num_blocks(B) math-type partials whose
// sum is d loss / d tau. grad_weights may be null (treated as zeros).
cudaError_t launch_backward(DType dtype, const void* logits, const void* tau, const void* weights,
                            const void* grad_fused, const void* grad_weights, void* grad_logits,
                            void* tau_partials, int64_t B, int64_t K, double bound, bool logit_space,
                            bool detach_weights, cudaStream_t stream);

}  // namespace entropy_fusion
}  // namespace ctrbench
