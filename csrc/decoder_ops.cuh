// Host-side declarations of the mask decoder's CUDA ops (decoder_attention.cu, mask_postprocess.cu),
// registered under torch.ops.promptseg by decoder_ops.cpp, plus the input checks they share.
// This header holds no device code, so the C++ compiler can include it as well as nvcc.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <c10/util/Exception.h>

#include <cstdint>
#include <optional>
#include <tuple>

namespace promptseg {

// softmax(q k^T / sqrt(head_dim)) v per head. q (B, Nq, C), k/v (B, Nk, C), heads interleaved in C
// (channel h * head_dim + d); key_padding_mask (B, Nk) bool, True = the key takes part.
at::Tensor token_attention_cuda(
    const at::Tensor& q,
    const at::Tensor& k,
    const at::Tensor& v,
    int64_t num_heads,
    const std::optional<at::Tensor>& key_padding_mask);

// token_attention where output batch b reads q[q_index[b]] and k/v[kv_index[b]] (an absent index is
// the identity), so P prompts can share one image's tensors without P copies of them.
at::Tensor gathered_token_attention_cuda(
    const at::Tensor& q,
    const at::Tensor& k,
    const at::Tensor& v,
    int64_t num_heads,
    const std::optional<at::Tensor>& key_padding_mask,
    const std::optional<at::Tensor>& q_index,
    const std::optional<at::Tensor>& kv_index);

// (P, M, h, w) low-res logits -> (P, M, H, W) masks at the original image size (bool, or float32
// logits with return_logits), plus (P, M, 4) int64 XYXY boxes and (P, M) int64 areas of the
// thresholded masks when with_stats (empty tensors otherwise).
std::tuple<at::Tensor, at::Tensor, at::Tensor> mask_postprocess_cuda(
    const at::Tensor& low_res,
    at::IntArrayRef input_size,
    at::IntArrayRef original_size,
    int64_t image_size,
    double threshold,
    bool return_logits,
    bool with_stats);

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
