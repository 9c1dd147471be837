// Fused windowed/global attention of SAM's ViT image encoder with the decomposed relative
// position bias: out = softmax(scale * q k^T + rel_h + rel_w) v, flash-attention style.
//
// Work split. One CTA (4 warps, 128 threads) computes kVitBlockM = 128 query rows of one
// attended grid (a ws x ws window, or the whole H x W grid) of one image and one head; each warp
// owns 32 of those rows as two m16 tiles. The CTA walks over the keys of the grid in tiles of
// kVitBlockN = 64 and keeps, per row, the running max and sum of the softmax (online softmax,
// in base 2), so the N x N logits and the N x N bias never exist in memory.
//
// Layouts. q, k and v are read straight from the (B, H, W, 3C) output of the qkv projection
// (token (b, y, x) at row (b * H + y) * W + x; channels [q | k | v], each (heads, head_dim)), and
// the output is written straight into (B, H, W, C): no partition or un-partition copies. Window
// positions that fall in the bottom/right padding of the image are not read from qkv: as keys
// they take k = v = the qkv bias (what the projection gives for the zero padding), or zeros
// without a bias; as queries they are computed on zeros and never written.
//
// Tensor cores. All products use mma.sync.m16n8k16 (bf16 or fp16 inputs, fp32 accumulators),
// available on sm_80 and newer, with the register layouts of the PTX ISA: for lane l, g = l / 4 is
// the row group and c = l % 4 the thread in the group;
//   A (16x16): reg 0 = (row g, cols 2c..2c+1), reg 1 = (row g+8, cols 2c..), reg 2 = (row g,
//              cols 2c+8..), reg 3 = (row g+8, cols 2c+8..)
//   B (16x8):  reg 0 = (rows 2c..2c+1, col g), reg 1 = (rows 2c+8..2c+9, col g)
//   C (16x8):  [0], [1] = (row g, cols 2c, 2c+1), [2], [3] = (row g+8, cols 2c, 2c+1)
// Q fragments are loaded once from global memory into registers. K and V tiles are staged in
// shared memory by cp.async and read into B fragments with ldmatrix (ldmatrix.trans for V, whose
// rows are keys). The C fragments of a 16x16 block of probabilities are exactly the A fragment of
// the P.V product, so P never leaves registers.
//
// Relative positions. For query i at (y_i, x_i) of the grid and key j at (y_j, x_j):
//   rel_h[i, y_j] = q_i . Th[y_i - y_j + grid_h - 1],  rel_w[i, x_j] = q_i . Tw[x_i - x_j + grid_w - 1]
// with Th (2 grid_h - 1, d) and Tw (2 grid_w - 1, d) the (already resized) tables. A prologue
// computes G = Q T^T on the tensor cores for all table rows and scatters G[i, t] into
// rel[i][grid_h - 1 + y_i - t] (resp. x), an fp32 array of grid_h + grid_w values per query row in
// shared memory. The main loop then adds rel[i][y_j] + rel[i][grid_h + x_j] to each logit.
//
// Pipeline (single K and V buffers, loads overlapped with math):
//   wait K(t); sync; start V(t); S = Q K(t)^T + bias; online softmax;
//   wait V(t); sync; start K(t+1); O += P V(t)
// Each sync also guarantees that every warp is done with the buffer that the next copy overwrites.
#include "encoder_attention.cuh"

#include <cstdint>
#include <cstring>
#include <type_traits>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace promptseg {
namespace {

constexpr float kLog2e = 1.4426950408889634f;
constexpr int kWarpRows = 32;  // query rows per warp: two m16 tiles
constexpr int kMTiles = 2;
static_assert(kVitBlockM == 4 * kWarpRows && kVitThreads == 128, "4 warps of 32 query rows");
static_assert(kVitBlockN == kVitThreads / 2, "two threads copy each row of a K/V tile");

// ---- PTX wrappers -----------------------------------------------------------------------------

__device__ __forceinline__ uint32_t shared_address(const void* pointer) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(pointer));
}

// 16-byte asynchronous copy global -> shared (bypassing L1). With valid == false nothing is read
// and the 16 bytes are zero-filled; `global` must still be a valid address.
__device__ __forceinline__ void cp_async_16(void* shared, const void* global, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(shared_address(shared)), "l"(global),
               "r"(valid ? 16 : 0)
               : "memory");
}

