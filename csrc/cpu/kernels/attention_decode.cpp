// Decode-time attention over a shared context plus per-sample decoded keys on the CPU
// (bifurcated attention: decoding.md section 2, kernels.md 5.3).
//
// Rows and groups. A query row is one (sample, query head, position). A group is the set of
// rows that read one key sequence of one KV head: for a context, all the grouped query heads
// and positions of every sample using it (M = samples * H/Hkv * q_len rows, so the context's
// keys and values are read once for all of them and Q K^T is a real GEMM); for a decoded
// segment, the grouped rows of one sample, with the causal bound per position. Groups of more
// than kRowBlock rows are cut into row blocks, so that one block's K and V tiles, its queries,
// scores and output rows stay in L2 together.
//
// Two phases, each one parallel loop over independent items:
//   1. Items. An item is a chunk of consecutive kTile-key tiles of one group (split-KV: a long
//      context is several items, so one sample still keeps every core busy). It runs an online
//      softmax over its tiles and writes, per row, its partial state: the unnormalised P V row,
//      the max score m and the sum of exp(score - m), l. The chunk length depends only on the
//      problem sizes (about kTargetItems items in all), never on the thread count.
//   2. Merge. Per (sample, KV head): each row merges its items' states with the LSE rule
//      (decoding.md 0.2) in a fixed order (context chunks, then decoded chunks), so results do
//      not depend on the thread count, and writes out and lse. A row with no key at all gets
//      out = 0 and lse = -inf.
// Per tile, in the compute type (fp32, or fp64 for fp64 io):
//   scores: with many rows (a batch sharing a context: compute-bound), S^T = K Q^T with the
//     MR x 2-vector register block of ssd_gemm.h, the keys read in place as the broadcast
//     operand (row by row, no transposition) against the item's scaled Q^T, packed once per
//     item into NR-wide panels; with few rows (one sample, M = H/Hkv: memory-bound), dot
//     products that load each key row once and FMA it against every query row with vector
//     accumulators, summed across lanes at the end.
//   softmax: running max and sum per row, vectorised over rows (S^T) or keys (S).
//   output: O += P V with the same register block; with many rows V is first copied into
//     NR-wide panels (its 512-byte row stride would otherwise crowd a few L1 sets), with few
//     rows its rows are streamed in place.
//   While a tile's two products run, the next tile's key and value rows are prefetched a few
//   per micro-kernel call, so the GEMMs do not wait on DRAM when they first touch them.
// fp32/fp64 keys with unit dim stride are never copied; bf16/fp16 (or strided) ones are widened
// tile by tile into per-thread scratch, where every buffer of an item lives (no allocation per
// tile); the partial states are written once by their item and read once by the merge.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
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

constexpr int64_t kTile = 256;         // keys per tile: a K and a V tile of D = 128 (fp32) in L2
constexpr int64_t kRowBlock = 128;     // rows per item at most: Q^T, S^T and O beside them in L2
constexpr int64_t kTargetItems = 128;  // items in all, about: the split-KV chunk length
constexpr int64_t kSmallRows = 12;     // fewer rows: dot products instead of the padded GEMM

// Rows [r0, r0 + rows) of the key sequence `seg` (a context, or a sample's decoded part) of KV
// head `head`; `sample` >= 0 for a decoded group (causal bound), -1 for a context group. Its
// items are [first_item, first_item + items).
struct Group {
  int64_t seg, head, sample, len, r0, rows, first_item, items;
};

// Keys [k0, k1) of a group; its states are rows [state0, state0 + group rows).
struct Item {
  int64_t group, k0, k1, state0;
};

template <typename T>
struct Segment {  // strides of a (segment, head, seq, dim) key or value tensor
  const T* base;
  int64_t seg_stride, head_stride, seq_stride, dim_stride;
  const T* row(int64_t seg, int64_t head, int64_t s) const {
    return base + seg * seg_stride + head * head_stride + s * seq_stride;
  }
};

template <typename A>
struct Scratch {  // per thread, grown as needed, never freed between calls
  std::vector<A> q, s, k, v, mt, msub, alpha, lsum, o;
  std::vector<int64_t> vis;
};

template <typename A>
Scratch<A>& scratch() {
  static thread_local Scratch<A> s;
  return s;
}

