// CUDA error checks that throw std::runtime_error (the binding turns it into RuntimeError).
#pragma once

#include <cuda_runtime_api.h>

#include <stdexcept>
#include <string>

namespace nemocore::cuda {

// Throws if `err` is not cudaSuccess; `what` names the call that failed.
inline void check_cuda(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return;
  throw std::runtime_error(std::string("nemocore: ") + what + " failed: " + cudaGetErrorName(err) +
                           ": " + cudaGetErrorString(err));
}

// Checks the kernel launch just made (bad configuration, no image for this GPU, ...). Also
// reports an earlier asynchronous error still pending on the device.
inline void check_launch(const char* kernel) {
  const cudaError_t err = cudaGetLastError();
  if (err == cudaSuccess) return;
  throw std::runtime_error(std::string("nemocore: CUDA kernel ") + kernel + " failed to launch: " +
                           cudaGetErrorName(err) + ": " + cudaGetErrorString(err));
}

}  // namespace nemocore::cuda

// Wraps a CUDA runtime call: NEMOCORE_CUDA_CHECK(cudaMemsetAsync(...));
#define NEMOCORE_CUDA_CHECK(expr) ::nemocore::cuda::check_cuda((expr), #expr)
