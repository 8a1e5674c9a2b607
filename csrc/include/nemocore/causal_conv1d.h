// Depthwise causal conv1d: params structs shared by the CPU and CUDA kernels.
//
// Math (per channel c, taps w[c, 0..K-1]):
//   pre[c, t] = bias[c] + sum_k w[c, k] * x[c, t - (K-1) + k]
// where x[c, t < 0] comes from initial_states (or is zero), and, with seq_idx, a tap contributes
// only when seq_idx[t - (K-1) + k] == seq_idx[t] (packed sequences never see each other).
// y = silu(pre) when `silu`, else pre.
//
// Letters: b batch, C channels (dim), L seqlen, K width, S conv-state length (>= K-1).
// Strides are in elements. `io_dtype` is the dtype of x, y, initial/final states and their
// gradients; weight, bias and their gradients are float64 when io_dtype is float64 and float32
// otherwise (the binding layer casts them), and every kernel accumulates in that type.
#pragma once

#include <cstdint>

#include "nemocore/common.h"

namespace nemocore {

struct CausalConv1dFwdParams {
  int64_t batch = 0, dim = 0, seqlen = 0, width = 0;
  DType io_dtype = DType::kFloat32;
  bool silu = false;

  const void* x = nullptr;  // (b, C, L)
  int64_t x_batch_stride = 0, x_dim_stride = 0, x_seq_stride = 0;
  const void* weight = nullptr;      // (C, K), contiguous, float32 (float64 for float64 io)
  const void* bias = nullptr;        // (C,) or nullptr, same type as weight
  const int32_t* seq_idx = nullptr;  // (b, L) or nullptr
  int64_t seq_idx_batch_stride = 0, seq_idx_seq_stride = 0;
  const void* initial_states = nullptr;  // (b, C, K-1) or nullptr
  int64_t init_batch_stride = 0, init_dim_stride = 0, init_seq_stride = 0;

  void* out = nullptr;  // (b, C, L)
  int64_t out_batch_stride = 0, out_dim_stride = 0, out_seq_stride = 0;
  // (b, C, K-1) or nullptr: the last K-1 inputs of [initial_states or zeros ; x].
  void* final_states = nullptr;
  int64_t final_batch_stride = 0, final_dim_stride = 0, final_seq_stride = 0;

  int num_threads = 1;     // CPU only: threads to use (the caller passes torch.get_num_threads())
  void* stream = nullptr;  // CUDA only: the cudaStream_t to launch on (torch's current stream)
};

struct CausalConv1dBwdParams {
  // The forward's inputs (same meaning and layout as in CausalConv1dFwdParams).
  CausalConv1dFwdParams fwd;  // fwd.out and fwd.final_states are unused (set to nullptr)

  const void* dout = nullptr;  // (b, C, L), io_dtype
  int64_t dout_batch_stride = 0, dout_dim_stride = 0, dout_seq_stride = 0;
  const void* dfinal_states = nullptr;  // (b, C, K-1) or nullptr, io_dtype
  int64_t dfinal_batch_stride = 0, dfinal_dim_stride = 0, dfinal_seq_stride = 0;

  void* dx = nullptr;  // (b, C, L), io_dtype
  int64_t dx_batch_stride = 0, dx_dim_stride = 0, dx_seq_stride = 0;
  // (C, K) contiguous, weight type. The caller allocates it zeroed, so kernels may either
  // overwrite it or accumulate into it.
  void* dweight = nullptr;
  void* dbias = nullptr;            // (C,) or nullptr, weight type; same rule as dweight
  void* dinitial_states = nullptr;  // (b, C, K-1) or nullptr, io_dtype
  int64_t dinit_batch_stride = 0, dinit_dim_stride = 0, dinit_seq_stride = 0;
};

// One decoding step (or a few): the conv state holds the last S inputs of each sequence.
//   window = [conv_state[..., S-(K-1):] ; x]  (the last K-1 inputs, then the new tokens)
//   y[t] = act(bias + sum_k w[k] * window[t + k]);  afterwards conv_state holds the last S
//   inputs of [conv_state ; x].
// With cache_seqlens the state is a circular buffer: the i-th input of a sequence lives at
// column i % S, cache_seqlens[b] inputs have been written so far, and the new tokens go to
// columns (cache_seqlens[b] + t) % S. With conv_state_indices, batch row b uses row
// conv_state_indices[b] of the state pool; a negative index marks a padded row (skipped: its
// output is left untouched).
struct CausalConv1dUpdateParams {
  int64_t batch = 0, dim = 0, seqlen = 0, width = 0, state_len = 0;
  DType io_dtype = DType::kFloat32;  // x, out and conv_state
  bool silu = false;

  const void* x = nullptr;  // (b, C, s)
  int64_t x_batch_stride = 0, x_dim_stride = 0, x_seq_stride = 0;
  void* conv_state = nullptr;  // (pool, C, S), updated in place
  int64_t state_batch_stride = 0, state_dim_stride = 0, state_seq_stride = 0;
  const void* weight = nullptr;            // (C, K) contiguous, float32 (float64 for float64 io)
  const void* bias = nullptr;              // (C,) or nullptr
  const int32_t* cache_seqlens = nullptr;  // (b,) or nullptr
  const int32_t* conv_state_indices = nullptr;  // (b,) or nullptr

  void* out = nullptr;  // (b, C, s)
  int64_t out_batch_stride = 0, out_dim_stride = 0, out_seq_stride = 0;

  int num_threads = 1;
  void* stream = nullptr;
};

namespace cpu {
void causal_conv1d_fwd(const CausalConv1dFwdParams& p);
void causal_conv1d_bwd(const CausalConv1dBwdParams& p);
void causal_conv1d_update(const CausalConv1dUpdateParams& p);
}  // namespace cpu

namespace cuda {
// Launch on p.stream (asynchronous). Throw std::runtime_error on a launch failure.
void causal_conv1d_fwd(const CausalConv1dFwdParams& p);
void causal_conv1d_bwd(const CausalConv1dBwdParams& p);
void causal_conv1d_update(const CausalConv1dUpdateParams& p);
}  // namespace cuda

}  // namespace nemocore