template <typename V>
inline void grow(V& v, int64_t n) {
  if (static_cast<int64_t>(v.size()) < n) v.resize(static_cast<size_t>(n));
}

// exp(x) for x <= 0 or -inf (a score minus its running max): exp_f32's range reduction and
// polynomial (math.h) without the overflow clamp and the two-factor scale, which such arguments
// never need; NaN still propagates.
inline float exp_nonpos(float x) {
  const float xc = x < -87.3f ? -87.3f : x;
  int32_t ni;
  const float p = exp_reduced_f32(xc, ni);
  const int32_t bits = (ni + 127) << 23;  // n in [-126, 0]: a normal power of two
  float s;
  std::memcpy(&s, &bits, 4);
  const float y = x < -87.3f ? 0.0f : p * s;
  return x != x ? x : y;
}
template <typename A>
inline A exp_score(A x) {
  if constexpr (std::is_same_v<A, float>) {
    return exp_nonpos(x);
  } else {
    return exp_acc<A>(x);
  }
}

template <typename A>
using VecT = typename ssd::Vec<A>::type;

// Vectors by reference and always inlined: the baseline build has no 32-byte registers, and a
// vector passed or returned by value there goes through memory (GCC warns: -Wpsabi).
template <typename A>
__attribute__((always_inline)) inline void vld(VecT<A>& v, const A* p) {
  std::memcpy(&v, p, sizeof(v));
}
template <typename A>
__attribute__((always_inline)) inline A hsum(const VecT<A>& v) {
  A s = 0;
  for (int i = 0; i < ssd::Vec<A>::kLanes; ++i) s += v[i];
  return s;
}

// S[r * lds + k] = q_r . key_k for R query rows (q: R x D, row stride D) and n keys (row stride
// ldk): each key row is loaded once per R rows, two keys at a time, vector accumulators summed
// across lanes at the end.
template <typename A, int R>
void dot_rows(int64_t n, int64_t D, const A* key, int64_t ldk, const A* q, A* S, int64_t lds) {
  using V = VecT<A>;
  constexpr int W = ssd::Vec<A>::kLanes;
  const int64_t Dv = D / W * W;
  int64_t k = 0;
  for (; k + 2 <= n; k += 2) {
    const A* k0 = key + k * ldk;
    const A* k1 = k0 + ldk;
    V a0[R], a1[R];
    for (int r = 0; r < R; ++r) a0[r] = a1[r] = V{};
    for (int64_t d = 0; d < Dv; d += W) {
      V x0, x1;
      vld<A>(x0, k0 + d), vld<A>(x1, k1 + d);
      for (int r = 0; r < R; ++r) {
        V y;
        vld<A>(y, q + r * D + d);
        a0[r] += x0 * y;
        a1[r] += x1 * y;
      }
    }
    for (int r = 0; r < R; ++r) {
      A s0 = hsum<A>(a0[r]), s1 = hsum<A>(a1[r]);
      for (int64_t d = Dv; d < D; ++d) {
        s0 += k0[d] * q[r * D + d];
        s1 += k1[d] * q[r * D + d];
      }
      S[r * lds + k] = s0;
      S[r * lds + k + 1] = s1;
    }
  }
  if (k < n) {
    const A* k0 = key + k * ldk;
    V a0[R];
    for (int r = 0; r < R; ++r) a0[r] = V{};
    for (int64_t d = 0; d < Dv; d += W) {
      V x0;
      vld<A>(x0, k0 + d);
      for (int r = 0; r < R; ++r) {
        V y;
        vld<A>(y, q + r * D + d);
        a0[r] += x0 * y;
      }
    }
    for (int r = 0; r < R; ++r) {
      A s0 = hsum<A>(a0[r]);
      for (int64_t d = Dv; d < D; ++d) s0 += k0[d] * q[r * D + d];
      S[r * lds + k] = s0;
    }
  }
}

