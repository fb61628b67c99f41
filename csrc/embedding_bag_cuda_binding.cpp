// Torch binding of the embedding_bag_collection CUDA kernels (compiled only with a CUDA torch; see setup.py).
// Tensors -> raw pointers for csrc/embedding_bag_cuda.cu; registers ctrbench::ebc_*_cuda for the CUDA key.
// It needs no CUDA-torch headers: the current stream comes from c10's device-generic guard interface,
// so it also syntax-checks against a CPU torch (tests/kernels/test_embedding_bag_cuda_build.py).
// Index preparation (linearised rows, stable sort, segment slots) uses ATen ops on the device.
#include <ATen/ATen.h>
#include <c10/core/DeviceGuard.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>
#include <torch/library.h>

#include <cstdint>
#include <limits>
#include <tuple>

#include "embedding_bag_cuda.h"

namespace {

using namespace ctrbench_ebc;

cudaStream_t current_stream(const at::Tensor& t) {
  const c10::Stream s = c10::impl::getDeviceGuardImpl(c10::DeviceType::CUDA)->getStream(t.device());
  return static_cast<cudaStream_t>(s.native_handle());
}

void check_cuda(cudaError_t err, const char* what) {
  TORCH_CHECK(err == cudaSuccess, "ctrbench ", what, " failed: ", cudaGetErrorString(err));
}

int weight_type(at::ScalarType s) {
  switch (s) {
    case at::kFloat: return kFloat32;
    case at::kHalf: return kFloat16;
    case at::kBFloat16: return kBFloat16;
    default: TORCH_CHECK(false, "ebc CUDA kernels support float32, float16 and bfloat16 weights, got ", s);
  }
  return -1;
}

bool aligned16(const at::Tensor& t) { return reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 == 0; }

struct Inputs {
  at::Tensor table_offsets, feature_table, indices, offsets;  // contiguous; offsets int64
  int64_t T = 0, F = 0, B = 0, nnz = 0;
  const int64_t* ft_ptr = nullptr;
};

Inputs prepare(const at::Tensor& device_like, const at::Tensor& table_offsets,
               const c10::optional<at::Tensor>& feature_table, const at::Tensor& indices, const at::Tensor& offsets) {
  Inputs in;
  for (const at::Tensor* t : {&table_offsets, &indices, &offsets}) {
    TORCH_CHECK(t->device() == device_like.device(), "ebc CUDA: all inputs must be on ", device_like.device());
    TORCH_CHECK(t->dim() == 1, "ebc CUDA: table_offsets, indices and offsets must be 1-D");
  }
  TORCH_CHECK(table_offsets.scalar_type() == at::kLong && table_offsets.numel() >= 2, "table_offsets must be int64 [T+1]");
  TORCH_CHECK(indices.scalar_type() == at::kInt || indices.scalar_type() == at::kLong, "indices must be int32 or int64");
  in.table_offsets = table_offsets.contiguous();
  in.T = table_offsets.numel() - 1;
  if (feature_table.has_value()) {
    TORCH_CHECK(feature_table->device() == device_like.device() && feature_table->scalar_type() == at::kLong,
                "feature_table must be int64 on ", device_like.device());
    in.feature_table = feature_table->contiguous();
    in.F = in.feature_table.numel();
    in.ft_ptr = in.feature_table.data_ptr<int64_t>();
  } else {
    in.F = in.T;
  }
  TORCH_CHECK(in.F >= 1 && (offsets.numel() - 1) % in.F == 0, "len(offsets) must be F*B+1");
  in.B = (offsets.numel() - 1) / in.F;
  in.indices = indices.contiguous();
  in.offsets = offsets.to(at::kLong).contiguous();
  in.nnz = indices.numel();
  return in;
}

const float* opt_float_ptr(const c10::optional<at::Tensor>& t, at::Tensor& keep, int64_t n, const at::Device& dev) {
  if (!t.has_value()) return nullptr;
  TORCH_CHECK(t->device() == dev && t->numel() == n, "per_sample_weights must be [len(indices)] on ", dev);
  keep = t->to(at::kFloat).contiguous();
  return keep.data_ptr<float>();
}

std::tuple<at::Tensor, at::Tensor> ebc_forward_cuda(const at::Tensor& weights, const at::Tensor& table_offsets,
                                                    const c10::optional<at::Tensor>& feature_table,
                                                    const at::Tensor& indices, const at::Tensor& offsets,
                                                    const c10::optional<at::Tensor>& per_sample_weights,
                                                    int64_t pooling) {
  TORCH_CHECK(weights.is_cuda() && weights.dim() == 2, "ebc_forward_cuda: weights must be a CUDA [R, D] tensor");
  c10::DeviceGuard guard(weights.device());
  const int wt = weight_type(weights.scalar_type());
  const at::Tensor W = weights.contiguous();
  Inputs in = prepare(W, table_offsets, feature_table, indices, offsets);
  const int64_t D = W.size(1);
  cudaStream_t stream = current_stream(W);
  auto long_opts = in.offsets.options();
  at::Tensor first = at::full({3}, std::numeric_limits<int64_t>::max(), long_opts);
  at::Tensor status = at::empty({2}, long_opts);
  check_cuda(validate(in.table_offsets.data_ptr<int64_t>(), in.T, W.size(0), in.ft_ptr, in.F, in.B,
                      in.indices.data_ptr(), in.indices.scalar_type() == at::kLong, in.offsets.data_ptr<int64_t>(),
                      in.nnz, first.data_ptr<int64_t>(), status.data_ptr<int64_t>(), stream),
             "ebc validate");
  at::Tensor psw_keep;
  const float* psw = opt_float_ptr(per_sample_weights, psw_keep, in.nnz, W.device());
  at::Tensor out = at::empty({in.B, in.F * D}, W.options());
  const bool vec4 = D % 4 == 0 && aligned16(W) && aligned16(out);
  check_cuda(forward(W.data_ptr(), wt, D, in.table_offsets.data_ptr<int64_t>(), in.ft_ptr, in.F, in.B,
                     in.indices.data_ptr(), in.indices.scalar_type() == at::kLong, in.offsets.data_ptr<int64_t>(),
                     in.nnz, psw, pooling == 1, out.data_ptr(), vec4, stream),
             "ebc forward");
  return {out, status};
}

// Positions sorted by global row, with each position's grad_out row and scale, ready for segment_update.
struct Sorted {
  at::Tensor rows, grad_row, scale;  // scale undefined when every scale is 1
};

Sorted sort_positions(const Inputs& in, const c10::optional<at::Tensor>& per_sample_weights, int64_t pooling,
                      bool deterministic) {
  const auto long_opts = in.offsets.options();
  const at::Tensor lengths = in.offsets.slice(0, 1) - in.offsets.slice(0, 0, in.F * in.B);
  const at::Tensor bag = at::repeat_interleave(at::arange(in.F * in.B, long_opts), lengths, 0, in.nnz);
  const at::Tensor feat = at::floor_divide(bag, in.B);
  const at::Tensor table = in.ft_ptr != nullptr ? in.feature_table.index_select(0, feat) : feat;
  const at::Tensor grow = in.table_offsets.index_select(0, table) + in.indices.to(at::kLong);
  const at::Tensor grad_row = (bag - feat * in.B) * in.F + feat;
  at::Tensor scale;
  if (per_sample_weights.has_value()) scale = per_sample_weights->to(at::kFloat);
  if (pooling == 1) {
    const at::Tensor inv = at::reciprocal(lengths.clamp_min(1).to(at::kFloat)).index_select(0, bag);
    scale = scale.defined() ? scale * inv : inv;
  }
  auto sorted = at::sort(grow, deterministic, 0, false);
  Sorted s;
  s.rows = std::get<0>(sorted).contiguous();
  const at::Tensor perm = std::get<1>(sorted);
  s.grad_row = grad_row.index_select(0, perm).contiguous();
  if (scale.defined()) s.scale = scale.index_select(0, perm).contiguous();
  return s;
}

std::tuple<at::Tensor, at::Tensor> ebc_grad_rows_cuda(const at::Tensor& grad_out, const at::Tensor& table_offsets,
                                                      const c10::optional<at::Tensor>& feature_table,
                                                      const at::Tensor& indices, const at::Tensor& offsets,
                                                      const c10::optional<at::Tensor>& per_sample_weights,
                                                      int64_t pooling, bool deterministic) {
  TORCH_CHECK(grad_out.is_cuda() && grad_out.dim() == 2, "ebc_grad_rows_cuda: grad_out must be a CUDA [B, F*D] tensor");
  c10::DeviceGuard guard(grad_out.device());
  const int wt = weight_type(grad_out.scalar_type());
  const at::Tensor G = grad_out.contiguous();
  Inputs in = prepare(G, table_offsets, feature_table, indices, offsets);
  TORCH_CHECK(G.size(0) == in.B && G.size(1) % in.F == 0, "grad_out must be [B, F*D]");
  const int64_t D = G.size(1) / in.F;
  const auto long_opts = in.offsets.options();
  if (in.nnz == 0) return {at::empty({0}, long_opts), at::empty({0, D}, G.options())};
  Sorted s = sort_positions(in, per_sample_weights, pooling, deterministic);
  at::Tensor head = at::ones({in.nnz}, long_opts);
  if (in.nnz > 1) head.slice(0, 1).copy_(s.rows.slice(0, 1).ne(s.rows.slice(0, 0, in.nnz - 1)));
  const at::Tensor slot = (at::cumsum(head, 0) - 1).contiguous();
  const int64_t U = slot[in.nnz - 1].item<int64_t>() + 1;  // host sync: the output size depends on the data
  at::Tensor rows = at::empty({U}, long_opts);
  at::Tensor grads = at::empty({U, D}, G.options().dtype(at::kFloat));
  const bool vec4 = D % 4 == 0 && aligned16(G) && aligned16(grads);
  TORCH_CHECK(D <= (vec4 ? kMaxDimVec4 : kMaxDimScalar), "ebc CUDA backward supports D <= ", kMaxDimVec4,
              " (D % 4 == 0) or <= ", kMaxDimScalar, ", got ", D);
  check_cuda(segment_update(kModeGrads, s.rows.data_ptr<int64_t>(), s.grad_row.data_ptr<int64_t>(),
                            s.scale.defined() ? s.scale.data_ptr<float>() : nullptr, in.nnz, slot.data_ptr<int64_t>(),
                            G.data_ptr(), nullptr, wt, D, nullptr, 0.f, 0.f, rows.data_ptr<int64_t>(),
                            grads.data_ptr<float>(), vec4, current_stream(G)),
             "ebc grad rows");
  return {rows, grads.to(G.scalar_type())};
}

void ebc_fused_update_cuda(at::Tensor& weights, at::Tensor& momentum, const at::Tensor& grad_out,
                           const at::Tensor& table_offsets, const c10::optional<at::Tensor>& feature_table,
                           const at::Tensor& indices, const at::Tensor& offsets,
                           const c10::optional<at::Tensor>& per_sample_weights, int64_t pooling, int64_t optimizer,
                           double lr, double eps, bool deterministic) {
  TORCH_CHECK(weights.is_cuda() && weights.dim() == 2 && weights.is_contiguous(),
              "ebc_fused_update_cuda: weights must be a contiguous CUDA [R, D] tensor (updated in place)");
  TORCH_CHECK(optimizer == kModeSgd || optimizer == kModeRowwiseAdagrad, "optimizer must be 1 (sgd) or 2 (rowwise adagrad)");
  c10::DeviceGuard guard(weights.device());
  const int wt = weight_type(weights.scalar_type());
  TORCH_CHECK(grad_out.scalar_type() == weights.scalar_type() && grad_out.device() == weights.device(),
              "grad_out must have the weights' dtype and device");
  if (optimizer == kModeRowwiseAdagrad) {
    TORCH_CHECK(momentum.device() == weights.device() && momentum.scalar_type() == at::kFloat &&
                    momentum.is_contiguous() && momentum.numel() == weights.size(0),
                "row-wise Adagrad needs a contiguous float32 momentum [rows] on ", weights.device());
  }
  const at::Tensor G = grad_out.contiguous();
  Inputs in = prepare(weights, table_offsets, feature_table, indices, offsets);
  const int64_t D = weights.size(1);
  TORCH_CHECK(G.size(0) == in.B && G.size(1) == in.F * D, "grad_out must be [B, F*D]");
  if (in.nnz == 0) return;
  Sorted s = sort_positions(in, per_sample_weights, pooling, deterministic);
  const bool vec4 = D % 4 == 0 && aligned16(G) && aligned16(weights);
  TORCH_CHECK(D <= (vec4 ? kMaxDimVec4 : kMaxDimScalar), "ebc CUDA backward supports D <= ", kMaxDimVec4,
              " (D % 4 == 0) or <= ", kMaxDimScalar, ", got ", D);
  check_cuda(segment_update(static_cast<int>(optimizer), s.rows.data_ptr<int64_t>(), s.grad_row.data_ptr<int64_t>(),
                            s.scale.defined() ? s.scale.data_ptr<float>() : nullptr, in.nnz, nullptr, G.data_ptr(),
                            weights.data_ptr(), wt, D,
                            optimizer == kModeRowwiseAdagrad ? momentum.data_ptr<float>() : nullptr,
                            static_cast<float>(lr), static_cast<float>(eps), nullptr, nullptr, vec4,
                            current_stream(weights)),
             "ebc fused update");
}

at::Tensor ebc_psw_grad_cuda(const at::Tensor& grad_out, const at::Tensor& weights, const at::Tensor& table_offsets,
                             const c10::optional<at::Tensor>& feature_table, const at::Tensor& indices,
                             const at::Tensor& offsets, int64_t pooling) {
  TORCH_CHECK(weights.is_cuda() && weights.dim() == 2, "ebc_psw_grad_cuda: weights must be a CUDA [R, D] tensor");
  c10::DeviceGuard guard(weights.device());
  const int wt = weight_type(weights.scalar_type());
  TORCH_CHECK(grad_out.scalar_type() == weights.scalar_type(), "grad_out must have the weights' dtype");
  const at::Tensor G = grad_out.contiguous();
  const at::Tensor W = weights.contiguous();
  Inputs in = prepare(W, table_offsets, feature_table, indices, offsets);
  const int64_t D = W.size(1);
  TORCH_CHECK(G.size(0) == in.B && G.size(1) == in.F * D, "grad_out must be [B, F*D]");
  at::Tensor out = at::empty({in.nnz}, W.options().dtype(at::kFloat));
  if (in.nnz == 0) return out.to(W.scalar_type());
  const auto long_opts = in.offsets.options();
  const at::Tensor lengths = in.offsets.slice(0, 1) - in.offsets.slice(0, 0, in.F * in.B);
  const at::Tensor bag = at::repeat_interleave(at::arange(in.F * in.B, long_opts), lengths, 0, in.nnz);
  const at::Tensor feat = at::floor_divide(bag, in.B);
  const at::Tensor table = in.ft_ptr != nullptr ? in.feature_table.index_select(0, feat) : feat;
  const at::Tensor w_row = (in.table_offsets.index_select(0, table) + in.indices.to(at::kLong)).contiguous();
  const at::Tensor grad_row = ((bag - feat * in.B) * in.F + feat).contiguous();
  at::Tensor inv;
  if (pooling == 1) inv = at::reciprocal(lengths.clamp_min(1).to(at::kFloat)).index_select(0, bag).contiguous();
  const bool vec4 = D % 4 == 0 && aligned16(G) && aligned16(W);
  check_cuda(psw_grad(grad_row.data_ptr<int64_t>(), w_row.data_ptr<int64_t>(),
                      inv.defined() ? inv.data_ptr<float>() : nullptr, in.nnz, G.data_ptr(), W.data_ptr(), wt, D,
                      out.data_ptr<float>(), vec4, current_stream(W)),
             "ebc psw grad");
  return out.to(W.scalar_type());
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(ctrbench, m) {
  m.def(
      "ebc_forward_cuda(Tensor weights, Tensor table_offsets, Tensor? feature_table, Tensor indices, Tensor offsets, "
      "Tensor? per_sample_weights, int pooling) -> (Tensor, Tensor)");
  m.def(
      "ebc_grad_rows_cuda(Tensor grad_out, Tensor table_offsets, Tensor? feature_table, Tensor indices, "
      "Tensor offsets, Tensor? per_sample_weights, int pooling, bool deterministic) -> (Tensor, Tensor)");
  m.def(
      "ebc_fused_update_cuda(Tensor(a!) weights, Tensor(b!) momentum, Tensor grad_out, Tensor table_offsets, "
      "Tensor? feature_table, Tensor indices, Tensor offsets, Tensor? per_sample_weights, int pooling, int optimizer, "
      "float lr, float eps, bool deterministic) -> ()");
  m.def(
      "ebc_psw_grad_cuda(Tensor grad_out, Tensor weights, Tensor table_offsets, Tensor? feature_table, Tensor indices, "
      "Tensor offsets, int pooling) -> Tensor");
}

TORCH_LIBRARY_IMPL(ctrbench, CUDA, m) {
  m.impl("ebc_forward_cuda", &ebc_forward_cuda);
  m.impl("ebc_grad_rows_cuda", &ebc_grad_rows_cuda);
  m.impl("ebc_fused_update_cuda", &ebc_fused_update_cuda);
  m.impl("ebc_psw_grad_cuda", &ebc_psw_grad_cuda);
}
