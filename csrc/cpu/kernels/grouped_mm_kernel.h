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

// A strided io-typed matrix: element (i, j) is p[i * rs + j * cs].
template <typename T>
struct View {
  const T* p;
  int64_t rs, cs;
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
    if (a.rs == 1 || a.cs != 1) {
      // The rows of the panel sit side by side (a transposed): read each k's MR values at once.
      for (int64_t k = 0; k < kc; ++k) {
        const T* src = a.p + i0 * a.rs + k * a.cs;
        for (int64_t i = 0; i < MR; ++i) dst[k * MR + i] = i < mr ? to_acc<A>(src[i * a.rs]) : A(0);
      }
    } else {
      for (int64_t i = 0; i < MR; ++i) {
        if (i < mr) {
          const T* src = a.p + (i0 + i) * a.rs;
          for (int64_t k = 0; k < kc; ++k) dst[k * MR + i] = to_acc<A>(src[k]);
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
    pack_a<T, A>(mb, kc, View<T>{a.p + k0 * a.cs, a.rs, a.cs}, apack);
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