template <typename A>
void dot_scores(int64_t M, int64_t n, int64_t D, const A* key, int64_t ldk, const A* q, A* S,
                int64_t lds) {
  for (int64_t r = 0; r < M; r += 4) {
    const A* qr = q + r * D;
    A* sr = S + r * lds;
    switch (std::min<int64_t>(4, M - r)) {
      case 4: dot_rows<A, 4>(n, D, key, ldk, qr, sr, lds); break;
      case 3: dot_rows<A, 3>(n, D, key, ldk, qr, sr, lds); break;
      case 2: dot_rows<A, 2>(n, D, key, ldk, qr, sr, lds); break;
      default: dot_rows<A, 1>(n, D, key, ldk, qr, sr, lds); break;
    }
  }
}

// The MR x NR register block of ssd_gemm.h's micro-kernel (MR x 2 vector accumulators, a's
// elements broadcast, b's rows streamed), here with vectors moved by reference (see vld) and,
// for kAccumulate = false, c overwritten instead of added to.
template <typename A, int MR, bool kAccumulate>
inline void micro_kernel(int64_t K, const A* a, int64_t a_rs, int64_t a_ks, const A* b, int64_t ldb,
                         A* c, int64_t ldc) {
  using V = VecT<A>;
  constexpr int W = ssd::Vec<A>::kLanes;
  V acc0[MR], acc1[MR];
  for (int i = 0; i < MR; ++i) {
    if (kAccumulate) {
      vld<A>(acc0[i], c + i * ldc), vld<A>(acc1[i], c + i * ldc + W);
    } else {
      acc0[i] = acc1[i] = V{};
    }
  }
  for (int64_t k = 0; k < K; ++k) {
    V b0, b1;
    vld<A>(b0, b + k * ldb), vld<A>(b1, b + k * ldb + W);
    const A* ak = a + k * a_ks;
    for (int i = 0; i < MR; ++i) {
      const A ai = ak[i * a_rs];
      acc0[i] += ai * b0;
      acc1[i] += ai * b1;
    }
  }
  for (int i = 0; i < MR; ++i) {
    std::memcpy(c + i * ldc, &acc0[i], sizeof(V));
    std::memcpy(c + i * ldc + W, &acc1[i], sizeof(V));
  }
}

// Rows of the next tile's keys and values, requested from memory a few at a time while the
// current tile's GEMMs run, so that the first pass over a tile does not wait on DRAM.
struct Prefetch {
  const char* k = nullptr;
  const char* v = nullptr;
  int64_t k_stride = 0, v_stride = 0, rows = 0, bytes = 0, next = 0, per_step = 1;
  void step() {
    for (int64_t c = 0; c < per_step && next < 2 * rows; ++c, ++next) {
      const char* r = next < rows ? k + next * k_stride : v + (next - rows) * v_stride;
      for (int64_t off = 0; off < bytes; off += 64) __builtin_prefetch(r + off);
    }
  }
};

// c (M x panels * NR, row stride ldc) (+)= a (M x K, element (i, k) at a[i * a_rs + k * a_ks]) @ b,
// b given as `panels` K x NR column blocks, panel_stride apart, row stride ldb: packed
// (K * NR, NR) or in place (NR, the row stride). Row blocks outside, panels inside: a's MR x K
// block stays in L1 while b's panels stream from L2 in order (packed, so that no power-of-two
// row stride makes them fight over a few L1 sets). Each thread's prefetcher, if any, takes one
// step per micro-kernel call.
template <typename A, int MR, bool kAccumulate>
inline void panel_rows(int64_t panels, int64_t K, const A* a, int64_t a_rs, int64_t a_ks,
                       const A* b, int64_t panel_stride, int64_t ldb, A* c, int64_t ldc,
                       Prefetch* pf) {
  constexpr int64_t NR = 2 * ssd::Vec<A>::kLanes;
  for (int64_t p = 0; p < panels; ++p) {
    if (pf) pf->step();
    micro_kernel<A, MR, kAccumulate>(K, a, a_rs, a_ks, b + p * panel_stride, ldb, c + p * NR, ldc);
  }
}

