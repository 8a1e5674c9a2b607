// Depthwise causal conv1d on the CPU: forward, backward and the decode-time update.
//
// Compiled once per ISA level (see cpu/common/isa.h); the loops below are written so that the
// compiler vectorises them along time: every (batch, channel) row is gathered tile by tile into
// a contiguous compute-type buffer (which also absorbs any stride, channel-last included, and
// any dtype), the K taps run as K passes of a multiply-add over the tile, and the result is
// converted on the way out. Work items are (batch, block of channels, chunk of time), handed
// out dynamically; weight gradients are reduced per item and summed afterwards, in a fixed
// order, so results do not depend on the thread count.
#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "cpu/common/convert.h"
#include "cpu/common/math.h"
#include "cpu/common/parallel.h"
#include "nemocore/causal_conv1d.h"

namespace nemocore::cpu::NEMOCORE_CPU_ISA {
namespace {

constexpr int64_t kChannelBlock = 16;
constexpr int64_t kTimeTile = 512;

// Work items to aim for: enough to balance dozens of cores. Fixed rather than derived from the
// thread count, so that the order of the weight-gradient sums, hence the bits of the result,
// do not depend on how many threads run.
constexpr int64_t kMinItems = 64;

// How the (batch, channel, time) volume is cut into work items.
struct Split {
  int64_t channel_blocks = 1, time_chunks = 1, chunk_len = 0;

  Split(int64_t batch, int64_t dim, int64_t seqlen, int64_t block = kChannelBlock) {
    channel_blocks = ceil_div(dim, block);
    const int64_t rows = batch * channel_blocks;
    // Cut time only when (batch, channel blocks) alone give too few items.
    const int64_t want = kMinItems;
    if (rows > 0 && rows < want && seqlen > kTimeTile) {
      time_chunks = std::min(ceil_div(want, rows), ceil_div(seqlen, kTimeTile));
    }
    chunk_len = ceil_div(seqlen, time_chunks);
  }
  int64_t items(int64_t batch) const { return batch * channel_blocks * time_chunks; }
};

// One (batch, channel) row of a strided 3-D tensor.
template <typename T>
struct Row {
  T* ptr;
  int64_t stride;
  T& operator[](int64_t t) const { return ptr[t * stride]; }
};

template <typename T>
Row<T> row(const void* base, int64_t b, int64_t c, int64_t sb, int64_t sc, int64_t st) {
  return Row<T>{const_cast<T*>(static_cast<const T*>(base)) + b * sb + c * sc, st};
}

// The inputs of one output row, with everything needed to read any position in [-(K-1), L).
template <typename T, typename A>
struct InputRow {
  Row<T> x;
  const T* init;  // (K-1) values for positions -(K-1)..-1, or nullptr for zeros
  int64_t init_stride;
  const int32_t* seq;  // seq_idx row or nullptr
  int64_t seq_stride;
  int64_t width;

