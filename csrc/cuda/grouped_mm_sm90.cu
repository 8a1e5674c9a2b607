// The M-grouped GEMM of the MoE layer on Hopper tensor cores (wgmma), for bf16/fp16 operands
// that are both K-major (a (T, K) with unit column stride; b (E, N, K) with unit k stride, i.e.
// grouped_mm(trans_b=True) on the (E, N, K) expert weights, the layer's forward):
//   out[rows of e] = a[rows of e] @ b[e]^T          (kernels.md 3.1)
// Optionally the rows of a are gathered through an index (the MoE permute fused into the load:
// row r of the grouped operand is a[a_rows[r]]), so the permuted activations are never written.
//
// Block: 256 threads = two warpgroups; a 128 x 128 output tile, warpgroup g owning rows
// 64 g + [0, 64). The reduction walks 64-wide k slices through a 4-stage ring of shared-memory
// tiles (128-byte swizzled, cuda/common/sm90.cuh) filled by cp.async 16-byte copies, three
// slices ahead of the math; each slice is four wgmma m64n128k16 per warpgroup with fp32
// accumulators. Rows past the expert, columns past N and k past K are zero-filled by the copies,
// so no size needs to be a tile multiple; K must be a multiple of 8 (whole 16-byte chunks).
//
// Scheduling is the one of grouped_mm.cu (no host sync on the device offsets): expert e's row
// tiles take the slots [offsets[e] / BM + e, ...) of a 1-D list, a block finds its expert by
// binary search and leaves if its slot is a gap.
#include <cstdlib>

#include "cuda/common/sm90.cuh"
#include "cuda/grouped_mm_sm90.h"
#include "cuda/moe_common.cuh"

namespace nemocore::cuda {
namespace {

using moe::ceil_div;

constexpr int kBM = 128, kBN = 128, kBK = 64, kStages = 4, kThreads90 = 256;
constexpr int kTileBytes = kBM * kBK * 2;                 // one operand tile of one stage: 16 KiB
constexpr int kStageBytes = 2 * kTileBytes;               // a and b
constexpr int kSmemBytes = kStages * kStageBytes + 1024;  // + alignment slack

// Issues the copies of k slice `slice` of a (gathered rows) and b into stage `stage`.
// Thread t copies chunks t, t + 256, ... of the 128 x 8 chunks of each tile.
template <typename T>
__device__ __forceinline__ void load_slice(unsigned char* smem, int stage, int64_t slice,
                                           const T* const (&a_rows)[4], const T* b, int64_t ldb,
                                           int64_t n_rows, int64_t k) {
  unsigned char* as = smem + stage * kStageBytes;
  unsigned char* bs = as + kTileBytes;
  const int64_t k0 = slice * kBK;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int chunk = threadIdx.x + i * kThreads90, r = chunk / 8, c = chunk % 8;
    const int64_t kk = k0 + c * 8;
    const bool k_ok = kk < k;
    // A zero-filled chunk reads nothing, but its source operand is still a valid address (b).
    const bool a_ok = a_rows[i] != nullptr && k_ok, b_ok = r < n_rows && k_ok;
    sm90::cp_async_16(as + sm90::swizzle128(r, c), a_ok ? a_rows[i] + kk : b, a_ok);
    sm90::cp_async_16(bs + sm90::swizzle128(r, c), b_ok ? b + r * ldb + kk : b, b_ok);
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads90)
    grouped_mm_sm90_kernel(const GroupedMmParams p, int64_t n_tiles) {
  const int64_t slot = blockIdx.x / n_tiles, n0 = (blockIdx.x % n_tiles) * kBN;
  moe::RowTile tile;  // a gap slot leaves before any barrier
  if (!moe::row_tile_of_slot(slot, p.offsets, p.num_experts, kBM, tile)) return;
  const int64_t lo = tile.expert, row0 = tile.row0, row_end = tile.row_end;

  // The source row of each a chunk this thread copies (nullptr past the expert's rows).
  const T* a = static_cast<const T*>(p.a);
  const T* a_src[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int64_t r = row0 + (threadIdx.x + i * kThreads90) / 8;
    const int64_t src = r < row_end ? (p.a_rows != nullptr ? p.a_rows[r] : r) : -1;
    a_src[i] = src >= 0 ? a + src * p.a_row_stride : nullptr;
  }
  const T* b = static_cast<const T*>(p.b) + lo * p.b_expert_stride + n0 * p.b_n_stride;
  const int64_t n_rows = moe::min64(kBN, p.n - n0);
  const int64_t slices = ceil_div(p.k, kBK);

  unsigned char* smem = sm90::dynamic_smem();
  for (int s = 0; s < kStages - 1; ++s) {  // the prologue: slices 0 .. kStages - 2 in flight
    if (s < slices) load_slice<T>(smem, s, s, a_src, b, p.b_n_stride, n_rows, p.k);
    sm90::cp_async_commit();  // empty groups too: one group per slice keeps the count uniform
  }

  const int group = threadIdx.x / 128;
  float acc[64] = {};
  for (int64_t s = 0; s < slices; ++s) {
    sm90::cp_async_wait<kStages - 2>();  // this thread's copies of slice s have landed
    sm90::fence_proxy_async();
    __syncthreads();  // everyone's have; and every warpgroup finished reading slice s - 1
    const int64_t next = s + kStages - 1;  // refills the stage slice s - 1 used
    if (next < slices)
      load_slice<T>(smem, static_cast<int>(next % kStages), next, a_src, b, p.b_n_stride, n_rows,
                    p.k);
    sm90::cp_async_commit();

    const unsigned char* as = smem + (s % kStages) * kStageBytes;
    const unsigned char* bs = as + kTileBytes;
    sm90::wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < kBK / 16; ++kk)
      sm90::wgmma_m64k16<T>(acc, as + group * 64 * 128 + kk * 32, bs + kk * 32);
    sm90::wgmma_commit();
    sm90::wgmma_wait<0>();
  }

