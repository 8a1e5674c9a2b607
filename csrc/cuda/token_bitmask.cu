// Applying a grammar's token bitmask to logits on CUDA (decoding.md 4.8), the CUDA side of
// csrc/cpu/kernels/token_bitmask.cpp with the same semantics: token 32*w + j of a masked row
// gets -inf unless bit j of mask word w is set; tokens past the mask's words get -inf.
//
// One thread per 32-token mask word, 256 threads per block, a 1-D grid of
// num_rows * blocks_per_row blocks. Elements are written through their bit patterns (one -inf
// per width), so the kernel is typed by the element width only. A thread loads its word once;
// all-ones words (everything allowed) return at once.
#include <cstdint>

#include "cuda/common/check.cuh"
#include "cuda/common/launch.cuh"
#include "nemocore/token_bitmask.h"

namespace nemocore::cuda {
namespace {

constexpr int kThreads = 256;

// ---- device code ----------------------------------------------------------------------------

template <typename U>
__global__ void __launch_bounds__(kThreads)
    token_bitmask_kernel(const TokenBitmaskParams p, int64_t blocks_per_row, U neg) {
  const int64_t i = int64_t(blockIdx.x) / blocks_per_row;
  const int64_t w = (int64_t(blockIdx.x) % blocks_per_row) * kThreads + threadIdx.x;
  const int64_t first = 32 * w;
  if (first >= p.vocab) return;
  const int64_t row = p.rows ? p.rows[i] : i;
  const uint32_t* mask = reinterpret_cast<const uint32_t*>(p.bitmask) + row * p.mask_row_stride;
  const uint32_t bits = w < p.mask_words ? mask[w] : 0u;
  const int64_t left = p.vocab - first;
  const int n = left < 32 ? static_cast<int>(left) : 32;
  if (n == 32 && bits == 0xFFFFFFFFu) return;
  U* x = static_cast<U*>(p.logits) + row * p.logits_row_stride + first * p.logits_col_stride;
  for (int j = 0; j < n; ++j) {
    if (!((bits >> j) & 1u)) x[j * p.logits_col_stride] = neg;
  }
}

// ---- launchers ------------------------------------------------------------------------------

template <typename U>
void launch(const TokenBitmaskParams& p, U neg) {
  const int64_t words = (p.vocab + 31) / 32;
  const int64_t blocks_per_row = (words + kThreads - 1) / kThreads;
  const unsigned grid = grid_blocks(p.num_rows * blocks_per_row, "apply_token_bitmask");
  launch_kernel("apply_token_bitmask", token_bitmask_kernel<U>, grid, dim3(kThreads),
                reinterpret_cast<cudaStream_t>(p.stream), p, blocks_per_row, neg);
}

}  // namespace

// ---- dispatch -------------------------------------------------------------------------------

void apply_token_bitmask(const TokenBitmaskParams& p) {
  if (p.num_rows == 0 || p.vocab == 0) return;
  switch (p.dtype) {
    case DType::kBFloat16: launch<uint16_t>(p, uint16_t(0xFF80u)); break;
    case DType::kFloat16: launch<uint16_t>(p, uint16_t(0xFC00u)); break;
    case DType::kFloat32: launch<uint32_t>(p, 0xFF800000u); break;
    case DType::kFloat64: launch<uint64_t>(p, 0xFFF0000000000000ull); break;
    default: throw std::invalid_argument("apply_token_bitmask: logits must be a float tensor");
  }
}

}  // namespace nemocore::cuda
