// Causal conv1d forward kernels and their launcher (included by causal_conv1d.cu).
//
//   pre[c, u] = bias[c] + sum_k w[c, k] * in[c, u - (K-1) + k],   y = silu(pre) or pre
//
// Three paths, picked by layout (K in {2, 3, 4} for the first two, any K for the third):
//   seq:     x and out have stride 1 along time (contiguous (b, C, L)). One block per (row,
//            time tile); each thread loads kRunVecs 16-byte vectors of consecutive positions,
//            and the K-1 inputs before its run (the halo) come from its left neighbour
//            through shared memory (thread 0 reads the tile's halo from global memory).
//   cl:      x and out have stride 1 along channels (channel-last). A block moves a tile of
//            64 positions (plus the K-1 before them) x 128 bytes of channels into shared
//            memory with 16-byte loads, each thread computes one channel over a segment of
//            rows, and the outputs leave through the same tile with 16-byte stores.
//   generic: any strides: one thread per output, reading its K inputs through the strides.
// Final states (the last K-1 inputs of [initial states ; x]) are written by a small kernel of
// their own, which also covers seqlen 0.
#pragma once

#include "cuda/causal_conv1d_common.cuh"

namespace nemocore::cuda::conv1d {

// ---- device code ----------------------------------------------------------------------------

template <typename T, int K, bool kVec>
__global__ void __launch_bounds__(kSeqThreads)
    fwd_seq_kernel(const CausalConv1dFwdParams p, const int64_t tiles) {
  using A = acc_t<T>;
  constexpr int kE = kRunVecs * kVecElts<T>;  // positions per thread
  constexpr int kTile = kSeqThreads * kE;
  static_assert(K >= 2 && K - 1 <= kE, "the halo of a run lies in the previous thread's run");

  const int64_t row = blockIdx.x / tiles, tile = blockIdx.x % tiles;
  const int64_t b = row / p.dim, c = row % p.dim;
  const int tid = threadIdx.x;
  const int64_t tile0 = tile * kTile;
  const int64_t t0 = tile0 + tid * kE;  // this thread's positions: t0 .. t0 + kE - 1
  const int64_t L = p.seqlen;
  const Inputs<T> in(p, b);

  A own[kE];
  load_run<kVec>(in.x + c * in.x_c + t0, L - t0, own);

  // win[m] = input at t0 - (K-1) + m. The first K-1 are the previous thread's last K-1.
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

  int32_t ids[K - 1 + kE];  // ids[m]: sequence of position t0 - (K-1) + m (all 0 without seq_idx)
#pragma unroll
  for (int m = 0; m < K - 1 + kE; ++m) ids[m] = in.id(t0 - (K - 1) + m);

  const A* w = static_cast<const A*>(p.weight) + c * K;
  A wk[K];
#pragma unroll
  for (int k = 0; k < K; ++k) wk[k] = w[k];
  const A bias = p.bias ? static_cast<const A*>(p.bias)[c] : A(0);

  A y[kE];
#pragma unroll
  for (int i = 0; i < kE; ++i) {
    A acc = bias;
#pragma unroll
    for (int k = 0; k < K; ++k) {
      if (ids[i + k] == ids[i + K - 1]) acc += wk[k] * win[i + k];
    }
    y[i] = activate(acc, p.silu);
  }
  T* out = static_cast<T*>(p.out) + b * p.out_batch_stride + c * p.out_dim_stride;
  store_run<kVec>(out + t0, L - t0, y);
}

template <typename T, int K, bool kVec>
__global__ void __launch_bounds__(kClThreads)
    fwd_cl_kernel(const CausalConv1dFwdParams p, const int64_t chan_tiles,
                  const int64_t time_tiles) {
  using A = acc_t<T>;
  constexpr int kCols = kClCols<T>, kSegLen = kClSegLen<T>;
  constexpr int kRows = kClRows + K - 1;  // the tile's positions and the K-1 before them
  const int64_t ct = blockIdx.x % chan_tiles;
  const int64_t tt = (blockIdx.x / chan_tiles) % time_tiles;
  const int64_t b = blockIdx.x / (chan_tiles * time_tiles);
  const int64_t c_begin = ct * kCols, tile0 = tt * kClRows;
  const Inputs<T> in(p, b);

  // Row r of tile and ids: position tile0 - (K-1) + r.
  __shared__ Vec<T> tile_mem[kRows * kClRowVecs];
  T(*tile)[kCols] = reinterpret_cast<T(*)[kCols]>(tile_mem);
  __shared__ int32_t ids[kRows];
  load_tile<kVec, kRows>(in, c_begin, tile0 - (K - 1), tile);
  if (threadIdx.x < kRows) ids[threadIdx.x] = in.id(tile0 - (K - 1) + threadIdx.x);
  __syncthreads();

  // This thread: channel c_begin + j, outputs at tile0 + r0 + m for m < kSegLen.
  const int j = threadIdx.x % kCols, r0 = (threadIdx.x / kCols) * kSegLen;
  const int64_t c = c_begin + j;
  A wk[K];
#pragma unroll
  for (int k = 0; k < K; ++k) wk[k] = c < p.dim ? static_cast<const A*>(p.weight)[c * K + k] : A(0);
  const A bias = (p.bias && c < p.dim) ? static_cast<const A*>(p.bias)[c] : A(0);
  A xv[kSegLen + K - 1];
#pragma unroll
  for (int m = 0; m < kSegLen + K - 1; ++m) xv[m] = to_acc(tile[r0 + m][j]);
  A y[kSegLen];
#pragma unroll
  for (int m = 0; m < kSegLen; ++m) {
    A acc = bias;
#pragma unroll
    for (int k = 0; k < K; ++k) {
      if (ids[r0 + m + k] == ids[r0 + m + K - 1]) acc += wk[k] * xv[m + k];
    }
    y[m] = activate(acc, p.silu);
  }

  // Outputs go back through the tile (rows K-1.. hold positions tile0..) once all reads are done.
  __syncthreads();
#pragma unroll
  for (int m = 0; m < kSegLen; ++m) tile[K - 1 + r0 + m][j] = from_acc<T>(y[m]);
  __syncthreads();
  T* out = static_cast<T*>(p.out) + b * p.out_batch_stride;
  store_tile<kVec, kClRows>(out, p.out_seq_stride, p.dim, p.seqlen, c_begin, tile0, tile + (K - 1));
}

// Any strides, any width: one thread per output. Consecutive threads take consecutive
// channels when x is channel-last, consecutive positions otherwise.
template <typename T>
__global__ void __launch_bounds__(kGenericThreads)
    fwd_generic_kernel(const CausalConv1dFwdParams p, const bool channel_fastest) {
  using A = acc_t<T>;
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kGenericThreads + threadIdx.x;
  const int64_t C = p.dim, L = p.seqlen, K = p.width;
  if (i >= p.batch * C * L) return;
  const int64_t b = i / (C * L);
  const int64_t c = channel_fastest ? i % C : (i / L) % C;
  const int64_t u = channel_fastest ? (i / C) % L : i % L;
  const Inputs<T> in(p, b);
  const A* w = static_cast<const A*>(p.weight) + c * K;
  A acc = p.bias ? static_cast<const A*>(p.bias)[c] : A(0);
  const int32_t id_u = in.id(u);
  for (int64_t k = 0; k < K; ++k) {
    const int64_t t = u - (K - 1) + k;
    if (in.id(t) == id_u) acc += w[k] * in.at(c, t);
  }
  T* out = static_cast<T*>(p.out);
  out[b * p.out_batch_stride + c * p.out_dim_stride + u * p.out_seq_stride] =
      from_acc<T>(activate(acc, p.silu));
}

// final[b, c, j] = input at L - (K-1) + j, for j < K-1 (from the initial states when L < K-1).
template <typename T>
__global__ void __launch_bounds__(kGenericThreads)
    final_states_kernel(const CausalConv1dFwdParams p) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kGenericThreads + threadIdx.x;
  const int64_t K1 = p.width - 1;
  if (i >= p.batch * p.dim * K1) return;
  const int64_t j = i % K1, c = (i / K1) % p.dim, b = i / (K1 * p.dim);
  const Inputs<T> in(p, b);
  T* fin = static_cast<T*>(p.final_states);
  fin[b * p.final_batch_stride + c * p.final_dim_stride + j * p.final_seq_stride] =
      from_acc<T>(in.at(c, p.seqlen - K1 + j));
}

