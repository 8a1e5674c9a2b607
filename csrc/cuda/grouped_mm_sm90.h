// The Hopper (sm_90a, wgmma) grouped GEMM of grouped_mm_sm90.cu, called by grouped_mm.cu's
// dispatch when the device is compute capability 9.0 and the operands are eligible.
#pragma once

#include <cstdint>

#include "nemocore/moe.h"

namespace nemocore::cuda {

// True for bf16/fp16 operands that are both K-major (a's column stride and b's k stride are 1),
// with K and every other stride a multiple of 8 elements and 16-byte aligned pointers.
bool grouped_mm_sm90_supports(const GroupedMmParams& p);

// out = the M-grouped GEMM of `p` on wgmma (with p.a_rows: the gathered rows of a). Throws if
// not supported.
void grouped_mm_sm90(const GroupedMmParams& p);

}  // namespace nemocore::cuda
