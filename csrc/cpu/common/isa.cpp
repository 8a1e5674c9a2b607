#include "cpu/common/isa.h"

#include <atomic>
#include <cstdlib>
#include <stdexcept>

namespace nemocore::cpu {
namespace {

#if NEMOCORE_CPU_X86
bool cpu_has(const char* feature) {
  // __builtin_cpu_supports needs a string literal, hence the explicit table.
  const std::string f(feature);
  if (f == "avx2") return __builtin_cpu_supports("avx2");
  if (f == "fma") return __builtin_cpu_supports("fma");
  if (f == "f16c") return __builtin_cpu_supports("f16c");
  if (f == "avx512f") return __builtin_cpu_supports("avx512f");
  if (f == "avx512bw") return __builtin_cpu_supports("avx512bw");
  if (f == "avx512vl") return __builtin_cpu_supports("avx512vl");
  if (f == "avx512dq") return __builtin_cpu_supports("avx512dq");
  if (f == "avx512bf16") return __builtin_cpu_supports("avx512bf16");
  return false;
}
#endif

Isa detect() {
#if NEMOCORE_CPU_X86
  __builtin_cpu_init();
  const bool avx2 = cpu_has("avx2") && cpu_has("fma") && cpu_has("f16c");
  const bool avx512 = avx2 && cpu_has("avx512f") && cpu_has("avx512bw") && cpu_has("avx512vl") &&
                      cpu_has("avx512dq");
  if (avx512) return Isa::kAvx512;
  if (avx2) return Isa::kAvx2;
#endif
  return Isa::kBase;
}

Isa parse(const std::string& name) {
  if (name == "base") return Isa::kBase;
  if (name == "avx2") return Isa::kAvx2;
  if (name == "avx512") return Isa::kAvx512;
  throw std::invalid_argument("unknown CPU ISA level '" + name +
                              "': expected one of 'base', 'avx2', 'avx512'");
}

Isa initial_isa() {
  const Isa best = best_supported_isa();
  const char* forced = std::getenv("NEMOCORE_CPU_ISA");
  if (forced == nullptr || *forced == '\0') return best;
  try {
    const Isa want = parse(forced);
    return want < best ? want : best;  // never run code the CPU cannot execute
  } catch (const std::invalid_argument&) {
    return best;  // a bad environment variable must not break import; doctor shows the level
  }
}

std::atomic<int>& active_slot() {
  static std::atomic<int> slot(static_cast<int>(initial_isa()));
  return slot;
}

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kAvx512: return "avx512";
    case Isa::kAvx2: return "avx2";
    default: return "base";
  }
}

Isa best_supported_isa() {
  static const Isa best = detect();
  return best;
}

Isa active_isa() { return static_cast<Isa>(active_slot().load(std::memory_order_relaxed)); }

void set_isa(const std::string& name) {
  const Isa want = parse(name);
  if (want > best_supported_isa()) {
    throw std::invalid_argument(std::string("CPU ISA level '") + name +
                                "' is not available here (best: " + isa_name(best_supported_isa()) +
                                ")");
  }
  active_slot().store(static_cast<int>(want), std::memory_order_relaxed);
}

std::string cpu_feature_string() {
  std::string out;
#if NEMOCORE_CPU_X86
  for (const char* f :
       {"avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512bf16"}) {
    if (cpu_has(f)) out += (out.empty() ? "" : " ") + std::string(f);
  }
#endif
  return out.empty() ? "none" : out;
}

}  // namespace nemocore::cpu
