// The packed, register-blocked GEMM behind the CPU grouped GEMMs (grouped_mm.cpp). Included
// only by sources compiled per ISA level.
//
// block_gemm computes one output block, out (mb x ncols, row stride ldo) = a (mb x K) @
// b (K x ncols), for io-typed operands with arbitrary element strides, in the compute type A.
// The caller's work items are BLIS's outer loops (experts, row blocks of at most a few hundred
// rows, column ranges); inside a block:
//
//   for each KC slice of K:          pack a's mb x KC block into MR-tall panels (L2), once for
//                                    all the block's columns (an expert has few rows, b is wide)
//     for each nb-wide column tile:  pack b's KC x nb slice into NR-wide panels (L2), while
//                                    prefetching the next slice's rows of b from DRAM
//       for each NR panel of b:      its KC x NR panel stays in L1 ...
//         for each MR panel of a:    ... while the MR x KC panels of a stream from L2:
//           MR x NR micro-kernel:    MR x 2 vector accumulators, one FMA per (row, vector, k)
//
// With ~48 rows per expert (Nemotron-3-Nano, 1024 tokens, top-6) every element of b[e] feeds
// only ~48 FMAs, so streaming b from DRAM costs about as much as the FMAs unless the next
// slice is prefetched during the current one; packing it (and a) is what lets the micro-kernel
// run at near-peak on full, contiguous, zero-padded panels.
//
// Packing makes every operand layout (b normal or transposed, a transposed for the weight
// gradient, any strides, bf16/f16 io) look the same to the micro-kernel, and zero-pads the edge
// panels so it only ever runs on full tiles. With fp32/fp64 io the micro-kernel accumulates
// straight into out (edge tiles go through a small temporary); 16-bit io accumulates in an A
// buffer and rounds once at the end. Every element's reduction order is fixed (k ascending
// within a KC slice, slices in order), so results do not depend on how blocks map to threads.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <type_traits>

#include "cpu/common/convert.h"

#if defined(__AVX2__)
#include <immintrin.h>
#endif

namespace nemocore::cpu::NEMOCORE_CPU_ISA::gmm {

// Register block: two vectors wide, MR rows tall, so MR x 2 accumulators plus two b vectors and
// one broadcast fit in the register file (AVX-512: 24 + 3 of 32 zmm; AVX2: 12 + 3 of 16 ymm;
// SSE2: 12 + 3 of 16 xmm).
#if defined(__AVX512F__)
constexpr int kVecBytes = 64;
constexpr int kMR = 12;
#elif defined(__AVX__)
constexpr int kVecBytes = 32;
constexpr int kMR = 6;
#else
constexpr int kVecBytes = 16;
constexpr int kMR = 6;
#endif

// Cache blocking: a KC x NR panel of b (16 KiB in fp32 with AVX2) stays in L1, the packed
// KC x nb slice of b and mb x KC block of a share L2. 128..384 measured within noise.
constexpr int64_t kKC = 256;

template <typename A>
struct Tile {
  typedef A V __attribute__((vector_size(kVecBytes)));
  static constexpr int W = kVecBytes / static_cast<int>(sizeof(A));
  static constexpr int MR = kMR;
  static constexpr int NR = 2 * W;
};

// Widest block of columns a work item should cover: its packed KC x nb slice of b stays within
// about a quarter of a typical L2.
template <typename A>
constexpr int64_t max_block_cols() {
  return 256 * 4 / static_cast<int64_t>(sizeof(A));
}

inline int64_t round_up(int64_t a, int64_t b) { return (a + b - 1) / b * b; }

// Splits [0, n) into equal pieces of at most max_piece, each a multiple of `multiple` (but the
// last): fewer ragged edges than fixed-size pieces.
inline int64_t even_piece(int64_t n, int64_t max_piece, int64_t multiple) {
  const int64_t pieces = (n + max_piece - 1) / max_piece;
  return round_up((n + pieces - 1) / pieces, multiple);
}

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

// c (MR x NR, row stride ldc) = (accumulate ? c : 0) + ap (MR x kc panel) @ bp (kc x NR panel).
// The panel sum starts from zero and is added to c once, so an element's rounding sequence is
// the same whichever C buffer a block accumulates in.
template <typename A, bool kAccumulate>
inline void micro_kernel(int64_t kc, const A* __restrict ap, const A* __restrict bp,
                         A* __restrict c, int64_t ldc) {
  using V = typename Tile<A>::V;
  constexpr int W = Tile<A>::W, MR = Tile<A>::MR, NR = Tile<A>::NR;
  V c0[MR], c1[MR];
  for (int i = 0; i < MR; ++i) c0[i] = c1[i] = V{};
  for (int64_t k = 0; k < kc; ++k, ap += MR, bp += NR) {
    const V b0 = vload<V>(bp), b1 = vload<V>(bp + W);
    for (int i = 0; i < MR; ++i) {
      c0[i] += ap[i] * b0;
      c1[i] += ap[i] * b1;
    }
  }
  for (int i = 0; i < MR; ++i) {
    if (kAccumulate) {
      c0[i] = vload<V>(c + i * ldc) + c0[i];
      c1[i] = vload<V>(c + i * ldc + W) + c1[i];
    }
    vstore(c + i * ldc, c0[i]);
    vstore(c + i * ldc + W, c1[i]);
  }
}

// A tile with mr < MR rows or nr < NR columns inside c: run the full tile on a temporary.
template <typename A>
inline void edge_tile(int64_t kc, const A* ap, const A* bp, A* c, int64_t ldc, int64_t mr,
                      int64_t nr, bool accumulate) {
  constexpr int MR = Tile<A>::MR, NR = Tile<A>::NR;
  alignas(64) A tmp[MR * NR] = {};
  if (accumulate) {
    for (int64_t i = 0; i < mr; ++i) std::memcpy(tmp + i * NR, c + i * ldc, nr * sizeof(A));
    micro_kernel<A, true>(kc, ap, bp, tmp, NR);
  } else {
    micro_kernel<A, false>(kc, ap, bp, tmp, NR);
  }
  for (int64_t i = 0; i < mr; ++i) std::memcpy(c + i * ldc, tmp + i * NR, nr * sizeof(A));
}

// A strided io-typed matrix: element (i, j) is p[i * rs + j * cs], or p[rows[i] * rs + j * cs]
// when the rows are gathered through an index (only a's view of grouped_mm has one).
template <typename T>
struct View {
  const T* p;
  int64_t rs, cs;
  const int64_t* rows = nullptr;

