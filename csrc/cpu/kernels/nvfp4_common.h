// Scalar NVFP4 arithmetic shared by the CPU quantize and dequantize kernels: E4M3 encode and
// decode with integer bit operations (exact and independent of the compiler), the two-level
// scales of both conventions, and E2M1 rounding. Every formula mirrors
// python/nemocore/ref/quant.py operation for operation, in float32, so results match it bit for
// bit. Included only by sources compiled per ISA level.
#pragma once

#include <cfloat>
#include <cmath>
#include <cstdint>

#include "cpu/common/convert.h"
#include "nemocore/quant.h"

namespace nemocore::cpu::NEMOCORE_CPU_ISA::nvfp4 {

constexpr float kE2m1Max = 6.f;
constexpr float kE4m3Max = 448.f;
constexpr float kE4m3MinNormal = 0.015625f;  // 2^-6: torchao's lower clamp on block scales
constexpr float kE2m1Values[8] = {0.f, 0.5f, 1.f, 1.5f, 2.f, 3.f, 4.f, 6.f};

// float in [0, 448] (clamped by the caller) -> E4M3 byte, round to nearest even.
inline uint8_t e4m3_encode(float f) {
  if (f < kE4m3MinNormal) {
    // Subnormals are multiples of 2^-9; f * 512 is exact and nearbyint rounds half to even
    // (the default rounding mode). 8 * 2^-9 = 2^-6 is byte 0x08, the smallest normal: correct.
    return static_cast<uint8_t>(std::nearbyint(f * 512.f));
  }
  // Normal: keep 3 of the 23 mantissa bits, RNE via the carry trick, then rebias 127 -> 7.
  uint32_t u = float_to_bits(f);
  u += 0x7ffffu + ((u >> 20) & 1u);
  return static_cast<uint8_t>((u >> 20) - (120u << 3));
}

inline float e4m3_decode(uint8_t b) {
  const uint32_t sign = static_cast<uint32_t>(b & 0x80u) << 24;
  const uint32_t exp = (b >> 3) & 15u, man = b & 7u;
  if (exp == 15 && man == 7) return bits_to_float(sign | 0x7fc00000u);  // float8_e4m3fn NaN
  if (exp == 0) return bits_to_float(sign | float_to_bits(static_cast<float>(man) * 0.001953125f));
  return bits_to_float(sign | ((exp + 120u) << 23) | (man << 20));
}

// Per-tensor constants derived from amax, as in scales_te / scales_torchao of the reference.
struct GlobalScales {
  Nvfp4Compat compat;
  float te_multiplier = 0.f, te_decode = 0.f;  // S_enc * (1/6) and 1 / S_enc
  float ao_pts = 0.f, ao_inv_pts = 0.f;        // amax / 2688 and 1 / pts
  bool ao_all_zero = false;
  float tensor_scale = 0.f;  // what NVFP4Tensor.tensor_scale stores
};

inline GlobalScales global_scales(float amax, Nvfp4Compat compat) {
  GlobalScales g;
  g.compat = compat;
  if (compat == Nvfp4Compat::kTransformerEngine) {
    float s_enc = std::fmin(kE4m3Max * kE2m1Max / amax, FLT_MAX);  // amax = 0 gives FLT_MAX
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

// One block's stored scale byte and its element multiplier `enc`, from the block's amax.
struct BlockScale {
  uint8_t byte;
  float enc;
};

// The element multiplier of a block whose scale byte is b (0..126).
inline float block_enc(const GlobalScales& g, uint8_t b) {
  if (g.compat == Nvfp4Compat::kTransformerEngine) {
    return 1.f / (e4m3_decode(b) * g.te_decode);  // inf for a zero scale, as in TE
  }
  return g.ao_all_zero ? 0.f : g.ao_inv_pts / e4m3_decode(b);
}

inline uint8_t block_scale_byte(const GlobalScales& g, float bamax) {
  if (g.compat == Nvfp4Compat::kTransformerEngine) {
    const float ds = bamax * g.te_multiplier;  // never NaN: plain compares, no libm call
    return e4m3_encode(ds < kE4m3Max ? ds : kE4m3Max);
  }
  if (g.ao_all_zero) return e4m3_encode(kE4m3MinNormal);
  const float s = (bamax / kE2m1Max) / g.ao_pts;
  return e4m3_encode(s < kE4m3MinNormal ? kE4m3MinNormal : (s < kE4m3Max ? s : kE4m3Max));
}

inline BlockScale block_scale(const GlobalScales& g, float bamax) {
  const uint8_t b = block_scale_byte(g, bamax);
  return {b, block_enc(g, b)};
}

// Scaled value -> code 0..15, clamped to [-6, 6] first. A NaN (0 * inf in a zero-scale TE
// block) passes no compare and becomes code 0, as in the reference.
inline uint8_t e2m1_code(float x, float enc, const float* rand, Nvfp4Compat compat) {
  float v = x * enc;
  v = v < -kE2m1Max ? -kE2m1Max : (v > kE2m1Max ? kE2m1Max : v);  // NaN stays NaN
  const float av = std::fabs(v);
  int code;
  if (rand == nullptr) {
    code = (av > 0.25f) + (av >= 0.75f) + (av > 1.25f) + (av >= 1.75f) + (av > 2.5f) +
           (av >= 3.5f) + (av > 5.f);
  } else {
    const int lo = (av >= 0.5f) + (av >= 1.f) + (av >= 1.5f) + (av >= 2.f) + (av >= 3.f) +
                   (av >= 4.f) + (av >= 6.f);
    const float lo_v = kE2m1Values[lo], hi_v = kE2m1Values[lo < 7 ? lo + 1 : 7];
    code = lo + (*rand < (av - lo_v) / (hi_v - lo_v));  // 0/0 at 6 and NaN compare false
  }
  const bool negative = compat == Nvfp4Compat::kTorchao ? std::signbit(v) : v < 0.f;
  return static_cast<uint8_t>(code | (negative ? 8 : 0));
}

}  // namespace nemocore::cpu::NEMOCORE_CPU_ISA::nvfp4
