// Applying a grammar's token bitmask to logits on the CPU (decoding.md 4.8).
//
// Logits are overwritten through their bit patterns: -inf has one pattern per width (fp32,
// fp64, and both 16-bit formats), so the kernel is typed by the unsigned integer of the
// element's width, not by the float type, and no value is converted. Per 32-token word: an
// all-ones word (every token allowed) is skipped, an all-zeros word filled, and any other word
// goes through a branch-free select loop that the compiler vectorises for each ISA (a blend
// per 8 or 16 lanes). Rows are independent and run in parallel on big batches.
#include <cstring>

#include "cpu/common/parallel.h"
#include "nemocore/token_bitmask.h"

namespace nemocore::cpu::NEMOCORE_CPU_ISA {
namespace {

template <typename U>
U neg_inf_bits(DType dtype) {
  switch (dtype) {
    case DType::kBFloat16: return U(0xFF80u);
    case DType::kFloat16: return U(0xFC00u);
    case DType::kFloat32: return U(0xFF800000u);
    default: return U(0xFFF0000000000000ull);
  }
}

// Tokens [32 * w, 32 * w + n) of a unit-stride row, n <= 32.
template <typename U>
inline void mask_word(U* x, uint32_t bits, int n, U neg) {
  if (n == 32 && bits == 0xFFFFFFFFu) return;
  if (bits == 0) {
    for (int j = 0; j < n; ++j) x[j] = neg;
    return;
  }
  if (n == 32) {
    for (int j = 0; j < 32; ++j) x[j] = ((bits >> j) & 1u) ? x[j] : neg;
  } else {
    for (int j = 0; j < n; ++j) x[j] = ((bits >> j) & 1u) ? x[j] : neg;
  }
}

template <typename U>
void mask_row(const TokenBitmaskParams& p, int64_t row, U neg) {
  U* x = static_cast<U*>(p.logits) + row * p.logits_row_stride;
  const uint32_t* mask = reinterpret_cast<const uint32_t*>(p.bitmask) + row * p.mask_row_stride;
  const int64_t words = ceil_div(p.vocab, 32);
  for (int64_t w = 0; w < words; ++w) {
    const uint32_t bits = w < p.mask_words ? mask[w] : 0u;  // past the mask: disallowed
    const int n = static_cast<int>(p.vocab - 32 * w < 32 ? p.vocab - 32 * w : 32);
    if (p.logits_col_stride == 1) {
      mask_word(x + 32 * w, bits, n, neg);
      continue;
    }
    for (int j = 0; j < n; ++j) {
      if (!((bits >> j) & 1u)) x[(32 * w + j) * p.logits_col_stride] = neg;
    }
  }
}

template <typename U>
void apply(const TokenBitmaskParams& p) {
  const U neg = neg_inf_bits<U>(p.dtype);
  // Memory-bound and short: one thread streams ~30-70 GB/s here, and on the dev VM a second
  // OpenMP thread made 16 x 128k and 64 x 128k fp32 8-30x slower. Threads only for huge batches.
  const int threads = double(p.num_rows) * double(p.vocab) < 3.2e7 ? 1 : p.num_threads;
  parallel_for(p.num_rows, threads,
               [&](int64_t i) { mask_row<U>(p, p.rows ? p.rows[i] : i, neg); });
}

}  // namespace

void apply_token_bitmask(const TokenBitmaskParams& p) {
  switch (dtype_size(p.dtype)) {
    case 2: apply<uint16_t>(p); break;
    case 4: apply<uint32_t>(p); break;
    default: apply<uint64_t>(p); break;
  }
}

}  // namespace nemocore::cpu::NEMOCORE_CPU_ISA