// ---- launcher -------------------------------------------------------------------------------

template <typename T>
void launch_fwd(const CausalConv1dFwdParams& p) {
  const auto stream = static_cast<cudaStream_t>(p.stream);
  const int64_t B = p.batch, C = p.dim, L = p.seqlen;
  if (B > 0 && C > 0 && L > 0) {
    const bool seq_fast = p.x_seq_stride == 1 && p.out_seq_stride == 1;
    const bool cl_fast = p.x_dim_stride == 1 && p.out_dim_stride == 1;
    const bool done =
        (seq_fast || cl_fast) && dispatch_width(p.width, [&](auto width) {
          constexpr int K = decltype(width)::value;
          if (seq_fast) {
            const bool vec = vec_aligned<T>(p.x, {p.x_batch_stride, p.x_dim_stride}) &&
                             vec_aligned<T>(p.out, {p.out_batch_stride, p.out_dim_stride});
            const int64_t tiles = ceil_div(L, int64_t{kSeqThreads} * kRunVecs * kVecElts<T>);
            dispatch_bool(vec, [&](auto v) {
              launch_kernel("causal_conv1d_fwd_seq", fwd_seq_kernel<T, K, decltype(v)::value>,
                            grid_blocks(B * C * tiles, "causal_conv1d_fwd_seq"), dim3(kSeqThreads),
                            stream, p, tiles);
            });
          } else {
            const bool vec = vec_aligned<T>(p.x, {p.x_batch_stride, p.x_seq_stride}) &&
                             vec_aligned<T>(p.out, {p.out_batch_stride, p.out_seq_stride});
            const int64_t chan_tiles = ceil_div(C, kClCols<T>);
            const int64_t time_tiles = ceil_div(L, kClRows);
            dispatch_bool(vec, [&](auto v) {
              launch_kernel("causal_conv1d_fwd_cl", fwd_cl_kernel<T, K, decltype(v)::value>,
                            grid_blocks(B * chan_tiles * time_tiles, "causal_conv1d_fwd_cl"),
                            dim3(kClThreads), stream, p, chan_tiles, time_tiles);
            });
          }
        });
    if (!done) {
      const bool channel_fastest = p.x_dim_stride == 1 && p.x_seq_stride != 1;
      launch_kernel("causal_conv1d_fwd_generic", fwd_generic_kernel<T>,
                    grid_blocks(ceil_div(B * C * L, kGenericThreads), "causal_conv1d_fwd_generic"),
                    dim3(kGenericThreads), stream, p, channel_fastest);
    }
  }
  const int64_t n_final = B * C * (p.width - 1);
  if (p.final_states != nullptr && n_final > 0) {
    launch_kernel("causal_conv1d_final_states", final_states_kernel<T>,
                  grid_blocks(ceil_div(n_final, kGenericThreads), "causal_conv1d_final_states"),
                  dim3(kGenericThreads), stream, p);
  }
}

}  // namespace nemocore::cuda::conv1d
