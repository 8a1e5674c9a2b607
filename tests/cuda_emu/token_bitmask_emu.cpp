// Host test of the CUDA token bitmask kernel through the emulator (emu.h): the real source of
// csrc/cuda/token_bitmask.cu runs on awkward shapes (vocab 1, 31, 33, partial blocks; masks
// narrower and wider than the logits; row subsets; column stride 2; every element width) against
// a plain loop written from nemocore/token_bitmask.h. Gaps between strided elements and the
// rows not selected must keep their values.
// Build: see tests/test_cuda_emulated.py. Run with any argument for the quick suite.
#include "emu.h"
#include "cuda/token_bitmask.cu"

#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

using namespace nemocore;

static std::mt19937_64 rng(20260);
static int failures = 0;
static int cases = 0;

// One 32-bit mask word: mostly random, sometimes all allowed or all disallowed.
static uint32_t random_word() {
  switch (rng() % 4) {
    case 0: return 0xFFFFFFFFu;
    case 1: return 0u;
    default: return static_cast<uint32_t>(rng());
  }
}

template <typename U>
void check_case(DType dtype, U neg, int64_t batch, int64_t vocab, int64_t mask_words,
                int64_t col_stride, bool subset) {
  ++cases;
  const int64_t row_stride = vocab * col_stride + 3;
  std::vector<U> logits(batch * row_stride + 5);
  for (auto& v : logits) v = static_cast<U>(rng());
  for (auto& v : logits)
    if (v == neg) v = U(1);
  std::vector<int32_t> mask(batch * mask_words);
  for (auto& w : mask) w = static_cast<int32_t>(random_word());
  std::vector<int64_t> rows;
  for (int64_t r = batch - 1; r >= 0; r -= 2) rows.push_back(r);  // reversed, every other row
  const std::vector<U> before = logits;

  TokenBitmaskParams p;
  p.logits = logits.data(), p.dtype = dtype, p.vocab = vocab;
  p.logits_row_stride = row_stride, p.logits_col_stride = col_stride;
  p.bitmask = mask.data(), p.mask_words = mask_words, p.mask_row_stride = mask_words;
  p.rows = subset ? rows.data() : nullptr;
  p.num_rows = subset ? static_cast<int64_t>(rows.size()) : batch;
  cuda::apply_token_bitmask(p);

  std::vector<char> masked_row(batch, subset ? 0 : 1);
  for (int64_t r : rows)
    if (subset) masked_row[r] = 1;
  for (size_t k = 0; k < logits.size(); ++k) {
    const int64_t r = static_cast<int64_t>(k) / row_stride, off = static_cast<int64_t>(k) % row_stride;
    U want = before[k];
    if (r < batch && masked_row[r] && off % col_stride == 0 && off / col_stride < vocab) {
      const int64_t t = off / col_stride;
      const bool allowed =
          t / 32 < mask_words && ((static_cast<uint32_t>(mask[r * mask_words + t / 32]) >> (t % 32)) & 1u);
      if (!allowed) want = neg;
    }
    if (logits[k] != want) {
      if (failures < 10)
        printf("FAIL width=%zu batch=%ld vocab=%ld words=%ld stride=%ld subset=%d at %zu\n",
               sizeof(U), long(batch), long(vocab), long(mask_words), long(col_stride), int(subset), k);
      ++failures;
      return;
    }
  }
}

template <typename U>
void suite(DType dtype, U neg, bool quick) {
  const int64_t vocabs[] = {1, 31, 32, 33, 100, 8191, 8193, 20000};
  for (int64_t vocab : vocabs) {
    const int64_t words = (vocab + 31) / 32;
    for (int64_t mask_words : {words, words > 1 ? words - 1 : int64_t(0), words + 2}) {
      for (int64_t stride : {int64_t(1), int64_t(2)}) {
        for (bool subset : {false, true}) {
          check_case<U>(dtype, neg, 1, vocab, mask_words, stride, subset);
          if (!quick || vocab < 1000) check_case<U>(dtype, neg, 4, vocab, mask_words, stride, subset);
        }
      }
    }
  }
}

int main(int argc, char** argv) {
  const bool quick = argc > 1;
  suite<uint16_t>(DType::kBFloat16, 0xFF80u, quick);
  suite<uint16_t>(DType::kFloat16, 0xFC00u, quick);
  suite<uint32_t>(DType::kFloat32, 0xFF800000u, quick);
  suite<uint64_t>(DType::kFloat64, 0xFFF0000000000000ull, quick);
  printf("%s (%d failures, %d cases, %ld launches)\n", failures ? "FAILED" : "OK", failures, cases,
         emu_launches);
  return failures ? 1 : 0;
}
