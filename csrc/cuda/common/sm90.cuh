// Hopper (sm_90a) building blocks: asynchronous global-to-shared copies (cp.async) and
// warpgroup tensor-core MMAs (wgmma) over shared-memory tiles in the 128-byte-swizzled K-major
// layout (PTX ISA, "Asynchronous Warpgroup Level Matrix Multiply-Accumulate", "Shared Memory
// Matrix Layout" and "Matrix Descriptor").
//
// The tile layout every operand uses here: a tile of R rows by 64 16-bit elements (128 bytes per
// row), 1024-byte aligned; the 16-byte chunk c of row r sits at byte r * 128 + ((c ^ (r % 8)) *
// 16). Eight rows (1024 bytes) form one swizzle atom; atoms follow each other (the descriptor's
// stride byte offset is 1024; its leading byte offset is unused in this mode). A k16 slice of the
// tile starts 32 * (k / 16) bytes into row 0: the hardware applies the XOR swizzle to the final
// address, which is why the tile base must be 1024-byte aligned.
//
// Tests replace this header with tests/cuda_emu/cuda/common/sm90.cuh, which runs the copies and
// the MMAs lazily (at the wait that must precede their use) from the same layout, so a kernel
// that writes the swizzle wrong, reads before waiting or overwrites a tile still being read
// fails on the CPU.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

namespace nemocore::cuda::sm90 {

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define NEMOCORE_SM90A 1
#endif

// Byte offset of 16-byte chunk `chunk` (0..7) of row `row` in a 128-byte-swizzled tile.
__host__ __device__ __forceinline__ uint32_t swizzle128(uint32_t row, uint32_t chunk) {
  return row * 128u + ((chunk ^ (row % 8u)) << 4);
}

// Dynamic shared memory of the block, 1024-byte aligned (launch with enough bytes + 1024).
__device__ __forceinline__ unsigned char* dynamic_smem() {
  extern __shared__ unsigned char nemocore_sm90_smem[];
  const uintptr_t p = reinterpret_cast<uintptr_t>(nemocore_sm90_smem);
  return nemocore_sm90_smem + ((1024 - p % 1024) % 1024);
}

// Copies 16 bytes from global `src` to shared `dst` asynchronously; with `valid` false writes
// 16 zero bytes instead (and reads nothing).
__device__ __forceinline__ void cp_async_16(void* dst, const void* src, bool valid) {
#ifdef NEMOCORE_SM90A
  const uint32_t d = static_cast<uint32_t>(__cvta_generic_to_shared(dst));
  const int bytes = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(d), "l"(src), "r"(bytes));
#else
  (void)dst, (void)src, (void)valid;
#endif
}

// The same for 4 bytes (4-byte aligned source and destination); the copy goes through L1 (.ca),
// the only cache option PTX allows below 16 bytes.
__device__ __forceinline__ void cp_async_4(void* dst, const void* src, bool valid) {
#ifdef NEMOCORE_SM90A
  const uint32_t d = static_cast<uint32_t>(__cvta_generic_to_shared(dst));
  const int bytes = valid ? 4 : 0;
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(d), "l"(src), "r"(bytes));
#else
  (void)dst, (void)src, (void)valid;
#endif
}

__device__ __forceinline__ void cp_async_commit() {
#ifdef NEMOCORE_SM90A
  asm volatile("cp.async.commit_group;\n" ::);
#endif
}

// Waits until at most `kPending` of this thread's committed copy groups are still in flight.
template <int kPending>
__device__ __forceinline__ void cp_async_wait() {
#ifdef NEMOCORE_SM90A
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending));
#endif
}

// Orders this thread's generic-proxy shared-memory writes (cp.async included) before later
// async-proxy reads (wgmma operands); follow it with a block barrier.
__device__ __forceinline__ void fence_proxy_async() {
#ifdef NEMOCORE_SM90A
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#endif
}

// Pins the accumulators for the compiler (an empty asm that reads and writes each one): with
// MMAs left in flight across other code, nothing may copy or move these registers meanwhile.
template <int N>
__device__ __forceinline__ void fence_accumulators(float (&d)[N]) {
#ifdef NEMOCORE_SM90A
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+f"(d[i])::"memory");
#else
  (void)d;
#endif
}

__device__ __forceinline__ void wgmma_fence() {
#ifdef NEMOCORE_SM90A
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#endif
}

__device__ __forceinline__ void wgmma_commit() {
#ifdef NEMOCORE_SM90A
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#endif
}

// Waits until at most `kPending` of the warpgroup's committed MMA groups are in flight; only
// then may the accumulators be read or the operand tiles be overwritten.
template <int kPending>
__device__ __forceinline__ void wgmma_wait() {
#ifdef NEMOCORE_SM90A
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(kPending) : "memory");
#endif
}