  const T* row(int64_t i) const { return p + (rows != nullptr ? rows[i] : i) * rs; }
};

// N contiguous elements widened to A; __restrict so the compiler vectorises the copy.
template <int64_t N, typename T, typename A>
inline void convert_run(const T* __restrict src, A* __restrict dst) {
  if constexpr (std::is_same_v<T, A>) {
    std::memcpy(dst, src, N * sizeof(A));
  } else {
    for (int64_t j = 0; j < N; ++j) dst[j] = to_acc<A>(src[j]);
  }
}

// b[e] is read once, in short runs (one row of a column block) a page apart, which the hardware
// prefetchers do not follow across pages: ask for the run kPrefetchAhead rows ahead.
constexpr int64_t kPrefetchAhead = 8;

template <typename T>
inline void prefetch_span(const T* p, int64_t count) {
  const char* c = reinterpret_cast<const char*>(p);
  const int64_t bytes = count * static_cast<int64_t>(sizeof(T));
  for (int64_t off = 0; off < bytes; off += 64) __builtin_prefetch(c + off);
}

#if defined(__AVX2__)
// Eight contiguous io-typed elements widened to fp32 (exactly as to_acc does).
template <typename T, typename A>
constexpr bool kHasLoad8 =
    std::is_same_v<A, float> &&
    (std::is_same_v<T, float> || std::is_same_v<T, bf16> || std::is_same_v<T, f16>);

template <typename T>
inline __m256 load8(const T* p) {
  if constexpr (std::is_same_v<T, float>) {
    return _mm256_loadu_ps(p);
  } else if constexpr (std::is_same_v<T, bf16>) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  } else {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
}

// b's kc x nb block when its columns are contiguous (b.rs == 1, trans_b): eight columns at a
// time, eight k values of each loaded at once and transposed in registers, so the panels are
// written a vector per k. Edges (k past a multiple of 8, a ragged last group) go element-wise.
template <typename T>
void pack_b_transposed(int64_t kc, int64_t nb, View<T> b, float* dst) {
  constexpr int64_t NR = Tile<float>::NR;
  static_assert(NR % 8 == 0, "panels hold whole groups of 8 columns");
  const int64_t panels = (nb + NR - 1) / NR, kc8 = kc / 8 * 8;
  for (int64_t jp = 0; jp < panels; ++jp) {
    for (int64_t g = 0; g < NR; g += 8) {
      const int64_t col = jp * NR + g;
      float* d = dst + jp * kc * NR + g;
      const T* src = b.p + col * b.cs;
      if (col + 8 > nb) {
        for (int64_t j = 0; j < 8; ++j) {
          if (col + j < nb) {
            const T* s = src + j * b.cs;
            for (int64_t k = 0; k < kc; ++k) d[k * NR + j] = to_acc<float>(s[k]);
          } else {
            for (int64_t k = 0; k < kc; ++k) d[k * NR + j] = 0.0f;
          }
        }
        continue;
      }
      for (int64_t j = 0; j < 8 && col + kPrefetchAhead + j < nb; ++j) {
        prefetch_span(src + (kPrefetchAhead + j) * b.cs, kc);
      }
      const T* s0 = src;
      const T* s1 = src + b.cs;
      const T* s2 = src + 2 * b.cs;
      const T* s3 = src + 3 * b.cs;
      const T* s4 = src + 4 * b.cs;
      const T* s5 = src + 5 * b.cs;
      const T* s6 = src + 6 * b.cs;
      const T* s7 = src + 7 * b.cs;
      for (int64_t k = 0; k < kc8; k += 8) {
        const __m256 r0 = load8(s0 + k), r1 = load8(s1 + k), r2 = load8(s2 + k), r3 = load8(s3 + k),
                     r4 = load8(s4 + k), r5 = load8(s5 + k), r6 = load8(s6 + k), r7 = load8(s7 + k);
        const __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
        const __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
        const __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
        const __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
        const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
        const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
        const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
        const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
        float* o = d + k * NR;
        _mm256_storeu_ps(o + 0 * NR, _mm256_permute2f128_ps(u0, u4, 0x20));
        _mm256_storeu_ps(o + 1 * NR, _mm256_permute2f128_ps(u1, u5, 0x20));
        _mm256_storeu_ps(o + 2 * NR, _mm256_permute2f128_ps(u2, u6, 0x20));
        _mm256_storeu_ps(o + 3 * NR, _mm256_permute2f128_ps(u3, u7, 0x20));
        _mm256_storeu_ps(o + 4 * NR, _mm256_permute2f128_ps(u0, u4, 0x31));
        _mm256_storeu_ps(o + 5 * NR, _mm256_permute2f128_ps(u1, u5, 0x31));
        _mm256_storeu_ps(o + 6 * NR, _mm256_permute2f128_ps(u2, u6, 0x31));
        _mm256_storeu_ps(o + 7 * NR, _mm256_permute2f128_ps(u3, u7, 0x31));
      }
      for (int64_t k = kc8; k < kc; ++k) {
        float* o = d + k * NR;
        o[0] = to_acc<float>(s0[k]), o[1] = to_acc<float>(s1[k]);
        o[2] = to_acc<float>(s2[k]), o[3] = to_acc<float>(s3[k]);
        o[4] = to_acc<float>(s4[k]), o[5] = to_acc<float>(s5[k]);
        o[6] = to_acc<float>(s6[k]), o[7] = to_acc<float>(s7[k]);
      }
    }
  }
}
#endif

// b's kc x nb block into NR-wide panels: dst[panel][k][j], zero past nb.
template <typename T, typename A>
void pack_b(int64_t kc, int64_t nb, View<T> b, A* dst) {
  constexpr int64_t NR = Tile<A>::NR;
  const int64_t panels = (nb + NR - 1) / NR, full = nb / NR;
  if (b.cs == 1) {
    // Rows of b are contiguous: walk each row once across all panels.
    for (int64_t k = 0; k < kc; ++k) {
      const T* src = b.p + k * b.rs;
      if (k + kPrefetchAhead < kc) prefetch_span(src + kPrefetchAhead * b.rs, nb);
      A* d = dst + k * NR;
      for (int64_t jp = 0; jp < full; ++jp) convert_run<NR>(src + jp * NR, d + jp * kc * NR);
      if (full < panels) {
        for (int64_t j = 0; j < NR; ++j) {
          const int64_t col = full * NR + j;
          d[full * kc * NR + j] = col < nb ? to_acc<A>(src[col]) : A(0);
        }
      }
    }
    return;
  }
#if defined(__AVX2__)
  if constexpr (kHasLoad8<T, A>) {
    if (b.rs == 1) {
      pack_b_transposed(kc, nb, b, dst);
      return;
    }
  }
#endif
  // Columns of b are (likely) contiguous, as with trans_b: walk each column once.
  for (int64_t jp = 0; jp < panels; ++jp) {
    A* d = dst + jp * kc * NR;
    for (int64_t j = 0; j < NR; ++j) {
      const int64_t col = jp * NR + j;
      if (col < nb) {
        const T* src = b.p + col * b.cs;
        if (col + kPrefetchAhead < nb) prefetch_span(src + kPrefetchAhead * b.cs, kc);
        for (int64_t k = 0; k < kc; ++k) d[k * NR + j] = to_acc<A>(src[k * b.rs]);
      } else {
        for (int64_t k = 0; k < kc; ++k) d[k * NR + j] = A(0);
      }
    }
  }
}

// a's mc x kc block into MR-tall panels: dst[panel][k][i], zero past mc.
template <typename T, typename A>
void pack_a(int64_t mc, int64_t kc, View<T> a, A* dst) {
  constexpr int64_t MR = Tile<A>::MR;
  for (int64_t i0 = 0; i0 < mc; i0 += MR, dst += kc * MR) {
    const int64_t mr = std::min(MR, mc - i0);
    if (a.rows == nullptr && (a.rs == 1 || a.cs != 1)) {
      // The rows of the panel sit side by side (a transposed): read each k's MR values at once.
      for (int64_t k = 0; k < kc; ++k) {
        const T* src = a.p + i0 * a.rs + k * a.cs;
        for (int64_t i = 0; i < MR; ++i) dst[k * MR + i] = i < mr ? to_acc<A>(src[i * a.rs]) : A(0);
      }
    } else {
      for (int64_t i = 0; i < MR; ++i) {
        if (i < mr) {
          const T* src = a.row(i0 + i);
          if (a.cs == 1) {
            for (int64_t k = 0; k < kc; ++k) dst[k * MR + i] = to_acc<A>(src[k]);
          } else {  // gathered rows of a column-major a
            for (int64_t k = 0; k < kc; ++k) dst[k * MR + i] = to_acc<A>(src[k * a.cs]);
          }
        } else {
          for (int64_t k = 0; k < kc; ++k) dst[k * MR + i] = A(0);
        }
      }
    }
  }
}

// A per-thread scratch buffer that only grows; 64-byte aligned for the vector loads.
template <typename A>
A* scratch(int slot, int64_t count) {
  struct Buffer {
    A* p = nullptr;
    int64_t size = 0;
    ~Buffer() { std::free(p); }
  };
  thread_local Buffer buffers[3];
  Buffer& b = buffers[slot];
  if (b.size < count) {
    std::free(b.p);
    const size_t bytes = static_cast<size_t>(round_up(count * static_cast<int64_t>(sizeof(A)), 64));
    b.p = static_cast<A*>(std::aligned_alloc(64, bytes));
    if (b.p == nullptr) throw std::bad_alloc();
    b.size = count;
  }
  return b.p;
}

// The rows of a b block that the next pack_b will read, prefetched into L2 a few rows per
// micro-kernel call so the DRAM reads overlap the FMAs instead of stalling the pack.
template <typename T>
struct NextPanel {
  const T* p = nullptr;
  int64_t rows = 0, rs = 0, run = 0;  // run: elements per row, contiguous
  int64_t done = 0;

