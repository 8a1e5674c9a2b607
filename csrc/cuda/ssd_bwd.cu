// Mamba-2 SSD chunked scan on CUDA: backward (kernels.md 2.6), the phases and gradient formulas
// of csrc/cpu/kernels/ssd_bwd.cpp and ssd_bwd_chunk.h (the math is written out there).
//
// Kernels on p.stream. The workspace (SsdBwdParams::workspace, acc, laid out by BwdWork) starts
// with the forward's, which kernels 1-3 of ssd_fwd_kernels.cuh refill: dt, acs and the state
// each chunk starts from (Sin). Then:
//   4. gate_kernel    (chunk, head, 32 steps, 32 columns of P): dz, recomputing y (as the
//                     forward) only when z is given, and dy, the gradient of y before the gate
//   5. dsoff_kernel   (chunk, head, 32 x 32 tile of P x N): the output path's state gradient
//                     dSoff[p, n] = sum_t exp(acs_t) dy_t[p] C_t[n]
//   6. rpass_kernel   (sequence, head, state element), backwards over the sequence's chunks:
//                     G(c - 1) = exp(acs_c[last]) G(c) + dSoff(c) from G(last) = dfinal, G(c)
//                     the gradient of the state after chunk c; the last G is dinitial_states
//   7. cb_kernel      (chunk, group, 32 x 32 tile on or below the diagonal): C B^T
//   8. dcb_kernel     (chunk, group, same tiles), over the group's heads: dCB[t, s] =
//                     sum_h exp(acs_t - acs_s) dt_s (dy_t . x_s), and per head the row and column
//                     sums of dCB o CB (the intra-chunk terms of d acs), per tile
//   9. dx_kernel      (chunk, head, 32 steps), over P 32 columns at a time: dXraw = M^T dy +
//                     el (B G^T), dx = dt dXraw + D dy, the per-step dot products d acs and ddt
//                     need, and the per-tile sums of dy x for dD
//  10. finish_kernel  (chunk, head): d acs from its paths, its reverse cumsum, ddt, and the
//                     chunk's shares of dA and ddt_bias
//  11. dbc_kernel     (chunk, group, 32 steps, 32 columns of N), over the group's heads:
//                     dC = exp(acs) dy Sin + dCB B,  dB = (el dt x) G + dCB^T C
//  12. param_kernel   (head, column of P): dA, ddt_bias and dD, summed over chunks in order
// Here M[t, s] = CB[t, s] exp(acs_t - acs_s) for s <= t and el_s = exp(acs[last] - acs_s): every
// exponent is a difference inside one chunk (<= 0 for a decaying state), never a ratio of
// exponentials (kernels.md 2.4). There are no atomics: a sum that spans blocks goes through
// per-tile partial sums in the workspace, added up in a fixed order, so results are
// deterministic. Products use the forward's 32 x 32 tiles of 256 threads (tile_fma) and
// accumulate in the compute type (fp32, fp64 for fp64 io) whatever the io dtype.
#include <stdexcept>
#include <string>

#include "cuda/ssd_fwd_kernels.cuh"

