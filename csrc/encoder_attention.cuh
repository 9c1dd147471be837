// Fused attention of SAM's ViT image encoder: the launch interface between the op's host code
// (encoder_ops.cpp, with ATen, where the op's CUDA implementation is registered) and the kernel
// (encoder_attention.cu, no ATen).
#pragma once

#include <cstddef>

#include <cuda_runtime.h>

#include "kernel_limits.h"

namespace promptseg {

// Queries per CTA: 4 warps, each owning two m16 row tiles (32 query rows).
constexpr int kVitBlockM = 128;
// Keys per main-loop step, and rel-pos table rows per prologue step.
constexpr int kVitBlockN = 64;
constexpr int kVitThreads = 128;
// The largest grid_h + grid_w of an attended grid with a rel-pos bias (kernel_limits.h says why).
constexpr int kVitMaxGridSideSum = limits::kVitMaxGridSideSum;

// Head dims with a compiled kernel (limits::kVitHeadDims; launch_vit_attention instantiates each).
inline bool vit_attention_supports_head_dim(int head_dim) { return limits::contains(limits::kVitHeadDims, head_dim); }

// Row stride, in fp32 elements, of the per-query rel-pos logits in shared memory: at least
// grid_h + grid_w, and 8 (mod 32) so that the 8 row groups of an mma fragment spread over banks.
__host__ __device__ inline int vit_rel_row_stride(int grid_h, int grid_w) {
  return (grid_h + grid_w + 31) / 32 * 32 + 8;
}

// Dynamic shared memory of one CTA: the K and V tiles (kVitBlockN rows of head_dim + 8 16-bit
// elements each) and, with a rel-pos bias, kVitBlockM rows of rel-pos logits.
inline size_t vit_attention_smem_bytes(int head_dim, int grid_h, int grid_w, bool has_rel_pos) {
  const size_t kv = 2 * static_cast<size_t>(kVitBlockN) * (head_dim + 8) * 2;
  const size_t rel = has_rel_pos ? static_cast<size_t>(kVitBlockM) * vit_rel_row_stride(grid_h, grid_w) * 4 : 0;
  return kv + rel;
}

// Everything the kernel reads. Pointers are device pointers to contiguous tensors of the qkv
// dtype (bf16 or fp16) and 16-byte aligned.
struct VitAttentionParams {
  const void* qkv;       // (B, H, W, 3C): per token [q | k | v], each (heads, head_dim)
  const void* qkv_bias;  // (3C,) value of padded tokens, or nullptr for zeros
  const void* table_h;   // (2 * grid_h - 1, head_dim) rel-pos rows along y, or nullptr for no bias
  const void* table_w;   // (2 * grid_w - 1, head_dim) rel-pos rows along x (set iff table_h is)
  void* out;             // (B, H, W, C)
  int batch;
  int height;            // H, W: the un-partitioned token grid
  int width;
  int heads;
  int channels;          // C = heads * head_dim
  int grid_h;            // the attended grid: (ws, ws) windows, or (H, W) for global attention
  int grid_w;
  int windows_x;         // windows per grid row (1 for global attention)
  int windows_per_image; // windows per image (1 for global attention)
  float scale_log2;      // head_dim^-0.5 * log2(e): the kernel works in base 2
};

// Launches the kernel for a head_dim of limits::kVitHeadDims on `stream` with `smem_bytes` of dynamic shared memory
// (vit_attention_smem_bytes). Returns the first CUDA error of the configuration or the launch.
cudaError_t launch_vit_attention(const VitAttentionParams& params, bool bf16, int head_dim, size_t smem_bytes,
                                 cudaStream_t stream);

}  // namespace promptseg
