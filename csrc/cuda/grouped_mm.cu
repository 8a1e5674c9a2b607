// Grouped GEMMs of the MoE layer on CUDA (kernels.md 3.1): the M-grouped grouped_mm
//   out[rows of e] = a[rows of e] @ b[e]
// and the K-grouped weight gradient grouped_mm_wgrad
//   out[e] = x[rows of e]^T @ y[rows of e].
//
// Both are one block-tile GEMM: a block owns a BM x BN output tile and walks the reduction in
// BK slices. Each slice of both operands is staged through shared memory as [rows][k] (k
// contiguous, padded by one 16-byte vector so fragment reads hit distinct banks), loaded into
// registers one slice ahead so the global loads of slice s + 1 overlap the math of slice s.
//   bf16 / fp16: 128 x 128 x 32 tiles, 8 warps as 2 x 4, each warp 64 x 32 = 4 x 4 tensor-core
//     m16n8k16 tiles (cuda/common/mma.cuh), fp32 accumulators.
//   fp32 / fp64: 64 x 64 x 16 tiles, 16 x 16 threads with 4 x 4 outputs each (rows ty + 16 i,
//     columns tx + 16 j, so stores coalesce), FMA in acc.
// One rounding per output element, on the store.
//
// Loads: an operand slice is read along its unit-stride axis in 16-byte vectors when the pointer
// and strides allow it (the k axis, or the row axis: then the vector is transposed into shared
// memory); otherwise element by element along the smaller stride. Elements past the rows, the
// columns or k read as zero, so no size has to be a tile multiple. An axis whose start depends
// on the device offsets (the rows of a in the forward, the tokens in wgrad) is never vectorised:
// its alignment is unknown on the host.
//
// Scheduling needs no host sync on the device offsets. Forward: expert e's row tiles take the
// slots [offsets[e] / BM + e, ...) of a 1-D list; since floor((o + T_e) / BM) - floor(o / BM) + 1
// >= ceil(T_e / BM), consecutive experts never overlap and floor(T / BM) + E slots cover all
// tiles. A block finds its expert by binary search over offsets (log E broadcast reads) and
// exits if its slot is a gap (zero-row experts own only gaps). Wgrad: a block per (expert,
// M tile, N tile); the reduction length is T_e, zero for an empty expert, which writes zeros.
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "cuda/common/mma.cuh"
#include "cuda/moe_common.cuh"
#ifdef NEMOCORE_WITH_CUDA_SM90A
#include "cuda/grouped_mm_sm90.h"
#include "nemocore/cuda_runtime_api.h"
#endif

namespace nemocore::cuda {
namespace {

using moe::ceil_div;
using moe::kThreads;
using moe::kVecElts;
using moe::min64;
using moe::Vec;

// Block tile shapes: tensor cores for the 16-bit types, SIMT FMA for fp32 and fp64.
template <typename T, bool kMma = kHasMma<T>>
struct Tile {
  static constexpr int BM = 128, BN = 128, BK = 32;
};
template <typename T>
struct Tile<T, false> {
  static constexpr int BM = 64, BN = 64, BK = 16;
};
template <typename T>
constexpr int kLd = Tile<T>::BK + kVecElts<T>;  // shared-memory row length, padded

// How a slice is read from global memory: bit 0 walks the row axis fastest (else the k axis),
// bit 1 uses 16-byte vectors along that axis.
enum LoadMode : int { kElemK = 0, kElemR = 1, kVecK = 2, kVecR = 3 };

// A rows x k operand: element (r, k) at ptr[r * rs + k * ks], or ptr[index[r] * rs + k * ks]
// with a row index (the gathered a of grouped_mm); rows valid rows in the tile.
template <typename T>
struct Operand {
  const T* ptr;
  int64_t rs, ks, rows;
  int mode;
  const int64_t* index = nullptr;

  __device__ __forceinline__ const T* row(int64_t r) const {
    return ptr + (index != nullptr ? index[r] : r) * rs;
  }
};

// ---- device code ----------------------------------------------------------------------------

// Registers of one R x BK slice held by a thread between its global load and its smem store.
template <typename T, int R>
struct Slice {
  static constexpr int V = kVecElts<T>, BK = Tile<T>::BK;
  static constexpr int kPerThread = R * BK / V / kThreads;
  static_assert(kPerThread * V * kThreads == R * BK, "slice must split evenly over threads");
  Vec<T> v[kPerThread];

