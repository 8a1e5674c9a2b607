// Pieces shared by the SSD forward and backward CPU kernels (kernels.md 2.2): the chunk list,
// dt processing, loading a chunk's rows, and the first two phases of the chunked algorithm
// (chunk states, then sequential state passing), which the backward recomputes rather than
// saves (kernels.md 2.6). Included only by sources compiled per ISA level.
//
// Internal layouts (all in the compute type A, fp32 or fp64):
//   dt, acs   (chunks, H, Q)     processed dt and its cumulative sum a = dt * A inside the chunk
//   states    (chunks, H, N, P)  a chunk's state, transposed (N x P) so that it is directly the
//                                right-hand operand of the output product C @ S^T
#pragma once

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "cpu/common/convert.h"
#include "cpu/common/math.h"
#include "cpu/common/parallel.h"
#include "cpu/kernels/ssd_gemm.h"
#include "nemocore/ssd.h"

namespace nemocore::cpu::NEMOCORE_CPU_ISA::ssd {

struct ChunkRef {
  int64_t seq, row, t0, len;
};

struct Dims {
  int64_t H, P, G, N, Q, hpg;  // hpg: heads per group
  explicit Dims(const SsdFwdParams& p)
      : H(p.nheads),
        P(p.headdim),
        G(p.ngroups),
        N(p.dstate),
        Q(p.chunk_size),
        hpg(p.nheads / p.ngroups) {}
};

// Threads worth waking for `work` multiply-adds: below ~1M (tens of microseconds) a parallel
// region costs more than it saves, and on a loaded machine far more. Results do not depend on
// the thread count, so this only changes speed.
inline int threads_for(int requested, double work) { return work < 1e6 ? 1 : requested; }

inline std::vector<ChunkRef> chunk_list(const SsdFwdParams& p) {
  std::vector<ChunkRef> chunks;
  chunks.reserve(static_cast<size_t>(p.num_chunks));
  for (int64_t s = 0; s < p.num_seqs; ++s) {
    const int64_t* q = p.seqs + s * kSeqColumns;
    if (q[kSeqFirstChunk] != static_cast<int64_t>(chunks.size())) {
      throw std::invalid_argument("seqs: first_chunk of sequence " + std::to_string(s) +
                                  " does not follow the chunks before it");
    }
    for (int64_t t0 = q[kSeqStart]; t0 < q[kSeqEnd]; t0 += p.chunk_size) {
      chunks.push_back({s, q[kSeqRow], t0, std::min(p.chunk_size, q[kSeqEnd] - t0)});
    }
  }
  if (static_cast<int64_t>(chunks.size()) != p.num_chunks) {
    throw std::invalid_argument("num_chunks: the sequence table has " +
                                std::to_string(chunks.size()) + " chunks, not " +
                                std::to_string(p.num_chunks));
  }
  return chunks;
}

// kernels.md 2.1: bias, softplus (identity above 20), clamp. `slope` receives d dt / d raw.
template <typename A>
inline A process_dt(A raw, A bias, bool softplus, bool limit, A lo, A hi, A* slope = nullptr) {
  A v = raw + bias, d = A(1);
  if (softplus && v <= A(20)) {
    d = A(1) / (A(1) + std::exp(-v));
    v = std::log1p(std::exp(v));
  }
  if (limit && (v < lo || v > hi)) {
    d = A(0);
    v = v < lo ? lo : hi;
  }
  if (slope) *slope = d;
  return v;
}

// a . b over n elements. Sixteen running partial sums, in a fixed order, so that the compiler
// can vectorise the sum without -ffast-math (a single accumulator is a serial chain of adds).
template <typename A>
inline A dot(const A* a, const A* b, int64_t n) {
  constexpr int K = 16;
  A part[K] = {};
  int64_t i = 0;
  for (; i + K <= n; i += K)
    for (int k = 0; k < K; ++k) part[k] += a[i + k] * b[i + k];
  A s = 0;
  for (; i < n; ++i) s += a[i] * b[i];
  for (int k = 0; k < K; ++k) s += part[k];
  return s;
}

// Rows [t0, t0 + len) of head (or group) `h` of a (b, L, heads, width) tensor, into dst
// (len x width, row-major, compute type).
template <typename T, typename A>
inline void load_rows(const void* base, int64_t sb, int64_t sl, int64_t sh, int64_t sw,
                      const ChunkRef& c, int64_t h, int64_t width, A* dst) {
  const T* p = static_cast<const T*>(base) + c.row * sb + c.t0 * sl + h * sh;
  for (int64_t i = 0; i < c.len; ++i) load_row(p + i * sl, sw, width, dst + i * width);
}

// The pieces of the forward that every later phase reads.
template <typename A>
struct Workspace {
  std::vector<ChunkRef> chunks;
  std::vector<A> dt, acs, states;
  Workspace(const SsdFwdParams& p, const Dims& d)
      : chunks(chunk_list(p)),
        dt(chunks.size() * d.H * d.Q),
        acs(chunks.size() * d.H * d.Q),
        states(chunks.size() * d.H * d.N * d.P) {}
  int64_t num_chunks() const { return static_cast<int64_t>(chunks.size()); }
  A* dt_of(int64_t c, int64_t h, const Dims& d) { return dt.data() + (c * d.H + h) * d.Q; }
  A* acs_of(int64_t c, int64_t h, const Dims& d) { return acs.data() + (c * d.H + h) * d.Q; }
  A* state_of(int64_t c, int64_t h, const Dims& d) {
    return states.data() + (c * d.H + h) * d.N * d.P;
  }
};

// Work items of the per-chunk phases: (chunk, group, block of the group's heads). Heads are
// split only when there are too few (chunk, group) pairs to keep the threads busy; each block
// recomputes its group's C B^T, which changes no result bits, so results do not depend on the
// thread count.
struct HeadBlocks {
  int64_t blocks, size;
  HeadBlocks(int64_t items, int64_t hpg, int threads) {
    const int64_t want = 4 * static_cast<int64_t>(threads);
    blocks =
        items >= want ? 1 : std::min<int64_t>(hpg, ceil_div(want, std::max<int64_t>(items, 1)));
    size = ceil_div(hpg, blocks);
    blocks = ceil_div(hpg, size);
  }
};

// Phase 1: processed dt, its cumsum, and each chunk's own state
// S^T = sum_s exp(acs[last] - acs[s]) dt_s B_s x_s^T (N x P).
template <typename T, typename A>
void chunk_states(const SsdFwdParams& p, const Dims& d, Workspace<A>& ws) {
  const A* Ah = static_cast<const A*>(p.A);
  const A* bias = static_cast<const A*>(p.dt_bias);
  const A lo = static_cast<A>(p.dt_min), hi = static_cast<A>(p.dt_max);
  const HeadBlocks hb(ws.num_chunks() * d.G, d.hpg, p.num_threads);
  parallel_for(ws.num_chunks() * d.G * hb.blocks, p.num_threads, [&](int64_t item) {
    const int64_t c = item / (d.G * hb.blocks), g = item / hb.blocks % d.G;
    const int64_t h0 = g * d.hpg + item % hb.blocks * hb.size;
    const int64_t h1 = std::min(h0 + hb.size, (g + 1) * d.hpg);
    const ChunkRef& ref = ws.chunks[c];
    std::vector<A> Bc(ref.len * d.N), X(ref.len * d.P);
    load_rows<T>(p.B, p.B_batch_stride, p.B_seq_stride, p.B_group_stride, p.B_state_stride, ref, g,
                 d.N, Bc.data());
    const A* dt_raw = static_cast<const A*>(p.dt) + ref.row * p.dt_batch_stride;
    for (int64_t h = h0; h < h1; ++h) {
      A* dtc = ws.dt_of(c, h, d);
      A* acs = ws.acs_of(c, h, d);
      A run = 0;
      for (int64_t i = 0; i < ref.len; ++i) {
        const A raw = dt_raw[(ref.t0 + i) * p.dt_seq_stride + h * p.dt_head_stride];
        dtc[i] = process_dt<A>(raw, bias ? bias[h] : A(0), p.dt_softplus, p.has_dt_limit, lo, hi);
        run += dtc[i] * Ah[h];
        acs[i] = run;
      }
      load_rows<T>(p.x, p.x_batch_stride, p.x_seq_stride, p.x_head_stride, p.x_dim_stride, ref, h,
                   d.P, X.data());
      for (int64_t i = 0; i < ref.len; ++i) {
        const A w = exp_acc<A>(acs[ref.len - 1] - acs[i]) * dtc[i];
        for (int64_t j = 0; j < d.P; ++j) X[i * d.P + j] *= w;
      }
      A* S = ws.state_of(c, h, d);
      std::fill(S, S + d.N * d.P, A(0));
      gemm_acc<A>(d.N, d.P, ref.len, Bc.data(), 1, d.N, X.data(), d.P, S, d.P);
    }
  });
}

// Phase 2, sequential over each sequence's chunks: replaces every chunk's own state by the
// state the chunk starts from, Sin(c + 1) = exp(acs_c[last]) Sin(c) + Sc(c), and writes the
// state after the sequence to `final` ((S, H, P, N), untransposed) unless it is null.
template <typename A>
void pass_states(const SsdFwdParams& p, const Dims& d, Workspace<A>& ws, A* final) {
  const A* init = static_cast<const A*>(p.initial_states);
  const int64_t NP = d.N * d.P;
  parallel_for(p.num_seqs * d.H, p.num_threads, [&](int64_t item) {
    const int64_t s = item / d.H, h = item % d.H;
    const int64_t* q = p.seqs + s * kSeqColumns;
    std::vector<A> run(NP, A(0));
    if (init && q[kSeqInitRow] >= 0) {
      const A* src = init + q[kSeqInitRow] * p.init_row_stride + h * p.init_head_stride;
      for (int64_t j = 0; j < d.P; ++j)
        for (int64_t n = 0; n < d.N; ++n)
          run[n * d.P + j] = src[j * p.init_dim_stride + n * p.init_state_stride];
    }
    const int64_t nch = ceil_div(q[kSeqEnd] - q[kSeqStart], d.Q);
    for (int64_t c = q[kSeqFirstChunk]; c < q[kSeqFirstChunk] + nch; ++c) {
      const A decay = exp_acc<A>(ws.acs_of(c, h, d)[ws.chunks[c].len - 1]);
      A* S = ws.state_of(c, h, d);
      for (int64_t e = 0; e < NP; ++e) {
        const A own = S[e];
        S[e] = run[e];
        run[e] = decay * run[e] + own;
      }
    }
    if (final) {
      A* dst = final + (s * d.H + h) * NP;
      for (int64_t j = 0; j < d.P; ++j)
        for (int64_t n = 0; n < d.N; ++n) dst[j * d.N + n] = run[n * d.P + j];
    }
  });
}

// The decay matrix of a chunk, E[t, s] = exp(acs[t] - acs[s]) for s <= t and 0 above the
// diagonal (up to the row's 6-row block, which the lower-triangular GEMM reads), times
// `scale[t, s]` when given. The exponent is formed first and is <= 0 for a decaying state
// (kernels.md 2.4: no ratio of exponentials).
template <typename A>
inline void decay_matrix(const A* acs, int64_t len, A* E) {
  for (int64_t t = 0; t < len; ++t) {
    A* row = E + t * len;
    for (int64_t s = 0; s <= t; ++s) row[s] = exp_acc<A>(acs[t] - acs[s]);
    for (int64_t s = t + 1; s < len; ++s) row[s] = A(0);
  }
}

// One head of one chunk: y (len x P) from x, the chunk's start state and the group's C, C B^T.
template <typename A>
void head_output(const Dims& d, int64_t len, const A* Cc, const A* CB, const A* Sin, const A* dtc,
                 const A* acs, const A* X, A* M, A* Y) {
  std::fill(Y, Y + len * d.P, A(0));
  gemm_acc<A>(len, d.P, d.N, Cc, d.N, 1, Sin, d.P, Y, d.P);
  for (int64_t t = 0; t < len; ++t) {
    const A e = exp_acc<A>(acs[t]);
    for (int64_t j = 0; j < d.P; ++j) Y[t * d.P + j] *= e;
  }
  decay_matrix(acs, len, M);
  for (int64_t t = 0; t < len; ++t) {
    for (int64_t s = 0; s <= t; ++s) M[t * len + s] *= CB[t * len + s] * dtc[s];
  }
  gemm_acc<A>(len, d.P, len, M, len, 1, X, d.P, Y, d.P, Tri::kLower);
}

// y += D x on a chunk's rows of head h (D of (H,) or (H, P)).
template <typename A>
void add_skip(const SsdFwdParams& p, const Dims& d, int64_t len, int64_t h, const A* X, A* Y) {
  if (!p.D) return;
  const A* D = static_cast<const A*>(p.D) + (p.D_has_hdim ? h * d.P : h);
  for (int64_t t = 0; t < len; ++t)
    for (int64_t j = 0; j < d.P; ++j) Y[t * d.P + j] += D[p.D_has_hdim ? j : 0] * X[t * d.P + j];
}

// (len x width) from row-major (width x len).
template <typename A>
inline void transpose(const A* src, int64_t rows, int64_t cols, A* dst) {
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) dst[j * rows + i] = src[i * cols + j];
}

}  // namespace nemocore::cpu::NEMOCORE_CPU_ISA::ssd
