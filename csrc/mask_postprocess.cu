// Fused mask post-processing: low-res logits (P, M, h, w) -> masks at the original image size.
//
// The reference (Sam.postprocess_masks, then `> threshold`) runs two bilinear resamplings
// (align_corners=False) with a crop between them:
//   1. (h, w) -> the padded encoder frame (S, S);
//   2. crop to the resized image (in_h, in_w) at the top left of the frame;
//   3. (in_h, in_w) -> the original (H, W).
// This kernel computes every output pixel straight from the low-res logits: stage 3's two rows
// and two columns of the cropped frame, each of those four frame pixels being stage 1's bilinear
// blend of four low-res pixels. Both stages use PyTorch's source-index rule
// (src = max(scale * (dst + 0.5) - 0.5, 0), upper neighbour clamped at the edge), the same
// float scales (input / output size) and the same blend order, all in fp32; nothing of size
// S x S is ever materialised.
//
// Work split: a block of 256 threads owns one output row of one mask plane (planes stride over
// gridDim.y). The output row needs two frame rows, hence at most four low-res rows, which the
// block stages in shared memory as fp32 (4 * w floats); threads then stride over the output
// columns with coalesced stores. With stats, each block reduces its row's foreground count and
// horizontal extent and folds them into per-plane accumulators with atomics; a last small kernel
// turns those into XYXY boxes (all zeros for an empty mask, as promptseg.ops.mask_boxes_xyxy).
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <limits>
#include <tuple>

#include "input_checks.h"
#include "kernel_limits.h"