  // The first element (r, k) of vector idx of the slice. Along k: 4 (bf16) vectors per row,
  // consecutive rows. Along the rows: a warp takes 8 k by 4 row vectors, so its global reads
  // are 64-byte runs and its transposing smem stores collide 4-way, not 16-way as with one k.
  __device__ __forceinline__ static void coords(int idx, bool rfast, int& r, int& k) {
    static_assert(BK % 8 == 0 && (R / V) % 4 == 0, "row-vector slices need 8 k by 4 vectors");
    if (rfast) {
      r = (idx / 8 % (R / V)) * V, k = idx % 8 + idx / (8 * (R / V)) * 8;
    } else {
      r = idx / (BK / V), k = (idx % (BK / V)) * V;
    }
  }

  // Reads k in [k0, k0 + BK) of `op`; outside the rows or past k_len reads zero.
  __device__ __forceinline__ void load(const Operand<T>& op, int64_t k0, int64_t k_len) {
    const bool rfast = op.mode & 1, vec = op.mode & 2;
    const T zero = from_acc<T>(acc_t<T>(0));
#pragma unroll
    for (int i = 0; i < kPerThread; ++i) {
      int r, kk;
      coords(threadIdx.x + i * kThreads, rfast, r, kk);
      const int64_t k = k0 + kk;
      if (vec && (rfast ? r + V <= op.rows && k < k_len : r < op.rows && k + V <= k_len)) {
        v[i] = *reinterpret_cast<const Vec<T>*>(op.row(r) + k * op.ks);  // kVecR: no index
        continue;
      }
#pragma unroll
      for (int j = 0; j < V; ++j) {
        const int64_t rj = rfast ? r + j : r, kj = rfast ? k : k + j;
        v[i].v[j] = rj < op.rows && kj < k_len ? op.row(rj)[kj * op.ks] : zero;
      }
    }
  }

