// Running a kernel on the device of its tensors: the CPU variant with the GIL released, or the
// CUDA variant under a device guard on the caller's stream (set in the params). Shared by every
// op's glue.
#pragma once

#include <stdexcept>
#include <string>

#include "tensor_view.h"

#ifdef NEMOCORE_WITH_CUDA
#include "nemocore/cuda_runtime_api.h"
#endif

namespace nemocore::bindings {

template <typename P>
struct KernelFn {
  using type = void (*)(const P&);
};

// Runs cpu_fn or cuda_fn (null when this build has no CUDA kernel for the op) on `ref`'s device.
// P is deduced from p alone, so cuda_fn may be a null pointer constant.
template <typename P>
void launch(const TensorView& ref, const char* op, typename KernelFn<P>::type cpu_fn,
            typename KernelFn<P>::type cuda_fn, const P& p) {
  if (!ref.is_cuda) {
    without_gil([&] { cpu_fn(p); });
    return;
  }
#ifdef NEMOCORE_WITH_CUDA
  if (cuda_fn == nullptr) {
    throw std::runtime_error(std::string("nemocore: ") + op +
                             " has no CUDA kernels in this build yet; run it on CPU tensors "
                             "(nemocore.ref has a pure-PyTorch version that runs on the GPU). "
                             "`nemocore doctor` shows what was built.");
  }
  without_gil([&] {
    cuda::DeviceGuard guard(ref.device);
    cuda_fn(p);
  });
#else
  (void)cuda_fn;
  throw std::runtime_error(std::string("nemocore: ") + op +
                           ": nemocore._C was built without CUDA kernels; rebuild with a CUDA "
                           "compiler available (NEMOCORE_CUDA=1) to run on a GPU. `nemocore "
                           "doctor` shows what was built.");
#endif
}

}  // namespace nemocore::bindings