  T* out = static_cast<T*>(p.out) + row0 * p.n + n0;
  const int64_t rows = moe::min64(kBM, row_end - row0);
  const int t = threadIdx.x % 128;
#pragma unroll
  for (int i = 0; i < 64; ++i) {
    const int64_t r = group * 64 + sm90::acc_row(t, i), c = sm90::acc_col(t, i);
    if (r < rows && c < n_rows) out[r * p.n + c] = from_acc<T>(acc[i]);
  }
}

template <typename T>
void launch_sm90(const GroupedMmParams& p) {
  const int64_t n_tiles = ceil_div(p.n, kBN);
  const int64_t slots = p.rows / kBM + p.num_experts;
  launch_kernel_smem("grouped_mm_sm90", grouped_mm_sm90_kernel<T>,
                     grid_blocks(slots * n_tiles, "grouped_mm_sm90"), dim3(kThreads90), kSmemBytes,
                     static_cast<cudaStream_t>(p.stream), p, n_tiles);
}

bool aligned16(const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; }

}  // namespace

bool grouped_mm_sm90_supports(const GroupedMmParams& p) {
  const bool half = p.io_dtype == DType::kBFloat16 || p.io_dtype == DType::kFloat16;
  return half && p.a_col_stride == 1 && p.b_k_stride == 1 && p.k % 8 == 0 && aligned16(p.a) &&
         aligned16(p.b) && p.a_row_stride % 8 == 0 && p.b_n_stride % 8 == 0 &&
         p.b_expert_stride % 8 == 0;
}

void grouped_mm_sm90(const GroupedMmParams& p) {
  if (p.rows == 0 || p.n == 0 || p.num_experts == 0) return;  // no output element
  if (!grouped_mm_sm90_supports(p))
    throw std::invalid_argument("nemocore: grouped_mm_sm90: operands not eligible (see header)");
  if (p.io_dtype == DType::kBFloat16) {
    launch_sm90<__nv_bfloat16>(p);
  } else {
    launch_sm90<__half>(p);
  }
}

}  // namespace nemocore::cuda