__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }

__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_group 0;\n" ::: "memory"); }

// Four 8x8 matrices of 16-bit elements: lane l gives the address of row l % 8 of matrix l / 8
// (16 contiguous, 16-byte aligned bytes); register m receives elements (row l / 4, cols
// 2 (l % 4), 2 (l % 4) + 1) of matrix m. The "memory" clobber keeps the compiler from moving the
// shared-memory read across the barriers and cp.async waits that make the data valid.
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&regs)[4], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(regs[0]), "=r"(regs[1]), "=r"(regs[2]), "=r"(regs[3])
               : "r"(shared_address(row))
               : "memory");
}

// As ldmatrix_x4 with every matrix transposed: register m receives elements (rows 2 (l % 4),
// 2 (l % 4) + 1, col l / 4) of matrix m as stored.
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&regs)[4], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(regs[0]), "=r"(regs[1]), "=r"(regs[2]), "=r"(regs[3])
               : "r"(shared_address(row))
               : "memory");
}

// acc (16x8, fp32) += a (16x16) * b (16x8), fragments as described at the top of the file.
template <typename Element>
__device__ __forceinline__ void mma_16816(float (&acc)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  if constexpr (std::is_same_v<Element, __nv_bfloat16>) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(acc[0]), "+f"(acc[1]), "+f"(acc[2]), "+f"(acc[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else {
    static_assert(std::is_same_v<Element, __half>, "bf16 or fp16");
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(acc[0]), "+f"(acc[1]), "+f"(acc[2]), "+f"(acc[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
}

// Two floats rounded to the 16-bit type, `low` in the low half (the lower column / address).
template <typename Element>
__device__ __forceinline__ uint32_t pack2(float low, float high) {
  uint32_t bits;
  if constexpr (std::is_same_v<Element, __nv_bfloat16>) {
    const __nv_bfloat162 pair = __floats2bfloat162_rn(low, high);
    memcpy(&bits, &pair, sizeof(bits));
  } else {
    const __half2 pair = __floats2half2_rn(low, high);
    memcpy(&bits, &pair, sizeof(bits));
  }
  return bits;
}

// ---- Geometry ---------------------------------------------------------------------------------

// One attended grid (a window, or the whole image) of one image: maps a grid position j
// (row-major over grid_h x grid_w) to its token in the un-partitioned (B, H, W, *) tensors.
struct AttendedGrid {
  int image;
  int origin_y;  // top-left token of the window in the image grid
  int origin_x;
  int grid_w;
  int length;    // grid_h * grid_w
  int height;    // the image token grid
  int width;

  // Token index (image * H + y) * W + x of position j < length, or -1 where the window hangs over
  // the bottom/right edge of the image (the zero padding of the official implementation).
  __device__ __forceinline__ int64_t token(int j) const {
    const int y = origin_y + j / grid_w;
    const int x = origin_x + j % grid_w;
    if (y >= height || x >= width) return -1;
    return (static_cast<int64_t>(image) * height + y) * width + x;
  }
};

// ---- The kernel -------------------------------------------------------------------------------

template <typename Element, int kHeadDim>
__global__ void __launch_bounds__(kVitThreads) vit_attention_kernel(const VitAttentionParams p) {
  static_assert(kHeadDim % 16 == 0, "head_dim must be a multiple of 16");
  constexpr int kStride = kHeadDim + 8;    // shared row stride (elements): 16-byte aligned rows whose
                                           // 16-byte segments fall in distinct bank groups for ldmatrix
  constexpr int kKSteps = kHeadDim / 16;   // k16 steps of q.k
  constexpr int kDBlocks = kHeadDim / 8;   // n8 column blocks of the output
  constexpr int kKeyBlocks = kVitBlockN / 8;  // n8 key blocks of a tile
  constexpr int kCopyChunks = kHeadDim / 16;  // 16-byte chunks per thread for one row of a tile

  extern __shared__ __align__(16) unsigned char shared_memory[];
  Element* k_tile = reinterpret_cast<Element*>(shared_memory);  // (kVitBlockN, kStride); also table rows
  Element* v_tile = k_tile + kVitBlockN * kStride;                // (kVitBlockN, kStride)
  float* rel = reinterpret_cast<float*>(v_tile + kVitBlockN * kStride);  // (kVitBlockM, rel_stride), base 2

  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  const int group = lane / 4;  // fragment row group
  const int quad = lane % 4;   // thread in the group

  // blockIdx.x = ((image * windows_per_image + window) * heads + head) * q_tiles + q_tile: the query
  // tiles of one (image, window, head) are neighbours and share its K/V in L2.
  const int length = p.grid_h * p.grid_w;
  const int q_tiles = (length + kVitBlockM - 1) / kVitBlockM;
  const int q_tile = static_cast<int>(blockIdx.x) % q_tiles;
  int index = static_cast<int>(blockIdx.x) / q_tiles;
  const int head = index % p.heads;
  index /= p.heads;
  const int window = index % p.windows_per_image;
  const AttendedGrid grid{index / p.windows_per_image,
                          window / p.windows_x * p.grid_h,
                          window % p.windows_x * p.grid_w,
                          p.grid_w,
                          length,
                          p.height,
                          p.width};

  const Element* qkv = static_cast<const Element*>(p.qkv);
  const Element* qkv_bias = static_cast<const Element*>(p.qkv_bias);
  const int64_t token_stride = 3 * static_cast<int64_t>(p.channels);
  const int head_offset = head * kHeadDim;
  const int q0 = q_tile * kVitBlockM;       // first grid position of the CTA's queries
  const int warp_row0 = warp * kWarpRows;   // first CTA-local row of this warp
  // A warp whose 32 rows all lie past the end of the grid only helps with copies and barriers.
  const bool warp_active = q0 + warp_row0 < length;
  const bool has_rel = p.table_h != nullptr;
  const int rel_stride = vit_rel_row_stride(p.grid_h, p.grid_w);

  // The CTA-local row of fragment element half h (0: row g, 1: row g + 8) of m-tile mt.
  auto local_row = [&](int mt, int h) { return warp_row0 + mt * 16 + h * 8 + group; };

  // Rows of K or V (which = 1 or 2) for grid positions [kv0, kv0 + kVitBlockN) into `tile`.
  // Thread t copies row t / 2, 16-byte chunks t % 2, t % 2 + 2, ...: the two threads of a row
  // read adjacent chunks, i.e. whole 32-byte sectors.
  auto load_kv_tile = [&](Element* tile, int kv0, int which) {
    const int row = threadIdx.x / 2;
    const int j = kv0 + row;
    const Element* source = nullptr;
    if (j < length) {
      const int64_t token = grid.token(j);
      if (token >= 0) {
        source = qkv + token * token_stride + which * p.channels + head_offset;
      } else if (qkv_bias != nullptr) {
        source = qkv_bias + which * p.channels + head_offset;
      }
    }
#pragma unroll
    for (int c = 0; c < kCopyChunks; ++c) {
      const int chunk = 2 * c + threadIdx.x % 2;
      cp_async_16(tile + row * kStride + chunk * 8, source != nullptr ? source + chunk * 8 : qkv, source != nullptr);
    }
  };

  // ---- Q fragments: read once from global memory, zeros for rows that are not tokens --------
  uint32_t q_frag[kMTiles][kKSteps][4];
#pragma unroll
  for (int mt = 0; mt < kMTiles; ++mt) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int i = q0 + local_row(mt, h);
      const int64_t token = i < length ? grid.token(i) : -1;
      const Element* row = token >= 0 ? qkv + token * token_stride + head_offset : nullptr;
#pragma unroll
      for (int ks = 0; ks < kKSteps; ++ks) {
        const int col = ks * 16 + 2 * quad;
        q_frag[mt][ks][h] = row != nullptr ? *reinterpret_cast<const uint32_t*>(row + col) : 0u;
        q_frag[mt][ks][2 + h] = row != nullptr ? *reinterpret_cast<const uint32_t*>(row + col + 8) : 0u;
      }
    }
  }

  // acc[mt][n] += (Q of m-tile mt) . T^T for the rows T of `tile` (keys, or rel-pos table rows) in
  // n8 block n; pairs of blocks from row `valid_rows` on are skipped (their rows are zeros).
  auto q_times_rows = [&](float (&acc)[kMTiles][kKeyBlocks][4], const Element* tile, int valid_rows) {
#pragma unroll
    for (int n0 = 0; n0 < kVitBlockN; n0 += 16) {
      if (n0 >= valid_rows) break;  // warp-uniform
#pragma unroll
      for (int ks = 0; ks < kKSteps; ++ks) {
        // Matrices: rows [n0, n0 + 8) at columns [ks * 16, +8) and [ks * 16 + 8, +8), then the same
        // for rows [n0 + 8, n0 + 16): the B fragments of blocks n0 / 8 (regs 0, 1) and n0 / 8 + 1.
        const int row = n0 + (lane & 7) + ((lane >> 4) << 3);
        const int col = ks * 16 + ((lane >> 3) & 1) * 8;
        uint32_t b[4];
        ldmatrix_x4(b, tile + row * kStride + col);
#pragma unroll
        for (int mt = 0; mt < kMTiles; ++mt) {
          mma_16816<Element>(acc[mt][n0 / 8], q_frag[mt][ks], b[0], b[1]);
          mma_16816<Element>(acc[mt][n0 / 8 + 1], q_frag[mt][ks], b[2], b[3]);
        }
      }
    }
  };

  // ---- Prologue: rel-pos logits of the CTA's rows, rel[r][0, grid_h) and rel[r][grid_h, +grid_w)
  if (has_rel) {
#pragma unroll 1
    for (int axis = 0; axis < 2; ++axis) {
      const Element* table = static_cast<const Element*>(axis == 0 ? p.table_h : p.table_w);
      const int side = axis == 0 ? p.grid_h : p.grid_w;
      const int table_rows = 2 * side - 1;
      float* rel_axis = rel + (axis == 0 ? 0 : p.grid_h);
      // Grid coordinate of each of this thread's 4 rows along the axis (0 for rows past the end,
      // whose q is zero: their rel values are then all written, as zeros).
      int coordinate[kMTiles][2];
#pragma unroll
      for (int mt = 0; mt < kMTiles; ++mt) {
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const int i = q0 + local_row(mt, h);
          coordinate[mt][h] = i >= length ? 0 : (axis == 0 ? i / p.grid_w : i % p.grid_w);
        }
      }
#pragma unroll 1
      for (int t0 = 0; t0 < table_rows; t0 += kVitBlockN) {
        {  // table rows [t0, t0 + kVitBlockN) into k_tile, zeros past the end
          const int row = threadIdx.x / 2;
          const bool valid = t0 + row < table_rows;
          const Element* source = table + static_cast<int64_t>(valid ? t0 + row : 0) * kHeadDim;
#pragma unroll
          for (int c = 0; c < kCopyChunks; ++c) {
            const int chunk = 2 * c + threadIdx.x % 2;
            cp_async_16(k_tile + row * kStride + chunk * 8, source + chunk * 8, valid);
          }
          cp_async_commit();
          cp_async_wait_all();
          __syncthreads();
        }
        if (warp_active) {
          float g[kMTiles][kKeyBlocks][4] = {};
          q_times_rows(g, k_tile, table_rows - t0);
          // g[i, t] = q_i . T[t] is rel[i][side - 1 + coordinate_i - t]; each (row, key coordinate)
          // pair is produced by exactly one table row t.
#pragma unroll
          for (int mt = 0; mt < kMTiles; ++mt) {
#pragma unroll
            for (int nb = 0; nb < kKeyBlocks; ++nb) {
#pragma unroll
              for (int e = 0; e < 4; ++e) {
                const int h = e / 2;
                const int t = t0 + nb * 8 + 2 * quad + e % 2;
                const int key = side - 1 + coordinate[mt][h] - t;
                if (t < table_rows && key >= 0 && key < side) {
                  rel_axis[local_row(mt, h) * rel_stride + key] = g[mt][nb][e] * kLog2e;
                }
              }
            }
          }
        }
        __syncthreads();  // k_tile is overwritten next; rel is complete after the last step
      }
    }
  }

  // ---- Main loop over key tiles -----------------------------------------------------------------
  float out_acc[kMTiles][kDBlocks][4] = {};
  float row_max[kMTiles][2];
  float row_sum[kMTiles][2];  // per-thread partial sums over the columns this thread holds
#pragma unroll
  for (int mt = 0; mt < kMTiles; ++mt) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      row_max[mt][h] = -INFINITY;
      row_sum[mt][h] = 0.0f;
    }
  }

  load_kv_tile(k_tile, 0, 1);
  cp_async_commit();
#pragma unroll 1
  for (int kv0 = 0; kv0 < length; kv0 += kVitBlockN) {
    cp_async_wait_all();
    __syncthreads();  // K(t) visible to all; all warps are done with V(t-1)
    load_kv_tile(v_tile, kv0, 2);
    cp_async_commit();

    // Scores of this tile, then probabilities (unnormalised), as C fragments.
    float s[kMTiles][kKeyBlocks][4] = {};
    if (warp_active) {
      q_times_rows(s, k_tile, length - kv0);

      // Base-2 logits: s * scale * log2(e) + rel[y_j] + rel[grid_h + x_j] (rel already in base 2);
      // -inf for positions past the end of the grid. (key_y, key_x) is the grid position of this
      // thread's first column (2 * quad) of key block nb; its second column is the next position.
      int key_y = (kv0 + 2 * quad) / p.grid_w;
      int key_x = (kv0 + 2 * quad) % p.grid_w;
#pragma unroll
      for (int nb = 0; nb < kKeyBlocks; ++nb) {
        const int j = kv0 + nb * 8 + 2 * quad;
        int next_y = key_y;
        int next_x = key_x + 1;
        if (next_x == p.grid_w) {
          next_x = 0;
          ++next_y;
        }
#pragma unroll
        for (int mt = 0; mt < kMTiles; ++mt) {
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            const float* rel_row = rel + local_row(mt, h) * rel_stride;
            float& first = s[mt][nb][2 * h];
            float& second = s[mt][nb][2 * h + 1];
            if (j < length) {
              first = has_rel ? first * p.scale_log2 + (rel_row[key_y] + rel_row[p.grid_h + key_x])
                              : first * p.scale_log2;
            } else {
              first = -INFINITY;
            }
            if (j + 1 < length) {
              second = has_rel ? second * p.scale_log2 + (rel_row[next_y] + rel_row[p.grid_h + next_x])
                               : second * p.scale_log2;
            } else {
              second = -INFINITY;
            }
          }
        }
        key_x += 8;
        while (key_x >= p.grid_w) {  // at most once for grids at least 8 wide
          key_x -= p.grid_w;
          ++key_y;
        }
      }

      // Online softmax per row: the quad of threads holding a row agree on its new max, rescale
      // the running output and sum by 2^(old max - new max), and turn scores into 2^(s - max).
#pragma unroll
      for (int mt = 0; mt < kMTiles; ++mt) {
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          float tile_max = row_max[mt][h];
#pragma unroll
          for (int nb = 0; nb < kKeyBlocks; ++nb) {
            tile_max = fmaxf(tile_max, fmaxf(s[mt][nb][2 * h], s[mt][nb][2 * h + 1]));
          }
          tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1));
          tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 2));
          // Every tile holds at least one valid key, so tile_max is finite for finite inputs; the
          // guard keeps exp2 away from (-inf) - (-inf) regardless.
          const float base = tile_max == -INFINITY ? 0.0f : tile_max;
          const float rescale = exp2f(row_max[mt][h] - base);
          row_max[mt][h] = tile_max;
          float sum = 0.0f;
