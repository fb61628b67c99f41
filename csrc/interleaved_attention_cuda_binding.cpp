// CUDA implementations of ctrbench::_interleaved_attention_fwd / _bwd (the schemas are defined in
// interleaved_attention_cpu.cpp): tensor checks, dtype mapping and the launches in
// interleaved_attention_cuda.cu. Built only on a CUDA torch (setup.py). float64 inputs compute in float32.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <tuple>

#include "interleaved_attention_cuda.h"

namespace {

namespace iac = ctrbench::interleaved_attention_cuda;

iac::DType dtype_of(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return iac::DType::kFloat32;
    case at::kHalf: return iac::DType::kFloat16;
    case at::kBFloat16: return iac::DType::kBFloat16;
    default: TORCH_CHECK(false, "interleaved_attention (cuda): unsupported dtype ", t);
  }
  return iac::DType::kFloat32;
}

void check_args(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& lengths,
                int64_t num_prefix, bool rope, bool sepq, const char* where) {
  TORCH_CHECK(q.is_cuda() && k.is_cuda() && v.is_cuda() && lengths.is_cuda(), where, ": all inputs must be CUDA tensors");
  TORCH_CHECK(k.device() == q.device() && v.device() == q.device() && lengths.device() == q.device(), where,
              ": q, k, v, lengths must be on one device");
  TORCH_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4, where, ": q, k, v must be 4-D [B, H, N, Dh]");
  TORCH_CHECK(k.sizes() == v.sizes(), where, ": k and v must have the same shape");
  TORCH_CHECK(k.size(0) == q.size(0) && k.size(1) == q.size(1) && k.size(3) == q.size(3), where,
              ": k must be [B, H, Nk, Dh] matching q");
  TORCH_CHECK(sepq || q.size(2) == k.size(2), where, ": self-attention needs Nq == Nk");
  TORCH_CHECK(lengths.dim() == 1 && lengths.size(0) == q.size(0), where, ": lengths must be [B]");
  TORCH_CHECK(num_prefix >= 0 && num_prefix <= k.size(2), where, ": num_prefix must lie in [0, Nk]");
  TORCH_CHECK(q.size(3) >= 1 && q.size(3) <= iac::kMaxHeadDim, where, ": head dim must lie in [1, ",
              iac::kMaxHeadDim, "], got ", q.size(3));
  TORCH_CHECK(!rope || q.size(3) % 2 == 0, where, ": rope needs an even head dim");
  TORCH_CHECK(q.scalar_type() == k.scalar_type() && q.scalar_type() == v.scalar_type(), where,
              ": q, k, v must share a dtype");
  TORCH_CHECK(!at::isFloatingType(lengths.scalar_type()), where, ": lengths must be integer");
}

iac::Shape make_shape(const at::Tensor& q, const at::Tensor& k, int64_t num_prefix, bool rope, double rope_base,
                      double scale, bool sepq) {
  iac::Shape s;
  s.B = q.size(0);
  s.H = q.size(1);
  s.Nq = q.size(2);
  s.Dh = q.size(3);
  s.Nk = k.size(2);
  s.P = num_prefix;
  s.T = s.Nk - num_prefix;
  s.rope = rope;
  s.sepq = sepq;
  s.log2_base = static_cast<float>(std::log2(rope_base));
  s.scale = static_cast<float>(scale);
  return s;
}

at::ScalarType storage_type(at::ScalarType t) { return t == at::kDouble ? at::kFloat : t; }

at::Tensor forward_cuda(const at::Tensor& q_in, const at::Tensor& k_in, const at::Tensor& v_in,
                        const at::Tensor& lengths_in, int64_t num_prefix, bool rope, double rope_base, double scale,
                        bool separate_queries) {
  const char* where = "ctrbench::_interleaved_attention_fwd (cuda)";
  check_args(q_in, k_in, v_in, lengths_in, num_prefix, rope, separate_queries, where);
  const c10::cuda::CUDAGuard guard(q_in.device());
  const auto st = storage_type(q_in.scalar_type());
  const at::Tensor q = q_in.to(st).contiguous(), k = k_in.to(st).contiguous(), v = v_in.to(st).contiguous();
  const at::Tensor lengths = lengths_in.to(at::kLong).contiguous();
  at::Tensor out = at::empty(q.sizes(), q.options());
  const iac::Shape s = make_shape(q, k, num_prefix, rope, rope_base, scale, separate_queries);
  const cudaError_t e = iac::forward(dtype_of(st), q.data_ptr(), k.data_ptr(), v.data_ptr(), out.data_ptr(),
                                     lengths.data_ptr<int64_t>(), s, c10::cuda::getCurrentCUDAStream().stream());
  TORCH_CHECK(e == cudaSuccess, where, ": launch failed: ", cudaGetErrorString(e));
  return out.to(q_in.scalar_type());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> backward_cuda(const at::Tensor& grad_out, const at::Tensor& q_in,
                                                             const at::Tensor& k_in, const at::Tensor& v_in,
                                                             const at::Tensor& lengths_in, int64_t num_prefix,
                                                             bool rope, double rope_base, double scale,
                                                             bool separate_queries) {
  const char* where = "ctrbench::_interleaved_attention_bwd (cuda)";
  check_args(q_in, k_in, v_in, lengths_in, num_prefix, rope, separate_queries, where);
  TORCH_CHECK(grad_out.sizes() == q_in.sizes() && grad_out.device() == q_in.device(), where,
              ": grad_out must have q's shape and device");
  const c10::cuda::CUDAGuard guard(q_in.device());
  const auto st = storage_type(q_in.scalar_type());
  const at::Tensor q = q_in.to(st).contiguous(), k = k_in.to(st).contiguous(), v = v_in.to(st).contiguous();
  const at::Tensor go = grad_out.to(st).contiguous();
  const at::Tensor lengths = lengths_in.to(at::kLong).contiguous();
  at::Tensor dq = at::empty(q.sizes(), q.options());
  at::Tensor dk = at::empty(k.sizes(), k.options());
  at::Tensor dv = at::empty(v.sizes(), v.options());
  const iac::Shape s = make_shape(q, k, num_prefix, rope, rope_base, scale, separate_queries);
  const auto ws_opts = q.options().dtype(at::kFloat);
  at::Tensor lse = at::empty({std::max<int64_t>(s.B * s.H * s.Nq, 1)}, ws_opts);
  at::Tensor delta = at::empty({std::max<int64_t>(s.B * s.H * s.Nq, 1)}, ws_opts);
  const cudaError_t e = iac::backward(dtype_of(st), go.data_ptr(), q.data_ptr(), k.data_ptr(), v.data_ptr(),
                                      dq.data_ptr(), dk.data_ptr(), dv.data_ptr(), lse.data_ptr<float>(),
                                      delta.data_ptr<float>(), lengths.data_ptr<int64_t>(), s,
                                      c10::cuda::getCurrentCUDAStream().stream());
  TORCH_CHECK(e == cudaSuccess, where, ": launch failed: ", cudaGetErrorString(e));
  const auto dt = q_in.scalar_type();
  return {dq.to(dt), dk.to(dt), dv.to(dt)};
}

}  // namespace

TORCH_LIBRARY_IMPL(ctrbench, CUDA, m) {
  m.impl("_interleaved_attention_fwd", &forward_cuda);
  m.impl("_interleaved_attention_bwd", &backward_cuda);
}