  __device__ __forceinline__ void store(T (*s)[kLd<T>], int mode) const {
    const bool rfast = mode & 1;
#pragma unroll
    for (int i = 0; i < kPerThread; ++i) {
      int r, k;
      coords(threadIdx.x + i * kThreads, rfast, r, k);
      if (rfast) {  // a vector along the rows becomes a column of the [rows][k] tile
#pragma unroll
        for (int j = 0; j < V; ++j) s[r + j][k] = v[i].v[j];
      } else {
        *reinterpret_cast<Vec<T>*>(&s[r][k]) = v[i];
      }
    }
  }
};

// Tensor-core math of one BK slice: warp (wm, wn) owns rows wm * 64 + [0, 64) and columns
// wn * 32 + [0, 32) of the tile. Fragment registers follow the layout in mma.cuh; with k
// contiguous in shared memory every register is one 32-bit read.
template <typename T>
__device__ __forceinline__ void mma_slice(const T (*As)[kLd<T>], const T (*Bs)[kLd<T>],
                                          float (&acc)[4][4][4]) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const int m0 = (warp / 4) * 64, n0 = (warp % 4) * 32;
  auto word = [](const T* p) { return *reinterpret_cast<const uint32_t*>(p); };
#pragma unroll
  for (int kk = 0; kk < Tile<T>::BK; kk += 16) {
    uint32_t af[4][4], bf[4][2];
#pragma unroll
    for (int mi = 0; mi < 4; ++mi) {
      const T* lo = &As[m0 + mi * 16 + g][kk + 2 * t];
      const T* hi = &As[m0 + mi * 16 + g + 8][kk + 2 * t];
      af[mi][0] = word(lo), af[mi][1] = word(hi), af[mi][2] = word(lo + 8);
      af[mi][3] = word(hi + 8);
    }
#pragma unroll
    for (int ni = 0; ni < 4; ++ni) {
      const T* col = &Bs[n0 + ni * 8 + g][kk + 2 * t];
      bf[ni][0] = word(col), bf[ni][1] = word(col + 8);
    }
#pragma unroll
    for (int mi = 0; mi < 4; ++mi) {
#pragma unroll
      for (int ni = 0; ni < 4; ++ni) mma_m16n8k16<T>(acc[mi][ni], af[mi], bf[ni], acc[mi][ni]);
    }
  }
}

// SIMT math of one BK slice: thread (tx, ty) owns rows ty + 16 i and columns tx + 16 j.
template <typename T>
__device__ __forceinline__ void fma_slice(const T (*As)[kLd<T>], const T (*Bs)[kLd<T>],
                                          acc_t<T> (&acc)[4][4]) {
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
#pragma unroll
  for (int k = 0; k < Tile<T>::BK; ++k) {
    acc_t<T> a[4], b[4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
      a[i] = to_acc(As[ty + 16 * i][k]), b[i] = to_acc(Bs[tx + 16 * i][k]);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
#pragma unroll
      for (int j = 0; j < 4; ++j) acc[i][j] += a[i] * b[j];
    }
  }
}

// out[r, c] (r < a.rows, c < b.rows, row stride ldo) = sum over k < k_len of a(r, k) b(c, k).
// Every thread of the block must call it (barriers inside).
template <typename T>
__device__ void gemm_tile(const Operand<T>& a, const Operand<T>& b, int64_t k_len, T* out,
                          int64_t ldo) {
  using Cfg = Tile<T>;
  // 16-byte aligned: slices are stored as whole vectors (T itself may be 2-byte aligned).
  alignas(16) __shared__ T As[Cfg::BM][kLd<T>];
  alignas(16) __shared__ T Bs[Cfg::BN][kLd<T>];
  Slice<T, Cfg::BM> sa;
  Slice<T, Cfg::BN> sb;
  const int64_t slices = ceil_div(k_len, Cfg::BK);
  if (slices > 0) sa.load(a, 0, k_len), sb.load(b, 0, k_len);
  if constexpr (kHasMma<T>) {
    float acc[4][4][4] = {};
    for (int64_t s = 0; s < slices; ++s) {
      sa.store(As, a.mode), sb.store(Bs, b.mode);
      __syncthreads();
      if (s + 1 < slices)
        sa.load(a, (s + 1) * Cfg::BK, k_len), sb.load(b, (s + 1) * Cfg::BK, k_len);
      mma_slice<T>(As, Bs, acc);
      __syncthreads();
    }
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
#pragma unroll
    for (int mi = 0; mi < 4; ++mi) {
#pragma unroll
      for (int ni = 0; ni < 4; ++ni) {
#pragma unroll
        for (int q = 0; q < 4; ++q) {  // the C fragment: rows g, g + 8; columns 2t, 2t + 1
          const int64_t r = (warp / 4) * 64 + mi * 16 + g + 8 * (q / 2);
          const int64_t c = (warp % 4) * 32 + ni * 8 + 2 * t + q % 2;
          if (r < a.rows && c < b.rows) out[r * ldo + c] = from_acc<T>(acc[mi][ni][q]);
        }
      }
    }
  } else {
    acc_t<T> acc[4][4] = {};
    for (int64_t s = 0; s < slices; ++s) {
      sa.store(As, a.mode), sb.store(Bs, b.mode);
      __syncthreads();
      if (s + 1 < slices)
        sa.load(a, (s + 1) * Cfg::BK, k_len), sb.load(b, (s + 1) * Cfg::BK, k_len);
      fma_slice<T>(As, Bs, acc);
      __syncthreads();
    }
    const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int64_t r = ty + 16 * i, c = tx + 16 * j;
        if (r < a.rows && c < b.rows) out[r * ldo + c] = from_acc<T>(acc[i][j]);
      }
    }
  }
}

// Forward: block = (slot, N tile), slot as in the header comment.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    grouped_mm_kernel(const GroupedMmParams p, int64_t n_tiles, int a_mode, int b_mode) {
  constexpr int BM = Tile<T>::BM, BN = Tile<T>::BN;
  const int64_t slot = blockIdx.x / n_tiles, n0 = (blockIdx.x % n_tiles) * BN;
  moe::RowTile tile;
  if (!moe::row_tile_of_slot(slot, p.offsets, p.num_experts, BM, tile)) return;  // a gap
  const int64_t lo = tile.expert, row0 = tile.row0, row_end = tile.row_end;
  const T* a = static_cast<const T*>(p.a);
  const T* b = static_cast<const T*>(p.b) + lo * p.b_expert_stride + n0 * p.b_n_stride;
  const Operand<T> oa{p.a_rows != nullptr ? a : a + row0 * p.a_row_stride,
                      p.a_row_stride,
                      p.a_col_stride,
                      min64(BM, row_end - row0),
                      a_mode,
                      p.a_rows != nullptr ? p.a_rows + row0 : nullptr};
  const Operand<T> ob{b, p.b_n_stride, p.b_k_stride, min64(BN, p.n - n0), b_mode};
  gemm_tile<T>(oa, ob, p.k, static_cast<T*>(p.out) + row0 * p.n + n0, p.n);
}

