// Depthwise causal conv1d on CUDA: forward, backward and the decode-time update.
//
// Math and params: nemocore/causal_conv1d.h (kernels.md section 1). The kernels live in
// causal_conv1d_{fwd,bwd,update}.cuh, one family per header, each with its layout notes and
// launcher; this file checks what every path relies on and dispatches on the io dtype
// (float32, float16, bfloat16: float compute and float weights; float64: double throughout).
//
// Contract shared by all entry points: launches are asynchronous on p.stream; empty work
// (batch, dim or seqlen 0) launches nothing except the state kernels that still have work
// (final states = initial states, dinitial_states = dfinal_states when seqlen is 0); out,
// dx and the states never alias the inputs; a launch failure throws std::runtime_error.
#include <stdexcept>
#include <string>

#include "cuda/causal_conv1d_bwd.cuh"
#include "cuda/causal_conv1d_fwd.cuh"
#include "cuda/causal_conv1d_update.cuh"
#include "nemocore/causal_conv1d.h"

namespace nemocore::cuda {
namespace {

void check_width(int64_t width, const char* op) {
  if (width < 1) {
    throw std::invalid_argument(std::string(op) + ": width must be at least 1, got " +
                                std::to_string(width));
  }
}

}  // namespace

void causal_conv1d_fwd(const CausalConv1dFwdParams& p) {
  check_width(p.width, "causal_conv1d_fwd");
  dispatch_float_io(p.io_dtype, "causal_conv1d_fwd",
                    [&](auto tag) { conv1d::launch_fwd<typename decltype(tag)::type>(p); });
}

void causal_conv1d_bwd(const CausalConv1dBwdParams& p) {
  check_width(p.fwd.width, "causal_conv1d_bwd");
  dispatch_float_io(p.fwd.io_dtype, "causal_conv1d_bwd",
                    [&](auto tag) { conv1d::launch_bwd<typename decltype(tag)::type>(p); });
}

void causal_conv1d_update(const CausalConv1dUpdateParams& p) {
  check_width(p.width, "causal_conv1d_update");
  dispatch_float_io(p.io_dtype, "causal_conv1d_update",
                    [&](auto tag) { conv1d::launch_update<typename decltype(tag)::type>(p); });
}

}  // namespace nemocore::cuda
