// Small CUDA runtime queries for code that is not compiled by nvcc (the bindings): device
// count and selection, versions, and the architectures this build targets. Defined in
// csrc/cuda/common/runtime.cu. The queries never throw: on a machine without a GPU or driver
// they report 0 devices (or -1 / 0 as documented below).
#pragma once

#include <string>

namespace nemocore::cuda {

int device_count();            // visible CUDA devices; 0 without a GPU or driver
int current_device();          // the calling thread's device; -1 if it cannot be queried
void set_device(int device);   // throws std::runtime_error if the device cannot be selected
int runtime_version();         // CUDA runtime linked in, e.g. 13000 for 13.0; 0 if unknown
int driver_version();          // newest CUDA version the driver supports; 0 without a driver
std::string compiled_archs();  // e.g. "sm_90" (NEMOCORE_CUDA_ARCHS at build time)
// Whether the Hopper (sm_90a, wgmma) kernels may run: this build has them and the current
// device has compute capability 9.0, unless NEMOCORE_WGMMA=0 asks for the portable kernels
// (for comparisons; read per call, so benchmarks can toggle it).
bool use_wgmma();

// Makes `device` current for the guard's scope, then restores the previous device. A negative
// device (a CPU tensor) leaves the current device alone.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) : previous_(current_device()) {
    if (device >= 0 && device != previous_) {
      set_device(device);
      changed_ = true;
    }
  }
  ~DeviceGuard() {
    if (!changed_ || previous_ < 0) return;
    try {
      set_device(previous_);
    } catch (...) {
      // A destructor must not throw; the next CUDA call reports a broken device anyway.
    }
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_;
  bool changed_ = false;
};

}  // namespace nemocore::cuda