#pragma unroll
          for (int nb = 0; nb < kKeyBlocks; ++nb) {
            s[mt][nb][2 * h] = exp2f(s[mt][nb][2 * h] - base);
            s[mt][nb][2 * h + 1] = exp2f(s[mt][nb][2 * h + 1] - base);
            sum += s[mt][nb][2 * h] + s[mt][nb][2 * h + 1];
          }
          row_sum[mt][h] = row_sum[mt][h] * rescale + sum;
#pragma unroll
          for (int db = 0; db < kDBlocks; ++db) {
            out_acc[mt][db][2 * h] *= rescale;
            out_acc[mt][db][2 * h + 1] *= rescale;
          }
        }
      }
    }

    cp_async_wait_all();
    __syncthreads();  // V(t) visible to all; all warps are done with K(t)
    if (kv0 + kVitBlockN < length) {
      load_kv_tile(k_tile, kv0 + kVitBlockN, 1);
      cp_async_commit();
    }

    if (warp_active) {
      // O += P V: the C fragments of key blocks 2 ks and 2 ks + 1 form the A fragment of k16 step ks.
#pragma unroll
      for (int ks = 0; ks < kVitBlockN / 16; ++ks) {
        if (kv0 + ks * 16 >= length) break;  // warp-uniform: all probabilities past here are 0
        uint32_t a[kMTiles][4];
#pragma unroll
        for (int mt = 0; mt < kMTiles; ++mt) {
          a[mt][0] = pack2<Element>(s[mt][2 * ks][0], s[mt][2 * ks][1]);
          a[mt][1] = pack2<Element>(s[mt][2 * ks][2], s[mt][2 * ks][3]);
          a[mt][2] = pack2<Element>(s[mt][2 * ks + 1][0], s[mt][2 * ks + 1][1]);
          a[mt][3] = pack2<Element>(s[mt][2 * ks + 1][2], s[mt][2 * ks + 1][3]);
        }
#pragma unroll
        for (int d0 = 0; d0 < kHeadDim; d0 += 16) {
          // Matrices: keys [0, 8) and [8, 16) of the step for columns [d0, d0 + 8), then the same
          // for [d0 + 8, d0 + 16); transposed, they are the B fragments of output blocks d0 / 8
          // (regs 0, 1) and d0 / 8 + 1 (regs 2, 3).
          const int key = ks * 16 + (lane & 7) + ((lane >> 3) & 1) * 8;
          const int col = d0 + (lane >> 4) * 8;
          uint32_t b[4];
          ldmatrix_x4_trans(b, v_tile + key * kStride + col);
#pragma unroll
          for (int mt = 0; mt < kMTiles; ++mt) {
            mma_16816<Element>(out_acc[mt][d0 / 8], a[mt], b[0], b[1]);
            mma_16816<Element>(out_acc[mt][d0 / 8 + 1], a[mt], b[2], b[3]);
          }
        }
      }
    }
  }

  // ---- Epilogue: normalise and write the rows that are tokens of the image ------------------------
  if (warp_active) {
    Element* out = static_cast<Element*>(p.out);
#pragma unroll
    for (int mt = 0; mt < kMTiles; ++mt) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        float sum = row_sum[mt][h];
        sum += __shfl_xor_sync(0xffffffffu, sum, 1);
        sum += __shfl_xor_sync(0xffffffffu, sum, 2);
        const float inverse = 1.0f / sum;
        const int i = q0 + local_row(mt, h);
        const int64_t token = i < length ? grid.token(i) : -1;
        if (token < 0) continue;
        Element* row = out + token * p.channels + head_offset;
#pragma unroll
        for (int db = 0; db < kDBlocks; ++db) {
          *reinterpret_cast<uint32_t*>(row + db * 8 + 2 * quad) =
              pack2<Element>(out_acc[mt][db][2 * h] * inverse, out_acc[mt][db][2 * h + 1] * inverse);
        }
      }
    }
  }
}