  void step(int64_t count) {
    for (; count > 0 && done < rows; --count, ++done) {
      const char* c = reinterpret_cast<const char*>(p + done * rs);
      const int64_t bytes = run * static_cast<int64_t>(sizeof(T));
      for (int64_t off = 0; off < bytes; off += 64) __builtin_prefetch(c + off, 0, 2);
    }
  }
};

// The tiles of one KC slice: c[0:mb, 0:nb] (+)= apack (mb x kc) @ bpack (kc x nb).
template <typename A, typename T>
void slice_tiles(int64_t mb, int64_t nb, int64_t kc, const A* apack, const A* bpack, A* c,
                 int64_t ldc, bool acc, NextPanel<T>& next) {
  constexpr int64_t MR = Tile<A>::MR, NR = Tile<A>::NR;
  const int64_t calls = ((mb + MR - 1) / MR) * ((nb + NR - 1) / NR);
  const int64_t per_call = (next.rows + calls - 1) / calls;
  for (int64_t j = 0; j < nb; j += NR) {
    const A* bp = bpack + j * kc;
    const int64_t nr = std::min(NR, nb - j);
    for (int64_t i = 0; i < mb; i += MR) {
      const A* ap = apack + i * kc;
      A* ct = c + i * ldc + j;
      const int64_t mr = std::min(MR, mb - i);
      if (mr == MR && nr == NR) {
        if (acc) {
          micro_kernel<A, true>(kc, ap, bp, ct, ldc);
        } else {
          micro_kernel<A, false>(kc, ap, bp, ct, ldc);
        }
      } else {
        edge_tile<A>(kc, ap, bp, ct, ldc, mr, nr, acc);
      }
      next.step(per_call);
    }
  }
}

// The b block after (k0, j0) in block_gemm's order, as rows of contiguous runs (rows of b, or
// columns when b is stored transposed); none after the last.
template <typename T>
NextPanel<T> next_panel(View<T> b, int64_t K, int64_t ncols, int64_t nb, int64_t k0, int64_t j0) {
  NextPanel<T> next;
  if (j0 + nb < ncols) {
    j0 += nb;
  } else if (k0 + kKC < K) {
    k0 += kKC, j0 = 0;
  } else {
    return next;
  }
  const int64_t kc = std::min(kKC, K - k0), nbj = std::min(nb, ncols - j0);
  next.p = b.p + k0 * b.rs + j0 * b.cs;
  if (b.cs == 1) {
    next.rows = kc, next.rs = b.rs, next.run = nbj;
  } else if (b.rs == 1) {
    next.rows = nbj, next.rs = b.cs, next.run = kc;
  }
  return next;
}

// out (mb x ncols, row stride ldo, contiguous rows) = a (mb x K) @ b (K x ncols). The caller
// keeps mb small enough (a few hundred rows) for the packed mb x KC block of a to sit in L2.
template <typename T, typename A>
void block_gemm(int64_t mb, int64_t ncols, int64_t K, View<T> a, View<T> b, T* out, int64_t ldo) {
  constexpr int64_t MR = Tile<A>::MR, NR = Tile<A>::NR;
  if (mb <= 0 || ncols <= 0) return;
  if (K <= 0) {
    for (int64_t i = 0; i < mb; ++i) {
      for (int64_t j = 0; j < ncols; ++j) out[i * ldo + j] = from_acc<T, A>(A(0));
    }
    return;
  }
  const int64_t nb = even_piece(ncols, max_block_cols<A>(), NR), kc_max = std::min(K, kKC);
  A* bpack = scratch<A>(0, kc_max * nb);
  A* apack = scratch<A>(1, kc_max * round_up(mb, MR));
  // Where the products accumulate: out itself when it holds A, else an A buffer (padded to
  // whole tiles, so no edge tiles) rounded into out at the end.
  constexpr bool kDirect = std::is_same_v<T, A>;
  A* c = nullptr;
  int64_t ldc = 0, c_rows = mb, c_cols = ncols;
  if constexpr (kDirect) {
    c = out, ldc = ldo;
  } else {
    c_rows = round_up(mb, MR), c_cols = ldc = round_up(ncols, NR);
    c = scratch<A>(2, c_rows * ldc);
  }
  // a's block is packed once per KC slice and serves every column block of the item.
  for (int64_t k0 = 0; k0 < K; k0 += kKC) {
    const int64_t kc = std::min(kKC, K - k0);
    pack_a<T, A>(mb, kc, View<T>{a.p + k0 * a.cs, a.rs, a.cs, a.rows}, apack);
    for (int64_t j0 = 0; j0 < ncols; j0 += nb) {
      const int64_t nbj = std::min(nb, ncols - j0);
      pack_b<T, A>(kc, nbj, View<T>{b.p + k0 * b.rs + j0 * b.cs, b.rs, b.cs}, bpack);
      NextPanel<T> next = next_panel(b, K, ncols, nb, k0, j0);
      slice_tiles<A, T>(c_rows, std::min(nb, c_cols - j0), kc, apack, bpack, c + j0, ldc, k0 > 0,
                        next);
    }
  }
  if constexpr (!kDirect) {
    for (int64_t i = 0; i < mb; ++i) store_row(c + i * ldc, ncols, out + i * ldo, 1);
  }
}

}  // namespace nemocore::cpu::NEMOCORE_CPU_ISA::gmm
