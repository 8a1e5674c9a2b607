// Grouped GEMMs for MoE on the CPU (kernels.md 3.1, 3.4): the M-grouped product
// out[rows of e] = a[rows of e] @ b[e] and the K-grouped weight gradient
// out[e] = x[rows of e]^T @ y[rows of e].
//
// Straightforward loops in the compute type, parallel over (expert, row block) work items.
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

template <typename T>
using AccOf = std::conditional_t<std::is_same_v<T, double>, double, float>;

constexpr int64_t kRowBlock = 16;

template <typename T>
void grouped_mm_impl(const GroupedMmParams& p) {
  using A = AccOf<T>;
  const T* a = static_cast<const T*>(p.a);
  const T* b = static_cast<const T*>(p.b);
  T* out = static_cast<T*>(p.out);
  std::vector<int64_t> items;  // (expert, first row) pairs
  for (int64_t e = 0; e < p.num_experts; ++e) {
    for (int64_t r = p.offsets[e]; r < p.offsets[e + 1]; r += kRowBlock) {
      items.push_back(e), items.push_back(r);
    }
  }
  parallel_for(static_cast<int64_t>(items.size() / 2), p.num_threads, [&](int64_t item) {
    const int64_t e = items[2 * item], r0 = items[2 * item + 1];
    const int64_t r1 = std::min(r0 + kRowBlock, p.offsets[e + 1]);
    const T* be = b + e * p.b_expert_stride;
    std::vector<A> brow(static_cast<size_t>(p.n)), acc(static_cast<size_t>(p.n));
    for (int64_t r = r0; r < r1; ++r) {
      std::fill(acc.begin(), acc.end(), A(0));
      for (int64_t k = 0; k < p.k; ++k) {
        const A av = to_acc<A>(a[r * p.a_row_stride + k * p.a_col_stride]);
        load_row(be + k * p.b_k_stride, p.b_n_stride, p.n, brow.data());
        for (int64_t n = 0; n < p.n; ++n) acc[n] += av * brow[n];
      }
      store_row(acc.data(), p.n, out + r * p.n, 1);
    }
  });
}

template <typename T>
void wgrad_impl(const GroupedMmWgradParams& p) {
  using A = AccOf<T>;
  const T* x = static_cast<const T*>(p.x);
  const T* y = static_cast<const T*>(p.y);
  T* out = static_cast<T*>(p.out);
  parallel_for(p.num_experts * p.m, p.num_threads, [&](int64_t item) {
    const int64_t e = item / p.m, i = item % p.m;
    std::vector<A> acc(static_cast<size_t>(p.n), A(0)), yrow(static_cast<size_t>(p.n));
    for (int64_t r = p.offsets[e]; r < p.offsets[e + 1]; ++r) {
      const A xv = to_acc<A>(x[r * p.x_row_stride + i * p.x_col_stride]);
      load_row(y + r * p.y_row_stride, p.y_col_stride, p.n, yrow.data());
      for (int64_t n = 0; n < p.n; ++n) acc[n] += xv * yrow[n];
    }
    store_row(acc.data(), p.n, out + (e * p.m + i) * p.n, 1);
  });
}

template <typename Fn>
void by_io_dtype(DType t, const Fn& fn) {
  switch (t) {
    case DType::kFloat32: return fn(float{});
    case DType::kFloat64: return fn(double{});
    case DType::kBFloat16: return fn(bf16{});
    case DType::kFloat16: return fn(f16{});
    default: throw std::invalid_argument(std::string("unsupported dtype ") + dtype_name(t));
  }
}

}  // namespace

void grouped_mm(const GroupedMmParams& p) {
  by_io_dtype(p.io_dtype, [&](auto t) { grouped_mm_impl<decltype(t)>(p); });
}
void grouped_mm_wgrad(const GroupedMmWgradParams& p) {
  by_io_dtype(p.io_dtype, [&](auto t) { wgrad_impl<decltype(t)>(p); });
}

}  // namespace nemocore::cpu::NEMOCORE_CPU_ISA