template <typename Element, int kHeadDim>
cudaError_t launch_typed(const VitAttentionParams& params, size_t smem_bytes, cudaStream_t stream) {
  auto* kernel = vit_attention_kernel<Element, kHeadDim>;
  if (smem_bytes > 48 * 1024) {
    const cudaError_t status =
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem_bytes));
    if (status != cudaSuccess) return status;
  }
  const int length = params.grid_h * params.grid_w;
  const int64_t blocks = static_cast<int64_t>((length + kVitBlockM - 1) / kVitBlockM) * params.batch *
                         params.windows_per_image * params.heads;
  kernel<<<static_cast<unsigned>(blocks), kVitThreads, smem_bytes, stream>>>(params);
  return cudaGetLastError();
}

}  // namespace

static_assert(limits::kVitHeadDims == std::array<int, 2>{64, 80}, "launch_vit_attention instantiates head dims 64 and 80");

cudaError_t launch_vit_attention(const VitAttentionParams& params, bool bf16, int head_dim, size_t smem_bytes,
                                 cudaStream_t stream) {
  if (head_dim == 64) {
    return bf16 ? launch_typed<__nv_bfloat16, 64>(params, smem_bytes, stream)
                : launch_typed<__half, 64>(params, smem_bytes, stream);
  }
  return bf16 ? launch_typed<__nv_bfloat16, 80>(params, smem_bytes, stream)
              : launch_typed<__half, 80>(params, smem_bytes, stream);
}

}  // namespace promptseg
