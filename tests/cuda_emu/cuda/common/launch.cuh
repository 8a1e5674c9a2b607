// Emulated launch (replaces csrc/cuda/common/launch.cuh in the host test build).
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>
#include "emu.h"

namespace nemocore::cuda {

inline unsigned grid_blocks(int64_t blocks, const char* kernel) {
  if (blocks <= 0 || blocks > INT32_MAX) {
    throw std::runtime_error(std::string("nemocore: CUDA kernel ") + kernel + ": " +
                             std::to_string(blocks) + " blocks is outside [1, 2^31 - 1]");
  }
  return static_cast<unsigned>(blocks);
}

template <typename... Params, typename... Args>
void launch_kernel(const char* name, void (*kernel)(Params...), unsigned grid, dim3 block,
                   cudaStream_t, Args&&... args) {
  ++emu_launches;
  emu_kernel_names.push_back(name);
  emu_counts[std::string(name) + "#" + std::to_string(reinterpret_cast<uintptr_t>(kernel))]++;
  const int nthreads = block.x * block.y * block.z;
  if (nthreads > 1024 || nthreads % 32 != 0) throw std::runtime_error("bad block");
  blockDim.x = block.x; blockDim.y = block.y; blockDim.z = block.z;
  for (unsigned bx = 0; bx < grid; ++bx) {
    blockIdx.x = bx;
    emu_run_block(nthreads, blockDim, [&] { kernel(args...); });
  }
}

// Dynamic shared memory is a static host buffer here (tests/cuda_emu/cuda/common/sm90.cuh).
template <typename... Params, typename... Args>
void launch_kernel_smem(const char* name, void (*kernel)(Params...), unsigned grid, dim3 block,
                        int smem_bytes, cudaStream_t stream, Args&&... args) {
  if (smem_bytes > 227 * 1024) throw std::runtime_error("more dynamic shared memory than sm_90 has");
  launch_kernel(name, kernel, grid, block, stream, std::forward<Args>(args)...);
}

}  // namespace nemocore::cuda
