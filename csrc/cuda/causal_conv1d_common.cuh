// Pieces shared by the causal conv1d CUDA kernels (causal_conv1d_{fwd,bwd,update}.cuh):
// tile sizes, strided access to the forward's inputs, 16-byte vector runs, SiLU and its
// derivative, a block reduction, and host-side path selection.
//
// Letters: b batch, C channels, L seqlen, K width, u an output position, p an input position.
// Positions p in [-(K-1), 0) are the initial states (or zeros); see nemocore/causal_conv1d.h.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <type_traits>

#include "cuda/common/dispatch.cuh"
#include "cuda/common/launch.cuh"
#include "nemocore/causal_conv1d.h"

namespace nemocore::cuda::conv1d {

// ---- tile sizes -----------------------------------------------------------------------------

// Seq-contiguous kernels (stride 1 along time): 1-D blocks, one (b, c) row and one time tile
// per block, each thread owns kRunVecs 16-byte vectors of consecutive positions.
constexpr int kSeqThreads = 128;
constexpr int kRunVecs = 2;

// Channel-last kernels (stride 1 along channels): 1-D blocks; a block moves a tile of
// kClRows time steps x 128 bytes of channels (kClRowVecs 16-byte vectors per row) through
// shared memory, then each thread computes one channel over a segment of the tile's rows.
constexpr int kClThreads = 128;
constexpr int kClRows = 64;
constexpr int kClRowVecs = 8;

// Generic kernels (any stride, any width) and the small per-state kernels: 1-D blocks.
constexpr int kGenericThreads = 128;

// Elements of T in one 16-byte vector.
template <typename T>
constexpr int kVecElts = static_cast<int>(16 / sizeof(T));

template <typename T>
struct alignas(16) Vec {
  T v[kVecElts<T>];
};

// Channel-last tile shape for io type T: channels per tile, and the segments of rows that the
// threads sharing a channel split between them (bf16: 64 channels, 2 segments of 32 rows;
// float: 32, 4 of 16; double: 16, 8 of 8).
template <typename T>
constexpr int kClCols = kClRowVecs * kVecElts<T>;
template <typename T>
constexpr int kClSegLen = kClRows * kClCols<T> / kClThreads;

__host__ __device__ __forceinline__ int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
__host__ __device__ __forceinline__ int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }
__host__ __device__ __forceinline__ int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

// ---- the forward's inputs -------------------------------------------------------------------

// The forward's inputs of batch element b: x, initial states and seq_idx, read at any
// (channel, position) through their strides.
template <typename T>
struct Inputs {
  using A = acc_t<T>;
  const T* x;
  int64_t x_c, x_t;
  const T* init;  // nullptr: zeros before position 0
  int64_t init_c, init_t;
  const int32_t* seq;  // nullptr: a single sequence
  int64_t seq_t;
  int64_t C, L, K;

  __device__ Inputs(const CausalConv1dFwdParams& p, int64_t b)
      : x(static_cast<const T*>(p.x) + b * p.x_batch_stride),
        x_c(p.x_dim_stride),
        x_t(p.x_seq_stride),
        init(p.initial_states ? static_cast<const T*>(p.initial_states) + b * p.init_batch_stride
                              : nullptr),
        init_c(p.init_dim_stride),
        init_t(p.init_seq_stride),
        seq(p.seq_idx ? p.seq_idx + b * p.seq_idx_batch_stride : nullptr),
        seq_t(p.seq_idx_seq_stride),
        C(p.dim),
        L(p.seqlen),
        K(p.width) {}

  // Another (C, L) tensor of batch element b with the same sizes (dout), without initial
  // states or sequence ids.
  __device__ Inputs(const CausalConv1dFwdParams& p, const void* data, int64_t b, int64_t b_stride,
                    int64_t c_stride, int64_t t_stride)
      : x(static_cast<const T*>(data) + b * b_stride),
        x_c(c_stride),
        x_t(t_stride),
        init(nullptr),
        init_c(0),
        init_t(0),
        seq(nullptr),
        seq_t(0),
        C(p.dim),
        L(p.seqlen),
        K(p.width) {}

  // Input of channel c at position t: x for 0 <= t < L, the initial state (or 0) for
  // -(K-1) <= t < 0, and 0 anywhere else.
  __device__ __forceinline__ A at(int64_t c, int64_t t) const {
    if (t >= 0) return t < L ? to_acc(x[c * x_c + t * x_t]) : A(0);
    if (init == nullptr || t < -(K - 1)) return A(0);
    return to_acc(init[c * init_c + (t + K - 1) * init_t]);
  }

  // Sequence id of position t (0 without seq_idx). Positions before 0 take position 0's id,
  // as the CPU kernel does (initial states belong to the first sequence; the API forbids
  // combining them with seq_idx anyway, and without them the inputs there are zero).
  // Positions past the end take the last id: their dpre is zero, so it never matters.
  __device__ __forceinline__ int32_t id(int64_t t) const {
    if (seq == nullptr || L <= 0) return 0;
    return seq[max64(0, min64(t, L - 1)) * seq_t];
  }
};