namespace promptseg {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kMaxLowResWidth = limits::kMaskMaxLowResWidth;  // 4 staged rows of this many floats
constexpr int kBoundsPerPlane = 4;     // min x, min y, max x, max y
constexpr size_t kDefaultSharedBytes = 48 * 1024;  // dynamic shared memory allowed without opting in

struct PostprocessParams {
  int64_t planes;
  int low_h, low_w;          // low-res logits
  int crop_h, crop_w;        // input_size: the resized image inside the S x S frame
  int out_h, out_w;          // original_size
  float frame_scale_h, frame_scale_w;  // stage 1: low / S
  float crop_scale_h, crop_scale_w;    // stage 3: crop / original
  float threshold;
  unsigned long long* areas;  // (planes,) foreground counts, or nullptr without stats
  int* bounds;                // (planes, 4) min x, min y, max x, max y of the foreground
};

// One bilinear tap along an axis: neighbours `first` and `second` with weights (1 - far, far).
struct Tap {
  int first;
  int second;
  float near_weight;
  float far_weight;
};

// PyTorch's align_corners=False source index for output position `dst` of an axis whose input has
// `in_size` samples.
__device__ __forceinline__ Tap make_tap(float scale, int dst, int in_size) {
  const float source = fmaxf(scale * (static_cast<float>(dst) + 0.5f) - 0.5f, 0.f);
  const int first = static_cast<int>(source);
  const float far_weight = source - static_cast<float>(first);
  return {first, first + (first < in_size - 1 ? 1 : 0), 1.f - far_weight, far_weight};
}

// Stage 1 at one frame pixel: blend of rows `upper`/`lower` (staged) at columns of `column`.
__device__ __forceinline__ float frame_value(const float* upper, const float* lower, const Tap& row, const Tap& column) {
  return row.near_weight * (column.near_weight * upper[column.first] + column.far_weight * upper[column.second]) +
      row.far_weight * (column.near_weight * lower[column.first] + column.far_weight * lower[column.second]);
}

template <typename scalar_t, bool kLogits>
__global__ void __launch_bounds__(kThreads)
    postprocess_kernel(const PostprocessParams p, const scalar_t* __restrict__ low_res, void* __restrict__ out) {
  extern __shared__ float staged[];  // rows: [frame row 0 upper, frame row 0 lower, frame row 1 upper, lower]
  __shared__ int reduce_count[kWarps];
  __shared__ int reduce_min[kWarps];
  __shared__ int reduce_max[kWarps];

  const int y = blockIdx.x;
  // Stage 3 along y: two rows of the cropped frame; stage 1 along y for each of them.
  const Tap crop_row = make_tap(p.crop_scale_h, y, p.crop_h);
  const Tap top = make_tap(p.frame_scale_h, crop_row.first, p.low_h);
  const Tap bottom = make_tap(p.frame_scale_h, crop_row.second, p.low_h);
  const int source_rows[4] = {top.first, top.second, bottom.first, bottom.second};

  for (int64_t plane = blockIdx.y; plane < p.planes; plane += gridDim.y) {
    const scalar_t* plane_in = low_res + plane * p.low_h * p.low_w;
    for (int i = threadIdx.x; i < 4 * p.low_w; i += kThreads) {
      const int slot = i / p.low_w;
      const int column = i % p.low_w;
      staged[i] = static_cast<float>(plane_in[static_cast<int64_t>(source_rows[slot]) * p.low_w + column]);
    }
    __syncthreads();

    int count = 0;
    int min_x = INT_MAX;
    int max_x = -1;
    const int64_t row_offset = (plane * p.out_h + y) * p.out_w;
    for (int x = threadIdx.x; x < p.out_w; x += kThreads) {
      const Tap crop_column = make_tap(p.crop_scale_w, x, p.crop_w);
      const Tap left = make_tap(p.frame_scale_w, crop_column.first, p.low_w);
      const Tap right = make_tap(p.frame_scale_w, crop_column.second, p.low_w);
      const float top_left = frame_value(staged, staged + p.low_w, top, left);
      const float top_right = frame_value(staged, staged + p.low_w, top, right);
      const float bottom_left = frame_value(staged + 2 * p.low_w, staged + 3 * p.low_w, bottom, left);
      const float bottom_right = frame_value(staged + 2 * p.low_w, staged + 3 * p.low_w, bottom, right);
      const float value = crop_row.near_weight * (crop_column.near_weight * top_left + crop_column.far_weight * top_right) +
          crop_row.far_weight * (crop_column.near_weight * bottom_left + crop_column.far_weight * bottom_right);
      const bool foreground = value > p.threshold;
      if (kLogits) {
        static_cast<float*>(out)[row_offset + x] = value;
      } else {
        static_cast<bool*>(out)[row_offset + x] = foreground;
      }
      if (foreground) {
        ++count;
        min_x = min(min_x, x);
        max_x = max(max_x, x);
      }
    }

    if (p.areas != nullptr) {
      for (int offset = 16; offset > 0; offset /= 2) {
        count += __shfl_xor_sync(0xffffffffu, count, offset);
        min_x = min(min_x, __shfl_xor_sync(0xffffffffu, min_x, offset));
        max_x = max(max_x, __shfl_xor_sync(0xffffffffu, max_x, offset));
      }
      const int warp = threadIdx.x / 32;
      if (threadIdx.x % 32 == 0) {
        reduce_count[warp] = count;
        reduce_min[warp] = min_x;
        reduce_max[warp] = max_x;
      }
      __syncthreads();
      if (threadIdx.x == 0) {
        for (int w = 1; w < kWarps; ++w) {
          count += reduce_count[w];
          min_x = min(min_x, reduce_min[w]);
          max_x = max(max_x, reduce_max[w]);
        }
        if (count > 0) {
          int* bounds = p.bounds + plane * kBoundsPerPlane;
          atomicAdd(p.areas + plane, static_cast<unsigned long long>(count));
          atomicMin(bounds + 0, min_x);
          atomicMin(bounds + 1, y);
          atomicMax(bounds + 2, max_x);
          atomicMax(bounds + 3, y);
        }
      }
    }
    __syncthreads();  // the staged rows and reduction slots are reused by the next plane
  }
}

// bounds := (INT_MAX, INT_MAX, -1, -1) per plane, the identities of min and max.
__global__ void init_bounds_kernel(int* bounds, int64_t planes) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < planes * kBoundsPerPlane) {
    bounds[i] = (i % kBoundsPerPlane) < 2 ? INT_MAX : -1;
  }
}

// (planes, 4) int64 XYXY boxes from the bounds; planes with no foreground get zeros.
__global__ void finish_boxes_kernel(const int* bounds, const unsigned long long* areas, int64_t* boxes, int64_t planes) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < planes * kBoundsPerPlane) {
    boxes[i] = areas[i / kBoundsPerPlane] > 0 ? static_cast<int64_t>(bounds[i]) : 0;
  }
}

