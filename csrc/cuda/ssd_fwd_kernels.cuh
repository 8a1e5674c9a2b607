// Device code shared by the CUDA SSD forward (ssd_fwd.cu) and backward (ssd_bwd.cu): the tile
// shape, the chunk lookup, the workspace layout, and the forward's first three kernels (dt and
// its cumsum, chunk states, state passing), which the backward reruns to recompute what it needs
// instead of saving it (kernels.md 2.6). See ssd_fwd.cu for what each kernel computes.
//
// Everything sits in an anonymous namespace: each .cu is compiled without relocatable device
// code, so each gets its own copy of the kernels rather than sharing template instantiations
// across translation units.
#pragma once

#include "cuda/common/mma.cuh"
#include "cuda/ssd_common.cuh"

namespace nemocore::cuda {
namespace {

constexpr int kTile = 32;     // output tile and reduction slice width
constexpr int kTileRows = 8;  // thread rows of a block: kTile / kTileRows rows each
constexpr int kTileThreads = kTile * kTileRows;
constexpr int kRowsPerThread = kTile / kTileRows;
constexpr int kPad = kTile + 1;
constexpr int kFlatThreads = 256;  // dt_kernel and pass_kernel
// Row length of a 16-bit tensor-core operand slice [32][kLdMma]: 80 bytes, so the eight rows a
// fragment read touches start in distinct banks.
constexpr int kLdMma = kTile + 8;

// ---- device code ----------------------------------------------------------------------------

struct Chunk {
  int64_t row, t0, len;
};

// The batch row, first step and length of global chunk c. The sequences are ordered by
// first_chunk; the one owning c is the last with first_chunk <= c (an empty sequence shares its
// first_chunk with the next one, so it is never the last such).
__device__ Chunk chunk_at(const SsdFwdParams& p, int64_t c) {
  int64_t lo = 0, hi = p.num_seqs - 1;
  while (lo < hi) {
    const int64_t mid = (lo + hi + 1) / 2;
    if (p.seqs[mid * kSeqColumns + kSeqFirstChunk] <= c) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  const int64_t* q = p.seqs + lo * kSeqColumns;
  const int64_t t0 = q[kSeqStart] + (c - q[kSeqFirstChunk]) * p.chunk_size;
  return {q[kSeqRow], t0, ssd::min64(p.chunk_size, q[kSeqEnd] - t0)};
}

template <typename A>
struct Work {
  A *dt, *acs, *states;
  __host__ __device__ explicit Work(const SsdFwdParams& p)
      : dt(static_cast<A*>(p.workspace)),
        acs(dt + p.num_chunks * p.nheads * p.chunk_size),
        states(acs + p.num_chunks * p.nheads * p.chunk_size) {}
};

template <typename T>
__global__ void __launch_bounds__(kFlatThreads) dt_kernel(const SsdFwdParams p) {
  using A = acc_t<T>;
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kFlatThreads + threadIdx.x;
  if (i >= p.num_chunks * p.nheads) return;
  const int64_t c = i / p.nheads, h = i % p.nheads;
  const Chunk ch = chunk_at(p, c);
  const Work<A> w(p);
  const A* raw = static_cast<const A*>(p.dt) + ch.row * p.dt_batch_stride + h * p.dt_head_stride;
  const A bias = p.dt_bias ? static_cast<const A*>(p.dt_bias)[h] : A(0);
  const A Ah = static_cast<const A*>(p.A)[h];
  const A lo = static_cast<A>(p.dt_min), hi = static_cast<A>(p.dt_max);
  A* dt = w.dt + i * p.chunk_size;
  A* acs = w.acs + i * p.chunk_size;
  A run = 0;
  for (int64_t l = 0; l < ch.len; ++l) {
    const A v = ssd::process_dt<A>(raw[(ch.t0 + l) * p.dt_seq_stride], bias, p.dt_softplus,
                                   p.has_dt_limit, lo, hi);
    dt[l] = v;
    run += v * Ah;
    acs[l] = run;
  }
}

// Element (r, k) of a (b, L, heads, width) io tensor at chunk row r, head (or group) hg, as the
// compute type; zero outside the chunk (r >= len) or the width.
template <typename T>
__device__ __forceinline__ acc_t<T> load_io(const void* base, int64_t sb, int64_t sl, int64_t sh,
                                            int64_t sw, const Chunk& ch, int64_t hg, int64_t r,
                                            int64_t k, int64_t width) {
  if (r >= ch.len || k >= width) return acc_t<T>(0);
  const T* ptr = static_cast<const T*>(base);
  return to_acc(ptr[ch.row * sb + (ch.t0 + r) * sl + hg * sh + k * sw]);
}

// acc[k] += sum_j X[ty + 8k][j] * Y[tx][j] over one 32-wide slice.
template <typename A>
__device__ __forceinline__ void tile_fma(const A (*X)[kPad], const A (*Y)[kPad], int tx, int ty,
                                         A (&acc)[kRowsPerThread]) {
#pragma unroll 8
  for (int j = 0; j < kTile; ++j) {
    const A y = Y[tx][j];
#pragma unroll
    for (int k = 0; k < kRowsPerThread; ++k) acc[k] += X[ty + kTileRows * k][j] * y;
  }
}

// Tensor-core version of tile_fma for T = bf16 / fp16: warp w owns the 16 x 8 tile of rows
// 16 (w / 4) + [0, 16) and columns 8 (w % 4) + [0, 8) of the 32 x 32 product, acc += X Y^T
// over one 32-wide slice (two m16n8k16 steps). acc holds its rows mma_row(i), columns
// mma_col(i) (fragment layout in cuda/common/mma.cuh). Every thread must call it.
__device__ __forceinline__ int mma_row(int i) {
  return threadIdx.x / 32 / 4 * 16 + threadIdx.x % 32 / 4 + 8 * (i / 2);
}
__device__ __forceinline__ int mma_col(int i) {
  return threadIdx.x / 32 % 4 * 8 + 2 * (threadIdx.x % 4) + i % 2;
}
template <typename T>
__device__ __forceinline__ void tile_mma(const T (*X)[kLdMma], const T (*Y)[kLdMma],
                                         float (&acc)[4]) {
  const int warp = threadIdx.x / 32, g = threadIdx.x % 32 / 4, t = threadIdx.x % 4;
  const T* xr = X[warp / 4 * 16 + g] + 2 * t;  // rows g and g + 8 of the warp's tile
  const T* yr = Y[warp % 4 * 8 + g] + 2 * t;   // column g of the warp's tile
  auto word = [](const T* q) { return *reinterpret_cast<const uint32_t*>(q); };
#pragma unroll
  for (int kk = 0; kk < kTile; kk += 16) {
    const uint32_t a[4] = {word(xr + kk), word(xr + 8 * kLdMma + kk), word(xr + kk + 8),
                           word(xr + 8 * kLdMma + kk + 8)};
    const uint32_t b[2] = {word(yr + kk), word(yr + kk + 8)};
    mma_m16n8k16<T>(acc, a, b, acc);
  }
}

// An fp32 operand as hi + lo in T (hi = v rounded, lo = the remainder rounded): two mmas
// carry it to about 16 significant bits instead of T's 8 (bf16) or 11 (fp16).
template <typename T>
__device__ __forceinline__ void split_hi_lo(float v, T& hi, T& lo) {
  hi = from_acc<T>(v);
  lo = from_acc<T>(v - to_acc(hi));
}

// The 32 x 32 tile (p0, n0) of chunk ch's own state: Sc[p, n] as the sum over the chunk's steps
// s of (w_s x_s[p]) B_s[n], w_s = exp(acs[last] - acs[s]) dt_s, i.e. X^T B with X scaled row by
// row; SIMT FMAs in the compute type.
template <typename T>
__device__ __forceinline__ void state_tile_simt(const SsdFwdParams& p, const Chunk& ch,
                                                int64_t ch_h, int64_t g, int64_t p0, int64_t n0) {
  using A = acc_t<T>;
  __shared__ A Xs[kTile][kPad];  // [p][s]
  __shared__ A Bs[kTile][kPad];  // [n][s]
  const int64_t h = ch_h % p.nheads;
  const int tx = threadIdx.x % kTile, ty = threadIdx.x / kTile;
  const Work<A> w(p);
  const A* dt = w.dt + ch_h * p.chunk_size;
  const A* acs = w.acs + ch_h * p.chunk_size;
  const A last = acs[ch.len - 1];
  A acc[kRowsPerThread] = {};
  for (int64_t s0 = 0; s0 < ch.len; s0 += kTile) {
    for (int e = threadIdx.x; e < kTile * kTile; e += kTileThreads) {
      const int r = e / kTile, k = e % kTile;  // r: step in the slice, k: column (p or n)
      const int64_t s = s0 + r;
      const A ws = s < ch.len ? ssd::exp_acc(last - acs[s]) * dt[s] : A(0);
      Xs[k][r] = ws * load_io<T>(p.x, p.x_batch_stride, p.x_seq_stride, p.x_head_stride,
                                 p.x_dim_stride, ch, h, s, p0 + k, p.headdim);
      Bs[k][r] = load_io<T>(p.B, p.B_batch_stride, p.B_seq_stride, p.B_group_stride,
                            p.B_state_stride, ch, g, s, n0 + k, p.dstate);
    }
    __syncthreads();
    tile_fma<A>(Xs, Bs, tx, ty, acc);
    __syncthreads();
  }
  A* S = w.states + ch_h * p.headdim * p.dstate;
  const int64_t n = n0 + tx;
#pragma unroll
  for (int k = 0; k < kRowsPerThread; ++k) {
    const int64_t pp = p0 + ty + kTileRows * k;
    if (pp < p.headdim && n < p.dstate) S[pp * p.dstate + n] = acc[k];
  }
}

// state_tile_simt's product on tensor cores: the rows w_s x_s[p] are scaled in fp32 and split
// as hi + lo in T (two mmas), B is exact in T, the accumulation is fp32.
template <typename T>
__device__ __forceinline__ void state_tile_mma(const SsdFwdParams& p, const Chunk& ch, int64_t ch_h,
                                               int64_t g, int64_t p0, int64_t n0) {
  alignas(16) __shared__ T Xs[kTile][kLdMma];  // [p][s], rounded
  alignas(16) __shared__ T Xl[kTile][kLdMma];  // [p][s], the remainder
  alignas(16) __shared__ T Bs[kTile][kLdMma];  // [n][s]
  const int64_t h = ch_h % p.nheads;
  const Work<float> w(p);
  const float* dt = w.dt + ch_h * p.chunk_size;
  const float* acs = w.acs + ch_h * p.chunk_size;
  const float last = acs[ch.len - 1];
  float acc[4] = {};
  for (int64_t s0 = 0; s0 < ch.len; s0 += kTile) {
    for (int e = threadIdx.x; e < kTile * kTile; e += kTileThreads) {
      const int r = e / kTile, k = e % kTile;  // r: step in the slice, k: column (p or n)
      const int64_t s = s0 + r;
      const float ws = s < ch.len ? ssd::exp_acc(last - acs[s]) * dt[s] : 0.0f;
      split_hi_lo(ws * load_io<T>(p.x, p.x_batch_stride, p.x_seq_stride, p.x_head_stride,
                                  p.x_dim_stride, ch, h, s, p0 + k, p.headdim),
                  Xs[k][r], Xl[k][r]);
      Bs[k][r] = from_acc<T>(load_io<T>(p.B, p.B_batch_stride, p.B_seq_stride, p.B_group_stride,
                                        p.B_state_stride, ch, g, s, n0 + k, p.dstate));
    }
    __syncthreads();
    tile_mma<T>(Xl, Bs, acc);
    tile_mma<T>(Xs, Bs, acc);
    __syncthreads();
  }
  float* S = w.states + ch_h * p.headdim * p.dstate;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int64_t pp = p0 + mma_row(i), n = n0 + mma_col(i);
    if (pp < p.headdim && n < p.dstate) S[pp * p.dstate + n] = acc[i];
  }
}

// Blocks ((chunk * H + head) * P tiles + P tile) * N tiles + N tile, one state tile each: on
// tensor cores for bf16 / fp16 io, SIMT FMAs for fp32 / fp64.
template <typename T>
__global__ void __launch_bounds__(kTileThreads)
    state_kernel(const SsdFwdParams p, int64_t p_tiles, int64_t n_tiles) {
  const int64_t blk = blockIdx.x;
  const int64_t ch_h = blk / (p_tiles * n_tiles), c = ch_h / p.nheads, h = ch_h % p.nheads;
  const int64_t g = h / (p.nheads / p.ngroups);
  const int64_t p0 = blk / n_tiles % p_tiles * kTile;
  const int64_t n0 = blk % n_tiles * kTile;
  const Chunk ch = chunk_at(p, c);
  if constexpr (kHasMma<T>) {
    state_tile_mma<T>(p, ch, ch_h, g, p0, n0);
  } else {
    state_tile_simt<T>(p, ch, ch_h, g, p0, n0);
  }
}

// Blocks (sequence * H + head) * element blocks + element block. Sequential over the sequence's
// chunks, as the CPU's pass_states; each thread owns one (p, n) element of one (sequence, head).
template <typename T>
__global__ void __launch_bounds__(kFlatThreads)
    pass_kernel(const SsdFwdParams p, int64_t e_blocks) {
  using A = acc_t<T>;
  const int64_t blk = blockIdx.x, s_h = blk / e_blocks;
  const int64_t s = s_h / p.nheads, h = s_h % p.nheads;
  const int64_t e = blk % e_blocks * kFlatThreads + threadIdx.x;
  const int64_t PN = p.headdim * p.dstate;
  if (e >= PN) return;
  const int64_t pp = e / p.dstate, n = e % p.dstate;
  const int64_t* q = p.seqs + s * kSeqColumns;
  A run = 0;
  if (p.initial_states && q[kSeqInitRow] >= 0) {
    const A* init = static_cast<const A*>(p.initial_states);
    run = init[q[kSeqInitRow] * p.init_row_stride + h * p.init_head_stride +
               pp * p.init_dim_stride + n * p.init_state_stride];
  }
  const Work<A> w(p);
  const int64_t len = q[kSeqEnd] - q[kSeqStart];
  const int64_t nch = ssd::ceil_div(len, p.chunk_size);
  for (int64_t k = 0; k < nch; ++k) {
    const int64_t c = q[kSeqFirstChunk] + k;
    const int64_t clen = ssd::min64(p.chunk_size, len - k * p.chunk_size);
    const A decay = ssd::exp_acc(w.acs[(c * p.nheads + h) * p.chunk_size + clen - 1]);
    A* S = w.states + (c * p.nheads + h) * PN + e;
    const A own = *S;
    *S = run;
    run = decay * run + own;
  }
  if (p.final_states) static_cast<A*>(p.final_states)[(s * p.nheads + h) * PN + e] = run;
}

// Adds the skip term D x to the thread's rows l0 + ty + 8k of column p0 + tx (< P).
template <typename T>
__device__ __forceinline__ void add_skip(const SsdFwdParams& p, const Chunk& ch, int64_t h,
                                         int64_t l0, int64_t pp, acc_t<T> (&y)[kRowsPerThread]) {
  using A = acc_t<T>;
  const A* D = static_cast<const A*>(p.D);
  if (!D) return;
  const A Dv = D[p.D_has_hdim ? h * p.headdim + pp : h];
  const int ty = threadIdx.x / kTile;
#pragma unroll
  for (int k = 0; k < kRowsPerThread; ++k) {
    const int64_t l = l0 + ty + kTileRows * k;
    if (l >= ch.len) continue;
    y[k] += Dv * load_io<T>(p.x, p.x_batch_stride, p.x_seq_stride, p.x_head_stride, p.x_dim_stride,
                            ch, h, l, pp, p.headdim);
  }
}

// output_rows on SIMT FMAs in the compute type (fp32 / fp64 io).
template <typename T>
__device__ __forceinline__ void output_rows_simt(const SsdFwdParams& p, const Chunk& ch,
                                                 int64_t ch_h, int64_t l0, int64_t p0,
                                                 acc_t<T> (&y)[kRowsPerThread]) {
  using A = acc_t<T>;
  __shared__ A Cs[kTile][kPad];  // [l][n]
  __shared__ A Ws[kTile][kPad];  // [p][n] (Sin), then [s][n] (B)
  __shared__ A Ms[kTile][kPad];  // [l][s]
  __shared__ A Xs[kTile][kPad];  // [p][s]
  const int64_t h = ch_h % p.nheads, g = h / (p.nheads / p.ngroups);
  const int tx = threadIdx.x % kTile, ty = threadIdx.x / kTile;
  const Work<A> w(p);
  const A* dt = w.dt + ch_h * p.chunk_size;
  const A* acs = w.acs + ch_h * p.chunk_size;
  const A* Sin = w.states + ch_h * p.headdim * p.dstate;
  const int64_t N = p.dstate;

  // Inter-chunk term: C (rows l) times Sin^T (columns p), before the decay exp(acs[l]).
  A off[kRowsPerThread] = {};
  for (int64_t n0 = 0; n0 < N; n0 += kTile) {
    for (int e = threadIdx.x; e < kTile * kTile; e += kTileThreads) {
      const int r = e / kTile, k = e % kTile;
      Cs[r][k] = load_io<T>(p.C, p.C_batch_stride, p.C_seq_stride, p.C_group_stride,
                            p.C_state_stride, ch, g, l0 + r, n0 + k, N);
      const int64_t pp = p0 + r, n = n0 + k;
      Ws[r][k] = pp < p.headdim && n < N ? Sin[pp * N + n] : A(0);
    }
    __syncthreads();
    tile_fma<A>(Cs, Ws, tx, ty, off);
    __syncthreads();
  }

  // Intra-chunk term, slice by slice of source steps s0 .. s0 + 31 <= the tile's last row.
  A diag[kRowsPerThread] = {};
  const int64_t s_end = ssd::min64(l0 + kTile, ch.len);
  for (int64_t s0 = 0; s0 < s_end; s0 += kTile) {
    A cb[kRowsPerThread] = {};
    for (int64_t n0 = 0; n0 < N; n0 += kTile) {
      for (int e = threadIdx.x; e < kTile * kTile; e += kTileThreads) {
        const int r = e / kTile, k = e % kTile;
        Cs[r][k] = load_io<T>(p.C, p.C_batch_stride, p.C_seq_stride, p.C_group_stride,
                              p.C_state_stride, ch, g, l0 + r, n0 + k, N);
        Ws[r][k] = load_io<T>(p.B, p.B_batch_stride, p.B_seq_stride, p.B_group_stride,
                              p.B_state_stride, ch, g, s0 + r, n0 + k, N);
      }
      __syncthreads();
      tile_fma<A>(Cs, Ws, tx, ty, cb);
      __syncthreads();
    }
    // Ms[l][s] = CB[l, s] exp(acs[l] - acs[s]) dt_s, zero above the diagonal and past the
    // chunk; the exponent is formed before exp (kernels.md 2.4).
    const int64_t s = s0 + tx;
#pragma unroll
    for (int k = 0; k < kRowsPerThread; ++k) {
      const int64_t l = l0 + ty + kTileRows * k;
      Ms[ty + kTileRows * k][tx] =
          s <= l && l < ch.len ? cb[k] * ssd::exp_acc(acs[l] - acs[s]) * dt[s] : A(0);
    }
    for (int e = threadIdx.x; e < kTile * kTile; e += kTileThreads) {
      const int r = e / kTile, k = e % kTile;  // r: step, k: column of P
      Xs[k][r] = load_io<T>(p.x, p.x_batch_stride, p.x_seq_stride, p.x_head_stride, p.x_dim_stride,
                            ch, h, s0 + r, p0 + k, p.headdim);
    }
    __syncthreads();
    tile_fma<A>(Ms, Xs, tx, ty, diag);
    __syncthreads();
  }

  const int64_t pp = p0 + tx;
  if (pp >= p.headdim) return;
#pragma unroll
  for (int k = 0; k < kRowsPerThread; ++k) {
    const int64_t l = l0 + ty + kTileRows * k;
    if (l < ch.len) y[k] = ssd::exp_acc(acs[l]) * off[k] + diag[k];
  }
  add_skip<T>(p, ch, h, l0, pp, y);
}

// output_rows on tensor cores (bf16 / fp16 io), fp32 accumulation: C B^T with C and B exact
// in T; C Sin^T and (CB o E o dt) x with Sin (fp32) and the masked, decayed CB[l, s]
// exp(acs[l] - acs[s]) dt_s (formed in fp32 from the fp32 CB) split as hi + lo in T, two mmas
// each, and x exact. The warps' fragments meet in shared memory (Ys) for the D term and the
// caller's (ty + 8k, tx) layout.
template <typename T>
__device__ __forceinline__ void output_rows_mma(const SsdFwdParams& p, const Chunk& ch,
                                                int64_t ch_h, int64_t l0, int64_t p0,
                                                float (&y)[kRowsPerThread]) {
  alignas(16) __shared__ T Cs[kTile][kLdMma];  // [l][n]
  alignas(16) __shared__ T Ws[kTile][kLdMma];  // [p][n] (Sin, rounded), then [s][n] (B)
  alignas(16) __shared__ T Wl[kTile][kLdMma];  // [p][n] (Sin, the remainder)
  alignas(16) __shared__ T Ms[kTile][kLdMma];  // [l][s], rounded
  alignas(16) __shared__ T Ml[kTile][kLdMma];  // [l][s], the remainder
  alignas(16) __shared__ T Xs[kTile][kLdMma];  // [p][s]
  __shared__ float Ys[kTile][kPad];            // [l][p]
  const int64_t h = ch_h % p.nheads, g = h / (p.nheads / p.ngroups);
  const Work<float> w(p);
  const float* dt = w.dt + ch_h * p.chunk_size;
  const float* acs = w.acs + ch_h * p.chunk_size;
  const float* Sin = w.states + ch_h * p.headdim * p.dstate;
  const int64_t N = p.dstate;
  auto load_c = [&](int r, int k, int64_t n0) {
    return from_acc<T>(load_io<T>(p.C, p.C_batch_stride, p.C_seq_stride, p.C_group_stride,
                                  p.C_state_stride, ch, g, l0 + r, n0 + k, N));
  };

  float off[4] = {};
  for (int64_t n0 = 0; n0 < N; n0 += kTile) {
    for (int e = threadIdx.x; e < kTile * kTile; e += kTileThreads) {
      const int r = e / kTile, k = e % kTile;
      Cs[r][k] = load_c(r, k, n0);
      const int64_t pp = p0 + r, n = n0 + k;
      split_hi_lo(pp < p.headdim && n < N ? Sin[pp * N + n] : 0.0f, Ws[r][k], Wl[r][k]);
    }
    __syncthreads();
    tile_mma<T>(Cs, Wl, off);
    tile_mma<T>(Cs, Ws, off);
    __syncthreads();
  }

  float diag[4] = {};
  const int64_t s_end = ssd::min64(l0 + kTile, ch.len);
  for (int64_t s0 = 0; s0 < s_end; s0 += kTile) {
    float cb[4] = {};
    for (int64_t n0 = 0; n0 < N; n0 += kTile) {
      for (int e = threadIdx.x; e < kTile * kTile; e += kTileThreads) {
        const int r = e / kTile, k = e % kTile;
        Cs[r][k] = load_c(r, k, n0);
        Ws[r][k] = from_acc<T>(load_io<T>(p.B, p.B_batch_stride, p.B_seq_stride, p.B_group_stride,
                                          p.B_state_stride, ch, g, s0 + r, n0 + k, N));
      }
      __syncthreads();
      tile_mma<T>(Cs, Ws, cb);
      __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int64_t l = l0 + mma_row(i), s = s0 + mma_col(i);
      split_hi_lo(s <= l && l < ch.len ? cb[i] * ssd::exp_acc(acs[l] - acs[s]) * dt[s] : 0.0f,
                  Ms[mma_row(i)][mma_col(i)], Ml[mma_row(i)][mma_col(i)]);
    }
    for (int e = threadIdx.x; e < kTile * kTile; e += kTileThreads) {
      const int r = e / kTile, k = e % kTile;  // r: step, k: column of P
      Xs[k][r] = from_acc<T>(load_io<T>(p.x, p.x_batch_stride, p.x_seq_stride, p.x_head_stride,
                                        p.x_dim_stride, ch, h, s0 + r, p0 + k, p.headdim));
    }
    __syncthreads();
    tile_mma<T>(Ml, Xs, diag);
    tile_mma<T>(Ms, Xs, diag);
    __syncthreads();
  }

#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int64_t l = l0 + mma_row(i);
    Ys[mma_row(i)][mma_col(i)] = l < ch.len ? ssd::exp_acc(acs[l]) * off[i] + diag[i] : 0.0f;
  }
  __syncthreads();
  const int tx = threadIdx.x % kTile, ty = threadIdx.x / kTile;
#pragma unroll
  for (int k = 0; k < kRowsPerThread; ++k) y[k] = Ys[ty + kTileRows * k][tx];
  if (p0 + tx < p.headdim) add_skip<T>(p, ch, h, l0, p0 + tx, y);
}

// The output before the gate, y = exp(acs[l]) (C Sin^T)[l, p] + (C B^T o E o dt) x + D x, for the
// thread's rows l0 + ty + 8k of chunk `ch` (row-major chunk index ch_h = chunk * H + head) and
// column p0 + tx; rows past the chunk and columns past P are left unspecified. The masked half
// of C B^T is skipped a whole slice at a time (slices after the tile's rows). Every thread of
// the block must call it (barriers).
template <typename T>
__device__ __forceinline__ void output_rows(const SsdFwdParams& p, const Chunk& ch, int64_t ch_h,
                                            int64_t l0, int64_t p0, acc_t<T> (&y)[kRowsPerThread]) {
  if constexpr (kHasMma<T>) {
    output_rows_mma<T>(p, ch, ch_h, l0, p0, y);
  } else {
    output_rows_simt<T>(p, ch, ch_h, l0, p0, y);
  }
}

}  // namespace
}  // namespace nemocore::cuda