namespace nemocore::cuda {
namespace {

// ---- device code ----------------------------------------------------------------------------

// The backward's part of the workspace, after the forward's (see ssd_cuda_bwd_workspace_elems).
// Per (chunk, head), ch_h = chunk * H + head:
//   dy (Q, P), gstate (P, N): dSoff, then G;  osin, qv, xdot (Q): the per-step dot products of
//   dx_kernel (osin becomes d acs, then its reverse cumsum; qv becomes ddt);  rowpart, colpart
//   (tiles, Q): the intra-chunk sums of dcb_kernel per tile;  dDpart (tiles, P);  dApart and
//   biaspart (1).  Per (chunk, group): cb and dcb (Q, Q), row-major [t][s].
template <typename A>
struct BwdWork : Work<A> {
  int64_t tiles;
  A *dy, *gstate, *osin, *qv, *xdot, *rowpart, *colpart, *dDpart, *dApart, *biaspart, *cb, *dcb;
  __host__ __device__ explicit BwdWork(const SsdFwdParams& p) : Work<A>(p) {
    const int64_t CH = p.num_chunks * p.nheads, Q = p.chunk_size;
    tiles = (Q + kTile - 1) / kTile;
    dy = this->states + CH * p.headdim * p.dstate;
    gstate = dy + CH * Q * p.headdim;
    osin = gstate + CH * p.headdim * p.dstate;
    qv = osin + CH * Q;
    xdot = qv + CH * Q;
    rowpart = xdot + CH * Q;
    colpart = rowpart + CH * tiles * Q;
    dDpart = colpart + CH * tiles * Q;
    dApart = dDpart + CH * tiles * p.headdim;
    biaspart = dApart + CH;
    cb = biaspart + CH;
    dcb = cb + p.num_chunks * p.ngroups * Q * Q;
  }
};

// Blocks as output_kernel's. y is needed only for dz.
template <typename T>
__global__ void __launch_bounds__(kTileThreads)
    gate_kernel(const SsdBwdParams bp, int64_t l_tiles, int64_t p_tiles) {
  using A = acc_t<T>;
  const SsdFwdParams& p = bp.fwd;
  const int64_t blk = blockIdx.x;
  const int64_t ch_h = blk / (l_tiles * p_tiles), c = ch_h / p.nheads, h = ch_h % p.nheads;
  const int64_t l0 = blk / p_tiles % l_tiles * kTile;
  const int64_t p0 = blk % p_tiles * kTile;
  const Chunk ch = chunk_at(p, c);
  if (l0 >= ch.len) return;
  A y[kRowsPerThread] = {};
  if (p.z) output_rows<T>(p, ch, ch_h, l0, p0, y);
  const int tx = threadIdx.x % kTile, ty = threadIdx.x / kTile;
  const int64_t pp = p0 + tx;
  if (pp >= p.headdim) return;
  const BwdWork<A> w(p);
#pragma unroll
  for (int k = 0; k < kRowsPerThread; ++k) {
    const int64_t l = l0 + ty + kTileRows * k;
    if (l >= ch.len) continue;
    A g = load_io<T>(bp.dout, bp.dout_batch_stride, bp.dout_seq_stride, bp.dout_head_stride,
                     bp.dout_dim_stride, ch, h, l, pp, p.headdim);
    if (p.z) {
      const A z = load_io<T>(p.z, p.z_batch_stride, p.z_seq_stride, p.z_head_stride, p.z_dim_stride,
                             ch, h, l, pp, p.headdim);
      const A sg = ssd::sigmoid(z);
      const A dz = g * y[k] * (sg * (A(1) + z * (A(1) - sg)));
      static_cast<T*>(bp.dz)[((ch.row * p.seqlen + ch.t0 + l) * p.nheads + h) * p.headdim + pp] =
          from_acc<T>(dz);
      g *= z * sg;
    }
    w.dy[(ch_h * p.chunk_size + l) * p.headdim + pp] = g;
  }
}

// Blocks ((chunk * H + head) * P tiles + P tile) * N tiles + N tile, as state_kernel's: X^T C
// with the rows of X = dy scaled by exp(acs).
template <typename T>
__global__ void __launch_bounds__(kTileThreads)
    dsoff_kernel(const SsdBwdParams bp, int64_t p_tiles, int64_t n_tiles) {
  using A = acc_t<T>;
  const SsdFwdParams& p = bp.fwd;
  __shared__ A Xs[kTile][kPad];  // [p][t]
  __shared__ A Cs[kTile][kPad];  // [n][t]
  const int64_t blk = blockIdx.x;
  const int64_t ch_h = blk / (p_tiles * n_tiles), c = ch_h / p.nheads, h = ch_h % p.nheads;
  const int64_t g = h / (p.nheads / p.ngroups);
  const int64_t p0 = blk / n_tiles % p_tiles * kTile;
  const int64_t n0 = blk % n_tiles * kTile;
  const int tx = threadIdx.x % kTile, ty = threadIdx.x / kTile;
  const Chunk ch = chunk_at(p, c);
  const BwdWork<A> w(p);
  const A* acs = w.acs + ch_h * p.chunk_size;
  const A* dy = w.dy + ch_h * p.chunk_size * p.headdim;
  A acc[kRowsPerThread] = {};
  for (int64_t t0 = 0; t0 < ch.len; t0 += kTile) {
    for (int e = threadIdx.x; e < kTile * kTile; e += kTileThreads) {
      const int r = e / kTile, k = e % kTile;  // r: step in the slice, k: column (p or n)
      const int64_t t = t0 + r, pk = p0 + k;
      Xs[k][r] =
          t < ch.len && pk < p.headdim ? ssd::exp_acc(acs[t]) * dy[t * p.headdim + pk] : A(0);
      Cs[k][r] = load_io<T>(p.C, p.C_batch_stride, p.C_seq_stride, p.C_group_stride,
                            p.C_state_stride, ch, g, t, n0 + k, p.dstate);
    }
    __syncthreads();
    tile_fma<A>(Xs, Cs, tx, ty, acc);
    __syncthreads();
  }
  A* S = w.gstate + ch_h * p.headdim * p.dstate;
  const int64_t n = n0 + tx;
#pragma unroll
  for (int k = 0; k < kRowsPerThread; ++k) {
    const int64_t pp = p0 + ty + kTileRows * k;
    if (pp < p.headdim && n < p.dstate) S[pp * p.dstate + n] = acc[k];
  }
}

// Blocks (sequence * H + head) * element blocks + element block, as pass_kernel's, backwards.
// gstate holds dSoff(c) on entry and G(c) on exit.
template <typename T>
__global__ void __launch_bounds__(kFlatThreads)
    rpass_kernel(const SsdBwdParams bp, int64_t e_blocks) {
  using A = acc_t<T>;
  const SsdFwdParams& p = bp.fwd;
  const int64_t blk = blockIdx.x, s_h = blk / e_blocks;
  const int64_t s = s_h / p.nheads, h = s_h % p.nheads;
  const int64_t e = blk % e_blocks * kFlatThreads + threadIdx.x;
  const int64_t PN = p.headdim * p.dstate;
  if (e >= PN) return;
  const int64_t* q = p.seqs + s * kSeqColumns;
  A G = bp.dfinal_states ? static_cast<const A*>(bp.dfinal_states)[s_h * PN + e] : A(0);
  const BwdWork<A> w(p);
  const int64_t len = q[kSeqEnd] - q[kSeqStart];
  for (int64_t k = ssd::ceil_div(len, p.chunk_size) - 1; k >= 0; --k) {
    const int64_t c = q[kSeqFirstChunk] + k;
    const int64_t clen = ssd::min64(p.chunk_size, len - k * p.chunk_size);
    const A decay = ssd::exp_acc(w.acs[(c * p.nheads + h) * p.chunk_size + clen - 1]);
    A* gs = w.gstate + (c * p.nheads + h) * PN + e;
    const A dsoff = *gs;
    *gs = G;
    G = decay * G + dsoff;
  }
  if (bp.dinitial_states && p.initial_states && q[kSeqInitRow] >= 0) {
    static_cast<A*>(bp.dinitial_states)[(q[kSeqInitRow] * p.nheads + h) * PN + e] = G;
  }
}

// Tile (ti, si) of a chunk's Q x Q matrices, for blocks (chunk * G + group) * l_tiles^2 +
// ti * l_tiles + si; false when the tile lies above the diagonal or past the chunk.
struct SquareTile {
  int64_t c, g, t0, s0, ti, si;
  Chunk ch;
};
__device__ __forceinline__ bool square_tile(const SsdFwdParams& p, int64_t l_tiles, SquareTile& q) {
  const int64_t blk = blockIdx.x, c_g = blk / (l_tiles * l_tiles);
  q.c = c_g / p.ngroups, q.g = c_g % p.ngroups;
  q.ti = blk / l_tiles % l_tiles, q.si = blk % l_tiles;
  q.t0 = q.ti * kTile, q.s0 = q.si * kTile;
  q.ch = chunk_at(p, q.c);
  return q.si <= q.ti && q.t0 < q.ch.len;
}

template <typename T>
__global__ void __launch_bounds__(kTileThreads) cb_kernel(const SsdBwdParams bp, int64_t l_tiles) {
  using A = acc_t<T>;
  const SsdFwdParams& p = bp.fwd;
  __shared__ A Cs[kTile][kPad];  // [t][n]
  __shared__ A Bs[kTile][kPad];  // [s][n]
  SquareTile q;
  if (!square_tile(p, l_tiles, q)) return;
  const int tx = threadIdx.x % kTile, ty = threadIdx.x / kTile;
  A acc[kRowsPerThread] = {};
  for (int64_t n0 = 0; n0 < p.dstate; n0 += kTile) {
    for (int e = threadIdx.x; e < kTile * kTile; e += kTileThreads) {
      const int r = e / kTile, k = e % kTile;
      Cs[r][k] = load_io<T>(p.C, p.C_batch_stride, p.C_seq_stride, p.C_group_stride,
                            p.C_state_stride, q.ch, q.g, q.t0 + r, n0 + k, p.dstate);
      Bs[r][k] = load_io<T>(p.B, p.B_batch_stride, p.B_seq_stride, p.B_group_stride,
                            p.B_state_stride, q.ch, q.g, q.s0 + r, n0 + k, p.dstate);
    }
    __syncthreads();
    tile_fma<A>(Cs, Bs, tx, ty, acc);
    __syncthreads();
  }
  const BwdWork<A> w(p);
  A* cb = w.cb + (q.c * p.ngroups + q.g) * p.chunk_size * p.chunk_size;
  const int64_t s = q.s0 + tx;
#pragma unroll
  for (int k = 0; k < kRowsPerThread; ++k) {
    const int64_t t = q.t0 + ty + kTileRows * k;
    if (t < q.ch.len && s < q.ch.len) cb[t * p.chunk_size + s] = acc[k];
  }
}

// Blocks as cb_kernel's. Per head, w[t, s] = dCB_h[t, s] CB[t, s] adds to d acs_t and subtracts
// from d acs_s: its row sums (a warp's lanes are the tile's columns) go to rowpart[si][t], its
// column sums (over the 8 thread rows, in order) to colpart[ti][s].
template <typename T>
__global__ void __launch_bounds__(kTileThreads) dcb_kernel(const SsdBwdParams bp, int64_t l_tiles) {
  using A = acc_t<T>;
  const SsdFwdParams& p = bp.fwd;
  __shared__ A Ys[kTile][kPad];  // [t][p]
  __shared__ A Xs[kTile][kPad];  // [s][p]
  __shared__ A Red[kTileRows][kPad];
  SquareTile q;
  if (!square_tile(p, l_tiles, q)) return;
  const int tx = threadIdx.x % kTile, ty = threadIdx.x / kTile;
  const int64_t Q = p.chunk_size, P = p.headdim, len = q.ch.len, hpg = p.nheads / p.ngroups;
  const int64_t s = q.s0 + tx;
  const BwdWork<A> w(p);
  const A* cb = w.cb + (q.c * p.ngroups + q.g) * Q * Q;
  A cbv[kRowsPerThread], dsum[kRowsPerThread] = {};
#pragma unroll
  for (int k = 0; k < kRowsPerThread; ++k) {
    const int64_t t = q.t0 + ty + kTileRows * k;
    cbv[k] = s <= t && t < len ? cb[t * Q + s] : A(0);
  }
  for (int64_t h = q.g * hpg; h < (q.g + 1) * hpg; ++h) {
    const int64_t ch_h = q.c * p.nheads + h;
    const A* dy = w.dy + ch_h * Q * P;
    const A* dt = w.dt + ch_h * Q;
    const A* acs = w.acs + ch_h * Q;
    A dx[kRowsPerThread] = {};  // dy_t . x_s
    for (int64_t p0 = 0; p0 < P; p0 += kTile) {
      for (int e = threadIdx.x; e < kTile * kTile; e += kTileThreads) {
        const int r = e / kTile, k = e % kTile;
        const int64_t t = q.t0 + r, pk = p0 + k;
        Ys[r][k] = t < len && pk < P ? dy[t * P + pk] : A(0);
        Xs[r][k] = load_io<T>(p.x, p.x_batch_stride, p.x_seq_stride, p.x_head_stride,
                              p.x_dim_stride, q.ch, h, q.s0 + r, pk, P);
      }
      __syncthreads();
      tile_fma<A>(Ys, Xs, tx, ty, dx);
      __syncthreads();
    }
    A col = 0;
#pragma unroll
    for (int k = 0; k < kRowsPerThread; ++k) {
      const int64_t t = q.t0 + ty + kTileRows * k;
      const A d = s <= t && t < len ? ssd::exp_acc(acs[t] - acs[s]) * dt[s] * dx[k] : A(0);
      dsum[k] += d;
      const A v = d * cbv[k];
      col += v;
      const A row = ssd::warp_sum(v);
      if (tx == 0 && t < len) w.rowpart[(ch_h * w.tiles + q.si) * Q + t] = row;
    }
    Red[ty][tx] = col;
    __syncthreads();
    if (ty == 0 && s < len) {
      A sum = 0;
      for (int r = 0; r < kTileRows; ++r) sum += Red[r][tx];
      w.colpart[(ch_h * w.tiles + q.ti) * Q + s] = sum;
    }
    __syncthreads();
  }
  A* dcb = w.dcb + (q.c * p.ngroups + q.g) * Q * Q;
#pragma unroll
  for (int k = 0; k < kRowsPerThread; ++k) {
    const int64_t t = q.t0 + ty + kTileRows * k;
    if (t < len && s < len) dcb[t * Q + s] = dsum[k];
  }
}

// Blocks (chunk * H + head) * step tiles + step tile: rows s of the tile, P 32 columns at a time.
// Stores dx, and per step xdot = x . dXraw, qv = el x . (B G^T), osin = exp(acs) dy . (C Sin^T).
template <typename T>
__global__ void __launch_bounds__(kTileThreads) dx_kernel(const SsdBwdParams bp, int64_t l_tiles) {
  using A = acc_t<T>;
  const SsdFwdParams& p = bp.fwd;
  __shared__ A Xa[kTile][kPad];
  __shared__ A Ya[kTile][kPad];
  __shared__ A Red[kTileRows][kPad];
  const int64_t blk = blockIdx.x, ch_h = blk / l_tiles, si = blk % l_tiles;
  const int64_t c = ch_h / p.nheads, h = ch_h % p.nheads, g = h / (p.nheads / p.ngroups);
  const int64_t s0 = si * kTile;
  const Chunk ch = chunk_at(p, c);
  if (s0 >= ch.len) return;
  const int tx = threadIdx.x % kTile, ty = threadIdx.x / kTile;
  const int64_t Q = p.chunk_size, P = p.headdim, N = p.dstate, len = ch.len;
  const BwdWork<A> w(p);
  const A* dt = w.dt + ch_h * Q;
  const A* acs = w.acs + ch_h * Q;
  const A* dy = w.dy + ch_h * Q * P;
  const A* Gm = w.gstate + ch_h * P * N;
  const A* Sin = w.states + ch_h * P * N;
  const A* cb = w.cb + (c * p.ngroups + g) * Q * Q;
  const A* D = static_cast<const A*>(p.D);
  A el[kRowsPerThread], xdot[kRowsPerThread] = {}, qs[kRowsPerThread] = {};
  A os[kRowsPerThread] = {};
#pragma unroll
  for (int k = 0; k < kRowsPerThread; ++k) {
    const int64_t s = s0 + ty + kTileRows * k;
    el[k] = s < len ? ssd::exp_acc(acs[len - 1] - acs[s]) : A(0);
  }
  for (int64_t p0 = 0; p0 < P; p0 += kTile) {
    // M^T dy over the steps t >= s: Xa[s][t] = M[t, s], Ya[p][t] = dy[t, p].
    A dxr[kRowsPerThread] = {};
    for (int64_t t0 = s0; t0 < len; t0 += kTile) {
      for (int e = threadIdx.x; e < kTile * kTile; e += kTileThreads) {
        const int r = e / kTile, k = e % kTile;
        const int64_t t = t0 + r, sk = s0 + k, pk = p0 + k;
        Xa[k][r] = sk <= t && t < len ? cb[t * Q + sk] * ssd::exp_acc(acs[t] - acs[sk]) : A(0);
        Ya[k][r] = t < len && pk < P ? dy[t * P + pk] : A(0);
      }
      __syncthreads();
      tile_fma<A>(Xa, Ya, tx, ty, dxr);
      __syncthreads();
    }
    // B G^T and C Sin^T over the state: Xa[s][n], Ya[p][n].
    A bg[kRowsPerThread] = {}, cs[kRowsPerThread] = {};
    for (int pass = 0; pass < 2; ++pass) {
      const void* BC = pass == 0 ? p.B : p.C;
      const A* S = pass == 0 ? Gm : Sin;
      for (int64_t n0 = 0; n0 < N; n0 += kTile) {
        for (int e = threadIdx.x; e < kTile * kTile; e += kTileThreads) {
          const int r = e / kTile, k = e % kTile;
          Xa[r][k] = pass == 0 ? load_io<T>(BC, p.B_batch_stride, p.B_seq_stride, p.B_group_stride,
                                            p.B_state_stride, ch, g, s0 + r, n0 + k, N)
                               : load_io<T>(BC, p.C_batch_stride, p.C_seq_stride, p.C_group_stride,
                                            p.C_state_stride, ch, g, s0 + r, n0 + k, N);
          Ya[r][k] = p0 + r < P && n0 + k < N ? S[(p0 + r) * N + n0 + k] : A(0);
        }
        __syncthreads();
        tile_fma<A>(Xa, Ya, tx, ty, pass == 0 ? bg : cs);
        __syncthreads();
      }
    }
    const int64_t pp = p0 + tx;
    const A Dv = D && pp < P ? D[p.D_has_hdim ? h * P + pp : h] : A(0);
    A dd = 0;
#pragma unroll
    for (int k = 0; k < kRowsPerThread; ++k) {
      const int64_t s = s0 + ty + kTileRows * k;
      if (s >= len || pp >= P) continue;
      const A dyv = dy[s * P + pp];
      const A xv = load_io<T>(p.x, p.x_batch_stride, p.x_seq_stride, p.x_head_stride,
                              p.x_dim_stride, ch, h, s, pp, P);
      const A raw = dxr[k] + el[k] * bg[k];
      static_cast<T*>(bp.dx)[((ch.row * p.seqlen + ch.t0 + s) * p.nheads + h) * P + pp] =
          from_acc<T>(dt[s] * raw + Dv * dyv);
      xdot[k] += xv * raw;
      qs[k] += xv * bg[k];
      os[k] += dyv * cs[k];
      dd += dyv * xv;
    }
    if (D) {
      Red[ty][tx] = dd;
      __syncthreads();
      if (ty == 0 && pp < P) {
        A sum = 0;
        for (int r = 0; r < kTileRows; ++r) sum += Red[r][tx];
        w.dDpart[(ch_h * w.tiles + si) * P + pp] = sum;
      }
      __syncthreads();
    }
  }
#pragma unroll
  for (int k = 0; k < kRowsPerThread; ++k) {
    const int64_t s = s0 + ty + kTileRows * k;
    const A xs = ssd::warp_sum(xdot[k]), q = ssd::warp_sum(qs[k]), o = ssd::warp_sum(os[k]);
    if (tx == 0 && s < len) {
      w.xdot[ch_h * Q + s] = xs;
      w.qv[ch_h * Q + s] = el[k] * q;
      w.osin[ch_h * Q + s] = ssd::exp_acc(acs[s]) * o;
    }
  }
}

// One block per (chunk, head). The serial parts (the reverse cumsum, the chunk's sums) run on
// one thread, in step order, so they match the CPU's order of additions per chunk.
template <typename T>
__global__ void __launch_bounds__(kFlatThreads) finish_kernel(const SsdBwdParams bp) {
  using A = acc_t<T>;
  const SsdFwdParams& p = bp.fwd;
  __shared__ A red[kFlatThreads];
  const int64_t ch_h = blockIdx.x, c = ch_h / p.nheads, h = ch_h % p.nheads;
  const int tid = threadIdx.x;
  const Chunk ch = chunk_at(p, c);
  const int64_t Q = p.chunk_size, PN = p.headdim * p.dstate, len = ch.len, last = len - 1;
  const BwdWork<A> w(p);
  const A* dt = w.dt + ch_h * Q;
  const A* acs = w.acs + ch_h * Q;
  A* dacs = w.osin + ch_h * Q;
  A* qv = w.qv + ch_h * Q;
  // The state-passing term at the last step: exp(acs[last]) <G(c), Sin(c)>, a tree sum.
  A part = 0;
  for (int64_t e = tid; e < PN; e += kFlatThreads) {
    part += w.gstate[ch_h * PN + e] * w.states[ch_h * PN + e];
  }
  red[tid] = part;
  __syncthreads();
  for (int half = kFlatThreads / 2; half > 0; half /= 2) {
    if (tid < half) red[tid] += red[tid + half];
    __syncthreads();
  }
  const int64_t nt = ssd::ceil_div(len, kTile);
  for (int64_t t = tid; t < len; t += kFlatThreads) {
    A v = 0;
    for (int64_t j = 0; j <= t / kTile; ++j) v += w.rowpart[(ch_h * w.tiles + j) * Q + t];
    for (int64_t i = t / kTile; i < nt; ++i) v -= w.colpart[(ch_h * w.tiles + i) * Q + t];
    dacs[t] = v + dacs[t] - dt[t] * qv[t];
  }
  __syncthreads();
  if (tid == 0) {
    A sq = 0;
    for (int64_t s = 0; s < len; ++s) sq += dt[s] * qv[s];
    dacs[last] += sq + ssd::exp_acc(acs[last]) * red[0];
    A run = 0, dA = 0;
    for (int64_t t = last; t >= 0; --t) {
      run += dacs[t];
      dacs[t] = run;
      dA += run * dt[t];
    }
    w.dApart[ch_h] = dA;
  }
  __syncthreads();
  const A* raw = static_cast<const A*>(p.dt) + ch.row * p.dt_batch_stride + h * p.dt_head_stride;
  const A bias = p.dt_bias ? static_cast<const A*>(p.dt_bias)[h] : A(0);
  const A Ah = static_cast<const A*>(p.A)[h];
  const A lo = static_cast<A>(p.dt_min), hi = static_cast<A>(p.dt_max);
  for (int64_t t = tid; t < len; t += kFlatThreads) {
    const A slope = ssd::dt_slope<A>(raw[(ch.t0 + t) * p.dt_seq_stride], bias, p.dt_softplus,
                                     p.has_dt_limit, lo, hi);
    const A ddt = (w.xdot[ch_h * Q + t] + dacs[t] * Ah) * slope;
    static_cast<A*>(bp.ddt)[(ch.row * p.seqlen + ch.t0 + t) * p.nheads + h] = ddt;
    qv[t] = ddt;
  }
  __syncthreads();
  if (tid == 0) {
    A sum = 0;
    for (int64_t t = 0; t < len; ++t) sum += qv[t];
    w.biaspart[ch_h] = sum;
  }
}

// Blocks ((chunk * G + group) * step tiles + step tile) * N tiles + N tile. Rows l are t for dC
// and s for dB; the reductions run over the group's heads and P, then over the chunk's steps.
template <typename T>
__global__ void __launch_bounds__(kTileThreads)
    dbc_kernel(const SsdBwdParams bp, int64_t l_tiles, int64_t n_tiles) {
  using A = acc_t<T>;
  const SsdFwdParams& p = bp.fwd;
  __shared__ A Xa[kTile][kPad];
  __shared__ A Ya[kTile][kPad];
  const int64_t blk = blockIdx.x, c_g = blk / (l_tiles * n_tiles);
  const int64_t c = c_g / p.ngroups, g = c_g % p.ngroups;
  const int64_t l0 = blk / n_tiles % l_tiles * kTile, n0 = blk % n_tiles * kTile;
  const Chunk ch = chunk_at(p, c);
  if (l0 >= ch.len) return;
  const int tx = threadIdx.x % kTile, ty = threadIdx.x / kTile;
  const int64_t Q = p.chunk_size, P = p.headdim, N = p.dstate, len = ch.len;
  const int64_t hpg = p.nheads / p.ngroups;
  const BwdWork<A> w(p);
  A dC[kRowsPerThread] = {}, dB[kRowsPerThread] = {};
  for (int64_t h = g * hpg; h < (g + 1) * hpg; ++h) {
    const int64_t ch_h = c * p.nheads + h;
    const A* dt = w.dt + ch_h * Q;
    const A* acs = w.acs + ch_h * Q;
    const A* dy = w.dy + ch_h * Q * P;
    for (int64_t p0 = 0; p0 < P; p0 += kTile) {
      // dC += (exp(acs) dy) Sin: Xa[t][p], Ya[n][p].
      for (int e = threadIdx.x; e < kTile * kTile; e += kTileThreads) {
        const int r = e / kTile, k = e % kTile;
        const int64_t t = l0 + r;
        Xa[r][k] = t < len && p0 + k < P ? ssd::exp_acc(acs[t]) * dy[t * P + p0 + k] : A(0);
        Ya[k][r] = p0 + r < P && n0 + k < N ? w.states[(ch_h * P + p0 + r) * N + n0 + k] : A(0);
      }
      __syncthreads();
      tile_fma<A>(Xa, Ya, tx, ty, dC);
      __syncthreads();
      // dB += (el dt x) G: Xa[s][p], Ya[n][p].
      for (int e = threadIdx.x; e < kTile * kTile; e += kTileThreads) {
        const int r = e / kTile, k = e % kTile;
        const int64_t s = l0 + r;
        const A ws = s < len ? ssd::exp_acc(acs[len - 1] - acs[s]) * dt[s] : A(0);
        Xa[r][k] = ws * load_io<T>(p.x, p.x_batch_stride, p.x_seq_stride, p.x_head_stride,
                                   p.x_dim_stride, ch, h, s, p0 + k, P);
        Ya[k][r] = p0 + r < P && n0 + k < N ? w.gstate[(ch_h * P + p0 + r) * N + n0 + k] : A(0);
      }
      __syncthreads();
      tile_fma<A>(Xa, Ya, tx, ty, dB);
      __syncthreads();
    }
  }
  const A* dcb = w.dcb + c_g * Q * Q;
  // dC += dCB B over s <= t: Xa[t][s], Ya[n][s].
  for (int64_t s0 = 0; s0 < ssd::min64(l0 + kTile, len); s0 += kTile) {
    for (int e = threadIdx.x; e < kTile * kTile; e += kTileThreads) {
      const int r = e / kTile, k = e % kTile;
      const int64_t t = l0 + r, s = s0 + k;
      Xa[r][k] = s <= t && t < len ? dcb[t * Q + s] : A(0);
      Ya[k][r] = load_io<T>(p.B, p.B_batch_stride, p.B_seq_stride, p.B_group_stride,
                            p.B_state_stride, ch, g, s0 + r, n0 + k, N);
    }
    __syncthreads();
    tile_fma<A>(Xa, Ya, tx, ty, dC);
    __syncthreads();
  }
  // dB += dCB^T C over t >= s: Xa[s][t], Ya[n][t].
  for (int64_t t0 = l0; t0 < len; t0 += kTile) {
    for (int e = threadIdx.x; e < kTile * kTile; e += kTileThreads) {
      const int r = e / kTile, k = e % kTile;
      const int64_t t = t0 + r, s = l0 + k;
      Xa[k][r] = s <= t && t < len ? dcb[t * Q + s] : A(0);
      Ya[k][r] = load_io<T>(p.C, p.C_batch_stride, p.C_seq_stride, p.C_group_stride,
                            p.C_state_stride, ch, g, t, n0 + k, N);
    }
    __syncthreads();
    tile_fma<A>(Xa, Ya, tx, ty, dB);
    __syncthreads();
  }
  const int64_t n = n0 + tx;
  if (n >= N) return;
#pragma unroll
  for (int k = 0; k < kRowsPerThread; ++k) {
    const int64_t l = l0 + ty + kTileRows * k;
    if (l >= len) continue;
    const int64_t o = ((ch.row * p.seqlen + ch.t0 + l) * p.ngroups + g) * N + n;
    static_cast<T*>(bp.dC)[o] = from_acc<T>(dC[k]);
    static_cast<T*>(bp.dB)[o] = from_acc<T>(dB[k]);
  }
}

// One thread per (head, column of P; at least one column): the per-chunk (and per-tile) partial
// sums added up in chunk order.
template <typename T>
__global__ void __launch_bounds__(kFlatThreads) param_kernel(const SsdBwdParams bp, int64_t cols) {
  using A = acc_t<T>;
  const SsdFwdParams& p = bp.fwd;
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kFlatThreads + threadIdx.x;
  if (i >= p.nheads * cols) return;
  const int64_t h = i / cols, pp = i % cols, P = p.headdim;
  const BwdWork<A> w(p);
  if (pp == 0) {
    A dA = 0, bias = 0;
    for (int64_t c = 0; c < p.num_chunks; ++c) {
      dA += w.dApart[c * p.nheads + h];
      bias += w.biaspart[c * p.nheads + h];
    }
    static_cast<A*>(bp.dA)[h] = dA;
    if (bp.ddt_bias) static_cast<A*>(bp.ddt_bias)[h] = bias;
  }
  if (!p.D || !bp.dD || (p.D_has_hdim ? pp >= P : pp > 0)) return;
  const int64_t q0 = p.D_has_hdim ? pp : 0, q1 = p.D_has_hdim ? pp + 1 : P;
  A sum = 0;
  for (int64_t c = 0; c < p.num_chunks; ++c) {
    const int64_t nt = ssd::ceil_div(chunk_at(p, c).len, kTile);
    const A* part = w.dDpart + (c * p.nheads + h) * w.tiles * P;
    for (int64_t j = 0; j < nt; ++j)
      for (int64_t q = q0; q < q1; ++q) sum += part[j * P + q];
  }
  static_cast<A*>(bp.dD)[p.D_has_hdim ? h * P + pp : h] = sum;
}

// ---- launchers ------------------------------------------------------------------------------

// Kernels 1-3: the forward's, into the front of the backward's workspace.
template <typename T>
void recompute_fwd(const SsdFwdParams& p, cudaStream_t stream) {
  const int64_t chunk_heads = p.num_chunks * p.nheads, PN = p.headdim * p.dstate;
  const int64_t p_tiles = ssd::ceil_div(p.headdim, kTile), n_tiles = ssd::ceil_div(p.dstate, kTile);
  if (chunk_heads > 0) {
    launch_kernel("ssd_bwd_dt", dt_kernel<T>,
                  grid_blocks(ssd::ceil_div(chunk_heads, kFlatThreads), "ssd_bwd_dt"),
                  dim3(kFlatThreads), stream, p);
    if (PN > 0) {
      launch_kernel("ssd_bwd_state", state_kernel<T>,
                    grid_blocks(chunk_heads * p_tiles * n_tiles, "ssd_bwd_state"),
                    dim3(kTileThreads), stream, p, p_tiles, n_tiles);
    }
  }
  if (p.num_seqs * p.nheads > 0 && PN > 0) {
    const int64_t e_blocks = ssd::ceil_div(PN, kFlatThreads);
    launch_kernel("ssd_bwd_pass", pass_kernel<T>,
                  grid_blocks(p.num_seqs * p.nheads * e_blocks, "ssd_bwd_pass"), dim3(kFlatThreads),
                  stream, p, e_blocks);
  }
}

template <typename T>
void launch_bwd(const SsdBwdParams& params) {
  SsdBwdParams bp = params;
  bp.fwd.workspace = params.workspace;
  bp.fwd.out = nullptr;
  bp.fwd.final_states = nullptr;
  const SsdFwdParams& p = bp.fwd;
  const auto stream = static_cast<cudaStream_t>(p.stream);
  recompute_fwd<T>(p, stream);
  const int64_t CH = p.num_chunks * p.nheads, CG = p.num_chunks * p.ngroups;
  const int64_t PN = p.headdim * p.dstate;
  const int64_t p_tiles = ssd::ceil_div(p.headdim, kTile), n_tiles = ssd::ceil_div(p.dstate, kTile);
  // A chunk has at most min(Q, L) steps; blocks past a shorter chunk's end return at once.
  const int64_t l_tiles = ssd::ceil_div(ssd::min64(p.chunk_size, p.seqlen), kTile);
  const dim3 tile(kTileThreads), flat(kFlatThreads);
  if (CH > 0 && p.headdim > 0) {
    launch_kernel("ssd_bwd_gate", gate_kernel<T>,
                  grid_blocks(CH * l_tiles * p_tiles, "ssd_bwd_gate"), tile, stream, bp, l_tiles,
                  p_tiles);
  }
  if (CH > 0 && PN > 0) {
    launch_kernel("ssd_bwd_dsoff", dsoff_kernel<T>,
                  grid_blocks(CH * p_tiles * n_tiles, "ssd_bwd_dsoff"), tile, stream, bp, p_tiles,
                  n_tiles);
  }
  if (p.num_seqs * p.nheads > 0 && PN > 0) {
    const int64_t e_blocks = ssd::ceil_div(PN, kFlatThreads);
    launch_kernel("ssd_bwd_rpass", rpass_kernel<T>,
                  grid_blocks(p.num_seqs * p.nheads * e_blocks, "ssd_bwd_rpass"), flat, stream, bp,
                  e_blocks);
  }
  if (CG > 0) {
    const unsigned square = grid_blocks(CG * l_tiles * l_tiles, "ssd_bwd_cb");
    launch_kernel("ssd_bwd_cb", cb_kernel<T>, square, tile, stream, bp, l_tiles);
    launch_kernel("ssd_bwd_dcb", dcb_kernel<T>, square, tile, stream, bp, l_tiles);
  }
  if (CH > 0) {
    launch_kernel("ssd_bwd_dx", dx_kernel<T>, grid_blocks(CH * l_tiles, "ssd_bwd_dx"), tile, stream,
                  bp, l_tiles);
    launch_kernel("ssd_bwd_finish", finish_kernel<T>, grid_blocks(CH, "ssd_bwd_finish"), flat,
                  stream, bp);
  }
  if (CG > 0 && p.dstate > 0) {
    launch_kernel("ssd_bwd_dbc", dbc_kernel<T>, grid_blocks(CG * l_tiles * n_tiles, "ssd_bwd_dbc"),
                  tile, stream, bp, l_tiles, n_tiles);
  }
  if (p.nheads > 0) {
    const int64_t cols = p.headdim > 0 ? p.headdim : 1;
    launch_kernel("ssd_bwd_param", param_kernel<T>,
                  grid_blocks(ssd::ceil_div(p.nheads * cols, kFlatThreads), "ssd_bwd_param"), flat,
                  stream, bp, cols);
  }
}

}  // namespace

// ---- dispatch -------------------------------------------------------------------------------

void ssd_bwd(const SsdBwdParams& p) {
  const SsdFwdParams& f = p.fwd;
  if (f.ngroups <= 0 || f.nheads % f.ngroups != 0) {
    throw std::invalid_argument("ssd_bwd: ngroups (" + std::to_string(f.ngroups) +
                                ") must divide nheads (" + std::to_string(f.nheads) + ")");
  }
  if (f.chunk_size < 1) {
    throw std::invalid_argument("ssd_bwd: chunk_size must be positive, got " +
                                std::to_string(f.chunk_size));
  }
  const int64_t need = ssd_cuda_bwd_workspace_elems(f.num_chunks, f.nheads, f.ngroups, f.chunk_size,
                                                    f.headdim, f.dstate);
  if (need > 0 && p.workspace == nullptr) {
    throw std::invalid_argument("ssd_bwd: the CUDA backward needs a workspace of " +
                                std::to_string(need) + " elements");
  }
  dispatch_float_io(f.io_dtype, "ssd_bwd",
                    [&](auto tag) { launch_bwd<typename decltype(tag)::type>(p); });
}

}  // namespace nemocore::cuda
