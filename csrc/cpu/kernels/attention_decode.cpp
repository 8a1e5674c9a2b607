// Decode-time attention over a shared context plus per-sample decoded keys on the CPU
// (bifurcated attention: decoding.md section 2, kernels.md 5.3).
//
// Two phases, each one parallel loop over independent items:
//   1. Tiles. A tile is up to kTile keys of one key segment and KV head, together with every
//      query row that reads it: for a context tile, all the grouped query heads and positions of
//      every sample using that context (M = samples * H/Hkv * q_len rows, so the context's keys
//      and values are loaded and converted once for all of them, and Q K^T is a real GEMM); for
//      a decoded tile, the grouped rows of one sample, with the causal bound per position.
//      Each tile writes, per row, its partial state: the unnormalised P V row, the max score m
//      and the sum of exp(score - m), l. Long segments are cut into several tiles, so one
//      sample with a long context still keeps every core busy (split-KV).
//   2. Merge. Per (sample, KV head): each row merges its tiles' states with the LSE rule
//      (decoding.md 0.2) in a fixed order, so results do not depend on the thread count, and
//      writes out and lse. A row with no key at all gets out = 0 and lse = -inf.
// Products run through the register-blocked GEMM of ssd_gemm.h in the compute type (fp32, or
// fp64 for fp64 io); bf16/fp16 keys and values are widened while a tile is loaded.
#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "cpu/common/convert.h"
#include "cpu/common/math.h"
#include "cpu/common/parallel.h"
#include "cpu/kernels/ssd_gemm.h"
#include "nemocore/attention.h"

namespace nemocore::cpu::NEMOCORE_CPU_ISA {
namespace {

template <typename T>
using AccOf = std::conditional_t<std::is_same_v<T, double>, double, float>;

constexpr int64_t kTile = 256;  // keys per tile: K^T and V tiles of D = 128 stay in L2

// One tile: keys [k0, k1) of a segment, for `rows` query rows starting at `row0` in the
// per-tile state arrays; `sample` >= 0 for a decoded tile (causal bound), -1 for a context tile.
struct Tile {
  int64_t seg, head, k0, k1, sample, row0, rows;
};

struct Layout {
  int64_t G, T, D, rows_per_sample;  // G grouped heads per KV head, rows = G * T
  std::vector<int64_t> ctx_of, rank_in_ctx, ctx_samples, ctx_len_of;
  std::vector<std::vector<int64_t>> ctx_members;  // per context, its samples in batch order
};

struct TileRange {
  int64_t first = 0, count = 0;
};

template <typename T>
struct Segment {  // strides of a (segment, head, seq, dim) key or value tensor
  const T* base;
  int64_t seg_stride, head_stride, seq_stride, dim_stride;
  const T* row(int64_t seg, int64_t head, int64_t s) const {
    return base + seg * seg_stride + head * head_stride + s * seq_stride;
  }
};

template <typename T, typename A>
class Decoder {
 public:
  explicit Decoder(const AttentionDecodeParams& p) : p_(p) {
    L_.G = p.nheads / p.nkv_heads, L_.T = p.q_len, L_.D = p.headdim;
    L_.rows_per_sample = L_.G * L_.T;
    const int64_t C = has_ctx() ? p.num_contexts : 0;
    L_.ctx_samples.assign(C, 0);
    L_.ctx_members.assign(C, {});
    L_.ctx_len_of.assign(C, 0);
    for (int64_t c = 0; c < C; ++c) L_.ctx_len_of[c] = p.ctx_lens ? p.ctx_lens[c] : p.ctx_len;
    for (int64_t i = 0; i < p.batch; ++i) {
      const int64_t c = C ? (p.ctx_index ? p.ctx_index[i] : 0) : -1;
      L_.ctx_of.push_back(c);
      L_.rank_in_ctx.push_back(c >= 0 ? L_.ctx_samples[c]++ : -1);
      if (c >= 0) L_.ctx_members[c].push_back(i);
    }
    plan_tiles();
  }

  void run() {
    const int64_t D = L_.D;
    acc_.assign(static_cast<size_t>(total_rows_ * D), A(0));
    m_.assign(static_cast<size_t>(total_rows_), -std::numeric_limits<A>::infinity());
    l_.assign(static_cast<size_t>(total_rows_), A(0));
    parallel_for(static_cast<int64_t>(tiles_.size()), threads_,
                 [&](int64_t t) { run_tile(tiles_[t]); });
    parallel_for(p_.batch * p_.nkv_heads, threads_,
                 [&](int64_t item) { merge(item / p_.nkv_heads, item % p_.nkv_heads); });
  }

