// The Hopper (sm_90a, wgmma) nvfp4_mm of nvfp4_mm_sm90.cu, called by nvfp4.cu's dispatch when
// the device is compute capability 9.0 and the operands are eligible.
#pragma once

#include "nemocore/quant.h"

namespace nemocore::cuda {

// True when kp is a multiple of 64 (whole 64-wide k slices, so each row's scale bytes of a
// slice are one aligned 4-byte word) and the packed operands are 16-byte aligned (scales
// 4-byte, bf16 A 16-byte).
bool nvfp4_mm_sm90_supports(const Nvfp4MmParams& p);

// out = alpha * A @ B^T on wgmma, dequantizing NVFP4 to bf16 in the main loop. Throws if not
// supported.
void nvfp4_mm_sm90(const Nvfp4MmParams& p);

}  // namespace nemocore::cuda