// Shared-memory matrix descriptor of a 128-byte-swizzled K-major tile starting at `p`.
__device__ __forceinline__ uint64_t smem_desc(const void* p) {
  const uint64_t addr = static_cast<uint64_t>(__cvta_generic_to_shared(p));
  uint64_t desc = (addr & 0x3FFFFull) >> 4;  // start address, 16-byte units
  desc |= uint64_t(1) << 16;                 // leading byte offset: unused when swizzled
  desc |= uint64_t(1024 >> 4) << 32;         // stride byte offset: one 8-row atom
  desc |= uint64_t(1) << 62;                 // 128-byte swizzle
  return desc;
}

// The accumulator fragment of wgmma m64nNk16 with fp32 D (N / 2 registers): thread t of the
// warpgroup (warp w = t / 32, lane l = t % 32) holds d[i] = D[row][col] with j = i / 4, q = i % 4,
//   row = 16 w + l / 4 + 8 (q / 2),  col = 8 j + 2 (l % 4) + q % 2.
__host__ __device__ __forceinline__ int acc_row(int thread, int i) {
  return 16 * (thread / 32 % 4) + (thread % 32) / 4 + 8 * (i % 4 / 2);
}
__host__ __device__ __forceinline__ int acc_col(int thread, int i) {
  return 8 * (i / 4) + 2 * (thread % 4) + i % 2;
}

template <typename T>
constexpr bool kHasWgmma = std::is_same_v<T, __nv_bfloat16> || std::is_same_v<T, __half>;

#define NEMOCORE_WGMMA_D8(i)                                                                  \
  "+f"(d[i]), "+f"(d[i + 1]), "+f"(d[i + 2]), "+f"(d[i + 3]), "+f"(d[i + 4]), "+f"(d[i + 5]), \
      "+f"(d[i + 6]), "+f"(d[i + 7])

// d (64 x N, the fragment above; N = 2 kRegs, 64 or 128) += A (64 x 16) @ B (16 x N), A a
// K-major tile at `a` (64 rows), B a K-major tile at `b` (N rows, one per output column). Issued
// by all 128 threads of a warpgroup; asynchronous until wgmma_commit + wgmma_wait.
template <typename T, int kRegs>
__device__ __forceinline__ void wgmma_m64k16(float (&d)[kRegs], const void* a, const void* b) {
  static_assert(kHasWgmma<T>, "wgmma: T must be __half or __nv_bfloat16");
  static_assert(kRegs == 32 || kRegs == 64, "wgmma: N must be 64 or 128");
#ifdef NEMOCORE_SM90A
  const uint64_t da = smem_desc(a), db = smem_desc(b);
  const int accumulate = 1;  // scale-d: D = A B + D
#define NEMOCORE_WGMMA_N128(type)                                                                  \
  asm volatile(                                                                                    \
      "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"                                                 \
      "wgmma.mma_async.sync.aligned.m64n128k16.f32." type "." type                                 \
      " {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, "    \
      "%19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, "      \
      "%36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, "      \
      "%53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, %64, %65, p, 1, 1, 0, 0;\n}\n"      \
      : NEMOCORE_WGMMA_D8(0), NEMOCORE_WGMMA_D8(8), NEMOCORE_WGMMA_D8(16), NEMOCORE_WGMMA_D8(24),  \
        NEMOCORE_WGMMA_D8(32), NEMOCORE_WGMMA_D8(40), NEMOCORE_WGMMA_D8(48), NEMOCORE_WGMMA_D8(56) \
      : "l"(da), "l"(db), "r"(accumulate))
#define NEMOCORE_WGMMA_N64(type)                                                                 \
  asm volatile(                                                                                  \
      "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"                                               \
      "wgmma.mma_async.sync.aligned.m64n64k16.f32." type "." type                                \
      " {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, "            \
      "%17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, %32, "        \
      "%33, p, 1, 1, 0, 0;\n}\n"                                                                 \
      : NEMOCORE_WGMMA_D8(0), NEMOCORE_WGMMA_D8(8), NEMOCORE_WGMMA_D8(16), NEMOCORE_WGMMA_D8(24) \
      : "l"(da), "l"(db), "r"(accumulate))
  constexpr bool kBf16 = std::is_same_v<T, __nv_bfloat16>;
  if constexpr (kRegs == 64 && kBf16) {
    NEMOCORE_WGMMA_N128("bf16");
  } else if constexpr (kRegs == 64) {
    NEMOCORE_WGMMA_N128("f16");
  } else if constexpr (kBf16) {
    NEMOCORE_WGMMA_N64("bf16");
  } else {
    NEMOCORE_WGMMA_N64("f16");
  }
#undef NEMOCORE_WGMMA_N64
#undef NEMOCORE_WGMMA_N128
#elif defined(__CUDA_ARCH__)
  (void)d, (void)a, (void)b;
  __trap();  // compiled for a target without wgmma: the host never launches this path there
#endif
}

#undef NEMOCORE_WGMMA_D8

}  // namespace nemocore::cuda::sm90