 private:
  bool has_ctx() const { return p_.k_ctx && p_.ctx_len > 0 && p_.num_contexts > 0; }
  bool has_dec() const { return p_.k_dec && p_.max_dec_len > 0; }
  int64_t dec_len(int64_t i) const { return p_.dec_lens ? p_.dec_lens[i] : p_.max_dec_len; }
  // Decoded keys visible to query position t of sample i (decoding.md 2.5).
  int64_t visible(int64_t i, int64_t t) const {
    return std::clamp<int64_t>(dec_len(i) - L_.T + 1 + t, 0, dec_len(i));
  }

  void plan_tiles() {
    const int64_t C = static_cast<int64_t>(L_.ctx_samples.size()), Hkv = p_.nkv_heads;
    ctx_tiles_.assign(C * Hkv, {});
    dec_tiles_.assign(p_.batch * Hkv, {});
    for (int64_t c = 0; c < C; ++c) {
      if (L_.ctx_samples[c] == 0) continue;
      for (int64_t j = 0; j < Hkv; ++j) {
        ctx_tiles_[c * Hkv + j] =
            add_tiles(c, j, L_.ctx_len_of[c], -1, L_.ctx_samples[c] * L_.rows_per_sample);
      }
    }
    if (has_dec()) {
      for (int64_t i = 0; i < p_.batch; ++i) {
        for (int64_t j = 0; j < Hkv; ++j) {
          dec_tiles_[i * Hkv + j] = add_tiles(i, j, dec_len(i), i, L_.rows_per_sample);
        }
      }
    }
    // Tiles of kTile keys are the unit of work: a long context is several tiles (split-KV),
    // so even one sample keeps every thread busy. Tiny problems stay on one thread.
    threads_ = std::max(1, p_.num_threads);
    if (total_rows_ * L_.D < 4096) threads_ = 1;
  }

  TileRange add_tiles(int64_t seg, int64_t head, int64_t len, int64_t sample, int64_t rows) {
    TileRange range{static_cast<int64_t>(tiles_.size()), 0};
    for (int64_t k0 = 0; k0 < len; k0 += kTile) {
      tiles_.push_back({seg, head, k0, std::min(len, k0 + kTile), sample, total_rows_, rows});
      total_rows_ += rows;
      ++range.count;
    }
    return range;
  }

  // Query row r of a tile -> (sample, query head, position).
  void row_owner(const Tile& tile, int64_t r, int64_t& i, int64_t& h, int64_t& t) const {
    const int64_t per = L_.rows_per_sample;
    const int64_t local = r % per;
    h = tile.head * L_.G + local / L_.T, t = local % L_.T;
    if (tile.sample >= 0) {
      i = tile.sample;
      return;
    }
    i = L_.ctx_members[tile.seg][r / per];
  }

  void run_tile(const Tile& tile) {
    const int64_t D = L_.D, n = tile.k1 - tile.k0, M = tile.rows;
    const bool dec = tile.sample >= 0;
    const Segment<T> K = dec ? Segment<T>{static_cast<const T*>(p_.k_dec), p_.kd_batch_stride,
                                          p_.kd_head_stride, p_.kd_seq_stride, p_.kd_dim_stride}
                             : Segment<T>{static_cast<const T*>(p_.k_ctx), p_.kc_ctx_stride,
                                          p_.kc_head_stride, p_.kc_seq_stride, p_.kc_dim_stride};
    const Segment<T> V = dec ? Segment<T>{static_cast<const T*>(p_.v_dec), p_.vd_batch_stride,
                                          p_.vd_head_stride, p_.vd_seq_stride, p_.vd_dim_stride}
                             : Segment<T>{static_cast<const T*>(p_.v_ctx), p_.vc_ctx_stride,
                                          p_.vc_head_stride, p_.vc_seq_stride, p_.vc_dim_stride};
    // K^T (D x n) and V (n x D) of the tile, widened once for all M rows.
    std::vector<A> Kt(static_cast<size_t>(D * n)), Vt(static_cast<size_t>(n * D)), row(D);
    for (int64_t s = 0; s < n; ++s) {
      load_row(K.row(tile.seg, tile.head, tile.k0 + s), K.dim_stride, D, row.data());
      for (int64_t d = 0; d < D; ++d) Kt[d * n + s] = row[d];
      load_row(V.row(tile.seg, tile.head, tile.k0 + s), V.dim_stride, D, Vt.data() + s * D);
    }
    // The scaled query rows.
    std::vector<A> Q(static_cast<size_t>(M * D)), S(static_cast<size_t>(M * n), A(0));
    std::vector<int64_t> limit(static_cast<size_t>(M), n);  // keys [0, limit) of the tile count
    const T* q = static_cast<const T*>(p_.q);
    const A scale = static_cast<A>(p_.scale);
    for (int64_t r = 0; r < M; ++r) {
      int64_t i, h, t;
      row_owner(tile, r, i, h, t);
      load_row(q + i * p_.q_batch_stride + h * p_.q_head_stride + t * p_.q_seq_stride,
               p_.q_dim_stride, D, Q.data() + r * D);
      for (int64_t d = 0; d < D; ++d) Q[r * D + d] *= scale;
      if (dec) limit[r] = std::clamp<int64_t>(visible(i, t) - tile.k0, 0, n);
    }
    ssd::gemm_acc<A>(M, n, D, Q.data(), D, 1, Kt.data(), n, S.data(), n);
    // Softmax pieces: the row max over the visible keys, P = exp(S - m) (0 past the bound).
    A* acc = acc_.data() + tile.row0 * D;
    for (int64_t r = 0; r < M; ++r) {
      A* s = S.data() + r * n;
      const int64_t lim = limit[r];
      if (lim == 0) {
        std::fill(s, s + n, A(0));
        continue;  // the row's state stays empty: m = -inf, l = 0
      }
      A m = s[0];
      for (int64_t k = 1; k < lim; ++k) m = std::max(m, s[k]);
      A l = 0;
      for (int64_t k = 0; k < lim; ++k) {
        s[k] = exp_acc<A>(s[k] - m);
        l += s[k];
      }
      std::fill(s + lim, s + n, A(0));
      m_[tile.row0 + r] = m, l_[tile.row0 + r] = l;
    }
    ssd::gemm_acc<A>(M, D, n, S.data(), n, 1, Vt.data(), D, acc, D);
  }

