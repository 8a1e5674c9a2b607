// Storage types for 16-bit floats and their conversions to and from the compute type.
//
// The dev/CI CPU has no bf16 arithmetic, so kernels widen 16-bit inputs to fp32 while packing
// tiles, compute in fp32 and round to nearest even when storing. float64 inputs compute in
// double (gradcheck runs in float64).
#pragma once

#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "nemocore/common.h"

#if defined(__F16C__)
#include <immintrin.h>
#endif

namespace nemocore::cpu {
// Internal linkage on purpose: this header is compiled into every ISA variant with that
// variant's flags, and with external linkage the linker would keep one copy of each function
// that was not inlined (say the baseline one) for all variants, silently running scalar code in
// the AVX2 kernels.
namespace {

struct bf16 {
  uint16_t bits;
};
struct f16 {
  uint16_t bits;
};

inline float bits_to_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline uint32_t float_to_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

inline float bf16_to_float(bf16 v) { return bits_to_float(static_cast<uint32_t>(v.bits) << 16); }

inline bf16 float_to_bf16(float f) {
  const uint32_t u = float_to_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return bf16{static_cast<uint16_t>((u >> 16) | 0x40)};  // NaN
  const uint32_t rounded = u + 0x7fffu + ((u >> 16) & 1u);  // round to nearest, ties to even
  return bf16{static_cast<uint16_t>(rounded >> 16)};
}

inline float f16_to_float(f16 v) {
#if defined(__F16C__)
  return _cvtsh_ss(v.bits);
#else
  const uint32_t sign = static_cast<uint32_t>(v.bits & 0x8000u) << 16;
  uint32_t exp = (v.bits >> 10) & 0x1fu;
  uint32_t man = v.bits & 0x3ffu;
  if (exp == 0x1f) return bits_to_float(sign | 0x7f800000u | (man << 13));  // inf, NaN
  if (exp == 0) {
    if (man == 0) return bits_to_float(sign);
    // Subnormal: normalise the mantissa.
    exp = 1;
    while ((man & 0x400u) == 0) {
      man <<= 1;
      --exp;
    }
    man &= 0x3ffu;
  }
  return bits_to_float(sign | ((exp + 112) << 23) | (man << 13));
#endif
}

inline f16 float_to_f16(float f) {
#if defined(__F16C__)
  return f16{static_cast<uint16_t>(_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC))};
#else
  const uint32_t u = float_to_bits(f);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t au = u & 0x7fffffffu;
  if (au > 0x7f800000u) return f16{static_cast<uint16_t>(sign | 0x7e00u)};   // NaN
  if (au >= 0x477ff000u) return f16{static_cast<uint16_t>(sign | 0x7c00u)};  // rounds to inf
  if (au < 0x38800000u) {
    // Result is subnormal (or zero) in fp16: scale so the fp32 rounding does the work.
    const float scaled = bits_to_float(au) * 16777216.0f;  // 2^24: one fp16 subnormal ulp = 1
    const float r = scaled + 12582912.0f - 12582912.0f;    // round to nearest even integer
    return f16{static_cast<uint16_t>(sign | static_cast<uint16_t>(r))};
  }
  const uint32_t rounded = au + 0xfffu + ((au >> 13) & 1u);
  return f16{static_cast<uint16_t>(sign | ((rounded - 0x38000000u) >> 13))};
#endif
}

// to_acc / from_acc: widen a stored element to the compute type A, and round back.
template <typename A>
inline A to_acc(float v) {
  return static_cast<A>(v);
}
template <typename A>
inline A to_acc(double v) {
  return static_cast<A>(v);
}
template <typename A>
inline A to_acc(bf16 v) {
  return static_cast<A>(bf16_to_float(v));
}
template <typename A>
inline A to_acc(f16 v) {
  return static_cast<A>(f16_to_float(v));
}

template <typename T, typename A>
inline T from_acc(A v);
template <>
inline float from_acc<float, float>(float v) {
  return v;
}
template <>
inline double from_acc<double, double>(double v) {
  return v;
}
template <>
inline float from_acc<float, double>(double v) {  // a float32 state under float64 compute
  return static_cast<float>(v);
}
template <>
inline bf16 from_acc<bf16, float>(float v) {
  return float_to_bf16(v);
}
template <>
inline f16 from_acc<f16, float>(float v) {
  return float_to_f16(v);
}

// Strided gather into a contiguous compute-type buffer; the stride-1 case vectorises.
template <typename T, typename A>
inline void load_row(const T* src, int64_t stride, int64_t n, A* dst) {
  if (stride == 1) {
    for (int64_t i = 0; i < n; ++i) dst[i] = to_acc<A>(src[i]);
  } else {
    for (int64_t i = 0; i < n; ++i) dst[i] = to_acc<A>(src[i * stride]);
  }
}

template <typename T, typename A>
inline void store_row(const A* src, int64_t n, T* dst, int64_t stride) {
  if (stride == 1) {
    for (int64_t i = 0; i < n; ++i) dst[i] = from_acc<T, A>(src[i]);
  } else {
    for (int64_t i = 0; i < n; ++i) dst[i * stride] = from_acc<T, A>(src[i]);
  }
}

// The compute type of an io type: float64 for float64 io, float32 for everything else.
template <typename T>
using AccOf = std::conditional_t<std::is_same_v<T, double>, double, float>;

// Calls fn(T{}) with T the storage type of a float io dtype; `name` (the argument whose dtype
// it is) goes into the error for any other dtype.
template <typename Fn>
void dispatch_io(DType t, const char* name, const Fn& fn) {
  switch (t) {
    case DType::kFloat32: return fn(float{});
    case DType::kFloat64: return fn(double{});
    case DType::kBFloat16: return fn(bf16{});
    case DType::kFloat16: return fn(f16{});
    default:
      throw std::invalid_argument(std::string(name) + ": unsupported dtype " + dtype_name(t));
  }
}

}  // namespace
}  // namespace nemocore::cpu
