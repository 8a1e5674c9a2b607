// Mamba-2 SSD chunked scan on CUDA: forward (kernels.md 2.2), the same chunks, sequence table
// and outputs as csrc/cpu/kernels/ssd_fwd.cpp.
//
// Four kernels on p.stream, the workspace (SsdFwdParams::workspace, acc) holding per
// (chunk, head) the processed dt and its in-chunk cumsum acs, (chunks, H, Q) each, and the
// chunk states, (chunks, H, P, N):
//   1. dt_kernel      one thread per (chunk, head): dt processing and the sequential cumsum
//                     (the CPU's order of additions)
//   2. state_kernel   one block per (chunk, head, 32 x 32 tile of P x N): the chunk's own state
//                     Sc[p, n] = sum_s exp(acs[last] - acs[s]) dt_s x_s[p] B_s[n]
//   3. pass_kernel    one thread per (sequence, head, state element), sequential over the
//                     sequence's chunks: Sc(c) is replaced in place by the state chunk c starts
//                     from, Sin(c+1) = exp(acs_c[last]) Sin(c) + Sc(c); the last is the final state
//   4. output_kernel  one block per (chunk, head, 32 rows of the chunk, 32 columns of P):
//                     y = exp(acs) (C Sin^T) + (C B^T o E o dt) x + D x, gated by silu(z), where
//                     E[l, s] = exp(acs[l] - acs[s]) for s <= l and 0 above the diagonal
//
// Every product is a 32 x 32 output tile per block of 256 threads, each thread owning one
// column and four rows (ty, ty + 8, ty + 16, ty + 24), with the operands staged through shared
// memory in 32-wide slices along the reduction (rows padded to 33 against bank conflicts) and
// accumulated in the compute type (fp32, fp64 for fp64 io) with plain FMAs, whatever the io
// dtype. Out-of-range rows and columns are loaded as zeros, so tails need no other masking.
// Chunks never straddle sequences: a chunk's (row, first step, length) comes from a binary
// search of the sequence table by first_chunk.
#include <stdexcept>
#include <string>

#include "cuda/ssd_common.cuh"

