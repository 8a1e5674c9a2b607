// Decode-time attention over a shared context plus per-sample decoded keys on CUDA (bifurcated
// attention: decoding.md section 2, kernels.md section 5; the contract is nemocore/attention.h).
//
// Work decomposition, two launches (three with ctx_index):
//   0. Members (only with ctx_index): one block per context lists, in batch order, the samples
//      that read it, so a context block can find its query rows without a host sync.
//   1. Partials. Every block owns one key range of one KV head and all the query rows that read
//      it, and writes one partial state (o unnormalised, running max m, sum l) per row:
//        context blocks:  (context c, KV head j, split s, row block) - the rows are every
//          grouped head and position of every sample using c (M = samples * H/Hkv * q_len), so
//          each context key and value is read from HBM once per (context, KV head), whatever
//          the batch: a block holds up to 16 rows, and the row blocks of one (context, KV head,
//          split) are adjacent in the grid, so they run together and re-read the split's keys
//          from L2. The split cuts ctx_lens[c] into equal ranges so that one sample still fills
//          the GPU (split-KV, FlashDecoding-style);
//        decoded blocks:  (sample i, KV head j, split s, row block) over dec_lens[i], with the
//          per-position bound visible(i, t) of the header as a mask.
//      A block stages its query rows (pre-scaled) and one tile of keys and values at a time in
//      shared memory, converted to the compute type, and runs the online softmax: S = Q K^T for
//      the tile, per-row max and rescale, O = alpha O + P V. Tile sizes depend on the head dim
//      (chosen on the host to fill a fixed 48 KiB of static shared memory; few rows -> more
//      keys per tile). A split or row with no visible key writes l = 0.
//   2. Merge. One warp per (sample, head, position) merges its partials with the LSE rule
//      (decoding.md 0.2), skipping those with l = 0, and writes out (io) and lse (natural log);
//      a row with no key at all gets out = 0 and lse = -inf.
// The workspace holds the partial states, (b*H*T rows) x (context splits + decoded splits) x
// (D + 2), and after them the int32 member lists and counts. Split counts and tile sizes are a
// function of the sizes alone, so attention_decode_cuda_workspace_elems needs no device data.
// Arithmetic is fp32 (fp64 for fp64 io) SIMT FMA, 4 values per shared-memory access; without
// tensor cores, many rows per KV head (large batch, GQA) make the context pass compute-bound
// well before the bf16 roofline of kernels.md 5.2. Head dims up to about 720 (fp64: 360) fit.
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>

#include "cuda/common/dispatch.cuh"
#include "cuda/common/launch.cuh"
#include "nemocore/attention.h"

