// Launchers of the interleaved-attention CUDA kernels (interleaved_attention_cuda.cu): raw pointers and a
// stream, no torch types, so the .cu compiles with nvcc alone. Tensors are contiguous [B, H, N, Dh].
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace ctrbench {
namespace interleaved_attention_cuda {

constexpr int64_t kMaxHeadDim = 128;

enum class DType { kFloat32, kFloat16, kBFloat16 };

struct Shape {
  int64_t B, H, Nq, Nk, Dh, P, T;  // T = Nk - P sequence slots
  bool rope, sepq;                 // fused RoPE; separate (un-rotated, all valid) queries
  float log2_base, scale;          // log2(rope_base); multiplier of q.k
};

// out [B, H, Nq, Dh]; lengths int64 [B] on the device, already checked to lie in [0, T].
cudaError_t forward(DType dtype, const void* q, const void* k, const void* v, void* out, const int64_t* lengths,
                    const Shape& s, cudaStream_t stream);

// dq, dk, dv like q, k, v; lse_ws and delta_ws are float workspaces of B*H*Nq elements.
cudaError_t backward(DType dtype, const void* grad_out, const void* q, const void* k, const void* v, void* dq,
                     void* dk, void* dv, float* lse_ws, float* delta_ws, const int64_t* lengths, const Shape& s,
                     cudaStream_t stream);

}  // namespace interleaved_attention_cuda
}  // namespace ctrbench
