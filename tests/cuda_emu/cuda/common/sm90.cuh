// Emulated Hopper building blocks (replaces csrc/cuda/common/sm90.cuh in the host test build).
//
// Both asynchronous operations run as late as the hardware may run them: a thread's cp.async
// copies execute at the cp_async_wait that retires their group, its wgmma MMAs at the
// wgmma_wait that retires theirs (reading shared memory and updating the accumulators then).
// So a kernel that reads a tile before waiting for its copies, reads accumulators before
// waiting for the MMA, or overwrites a tile an MMA in flight still reads, gets wrong numbers.
// With EMU_EAGER_COPIES=1 the copies instead run as early as the hardware may, when issued, so
// a copy that refills a stage an MMA in flight still reads shows up too.
// The MMA reads its operands through the 128-byte swizzle of the real header's descriptors
// (start address, 8-row atoms 1024 bytes apart, chunk bits XOR row bits of the final
// address), so a kernel that stores its tiles in another layout gets wrong products too.
// Dynamic shared memory is a 1024-byte-aligned host buffer filled with 0xFF (NaN in bf16 and
// fp16) at the start of every block, so reading a byte nobody wrote shows up.
#pragma once
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

#include "emu.h"

namespace nemocore::cuda::sm90 {

inline uint32_t swizzle128(uint32_t row, uint32_t chunk) {
  return row * 128u + ((chunk ^ (row % 8u)) << 4);
}

alignas(1024) inline unsigned char emu_smem[227 * 1024];

// Per-thread queues of committed groups and the open group, reset when a new block starts.
struct EmuAsyncThread {
  int64_t block = -1;
  std::vector<std::vector<std::function<void()>>> copies, mmas;  // committed groups, oldest first
  std::vector<std::function<void()>> open_copies, open_mmas;
  int64_t mma_issued = 0;
};
inline EmuAsyncThread emu_async[1024];
inline int64_t emu_smem_block = -1;
inline std::map<std::tuple<int64_t, int, int64_t>, std::pair<const void*, const void*>> emu_wg_ops;
inline int64_t emu_wgmma_calls = 0, emu_cp_async_calls = 0;
inline const bool emu_eager_copies = std::getenv("EMU_EAGER_COPIES") != nullptr;

inline int emu_tid() { return threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z); }
inline int64_t emu_block_serial() { return emu_launches * (int64_t(1) << 32) + blockIdx.x; }

inline EmuAsyncThread& emu_thread() {
  EmuAsyncThread& t = emu_async[emu_tid()];
  const int64_t serial = emu_block_serial();
  if (t.block != serial) t = EmuAsyncThread{}, t.block = serial;
  return t;
}

inline unsigned char* dynamic_smem() {
  if (emu_smem_block != emu_block_serial()) {
    emu_smem_block = emu_block_serial();
    std::memset(emu_smem, 0xFF, sizeof emu_smem);
    emu_wg_ops.clear();
  }
  return emu_smem;
}

inline bool emu_in_smem(const void* p, size_t bytes) {
  const auto* c = static_cast<const unsigned char*>(p);
  return c >= emu_smem && c + bytes <= emu_smem + sizeof emu_smem;
}

// Queues a copy in the thread's open group, or runs it now in the eager mode.
inline void emu_copy(std::function<void()> copy) {
  if (emu_eager_copies) {
    copy();
  } else {
    emu_thread().open_copies.push_back(std::move(copy));
  }
}

// cp.async of `bytes` (16 or 4): both addresses aligned to it, the destination in shared memory.
inline void emu_cp_async(void* dst, const void* src, bool valid, size_t bytes) {
  const std::string name = "cp_async_" + std::to_string(bytes);
  if (!emu_in_smem(dst, bytes) || reinterpret_cast<uintptr_t>(dst) % bytes != 0)
    throw std::runtime_error(name + ": destination not an aligned shared address");
  if (valid && reinterpret_cast<uintptr_t>(src) % bytes != 0)
    throw std::runtime_error(name + ": misaligned global source");
  ++emu_cp_async_calls;
  emu_copy([dst, src, valid, bytes] {
    if (valid) {
      std::memcpy(dst, src, bytes);
    } else {
      std::memset(dst, 0, bytes);
    }
  });
}
inline void cp_async_16(void* dst, const void* src, bool valid) {
  emu_cp_async(dst, src, valid, 16);
}
inline void cp_async_4(void* dst, const void* src, bool valid) { emu_cp_async(dst, src, valid, 4); }

