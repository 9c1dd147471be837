// Fused multi-head attention of the mask decoder's two-way transformer (after the q/k/v
// projections): softmax(q k^T / sqrt(head_dim)) v with fp32 accumulation and softmax statistics,
// for bf16/fp16 inputs and head_dim 8, 16, 32 or 64.
//
// Shapes in SAM's decoder (P prompts, T = 5 output tokens + prompt tokens, 4096 image tokens):
//   token self-attention       q, k, v (P, T, 256), 8 heads of 32, key padding mask (P, T)
//   token -> image attention   q (P, T, 128), k, v (P, 4096, 128), 8 heads of 16
//   image -> token attention   q (P, 4096, 128), k, v (P, T, 128), key padding mask (P, T)
// The gathered variant reads q[q_index[b]] and k/v[kv_index[b]] for output batch b, so the first
// two-way block's image-side tensors exist once per image instead of once per prompt.
//
// Layout: rows of (B, N, C) tensors with unit channel stride; head h owns channels
// [h * D, (h + 1) * D). Row starts must be 16-byte aligned (rows are read 8 scalars at a time).
//
// Work split (one kernel for every shape): a block of 128 threads owns a tile of queries of one
// (batch, head) and a contiguous range ("split") of its keys. Each query is served by `lanes`
// consecutive threads (a power of two <= 32, so a query's threads sit in one warp); lane g takes
// the keys g, g + lanes, ... of every key tile. Few queries and many keys (token -> image) give
// 8-32 lanes per query and several splits per (batch, head) so that small P still fills the GPU;
// many queries and few keys (image -> token) give one thread per query. Key/value tiles of 64 rows
// are staged in shared memory as fp32 (rows padded by 4 floats, which makes the 16-byte reads of
// the 8 lanes of one shared-memory phase hit distinct banks). Each thread keeps an online softmax
// (running max m in the log2 domain, running sum l, accumulator acc[D]); the lanes of a query are
// merged by a butterfly of warp shuffles. With one split the merged result is normalised and
// written; otherwise (m, l, acc) go to an fp32 workspace and a second kernel merges the splits.
// A query whose keys are all masked out gets NaN, as the reference's softmax over -inf does.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/macros/Macros.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>

#include "input_checks.h"
#include "kernel_limits.h"