  // in[i] = x at position start + i, for i < len (start + len <= L).
  void gather(int64_t start, int64_t len, A* in) const {
    int64_t i = 0;
    for (; i < len && start + i < 0; ++i) {
      in[i] = init ? to_acc<A>(init[(start + i + width - 1) * init_stride]) : A(0);
    }
    if (i < len) load_row(&x[start + i], x.stride, len - i, in + i);
  }
  // Sequence ids of the same positions (positions before 0 copy position 0: their input is 0).
  // Returns true when all ids are equal, so the tile needs no masking.
  bool gather_seq(int64_t start, int64_t len, int32_t* ids) const {
    for (int64_t i = 0; i < len; ++i) {
      const int64_t s = std::max<int64_t>(start + i, 0);
      ids[i] = seq[s * seq_stride];
    }
    const int32_t first = ids[std::min<int64_t>(len - 1, std::max<int64_t>(-start, 0))];
    bool same = true;
    for (int64_t i = std::max<int64_t>(-start, 0); i < len; ++i) same &= ids[i] == first;
    return same;
  }
};

template <typename T, typename A>
InputRow<T, A> input_row(const CausalConv1dFwdParams& p, int64_t b, int64_t c) {
  InputRow<T, A> r{row<T>(p.x, b, c, p.x_batch_stride, p.x_dim_stride, p.x_seq_stride),
                   nullptr,
                   0,
                   nullptr,
                   0,
                   p.width};
  if (p.initial_states) {
    r.init =
        static_cast<const T*>(p.initial_states) + b * p.init_batch_stride + c * p.init_dim_stride;
    r.init_stride = p.init_seq_stride;
  }
  if (p.seq_idx) {
    r.seq = p.seq_idx + b * p.seq_idx_batch_stride;
    r.seq_stride = p.seq_idx_seq_stride;
  }
  return r;
}

// pre[i] = bias + sum_k w[k] * in[i + k] for i < n; with ids, taps from another sequence
// (ids[i + k] != ids[i + K - 1]) are skipped.
template <typename A>
void conv_tile(const A* in, const int32_t* ids, const A* w, A bias, int64_t K, int64_t n, A* pre) {
  for (int64_t i = 0; i < n; ++i) pre[i] = bias;
  for (int64_t k = 0; k < K; ++k) {
    const A wk = w[k];
    if (ids == nullptr) {
      for (int64_t i = 0; i < n; ++i) pre[i] += wk * in[i + k];
    } else {
      for (int64_t i = 0; i < n; ++i)
        pre[i] += ids[i + k] == ids[i + K - 1] ? wk * in[i + k] : A(0);
    }
  }
}

// One plain loop per compute type, kept out of the templates above so that the compiler
// vectorises it on its own rather than deciding per inlined copy.
__attribute__((noinline)) void silu_inplace(float* v, int64_t n) {
  for (int64_t i = 0; i < n; ++i) v[i] = silu(v[i]);
}
__attribute__((noinline)) void silu_inplace(double* v, int64_t n) {
  for (int64_t i = 0; i < n; ++i) v[i] = silu(v[i]);
}

// Scratch buffers of one work item.
template <typename A>
struct Scratch {
  std::vector<A> in, pre, dy, dp, acc;
  std::vector<int32_t> ids;
  explicit Scratch(int64_t K)
      : in(kTimeTile + 2 * K),
        pre(kTimeTile + K),
        dy(kTimeTile + K),
        dp(kTimeTile + 2 * K),
        acc(kTimeTile + K),
        ids(kTimeTile + 2 * K) {}
};

// Forward of positions [t0, t0 + n) of one row, into s.pre (activation applied).
template <typename T, typename A>
void forward_tile(const InputRow<T, A>& r, const A* w, A bias, bool act, int64_t t0, int64_t n,
                  Scratch<A>& s) {
  const int64_t K = r.width;
  r.gather(t0 - (K - 1), n + K - 1, s.in.data());
  const int32_t* ids = nullptr;
  if (r.seq && !r.gather_seq(t0 - (K - 1), n + K - 1, s.ids.data())) ids = s.ids.data();
  A* pre = s.pre.data();
  conv_tile(s.in.data(), ids, w, bias, K, n, pre);
  if (act) silu_inplace(pre, n);
}

// The last K-1 inputs of [initial_states or zeros ; x], read through the row gather.
template <typename T, typename A>
void write_final_states(const CausalConv1dFwdParams& p, int64_t b, int64_t c, A* scratch) {
  input_row<T, A>(p, b, c).gather(p.seqlen - (p.width - 1), p.width - 1, scratch);
  const auto fin =
      row<T>(p.final_states, b, c, p.final_batch_stride, p.final_dim_stride, p.final_seq_stride);
  store_row<T, A>(scratch, p.width - 1, &fin[0], fin.stride);
}

// Sequence-contiguous layout: each (batch, channel) row is convolved tile by tile along time.
template <typename T, typename A>
void fwd_rows(const CausalConv1dFwdParams& p) {
  const Split split(p.batch, p.dim, p.seqlen);
  const A* weight = static_cast<const A*>(p.weight);
  const A* bias = static_cast<const A*>(p.bias);
  const int64_t K = p.width;
  parallel_for(split.items(p.batch), p.num_threads, [&](int64_t item) {
    const int64_t tc = item % split.time_chunks;
    const int64_t cb = (item / split.time_chunks) % split.channel_blocks;
    const int64_t b = item / (split.time_chunks * split.channel_blocks);
    const int64_t t_begin = tc * split.chunk_len;
    const int64_t t_end = std::min(p.seqlen, t_begin + split.chunk_len);
    Scratch<A> s(K);
    for (int64_t c = cb * kChannelBlock; c < std::min(p.dim, (cb + 1) * kChannelBlock); ++c) {
      const auto in = input_row<T, A>(p, b, c);
      const auto out = row<T>(p.out, b, c, p.out_batch_stride, p.out_dim_stride, p.out_seq_stride);
      const A bc = bias ? bias[c] : A(0);
      for (int64_t t0 = t_begin; t0 < t_end; t0 += kTimeTile) {
        const int64_t n = std::min(kTimeTile, t_end - t0);
        forward_tile(in, weight + c * K, bc, p.silu, t0, n, s);
        store_row<T, A>(s.pre.data(), n, &out[t0], out.stride);
      }
      if (p.final_states && tc == 0) write_final_states<T, A>(p, b, c, s.in.data());
    }
  });
}

// Channel-last layout (stride 1 along channels, what a Mamba mixer produces after its input
// projection): memory is a sequence of time rows, so work items are runs of rows, read and
// written front to back, and the taps are vectorised across channels.
constexpr int64_t kChannelLastBlock = 64;  // channels per inner vector loop
constexpr int64_t kRowsPerItem = 32;       // time rows per work item

template <typename T, typename A>
void fwd_channel_last(const CausalConv1dFwdParams& p) {
  const int64_t K = p.width, C = p.dim, L = p.seqlen;
  const A* weight = static_cast<const A*>(p.weight);
  const A* bias = static_cast<const A*>(p.bias);
  const T* x = static_cast<const T*>(p.x);
  const T* init = static_cast<const T*>(p.initial_states);
  std::vector<A> taps(static_cast<size_t>(K * C));  // [k][channel]
  for (int64_t c = 0; c < C; ++c) {
    for (int64_t k = 0; k < K; ++k) taps[k * C + c] = weight[c * K + k];
  }
  const int64_t runs = ceil_div(L, kRowsPerItem);
  parallel_for(p.batch * runs, p.num_threads, [&](int64_t item) {
    const int64_t b = item / runs, t_begin = (item % runs) * kRowsPerItem;
    const int64_t t_end = std::min(L, t_begin + kRowsPerItem);
    const int32_t* seq = p.seq_idx ? p.seq_idx + b * p.seq_idx_batch_stride : nullptr;
    A acc[kChannelLastBlock], in[kChannelLastBlock];
    for (int64_t t = t_begin; t < t_end; ++t) {
      T* dst = static_cast<T*>(p.out) + b * p.out_batch_stride + t * p.out_seq_stride;
      for (int64_t c0 = 0; c0 < C; c0 += kChannelLastBlock) {
        const int64_t nc = std::min(kChannelLastBlock, C - c0);
        for (int64_t ch = 0; ch < nc; ++ch) acc[ch] = bias ? bias[c0 + ch] : A(0);
        for (int64_t k = 0; k < K; ++k) {
          const int64_t pos = t - (K - 1) + k;
          if (pos >= 0) {
            if (seq && seq[pos * p.seq_idx_seq_stride] != seq[t * p.seq_idx_seq_stride]) continue;
            const T* src = x + b * p.x_batch_stride + pos * p.x_seq_stride + c0;
            for (int64_t ch = 0; ch < nc; ++ch) in[ch] = to_acc<A>(src[ch]);
          } else if (init) {
            const T* src = init + b * p.init_batch_stride + (pos + K - 1) * p.init_seq_stride +
                           c0 * p.init_dim_stride;
            for (int64_t ch = 0; ch < nc; ++ch) in[ch] = to_acc<A>(src[ch * p.init_dim_stride]);
          } else {
            continue;
          }
          const A* wk = taps.data() + k * C + c0;
          for (int64_t ch = 0; ch < nc; ++ch) acc[ch] += wk[ch] * in[ch];
        }
        if (p.silu) {
          for (int64_t ch = 0; ch < nc; ++ch) acc[ch] = silu(acc[ch]);
        }
        for (int64_t ch = 0; ch < nc; ++ch) dst[c0 + ch] = from_acc<T, A>(acc[ch]);
      }
    }
  });
  if (p.final_states) {
    parallel_for(p.batch, p.num_threads, [&](int64_t b) {
      std::vector<A> scratch(static_cast<size_t>(K));
      for (int64_t c = 0; c < C; ++c) write_final_states<T, A>(p, b, c, scratch.data());
    });
  }
}

template <typename T, typename A>
void fwd_impl(const CausalConv1dFwdParams& p) {
  const bool channel_last = p.dim > 1 && p.x_dim_stride == 1 && p.out_dim_stride == 1;
  if (channel_last) return fwd_channel_last<T, A>(p);
  fwd_rows<T, A>(p);
}

template <typename T, typename A>
void bwd_impl(const CausalConv1dBwdParams& bp) {
  const CausalConv1dFwdParams& p = bp.fwd;
  const Split split(p.batch, p.dim, p.seqlen);
  const A* weight = static_cast<const A*>(p.weight);
  const A* bias = static_cast<const A*>(p.bias);
  const int64_t K = p.width, L = p.seqlen, C = p.dim;
  const int64_t partial_rows = p.batch * split.time_chunks;
  // Per (batch, time chunk) partial sums of dweight (C x K) and dbias (C), reduced below.
  std::vector<A> dw_partial(static_cast<size_t>(partial_rows * C * K), A(0));
  std::vector<A> db_partial(static_cast<size_t>(partial_rows * C), A(0));

  parallel_for(split.items(p.batch), p.num_threads, [&](int64_t item) {
    const int64_t tc = item % split.time_chunks;
    const int64_t cb = (item / split.time_chunks) % split.channel_blocks;
    const int64_t b = item / (split.time_chunks * split.channel_blocks);
    const int64_t t_begin = tc * split.chunk_len;
    const int64_t t_end = std::min(L, t_begin + split.chunk_len);
    // Chunk 0 also owns the positions -(K-1)..-1 (the initial states).
    const int64_t e_begin = tc == 0 ? -(K - 1) : t_begin;
    Scratch<A> s(K);
    for (int64_t c = cb * kChannelBlock; c < std::min(C, (cb + 1) * kChannelBlock); ++c) {
      const auto in = input_row<T, A>(p, b, c);
      const auto dout =
          row<T>(bp.dout, b, c, bp.dout_batch_stride, bp.dout_dim_stride, bp.dout_seq_stride);
      const A* w = weight + c * K;
      const A bc = bias ? bias[c] : A(0);
      A* dw = dw_partial.data() + ((b * split.time_chunks + tc) * C + c) * K;
      A& db = db_partial[(b * split.time_chunks + tc) * C + c];
      // Extended positions e in [e0, e0 + n): e < 0 are initial-state slots, e >= 0 are x.
      for (int64_t e0 = e_begin; e0 < t_end; e0 += kTimeTile) {
        const int64_t n = std::min(kTimeTile, t_end - e0);
        // dpre at u in [u0, u0 + m): every output that reads an input of this tile.
        const int64_t u0 = std::max<int64_t>(e0, 0);
        const int64_t m = std::max<int64_t>(std::min(e0 + n + K - 1, L) - u0, 0);
        if (m > 0) {
          if (p.silu) {
            // Recompute the pre-activation instead of saving it.
            forward_tile(InputRow<T, A>(in), w, bc, false, u0, m, s);
          }
          load_row(&dout[u0], dout.stride, m, s.dy.data());
          for (int64_t i = 0; i < m; ++i) {
            if (p.silu) {
              const A sg = sigmoid(s.pre[i]);
              s.dp[i] = s.dy[i] * sg * (A(1) + s.pre[i] * (A(1) - sg));
            } else {
              s.dp[i] = s.dy[i];
            }
          }
        }
        // dp_ext[j] = dpre at position e0 + j, zero outside [u0, u0 + m); shifted into s.acc.
        A* dp_ext = s.acc.data();
        const int64_t lead = u0 - e0;  // > 0 only for the initial-state tile
        for (int64_t j = 0; j < n + K - 1; ++j) {
          const int64_t i = j - lead;
          dp_ext[j] = (i >= 0 && i < m) ? s.dp[i] : A(0);
        }
        // Inputs and sequence ids of positions [e0 - (K-1), e0 + n + K - 1) for the masks.
        const int32_t* ids = nullptr;
        if (in.seq && L > 0) {
          const int64_t lo = e0 - (K - 1), len = n + 2 * (K - 1);
          const int64_t hi = std::min(lo + len, L);
          if (!in.gather_seq(lo, hi - lo, s.ids.data())) ids = s.ids.data();
          for (int64_t j = hi - lo; j < len; ++j) s.ids[j] = -1;  // past the end: dpre is 0
        }
        // dx at position e0 + i: sum_k w[k] * dpre[e0 + i + (K-1) - k], same sequence only.
        A* dxe = s.pre.data();
        for (int64_t i = 0; i < n; ++i) dxe[i] = A(0);
        for (int64_t k = 0; k < K; ++k) {
          const A wk = w[k];
          const A* dpk = dp_ext + (K - 1 - k);
          if (ids == nullptr) {
            for (int64_t i = 0; i < n; ++i) dxe[i] += wk * dpk[i];
          } else {
            const int32_t* self = ids + (K - 1);
            const int32_t* other = ids + 2 * (K - 1) - k;
            for (int64_t i = 0; i < n; ++i) dxe[i] += self[i] == other[i] ? wk * dpk[i] : A(0);
          }
        }
        // The final states are the last K-1 inputs: their gradient flows straight back.
        if (bp.dfinal_states) {
          for (int64_t i = 0; i < n; ++i) {
            const int64_t j = e0 + i - (L - (K - 1));
            if (j >= 0) {
              dxe[i] += to_acc<A>(static_cast<const T*>(
                  bp.dfinal_states)[b * bp.dfinal_batch_stride + c * bp.dfinal_dim_stride +
                                    j * bp.dfinal_seq_stride]);
            }
          }
        }
        // Store: initial-state slots to dinitial_states, the rest to dx.
        const int64_t nneg = std::min(lead, n);
        if (nneg > 0 && bp.dinitial_states) {
          const auto di = row<T>(bp.dinitial_states, b, c, bp.dinit_batch_stride,
                                 bp.dinit_dim_stride, bp.dinit_seq_stride);
          store_row<T, A>(dxe, nneg, &di[e0 + K - 1], di.stride);
        }
        if (n > nneg) {
          const auto dx =
              row<T>(bp.dx, b, c, bp.dx_batch_stride, bp.dx_dim_stride, bp.dx_seq_stride);
          store_row<T, A>(dxe + nneg, n - nneg, &dx[e0 + nneg], dx.stride);
        }
        // dweight and dbias from the outputs this tile owns: u in [e0, e0 + n), u >= 0.
        const int64_t own = std::max<int64_t>(n - nneg, 0);
        if (own > 0) {
          const A* dpo = dp_ext + nneg;
          in.gather(e0 + nneg - (K - 1), own + K - 1, s.in.data());
          const int32_t* oid = ids ? ids + nneg : nullptr;  // ids of [u - (K-1), u + ...)
          for (int64_t k = 0; k < K; ++k) {
            A acc = A(0);
            if (oid == nullptr) {
              for (int64_t i = 0; i < own; ++i) acc += dpo[i] * s.in[i + k];
            } else {
              for (int64_t i = 0; i < own; ++i) {
                acc += oid[i + k] == oid[i + K - 1] ? dpo[i] * s.in[i + k] : A(0);
              }
            }
            dw[k] += acc;
          }
          A acc = A(0);
          for (int64_t i = 0; i < own; ++i) acc += dpo[i];
          db += acc;
        }
      }
    }
  });

  // Deterministic reduction over (batch, time chunk), in a fixed order.
  A* dweight = static_cast<A*>(bp.dweight);
  A* dbias = static_cast<A*>(bp.dbias);
  parallel_for(ceil_div(C, kChannelBlock), p.num_threads, [&](int64_t cb) {
    for (int64_t c = cb * kChannelBlock; c < std::min(C, (cb + 1) * kChannelBlock); ++c) {
      for (int64_t k = 0; k < K; ++k) {
        A acc = A(0);
        for (int64_t r = 0; r < partial_rows; ++r) acc += dw_partial[(r * C + c) * K + k];
        if (dweight) dweight[c * K + k] = acc;
      }
      A acc = A(0);
      for (int64_t r = 0; r < partial_rows; ++r) acc += db_partial[r * C + c];
      if (dbias) dbias[c] = acc;
    }
  });
}

// Decode steps touch a few values per channel, so the update vectorises across channels:
// each item gathers a block of channels into time-major buffers, runs the taps over the
// channel axis, and scatters back.
constexpr int64_t kUpdateBlock = 64;

template <typename T, typename A>
void update_impl(const CausalConv1dUpdateParams& p) {
  const int64_t K = p.width, S = p.state_len, s_len = p.seqlen;
  const A* weight = static_cast<const A*>(p.weight);
  const A* bias = static_cast<const A*>(p.bias);
  const int64_t blocks = ceil_div(p.dim, kUpdateBlock);
  parallel_for(p.batch * blocks, p.num_threads, [&](int64_t item) {
    const int64_t b = item / blocks, c0 = (item % blocks) * kUpdateBlock;
    const int64_t nc = std::min(kUpdateBlock, p.dim - c0);
    const int64_t slot = p.conv_state_indices ? p.conv_state_indices[b] : b;
    if (slot < 0) return;  // a padded row of a continuous batch
    const int64_t written = p.cache_seqlens ? p.cache_seqlens[b] : 0;
    // win[j][ch]: the last K-1 inputs, then the new tokens; wt[k][ch]: the taps.
    std::vector<A> win(static_cast<size_t>((K - 1 + s_len) * nc)), wt(static_cast<size_t>(K * nc));
    std::vector<A> out(static_cast<size_t>(s_len * nc));
    for (int64_t ch = 0; ch < nc; ++ch) {
      const int64_t c = c0 + ch;
      const auto st = row<T>(p.conv_state, slot, c, p.state_batch_stride, p.state_dim_stride,
                             p.state_seq_stride);
      const auto x = row<T>(p.x, b, c, p.x_batch_stride, p.x_dim_stride, p.x_seq_stride);
      for (int64_t j = 0; j < K - 1; ++j) {
        const int64_t col =
            p.cache_seqlens ? ((written - (K - 1) + j) % S + S) % S : S - (K - 1) + j;
        win[j * nc + ch] = to_acc<A>(st[col]);
      }
      for (int64_t t = 0; t < s_len; ++t) win[(K - 1 + t) * nc + ch] = to_acc<A>(x[t]);
      for (int64_t k = 0; k < K; ++k) wt[k * nc + ch] = weight[c * K + k];
    }
    for (int64_t t = 0; t < s_len; ++t) {
      A* o = out.data() + t * nc;
      for (int64_t ch = 0; ch < nc; ++ch) o[ch] = bias ? bias[c0 + ch] : A(0);
      for (int64_t k = 0; k < K; ++k) {
        const A* wk = wt.data() + k * nc;
        const A* in = win.data() + (t + k) * nc;
        for (int64_t ch = 0; ch < nc; ++ch) o[ch] += wk[ch] * in[ch];
      }
      if (p.silu) {
        for (int64_t ch = 0; ch < nc; ++ch) o[ch] = silu(o[ch]);
      }
    }
    for (int64_t ch = 0; ch < nc; ++ch) {
      const int64_t c = c0 + ch;
      const auto y = row<T>(p.out, b, c, p.out_batch_stride, p.out_dim_stride, p.out_seq_stride);
      for (int64_t t = 0; t < s_len; ++t) y[t] = from_acc<T, A>(out[t * nc + ch]);
      const auto st = row<T>(p.conv_state, slot, c, p.state_batch_stride, p.state_dim_stride,
                             p.state_seq_stride);
      const auto x = row<T>(p.x, b, c, p.x_batch_stride, p.x_dim_stride, p.x_seq_stride);
      if (p.cache_seqlens) {
        for (int64_t t = 0; t < s_len; ++t) st[(written + t) % S] = x[t];
      } else if (s_len >= S) {
        for (int64_t j = 0; j < S; ++j) st[j] = x[s_len - S + j];
      } else {
        for (int64_t j = 0; j < S - s_len; ++j) st[j] = st[j + s_len];
        for (int64_t j = 0; j < s_len; ++j) st[S - s_len + j] = x[j];
      }
    }
  });
}

// Calls Op<T, A>::run(p) for the io dtype: 16-bit and float32 compute in float, float64 in double.
template <template <typename, typename> class Op, typename P>
void by_dtype(DType t, const P& p) {
  switch (t) {
    case DType::kFloat32: return Op<float, float>::run(p);
    case DType::kFloat64: return Op<double, double>::run(p);
    case DType::kBFloat16: return Op<bf16, float>::run(p);
    case DType::kFloat16: return Op<f16, float>::run(p);
    default:
      throw std::invalid_argument(std::string("causal_conv1d: unsupported dtype ") + dtype_name(t));
  }
}

template <typename T, typename A>
struct Fwd {
  static void run(const CausalConv1dFwdParams& p) { fwd_impl<T, A>(p); }
};
template <typename T, typename A>
struct Bwd {
  static void run(const CausalConv1dBwdParams& p) { bwd_impl<T, A>(p); }
};
template <typename T, typename A>
struct Update {
  static void run(const CausalConv1dUpdateParams& p) { update_impl<T, A>(p); }
};

}  // namespace

void causal_conv1d_fwd(const CausalConv1dFwdParams& p) { by_dtype<Fwd>(p.io_dtype, p); }
void causal_conv1d_bwd(const CausalConv1dBwdParams& p) { by_dtype<Bwd>(p.fwd.io_dtype, p); }
void causal_conv1d_update(const CausalConv1dUpdateParams& p) { by_dtype<Update>(p.io_dtype, p); }

}  // namespace nemocore::cpu::NEMOCORE_CPU_ISA