// ---- vector runs (stride-1 rows) ------------------------------------------------------------

// v[i] = src[i] for i < n, 0 for n <= i < N. With kVec, src is 16-byte aligned and every
// whole vector inside [0, n) is read with one 16-byte load.
template <bool kVec, typename T, int N>
__device__ __forceinline__ void load_run(const T* src, int64_t n, acc_t<T> (&v)[N]) {
  constexpr int kV = kVecElts<T>;
  static_assert(N % kV == 0, "a run is made of whole vectors");
#pragma unroll
  for (int j = 0; j < N; j += kV) {
    if (kVec && j + kV <= n) {
      const Vec<T> pack = *reinterpret_cast<const Vec<T>*>(src + j);
#pragma unroll
      for (int e = 0; e < kV; ++e) v[j + e] = to_acc(pack.v[e]);
    } else {
#pragma unroll
      for (int e = 0; e < kV; ++e) v[j + e] = j + e < n ? to_acc(src[j + e]) : acc_t<T>(0);
    }
  }
}

// dst[i] = v[i] for i < n (nothing past n). Same alignment contract as load_run.
template <bool kVec, typename T, int N>
__device__ __forceinline__ void store_run(T* dst, int64_t n, const acc_t<T> (&v)[N]) {
  constexpr int kV = kVecElts<T>;
  static_assert(N % kV == 0, "a run is made of whole vectors");
#pragma unroll
  for (int j = 0; j < N; j += kV) {
    if (kVec && j + kV <= n) {
      Vec<T> pack;
#pragma unroll
      for (int e = 0; e < kV; ++e) pack.v[e] = from_acc<T>(v[j + e]);
      *reinterpret_cast<Vec<T>*>(dst + j) = pack;
    } else {
#pragma unroll
      for (int e = 0; e < kV; ++e) {
        if (j + e < n) dst[j + e] = from_acc<T>(v[j + e]);
      }
    }
  }
}

// ---- channel-last tiles ---------------------------------------------------------------------

// tile[r][j] = input of channel c_begin + j at position first + r, for r < kRows and
// j < kClCols<T> (0 for channels >= C, and per Inputs::at outside [0, L)). Every thread moves
// whole 16-byte vectors; all its loads are issued before its shared-memory stores. With kVec
// the rows of `in` are 16-byte aligned and in.x_c == 1.
template <bool kVec, int kRows, typename T>
__device__ __forceinline__ void load_tile(const Inputs<T>& in, int64_t c_begin, int64_t first,
                                          T (*tile)[kClCols<T>]) {
  constexpr int kV = kVecElts<T>;
  constexpr int kVecs = kRows * kClRowVecs;
  constexpr int kIters = (kVecs + kClThreads - 1) / kClThreads;
  Vec<T> vals[kIters];
#pragma unroll
  for (int it = 0; it < kIters; ++it) {
    const int v = it * kClThreads + threadIdx.x;
    if (v >= kVecs) break;  // the last pass may be partial
    const int64_t t = first + v / kClRowVecs, c = c_begin + (v % kClRowVecs) * kV;
    const int64_t nc = min64(kV, in.C - c);  // channels of this vector inside the tensor
    if (kVec && nc == kV && t >= 0 && t < in.L) {
      vals[it] = *reinterpret_cast<const Vec<T>*>(in.x + t * in.x_t + c);
    } else {
#pragma unroll
      for (int e = 0; e < kV; ++e)
        vals[it].v[e] = from_acc<T>(e < nc ? in.at(c + e, t) : acc_t<T>(0));
    }
  }
#pragma unroll
  for (int it = 0; it < kIters; ++it) {
    const int v = it * kClThreads + threadIdx.x;
    if (v < kVecs) {
      *reinterpret_cast<Vec<T>*>(&tile[v / kClRowVecs][(v % kClRowVecs) * kV]) = vals[it];
    }
  }
}

// The reverse of load_tile for an output whose channel stride is 1: row r of the tile goes to
// position first + r of `out` (batch element already applied), skipping positions >= L and
// channels >= C.
template <bool kVec, int kRows, typename T>
__device__ __forceinline__ void store_tile(T* out, int64_t t_stride, int64_t C, int64_t L,
                                           int64_t c_begin, int64_t first,
                                           const T (*tile)[kClCols<T>]) {
  constexpr int kV = kVecElts<T>;
  constexpr int kVecs = kRows * kClRowVecs;
  static_assert(kVecs % kClThreads == 0, "whole rows per pass");
#pragma unroll
  for (int it = 0; it < kVecs / kClThreads; ++it) {
    const int v = it * kClThreads + threadIdx.x;
    const int r = v / kClRowVecs, j = (v % kClRowVecs) * kV;
    const int64_t t = first + r, c = c_begin + j;
    if (t >= L || c >= C) continue;
    T* dst = out + t * t_stride + c;
    const Vec<T> pack = *reinterpret_cast<const Vec<T>*>(&tile[r][j]);
    if (kVec && C - c >= kV) {
      *reinterpret_cast<Vec<T>*>(dst) = pack;
    } else {
#pragma unroll
      for (int e = 0; e < kV; ++e) {
        if (e < C - c) dst[e] = pack.v[e];
      }
    }
  }
}

