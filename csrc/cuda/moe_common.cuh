// Helpers shared by the CUDA MoE kernels (grouped_mm.cu, moe_permute.cu): 16-byte vectors, the
// host-side alignment test that decides whether a kernel may use them, and a warp sum.
#pragma once

#include <cstdint>
#include <initializer_list>

#include "cuda/common/dispatch.cuh"
#include "cuda/common/launch.cuh"
#include "nemocore/moe.h"

namespace nemocore::cuda::moe {

constexpr int kThreads = 256;  // every MoE kernel runs 8 warps per block
constexpr int kWarps = kThreads / 32;

// Elements of T in one 16-byte vector.
template <typename T>
constexpr int kVecElts = static_cast<int>(16 / sizeof(T));

template <typename T>
struct alignas(16) Vec {
  T v[kVecElts<T>];
};

__host__ __device__ __forceinline__ int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
__host__ __device__ __forceinline__ int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

// The row tile of an M-grouped GEMM block, scheduled without a host sync on the device offsets
// (grouped_mm.cu's header): expert e's tiles of `bm` rows take the slots [off[e] / bm + e, ...)
// of a 1-D list, and `slot` finds its expert by binary search (the last expert whose first slot
// is <= slot). Sets expert, row0 and row_end, and returns false for a gap slot (an expert's
// unused tail, or an expert without rows).
struct RowTile {
  int64_t expert, row0, row_end;
};
__device__ __forceinline__ bool row_tile_of_slot(int64_t slot, const int64_t* off,
                                                 int64_t num_experts, int64_t bm, RowTile& t) {
  int64_t lo = 0, hi = num_experts - 1;
  while (lo < hi) {
    const int64_t mid = (lo + hi + 1) / 2;
    if (off[mid] / bm + mid <= slot) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  t.expert = lo, t.row0 = off[lo] + (slot - off[lo] / bm - lo) * bm, t.row_end = off[lo + 1];
  return t.row0 < t.row_end;
}

// Sum over the 32 lanes of a warp; every lane must call it (the result is valid in lane 0).
template <typename A>
__device__ __forceinline__ A warp_sum(A v) {
  for (int d = 16; d > 0; d /= 2) v += __shfl_down_sync(0xffffffffu, v, d);
  return v;
}

// True when `ptr` is 16-byte aligned and every stride is a whole number of vectors, so that a
// run of vectors starting at a multiple of kVecElts<T> stays aligned.
template <typename T>
inline bool vec_aligned(const void* ptr, std::initializer_list<int64_t> strides) {
  if (reinterpret_cast<uintptr_t>(ptr) % 16 != 0) return false;
  for (const int64_t s : strides) {
    if (s % kVecElts<T> != 0) return false;
  }
  return true;
}

}  // namespace nemocore::cuda::moe