template <typename A, bool kAccumulate>
void panel_gemm(int64_t M, int64_t panels, int64_t K, const A* a, int64_t a_rs, int64_t a_ks,
                const A* b, int64_t panel_stride, int64_t ldb, A* c, int64_t ldc, Prefetch* pf) {
  constexpr int MR = ssd::kMR;
  for (int64_t i0 = 0; i0 < M; i0 += MR) {
    const A* ai = a + i0 * a_rs;
    A* ci = c + i0 * ldc;
    switch (std::min<int64_t>(MR, M - i0)) {
      case 6:
        panel_rows<A, 6, kAccumulate>(panels, K, ai, a_rs, a_ks, b, panel_stride, ldb, ci, ldc, pf);
        break;
      case 5:
        panel_rows<A, 5, kAccumulate>(panels, K, ai, a_rs, a_ks, b, panel_stride, ldb, ci, ldc, pf);
        break;
      case 4:
        panel_rows<A, 4, kAccumulate>(panels, K, ai, a_rs, a_ks, b, panel_stride, ldb, ci, ldc, pf);
        break;
      case 3:
        panel_rows<A, 3, kAccumulate>(panels, K, ai, a_rs, a_ks, b, panel_stride, ldb, ci, ldc, pf);
        break;
      case 2:
        panel_rows<A, 2, kAccumulate>(panels, K, ai, a_rs, a_ks, b, panel_stride, ldb, ci, ldc, pf);
        break;
      default:
        panel_rows<A, 1, kAccumulate>(panels, K, ai, a_rs, a_ks, b, panel_stride, ldb, ci, ldc, pf);
        break;
    }
  }
}

template <typename T, typename A>
class Decoder {
 public:
  explicit Decoder(const AttentionDecodeParams& p) : p_(p) {
    G_ = p.nheads / p.nkv_heads, T_ = p.q_len, D_ = p.headdim;
    per_ = G_ * T_;
    const int64_t C = has_ctx() ? p.num_contexts : 0;
    ctx_samples_.assign(C, 0);
    ctx_members_.assign(C, {});
    for (int64_t i = 0; i < p.batch; ++i) {
      const int64_t c = C ? (p.ctx_index ? p.ctx_index[i] : 0) : -1;
      ctx_of_.push_back(c);
      rank_in_ctx_.push_back(c >= 0 ? ctx_samples_[c]++ : -1);
      if (c >= 0) ctx_members_[c].push_back(i);
    }
    plan();
  }

  void run() {
    acc_.reset(new A[static_cast<size_t>(std::max<int64_t>(1, total_states_ * D_))]);
    m_.reset(new A[static_cast<size_t>(std::max<int64_t>(1, total_states_))]);
    l_.reset(new A[static_cast<size_t>(std::max<int64_t>(1, total_states_))]);
    parallel_for(static_cast<int64_t>(items_.size()), threads_,
                 [&](int64_t t) { run_item(items_[t]); });
    parallel_for(p_.batch * p_.nkv_heads, threads_,
                 [&](int64_t item) { merge(item / p_.nkv_heads, item % p_.nkv_heads); });
  }

 private:
  bool has_ctx() const { return p_.k_ctx && p_.ctx_len > 0 && p_.num_contexts > 0; }
  bool has_dec() const { return p_.k_dec && p_.max_dec_len > 0; }
  int64_t dec_len(int64_t i) const { return p_.dec_lens ? p_.dec_lens[i] : p_.max_dec_len; }
  int64_t ctx_len(int64_t c) const { return p_.ctx_lens ? p_.ctx_lens[c] : p_.ctx_len; }
  // Decoded keys visible to query position t of sample i (decoding.md 2.5).
  int64_t visible(int64_t i, int64_t t) const {
    return std::clamp<int64_t>(dec_len(i) - T_ + 1 + t, 0, dec_len(i));
  }

  // Row blocks of a group of `rows` rows: equal blocks of at most kRowBlock rows.
  static int64_t block_rows(int64_t rows) {
    const int64_t blocks = ceil_div(rows, kRowBlock);
    return ceil_div(rows, blocks);
  }

  void add_groups(int64_t seg, int64_t head, int64_t sample, int64_t len, int64_t rows) {
    const int64_t mb = block_rows(rows);
    for (int64_t r0 = 0; r0 < rows; r0 += mb) {
      groups_.push_back({seg, head, sample, len, r0, std::min(mb, rows - r0), 0, 0});
    }
  }