// Weight gradient: block = (expert, M tile, N tile); the reduction runs over the expert's rows.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    grouped_mm_wgrad_kernel(const GroupedMmWgradParams p, int64_t m_tiles, int64_t n_tiles,
                            int x_mode, int y_mode) {
  constexpr int BM = Tile<T>::BM, BN = Tile<T>::BN;
  const int64_t e = blockIdx.x / (m_tiles * n_tiles);
  const int64_t m0 = (blockIdx.x / n_tiles % m_tiles) * BM, n0 = (blockIdx.x % n_tiles) * BN;
  const int64_t t0 = p.offsets[e], rows = p.offsets[e + 1] - t0;
  const T* x = static_cast<const T*>(p.x) + t0 * p.x_row_stride + m0 * p.x_col_stride;
  const T* y = static_cast<const T*>(p.y) + t0 * p.y_row_stride + n0 * p.y_col_stride;
  const Operand<T> ox{x, p.x_col_stride, p.x_row_stride, min64(BM, p.m - m0), x_mode};
  const Operand<T> oy{y, p.y_col_stride, p.y_row_stride, min64(BN, p.n - n0), y_mode};
  gemm_tile<T>(ox, oy, rows, static_cast<T*>(p.out) + (e * p.m + m0) * p.n + n0, p.n);
}

// ---- launchers ------------------------------------------------------------------------------

// The load mode of an operand with row stride rs and k stride ks: vectors along an axis only
// when it is unit-stride, its start is known to be a vector multiple (k_vec / r_vec) and the
// pointer and every other stride keep vectors aligned.
template <typename T>
int load_mode(const void* ptr, int64_t rs, int64_t ks, bool k_vec, bool r_vec,
              std::initializer_list<int64_t> more = {}) {
  const bool aligned = moe::vec_aligned<T>(ptr, more);
  if (k_vec && ks == 1 && aligned && moe::vec_aligned<T>(ptr, {rs})) return kVecK;
  if (r_vec && rs == 1 && aligned && moe::vec_aligned<T>(ptr, {ks})) return kVecR;
  return std::llabs(rs) < std::llabs(ks) ? kElemR : kElemK;
}

template <typename T>
void launch_grouped_mm(const GroupedMmParams& p) {
  const int64_t n_tiles = ceil_div(p.n, Tile<T>::BN);
  const int64_t slots = p.rows / Tile<T>::BM + p.num_experts;
  const int a_mode = load_mode<T>(p.a, p.a_row_stride, p.a_col_stride, true, false);
  const int b_mode = load_mode<T>(p.b, p.b_n_stride, p.b_k_stride, true, true, {p.b_expert_stride});
  launch_kernel("grouped_mm", grouped_mm_kernel<T>, grid_blocks(slots * n_tiles, "grouped_mm"),
                dim3(kThreads), static_cast<cudaStream_t>(p.stream), p, n_tiles, a_mode, b_mode);
}

template <typename T>
void launch_grouped_mm_wgrad(const GroupedMmWgradParams& p) {
  const int64_t m_tiles = ceil_div(p.m, Tile<T>::BM), n_tiles = ceil_div(p.n, Tile<T>::BN);
  const int x_mode = load_mode<T>(p.x, p.x_col_stride, p.x_row_stride, false, true);
  const int y_mode = load_mode<T>(p.y, p.y_col_stride, p.y_row_stride, false, true);
  launch_kernel("grouped_mm_wgrad", grouped_mm_wgrad_kernel<T>,
                grid_blocks(p.num_experts * m_tiles * n_tiles, "grouped_mm_wgrad"), dim3(kThreads),
                static_cast<cudaStream_t>(p.stream), p, m_tiles, n_tiles, x_mode, y_mode);
}

}  // namespace

// ---- dispatch -------------------------------------------------------------------------------

// The Hopper kernel where it may run (use_wgmma: a 9.0 device, NEMOCORE_WGMMA not 0).
void grouped_mm(const GroupedMmParams& p) {
  if (p.rows == 0 || p.n == 0 || p.num_experts == 0) return;  // no output element
#ifdef NEMOCORE_WITH_CUDA_SM90A
  if (grouped_mm_sm90_supports(p) && use_wgmma()) return grouped_mm_sm90(p);
#endif
  dispatch_float_io(p.io_dtype, "grouped_mm",
                    [&](auto tag) { launch_grouped_mm<typename decltype(tag)::type>(p); });
}

void grouped_mm_wgrad(const GroupedMmWgradParams& p) {
  if (p.num_experts == 0 || p.m == 0 || p.n == 0) return;  // no output element
  dispatch_float_io(p.io_dtype, "grouped_mm_wgrad",
                    [&](auto tag) { launch_grouped_mm_wgrad<typename decltype(tag)::type>(p); });
}

}  // namespace nemocore::cuda
