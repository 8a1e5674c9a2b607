// Causal conv1d decode-time update kernel and its launcher (included by causal_conv1d.cu).
//
//   window = [the last K-1 inputs held in conv_state ; x (s new tokens)]
//   y[t]   = act(bias + sum_k w[k] * window[t + k])
//   then conv_state holds the last S inputs of [conv_state ; x]
// With cache_seqlens the state is a circular buffer (input i at column i % S, n = cache_seqlens
// inputs written so far); with conv_state_indices batch row b uses state row
// conv_state_indices[b], and a negative index is a padded row that is skipped entirely.
//
// One thread owns one (batch, channel) row: it reads every state column it needs, computes
// all s outputs, and only then writes the state, so reads never see its own writes and no
// other thread touches the row (assuming conv_state_indices has no duplicate rows, which would
// be a race in any implementation). Consecutive threads take consecutive channels, which is
// the stride-1 dimension of x, out (b, C, s) and of a channel-major conv_state.
#pragma once

#include "cuda/causal_conv1d_common.cuh"

namespace nemocore::cuda::conv1d {

// ---- device code ----------------------------------------------------------------------------

// i mod S in [0, S) for any sign of i (S > 0).
__device__ __forceinline__ int64_t wrap(int64_t i, int64_t S) { return ((i % S) + S) % S; }

template <typename T>
__global__ void __launch_bounds__(kGenericThreads) update_kernel(const CausalConv1dUpdateParams p) {
  using A = acc_t<T>;
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kGenericThreads + threadIdx.x;
  if (i >= p.batch * p.dim) return;
  const int64_t b = i / p.dim, c = i % p.dim;
  const int64_t slot = p.conv_state_indices ? p.conv_state_indices[b] : b;
  if (slot < 0) return;  // padded row: neither out nor the state is touched

  const int64_t K = p.width, K1 = K - 1, S = p.state_len, s = p.seqlen;
  const bool circular = p.cache_seqlens != nullptr;
  const int64_t written = circular ? p.cache_seqlens[b] : 0;
  T* state = static_cast<T*>(p.conv_state) + slot * p.state_batch_stride + c * p.state_dim_stride;
  const int64_t st = p.state_seq_stride;
  const T* x = static_cast<const T*>(p.x) + b * p.x_batch_stride + c * p.x_dim_stride;
  const int64_t xt = p.x_seq_stride;
  T* out = static_cast<T*>(p.out) + b * p.out_batch_stride + c * p.out_dim_stride;
  const A* w = static_cast<const A*>(p.weight) + c * K;
  const A bias = p.bias ? static_cast<const A*>(p.bias)[c] : A(0);

  // Outputs. Window position q < 0 is the state column holding the input q steps before the
  // first new token (q >= -(K-1), and S >= K-1, so S > 0 whenever q < 0 occurs).
  for (int64_t t = 0; t < s; ++t) {
    A acc = bias;
    for (int64_t k = 0; k < K; ++k) {
      const int64_t q = t - K1 + k;
      const A v = q >= 0 ? to_acc(x[q * xt])
                         : to_acc(state[(circular ? wrap(written + q, S) : S + q) * st]);
      acc += w[k] * v;
    }
    out[t * p.out_seq_stride] = from_acc<T>(activate(acc, p.silu));
  }

  // State update, after every read of the old state above.
  if (S == 0) return;
  if (circular) {
    // Token t goes to column (written + t) % S; when s > S only the last S tokens survive.
    for (int64_t t = max64(0, s - S); t < s; ++t) state[wrap(written + t, S) * st] = x[t * xt];
  } else if (s >= S) {
    for (int64_t j = 0; j < S; ++j) state[j * st] = x[(s - S + j) * xt];
  } else {
    // Shift left by s (ascending j reads column j + s before anything overwrites it).
    for (int64_t j = 0; j < S - s; ++j) state[j * st] = state[(j + s) * st];
    for (int64_t j = 0; j < s; ++j) state[(S - s + j) * st] = x[j * xt];
  }
}

// ---- launcher -------------------------------------------------------------------------------

template <typename T>
void launch_update(const CausalConv1dUpdateParams& p) {
  const int64_t rows = p.batch * p.dim;
  if (rows == 0 || p.seqlen == 0) return;  // nothing to compute; the state keeps its inputs
  if (p.state_len < p.width - 1) {
    throw std::invalid_argument("causal_conv1d_update: state_len (" + std::to_string(p.state_len) +
                                ") must be at least width - 1 (" + std::to_string(p.width - 1) +
                                ")");
  }
  launch_kernel("causal_conv1d_update", update_kernel<T>,
                grid_blocks(ceil_div(rows, kGenericThreads), "causal_conv1d_update"),
                dim3(kGenericThreads), static_cast<cudaStream_t>(p.stream), p);
}

}  // namespace nemocore::cuda::conv1d