  void plan() {
    const int64_t C = static_cast<int64_t>(ctx_samples_.size()), Hkv = p_.nkv_heads;
    ctx_group0_.assign(C * Hkv, -1);
    dec_group0_.assign(p_.batch * Hkv, -1);
    for (int64_t c = 0; c < C; ++c) {
      if (ctx_samples_[c] == 0) continue;
      for (int64_t j = 0; j < Hkv; ++j) {
        ctx_group0_[c * Hkv + j] = static_cast<int64_t>(groups_.size());
        add_groups(c, j, -1, ctx_len(c), ctx_samples_[c] * per_);
      }
    }
    if (has_dec()) {
      for (int64_t i = 0; i < p_.batch; ++i) {
        for (int64_t j = 0; j < Hkv; ++j) {
          dec_group0_[i * Hkv + j] = static_cast<int64_t>(groups_.size());
          add_groups(i, j, i, dec_len(i), per_);
        }
      }
    }
    // Split-KV chunks: about kTargetItems items in all, whole tiles, from the sizes alone.
    int64_t tiles = 0, work = 0;
    for (const Group& g : groups_) {
      tiles += ceil_div(g.len, kTile);
      work += g.len * g.rows;
    }
    const int64_t chunk = kTile * std::max<int64_t>(1, tiles / kTargetItems);
    for (int64_t gi = 0; gi < static_cast<int64_t>(groups_.size()); ++gi) {
      Group& g = groups_[gi];
      g.first_item = static_cast<int64_t>(items_.size());
      for (int64_t k0 = 0; k0 < g.len; k0 += chunk) {
        items_.push_back({gi, k0, std::min(g.len, k0 + chunk), total_states_});
        total_states_ += g.rows;
        ++g.items;
      }
    }
    // Tiny problems stay on one thread (the split does not change, so neither do results).
    threads_ = std::max(1, p_.num_threads);
    if (work * D_ < (1 << 16)) threads_ = 1;
  }

  // Row r of a group's segment -> (sample, query head, position).
  void row_owner(const Group& g, int64_t r, int64_t& i, int64_t& h, int64_t& t) const {
    const int64_t local = r % per_;
    h = g.head * G_ + local / T_, t = local % T_;
    i = g.sample >= 0 ? g.sample : ctx_members_[g.seg][r / per_];
  }