// ---- activation -----------------------------------------------------------------------------

__device__ __forceinline__ float sigmoid(float v) { return 1.0f / (1.0f + expf(-v)); }
__device__ __forceinline__ double sigmoid(double v) { return 1.0 / (1.0 + exp(-v)); }

template <typename A>
__device__ __forceinline__ A activate(A pre, bool silu) {
  return silu ? pre * sigmoid(pre) : pre;
}

// dL/dpre from dL/dy: silu'(pre) = s * (1 + pre * (1 - s)) with s = sigmoid(pre).
template <typename A>
__device__ __forceinline__ A activate_grad(A dy, A pre, bool silu) {
  if (!silu) return dy;
  const A s = sigmoid(pre);
  return dy * s * (A(1) + pre * (A(1) - s));
}

// dpre at position u of channel c (0 outside [0, L)), straight from global memory: the
// pre-activation is recomputed from K inputs. For halos and the small kernels only.
template <typename T>
__device__ acc_t<T> dpre_at(const Inputs<T>& in, const T* dout_row, int64_t dout_t,
                            const acc_t<T>* w, acc_t<T> bias, bool silu, int64_t c, int64_t u) {
  using A = acc_t<T>;
  if (u < 0 || u >= in.L) return A(0);
  const A dy = to_acc(dout_row[u * dout_t]);
  if (!silu) return dy;
  A pre = bias;
  const int32_t id_u = in.id(u);
  for (int64_t k = 0; k < in.K; ++k) {
    const int64_t t = u - (in.K - 1) + k;
    if (in.id(t) == id_u) pre += w[k] * in.at(c, t);
  }
  return activate_grad(dy, pre, true);
}

// ---- block reduction ------------------------------------------------------------------------

// Sums v over a 1-D block of kThreads threads; the sums land in thread 0's v. Every thread of
// the block must call it (it holds two barriers), so kernels using it never return early.
template <int kThreads, int N, typename A>
__device__ __forceinline__ void block_sum(A (&v)[N]) {
  static_assert(kThreads % 32 == 0, "whole warps");
  constexpr int kWarps = kThreads / 32;
  __shared__ A partial[kWarps][N];
#pragma unroll
  for (int i = 0; i < N; ++i) {
#pragma unroll
    for (int offset = 16; offset > 0; offset /= 2) {
      v[i] += __shfl_down_sync(0xffffffffu, v[i], offset);
    }
  }
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  __syncthreads();  // an earlier call's reads of `partial` are done
  if (lane == 0) {
#pragma unroll
    for (int i = 0; i < N; ++i) partial[warp][i] = v[i];
  }
  __syncthreads();
  if (threadIdx.x == 0) {
#pragma unroll
    for (int i = 0; i < N; ++i) {
      A sum = partial[0][i];
#pragma unroll
      for (int w = 1; w < kWarps; ++w) sum += partial[w][i];
      v[i] = sum;
    }
  }
}

// ---- host-side helpers ----------------------------------------------------------------------

// True when `ptr` is 16-byte aligned and every stride is a whole number of 16-byte vectors,
// so that a run of vectors starting at a multiple of kVecElts<T> stays aligned.
template <typename T>
inline bool vec_aligned(const void* ptr, std::initializer_list<int64_t> strides) {
  if (reinterpret_cast<uintptr_t>(ptr) % 16 != 0) return false;
  for (const int64_t s : strides) {
    if (s % kVecElts<T> != 0) return false;
  }
  return true;
}

// Calls f(std::integral_constant<int, K>{}) for the widths with specialised kernels and
// returns true; returns false for every other width (the generic kernels take those).
template <typename F>
bool dispatch_width(int64_t width, F&& f) {
  switch (width) {
    case 2: f(std::integral_constant<int, 2>{}); return true;
    case 3: f(std::integral_constant<int, 3>{}); return true;
    case 4: f(std::integral_constant<int, 4>{}); return true;
    default: return false;
  }
}

// Calls f(std::bool_constant<v>{}).
template <typename F>
void dispatch_bool(bool v, F&& f) {
  if (v) {
    f(std::true_type{});
  } else {
    f(std::false_type{});
  }
}

}  // namespace nemocore::cuda::conv1d
