// CUDA implementations of ctrbench::_entropy_fusion_fwd / _bwd (schemas in entropy_fusion_cpu.cpp):
// check the tensors, then call the raw-pointer launchers of entropy_fusion_cuda.cu on the current stream.
// Built only when torch is a CUDA build (setup.py); tau is read on the device, never synced to the host.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <cmath>
#include <optional>
#include <tuple>

#include "entropy_fusion_cuda.h"

namespace ctrbench {
namespace entropy_fusion {
namespace {

DType dtype_code(at::ScalarType t, const char* op) {
  switch (t) {
    case at::kFloat: return DType::kF32;
    case at::kHalf: return DType::kF16;
    case at::kBFloat16: return DType::kBF16;
    case at::kDouble: return DType::kF64;
    default: TORCH_CHECK(false, op, ": logits must be float32, float16, bfloat16 or float64, got ", t);
  }
  return DType::kF32;
}

at::ScalarType math_type(at::ScalarType t) { return t == at::kDouble ? at::kDouble : at::kFloat; }

void check_common(const at::Tensor& logits, const at::Tensor& tau, int64_t space, double eps, const char* op) {
  TORCH_CHECK(logits.dim() == 2, op, ": logits must be 2-D [B, K], got ", logits.dim(), "-D");
  TORCH_CHECK(logits.size(1) > 0, op, ": logits must have K >= 1 members");
  TORCH_CHECK(logits.is_cuda(), op, ": logits must be a CUDA tensor");
  TORCH_CHECK(tau.numel() == 1, op, ": tau must hold one value, got ", tau.numel());
  TORCH_CHECK(tau.device() == logits.device(), op, ": tau must be on logits' device ", logits.device(), ", got ",
              tau.device());
  TORCH_CHECK(space == 0 || space == 1, op, ": space must be 0 (prob) or 1 (logit), got ", space);
  TORCH_CHECK(eps > 0.0 && eps < 0.5, op, ": eps must lie in (0, 0.5), got ", eps);
}

double clamp_bound(double eps) { return std::log1p(-eps) - std::log(eps); }

void check_launch(cudaError_t err, const char* op) {
  TORCH_CHECK(err == cudaSuccess, op, ": kernel launch failed: ", cudaGetErrorString(err));
}

std::tuple<at::Tensor, at::Tensor> forward_cuda(const at::Tensor& logits, const at::Tensor& tau, int64_t space,
                                                double eps) {
  const char* op = "ctrbench::_entropy_fusion_fwd (cuda)";
  check_common(logits, tau, space, eps, op);
  const DType code = dtype_code(logits.scalar_type(), op);
  const c10::cuda::CUDAGuard guard(logits.device());
  const at::Tensor x = logits.contiguous();
  const at::Tensor tau_m = tau.reshape({}).to(math_type(x.scalar_type())).contiguous();
  const int64_t B = x.size(0), K = x.size(1);
  at::Tensor fused = at::empty({B}, x.options());
  at::Tensor w = at::empty({B, K}, x.options());
  check_launch(launch_forward(code, x.data_ptr(), tau_m.data_ptr(), fused.data_ptr(), w.data_ptr(), B, K,
                              clamp_bound(eps), space == 1, c10::cuda::getCurrentCUDAStream().stream()),
               op);
  return {fused, w};
}

std::tuple<at::Tensor, at::Tensor> backward_cuda(const at::Tensor& logits, const at::Tensor& tau,
                                                 const at::Tensor& weights, const at::Tensor& grad_fused,
                                                 const std::optional<at::Tensor>& grad_weights, int64_t space,
                                                 bool detach_weights, bool need_tau_grad, double eps) {
  const char* op = "ctrbench::_entropy_fusion_bwd (cuda)";
  check_common(logits, tau, space, eps, op);
  const DType code = dtype_code(logits.scalar_type(), op);
  const int64_t B = logits.size(0), K = logits.size(1);
  TORCH_CHECK(weights.sizes() == logits.sizes(), op, ": weights must have logits' shape");
  TORCH_CHECK(grad_fused.dim() == 1 && grad_fused.size(0) == B, op, ": grad_fused must have shape [B]");
  const bool has_gw = grad_weights.has_value() && grad_weights->defined() && !detach_weights;
  if (has_gw) TORCH_CHECK(grad_weights->sizes() == logits.sizes(), op, ": grad_weights must have logits' shape");
  const c10::cuda::CUDAGuard guard(logits.device());
  const at::ScalarType dt = logits.scalar_type();
  const at::Tensor x = logits.contiguous();
  const at::Tensor w = weights.to(dt).contiguous();
  const at::Tensor gf = grad_fused.to(dt).contiguous();
  const at::Tensor gw = has_gw ? grad_weights->to(dt).contiguous() : at::Tensor();
  const at::Tensor tau_m = tau.reshape({}).to(math_type(dt)).contiguous();
  at::Tensor gx = at::empty({B, K}, x.options());
  const bool want_tau = need_tau_grad && !detach_weights && B > 0;
  at::Tensor partials;
  if (want_tau) partials = at::empty({backward_num_blocks(B)}, x.options().dtype(math_type(dt)));
  check_launch(launch_backward(code, x.data_ptr(), tau_m.data_ptr(), w.data_ptr(), gf.data_ptr(),
                               has_gw ? gw.data_ptr() : nullptr, gx.data_ptr(),
                               want_tau ? partials.data_ptr() : nullptr, B, K, clamp_bound(eps), space == 1,
                               detach_weights, c10::cuda::getCurrentCUDAStream().stream()),
               op);
  at::Tensor grad_tau = want_tau ? partials.sum().to(tau.scalar_type()) : at::zeros({}, tau.options());
  return {gx, grad_tau};
}

}  // namespace
}  // namespace entropy_fusion
}  // namespace ctrbench

TORCH_LIBRARY_IMPL(ctrbench, CUDA, m) {
  m.impl("_entropy_fusion_fwd", &ctrbench::entropy_fusion::forward_cuda);
  m.impl("_entropy_fusion_bwd", &ctrbench::entropy_fusion::backward_cuda);
}