  void run_item(const Item& item) {
    const Group& g = groups_[item.group];
    const int64_t D = D_, M = g.rows;
    const bool dec = g.sample >= 0;
    const Segment<T> K = dec ? Segment<T>{static_cast<const T*>(p_.k_dec), p_.kd_batch_stride,
                                          p_.kd_head_stride, p_.kd_seq_stride, p_.kd_dim_stride}
                             : Segment<T>{static_cast<const T*>(p_.k_ctx), p_.kc_ctx_stride,
                                          p_.kc_head_stride, p_.kc_seq_stride, p_.kc_dim_stride};
    const Segment<T> V = dec ? Segment<T>{static_cast<const T*>(p_.v_dec), p_.vd_batch_stride,
                                          p_.vd_head_stride, p_.vd_seq_stride, p_.vd_dim_stride}
                             : Segment<T>{static_cast<const T*>(p_.v_ctx), p_.vc_ctx_stride,
                                          p_.vc_head_stride, p_.vc_seq_stride, p_.vc_dim_stride};
    constexpr bool kSame = std::is_same_v<T, A>;
    const bool k_direct = kSame && K.dim_stride == 1, v_direct = kSame && V.dim_stride == 1;
    Scratch<A>& sc = scratch<A>();

    // The scaled query rows: Q (M x D) for the dot products, or Q^T (D x Mp, zero columns past
    // M) in NR-wide panels as the streamed operand of S^T = K Q^T.
    const bool small = M < kSmallRows;
    constexpr int64_t NR = 2 * ssd::Vec<A>::kLanes;
    const int64_t Mp = small ? M : ceil_div(M, NR) * NR;
    grow(sc.q, Mp * D);
    grow(sc.vis, M);
    A* Q = sc.q.data();
    if (!small) std::fill(Q, Q + Mp * D, A(0));
    const T* q = static_cast<const T*>(p_.q);
    const A scale = static_cast<A>(p_.scale);
    bool causal = false;
    for (int64_t r = 0; r < M; ++r) {
      int64_t i, h, t;
      row_owner(g, g.r0 + r, i, h, t);
      const T* src = q + i * p_.q_batch_stride + h * p_.q_head_stride + t * p_.q_seq_stride;
      A* dst = small ? Q + r * D : Q + (r / NR) * D * NR + r % NR;
      const int64_t step = small ? 1 : NR;
      for (int64_t d = 0; d < D; ++d) dst[d * step] = to_acc<A>(src[d * p_.q_dim_stride]) * scale;
      sc.vis[r] = dec ? visible(i, t) : g.len;
      causal = causal || sc.vis[r] < item.k1;
    }

    // Scores: S^T (n x Mp, row stride lds; lsk = lds, lsr = 1) from the GEMM, its stride an odd
    // number of panels so its rows spread over the L1 sets; S (M x n: lsr = kTile) from the dots.
    const int64_t lds = Mp + ((Mp / NR) % 2 == 0 ? NR : 0);
    const int64_t lsk = small ? 1 : lds, lsr = small ? kTile : 1;
    // With many rows V is packed into NR-wide panels (kTile x NR each) for the P V GEMM.
    const bool pack_v = !small && D % NR == 0;
    grow(sc.s, kTile * std::max(lds, M));
    grow(sc.mt, M), grow(sc.msub, M), grow(sc.alpha, M), grow(sc.lsum, M);
    if (!k_direct) grow(sc.k, kTile * D);
    if (!v_direct || pack_v) grow(sc.v, kTile * D);
    A* S = sc.s.data();
    A* O = acc_.get() + item.state0 * D;
    A* m = m_.get() + item.state0;
    A* l = l_.get() + item.state0;
    std::fill(O, O + M * D, A(0));
    std::fill(m, m + M, -std::numeric_limits<A>::infinity());
    std::fill(l, l + M, A(0));

    for (int64_t k0 = item.k0; k0 < item.k1; k0 += kTile) {
      const int64_t n = std::min(kTile, item.k1 - k0);
      const A* kp;
      const A* vp;
      int64_t ldk, ldv;
      if (k_direct) {
        kp = reinterpret_cast<const A*>(K.row(g.seg, g.head, k0)), ldk = K.seq_stride;
      } else {
        for (int64_t s = 0; s < n; ++s) {
          load_row(K.row(g.seg, g.head, k0 + s), K.dim_stride, D, sc.k.data() + s * D);
        }
        kp = sc.k.data(), ldk = D;
      }
      if (pack_v) {
        A* dst = sc.v.data();
        for (int64_t s = 0; s < n; ++s) {
          const T* src = V.row(g.seg, g.head, k0 + s);
          for (int64_t p0 = 0; p0 < D; p0 += NR) {
            A* __restrict out = dst + p0 * n + s * NR;
            if constexpr (kSame) {
              if (V.dim_stride == 1) {
                std::memcpy(out, src + p0, NR * sizeof(A));
                continue;
              }
            }
            if (V.dim_stride == 1) {
              for (int64_t j = 0; j < NR; ++j) out[j] = to_acc<A>(src[p0 + j]);
            } else {
              for (int64_t j = 0; j < NR; ++j) out[j] = to_acc<A>(src[(p0 + j) * V.dim_stride]);
            }
          }
        }
        vp = dst, ldv = 0;
      } else if (v_direct) {
        vp = reinterpret_cast<const A*>(V.row(g.seg, g.head, k0)), ldv = V.seq_stride;
      } else {
        for (int64_t s = 0; s < n; ++s) {
          load_row(V.row(g.seg, g.head, k0 + s), V.dim_stride, D, sc.v.data() + s * D);
        }
        vp = sc.v.data(), ldv = D;
      }
      Prefetch pf;
      Prefetch* next = nullptr;
      if (!small && k0 + n < item.k1 && K.dim_stride == 1 && V.dim_stride == 1) {
        const int64_t nn = std::min(kTile, item.k1 - k0 - n);
        pf.k = reinterpret_cast<const char*>(K.row(g.seg, g.head, k0 + n));
        pf.v = reinterpret_cast<const char*>(V.row(g.seg, g.head, k0 + n));
        pf.k_stride = K.seq_stride * static_cast<int64_t>(sizeof(T));
        pf.v_stride = V.seq_stride * static_cast<int64_t>(sizeof(T));
        pf.rows = nn, pf.bytes = D * static_cast<int64_t>(sizeof(T));
        const int64_t steps = ceil_div(n, ssd::kMR) * (Mp / NR) + ceil_div(M, ssd::kMR) * (D / NR);
        pf.per_step = ceil_div(2 * nn, steps);
        next = &pf;
      }
      if (small) {
        dot_scores<A>(M, n, D, kp, ldk, Q, S, kTile);
      } else {
        panel_gemm<A, false>(n, Mp / NR, D, kp, ldk, 1, Q, D * NR, NR, S, lds, next);
      }
      if (causal) {  // keys at or past a row's bound score -inf
        for (int64_t r = 0; r < M; ++r) {
          for (int64_t k = std::clamp<int64_t>(sc.vis[r] - k0, 0, n); k < n; ++k) {
            S[r * lsr + k * lsk] = -std::numeric_limits<A>::infinity();
          }
        }
      }
      softmax_tile(M, n, S, lsr, lsk, m, l, sc);
      if (k0 > item.k0) {
        for (int64_t r = 0; r < M; ++r) {
          const A a = sc.alpha[r];
          if (a == A(1)) continue;
          A* o = O + r * D;
          for (int64_t d = 0; d < D; ++d) o[d] *= a;
        }
      }
      if (pack_v) {
        panel_gemm<A, true>(M, D / NR, n, S, lsr, lsk, vp, n * NR, NR, O, D, next);
      } else {
        // V's rows in place: NR-wide column blocks straight from them, then the columns past
        // the last whole block.
        const int64_t full = D / NR * NR;
        panel_gemm<A, true>(M, D / NR, n, S, lsr, lsk, vp, NR, ldv, O, D, nullptr);
        for (int64_t r = 0; r < M && full < D; ++r) {
          for (int64_t k = 0; k < n; ++k) {
            const A pk = S[r * lsr + k * lsk];
            for (int64_t d = full; d < D; ++d) O[r * D + d] += pk * vp[k * ldv + d];
          }
        }
      }
    }
  }