namespace nemocore::cuda {
namespace {

constexpr int kTile = 32;     // output tile and reduction slice width
constexpr int kTileRows = 8;  // thread rows of a block: kTile / kTileRows rows each
constexpr int kTileThreads = kTile * kTileRows;
constexpr int kRowsPerThread = kTile / kTileRows;
constexpr int kPad = kTile + 1;
constexpr int kFlatThreads = 256;  // dt_kernel and pass_kernel

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

// Blocks ((chunk * H + head) * P tiles + P tile) * N tiles + N tile. Sc[p, n] as the sum over the
// chunk's steps s of (w_s x_s[p]) B_s[n], w_s = exp(acs[last] - acs[s]) dt_s: X^T B with X scaled
// row by row.
template <typename T>
__global__ void __launch_bounds__(kTileThreads)
    state_kernel(const SsdFwdParams p, int64_t p_tiles, int64_t n_tiles) {
  using A = acc_t<T>;
  __shared__ A Xs[kTile][kPad];  // [p][s]
  __shared__ A Bs[kTile][kPad];  // [n][s]
  const int64_t blk = blockIdx.x;
  const int64_t ch_h = blk / (p_tiles * n_tiles), c = ch_h / p.nheads, h = ch_h % p.nheads;
  const int64_t g = h / (p.nheads / p.ngroups);
  const int64_t p0 = blk / n_tiles % p_tiles * kTile;
  const int64_t n0 = blk % n_tiles * kTile;
  const int tx = threadIdx.x % kTile, ty = threadIdx.x / kTile;
  const Chunk ch = chunk_at(p, c);
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

// Blocks ((chunk * H + head) * row tiles + row tile of the chunk) * P tiles + P tile. See the file
// comment for the math; the masked half of C B^T is skipped a whole slice at a time (slices after
// the tile's rows).
template <typename T>
__global__ void __launch_bounds__(kTileThreads)
    output_kernel(const SsdFwdParams p, int64_t l_tiles, int64_t p_tiles) {
  using A = acc_t<T>;
  __shared__ A Cs[kTile][kPad];  // [l][n]
  __shared__ A Ws[kTile][kPad];  // [p][n] (Sin), then [s][n] (B)
  __shared__ A Ms[kTile][kPad];  // [l][s]
  __shared__ A Xs[kTile][kPad];  // [p][s]
  const int64_t blk = blockIdx.x;
  const int64_t ch_h = blk / (l_tiles * p_tiles), c = ch_h / p.nheads, h = ch_h % p.nheads;
  const int64_t g = h / (p.nheads / p.ngroups);
  const int64_t l0 = blk / p_tiles % l_tiles * kTile;
  const int64_t p0 = blk % p_tiles * kTile;
  const Chunk ch = chunk_at(p, c);
  if (l0 >= ch.len) return;  // the whole block: this chunk is shorter
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

  // y = exp(acs[l]) off + diag + D x, gated; out is contiguous (b, L, H, P).
  const int64_t pp = p0 + tx;
  if (pp >= p.headdim) return;
  const A* D = static_cast<const A*>(p.D);
  const A Dv = D ? D[p.D_has_hdim ? h * p.headdim + pp : h] : A(0);
  T* out = static_cast<T*>(p.out);
#pragma unroll
  for (int k = 0; k < kRowsPerThread; ++k) {
    const int64_t l = l0 + ty + kTileRows * k;
    if (l >= ch.len) continue;
    A y = ssd::exp_acc(acs[l]) * off[k] + diag[k];
    if (D) {
      y += Dv * load_io<T>(p.x, p.x_batch_stride, p.x_seq_stride, p.x_head_stride, p.x_dim_stride,
                           ch, h, l, pp, p.headdim);
    }
    if (p.z) {
      y *= ssd::silu(load_io<T>(p.z, p.z_batch_stride, p.z_seq_stride, p.z_head_stride,
                                p.z_dim_stride, ch, h, l, pp, p.headdim));
    }
    out[((ch.row * p.seqlen + ch.t0 + l) * p.nheads + h) * p.headdim + pp] = from_acc<T>(y);
  }
}

// ---- launchers ------------------------------------------------------------------------------

template <typename T>
void launch_fwd(const SsdFwdParams& p) {
  const auto stream = static_cast<cudaStream_t>(p.stream);
  const int64_t chunk_heads = p.num_chunks * p.nheads;
  const int64_t PN = p.headdim * p.dstate;
  const int64_t p_tiles = ssd::ceil_div(p.headdim, kTile), n_tiles = ssd::ceil_div(p.dstate, kTile);
  if (chunk_heads > 0) {
    launch_kernel("ssd_fwd_dt", dt_kernel<T>,
                  grid_blocks(ssd::ceil_div(chunk_heads, kFlatThreads), "ssd_fwd_dt"),
                  dim3(kFlatThreads), stream, p);
    if (PN > 0) {
      launch_kernel("ssd_fwd_state", state_kernel<T>,
                    grid_blocks(chunk_heads * p_tiles * n_tiles, "ssd_fwd_state"),
                    dim3(kTileThreads), stream, p, p_tiles, n_tiles);
    }
  }
  if (p.num_seqs * p.nheads > 0 && PN > 0) {
    const int64_t e_blocks = ssd::ceil_div(PN, kFlatThreads);
    launch_kernel("ssd_fwd_pass", pass_kernel<T>,
                  grid_blocks(p.num_seqs * p.nheads * e_blocks, "ssd_fwd_pass"), dim3(kFlatThreads),
                  stream, p, e_blocks);
  }
  if (chunk_heads > 0 && p.headdim > 0) {
    // A chunk has at most min(Q, L) rows; blocks past a shorter chunk's end return at once.
    const int64_t l_tiles = ssd::ceil_div(ssd::min64(p.chunk_size, p.seqlen), kTile);
    launch_kernel("ssd_fwd_output", output_kernel<T>,
                  grid_blocks(chunk_heads * l_tiles * p_tiles, "ssd_fwd_output"),
                  dim3(kTileThreads), stream, p, l_tiles, p_tiles);
  }
}

}  // namespace

// ---- dispatch -------------------------------------------------------------------------------

void ssd_fwd(const SsdFwdParams& p) {
  if (p.ngroups <= 0 || p.nheads % p.ngroups != 0) {
    throw std::invalid_argument("ssd_fwd: ngroups (" + std::to_string(p.ngroups) +
                                ") must divide nheads (" + std::to_string(p.nheads) + ")");
  }
  if (p.chunk_size < 1) {
    throw std::invalid_argument("ssd_fwd: chunk_size must be positive, got " +
                                std::to_string(p.chunk_size));
  }
  const int64_t need =
      ssd_cuda_fwd_workspace_elems(p.num_chunks, p.nheads, p.chunk_size, p.headdim, p.dstate);
  if (need > 0 && p.workspace == nullptr) {
    throw std::invalid_argument("ssd_fwd: the CUDA forward needs a workspace of " +
                                std::to_string(need) + " elements");
  }
  dispatch_float_io(p.io_dtype, "ssd_fwd",
                    [&](auto tag) { launch_fwd<typename decltype(tag)::type>(p); });
}

}  // namespace nemocore::cuda