namespace promptseg {
namespace {

constexpr int kThreads = 128;       // threads per block
constexpr int kKeyTile = 64;        // keys staged in shared memory at a time
constexpr int kRowPad = 4;          // floats of padding per staged row (bank-conflict free reads)
constexpr int kPack = 8;            // scalars per 16-byte global load
constexpr int kMinKeysPerSplit = 256;
constexpr float kLog2e = 1.4426950408889634f;
constexpr int kMaxDevices = 64;

struct AttentionParams {
  const void* q;
  const void* k;
  const void* v;
  void* out;
  const bool* mask;          // (batch, nk), row stride mask_stride; nullptr: every key takes part
  const int64_t* q_index;    // (batch,) or nullptr (identity)
  const int64_t* kv_index;   // (batch,) or nullptr (identity)
  float* partial;            // (batch, heads, nq, splits, D + 2) when splits > 1
  int64_t q_stride_b, q_stride_n;
  int64_t k_stride_b, k_stride_n;
  int64_t v_stride_b, v_stride_n;
  int64_t out_stride_b, out_stride_n;
  int64_t mask_stride;
  int64_t q_batches, kv_batches;  // first-dim sizes of q and k/v, for the index bounds
  int batch, nq, nk, heads;
  int lanes, queries_per_block, query_tiles;
  int splits, keys_per_split;
  float scale_log2;          // log2(e) / sqrt(head_dim): logits live in the log2 domain
};

// Eight consecutive scalars read with one 16-byte load.
template <typename scalar_t>
struct alignas(16) Pack {
  scalar_t value[kPack];
};

// Loads 8 scalars at `src` (16-byte aligned) and writes them as floats to `dst` (16-byte aligned).
template <typename scalar_t>
__device__ __forceinline__ void load_pack(const scalar_t* src, float* dst) {
  const Pack<scalar_t> pack = *reinterpret_cast<const Pack<scalar_t>*>(src);
  float4* out = reinterpret_cast<float4*>(dst);
  out[0] = make_float4(
      static_cast<float>(pack.value[0]), static_cast<float>(pack.value[1]),
      static_cast<float>(pack.value[2]), static_cast<float>(pack.value[3]));
  out[1] = make_float4(
      static_cast<float>(pack.value[4]), static_cast<float>(pack.value[5]),
      static_cast<float>(pack.value[6]), static_cast<float>(pack.value[7]));
}

// Weight that rescales a partial softmax with running max `m` to the common max `top`.
__device__ __forceinline__ float rescale(float m, float top) {
  return m == -INFINITY ? 0.f : exp2f(m - top);
}

template <typename scalar_t, int D>
__global__ void __launch_bounds__(kThreads) attention_kernel(const AttentionParams p) {
  constexpr int kRow = D + kRowPad;
  __shared__ __align__(16) float k_tile[kKeyTile * kRow];
  __shared__ __align__(16) float v_tile[kKeyTile * kRow];
  __shared__ bool key_valid[kKeyTile];

  const int batch = blockIdx.x / p.query_tiles;
  const int query_tile = blockIdx.x % p.query_tiles;
  const int head = blockIdx.y / p.splits;
  const int split = blockIdx.y % p.splits;
  const int lane = threadIdx.x % p.lanes;
  const int query = query_tile * p.queries_per_block + threadIdx.x / p.lanes;
  const bool active = query < p.nq;

  const int64_t q_batch = p.q_index != nullptr ? p.q_index[batch] : batch;
  const int64_t kv_batch = p.kv_index != nullptr ? p.kv_index[batch] : batch;
  CUDA_KERNEL_ASSERT(q_batch >= 0 && q_batch < p.q_batches);
  CUDA_KERNEL_ASSERT(kv_batch >= 0 && kv_batch < p.kv_batches);

  const scalar_t* k_base = static_cast<const scalar_t*>(p.k) + kv_batch * p.k_stride_b + head * D;
  const scalar_t* v_base = static_cast<const scalar_t*>(p.v) + kv_batch * p.v_stride_b + head * D;
  const bool* mask_row = p.mask != nullptr ? p.mask + batch * p.mask_stride : nullptr;

  // This thread's query, pre-scaled so that q . k is the logit in the log2 domain.
  __align__(16) float q_reg[D];
  if (active) {
    const scalar_t* q_row = static_cast<const scalar_t*>(p.q) + q_batch * p.q_stride_b + query * p.q_stride_n + head * D;
#pragma unroll
    for (int c = 0; c < D; c += kPack) {
      load_pack(q_row + c, q_reg + c);
    }
#pragma unroll
    for (int d = 0; d < D; ++d) {
      q_reg[d] *= p.scale_log2;
    }
  } else {
#pragma unroll
    for (int d = 0; d < D; ++d) {
      q_reg[d] = 0.f;
    }
  }

  float m = -INFINITY;
  float l = 0.f;
  float acc[D];
#pragma unroll
  for (int d = 0; d < D; ++d) {
    acc[d] = 0.f;
  }

  const int key_begin = split * p.keys_per_split;
  const int key_end = min(p.nk, key_begin + p.keys_per_split);
  for (int tile = key_begin; tile < key_end; tile += kKeyTile) {
    const int count = min(kKeyTile, key_end - tile);
    constexpr int kPacksPerRow = D / kPack;
    for (int i = threadIdx.x; i < count * kPacksPerRow; i += kThreads) {
      const int row = i / kPacksPerRow;
      const int column = (i % kPacksPerRow) * kPack;
      const int64_t key = tile + row;
      load_pack(k_base + key * p.k_stride_n + column, &k_tile[row * kRow + column]);
      load_pack(v_base + key * p.v_stride_n + column, &v_tile[row * kRow + column]);
    }
    for (int i = threadIdx.x; i < count; i += kThreads) {
      key_valid[i] = mask_row == nullptr || mask_row[tile + i];
    }
    __syncthreads();
    if (active) {
      for (int j = lane; j < count; j += p.lanes) {
        if (!key_valid[j]) {
          continue;
        }
        const float4* k_row = reinterpret_cast<const float4*>(&k_tile[j * kRow]);
        float logit = 0.f;
#pragma unroll
        for (int c = 0; c < D / 4; ++c) {
          const float4 kv = k_row[c];
          logit = fmaf(q_reg[4 * c], kv.x, logit);
          logit = fmaf(q_reg[4 * c + 1], kv.y, logit);
          logit = fmaf(q_reg[4 * c + 2], kv.z, logit);
          logit = fmaf(q_reg[4 * c + 3], kv.w, logit);
        }
        if (logit > m) {
          const float correction = rescale(m, logit);
          l *= correction;
#pragma unroll
          for (int d = 0; d < D; ++d) {
            acc[d] *= correction;
          }
          m = logit;
        }
        const float weight = exp2f(logit - m);
        l += weight;
        const float4* v_row = reinterpret_cast<const float4*>(&v_tile[j * kRow]);
#pragma unroll
        for (int c = 0; c < D / 4; ++c) {
          const float4 vv = v_row[c];
          acc[4 * c] = fmaf(weight, vv.x, acc[4 * c]);
          acc[4 * c + 1] = fmaf(weight, vv.y, acc[4 * c + 1]);
          acc[4 * c + 2] = fmaf(weight, vv.z, acc[4 * c + 2]);
          acc[4 * c + 3] = fmaf(weight, vv.w, acc[4 * c + 3]);
        }
      }
    }
    __syncthreads();
  }

  // Merge the lanes of each query (all 32 threads of every warp take part in the shuffles). The
  // lower lane's terms come first so that every lane ends with bitwise the same totals.
  for (int offset = p.lanes / 2; offset > 0; offset /= 2) {
    const float other_m = __shfl_xor_sync(0xffffffffu, m, offset);
    const float other_l = __shfl_xor_sync(0xffffffffu, l, offset);
    const float top = fmaxf(m, other_m);
    const float mine = rescale(m, top);
    const float theirs = rescale(other_m, top);
    const bool lower = (lane & offset) == 0;
    l = lower ? fmaf(l, mine, other_l * theirs) : fmaf(other_l, theirs, l * mine);
#pragma unroll
    for (int d = 0; d < D; ++d) {
      const float other_acc = __shfl_xor_sync(0xffffffffu, acc[d], offset);
      acc[d] = lower ? fmaf(acc[d], mine, other_acc * theirs) : fmaf(other_acc, theirs, acc[d] * mine);
    }
    m = top;
  }
  if (!active) {
    return;
  }

  if (p.splits == 1) {
    scalar_t* out_row = static_cast<scalar_t*>(p.out) + static_cast<int64_t>(batch) * p.out_stride_b +
        query * p.out_stride_n + head * D;
    const float inverse = l > 0.f ? 1.f / l : NAN;
#pragma unroll
    for (int d = 0; d < D; ++d) {
      if (d % p.lanes == lane) {
        out_row[d] = static_cast<scalar_t>(acc[d] * inverse);
      }
    }
  } else {
    const int64_t row = ((static_cast<int64_t>(batch) * p.heads + head) * p.nq + query) * p.splits + split;
    float* partial = p.partial + row * (D + 2);
    if (lane == 0) {
      partial[0] = m;
      partial[1] = l;
    }
#pragma unroll
    for (int d = 0; d < D; ++d) {
      if (d % p.lanes == lane) {
        partial[2 + d] = acc[d];
      }
    }
  }
}

// Merges the splits of every (batch, head, query): one thread each.
template <typename scalar_t, int D>
__global__ void __launch_bounds__(kThreads) merge_splits_kernel(const AttentionParams p) {
  const int64_t index = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (index >= static_cast<int64_t>(p.batch) * p.heads * p.nq) {
    return;
  }
  const int query = index % p.nq;
  const int head = (index / p.nq) % p.heads;
  const int64_t batch = index / (static_cast<int64_t>(p.nq) * p.heads);
  const float* partial = p.partial + index * p.splits * (D + 2);

  float top = -INFINITY;
  for (int s = 0; s < p.splits; ++s) {
    top = fmaxf(top, partial[s * (D + 2)]);
  }
  float l = 0.f;
  float acc[D];
#pragma unroll
  for (int d = 0; d < D; ++d) {
    acc[d] = 0.f;
  }
  for (int s = 0; s < p.splits; ++s) {
    const float* part = partial + s * (D + 2);
    const float weight = rescale(part[0], top);
    l = fmaf(part[1], weight, l);
#pragma unroll
    for (int d = 0; d < D; ++d) {
      acc[d] = fmaf(part[2 + d], weight, acc[d]);
    }
  }
  const float inverse = l > 0.f ? 1.f / l : NAN;
  scalar_t* out_row = static_cast<scalar_t*>(p.out) + batch * p.out_stride_b + query * p.out_stride_n + head * D;
#pragma unroll
  for (int d = 0; d < D; ++d) {
    out_row[d] = static_cast<scalar_t>(acc[d] * inverse);
  }
}

// Number of SMs of a CUDA device (queried once per device).
int multiprocessor_count(int device) {
  static std::array<std::atomic<int>, kMaxDevices> counts{};
  TORCH_CHECK(device >= 0 && device < kMaxDevices, "token_attention: unsupported CUDA device index ", device);
  int count = counts[device].load();
  if (count == 0) {
    C10_CUDA_CHECK(cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device));
    counts[device].store(count);
  }
  return count;
}

int next_power_of_two(int value) {
  int power = 1;
  while (power < value) {
    power *= 2;
  }
  return power;
}

int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

// Unit channel stride, 16-byte aligned start, and batch/row strides that keep every row start
// 16-byte aligned (strides of size-1 dims are never used and not checked).
void check_rows(const at::Tensor& tensor, const char* name) {
  const int64_t element = tensor.element_size();
  TORCH_CHECK(
      tensor.stride(2) == 1, "token_attention: expected ", name, " with unit channel stride, got strides ",
      tensor.strides());
  TORCH_CHECK(
      reinterpret_cast<uintptr_t>(tensor.data_ptr()) % 16 == 0,
      "token_attention: expected ", name, " to start at a 16-byte aligned address, got storage offset ",
      tensor.storage_offset());
  for (int dim = 0; dim < 2; ++dim) {
    TORCH_CHECK(
        tensor.size(dim) == 1 || (tensor.stride(dim) * element) % 16 == 0,
        "token_attention: expected the stride of dim ", dim, " of ", name, " to be a multiple of ", 16 / element,
        " elements (16-byte aligned rows), got strides ", tensor.strides());
  }
}

// The head dims the switch in gathered_token_attention_cuda instantiates.
static_assert(limits::kTokenHeadDims == std::array<int, 4>{8, 16, 32, 64}, "launch<scalar_t, D> for D = 8, 16, 32, 64");

template <typename scalar_t, int D>
void launch(AttentionParams& params, const at::Tensor& q) {
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
  const dim3 grid(
      static_cast<unsigned int>(params.batch) * params.query_tiles, static_cast<unsigned int>(params.heads * params.splits));
  at::Tensor partial;
  if (params.splits > 1) {
    partial = at::empty(
        {static_cast<int64_t>(params.batch) * params.heads * params.nq * params.splits * (D + 2)},
        q.options().dtype(at::kFloat));
    params.partial = partial.data_ptr<float>();
  }
  attention_kernel<scalar_t, D><<<grid, kThreads, 0, stream>>>(params);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  if (params.splits > 1) {
    const int64_t rows = static_cast<int64_t>(params.batch) * params.heads * params.nq;
    const unsigned int blocks = static_cast<unsigned int>(ceil_div(rows, kThreads));
    merge_splits_kernel<scalar_t, D><<<blocks, kThreads, 0, stream>>>(params);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
}

// token_attention where output batch b reads q[q_index[b]] and k/v[kv_index[b]] (an absent index is
// the identity), so P prompts can share one image's tensors without P copies of them.
at::Tensor gathered_token_attention_cuda(
    const at::Tensor& q,
    const at::Tensor& k,
    const at::Tensor& v,
    int64_t num_heads,
    const std::optional<at::Tensor>& key_padding_mask,
    const std::optional<at::Tensor>& q_index,
    const std::optional<at::Tensor>& kv_index) {
  constexpr const char* op = "token_attention";
  const c10::Device device = q.device();
  detail::check_on_device(q, op, "q", device);
  detail::check_on_device(k, op, "k", device);
  detail::check_on_device(v, op, "v", device);
  TORCH_CHECK(
      q.scalar_type() == at::kBFloat16 || q.scalar_type() == at::kHalf,
      "token_attention: expected q of dtype bfloat16 or float16, got ", q.scalar_type());
  TORCH_CHECK(
      k.scalar_type() == q.scalar_type() && v.scalar_type() == q.scalar_type(),
      "token_attention: expected k and v of q's dtype ", q.scalar_type(), ", got ", k.scalar_type(), " and ",
      v.scalar_type());
  TORCH_CHECK(
      q.dim() == 3 && k.dim() == 3 && v.dim() == 3,
      "token_attention: expected q, k, v of shape (B, N, C), got ", q.sizes(), ", ", k.sizes(), ", ", v.sizes());
  TORCH_CHECK(
      k.sizes() == v.sizes() && q.size(2) == k.size(2),
      "token_attention: expected q (Bq, Nq, C) and k, v (Bk, Nk, C) of one C, got ", q.sizes(), ", ", k.sizes(),
      ", ", v.sizes());
  const int64_t channels = q.size(2);
  TORCH_CHECK(
      num_heads > 0 && channels % num_heads == 0,
      "token_attention: expected num_heads to divide the ", channels, " channels, got num_heads=", num_heads);
  const int64_t head_dim = channels / num_heads;
  TORCH_CHECK(
      limits::contains(limits::kTokenHeadDims, head_dim),
      "token_attention: expected head_dim 8, 16, 32 or 64, got ", head_dim, " (", channels, " channels / ",
      num_heads, " heads)");

  const int64_t batch = q_index.has_value() ? q_index->size(0) : kv_index.has_value() ? kv_index->size(0) : q.size(0);
  if (q_index.has_value()) {
    detail::check_index(*q_index, op, "q_index", batch, device);
  } else {
    TORCH_CHECK(q.size(0) == batch, "token_attention: expected q with ", batch, " batches, got ", q.sizes());
  }
  if (kv_index.has_value()) {
    detail::check_index(*kv_index, op, "kv_index", batch, device);
  } else {
    TORCH_CHECK(
        k.size(0) == batch, "token_attention: expected k and v with ", batch, " batches, got ", k.sizes());
  }
  const int64_t nq = q.size(1);
  const int64_t nk = k.size(1);
  TORCH_CHECK(nk >= 1, "token_attention: expected at least one key, got k of shape ", k.sizes());
  if (key_padding_mask.has_value()) {
    const at::Tensor& mask = *key_padding_mask;
    detail::check_on_device(mask, op, "key_padding_mask", device);
    TORCH_CHECK(
        mask.scalar_type() == at::kBool,
        "token_attention: expected key_padding_mask of dtype bool, got ", mask.scalar_type());
    TORCH_CHECK(
        mask.dim() == 2 && mask.size(0) == batch && mask.size(1) == nk && (nk == 1 || mask.stride(1) == 1),
        "token_attention: expected key_padding_mask of shape (", batch, ", ", nk,
        ") with unit key stride, got shape ", mask.sizes(), " and strides ", mask.strides());
  }

  at::Tensor out = at::empty({batch, nq, channels}, q.options());
  if (batch == 0 || nq == 0) {
    return out;
  }
  check_rows(q, "q");
  check_rows(k, "k");
  check_rows(v, "v");

  const c10::cuda::OptionalCUDAGuard guard(device);
  AttentionParams params{};
  params.q = q.data_ptr();
  params.k = k.data_ptr();
  params.v = v.data_ptr();
  params.out = out.data_ptr();
  params.mask = key_padding_mask.has_value() ? key_padding_mask->data_ptr<bool>() : nullptr;
  params.mask_stride = key_padding_mask.has_value() ? key_padding_mask->stride(0) : 0;
  params.q_index = q_index.has_value() ? q_index->data_ptr<int64_t>() : nullptr;
  params.kv_index = kv_index.has_value() ? kv_index->data_ptr<int64_t>() : nullptr;
  params.q_stride_b = q.stride(0);
  params.q_stride_n = q.stride(1);
  params.k_stride_b = k.stride(0);
  params.k_stride_n = k.stride(1);
  params.v_stride_b = v.stride(0);
  params.v_stride_n = v.stride(1);
  params.out_stride_b = out.stride(0);
  params.out_stride_n = out.stride(1);
  params.q_batches = q.size(0);
  params.kv_batches = k.size(0);
  TORCH_CHECK(
      nq <= std::numeric_limits<int>::max() && nk <= std::numeric_limits<int>::max(),
      "token_attention: expected fewer than 2^31 queries and keys, got ", nq, " and ", nk);
  params.batch = static_cast<int>(batch);
  params.nq = static_cast<int>(nq);
  params.nk = static_cast<int>(nk);
  params.heads = static_cast<int>(num_heads);
  params.lanes = std::max(1, std::min(32, kThreads / next_power_of_two(static_cast<int>(std::min<int64_t>(nq, kThreads)))));
  params.queries_per_block = kThreads / params.lanes;
  params.query_tiles = static_cast<int>(ceil_div(nq, params.queries_per_block));
  params.scale_log2 = kLog2e / std::sqrt(static_cast<float>(head_dim));

  // Split the keys when (batch, head, query tile) blocks alone would leave most SMs idle.
  const int64_t blocks = batch * params.query_tiles * num_heads;
  const int64_t target = 4 * static_cast<int64_t>(multiprocessor_count(device.index()));
  int64_t splits = 1;
  if (blocks < target) {
    splits = std::max<int64_t>(1, std::min(ceil_div(target, blocks), ceil_div(nk, kMinKeysPerSplit)));
  }
  params.keys_per_split = static_cast<int>(ceil_div(nk, splits));
  params.splits = static_cast<int>(ceil_div(nk, params.keys_per_split));
  TORCH_CHECK(
      batch * params.query_tiles <= std::numeric_limits<int>::max() && num_heads * params.splits <= 65535,
      "token_attention: the launch grid is too large for batch ", batch, ", ", nq, " queries and ", num_heads,
      " heads");

  AT_DISPATCH_REDUCED_FLOATING_TYPES(q.scalar_type(), "token_attention", [&] {
    switch (head_dim) {
      case 8:
        launch<scalar_t, 8>(params, q);
        break;
      case 16:
        launch<scalar_t, 16>(params, q);
        break;
      case 32:
        launch<scalar_t, 32>(params, q);
        break;
      default:
        launch<scalar_t, 64>(params, q);
        break;
    }
  });
  return out;
}

// softmax(q k^T / sqrt(head_dim)) v per head. q (B, Nq, C), k/v (B, Nk, C), heads interleaved in C
// (channel h * head_dim + d); key_padding_mask (B, Nk) bool, True = the key takes part.
at::Tensor token_attention_cuda(
    const at::Tensor& q,
    const at::Tensor& k,
    const at::Tensor& v,
    int64_t num_heads,
    const std::optional<at::Tensor>& key_padding_mask) {
  return gathered_token_attention_cuda(q, k, v, num_heads, key_padding_mask, std::nullopt, std::nullopt);
}

}  // namespace
}  // namespace promptseg

// The schemas are in module.cpp; the references, fakes and dispatch in promptseg/ops/decoder_attention.py.
TORCH_LIBRARY_IMPL(promptseg, CUDA, m) {
  m.impl("token_attention", &promptseg::token_attention_cuda);
  m.impl("gathered_token_attention", &promptseg::gathered_token_attention_cuda);
}
