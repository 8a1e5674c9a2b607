// Run-time choice between the instruction-set variants of the CPU kernels.
//
// Every kernel source under csrc/cpu/kernels/ is compiled once per ISA level into its own
// namespace (nemocore::cpu::base, ::avx2, ::avx512), each with its own compiler flags; the wheel
// never assumes the build machine's CPU. A dispatcher compiled for the baseline picks the best
// variant the running CPU supports, or the one forced by NEMOCORE_CPU_ISA / set_isa().
#pragma once

#include <string>

namespace nemocore::cpu {

enum class Isa : int { kBase = 0, kAvx2 = 1, kAvx512 = 2 };

const char* isa_name(Isa isa);
// The best level this CPU supports and this build compiled.
Isa best_supported_isa();
// The level kernels run at: best_supported_isa(), lowered by NEMOCORE_CPU_ISA or set_isa().
Isa active_isa();
// Force a level (tests use it to compare variants). Throws std::invalid_argument when the CPU
// or the build lacks it, or the name is unknown.
void set_isa(const std::string& name);
// Human-readable CPU features relevant to the kernels, e.g. "avx2 fma f16c".
std::string cpu_feature_string();

}  // namespace nemocore::cpu

#if defined(__x86_64__) || defined(_M_X64)
#define NEMOCORE_CPU_X86 1
#else
#define NEMOCORE_CPU_X86 0
#endif

// Calls the ISA variant of `fn` that active_isa() selects.
#if NEMOCORE_CPU_X86
#define NEMOCORE_CPU_DISPATCH(fn, ...)                                  \
  switch (::nemocore::cpu::active_isa()) {                              \
    case ::nemocore::cpu::Isa::kAvx512: return avx512::fn(__VA_ARGS__); \
    case ::nemocore::cpu::Isa::kAvx2: return avx2::fn(__VA_ARGS__);     \
    default: return base::fn(__VA_ARGS__);                              \
  }
#else
#define NEMOCORE_CPU_DISPATCH(fn, ...) return base::fn(__VA_ARGS__);
#endif
