// Grammar-constrained decoding: applying a token bitmask to logits (decoding.md 4.8).
// Bit j of word w of a mask row is set iff token 32*w + j is allowed (xgrammar's layout);
// disallowed tokens, and tokens past the mask's 32*mask_words, get -inf.
#pragma once

#include <cstdint>

#include "nemocore/common.h"

namespace nemocore {

struct TokenBitmaskParams {
  void* logits = nullptr;  // (batch, vocab) of dtype, element strides below
  DType dtype = DType::kFloat32;
  int64_t vocab = 0;
  int64_t logits_row_stride = 0;
  int64_t logits_col_stride = 1;
  const int32_t* bitmask = nullptr;  // (batch, mask_words), rows contiguous
  int64_t mask_words = 0;
  int64_t mask_row_stride = 0;
  // Rows to mask: rows[i] for i < num_rows (row r of logits uses row r of the mask), or
  // 0..num_rows-1 when rows is null.
  const int64_t* rows = nullptr;
  int64_t num_rows = 0;
  int num_threads = 0;   // CPU: 0 = all cores
  uintptr_t stream = 0;  // CUDA: the caller's stream
};

namespace cpu {
void apply_token_bitmask(const TokenBitmaskParams& p);
}
namespace cuda {
void apply_token_bitmask(const TokenBitmaskParams& p);
}

}  // namespace nemocore
