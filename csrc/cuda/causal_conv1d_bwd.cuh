// Causal conv1d backward kernels and their launcher (included by causal_conv1d.cu).
//
//   dpre[u]   = dy[u] * silu'(pre[u])  (dy[u] without activation; pre is recomputed)
//   dx[p]     = sum_k w[k] * dpre[p + (K-1) - k]          (same sequence only)
//               + dfinal[p - (L - (K-1))]                 (the last K-1 inputs)
//   dw[k]    += sum_u dpre[u] * in[u - (K-1) + k]         (same sequence only)
//   dbias    += sum_u dpre[u]
// Positions p < 0 (the initial states) get the same dx formula, written to dinitial_states by
// dinit_kernel, which also covers seqlen 0.
//
// Paths as in the forward (causal_conv1d_fwd.cuh):
//   seq:     one block per (row, time tile), each thread a run of 2 vectors. A thread needs
//            the inputs just before its run (left halo, to recompute pre) and dpre just after
//            it (right halo, for dx): both come from its neighbours through shared memory; the
//            last thread computes the dpre after the tile itself from global memory.
//   cl:      tiles of 64 positions x 128 bytes of channels through shared memory, as in the
//            forward; the x tile carries K-1 extra rows on each side and the dout tile K-1
//            after, so each thread recomputes the dpre it needs past its segment.
//   generic: one thread per position, everything through the strides; dpre of the K outputs
//            that read a position is recomputed from global memory.
// Weight and bias gradients: every thread sums its positions, the block reduces (warp
// shuffles, then shared memory), and one thread per block and channel adds the block's sums
// to dweight / dbias with atomicAdd (the caller zeroes them). Order of the atomics, hence the
// last bits of dweight, is not deterministic.
#pragma once

#include "cuda/causal_conv1d_common.cuh"

