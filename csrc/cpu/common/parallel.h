// One level of parallelism over independent work items.
//
// OpenMP, on purpose: nemocore imports torch before _C, so the dynamic loader resolves our
// libgomp.so.1 to the copy torch already loaded and both share one thread pool (two pools on
// the same cores would oversubscribe them). The caller passes torch.get_num_threads(), so a
// kernel uses exactly the threads torch would. Nested calls run serially.
#pragma once

#include <cstdint>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace nemocore::cpu {
// Internal linkage on purpose: this header is compiled into every ISA variant with that
// variant's flags, and with external linkage the linker would keep one copy of each function
// that was not inlined (say the baseline one) for all variants, silently running scalar code in
// the AVX2 kernels.
namespace {

// Calls fn(i) for i in [0, n). Items may be uneven, so they are handed out one at a time.
template <typename F>
void parallel_for(int64_t n, int num_threads, const F& fn) {
  if (n <= 0) return;
#ifdef _OPENMP
  const int threads = num_threads < 1 ? 1 : (n < num_threads ? static_cast<int>(n) : num_threads);
  if (threads > 1 && !omp_in_parallel()) {
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (int64_t i = 0; i < n; ++i) fn(i);
    return;
  }
#else
  (void)num_threads;
#endif
  for (int64_t i = 0; i < n; ++i) fn(i);
}

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace
}  // namespace nemocore::cpu
