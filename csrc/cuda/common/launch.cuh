// Kernel launches: a 1-D grid size check and a launch that checks for errors right after.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>

#include "cuda/common/check.cuh"

namespace nemocore::cuda {

// Blocks for a 1-D grid. Callers skip empty work before asking (no zero-size grids).
inline unsigned grid_blocks(int64_t blocks, const char* kernel) {
  if (blocks <= 0 || blocks > INT32_MAX) {
    throw std::runtime_error(std::string("nemocore: CUDA kernel ") + kernel + ": " +
                             std::to_string(blocks) + " blocks is outside [1, 2^31 - 1]");
  }
  return static_cast<unsigned>(blocks);
}

// kernel<<<grid, block, 0, stream>>>(args...), then check_launch(name).
template <typename... Params, typename... Args>
void launch_kernel(const char* name, void (*kernel)(Params...), unsigned grid, dim3 block,
                   cudaStream_t stream, Args&&... args) {
  kernel<<<grid, block, 0, stream>>>(std::forward<Args>(args)...);
  check_launch(name);
}

// The same with `smem_bytes` of dynamic shared memory (raising the kernel's limit past 48 KiB
// first, which the runtime requires for larger requests).
template <typename... Params, typename... Args>
void launch_kernel_smem(const char* name, void (*kernel)(Params...), unsigned grid, dim3 block,
                        int smem_bytes, cudaStream_t stream, Args&&... args) {
  check_cuda(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem_bytes),
             name);
  kernel<<<grid, block, smem_bytes, stream>>>(std::forward<Args>(args)...);
  check_launch(name);
}

}  // namespace nemocore::cuda
