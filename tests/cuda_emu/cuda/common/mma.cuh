// Emulated m16n8k16 tensor-core MMA (replaces csrc/cuda/common/mma.cuh in the host test build).
//
// Every lane posts its A, B and C fragments to an exchange buffer; after a barrier each lane
// rebuilds the elements of the 16x16 A and 16x8 B tiles it needs from the lanes that own them,
// by the PTX ISA fragment layout (g = lane / 4, t = lane % 4):
//   A[r][k]: lane (r % 8) * 4 + (k % 8) / 2, register r / 8 + 2 * (k / 8), half k % 2
//   B[k][n]: lane n * 4 + (k % 8) / 2,       register k / 8,               half k % 2
//   C[r][n]: lane (r % 8) * 4 + n / 2,       element 2 * (r / 8) + n % 2
// and computes its D fragment in fp32. A kernel that packs a fragment differently gets wrong
// products. The barriers make the call block-collective here (all threads must call it).
#pragma once
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "emu.h"

namespace nemocore::cuda {

template <typename T>
constexpr bool kHasMma = false;
template <>
constexpr bool kHasMma<__half> = true;
template <>
constexpr bool kHasMma<__nv_bfloat16> = true;

struct EmuMmaLane {
  uint32_t a[4], b[2];
  float c[4];
};
inline EmuMmaLane emu_mma_lanes[1024];
inline long emu_mma_calls = 0;

template <typename T>
float emu_mma_elem(uint32_t reg, int half) {
  const uint16_t bits = static_cast<uint16_t>(reg >> (16 * half));
  if constexpr (std::is_same_v<T, __half>) {
    __half_raw raw;
    raw.x = bits;
    return __half2float(__half(raw));
  } else {
    const uint32_t wide = uint32_t(bits) << 16;
    float f;
    std::memcpy(&f, &wide, sizeof f);
    return f;
  }
}

template <typename T>
void mma_m16n8k16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2],
                  const float (&c)[4]) {
  static_assert(kHasMma<T>, "mma_m16n8k16: T must be __half or __nv_bfloat16");
  const int tid = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  const int lane = tid % 32, base = tid - lane;
  EmuMmaLane& mine = emu_mma_lanes[tid];
  for (int i = 0; i < 4; ++i) mine.a[i] = a[i], mine.c[i] = c[i];
  mine.b[0] = b[0], mine.b[1] = b[1];
  if (tid == 0) ++emu_mma_calls;
  __syncthreads();
  auto A = [&](int r, int k) {
    return emu_mma_elem<T>(emu_mma_lanes[base + (r % 8) * 4 + (k % 8) / 2].a[r / 8 + 2 * (k / 8)],
                           k % 2);
  };
  auto B = [&](int k, int n) {
    return emu_mma_elem<T>(emu_mma_lanes[base + n * 4 + (k % 8) / 2].b[k / 8], k % 2);
  };
  auto C = [&](int r, int n) {
    return emu_mma_lanes[base + (r % 8) * 4 + n / 2].c[2 * (r / 8) + n % 2];
  };
  float out[4];
  for (int i = 0; i < 4; ++i) {
    const int r = lane / 4 + 8 * (i / 2), n = 2 * (lane % 4) + i % 2;
    float s = C(r, n);
    for (int k = 0; k < 16; ++k) s = std::fma(A(r, k), B(k, n), s);
    out[i] = s;
  }
  __syncthreads();  // nobody overwrites the exchange buffer before everyone has read it
  for (int i = 0; i < 4; ++i) d[i] = out[i];
}

}  // namespace nemocore::cuda
