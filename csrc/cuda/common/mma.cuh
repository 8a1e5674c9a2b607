// Warp-level tensor-core multiply-accumulate: mma.sync.aligned.m16n8k16.row.col.f32.{bf16,f16}.
//
// One call multiplies a 16x16 A tile by a 16x8 B tile into a 16x8 fp32 tile, spread over the 32
// lanes of a warp (PTX ISA, "Matrix Fragments for mma.m16n8k16 with floating point type"). With
// g = lane / 4 and t = lane % 4, a lane holds
//   a[0] = A[g][2t, 2t+1]      a[1] = A[g+8][2t, 2t+1]
//   a[2] = A[g][2t+8, 2t+9]    a[3] = A[g+8][2t+8, 2t+9]
//   b[0] = B[2t, 2t+1][g]      b[1] = B[2t+8, 2t+9][g]
//   c[0..1] = C[g][2t, 2t+1]   c[2..3] = C[g+8][2t, 2t+1]
// each 32-bit register packing two 16-bit elements, the lower-indexed one in the low half.
// All 32 lanes must call it together (it is a warp-collective instruction).
//
// Tests replace this header with tests/cuda_emu/cuda/common/mma.cuh, which rebuilds the tiles
// from the same fragment layout, so a kernel that packs its fragments wrong fails on the CPU.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

namespace nemocore::cuda {

// True for the element types with an m16n8k16 tensor-core instruction.
template <typename T>
constexpr bool kHasMma = false;
template <>
constexpr bool kHasMma<__half> = true;
template <>
constexpr bool kHasMma<__nv_bfloat16> = true;

// d = a @ b + c for T = __half or __nv_bfloat16 (fragments as in the header comment). Needs
// sm_80 or newer; older targets trap (nemocore builds sm_90 by default).
template <typename T>
__device__ __forceinline__ void mma_m16n8k16(float (&d)[4], const uint32_t (&a)[4],
                                             const uint32_t (&b)[2], const float (&c)[4]) {
  static_assert(kHasMma<T>, "mma_m16n8k16: T must be __half or __nv_bfloat16");
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, "
        "{%4, %5, %6, %7}, {%8, %9}, {%10, %11, %12, %13};\n"
        : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]),
          "f"(c[2]), "f"(c[3]));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, "
        "{%4, %5, %6, %7}, {%8, %9}, {%10, %11, %12, %13};\n"
        : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]),
          "f"(c[2]), "f"(c[3]));
  }
#elif defined(__CUDA_ARCH__)
  __trap();
#endif
}

}  // namespace nemocore::cuda