unsigned int blocks_for(int64_t items, int threads) {
  return static_cast<unsigned int>((items + threads - 1) / threads);
}

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
    bool with_stats) {
  constexpr const char* op = "mask_postprocess";
  detail::check_on_device(low_res, op, "low_res", low_res.device());
  TORCH_CHECK(
      low_res.scalar_type() == at::kFloat || low_res.scalar_type() == at::kBFloat16 ||
          low_res.scalar_type() == at::kHalf,
      "mask_postprocess: expected low_res of dtype float32, bfloat16 or float16, got ", low_res.scalar_type());
  TORCH_CHECK(
      low_res.dim() == 4 && low_res.size(2) >= 1 && low_res.size(3) >= 1,
      "mask_postprocess: expected low_res of shape (P, M, h, w) with h, w >= 1, got ", low_res.sizes());
  TORCH_CHECK(
      low_res.is_contiguous(), "mask_postprocess: expected a contiguous low_res, got strides ", low_res.strides());
  TORCH_CHECK(
      low_res.size(3) <= kMaxLowResWidth, "mask_postprocess: expected low_res width <= ", kMaxLowResWidth, ", got ",
      low_res.size(3));
  TORCH_CHECK(image_size >= 1, "mask_postprocess: expected image_size >= 1, got ", image_size);
  TORCH_CHECK(
      input_size.size() == 2 && input_size[0] >= 1 && input_size[1] >= 1 && input_size[0] <= image_size &&
          input_size[1] <= image_size,
      "mask_postprocess: expected input_size (h, w) with 1 <= h, w <= image_size=", image_size, ", got ", input_size);
  TORCH_CHECK(
      original_size.size() == 2 && original_size[0] >= 1 && original_size[1] >= 1 &&
          original_size[0] <= INT_MAX && original_size[1] <= INT_MAX && image_size <= INT_MAX,
      "mask_postprocess: expected original_size (H, W) with H, W >= 1, got ", original_size);

  const int64_t prompts = low_res.size(0);
  const int64_t masks_per_prompt = low_res.size(1);
  const int64_t planes = prompts * masks_per_prompt;
  const at::TensorOptions options = low_res.options();
  at::Tensor out = at::empty(
      {prompts, masks_per_prompt, original_size[0], original_size[1]},
      options.dtype(return_logits ? at::kFloat : at::kBool));
  at::Tensor boxes = with_stats ? at::empty({prompts, masks_per_prompt, 4}, options.dtype(at::kLong))
                                : at::empty({0}, options.dtype(at::kLong));
  at::Tensor areas = with_stats ? at::zeros({prompts, masks_per_prompt}, options.dtype(at::kLong))
                                : at::empty({0}, options.dtype(at::kLong));
  if (planes == 0) {
    return {out, boxes, areas};
  }

  const c10::cuda::OptionalCUDAGuard guard(low_res.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
  PostprocessParams params{};
  params.planes = planes;
  params.low_h = static_cast<int>(low_res.size(2));
  params.low_w = static_cast<int>(low_res.size(3));
  params.crop_h = static_cast<int>(input_size[0]);
  params.crop_w = static_cast<int>(input_size[1]);
  params.out_h = static_cast<int>(original_size[0]);
  params.out_w = static_cast<int>(original_size[1]);
  // As ATen's area_pixel_compute_scale: float(input size) / output size.
  params.frame_scale_h = static_cast<float>(params.low_h) / static_cast<float>(image_size);
  params.frame_scale_w = static_cast<float>(params.low_w) / static_cast<float>(image_size);
  params.crop_scale_h = static_cast<float>(params.crop_h) / static_cast<float>(params.out_h);
  params.crop_scale_w = static_cast<float>(params.crop_w) / static_cast<float>(params.out_w);
  params.threshold = static_cast<float>(threshold);

  at::Tensor bounds;
  if (with_stats) {
    bounds = at::empty({planes, kBoundsPerPlane}, options.dtype(at::kInt));
    params.bounds = bounds.data_ptr<int>();
    params.areas = reinterpret_cast<unsigned long long*>(areas.data_ptr<int64_t>());
    init_bounds_kernel<<<blocks_for(planes * kBoundsPerPlane, kThreads), kThreads, 0, stream>>>(params.bounds, planes);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }

  const dim3 grid(static_cast<unsigned int>(params.out_h), static_cast<unsigned int>(std::min<int64_t>(planes, 65535)));
  const size_t shared_bytes = 4 * static_cast<size_t>(params.low_w) * sizeof(float);
  const auto launch = [&](auto typed) {
    using scalar_t = decltype(typed);
    auto kernel = return_logits ? postprocess_kernel<scalar_t, true> : postprocess_kernel<scalar_t, false>;
    if (shared_bytes > kDefaultSharedBytes) {
      C10_CUDA_CHECK(cudaFuncSetAttribute(
          kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(shared_bytes)));
    }
    kernel<<<grid, kThreads, shared_bytes, stream>>>(params, low_res.data_ptr<scalar_t>(), out.data_ptr());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  };
  switch (low_res.scalar_type()) {
    case at::kFloat:
      launch(float{});
      break;
    case at::kBFloat16:
      launch(at::BFloat16{});
      break;
    default:
      launch(at::Half{});
      break;
  }

  if (with_stats) {
    finish_boxes_kernel<<<blocks_for(planes * kBoundsPerPlane, kThreads), kThreads, 0, stream>>>(
        params.bounds, params.areas, boxes.data_ptr<int64_t>(), planes);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  return {out, boxes, areas};
}

}  // namespace
}  // namespace promptseg

// The schema is in module.cpp; the reference, fake and dispatch in promptseg/ops/mask_postprocess.py.
TORCH_LIBRARY_IMPL(promptseg, CUDA, m) { m.impl("mask_postprocess", &promptseg::mask_postprocess_cuda); }
