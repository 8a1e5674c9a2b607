// Pieces shared by the Mamba-2 SSD CUDA kernels (ssd_update.cu, ssd_fwd.cu, ssd_bwd.cu):
// compute-type math (exp, log1p, sigmoid, silu), the dt processing of kernels.md 2.1 and its
// derivative, a warp sum, and index helpers.
//
// The math mirrors csrc/cpu/kernels/ssd_common.h so that both backends compute the same
// values: accurate expf/exp and log1pf/log1p (no fast-math intrinsics), softplus the identity
// above 20, the dt_limit clamp only when requested.
#pragma once

#include <cstdint>

#include "cuda/common/dispatch.cuh"
#include "cuda/common/launch.cuh"
#include "nemocore/ssd.h"

namespace nemocore::cuda::ssd {

__host__ __device__ __forceinline__ int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}
__host__ __device__ __forceinline__ int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

__device__ __forceinline__ float exp_acc(float v) { return expf(v); }
__device__ __forceinline__ double exp_acc(double v) { return exp(v); }
__device__ __forceinline__ float log1p_acc(float v) { return log1pf(v); }
__device__ __forceinline__ double log1p_acc(double v) { return log1p(v); }

template <typename A>
__device__ __forceinline__ A silu(A v) {
  return v / (A(1) + exp_acc(-v));
}

// kernels.md 2.1: bias, softplus (identity above 20), clamp.
template <typename A>
__device__ __forceinline__ A process_dt(A raw, A bias, bool softplus, bool limit, A lo, A hi) {
  A v = raw + bias;
  if (softplus && v <= A(20)) v = log1p_acc(exp_acc(v));
  if (limit && (v < lo || v > hi)) v = v < lo ? lo : hi;
  return v;
}

template <typename A>
__device__ __forceinline__ A sigmoid(A v) {
  return A(1) / (A(1) + exp_acc(-v));
}

// d dt / d raw of process_dt: the softplus' sigmoid below 20, zero where the clamp is active.
template <typename A>
__device__ __forceinline__ A dt_slope(A raw, A bias, bool softplus, bool limit, A lo, A hi) {
  A v = raw + bias, d = A(1);
  if (softplus && v <= A(20)) {
    d = sigmoid(v);
    v = log1p_acc(exp_acc(v));
  }
  if (limit && (v < lo || v > hi)) d = A(0);
  return d;
}

// Sum over the 32 lanes of a warp; lane 0 gets the total.
template <typename A>
__device__ __forceinline__ A warp_sum(A v) {
  for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
  return v;
}

}  // namespace nemocore::cuda::ssd