namespace nemocore::cuda {
namespace {

constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;
constexpr int kPoolBytes = 48 * 1024 - 1024;  // static shared memory for tiles (rest: row info)
constexpr int kMaxRows = 16;                  // query rows per block
constexpr int kMaxKeys = 64;                  // keys per tile
// Split-KV sizing: aim for about 4 blocks per SM of an H200 (132 SMs), never cutting a segment
// into ranges of fewer than kMinSplitKeys keys.
constexpr int64_t kTargetBlocks = 4 * 132;
constexpr int64_t kMinSplitKeys = 128;

__host__ __device__ __forceinline__ int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}
__host__ __device__ __forceinline__ int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
__host__ __device__ __forceinline__ int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

__device__ __forceinline__ float exp_acc(float v) { return expf(v); }
__device__ __forceinline__ double exp_acc(double v) { return exp(v); }
__device__ __forceinline__ float log_acc(float v) { return logf(v); }
__device__ __forceinline__ double log_acc(double v) { return log(v); }

// Four consecutive acc values of 16-byte aligned shared memory.
__device__ __forceinline__ void load4(const float* p, float (&x)[4]) {
  const float4 v = *reinterpret_cast<const float4*>(p);
  x[0] = v.x, x[1] = v.y, x[2] = v.z, x[3] = v.w;
}
__device__ __forceinline__ void load4(const double* p, double (&x)[4]) {
  const double2 a = reinterpret_cast<const double2*>(p)[0];
  const double2 b = reinterpret_cast<const double2*>(p)[1];
  x[0] = a.x, x[1] = a.y, x[2] = b.x, x[3] = b.y;
}
__device__ __forceinline__ void store4(float* p, const float (&x)[4]) {
  *reinterpret_cast<float4*>(p) = make_float4(x[0], x[1], x[2], x[3]);
}
__device__ __forceinline__ void store4(double* p, const double (&x)[4]) {
  reinterpret_cast<double2*>(p)[0] = make_double2(x[0], x[1]);
  reinterpret_cast<double2*>(p)[1] = make_double2(x[2], x[3]);
}

template <typename A>
__host__ __device__ __forceinline__ A neg_inf() {
  return -std::numeric_limits<A>::infinity();
}

struct Tiles {
  int bm = 0, bn = 0;  // query rows per block, keys per tile (bn >= 4)
};

// Shared-memory tiles of a block, in acc elements: Q [bmp][ld], K and V [bn][ld], O [bmp][Dp],
// S [bmp][lds]. Rows are padded to multiples of 4 so every access can move 4 values, and ld / 4
// is odd, so the 8 lanes of a 16-byte access that read different key rows hit distinct banks.
struct SmemLayout {
  int Dp, ld, bmp, lds;
  __host__ __device__ SmemLayout(int D, Tiles t)
      : Dp(D > 0 ? (D + 3) & ~3 : 4),
        ld(Dp % 8 == 0 ? Dp + 4 : Dp),
        bmp((t.bm + 3) & ~3),
        lds(t.bn + 4) {}
  __host__ __device__ int64_t elems(int bn) const {
    return int64_t(bmp) * ld + 2 * int64_t(bn) * ld + int64_t(bmp) * Dp + int64_t(bmp) * lds;
  }
};

// Sizes of both launches, computed on the host from the sizes alone.
struct Plan {
  int64_t G = 0, R = 0;        // grouped heads per KV head; rows per (sample, KV head) = G * T
  int64_t ctx_groups = 0;      // contexts that get blocks (1 without ctx_index)
  Tiles ctx, dec;              // tile sizes of the context and the decoded blocks
  int64_t ctx_row_blocks = 0;  // row blocks per (context, KV head, split): worst case b * R rows
  int64_t dec_row_blocks = 0;  // per (sample, KV head, split)
  int64_t ctx_splits = 0, dec_splits = 0, slots = 0;  // slots = partial states per row
  int64_t ctx_blocks = 0, dec_blocks = 0;
  int64_t rows = 0;        // b * H * T
  int64_t part_elems = 0;  // acc elements of the partial states; the int32 lists follow
};

// ---- device code ----------------------------------------------------------------------------

// Lists the samples of context c = blockIdx.x in batch order at members[c * b ...] and their
// count at counts[c]: a block-wide inclusive scan of the flags, kThreads samples at a time.
__global__ void __launch_bounds__(kThreads)
    members_kernel(const int64_t* ctx_index, int64_t batch, int32_t* members, int32_t* counts) {
  __shared__ int32_t scan[kThreads];
  const int64_t c = blockIdx.x;
  const int tid = threadIdx.x;
  int64_t base = 0;
  for (int64_t start = 0; start < batch; start += kThreads) {
    const int64_t i = start + tid;
    const int32_t flag = i < batch && ctx_index[i] == c ? 1 : 0;
    scan[tid] = flag;
    __syncthreads();
    for (int off = 1; off < kThreads; off *= 2) {
      const int32_t add = tid >= off ? scan[tid - off] : 0;
      __syncthreads();
      scan[tid] += add;
      __syncthreads();
    }
    if (flag) members[c * batch + base + scan[tid] - 1] = static_cast<int32_t>(i);
    base += scan[kThreads - 1];
    __syncthreads();  // scan[] is rewritten by the next round
  }
  if (tid == 0) counts[c] = static_cast<int32_t>(base);
}

// One key segment of one KV head: element n, d of K is k[n * k_seq + d * k_dim].
template <typename T>
struct Segment {
  const T* k;
  const T* v;
  int64_t k_seq, k_dim, v_seq, v_dim;
};

// Whether K and V rows can be read in 16-byte vectors: unit dim stride, rows and segment start
// 16-byte aligned, D a multiple of the vector.
template <typename T>
__device__ __forceinline__ bool vec_ok(const Segment<T>& s, int D) {
  constexpr int kVec = 16 / sizeof(T);
  return D > 0 && s.k_dim == 1 && s.v_dim == 1 && D % kVec == 0 && s.k_seq % kVec == 0 &&
         s.v_seq % kVec == 0 && reinterpret_cast<uintptr_t>(s.k) % 16 == 0 &&
         reinterpret_cast<uintptr_t>(s.v) % 16 == 0;
}

// Stages keys [n0, n0 + nk) of K and V as rows of ks, vs, element by element (any strides).
// Rows [nk, nk4) and columns [D, Dp) are zero, so P V needs no bounds (0 * 0).
template <typename T, typename A>
__device__ __forceinline__ void load_tile(const Segment<T>& s, int64_t n0, int nk, int nk4, int D,
                                          int Dp, int ld, A* ks, A* vs) {
  for (int n = threadIdx.x / Dp, d = threadIdx.x % Dp; n < nk4;) {
    A kx = A(0), vx = A(0);
    if (n < nk && d < D) {
      kx = to_acc(s.k[(n0 + n) * s.k_seq + d * s.k_dim]);
      vx = to_acc(s.v[(n0 + n) * s.v_seq + d * s.v_dim]);
    }
    ks[n * ld + d] = kx, vs[n * ld + d] = vx;
    for (d += kThreads; d >= Dp; d -= Dp) ++n;
  }
}

// The same with one 16-byte load per vector of a row (vec_ok); columns [D, Dp) are not written.
template <typename T, typename A>
__device__ __forceinline__ void load_tile_vec(const Segment<T>& s, int64_t n0, int nk, int nk4,
                                              int D, int ld, A* ks, A* vs) {
  constexpr int kVec = 16 / sizeof(T);
  const int per_row = D / kVec;
  for (int n = threadIdx.x / per_row, c = threadIdx.x % per_row; n < nk4;) {
    uint4 kr = make_uint4(0, 0, 0, 0), vr = kr;  // all-zero bits are 0 in every io type
    if (n < nk) {
      kr = *reinterpret_cast<const uint4*>(s.k + (n0 + n) * s.k_seq + c * kVec);
      vr = *reinterpret_cast<const uint4*>(s.v + (n0 + n) * s.v_seq + c * kVec);
    }
    const T* ke = reinterpret_cast<const T*>(&kr);
    const T* ve = reinterpret_cast<const T*>(&vr);
#pragma unroll
    for (int u = 0; u < kVec; ++u) {
      ks[n * ld + c * kVec + u] = to_acc(ke[u]);
      vs[n * ld + c * kVec + u] = to_acc(ve[u]);
    }
    for (c += kThreads; c >= per_row; c -= per_row) ++n;
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    partial_kernel(const AttentionDecodeParams p, const Plan plan) {
  using A = acc_t<T>;
  __shared__ float4 pool_mem[kPoolBytes / sizeof(float4)];  // 16-byte aligned for load4
  A* pool = reinterpret_cast<A*>(pool_mem);
  __shared__ int64_t row_q[kMaxRows], row_id[kMaxRows], row_limit[kMaxRows];
  __shared__ A row_m[kMaxRows], row_l[kMaxRows], row_alpha[kMaxRows];
  const int tid = threadIdx.x;
  const int64_t T_ = p.q_len, D = p.headdim, Hkv = p.nkv_heads;

  // Which key range and which rows: a context block or a decoded block.
  int64_t bx = blockIdx.x, k0, k1, slot, rows, j;
  const int32_t* members = nullptr;  // context rows -> samples, or null: row block = sample
  int64_t row0, sample = -1;         // first row in the context's row list / the decoded sample
  Tiles tiles;
  Segment<T> seg;
  if (bx < plan.ctx_blocks) {
    tiles = plan.ctx;
    const int64_t rb = bx % plan.ctx_row_blocks;
    bx /= plan.ctx_row_blocks;
    const int64_t s = bx % plan.ctx_splits;
    bx /= plan.ctx_splits;
    j = bx % Hkv;
    const int64_t c = bx / Hkv;
    int64_t count = p.batch;
    if (p.ctx_index) {
      const int32_t* lists =
          reinterpret_cast<const int32_t*>(static_cast<const A*>(p.workspace) + plan.part_elems);
      members = lists + c * p.batch;
      count = lists[plan.ctx_groups * p.batch + c];
    }
    row0 = rb * tiles.bm;
    if (row0 >= count * plan.R) return;  // the whole block: fewer samples read this context
    rows = min64(tiles.bm, count * plan.R - row0);
    const int64_t len = p.ctx_lens ? p.ctx_lens[c] : p.ctx_len;
    const int64_t chunk = ceil_div(len, plan.ctx_splits);
    k0 = min64(s * chunk, len), k1 = min64(k0 + chunk, len), slot = s;
    seg = {static_cast<const T*>(p.k_ctx) + c * p.kc_ctx_stride + j * p.kc_head_stride,
           static_cast<const T*>(p.v_ctx) + c * p.vc_ctx_stride + j * p.vc_head_stride,
           p.kc_seq_stride,
           p.kc_dim_stride,
           p.vc_seq_stride,
           p.vc_dim_stride};
  } else {
    bx -= plan.ctx_blocks;
    tiles = plan.dec;
    const int64_t rb = bx % plan.dec_row_blocks;
    bx /= plan.dec_row_blocks;
    const int64_t s = bx % plan.dec_splits;
    bx /= plan.dec_splits;
    j = bx % Hkv;
    sample = bx / Hkv;
    row0 = rb * tiles.bm;
    rows = min64(tiles.bm, plan.R - row0);
    const int64_t len = p.dec_lens ? p.dec_lens[sample] : p.max_dec_len;
    const int64_t chunk = ceil_div(len, plan.dec_splits);
    k0 = min64(s * chunk, len), k1 = min64(k0 + chunk, len), slot = plan.ctx_splits + s;
    seg = {static_cast<const T*>(p.k_dec) + sample * p.kd_batch_stride + j * p.kd_head_stride,
           static_cast<const T*>(p.v_dec) + sample * p.vd_batch_stride + j * p.vd_head_stride,
           p.kd_seq_stride,
           p.kd_dim_stride,
           p.vd_seq_stride,
           p.vd_dim_stride};
  }

  // Row r of the block: sample i, grouped head g, position t; its query, output row and bound.
  if (tid < rows) {
    const int64_t rr = row0 + tid;
    const int64_t i = sample >= 0 ? sample : (members ? members[rr / plan.R] : rr / plan.R);
    const int64_t w = rr % plan.R, g = w / T_, t = w % T_;
    const int64_t h = j * plan.G + g;
    row_q[tid] = i * p.q_batch_stride + h * p.q_head_stride + t * p.q_seq_stride;
    row_id[tid] = (i * p.nheads + h) * T_ + t;
    int64_t limit = k1;  // context: every key
    if (sample >= 0) {
      const int64_t len = p.dec_lens ? p.dec_lens[sample] : p.max_dec_len;
      limit = min64(max64(len - T_ + 1 + t, 0), len);
    }
    row_limit[tid] = limit;
    row_m[tid] = neg_inf<A>(), row_l[tid] = A(0);
  }

  const int bn = tiles.bn, nrows = static_cast<int>(rows), Dc = static_cast<int>(D);
  const SmemLayout L(Dc, tiles);
  A* qs = pool;
  A* ks = qs + L.bmp * L.ld;
  A* vs = ks + bn * L.ld;
  A* os = vs + bn * L.ld;
  A* ss = os + L.bmp * L.Dp;
  const T* q = static_cast<const T*>(p.q);
  const A scale = static_cast<A>(p.scale);
  __syncthreads();
  int64_t k_end = k0;  // keys past every row's bound are skipped
  for (int r = 0; r < nrows; ++r) k_end = max64(k_end, min64(row_limit[r], k1));
  // Padding rows and columns of Q are zero, so whole 4-row, 4-column groups can be multiplied.
  for (int e = tid; e < L.bmp * L.Dp; e += kThreads) {
    const int r = e / L.Dp, d = e - r * L.Dp;
    qs[r * L.ld + d] =
        r < nrows && d < Dc ? to_acc(q[row_q[r] + d * p.q_dim_stride]) * scale : A(0);
    os[e] = A(0);
  }

  // Columns [D, Dp) of K and V stay zero (the vector loads never write them).
  for (int e = tid; e < bn * (L.Dp - Dc); e += kThreads) {
    const int n = e / (L.Dp - Dc), d = Dc + e % (L.Dp - Dc);
    ks[n * L.ld + d] = A(0), vs[n * L.ld + d] = A(0);
  }
  const bool vec_kv = vec_ok(seg, Dc);

  for (int64_t n0 = k0; n0 < k_end; n0 += bn) {
    const int nk = static_cast<int>(min64(bn, k_end - n0)), nk4 = (nk + 3) & ~3;
    __syncthreads();  // the previous tile's P V is done with ks, vs and ss
    if (vec_kv) {
      load_tile_vec(seg, n0, nk, nk4, Dc, L.ld, ks, vs);
    } else {
      load_tile(seg, n0, nk, nk4, Dc, L.Dp, L.ld, ks, vs);
    }
    __syncthreads();
    // S = Q K^T: a thread takes one key and four rows, 4 columns per shared-memory access.
    for (int e = tid; e < (L.bmp / 4) * nk4; e += kThreads) {
      const int g = e / nk4, n = e - g * nk4;
      const A* kn = ks + n * L.ld;
      const A* q0 = qs + 4 * g * L.ld;
      A acc[4] = {A(0), A(0), A(0), A(0)};
      for (int d = 0; d < L.Dp; d += 4) {
        A kx[4];
        load4(kn + d, kx);
#pragma unroll
        for (int u = 0; u < 4; ++u) {
          A qx[4];
          load4(q0 + u * L.ld + d, qx);
          acc[u] += qx[0] * kx[0] + qx[1] * kx[1] + qx[2] * kx[2] + qx[3] * kx[3];
        }
      }
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        const int r = 4 * g + u;
        // Padding entries are 0 (P V reads them), masked keys of real rows -inf (softmax).
        A sv = A(0);
        if (r < nrows && n < nk) sv = n0 + n < row_limit[r] ? acc[u] : neg_inf<A>();
        ss[r * L.lds + n] = sv;
      }
    }
    __syncthreads();
    if (tid < nrows) {  // online softmax of row tid; a row with nothing visible yet stays empty
      A* sr = ss + tid * L.lds;
      const A m_old = row_m[tid];
      A m_new = m_old;
      for (int n = 0; n < nk; ++n) m_new = sr[n] > m_new ? sr[n] : m_new;
      A alpha = A(1);
      if (m_new == neg_inf<A>()) {
        for (int n = 0; n < nk; ++n) sr[n] = A(0);
      } else {
        alpha = exp_acc(m_old - m_new);  // 0 when m_old = -inf
        A sum = 0;
        for (int n = 0; n < nk; ++n) {
          const A pn = exp_acc(sr[n] - m_new);
          sr[n] = pn;
          sum += pn;
        }
        row_l[tid] = row_l[tid] * alpha + sum;
        row_m[tid] = m_new;
      }
      row_alpha[tid] = alpha;
    }
    __syncthreads();
    // O = alpha O + P V: a thread takes one row and four columns, four keys per P access.
    const int dq = L.Dp / 4;
    for (int e = tid; e < nrows * dq; e += kThreads) {
      const int r = e / dq, d = 4 * (e - r * dq);
      const A* pr = ss + r * L.lds;
      A acc[4];
      load4(os + r * L.Dp + d, acc);
      const A alpha = row_alpha[r];
#pragma unroll
      for (int c = 0; c < 4; ++c) acc[c] *= alpha;
      for (int n = 0; n < nk4; n += 4) {
        A pp[4];
        load4(pr + n, pp);
#pragma unroll
        for (int u = 0; u < 4; ++u) {
          A vx[4];
          load4(vs + (n + u) * L.ld + d, vx);
#pragma unroll
          for (int c = 0; c < 4; ++c) acc[c] += pp[u] * vx[c];
        }
      }
      store4(os + r * L.Dp + d, acc);
    }
  }
  __syncthreads();

  // Partial state of each row: m, l, then o (o only when l > 0; the merge skips l = 0).
  A* part = static_cast<A*>(p.workspace);
  const int64_t width = D + 2;
  if (tid < nrows) {
    A* pr = part + (row_id[tid] * plan.slots + slot) * width;
    pr[0] = row_m[tid], pr[1] = row_l[tid];
  }
  for (int e = tid; e < nrows * Dc; e += kThreads) {
    const int r = e / Dc, d = e - r * Dc;
    if (row_l[r] > A(0)) part[(row_id[r] * plan.slots + slot) * width + 2 + d] = os[r * L.Dp + d];
  }
}

// One warp per output row: merge the row's partial states (LSE rule), write out and lse.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    merge_kernel(const AttentionDecodeParams p, const Plan plan) {
  using A = acc_t<T>;
  const int lane = threadIdx.x % 32;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarps + threadIdx.x / 32;
  if (row >= plan.rows) return;
  const int64_t D = p.headdim, width = D + 2;
  const A* part = static_cast<const A*>(p.workspace) + row * plan.slots * width;
  A m = neg_inf<A>(), l = A(0);
  for (int64_t k = 0; k < plan.slots; ++k) {
    const A* pk = part + k * width;
    if (pk[1] > A(0) && pk[0] > m) m = pk[0];
  }
  for (int64_t k = 0; k < plan.slots; ++k) {
    const A* pk = part + k * width;
    if (pk[1] > A(0)) l += pk[1] * exp_acc(pk[0] - m);
  }
  T* out = static_cast<T*>(p.out) + row * D;
  const A inv = l > A(0) ? A(1) / l : A(0);
  for (int64_t d = lane; d < D; d += 32) {
    A o = 0;
    for (int64_t k = 0; k < plan.slots; ++k) {
      const A* pk = part + k * width;
      if (pk[1] > A(0)) o += pk[2 + d] * exp_acc(pk[0] - m);
    }
    out[d] = from_acc<T>(o * inv);
  }
  if (lane == 0) static_cast<A*>(p.lse)[row] = l > A(0) ? m + log_acc(l) : neg_inf<A>();
}

// ---- launchers ------------------------------------------------------------------------------

bool has_ctx(const AttentionDecodeParams& p) {
  return p.k_ctx && p.num_contexts > 0 && p.ctx_len > 0;
}
bool has_dec(const AttentionDecodeParams& p) { return p.k_dec && p.max_dec_len > 0; }

// The most rows (up to kMaxRows, no more than rows_hint) and then the most keys per tile whose
// Q, K, V, O and S tiles fit the pool.
Tiles choose_tiles(int64_t D, int64_t rows_hint, int64_t acc_bytes) {
  const int64_t pool = kPoolBytes / acc_bytes;
  int bm = 1;
  while (bm < kMaxRows && bm < rows_hint) bm *= 2;
  for (; bm >= 1; bm /= 2) {
    for (int bn = kMaxKeys; bn >= (bm == 1 ? 4 : 8); bn /= 2) {
      if (D <= (1 << 20) && SmemLayout(static_cast<int>(D), {bm, bn}).elems(bn) <= pool) {
        return {bm, bn};
      }
    }
  }
  throw std::invalid_argument("attention_decode: headdim " + std::to_string(D) +
                              " is too large for the CUDA kernel's shared-memory tiles");
}

// Splits of a segment of `len` keys when `work` blocks exist without splitting.
int64_t choose_splits(int64_t len, int64_t work) {
  const int64_t want = ceil_div(kTargetBlocks, max64(work, 1));
  return max64(1, min64(want, ceil_div(len, kMinSplitKeys)));
}

Plan make_plan(const AttentionDecodeParams& p) {
  if (p.nkv_heads <= 0 || p.nheads % p.nkv_heads != 0) {
    throw std::invalid_argument("attention_decode: nheads (" + std::to_string(p.nheads) +
                                ") must be a multiple of nkv_heads (" +
                                std::to_string(p.nkv_heads) + ")");
  }
  const int64_t acc_bytes = p.io_dtype == DType::kFloat64 ? 8 : 4;
  Plan plan;
  plan.G = p.nheads / p.nkv_heads;
  plan.R = plan.G * p.q_len;
  plan.rows = p.batch * p.nheads * p.q_len;
  if (has_ctx(p)) {
    plan.ctx_groups = p.ctx_index ? p.num_contexts : 1;
    const int64_t all_rows = p.batch * plan.R;
    plan.ctx = choose_tiles(p.headdim, ceil_div(all_rows, plan.ctx_groups), acc_bytes);
    plan.ctx_row_blocks = ceil_div(all_rows, plan.ctx.bm);
    // Blocks that do work: at most one partly filled row block per context beyond the full ones.
    const int64_t busy = p.nkv_heads * (ceil_div(all_rows, plan.ctx.bm) + plan.ctx_groups - 1);
    plan.ctx_splits = choose_splits(p.ctx_len, busy);
    plan.ctx_blocks = plan.ctx_groups * p.nkv_heads * plan.ctx_splits * plan.ctx_row_blocks;
  }
  if (has_dec(p)) {
    plan.dec = choose_tiles(p.headdim, plan.R, acc_bytes);
    plan.dec_row_blocks = ceil_div(plan.R, plan.dec.bm);
    plan.dec_splits = choose_splits(p.max_dec_len, p.batch * p.nkv_heads * plan.dec_row_blocks);
    plan.dec_blocks = p.batch * p.nkv_heads * plan.dec_splits * plan.dec_row_blocks;
  }
  plan.slots = plan.ctx_splits + plan.dec_splits;
  plan.part_elems = plan.rows * plan.slots * (p.headdim + 2);
  return plan;
}

int64_t workspace_elems(const AttentionDecodeParams& p, const Plan& plan) {
  const int64_t acc_bytes = p.io_dtype == DType::kFloat64 ? 8 : 4;
  int64_t lists = 0;  // int32 members and counts
  if (has_ctx(p) && p.ctx_index) lists = plan.ctx_groups * (p.batch + 1);
  return plan.part_elems + ceil_div(lists * 4, acc_bytes);
}

template <typename T>
void launch_attention(const AttentionDecodeParams& p, const Plan& plan) {
  const auto stream = static_cast<cudaStream_t>(p.stream);
  if (plan.ctx_blocks > 0 && p.ctx_index) {
    int32_t* lists =
        reinterpret_cast<int32_t*>(static_cast<acc_t<T>*>(p.workspace) + plan.part_elems);
    launch_kernel("attention_decode_members", members_kernel,
                  grid_blocks(plan.ctx_groups, "attention_decode_members"), dim3(kThreads), stream,
                  p.ctx_index, p.batch, lists, lists + plan.ctx_groups * p.batch);
  }
  if (plan.ctx_blocks + plan.dec_blocks > 0) {
    launch_kernel("attention_decode_partial", partial_kernel<T>,
                  grid_blocks(plan.ctx_blocks + plan.dec_blocks, "attention_decode_partial"),
                  dim3(kThreads), stream, p, plan);
  }
  launch_kernel("attention_decode_merge", merge_kernel<T>,
                grid_blocks(ceil_div(plan.rows, kWarps), "attention_decode_merge"), dim3(kThreads),
                stream, p, plan);
}

}  // namespace

// ---- dispatch -------------------------------------------------------------------------------

int64_t attention_decode_cuda_workspace_elems(const AttentionDecodeParams& p) {
  if (p.batch * p.nheads * p.q_len == 0) return 0;
  return workspace_elems(p, make_plan(p));
}

void attention_decode(const AttentionDecodeParams& p) {
  if (p.batch * p.nheads * p.q_len == 0) return;  // no output element
  const Plan plan = make_plan(p);
  if (plan.part_elems > 0 && !p.workspace) {
    throw std::invalid_argument("attention_decode: workspace of " +
                                std::to_string(workspace_elems(p, plan)) + " elements is missing");
  }
  dispatch_float_io(p.io_dtype, "attention_decode",
                    [&](auto tag) { launch_attention<typename decltype(tag)::type>(p, plan); });
}

}  // namespace nemocore::cuda
