// TORCH_CHECK helpers shared by the host code of the decoder's kernels (decoder_attention.cu,
// mask_postprocess.cu). This header holds no device code, so the C++ compiler can include it as
// well as nvcc.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <c10/util/Exception.h>

#include <cstdint>

namespace promptseg {
namespace detail {

// TORCH_CHECKs that `tensor` lives on the CUDA device `device`.
inline void check_on_device(const at::Tensor& tensor, const char* op, const char* name, const c10::Device& device) {
  TORCH_CHECK(
      tensor.is_cuda() && tensor.device() == device,
      op, ": expected ", name, " on ", device, ", got a tensor on ", tensor.device());
}

// TORCH_CHECKs that an optional index tensor is a (batch,) int64 vector on `device`.
inline void check_index(
    const at::Tensor& index, const char* op, const char* name, int64_t batch, const c10::Device& device) {
  check_on_device(index, op, name, device);
  TORCH_CHECK(
      index.scalar_type() == at::kLong, op, ": expected ", name, " of dtype int64, got ", index.scalar_type());
  TORCH_CHECK(
      index.dim() == 1 && index.size(0) == batch && index.is_contiguous(),
      op, ": expected ", name, " to be a contiguous (", batch, ",) vector, got shape ", index.sizes(),
      " with strides ", index.strides());
}

}  // namespace detail
}  // namespace promptseg
