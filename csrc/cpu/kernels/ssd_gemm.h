// A small register-blocked GEMM for the chunk products of the SSD kernels (Q x Q, Q x N, N x P
// blocks, all in L2). Included only by sources compiled per ISA level.
//
// c (M x Nc, row-major, ldc) += a (M x K) * b (K x Nc, row-major, ldb), where a's element
// (i, k) is a[i * a_rs + k * a_ks], so a transposed operand needs no copy: its elements are
// broadcast one at a time. The micro-kernel keeps an MR x (2 vectors) block of c in registers
// (6 x 16 floats with AVX2: 12 of the 16 ymm registers) and streams rows of b. GCC's vector
// extensions give the compiler the vector width of the ISA level being compiled.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

namespace nemocore::cpu::NEMOCORE_CPU_ISA::ssd {

// Which k take part for the rows [i0, i0 + mr) of a block: all, k < i0 + mr (a lower
// triangular a), or k >= i0 (an upper triangular a). Entries of the triangle's other side in
// the touched range must be zero in a.
enum class Tri { kFull, kLower, kUpper };

#if defined(__AVX512F__)
constexpr int kVecBytes = 64;
#else
constexpr int kVecBytes = 32;
#endif

template <typename A>
struct Vec {
  static constexpr int kLanes = kVecBytes / sizeof(A);
  typedef A type __attribute__((vector_size(kVecBytes)));
};

template <typename V, typename A>
inline V vload(const A* p) {
  V v;
  std::memcpy(&v, p, sizeof(V));
  return v;
}
template <typename V, typename A>
inline void vstore(A* p, V v) {
  std::memcpy(p, &v, sizeof(V));
}

constexpr int kMR = 6;

template <typename A, int MR>
inline void micro_kernel(int64_t k0, int64_t k1, const A* a, int64_t a_rs, int64_t a_ks, const A* b,
                         int64_t ldb, A* c, int64_t ldc) {
  using V = typename Vec<A>::type;
  constexpr int W = Vec<A>::kLanes;
  V acc0[MR], acc1[MR];
  for (int i = 0; i < MR; ++i) {
    acc0[i] = vload<V>(c + i * ldc);
    acc1[i] = vload<V>(c + i * ldc + W);
  }
  for (int64_t k = k0; k < k1; ++k) {
    const V b0 = vload<V>(b + k * ldb), b1 = vload<V>(b + k * ldb + W);
    const A* ak = a + k * a_ks;
    for (int i = 0; i < MR; ++i) {
      const A ai = ak[i * a_rs];
      acc0[i] += ai * b0;
      acc1[i] += ai * b1;
    }
  }
  for (int i = 0; i < MR; ++i) {
    vstore(c + i * ldc, acc0[i]);
    vstore(c + i * ldc + W, acc1[i]);
  }
}

// Columns left over after the 2-vector blocks: plain loops.
template <typename A>
inline void edge_kernel(int64_t mr, int64_t nc, int64_t k0, int64_t k1, const A* a, int64_t a_rs,
                        int64_t a_ks, const A* b, int64_t ldb, A* c, int64_t ldc) {
  for (int64_t i = 0; i < mr; ++i) {
    for (int64_t k = k0; k < k1; ++k) {
      const A ai = a[i * a_rs + k * a_ks];
      for (int64_t j = 0; j < nc; ++j) c[i * ldc + j] += ai * b[k * ldb + j];
    }
  }
}

template <typename A, int MR>
inline void row_block(int64_t Nc, int64_t k0, int64_t k1, const A* a, int64_t a_rs, int64_t a_ks,
                      const A* b, int64_t ldb, A* c, int64_t ldc) {
  constexpr int64_t NR = 2 * Vec<A>::kLanes;
  int64_t j = 0;
  for (; j + NR <= Nc; j += NR) micro_kernel<A, MR>(k0, k1, a, a_rs, a_ks, b + j, ldb, c + j, ldc);
  if (j < Nc) edge_kernel<A>(MR, Nc - j, k0, k1, a, a_rs, a_ks, b + j, ldb, c + j, ldc);
}

template <typename A>
void gemm_acc(int64_t M, int64_t Nc, int64_t K, const A* a, int64_t a_rs, int64_t a_ks, const A* b,
              int64_t ldb, A* c, int64_t ldc, Tri tri = Tri::kFull) {
  for (int64_t i0 = 0; i0 < M; i0 += kMR) {
    const int64_t mr = std::min<int64_t>(kMR, M - i0);
    const int64_t k0 = tri == Tri::kUpper ? i0 : 0;
    const int64_t k1 = tri == Tri::kLower ? std::min(K, i0 + mr) : K;
    const A* ai = a + i0 * a_rs;
    A* ci = c + i0 * ldc;
    switch (mr) {
      case 6: row_block<A, 6>(Nc, k0, k1, ai, a_rs, a_ks, b, ldb, ci, ldc); break;
      case 5: row_block<A, 5>(Nc, k0, k1, ai, a_rs, a_ks, b, ldb, ci, ldc); break;
      case 4: row_block<A, 4>(Nc, k0, k1, ai, a_rs, a_ks, b, ldb, ci, ldc); break;
      case 3: row_block<A, 3>(Nc, k0, k1, ai, a_rs, a_ks, b, ldb, ci, ldc); break;
      case 2: row_block<A, 2>(Nc, k0, k1, ai, a_rs, a_ks, b, ldb, ci, ldc); break;
      default: row_block<A, 1>(Nc, k0, k1, ai, a_rs, a_ks, b, ldb, ci, ldc); break;
    }
  }
}

}  // namespace nemocore::cpu::NEMOCORE_CPU_ISA::ssd
