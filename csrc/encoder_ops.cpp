// The CUDA implementation of promptseg::vit_attention (the fused attention of the ViT image encoder)
// and its registration: input checks, the rel-pos tables at the attended grid size, the output
// allocation and the launch on the current stream. The math is in encoder_attention.cu, the schema
// in module.cpp; the reference, the fake (meta) implementation and the dispatch are in
// promptseg/ops/encoder_attention.py.
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>

#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "encoder_attention.cuh"

namespace promptseg {
namespace {

constexpr int64_t kIntMax = std::numeric_limits<int>::max();

// An attribute of the current CUDA device (a cheap query, no synchronisation).
int device_attribute(cudaDeviceAttr attribute, int device) {
  int value = 0;
  const cudaError_t status = cudaDeviceGetAttribute(&value, attribute, device);
  TORCH_CHECK(status == cudaSuccess, "vit_attention: cudaDeviceGetAttribute failed: ", cudaGetErrorString(status));
  return value;
}

// `tensor` itself when its data is 16-byte aligned (what cp.async needs), else an aligned copy.
at::Tensor aligned16(const at::Tensor& tensor) {
  if (reinterpret_cast<std::uintptr_t>(tensor.data_ptr()) % 16 == 0) return tensor;
  return tensor.clone(at::MemoryFormat::Contiguous);
}

// The (2 * side - 1, head_dim) rel-pos rows of one axis, as promptseg.ops.rel_pos.rel_pos_table
// uses them for equal query and key sizes: linearly interpolated (align_corners=False, in the
// table's dtype) when the learned table has another length, then cast to `dtype`.
at::Tensor rel_pos_rows(const at::Tensor& table, const char* name, int64_t side, int64_t head_dim,
                        const at::Tensor& qkv) {
  TORCH_CHECK(table.device() == qkv.device(), "vit_attention: expected ", name, " on ", qkv.device(), ", got ",
              table.device());
  TORCH_CHECK(at::isFloatingType(table.scalar_type()), "vit_attention: expected a floating-point ", name, ", got ",
              table.scalar_type());
  TORCH_CHECK(table.dim() == 2 && table.size(0) >= 1 && table.size(1) == head_dim, "vit_attention: expected ", name,
              " of shape (L, head_dim=", head_dim, ") with L >= 1, got ", table.sizes());
  const int64_t length = 2 * side - 1;
  at::Tensor rows = table;
  if (table.size(0) != length) {
    // (L, d) -> (1, d, L) -> (1, d, length) -> (length, d)
    rows = at::upsample_linear1d(table.t().unsqueeze(0), {length}, /*align_corners=*/false).squeeze(0).t();
  }
  return aligned16(rows.to(qkv.scalar_type()).contiguous());
}

at::Tensor vit_attention_cuda(const at::Tensor& qkv, int64_t num_heads, const std::optional<at::Tensor>& rel_pos_h,
                              const std::optional<at::Tensor>& rel_pos_w, int64_t window_size,
                              const std::optional<at::Tensor>& qkv_bias) {
  TORCH_CHECK(qkv.is_cuda(), "vit_attention: expected qkv on a CUDA device, got ", qkv.device());
  TORCH_CHECK(qkv.scalar_type() == at::kBFloat16 || qkv.scalar_type() == at::kHalf,
              "vit_attention: expected qkv of dtype bfloat16 or float16, got ", qkv.scalar_type());
  TORCH_CHECK(qkv.dim() == 4, "vit_attention: expected qkv of shape (B, H, W, 3*C), got ", qkv.sizes());
  TORCH_CHECK(qkv.is_contiguous(), "vit_attention: expected a contiguous qkv, got strides ", qkv.strides(),
              " for shape ", qkv.sizes());
  TORCH_CHECK(num_heads > 0, "vit_attention: expected num_heads > 0, got ", num_heads);
  const int64_t batch = qkv.size(0), height = qkv.size(1), width = qkv.size(2);
  TORCH_CHECK(qkv.size(3) % (3 * num_heads) == 0, "vit_attention: expected the last dim of qkv to be 3 * num_heads",
              " * head_dim with num_heads=", num_heads, ", got ", qkv.size(3));
  const int64_t channels = qkv.size(3) / 3;
  const int64_t head_dim = channels / num_heads;
  TORCH_CHECK(vit_attention_supports_head_dim(static_cast<int>(head_dim)),
              "vit_attention: expected head_dim 64 or 80 (the compiled kernels), got ", head_dim);
  TORCH_CHECK(window_size >= 0, "vit_attention: expected window_size >= 0, got ", window_size);
  TORCH_CHECK(rel_pos_h.has_value() == rel_pos_w.has_value(),
              "vit_attention: expected rel_pos_h and rel_pos_w both given or both None, got rel_pos_h ",
              rel_pos_h.has_value() ? "given" : "None", " and rel_pos_w ", rel_pos_w.has_value() ? "given" : "None");
  if (qkv_bias.has_value()) {
    TORCH_CHECK(qkv_bias->device() == qkv.device(), "vit_attention: expected qkv_bias on ", qkv.device(), ", got ",
                qkv_bias->device());
    TORCH_CHECK(at::isFloatingType(qkv_bias->scalar_type()), "vit_attention: expected a floating-point qkv_bias, got ",
                qkv_bias->scalar_type());
    TORCH_CHECK(qkv_bias->dim() == 1 && qkv_bias->size(0) == 3 * channels,
                "vit_attention: expected qkv_bias of shape (", 3 * channels, ",), got ", qkv_bias->sizes());
  }
  TORCH_CHECK(batch <= kIntMax && height <= kIntMax && width <= kIntMax && height * width <= kIntMax &&
                  window_size <= 46340,
              "vit_attention: expected a token grid of at most ", kIntMax, " tokens per image, got qkv ", qkv.sizes(),
              " and window_size ", window_size);

  auto out = at::empty({batch, height, width, channels}, qkv.options());
  if (out.numel() == 0) return out;

  const bool windowed = window_size > 0;
  const int64_t grid_h = windowed ? window_size : height;
  const int64_t grid_w = windowed ? window_size : width;
  const int64_t windows_x = windowed ? (width + window_size - 1) / window_size : 1;
  const int64_t windows_y = windowed ? (height + window_size - 1) / window_size : 1;
  const bool has_rel_pos = rel_pos_h.has_value();
  TORCH_CHECK(!has_rel_pos || grid_h + grid_w <= kVitMaxGridSideSum,
              "vit_attention: with a rel-pos bias the kernel supports attended grids with h + w <= ",
              kVitMaxGridSideSum, ", got ", grid_h, " x ", grid_w);
  const int64_t q_tiles = (grid_h * grid_w + kVitBlockM - 1) / kVitBlockM;
  TORCH_CHECK(q_tiles * batch * windows_x * windows_y * num_heads <= kIntMax,
              "vit_attention: expected at most ", kIntMax, " thread blocks, got ",
              q_tiles * batch * windows_x * windows_y * num_heads);

  const c10::cuda::CUDAGuard device_guard(qkv.device());
  const int device = qkv.get_device();
  const int major = device_attribute(cudaDevAttrComputeCapabilityMajor, device);
  TORCH_CHECK(major >= 8, "vit_attention: expected a GPU of compute capability 8.0 or newer, got ", major, ".",
              device_attribute(cudaDevAttrComputeCapabilityMinor, device));
  const size_t smem_bytes = vit_attention_smem_bytes(static_cast<int>(head_dim), static_cast<int>(grid_h),
                                                     static_cast<int>(grid_w), has_rel_pos);
  const int smem_limit = device_attribute(cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
  TORCH_CHECK(smem_bytes <= static_cast<size_t>(smem_limit), "vit_attention: the ", grid_h, " x ", grid_w,
              " grid needs ", smem_bytes, " bytes of shared memory per block, the device allows ", smem_limit);

  const at::Tensor qkv_data = aligned16(qkv);
  at::Tensor table_h, table_w, bias;
  if (has_rel_pos) {
    table_h = rel_pos_rows(*rel_pos_h, "rel_pos_h", grid_h, head_dim, qkv);
    table_w = rel_pos_rows(*rel_pos_w, "rel_pos_w", grid_w, head_dim, qkv);
  }
  if (qkv_bias.has_value()) bias = aligned16(qkv_bias->to(qkv.scalar_type()).contiguous());

  VitAttentionParams params{};
  params.qkv = qkv_data.data_ptr();
  params.qkv_bias = bias.defined() ? bias.data_ptr() : nullptr;
  params.table_h = has_rel_pos ? table_h.data_ptr() : nullptr;
  params.table_w = has_rel_pos ? table_w.data_ptr() : nullptr;
  params.out = out.data_ptr();
  params.batch = static_cast<int>(batch);
  params.height = static_cast<int>(height);
  params.width = static_cast<int>(width);
  params.heads = static_cast<int>(num_heads);
  params.channels = static_cast<int>(channels);
  params.grid_h = static_cast<int>(grid_h);
  params.grid_w = static_cast<int>(grid_w);
  params.windows_x = static_cast<int>(windows_x);
  params.windows_per_image = static_cast<int>(windows_x * windows_y);
  params.scale_log2 = static_cast<float>(1.4426950408889634 / std::sqrt(static_cast<double>(head_dim)));

  const cudaError_t status = launch_vit_attention(params, qkv.scalar_type() == at::kBFloat16,
                                                  static_cast<int>(head_dim), smem_bytes,
                                                  c10::cuda::getCurrentCUDAStream().stream());
  TORCH_CHECK(status == cudaSuccess, "vit_attention: kernel launch failed: ", cudaGetErrorString(status));
  return out;
}

}  // namespace
}  // namespace promptseg

TORCH_LIBRARY_IMPL(promptseg, CUDA, m) { m.impl("vit_attention", &promptseg::vit_attention_cuda); }