  // Online softmax over one tile's scores S (element (r, k) at S[r * lsr + k * lsk]): updates
  // each row's running max m and sum l, leaves alpha = exp(m_old - m_new) (the factor for the
  // row's output so far) and replaces the scores by P = exp(score - m_new). A row whose keys
  // are all masked so far keeps m = -inf, l = 0 and gets P = 0 (never NaN).
  void softmax_tile(int64_t M, int64_t n, A* S, int64_t lsr, int64_t lsk, A* m, A* l,
                    Scratch<A>& sc) const {
    constexpr A kNegInf = -std::numeric_limits<A>::infinity();
    A* __restrict mt = sc.mt.data();
    A* __restrict msub = sc.msub.data();
    A* __restrict alpha = sc.alpha.data();
    A* __restrict lsum = sc.lsum.data();
    if (lsr == 1) {  // S^T: rows contiguous, vectorise over rows
      std::fill(mt, mt + M, kNegInf);
      for (int64_t k = 0; k < n; ++k) {
        const A* __restrict s = S + k * lsk;
        for (int64_t r = 0; r < M; ++r) mt[r] = s[r] > mt[r] ? s[r] : mt[r];
      }
    } else {
      for (int64_t r = 0; r < M; ++r) {
        const A* __restrict s = S + r * lsr;
        A mx = kNegInf;
        for (int64_t k = 0; k < n; ++k) mx = s[k] > mx ? s[k] : mx;
        mt[r] = mx;
      }
    }
    for (int64_t r = 0; r < M; ++r) {
      const A mn = std::max(m[r], mt[r]);
      msub[r] = mn == kNegInf ? A(0) : mn;  // exp(-inf - 0) = 0: masked keys and empty rows
      alpha[r] = exp_acc<A>(m[r] - msub[r]);
      m[r] = mn;
      lsum[r] = 0;
    }
    if (lsr == 1) {
      for (int64_t k = 0; k < n; ++k) {
        A* __restrict s = S + k * lsk;
        for (int64_t r = 0; r < M; ++r) {
          s[r] = exp_score<A>(s[r] - msub[r]);
          lsum[r] += s[r];
        }
      }
    } else {
      for (int64_t r = 0; r < M; ++r) {
        A* __restrict s = S + r * lsr;
        const A mr = msub[r];
        A sum = 0;
        for (int64_t k = 0; k < n; ++k) {
          s[k] = exp_score<A>(s[k] - mr);
          sum += s[k];
        }
        lsum[r] = sum;
      }
    }
    for (int64_t r = 0; r < M; ++r) l[r] = l[r] * alpha[r] + lsum[r];
  }

