// Mixture of Experts: params structs of the grouped GEMMs and the token permute kernels, shared by
// the CPU and CUDA kernels (kernels.md section 3).
//
// Letters: T rows of the grouped operand (tokens * top-k after the permute), E experts, K the
// reduction width, N the output width, k top-k.
//
// Expert e owns the rows [offsets[e], offsets[e + 1]) of the grouped operands: `offsets` is the
// exclusive prefix sum of the rows per expert, (E + 1,) int64, offsets[0] = 0, offsets[E] = T,
// non-decreasing (the binding checks it). An expert with no rows is legal and costs nothing.
//
// Element types: io (io_dtype: float32, float16, bfloat16 or float64) for the matrices; arithmetic
// and accumulation in acc (float64 for float64 io, float32 otherwise); one rounding on the store.
// Strides are in elements; inputs may have any strides (a transposed operand is a stride swap,
// never a copy); outputs are contiguous.
#pragma once

#include <cstdint>

#include "nemocore/common.h"

namespace nemocore {

// M-grouped GEMM (grouped_gemm's gmm, forward and the input gradient):
//   out[rows of e] (T_e x N) = a[rows of e] (T_e x K) @ b[e] (K x N)
// b is the logical (E, K, N) operand: grouped_mm(trans_b=True) passes a (E, N, K) tensor with
// its last two strides swapped.
struct GroupedMmParams {
  int64_t rows = 0, k = 0, n = 0, num_experts = 0;
  DType io_dtype = DType::kFloat32;

  const void* a = nullptr;  // (T, K), io; with a_rows: (any rows, K)
  int64_t a_row_stride = 0, a_col_stride = 0;
  // (T,) or nullptr: row r of the grouped operand is a[a_rows[r]] (the MoE permute fused into
  // the GEMM's load, so the permuted copy of the activations is never written). On the kernel's
  // device; every entry a valid row of a (the binding checks it on the CPU).
  const int64_t* a_rows = nullptr;
  const void* b = nullptr;  // logical (E, K, N), io
  int64_t b_expert_stride = 0, b_k_stride = 0, b_n_stride = 0;
  const int64_t* offsets = nullptr;  // (E + 1,) on the kernel's device
  void* out = nullptr;               // (T, N), io, contiguous

  int num_threads = 1;     // CPU only
  void* stream = nullptr;  // CUDA only: the cudaStream_t to launch on
};

// K-grouped GEMM (the weight gradient: the reduction runs over each expert's rows):
//   out[e] (M x N) = x[rows of e]^T (M x T_e) @ y[rows of e] (T_e x N);  zero rows give zeros
// For b (E, K, N): db = grouped_mm_wgrad(x = a, y = dout); for trans_b, b (E, N, K):
// db = grouped_mm_wgrad(x = dout, y = a).
struct GroupedMmWgradParams {
  int64_t rows = 0, m = 0, n = 0, num_experts = 0;
  DType io_dtype = DType::kFloat32;

  const void* x = nullptr;  // (T, M), io
  int64_t x_row_stride = 0, x_col_stride = 0;
  const void* y = nullptr;  // (T, N), io
  int64_t y_row_stride = 0, y_col_stride = 0;
  const int64_t* offsets = nullptr;  // (E + 1,) on the kernel's device
  void* out = nullptr;               // (E, M, N), io, contiguous, fully overwritten

  int num_threads = 1;
  void* stream = nullptr;
};

// Row gather, the permute and the unpermute backward:
//   out[r, :] = scale[r] * src[index[r], :]      (scale omitted: 1)
struct MoeGatherParams {
  int64_t rows = 0, cols = 0, src_rows = 0;
  DType io_dtype = DType::kFloat32;

  const void* src = nullptr;  // (src_rows, cols), io
  int64_t src_row_stride = 0, src_col_stride = 0;
  const int64_t* index = nullptr;  // (rows,), contiguous, each in [0, src_rows)
  const void* scale = nullptr;     // (rows,), acc, contiguous, or nullptr
  void* out = nullptr;             // (rows, cols), io, contiguous

  int num_threads = 1;
  void* stream = nullptr;
};

// Weighted combine of each token's k rows, the unpermute and the permute backward:
//   out[t, :] = sum_j weights[t, j] * src[row_map[t, j], :]   (weights omitted: 1)
// Summed in acc in the order j = 0, 1, ..., k - 1, so results do not depend on threads.
struct MoeCombineParams {
  int64_t tokens = 0, topk = 0, cols = 0, src_rows = 0;
  DType io_dtype = DType::kFloat32;

  const void* src = nullptr;  // (src_rows, cols), io
  int64_t src_row_stride = 0, src_col_stride = 0;
  const int64_t* row_map = nullptr;  // (tokens, topk), contiguous, each in [0, src_rows)
  const void* weights = nullptr;     // (tokens, topk), acc, contiguous, or nullptr
  void* out = nullptr;               // (tokens, cols), io, contiguous

  int num_threads = 1;
  void* stream = nullptr;
};

// The combine weights' gradient (unpermute backward):
//   dweights[t, j] = sum_c dy[t, c] * src[row_map[t, j], c]      (in acc)
struct MoeCombineWgradParams {
  int64_t tokens = 0, topk = 0, cols = 0, src_rows = 0;
  DType io_dtype = DType::kFloat32;

  const void* dy = nullptr;  // (tokens, cols), io
  int64_t dy_row_stride = 0, dy_col_stride = 0;
  const void* src = nullptr;  // (src_rows, cols), io
  int64_t src_row_stride = 0, src_col_stride = 0;
  const int64_t* row_map = nullptr;  // (tokens, topk), contiguous
  void* dweights = nullptr;          // (tokens, topk), acc, contiguous

  int num_threads = 1;
  void* stream = nullptr;
};

// The permute's index computation, a stable counting sort of the (token, slot) pairs by expert
// (CPU only; on a GPU the op uses torch's stable sort):
//   counts[e]            rows of expert e
//   row_map[t, j]        the row of pair (t, j) in expert order (ties keep token order)
//   source[r]            the pair flat index t * k + j that row r came from
struct MoeSortParams {
  int64_t tokens = 0, topk = 0, num_experts = 0;
  DType id_dtype = DType::kInt64;  // int32 or int64

  const void* topk_ids = nullptr;  // (tokens, topk), contiguous, each in [0, E)
  int64_t* counts = nullptr;       // (E,)
  int64_t* row_map = nullptr;      // (tokens, topk)
  int64_t* source = nullptr;       // (tokens * topk,)
  int num_threads = 1;
};

namespace cpu {
void grouped_mm(const GroupedMmParams& p);
void grouped_mm_wgrad(const GroupedMmWgradParams& p);
void moe_gather(const MoeGatherParams& p);
void moe_combine(const MoeCombineParams& p);
void moe_combine_wgrad(const MoeCombineWgradParams& p);
void moe_sort(const MoeSortParams& p);
}  // namespace cpu

namespace cuda {
// Launch on p.stream (asynchronous); throw std::runtime_error on a launch failure. Built when
// CMake defines NEMOCORE_WITH_CUDA_MOE (csrc/cuda/grouped_mm.cu and csrc/cuda/moe_permute.cu).
void grouped_mm(const GroupedMmParams& p);
void grouped_mm_wgrad(const GroupedMmWgradParams& p);
void moe_gather(const MoeGatherParams& p);
void moe_combine(const MoeCombineParams& p);
void moe_combine_wgrad(const MoeCombineWgradParams& p);
}  // namespace cuda

}  // namespace nemocore