inline void cp_async_commit() {
  EmuAsyncThread& t = emu_thread();
  t.copies.push_back(std::move(t.open_copies));
  t.open_copies.clear();
}

inline void emu_retire(std::vector<std::vector<std::function<void()>>>& groups, int pending) {
  while (static_cast<int>(groups.size()) > pending) {
    for (auto& op : groups.front()) op();
    groups.erase(groups.begin());
  }
}

template <int kPending>
void cp_async_wait() {
  emu_retire(emu_thread().copies, kPending);
}

inline void fence_proxy_async() {}
template <int N>
void fence_accumulators(float (&)[N]) {}
inline void wgmma_fence() {}

inline void wgmma_commit() {
  EmuAsyncThread& t = emu_thread();
  t.mmas.push_back(std::move(t.open_mmas));
  t.open_mmas.clear();
}

template <int kPending>
void wgmma_wait() {
  emu_retire(emu_thread().mmas, kPending);
}

inline int acc_row(int thread, int i) {
  return 16 * (thread / 32 % 4) + (thread % 32) / 4 + 8 * (i % 4 / 2);
}
inline int acc_col(int thread, int i) { return 8 * (i / 4) + 2 * (thread % 4) + i % 2; }

template <typename T>
constexpr bool kHasWgmma = std::is_same_v<T, __nv_bfloat16> || std::is_same_v<T, __half>;

// Element (row, k) of a K-major 128-byte-swizzled operand whose descriptor starts at `start`.
template <typename T>
float emu_operand(const void* start, int row, int k) {
  const uintptr_t logical =
      reinterpret_cast<uintptr_t>(start) + (row / 8) * 1024 + (row % 8) * 128 + k * sizeof(T);
  const uintptr_t physical = logical ^ (((logical >> 7) & 7) << 4);
  T v;
  std::memcpy(&v, reinterpret_cast<const void*>(physical), sizeof v);
  return static_cast<float>(v);
}

// wgmma m64nNk16 with N = 2 * kRegs (64 or 128): B has N rows at `b`.
template <typename T, int kRegs>
void wgmma_m64k16(float (&d)[kRegs], const void* a, const void* b) {
  static_assert(kHasWgmma<T>, "wgmma: T must be __half or __nv_bfloat16");
  static_assert(kRegs == 32 || kRegs == 64, "wgmma: N must be 64 or 128");
  for (const void* p : {a, b}) {
    const uintptr_t addr = reinterpret_cast<uintptr_t>(p);
    if (addr % 16 != 0 || addr % 1024 >= 128 || !emu_in_smem(p, 16))
      throw std::runtime_error(
          "wgmma: operand start must be a shared address in row 0 of a "
          "1024-byte aligned swizzle atom");
  }
  if (blockDim.x % 128 != 0) throw std::runtime_error("wgmma: block is not whole warpgroups");
  const int tid = emu_tid(), thread = tid % 128;
  EmuAsyncThread& t = emu_thread();
  // Every thread of the warpgroup must issue the same operands in the same order.
  const auto key = std::make_tuple(t.block, tid / 128, t.mma_issued++);
  const auto [it, first] = emu_wg_ops.try_emplace(key, a, b);
  if (!first && (it->second.first != a || it->second.second != b))
    throw std::runtime_error("wgmma: threads of one warpgroup issued different operands");
  if (thread == 0) ++emu_wgmma_calls;
  t.open_mmas.push_back([&d, a, b, thread] {
    for (int i = 0; i < kRegs; ++i) {
      const int row = acc_row(thread, i), col = acc_col(thread, i);
      float s = d[i];
      for (int k = 0; k < 16; ++k)
        s = std::fma(emu_operand<T>(a, row, k), emu_operand<T>(b, col, k), s);
      d[i] = s;
    }
  });
}

}  // namespace nemocore::cuda::sm90