  void merge(int64_t i, int64_t j) {
    const int64_t D = D_, Hkv = p_.nkv_heads;
    T* out = static_cast<T*>(p_.out);
    A* lse = static_cast<A*>(p_.lse);
    Scratch<A>& sc = scratch<A>();
    grow(sc.o, D);
    A* o = sc.o.data();
    const int64_t c = ctx_of_[i];
    const int64_t cg = c >= 0 ? ctx_group0_[c * Hkv + j] : -1;
    const int64_t dg = has_dec() ? dec_group0_[i * Hkv + j] : -1;
    const int64_t cmb = c >= 0 ? block_rows(ctx_samples_[c] * per_) : 1, dmb = block_rows(per_);
    constexpr A kNegInf = -std::numeric_limits<A>::infinity();
    for (int64_t r = 0; r < per_; ++r) {
      const int64_t h = j * G_ + r / T_, t = r % T_;
      const int64_t dst = (i * p_.nheads + h) * T_ + t;
      // This row's states in a fixed order: the context's chunks, then the decoded ones.
      int64_t first[2] = {0, 0}, count[2] = {0, 0}, offset[2] = {0, 0};
      if (cg >= 0) {
        const int64_t row = rank_in_ctx_[i] * per_ + r;
        const Group& g = groups_[cg + row / cmb];
        first[0] = g.first_item, count[0] = g.items, offset[0] = row - g.r0;
      }
      if (dg >= 0) {
        const Group& g = groups_[dg + r / dmb];
        first[1] = g.first_item, count[1] = g.items, offset[1] = r - g.r0;
      }
      A mx = kNegInf;
      for (int part = 0; part < 2; ++part) {
        for (int64_t it = first[part]; it < first[part] + count[part]; ++it) {
          mx = std::max(mx, m_[items_[it].state0 + offset[part]]);
        }
      }
      std::fill(o, o + D, A(0));
      A lsum = 0;
      if (mx != kNegInf) {
        for (int part = 0; part < 2; ++part) {
          for (int64_t it = first[part]; it < first[part] + count[part]; ++it) {
            const int64_t s = items_[it].state0 + offset[part];
            if (l_[s] == A(0)) continue;  // an empty piece: skipped, never NaN
            const A w = exp_acc<A>(m_[s] - mx);
            lsum += w * l_[s];
            const A* a = acc_.get() + s * D;
            for (int64_t d = 0; d < D; ++d) o[d] += w * a[d];
          }
        }
      }
      if (lsum > A(0)) {
        const A inv = A(1) / lsum;
        for (int64_t d = 0; d < D; ++d) o[d] *= inv;
        lse[dst] = mx + std::log(lsum);
      } else {
        lse[dst] = kNegInf;
      }
      store_row(o, D, out + dst * D, 1);
    }
  }

  const AttentionDecodeParams& p_;
  int64_t G_ = 1, T_ = 1, D_ = 1, per_ = 1;  // per_ = G * T rows per (sample, KV head)
  std::vector<int64_t> ctx_of_, rank_in_ctx_, ctx_samples_;
  std::vector<std::vector<int64_t>> ctx_members_;  // per context, its samples in batch order
  std::vector<Group> groups_;
  std::vector<Item> items_;
  std::vector<int64_t> ctx_group0_, dec_group0_;  // first row-block group per (seg, KV head)
  int64_t total_states_ = 0;
  int threads_ = 1;
  std::unique_ptr<A[]> acc_, m_, l_;
};

}  // namespace

void attention_decode(const AttentionDecodeParams& p) {
  dispatch_io(p.io_dtype, "q", [&](auto t) {
    using T = decltype(t);
    Decoder<T, AccOf<T>>(p).run();
  });
}

}  // namespace nemocore::cpu::NEMOCORE_CPU_ISA
