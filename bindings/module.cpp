// The nemocore._C extension module: build facts for `nemocore doctor`, CPU ISA control, and one
// register_* call per op family (each in its own file under bindings/).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>

#include "cpu/common/isa.h"

#ifdef NEMOCORE_WITH_CUDA
#include "nemocore/cuda_runtime_api.h"
#endif

#ifndef NEMOCORE_VERSION
#define NEMOCORE_VERSION "0.0.0+unknown"
#endif

namespace py = pybind11;

namespace nemocore::bindings {
void register_causal_conv1d(py::module_& m);
void register_ssd(py::module_& m);
void register_moe(py::module_& m);
void register_attention(py::module_& m);
void register_quant(py::module_& m);
void register_token_bitmask(py::module_& m);
}  // namespace nemocore::bindings

namespace {

std::string compiler_name() {
#if defined(__clang__)
  return "clang " __clang_version__;
#elif defined(__GNUC__)
  return "gcc " + std::to_string(__GNUC__) + "." + std::to_string(__GNUC_MINOR__) + "." +
         std::to_string(__GNUC_PATCHLEVEL__);
#else
  return "unknown";
#endif
}

py::dict build_info() {
  namespace cpu = nemocore::cpu;
  py::dict info;
  info["version"] = NEMOCORE_VERSION;
  info["compiler"] = compiler_name();
#ifdef _OPENMP
  info["openmp"] = true;
#else
  info["openmp"] = false;
#endif
  py::list isas;
  isas.append("base");
#if NEMOCORE_CPU_X86
  isas.append("avx2");
  isas.append("avx512");
#endif
  info["cpu_isas_compiled"] = isas;
  info["cpu_isa_best"] = cpu::isa_name(cpu::best_supported_isa());
  info["cpu_isa_active"] = cpu::isa_name(cpu::active_isa());
  info["cpu_features"] = cpu::cpu_feature_string();
#ifdef NEMOCORE_WITH_CUDA
  namespace cuda = nemocore::cuda;
  info["cuda"] = true;
  info["cuda_archs"] = cuda::compiled_archs();
  info["cuda_runtime_version"] = cuda::runtime_version();
  info["cuda_driver_version"] = cuda::driver_version();
  info["cuda_device_count"] = cuda::device_count();
  // Which SSD ops have CUDA kernels in this build; cuda_ssd: all of them.
#ifdef NEMOCORE_WITH_CUDA_SSD_FWD
  constexpr bool ssd_fwd = true;
#else
  constexpr bool ssd_fwd = false;
#endif
#ifdef NEMOCORE_WITH_CUDA_SSD_BWD
  constexpr bool ssd_bwd = true;
#else
  constexpr bool ssd_bwd = false;
#endif
#ifdef NEMOCORE_WITH_CUDA_SSD_UPDATE
  constexpr bool ssd_update = true;
#else
  constexpr bool ssd_update = false;
#endif
  info["cuda_ssd"] = ssd_fwd && ssd_bwd && ssd_update;
  info["cuda_ssd_fwd"] = ssd_fwd;
  info["cuda_ssd_bwd"] = ssd_bwd;
  info["cuda_ssd_update"] = ssd_update;
#ifdef NEMOCORE_WITH_CUDA_MOE
  info["cuda_moe"] = true;
#else
  info["cuda_moe"] = false;
#endif
#ifdef NEMOCORE_WITH_CUDA_QUANT
  info["cuda_quant"] = true;
#else
  info["cuda_quant"] = false;
#endif
#ifdef NEMOCORE_WITH_CUDA_ATTENTION
  info["cuda_attention"] = true;
#else
  info["cuda_attention"] = false;
#endif
#else
  info["cuda_moe"] = false;
  info["cuda_quant"] = false;
  info["cuda_attention"] = false;
  info["cuda_ssd"] = false;
  info["cuda_ssd_fwd"] = false;
  info["cuda_ssd_bwd"] = false;
  info["cuda_ssd_update"] = false;
  info["cuda"] = false;
  info["cuda_archs"] = "";
#endif
  return info;
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "nemocore's C++/CUDA kernels. Use nemocore.ops, not this module.";
  m.def("build_info", &build_info, "What this build of _C contains (for `nemocore doctor`).");
  m.def(
      "cpu_isa", [] { return std::string(nemocore::cpu::isa_name(nemocore::cpu::active_isa())); },
      "The ISA level the CPU kernels run at: 'base', 'avx2' or 'avx512'.");
  m.def("set_cpu_isa", &nemocore::cpu::set_isa, py::arg("name"),
        "Run CPU kernels at a lower ISA level ('base', 'avx2', 'avx512'), e.g. to compare them.");
  nemocore::bindings::register_causal_conv1d(m);
  nemocore::bindings::register_ssd(m);
  nemocore::bindings::register_moe(m);
  nemocore::bindings::register_attention(m);
  nemocore::bindings::register_quant(m);
  nemocore::bindings::register_token_bitmask(m);
}
