// MoE token permute on the CPU (kernels.md 3.1): the stable counting sort of (token, slot) pairs
// by expert, the row gather that builds the expert-ordered operand, the weighted combine that
// brings each token's k rows back, and the combine weights' gradient.
//
// Every kernel is one pass over rows, parallel over rows (gather) or tokens (combine), each
// output row written by one thread: no atomics, and results do not depend on the thread count.
// Rows are converted to the compute type on the fly; the stride-1 inner loops vectorise.
#include <algorithm>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "cpu/common/convert.h"
#include "cpu/common/parallel.h"
#include "nemocore/moe.h"

namespace nemocore::cpu::NEMOCORE_CPU_ISA {
namespace {

// Rows of `cols` elements handed to one thread at a time: enough work to amortise the
// scheduling, few enough items to balance two threads.
int64_t rows_per_item(int64_t cols) {
  return std::max<int64_t>(1, 16384 / std::max<int64_t>(cols, 1));
}

template <typename F>
void for_row_blocks(int64_t rows, int64_t cols, int threads, const F& fn) {
  const int64_t per = rows_per_item(cols);
  const int use = double(rows) * cols < 65536 ? 1 : threads;
  parallel_for(ceil_div(rows, per), use, [&](int64_t item) {
    const int64_t r1 = std::min(rows, (item + 1) * per);
    for (int64_t r = item * per; r < r1; ++r) fn(r);
  });
}

template <typename T>
void gather_impl(const MoeGatherParams& p) {
  using A = AccOf<T>;
  const T* src = static_cast<const T*>(p.src);
  const A* scale = static_cast<const A*>(p.scale);
  T* out = static_cast<T*>(p.out);
  for_row_blocks(p.rows, p.cols, p.num_threads, [&](int64_t r) {
    const T* s = src + p.index[r] * p.src_row_stride;
    T* o = out + r * p.cols;
    if (!scale && p.src_col_stride == 1) {
      std::memcpy(o, s, sizeof(T) * p.cols);
      return;
    }
    const A w = scale ? scale[r] : A(1);
    for (int64_t c = 0; c < p.cols; ++c)
      o[c] = from_acc<T, A>(w * to_acc<A>(s[c * p.src_col_stride]));
  });
}

template <typename T>
void combine_impl(const MoeCombineParams& p) {
  using A = AccOf<T>;
  const T* src = static_cast<const T*>(p.src);
  const A* weights = static_cast<const A*>(p.weights);
  T* out = static_cast<T*>(p.out);
  for_row_blocks(p.tokens, p.cols, p.num_threads, [&](int64_t t) {
    std::vector<A> acc(static_cast<size_t>(p.cols), A(0));
    for (int64_t j = 0; j < p.topk; ++j) {
      const A w = weights ? weights[t * p.topk + j] : A(1);
      const T* s = src + p.row_map[t * p.topk + j] * p.src_row_stride;
      if (p.src_col_stride == 1) {
        for (int64_t c = 0; c < p.cols; ++c) acc[c] += w * to_acc<A>(s[c]);
      } else {
        for (int64_t c = 0; c < p.cols; ++c) acc[c] += w * to_acc<A>(s[c * p.src_col_stride]);
      }
    }
    store_row(acc.data(), p.cols, out + t * p.cols, 1);
  });
}

template <typename T>
void combine_wgrad_impl(const MoeCombineWgradParams& p) {
  using A = AccOf<T>;
  const T* dy = static_cast<const T*>(p.dy);
  const T* src = static_cast<const T*>(p.src);
  A* dw = static_cast<A*>(p.dweights);
  for_row_blocks(p.tokens, p.cols * p.topk, p.num_threads, [&](int64_t t) {
    std::vector<A> g(static_cast<size_t>(p.cols));
    load_row(dy + t * p.dy_row_stride, p.dy_col_stride, p.cols, g.data());
    for (int64_t j = 0; j < p.topk; ++j) {
      const T* s = src + p.row_map[t * p.topk + j] * p.src_row_stride;
      A sum = 0;
      if (p.src_col_stride == 1) {
        for (int64_t c = 0; c < p.cols; ++c) sum += g[c] * to_acc<A>(s[c]);
      } else {
        for (int64_t c = 0; c < p.cols; ++c) sum += g[c] * to_acc<A>(s[c * p.src_col_stride]);
      }
      dw[t * p.topk + j] = sum;
    }
  });
}

template <typename I>
void sort_impl(const MoeSortParams& p) {
  const I* ids = static_cast<const I*>(p.topk_ids);
  const int64_t pairs = p.tokens * p.topk;
  // Counting sort: histogram, exclusive scan, stable scatter. O(pairs + E), serial: at 6 slots
  // per token it moves a few hundred KB, far less than the gather that follows.
  std::vector<int64_t> next(static_cast<size_t>(p.num_experts), 0);
  for (int64_t e = 0; e < p.num_experts; ++e) p.counts[e] = 0;
  for (int64_t i = 0; i < pairs; ++i) {
    const int64_t e = static_cast<int64_t>(ids[i]);
    if (e < 0 || e >= p.num_experts) {
      throw std::invalid_argument(
          "topk_ids: expert id " + std::to_string(e) + " at flat index " + std::to_string(i) +
          " is outside [0, num_experts = " + std::to_string(p.num_experts) + ")");
    }
    ++p.counts[e];
  }
  for (int64_t e = 1; e < p.num_experts; ++e) next[e] = next[e - 1] + p.counts[e - 1];
  for (int64_t i = 0; i < pairs; ++i) {
    const int64_t row = next[static_cast<int64_t>(ids[i])]++;
    p.row_map[i] = row;
    p.source[row] = i;
  }
}

}  // namespace

void moe_gather(const MoeGatherParams& p) {
  dispatch_io(p.io_dtype, "src", [&](auto t) { gather_impl<decltype(t)>(p); });
}
void moe_combine(const MoeCombineParams& p) {
  dispatch_io(p.io_dtype, "src", [&](auto t) { combine_impl<decltype(t)>(p); });
}
void moe_combine_wgrad(const MoeCombineWgradParams& p) {
  dispatch_io(p.io_dtype, "src", [&](auto t) { combine_wgrad_impl<decltype(t)>(p); });
}
void moe_sort(const MoeSortParams& p) {
  if (p.id_dtype == DType::kInt32) return sort_impl<int32_t>(p);
  if (p.id_dtype == DType::kInt64) return sort_impl<int64_t>(p);
  throw std::invalid_argument(std::string("topk_ids: expected int32 or int64, got ") +
                              dtype_name(p.id_dtype));
}

}  // namespace nemocore::cpu::NEMOCORE_CPU_ISA
