// What every emulator suite shares: seeded random inputs, conversions between the kernels' io
// types and double, the DType of an io type, and the failure counters. Include it after the
// kernel sources (it uses their to_acc/from_acc); define EMU_SEED first to pick the stream.
#pragma once

#include <random>
#include <type_traits>

#ifndef EMU_SEED
#define EMU_SEED 7
#endif

using nemocore::cuda::acc_t;

static std::mt19937_64 rng(EMU_SEED);
static double randn() {
  static std::normal_distribution<double> d(0.0, 1.0);
  return d(rng);
}
[[maybe_unused]] static double rand01() {
  return std::uniform_real_distribution<double>(0.0, 1.0)(rng);
}
template <typename T>
double to_d(T v) {
  return static_cast<double>(nemocore::cuda::to_acc(v));
}
template <typename T>
T from_d(double v) {
  return nemocore::cuda::from_acc<T>(static_cast<acc_t<T>>(v));
}

template <typename T>
nemocore::DType dtype_of() {
  if constexpr (std::is_same_v<T, double>) return nemocore::DType::kFloat64;
  if constexpr (std::is_same_v<T, __half>) return nemocore::DType::kFloat16;
  if constexpr (std::is_same_v<T, __nv_bfloat16>) return nemocore::DType::kBFloat16;
  return nemocore::DType::kFloat32;
}

static int failures = 0, checks = 0;
