// NVFP4 quantization: params structs of the abs-max, quantize, dequantize and dequantizing-GEMM
// kernels, shared by the CPU and CUDA kernels (kernels.md section 4).
//
// Letters: M rows (all leading dims of the input), K its last dim (the GEMM reduction dim, along
// which blocks run), Kp = K rounded up to a multiple of 16 (a partial last block reads zeros),
// nb = Kp / 16 blocks per row.
//
// Layout (python/nemocore/quant/tensor.py documents it for users):
//   qdata  (M, Kp/2) uint8: two E2M1 codes per byte, even element in the low nibble;
//   scales (M, nb) uint8: the bytes of float8_e4m3fn block scales (2D: the 16x16 tile's scale
//          repeated on each of its rows);
//   value(m, k) = e2m1(code) * (float(scale[m][k/16]) * tensor_scale).
// The arithmetic of the two conventions (compat) is spelled out in python/nemocore/ref/quant.py;
// kernels reproduce it bit for bit, including stochastic rounding given the same uniforms.
#pragma once

#include <cstdint>

#include "nemocore/common.h"

namespace nemocore {

enum class Nvfp4Compat : int { kTransformerEngine = 0, kTorchao = 1 };

// max |x| over a (M, K) float tensor (rows strided, columns contiguous), as the bit pattern of
// |x| so that inf and NaN are visible: a result >= 0x7f800000 means the input is not finite.
struct AbsMaxParams {
  const void* x = nullptr;
  DType dtype = DType::kFloat32;  // float32, bfloat16 or float16
  int64_t rows = 0, cols = 0, row_stride = 0;
  uint32_t* out_bits = nullptr;  // one value, written (CPU) or atomically maxed from 0 (CUDA)
  int num_threads = 1;
  void* stream = nullptr;
};

struct Nvfp4QuantizeParams {
  const void* x = nullptr;  // (M, K), rows strided, columns contiguous
  DType dtype = DType::kFloat32;
  int64_t rows = 0, cols = 0, row_stride = 0;
  float amax = 0.f;  // max |x| over the whole tensor (finite, >= 0)
  Nvfp4Compat compat = Nvfp4Compat::kTransformerEngine;
  bool block_2d = false;          // one scale per 16x16 tile instead of per 1x16 block
  const float* rand = nullptr;    // (M, Kp) uniforms in [0, 1): stochastic rounding; null: RNE
  uint8_t* qdata = nullptr;       // (M, Kp/2)
  uint8_t* scales = nullptr;      // (M, nb)
  float* tensor_scale = nullptr;  // one value: the per-tensor decode scale
  // CPU only. Set: the kernel finds amax itself (ignoring `amax`) in a first pass that also
  // keeps the block maxima, writes it here as AbsMaxParams::out_bits does, and quantizes only
  // when it is finite (below 0x7f800000).
  uint32_t* amax_bits = nullptr;
  int num_threads = 1;
  void* stream = nullptr;
};

struct Nvfp4DequantizeParams {
  const uint8_t* qdata = nullptr;   // (M, Kp/2)
  const uint8_t* scales = nullptr;  // (M, nb)
  const float* tensor_scale = nullptr;
  int64_t qdata_cols = 0;             // Kp / 2
  int64_t rows = 0, cols = 0;         // the output is (M, cols), cols <= Kp, contiguous
  DType out_dtype = DType::kFloat32;  // float32, bfloat16 or float16
  void* out = nullptr;
  int num_threads = 1;
  void* stream = nullptr;
};

// out (M, N) = A (M, K) @ B (N, K)^T with B in NVFP4 and A either NVFP4 (W4A4 emulation:
// a_qdata set) or bf16 (weight-only W4A16: a_bf16 set). Both NVFP4 operands are dequantized
// tile by tile to bf16 (exact, kernels.md 4.10) and multiplied on tensor cores with fp32
// accumulation; the tensor scales multiply in the epilogue. CUDA only (the CPU path dequantizes
// and calls an fp32 GEMM).
struct Nvfp4MmParams {
  int64_t m = 0, n = 0, kp = 0;  // kp: padded reduction length (multiple of 16)
  const uint8_t* a_qdata = nullptr;
  const uint8_t* a_scales = nullptr;
  const float* a_tensor_scale = nullptr;
  const void* a_bf16 = nullptr;  // (M, kp) bf16, contiguous rows
  const uint8_t* b_qdata = nullptr;
  const uint8_t* b_scales = nullptr;
  const float* b_tensor_scale = nullptr;
  void* out = nullptr;  // (M, N) bf16 or float32 (out_dtype), contiguous
  DType out_dtype = DType::kFloat32;
  void* stream = nullptr;
};

namespace cpu {
void abs_max(const AbsMaxParams& p);
void nvfp4_quantize(const Nvfp4QuantizeParams& p);
void nvfp4_dequantize(const Nvfp4DequantizeParams& p);
}  // namespace cpu

namespace cuda {
// Built when CMake defines NEMOCORE_WITH_CUDA_QUANT (csrc/cuda/nvfp4.cu). The CUDA abs_max
// maxes into *out_bits atomically (the caller zeroes it); nvfp4_quantize takes p.amax from it
// and has no amax_bits form.
void abs_max(const AbsMaxParams& p);
void nvfp4_quantize(const Nvfp4QuantizeParams& p);
void nvfp4_dequantize(const Nvfp4DequantizeParams& p);
void nvfp4_mm(const Nvfp4MmParams& p);
}  // namespace cuda

}  // namespace nemocore
