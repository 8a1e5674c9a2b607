// Elementwise math that the compiler can vectorise.
//
// std::exp does not vectorise without -ffast-math (which would also break NaN handling
// elsewhere), so fp32 kernels use exp_f32: Cody-Waite range reduction and a degree-6
// polynomial, within 2 ulp of expf on [-87.3, 88.72], saturating to 0 and inf outside.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace nemocore::cpu {
// Internal linkage on purpose: this header is compiled into every ISA variant with that
// variant's flags, and with external linkage the linker would keep one copy of each function
// that was not inlined (say the baseline one) for all variants, silently running scalar code in
// the AVX2 kernels.
namespace {

// exp(xc) = p * 2^n for xc in [-87.3, 88.72]: returns p and sets n. Cody-Waite reduction.
inline float exp_reduced_f32(float xc, int32_t& n_out) {
  // n = round(x / ln2) by the magic-number trick (adding 1.5 * 2^23 rounds to an integer in
  // the low mantissa bits), which vectorises where std::nearbyint would be a library call.
  const float magic = 12582912.0f;
  const float shifted = xc * 1.44269504088896341f + magic;
  const float n = shifted - magic;
  int32_t ni;
  std::memcpy(&ni, &shifted, 4);
  ni -= 0x4b400000;                       // the bits of `magic`
  float r = xc - n * 0.693145751953125f;  // ln2 split in two parts: n * hi is exact
  r = r - n * 1.428606765330187045e-06f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  n_out = ni;
  return p;
}

inline float exp_f32(float x) {
  // exp(-87.3) ~ 1e-38 is the last normal result; exp(88.72) ~ FLT_MAX.
  const float xc = x < -87.3f ? -87.3f : (x > 88.72f ? 88.72f : x);
  int32_t ni;
  const float p = exp_reduced_f32(xc, ni);
  // 2^n as two factors so each stays a normal float for n in [-126, 128].
  const int32_t n1 = ni >> 1;
  const int32_t bits1 = (n1 + 127) << 23;
  const int32_t bits2 = (ni - n1 + 127) << 23;
  float s1, s2;
  std::memcpy(&s1, &bits1, 4);
  std::memcpy(&s2, &bits2, 4);
  float y = p * s1 * s2;
  y = x < -87.3f ? 0.0f : y;  // below FLT_MIN: flushed to zero
  y = x > 88.72f ? INFINITY : y;
  return x != x ? x : y;  // NaN propagates
}

template <typename A>
inline A exp_acc(A x);
template <>
inline float exp_acc<float>(float x) {
  return exp_f32(x);
}
template <>
inline double exp_acc<double>(double x) {
  return std::exp(x);
}

template <typename A>
inline A sigmoid(A x) {
  return A(1) / (A(1) + exp_acc<A>(-x));
}

template <typename A>
inline A silu(A x) {
  return x * sigmoid<A>(x);
}

}  // namespace
}  // namespace nemocore::cpu
