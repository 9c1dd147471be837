// The shapes each kernel of promptseg._C takes: stated here once. The kernels' host code checks
// its inputs against these values, and module.cpp publishes them to Python as
// promptseg._C.KERNEL_LIMITS, where promptseg/ops/<op>.py reads them to decide when a kernel
// applies (promptseg.ops.dispatch.kernel_limits). Plain C++: included by .cpp and .cu files alike.
#pragma once

#include <array>

namespace promptseg::limits {

// vit_attention (encoder_attention.cu): head dims with a compiled kernel (ViT-B/L: 64, ViT-H: 80).
inline constexpr std::array<int, 2> kVitHeadDims = {64, 80};
// vit_attention: with a rel-pos bias the kernel keeps, per query row of a CTA, the grid_h + grid_w
// relative-position logits in shared memory as fp32. This bound on grid_h + grid_w of the attended
// grid (64 x 64 global grids, windows up to 64) keeps the whole shared-memory footprint under the
// 99 KiB a CTA may use on sm_86/sm_89 as well as sm_80/sm_90.
inline constexpr int kVitMaxGridSideSum = 128;

// token_attention and gathered_token_attention (decoder_attention.cu): head dims with a compiled kernel.
inline constexpr std::array<int, 4> kTokenHeadDims = {8, 16, 32, 64};

// mask_postprocess (mask_postprocess.cu): widest low-res logits (4 staged rows of this many floats:
// 64 KiB of shared memory).
inline constexpr int kMaskMaxLowResWidth = 4096;

// Whether `value` is one of `values` (a compile-time list of head dims).
template <std::size_t N>
constexpr bool contains(const std::array<int, N>& values, long long value) {
  for (const int entry : values) {
    if (entry == value) return true;
  }
  return false;
}

}  // namespace promptseg::limits
