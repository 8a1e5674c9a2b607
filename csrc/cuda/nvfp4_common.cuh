// NVFP4 arithmetic for the CUDA kernels, the device twin of csrc/cpu/kernels/nvfp4_common.h:
// E4M3 encode/decode with integer bit operations, the two conventions' scales, E2M1 rounding.
// Same float32 operations in the same order as python/nemocore/ref/quant.py, so the CUDA
// kernels equal the reference bit for bit (nvcc keeps IEEE division and does not contract
// these expressions into FMAs: no a * b + c appears).
#pragma once

#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "nemocore/quant.h"

#ifndef NEMOCORE_HD
#define NEMOCORE_HD __host__ __device__ __forceinline__
#endif

namespace nemocore::cuda::nvfp4 {

constexpr float kE2m1Max = 6.f;
constexpr float kE4m3Max = 448.f;
constexpr float kE4m3MinNormal = 0.015625f;

NEMOCORE_HD uint32_t bits_of(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}
NEMOCORE_HD float float_of(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}

NEMOCORE_HD float e2m1_value(int code) {  // magnitude of code & 7
  const int c = code & 7;
  return c < 4 ? 0.5f * c : (c == 4 ? 2.f : (c == 5 ? 3.f : (c == 6 ? 4.f : 6.f)));
}

NEMOCORE_HD uint8_t e4m3_encode(float f) {                                // f in [0, 448]
  if (f < kE4m3MinNormal) return static_cast<uint8_t>(rintf(f * 512.f));  // RNE
  uint32_t u = bits_of(f);
  u += 0x7ffffu + ((u >> 20) & 1u);
  return static_cast<uint8_t>((u >> 20) - (120u << 3));
}

NEMOCORE_HD float e4m3_decode(uint8_t b) {
  const uint32_t sign = static_cast<uint32_t>(b & 0x80u) << 24;
  const uint32_t exp = (b >> 3) & 15u, man = b & 7u;
  if (exp == 15 && man == 7) return float_of(sign | 0x7fc00000u);
  if (exp == 0) return float_of(sign | bits_of(static_cast<float>(man) * 0.001953125f));
  return float_of(sign | ((exp + 120u) << 23) | (man << 20));
}

struct GlobalScales {
  int compat;  // Nvfp4Compat
  float te_multiplier, te_decode, ao_pts, ao_inv_pts;
  bool ao_all_zero;
  float tensor_scale;
};

inline GlobalScales global_scales(float amax, Nvfp4Compat compat) {
  GlobalScales g{};
  g.compat = static_cast<int>(compat);
  if (compat == Nvfp4Compat::kTransformerEngine) {
    float s_enc = kE4m3Max * kE2m1Max / amax;
    s_enc = s_enc < FLT_MAX ? s_enc : FLT_MAX;
    if (s_enc == 0.f) s_enc = 1.f;
    g.te_decode = 1.f / s_enc;
    g.te_multiplier = s_enc * (1.f / kE2m1Max);
    g.tensor_scale = g.te_decode;
  } else {
    g.ao_pts = amax / (kE4m3Max * kE2m1Max);
    g.ao_inv_pts = 1.f / g.ao_pts;
    g.ao_all_zero = amax == 0.f;
    g.tensor_scale = g.ao_pts;
  }
  return g;
}

// Scale byte of a block with amax `bamax`, and the element multiplier.
NEMOCORE_HD uint8_t block_scale(const GlobalScales& g, float bamax, float& enc) {
  if (g.compat == static_cast<int>(Nvfp4Compat::kTransformerEngine)) {
    const float ds = bamax * g.te_multiplier;
    const uint8_t b = e4m3_encode(ds < kE4m3Max ? ds : kE4m3Max);
    enc = 1.f / (e4m3_decode(b) * g.te_decode);
    return b;
  }
  if (g.ao_all_zero) {
    enc = 0.f;
    return e4m3_encode(kE4m3MinNormal);
  }
  const float s = (bamax / kE2m1Max) / g.ao_pts;
  const uint8_t b =
      e4m3_encode(s < kE4m3MinNormal ? kE4m3MinNormal : (s < kE4m3Max ? s : kE4m3Max));
  enc = g.ao_inv_pts / e4m3_decode(b);
  return b;
}

// Element -> code 0..15 (RNE, or stochastic with `u` >= 0 a uniform in [0, 1)).
NEMOCORE_HD uint8_t e2m1_code(float x, float enc, float u, bool stochastic, int compat) {
  float v = x * enc;
  v = v < -kE2m1Max ? -kE2m1Max : (v > kE2m1Max ? kE2m1Max : v);  // NaN stays NaN
  const float av = fabsf(v);
  int code;
  if (!stochastic) {
    code = (av > 0.25f) + (av >= 0.75f) + (av > 1.25f) + (av >= 1.75f) + (av > 2.5f) +
           (av >= 3.5f) + (av > 5.f);
  } else {
    const int lo = (av >= 0.5f) + (av >= 1.f) + (av >= 1.5f) + (av >= 2.f) + (av >= 3.f) +
                   (av >= 4.f) + (av >= 6.f);
    const float lo_v = e2m1_value(lo), hi_v = e2m1_value(lo < 7 ? lo + 1 : 7);
    code = lo + (u < (av - lo_v) / (hi_v - lo_v));
  }
  const bool negative =
      compat == static_cast<int>(Nvfp4Compat::kTorchao) ? (bits_of(v) >> 31) != 0 : v < 0.f;
  return static_cast<uint8_t>(code | (negative ? 8 : 0));
}

// e2m1_code without stochastic rounding for a finite enc, in fewer instructions: the code of
// |v| (at most 6 after the clamp) is the low 3 bits of |v| + M, where M = 2^(22 + e) for |v| in
// [2^e, 2^(e+1)) (e = 0 below 1) makes the float addition round |v| to E2M1's spacing there,
// ties to even, and 2e added to M's mantissa turns the step count into the code (the CPU's
// nvfp4_avx2.h does the same). A finite enc keeps v a number (0 * inf is the reference's one
// NaN). The _rn intrinsics keep nvcc from fusing the multiply into the addition.
NEMOCORE_HD uint8_t e2m1_code_rne(float x, float enc, int compat) {
#ifdef __CUDA_ARCH__
  float v = __fmul_rn(x, enc);
#else
  float v = x * enc;
#endif
  v = v < -kE2m1Max ? -kE2m1Max : (v > kE2m1Max ? kE2m1Max : v);
  const float av = fabsf(v);
  const float magic = float_of(av < 2.f ? 0x4a800000u : (av < 4.f ? 0x4b000002u : 0x4b800004u));
#ifdef __CUDA_ARCH__
  const uint32_t code = bits_of(__fadd_rn(av, magic)) & 7u;
#else
  const uint32_t code = bits_of(av + magic) & 7u;
#endif
  const bool negative =
      compat == static_cast<int>(Nvfp4Compat::kTorchao) ? (bits_of(v) >> 31) != 0 : v < 0.f;
  return static_cast<uint8_t>(code | (negative ? 8u : 0u));
}

}  // namespace nemocore::cuda::nvfp4