namespace nemocore::cuda::conv1d {

// ---- device code ----------------------------------------------------------------------------

// Positions per channel-last tile in the backward: half the forward's for 16-bit types, so that
// each thread's segment (and its registers: inputs, dpre) stays at 16 positions.
template <typename T>
constexpr int kClBwdRows = sizeof(T) == 2 ? kClRows / 2 : kClRows;

template <typename T, int K, bool kVec>
__global__ void __launch_bounds__(kSeqThreads, 4)
    bwd_seq_kernel(const CausalConv1dBwdParams bp, const int64_t tiles) {
  using A = acc_t<T>;
  constexpr int kE = kRunVecs * kVecElts<T>;  // positions per thread
  constexpr int kTile = kSeqThreads * kE;
  static_assert(K >= 2 && K - 1 <= kE, "the halos of a run lie in the neighbours' runs");
  const CausalConv1dFwdParams& p = bp.fwd;

  const int64_t row = blockIdx.x / tiles, tile = blockIdx.x % tiles;
  const int64_t b = row / p.dim, c = row % p.dim;
  const int tid = threadIdx.x;
  const int64_t tile0 = tile * kTile;
  const int64_t t0 = tile0 + tid * kE;  // this thread's positions: t0 .. t0 + kE - 1
  const int64_t L = p.seqlen;
  const Inputs<T> in(p, b);
  const T* dout =
      static_cast<const T*>(bp.dout) + b * bp.dout_batch_stride + c * bp.dout_dim_stride;

  A own[kE], dy[kE];
  load_run<kVec>(in.x + c * in.x_c + t0, L - t0, own);
  load_run<kVec>(dout + t0, L - t0, dy);

  // win[m] = input at t0 - (K-1) + m: the left halo is the previous thread's last K-1.
  __shared__ A tail[K - 1][kSeqThreads + 1];
#pragma unroll
  for (int j = 0; j < K - 1; ++j) tail[j][tid + 1] = own[kE - (K - 1) + j];
  if (tid == 0) {
#pragma unroll
    for (int j = 0; j < K - 1; ++j) tail[j][0] = in.at(c, tile0 - (K - 1) + j);
  }
  __syncthreads();
  A win[K - 1 + kE];
#pragma unroll
  for (int j = 0; j < K - 1; ++j) win[j] = tail[j][tid];
#pragma unroll
  for (int i = 0; i < kE; ++i) win[K - 1 + i] = own[i];

  // ids[m]: sequence of position t0 - (K-1) + m, for m < kE + 2(K-1) (all 0 without seq_idx).
  int32_t ids[kE + 2 * (K - 1)];
#pragma unroll
  for (int m = 0; m < kE + 2 * (K - 1); ++m) ids[m] = in.id(t0 - (K - 1) + m);

  const A* w = static_cast<const A*>(p.weight) + c * K;
  A wk[K];
#pragma unroll
  for (int k = 0; k < K; ++k) wk[k] = w[k];
  const A bias = p.bias ? static_cast<const A*>(p.bias)[c] : A(0);

  // dp[m] = dpre at t0 + m: the thread's own kE, then the K-1 after its run (right halo).
  A dp[kE + K - 1];
#pragma unroll
  for (int i = 0; i < kE; ++i) {
    A pre = bias;
#pragma unroll
    for (int k = 0; k < K; ++k) {
      if (ids[i + k] == ids[i + K - 1]) pre += wk[k] * win[i + k];
    }
    dp[i] = t0 + i < L ? activate_grad(dy[i], pre, p.silu) : A(0);
  }
  // dweight, dbias terms of this thread's outputs (dp is 0 past L).
  A sums[K + 1];
#pragma unroll
  for (int k = 0; k <= K; ++k) sums[k] = A(0);
#pragma unroll
  for (int i = 0; i < kE; ++i) {
#pragma unroll
    for (int k = 0; k < K; ++k) {
      if (ids[i + k] == ids[i + K - 1]) sums[k] += dp[i] * win[i + k];
    }
    sums[K] += dp[i];
  }
  __shared__ A head[K - 1][kSeqThreads + 1];
#pragma unroll
  for (int j = 0; j < K - 1; ++j) head[j][tid] = dp[j];
  if (tid == kSeqThreads - 1) {
#pragma unroll
    for (int j = 0; j < K - 1; ++j) {
      head[j][kSeqThreads] = dpre_at(in, dout, 1, w, bias, p.silu, c, tile0 + kTile + j);
    }
  }
  __syncthreads();
#pragma unroll
  for (int j = 0; j < K - 1; ++j) dp[kE + j] = head[j][tid + 1];

  // dx at t0 + i reads dpre at t0 + i + (K-1) - k, i.e. dp[i + K-1 - k], ids[i + 2(K-1) - k].
  A dx[kE];
#pragma unroll
  for (int i = 0; i < kE; ++i) {
    A acc = A(0);
#pragma unroll
    for (int k = 0; k < K; ++k) {
      if (ids[i + K - 1] == ids[i + 2 * (K - 1) - k]) acc += wk[k] * dp[i + K - 1 - k];
    }
    dx[i] = acc;
  }
  if (bp.dfinal_states != nullptr) {
    const T* dfin = static_cast<const T*>(bp.dfinal_states) + b * bp.dfinal_batch_stride +
                    c * bp.dfinal_dim_stride;
#pragma unroll
    for (int i = 0; i < kE; ++i) {
      const int64_t j = t0 + i - (L - (K - 1));  // final-state slot of position t0 + i
      if (j >= 0 && t0 + i < L) dx[i] += to_acc(dfin[j * bp.dfinal_seq_stride]);
    }
  }
  T* dx_row = static_cast<T*>(bp.dx) + b * bp.dx_batch_stride + c * bp.dx_dim_stride;
  store_run<kVec>(dx_row + t0, L - t0, dx);

  // Reduce the weight-gradient terms over the block (after dx: block_sum holds barriers).
  block_sum<kSeqThreads>(sums);
  if (tid == 0) {
#pragma unroll
    for (int k = 0; k < K; ++k) atomicAdd(static_cast<A*>(bp.dweight) + c * K + k, sums[k]);
    if (bp.dbias != nullptr) atomicAdd(static_cast<A*>(bp.dbias) + c, sums[K]);
  }
}

template <typename T, int K, bool kVec>
__global__ void __launch_bounds__(kClThreads)
    bwd_cl_kernel(const CausalConv1dBwdParams bp, const int64_t chan_tiles,
                  const int64_t time_tiles) {
  using A = acc_t<T>;
  constexpr int kRows = kClBwdRows<T>;
  constexpr int kCols = kClCols<T>, kSegs = kClThreads / kCols, kSegLen = kRows / kSegs;
  constexpr int kXRows = kRows + 2 * (K - 1);  // inputs at tile0 - (K-1) .. tile0 + kRows + K-2
  constexpr int kGRows = kRows + K - 1;        // dout at tile0 .. tile0 + kRows + K-2
  const CausalConv1dFwdParams& p = bp.fwd;
  const int64_t ct = blockIdx.x % chan_tiles;
  const int64_t tt = (blockIdx.x / chan_tiles) % time_tiles;
  const int64_t b = blockIdx.x / (chan_tiles * time_tiles);
  const int64_t c_begin = ct * kCols, tile0 = tt * kRows;
  const int64_t L = p.seqlen;
  const Inputs<T> in(p, b);
  const Inputs<T> gin(p, bp.dout, b, bp.dout_batch_stride, bp.dout_dim_stride, bp.dout_seq_stride);

  // Row r of xt and ids: position tile0 - (K-1) + r; row r of gt: position tile0 + r.
  __shared__ Vec<T> x_mem[kXRows * kClRowVecs];
  __shared__ Vec<T> g_mem[kGRows * kClRowVecs];
  T(*xt)[kCols] = reinterpret_cast<T(*)[kCols]>(x_mem);
  T(*gt)[kCols] = reinterpret_cast<T(*)[kCols]>(g_mem);
  __shared__ int32_t ids[kXRows];
  load_tile<kVec, kXRows>(in, c_begin, tile0 - (K - 1), xt);
  load_tile<kVec, kGRows>(gin, c_begin, tile0, gt);
  if (threadIdx.x < kXRows) ids[threadIdx.x] = in.id(tile0 - (K - 1) + threadIdx.x);
  __syncthreads();

  // This thread: channel c_begin + j, positions tile0 + r0 + m for m < kSegLen. It also
  // recomputes dpre at the K-1 positions after its segment (cheap, from shared memory).
  const int j = threadIdx.x % kCols, seg = threadIdx.x / kCols, r0 = seg * kSegLen;
  const int64_t c = c_begin + j;
  A wk[K];
#pragma unroll
  for (int k = 0; k < K; ++k) wk[k] = c < p.dim ? static_cast<const A*>(p.weight)[c * K + k] : A(0);
  const A bias = (p.bias && c < p.dim) ? static_cast<const A*>(p.bias)[c] : A(0);
  A xv[kSegLen + 2 * (K - 1)];  // xv[m]: input at tile0 + r0 - (K-1) + m (ids[r0 + m])
#pragma unroll
  for (int m = 0; m < kSegLen + 2 * (K - 1); ++m) xv[m] = to_acc(xt[r0 + m][j]);
  A dp[kSegLen + K - 1];  // dp[m]: dpre at tile0 + r0 + m (ids[r0 + m + K-1])
#pragma unroll
  for (int m = 0; m < kSegLen + K - 1; ++m) {
    A pre = bias;
#pragma unroll
    for (int k = 0; k < K; ++k) {
      if (ids[r0 + m + k] == ids[r0 + m + K - 1]) pre += wk[k] * xv[m + k];
    }
    const A dy = to_acc(gt[r0 + m][j]);
    dp[m] = tile0 + r0 + m < L ? activate_grad(dy, pre, p.silu) : A(0);
  }

  // dweight, dbias terms of this thread's outputs (dp is 0 past L).
  A sums[K + 1];
#pragma unroll
  for (int k = 0; k <= K; ++k) sums[k] = A(0);
#pragma unroll
  for (int m = 0; m < kSegLen; ++m) {
#pragma unroll
    for (int k = 0; k < K; ++k) {
      if (ids[r0 + m + k] == ids[r0 + m + K - 1]) sums[k] += dp[m] * xv[m + k];
    }
    sums[K] += dp[m];
  }
  __shared__ A partial[kSegs][K + 1][kCols];
#pragma unroll
  for (int k = 0; k <= K; ++k) partial[seg][k][j] = sums[k];

  // dx at tile0 + r0 + m reads dpre at + (K-1) - k, i.e. dp[m + K-1 - k]; it leaves through
  // its own tile (row r: position tile0 + r).
  __shared__ Vec<T> dx_mem[kRows * kClRowVecs];
  T(*dxt)[kCols] = reinterpret_cast<T(*)[kCols]>(dx_mem);
  const T* dfin = bp.dfinal_states == nullptr
                      ? nullptr
                      : static_cast<const T*>(bp.dfinal_states) + b * bp.dfinal_batch_stride +
                            c * bp.dfinal_dim_stride;
#pragma unroll
  for (int m = 0; m < kSegLen; ++m) {
    A acc = A(0);
#pragma unroll
    for (int k = 0; k < K; ++k) {
      if (ids[r0 + m + K - 1] == ids[r0 + m + 2 * (K - 1) - k]) acc += wk[k] * dp[m + K - 1 - k];
    }
    const int64_t pos = tile0 + r0 + m;
    const int64_t slot = pos - (L - (K - 1));  // final-state slot of pos
    if (dfin != nullptr && slot >= 0 && pos < L && c < p.dim) {
      acc += to_acc(dfin[slot * bp.dfinal_seq_stride]);
    }
    dxt[r0 + m][j] = from_acc<T>(acc);
  }
  __syncthreads();
  T* dx_out = static_cast<T*>(bp.dx) + b * bp.dx_batch_stride;
  store_tile<kVec, kRows>(dx_out, bp.dx_seq_stride, p.dim, L, c_begin, tile0, dxt);
  if (seg == 0 && c < p.dim) {
#pragma unroll
    for (int k = 0; k <= K; ++k) {
      A total = partial[0][k][j];
#pragma unroll
      for (int s = 1; s < kSegs; ++s) total += partial[s][k][j];
      if (k < K) {
        atomicAdd(static_cast<A*>(bp.dweight) + c * K + k, total);
      } else if (bp.dbias != nullptr) {
        atomicAdd(static_cast<A*>(bp.dbias) + c, total);
      }
    }
  }
}

// Any strides, any width: one block per (row, tile of kGenericThreads positions), one position
// per thread.
template <typename T>
__global__ void __launch_bounds__(kGenericThreads)
    bwd_generic_kernel(const CausalConv1dBwdParams bp, const int64_t tiles) {
  using A = acc_t<T>;
  const CausalConv1dFwdParams& p = bp.fwd;
  const int64_t row = blockIdx.x / tiles, tile = blockIdx.x % tiles;
  const int64_t b = row / p.dim, c = row % p.dim;
  const int64_t L = p.seqlen, K = p.width;
  const int64_t u = tile * kGenericThreads + threadIdx.x;
  const bool valid = u < L;  // no early return: the block reduces below
  const Inputs<T> in(p, b);
  const T* dout =
      static_cast<const T*>(bp.dout) + b * bp.dout_batch_stride + c * bp.dout_dim_stride;
  const A* w = static_cast<const A*>(p.weight) + c * K;
  const A bias = p.bias ? static_cast<const A*>(p.bias)[c] : A(0);
  const int32_t id_u = in.id(u);

  if (valid) {
    A acc = A(0);
    for (int64_t k = 0; k < K; ++k) {
      const int64_t v = u + (K - 1) - k;  // an output that reads position u
      if (v < L && in.id(v) == id_u) {
        acc += w[k] * dpre_at(in, dout, bp.dout_seq_stride, w, bias, p.silu, c, v);
      }
    }
    const int64_t slot = u - (L - (K - 1));
    if (bp.dfinal_states != nullptr && slot >= 0) {
      acc += to_acc(static_cast<const T*>(
          bp.dfinal_states)[b * bp.dfinal_batch_stride + c * bp.dfinal_dim_stride +
                            slot * bp.dfinal_seq_stride]);
    }
    static_cast<T*>(bp.dx)[b * bp.dx_batch_stride + c * bp.dx_dim_stride + u * bp.dx_seq_stride] =
        from_acc<T>(acc);
  }

  // Weight gradients of output u, one tap at a time (K is a runtime value here).
  const A dp = valid ? dpre_at(in, dout, bp.dout_seq_stride, w, bias, p.silu, c, u) : A(0);
  for (int64_t k = 0; k <= K; ++k) {
    A term[1] = {A(0)};
    if (k == K) {
      term[0] = dp;
    } else if (valid) {
      const int64_t t = u - (K - 1) + k;
      if (in.id(t) == id_u) term[0] = dp * in.at(c, t);
    }
    block_sum<kGenericThreads>(term);
    if (threadIdx.x == 0) {
      if (k < K) {
        atomicAdd(static_cast<A*>(bp.dweight) + c * K + k, term[0]);
      } else if (bp.dbias != nullptr) {
        atomicAdd(static_cast<A*>(bp.dbias) + c, term[0]);
      }
    }
  }
}

// dinitial_states[b, c, j]: the dx formula at position j - (K-1) < 0, plus the final-state
// gradient when that position is one of the last K-1 inputs (L < K-1).
template <typename T>
__global__ void __launch_bounds__(kGenericThreads) dinit_kernel(const CausalConv1dBwdParams bp) {
  using A = acc_t<T>;
  const CausalConv1dFwdParams& p = bp.fwd;
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kGenericThreads + threadIdx.x;
  const int64_t K = p.width, K1 = K - 1, L = p.seqlen;
  if (i >= p.batch * p.dim * K1) return;
  const int64_t j = i % K1, c = (i / K1) % p.dim, b = i / (K1 * p.dim);
  const int64_t pos = j - K1;
  const Inputs<T> in(p, b);
  const T* dout =
      static_cast<const T*>(bp.dout) + b * bp.dout_batch_stride + c * bp.dout_dim_stride;
  const A* w = static_cast<const A*>(p.weight) + c * K;
  const A bias = p.bias ? static_cast<const A*>(p.bias)[c] : A(0);
  A acc = A(0);
  for (int64_t k = 0; k < K; ++k) {
    const int64_t v = pos + K1 - k;  // an output that reads position pos
    if (v >= 0 && v < L && in.id(v) == in.id(pos)) {
      acc += w[k] * dpre_at(in, dout, bp.dout_seq_stride, w, bias, p.silu, c, v);
    }
  }
  const int64_t slot = pos - (L - K1);
  if (bp.dfinal_states != nullptr && slot >= 0) {
    acc += to_acc(static_cast<const T*>(
        bp.dfinal_states)[b * bp.dfinal_batch_stride + c * bp.dfinal_dim_stride +
                          slot * bp.dfinal_seq_stride]);
  }
  static_cast<T*>(bp.dinitial_states)[b * bp.dinit_batch_stride + c * bp.dinit_dim_stride +
                                      j * bp.dinit_seq_stride] = from_acc<T>(acc);
}

// ---- launcher -------------------------------------------------------------------------------

template <typename T>
void launch_bwd(const CausalConv1dBwdParams& bp) {
  const CausalConv1dFwdParams& p = bp.fwd;
  const auto stream = static_cast<cudaStream_t>(p.stream);
  const int64_t B = p.batch, C = p.dim, L = p.seqlen;
  if (B > 0 && C > 0 && L > 0) {
    const bool seq_fast = p.x_seq_stride == 1 && bp.dout_seq_stride == 1 && bp.dx_seq_stride == 1;
    const bool cl_fast = p.x_dim_stride == 1 && bp.dout_dim_stride == 1 && bp.dx_dim_stride == 1;
    const bool done =
        (seq_fast || cl_fast) && dispatch_width(p.width, [&](auto width) {
          constexpr int K = decltype(width)::value;
          if (seq_fast) {
            const bool vec = vec_aligned<T>(p.x, {p.x_batch_stride, p.x_dim_stride}) &&
                             vec_aligned<T>(bp.dout, {bp.dout_batch_stride, bp.dout_dim_stride}) &&
                             vec_aligned<T>(bp.dx, {bp.dx_batch_stride, bp.dx_dim_stride});
            const int64_t tiles = ceil_div(L, int64_t{kSeqThreads} * kRunVecs * kVecElts<T>);
            dispatch_bool(vec, [&](auto v) {
              launch_kernel("causal_conv1d_bwd_seq", bwd_seq_kernel<T, K, decltype(v)::value>,
                            grid_blocks(B * C * tiles, "causal_conv1d_bwd_seq"), dim3(kSeqThreads),
                            stream, bp, tiles);
            });
          } else {
            const bool vec = vec_aligned<T>(p.x, {p.x_batch_stride, p.x_seq_stride}) &&
                             vec_aligned<T>(bp.dout, {bp.dout_batch_stride, bp.dout_seq_stride}) &&
                             vec_aligned<T>(bp.dx, {bp.dx_batch_stride, bp.dx_seq_stride});
            const int64_t chan_tiles = ceil_div(C, kClCols<T>);
            const int64_t time_tiles = ceil_div(L, kClBwdRows<T>);
            dispatch_bool(vec, [&](auto v) {
              launch_kernel("causal_conv1d_bwd_cl", bwd_cl_kernel<T, K, decltype(v)::value>,
                            grid_blocks(B * chan_tiles * time_tiles, "causal_conv1d_bwd_cl"),
                            dim3(kClThreads), stream, bp, chan_tiles, time_tiles);
            });
          }
        });
    if (!done) {
      const int64_t tiles = ceil_div(L, kGenericThreads);
      launch_kernel("causal_conv1d_bwd_generic", bwd_generic_kernel<T>,
                    grid_blocks(B * C * tiles, "causal_conv1d_bwd_generic"), dim3(kGenericThreads),
                    stream, bp, tiles);
    }
  }
  const int64_t n_init = B * C * (p.width - 1);
  if (bp.dinitial_states != nullptr && n_init > 0) {
    launch_kernel("causal_conv1d_dinit", dinit_kernel<T>,
                  grid_blocks(ceil_div(n_init, kGenericThreads), "causal_conv1d_dinit"),
                  dim3(kGenericThreads), stream, bp);
  }
}

}  // namespace nemocore::cuda::conv1d
