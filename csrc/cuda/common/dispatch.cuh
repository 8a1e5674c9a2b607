// Element types of the CUDA kernels: nemocore::DType to a C++ type, the compute type of each,
// and the conversions between them.
//
// Every io type computes in float except float64, which computes in double (gradcheck runs in
// float64). 16-bit values are widened on load and rounded to nearest even on store.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <stdexcept>
#include <string>

#include "nemocore/common.h"

namespace nemocore::cuda {

template <typename T>
struct TypeTag {
  using type = T;
};

// The compute (accumulation) type of an io type.
template <typename T>
struct AccOf {
  using type = float;
};
template <>
struct AccOf<double> {
  using type = double;
};
template <typename T>
using acc_t = typename AccOf<T>::type;

// Convert<T>::load widens T to acc_t<T>; Convert<T>::store rounds back.
template <typename T>
struct Convert;
template <>
struct Convert<float> {
  __host__ __device__ __forceinline__ static float load(float v) { return v; }
  __host__ __device__ __forceinline__ static float store(float v) { return v; }
};
template <>
struct Convert<double> {
  __host__ __device__ __forceinline__ static double load(double v) { return v; }
  __host__ __device__ __forceinline__ static double store(double v) { return v; }
};
template <>
struct Convert<__half> {
  __host__ __device__ __forceinline__ static float load(__half v) { return __half2float(v); }
  __host__ __device__ __forceinline__ static __half store(float v) { return __float2half_rn(v); }
};
template <>
struct Convert<__nv_bfloat16> {
  __host__ __device__ __forceinline__ static float load(__nv_bfloat16 v) {
    return __bfloat162float(v);
  }
  __host__ __device__ __forceinline__ static __nv_bfloat16 store(float v) {
    return __float2bfloat16_rn(v);
  }
};

template <typename T>
__host__ __device__ __forceinline__ acc_t<T> to_acc(T v) {
  return Convert<T>::load(v);
}
// Call as from_acc<T>(v): T cannot be deduced from the compute type.
template <typename T>
__host__ __device__ __forceinline__ T from_acc(acc_t<T> v) {
  return Convert<T>::store(v);
}

// Calls f(TypeTag<T>{}) with T the C++ type of a floating-point io dtype: float, __half,
// __nv_bfloat16 or double. Other dtypes throw std::invalid_argument naming `op`.
template <typename F>
void dispatch_float_io(DType dtype, const char* op, F&& f) {
  switch (dtype) {
    case DType::kFloat32: f(TypeTag<float>{}); return;
    case DType::kFloat16: f(TypeTag<__half>{}); return;
    case DType::kBFloat16: f(TypeTag<__nv_bfloat16>{}); return;
    case DType::kFloat64: f(TypeTag<double>{}); return;
    default: break;
  }
  throw std::invalid_argument(std::string(op) + ": unsupported dtype " + dtype_name(dtype) +
                              " (expected float32, float16, bfloat16 or float64)");
}

}  // namespace nemocore::cuda
