// Host-side CUDA runtime queries declared in nemocore/cuda_runtime_api.h.
//
// Every query clears the error it may leave behind (cudaGetLastError), so that a failed query
// on a machine without a GPU does not resurface as the error of an unrelated later call.
#include <cuda_runtime_api.h>

#include <cstdlib>
#include <string>

#include "cuda/common/check.cuh"
#include "nemocore/cuda_runtime_api.h"

// CMake passes the target architectures as a string literal, e.g. NEMOCORE_CUDA_ARCHS="sm_90".
#ifndef NEMOCORE_CUDA_ARCHS
#define NEMOCORE_CUDA_ARCHS "unknown"
#endif

namespace nemocore::cuda {

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

int current_device() {
  int device = -1;
  if (cudaGetDevice(&device) != cudaSuccess) {
    cudaGetLastError();
    return -1;
  }
  return device;
}

void set_device(int device) {
  const cudaError_t err = cudaSetDevice(device);
  if (err != cudaSuccess) cudaGetLastError();
  check_cuda(err, ("cudaSetDevice(" + std::to_string(device) + ")").c_str());
}

int runtime_version() {
  int version = 0;
  if (cudaRuntimeGetVersion(&version) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return version;
}

int driver_version() {
  int version = 0;  // cudaDriverGetVersion reports 0 itself when no driver is installed
  if (cudaDriverGetVersion(&version) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return version;
}

std::string compiled_archs() { return NEMOCORE_CUDA_ARCHS; }

bool use_wgmma() {
#ifdef NEMOCORE_WITH_CUDA_SM90A
  const char* env = std::getenv("NEMOCORE_WGMMA");
  if (env != nullptr && std::string(env) == "0") return false;
  int device = 0, major = 0, minor = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess ||
      cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return major == 9 && minor == 0;  // sm_90a code runs on no other device
#else
  return false;
#endif
}

}  // namespace nemocore::cuda
