// Grouped GEMMs for MoE on the CPU (kernels.md 3.1, 3.4): the M-grouped product
// out[rows of e] = a[rows of e] @ b[e] and the K-grouped weight gradient
// out[e] = x[rows of e]^T @ y[rows of e].
//
// Both are cut into independent output blocks, each computed whole (all of K) by
// gmm::block_gemm, the packed BLIS-style GEMM of grouped_mm_kernel.h, and handed to the threads
// one at a time so uneven experts balance:
//   grouped_mm: (expert, row block, column range). An expert's rows form one block unless it has
//     many (then equal blocks, so each packed b slice still serves many rows); the columns form
//     one range (a's block is packed once per K slice for all of them) unless the threads would
//     get too few blocks. Experts without rows produce no work.
//   wgrad: (expert, block of out[e]'s rows, column tile). The reduction runs over the expert's
//     rows, so a = x[rows of e]^T is read through swapped strides and packed like any other a;
//     an expert without rows writes zeros.
// Each output element belongs to one block and is summed in a fixed order (K slices fixed by
// the shapes alone), so results do not depend on the thread count even though the column
// ranges do. float64 io computes in float64 (same code, half the vector lanes), every other
// dtype in float32.
#include <algorithm>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "cpu/common/convert.h"
#include "cpu/common/parallel.h"
#include "cpu/kernels/grouped_mm_kernel.h"
#include "nemocore/moe.h"

namespace nemocore::cpu::NEMOCORE_CPU_ISA {
namespace {

// Rows one block may cover: enough that packing b's slice is cheap next to the FMAs it feeds,
// few enough that the packed block of a stays in L2 and heavy experts split across threads.
constexpr int64_t kMaxBlockRows = 192;
// Elements of the A buffer a 16-bit block accumulates in before rounding (256 KiB of fp32).
constexpr int64_t kMaxBufferElems = 64 * 1024;

struct Block {
  int64_t expert, r0, rows, c0, cols;
};

// Cuts each expert's [0, rows_of(e)) x [0, cols) into blocks: rows into equal pieces of at most
// kMaxBlockRows, columns into `groups` ranges of whole column tiles. Which thread computes an
// element never changes its value, so the cut may depend on the thread count.
template <typename A, typename RowsOf>
std::vector<Block> make_blocks(int64_t num_experts, int64_t cols, int64_t groups,
                               const RowsOf& rows_of) {
  constexpr int64_t MR = gmm::Tile<A>::MR, NR = gmm::Tile<A>::NR;
  std::vector<Block> blocks;
  if (cols <= 0) return blocks;
  const int64_t tile = gmm::even_piece(cols, gmm::max_block_cols<A>(), NR);
  const int64_t tiles = (cols + tile - 1) / tile;
  const int64_t range = (tiles + std::min(groups, tiles) - 1) / std::min(groups, tiles) * tile;
  for (int64_t e = 0; e < num_experts; ++e) {
    const int64_t rows = rows_of(e);
    if (rows <= 0) continue;
    const int64_t mb = gmm::even_piece(rows, kMaxBlockRows, MR);
    for (int64_t c0 = 0; c0 < cols; c0 += range) {
      for (int64_t r0 = 0; r0 < rows; r0 += mb) {
        blocks.push_back({e, r0, std::min(mb, rows - r0), c0, std::min(range, cols - c0)});
      }
    }
  }
  return blocks;
}

// Column ranges per row block for grouped_mm: one (a's block is packed once per KC slice for
// all of them) unless that leaves the threads too few blocks, or a 16-bit block's buffer too big.
template <typename T, typename A>
int64_t column_groups(const GroupedMmParams& p) {
  int64_t row_blocks = 0, max_rows = 0;
  for (int64_t e = 0; e < p.num_experts; ++e) {
    const int64_t rows = p.offsets[e + 1] - p.offsets[e];
    row_blocks += (rows + kMaxBlockRows - 1) / kMaxBlockRows;
    max_rows = std::max(max_rows, std::min(rows, kMaxBlockRows));
  }
  int64_t groups = 1;
  if (row_blocks > 0 && row_blocks < 4 * p.num_threads) {
    groups = (4 * p.num_threads + row_blocks - 1) / row_blocks;
  }
  if (!std::is_same_v<T, A>) {
    groups = std::max(groups, (max_rows * p.n + kMaxBufferElems - 1) / kMaxBufferElems);
  }
  return groups;
}

template <typename T>
void grouped_mm_impl(const GroupedMmParams& p) {
  using A = AccOf<T>;
  const T* a = static_cast<const T*>(p.a);
  const T* b = static_cast<const T*>(p.b);
  T* out = static_cast<T*>(p.out);
  const std::vector<Block> blocks =
      make_blocks<A>(p.num_experts, p.n, column_groups<T, A>(p),
                     [&](int64_t e) { return p.offsets[e + 1] - p.offsets[e]; });
  parallel_for(static_cast<int64_t>(blocks.size()), p.num_threads, [&](int64_t i) {
    const Block& blk = blocks[i];
    const int64_t r0 = p.offsets[blk.expert] + blk.r0;
    const gmm::View<T> av =
        p.a_rows != nullptr ? gmm::View<T>{a, p.a_row_stride, p.a_col_stride, p.a_rows + r0}
                            : gmm::View<T>{a + r0 * p.a_row_stride, p.a_row_stride, p.a_col_stride};
    const gmm::View<T> bv{b + blk.expert * p.b_expert_stride + blk.c0 * p.b_n_stride, p.b_k_stride,
                          p.b_n_stride};
    gmm::block_gemm<T, A>(blk.rows, blk.cols, p.k, av, bv, out + r0 * p.n + blk.c0, p.n);
  });
}

template <typename T>
void wgrad_impl(const GroupedMmWgradParams& p) {
  using A = AccOf<T>;
  const T* x = static_cast<const T*>(p.x);
  const T* y = static_cast<const T*>(p.y);
  T* out = static_cast<T*>(p.out);
  // Output rows are out[e]'s m rows for every expert, including those without tokens (zeros).
  // The reduction (the expert's rows) is short, so repacking a per column tile costs little:
  // one tile per block.
  const std::vector<Block> blocks =
      make_blocks<A>(p.num_experts, p.n, p.n, [&](int64_t) { return p.m; });
  parallel_for(static_cast<int64_t>(blocks.size()), p.num_threads, [&](int64_t i) {
    const Block& blk = blocks[i];
    const int64_t t0 = p.offsets[blk.expert], rows = p.offsets[blk.expert + 1] - t0;
    const gmm::View<T> av{x + t0 * p.x_row_stride + blk.r0 * p.x_col_stride, p.x_col_stride,
                          p.x_row_stride};
    const gmm::View<T> bv{y + t0 * p.y_row_stride + blk.c0 * p.y_col_stride, p.y_row_stride,
                          p.y_col_stride};
    T* o = out + (blk.expert * p.m + blk.r0) * p.n + blk.c0;
    gmm::block_gemm<T, A>(blk.rows, blk.cols, rows, av, bv, o, p.n);
  });
}

}  // namespace

void grouped_mm(const GroupedMmParams& p) {
  dispatch_io(p.io_dtype, "a", [&](auto t) { grouped_mm_impl<decltype(t)>(p); });
}
void grouped_mm_wgrad(const GroupedMmWgradParams& p) {
  dispatch_io(p.io_dtype, "a", [&](auto t) { wgrad_impl<decltype(t)>(p); });
}

}  // namespace nemocore::cpu::NEMOCORE_CPU_ISA