  void merge(int64_t i, int64_t j) {
    const int64_t D = L_.D, per = L_.rows_per_sample;
    // This sample's rows in each tile that holds them, in a fixed order: context tiles first.
    std::vector<int64_t> bases;
    const int64_t c = L_.ctx_of[i];
    if (c >= 0) {
      const TileRange ctx = ctx_tiles_[c * p_.nkv_heads + j];
      for (int64_t t = ctx.first; t < ctx.first + ctx.count; ++t) {
        bases.push_back(tiles_[t].row0 + L_.rank_in_ctx[i] * per);
      }
    }
    if (has_dec()) {
      const TileRange dec = dec_tiles_[i * p_.nkv_heads + j];
      for (int64_t t = dec.first; t < dec.first + dec.count; ++t) bases.push_back(tiles_[t].row0);
    }
    T* out = static_cast<T*>(p_.out);
    A* lse = static_cast<A*>(p_.lse);
    std::vector<A> o(static_cast<size_t>(D));
    for (int64_t r = 0; r < per; ++r) {
      const int64_t h = j * L_.G + r / L_.T, t = r % L_.T;
      const int64_t dst = (i * p_.nheads + h) * L_.T + t;
      A m = -std::numeric_limits<A>::infinity();
      for (int64_t b : bases) m = std::max(m, m_[b + r]);
      std::fill(o.begin(), o.end(), A(0));
      A l = 0;
      if (m != -std::numeric_limits<A>::infinity()) {
        for (int64_t b : bases) {
          if (l_[b + r] == A(0)) continue;  // an empty piece: skipped, never NaN
          const A w = exp_acc<A>(m_[b + r] - m);
          l += w * l_[b + r];
          const A* a = acc_.data() + (b + r) * D;
          for (int64_t d = 0; d < D; ++d) o[d] += w * a[d];
        }
      }
      if (l > A(0)) {
        const A inv = A(1) / l;
        for (int64_t d = 0; d < D; ++d) o[d] *= inv;
        lse[dst] = m + std::log(l);
      } else {
        lse[dst] = -std::numeric_limits<A>::infinity();
      }
      store_row(o.data(), D, out + dst * D, 1);
    }
  }

  const AttentionDecodeParams& p_;
  Layout L_;
  std::vector<Tile> tiles_;
  std::vector<TileRange> ctx_tiles_, dec_tiles_;  // per (context or sample, KV head)
  int64_t total_rows_ = 0;
  int threads_ = 1;
  std::vector<A> acc_, m_, l_;
};

template <typename T>
void run(const AttentionDecodeParams& p) {
  Decoder<T, AccOf<T>>(p).run();
}

}  // namespace

void attention_decode(const AttentionDecodeParams& p) {
  switch (p.io_dtype) {
    case DType::kFloat32: return run<float>(p);
    case DType::kFloat64: return run<double>(p);
    case DType::kBFloat16: return run<bf16>(p);
    case DType::kFloat16: return run<f16>(p);
    default:
      throw std::invalid_argument(std::string("q: unsupported dtype ") + dtype_name(p.io_dtype));
  }
}

}  // namespace nemocore::cpu::NEMOCORE_CPU_ISA
