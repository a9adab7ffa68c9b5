#include "simd.h"

#include <atomic>
#include <cstdlib>

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#endif

namespace ae {
namespace {

bool cpu_has_avx2_fma() {
#if defined(__x86_64__)
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
#else
  return false;
#endif
}

bool cpu_has_avx512() {
#if defined(__x86_64__)
  // __builtin_cpu_supports checks cpuid and that the OS saves the zmm state (XCR0).
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
#else
  return false;
#endif
}

Isa best_available() {
  const auto levels = isa_available();
  return levels.back();
}

std::atomic<int> g_active{-1};

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Avx512: return "avx512";
    case Isa::Avx2: return "avx2";
    default: return "scalar";
  }
}

std::vector<Isa> isa_available() {
  std::vector<Isa> levels{Isa::Scalar};
#if defined(AE_HAVE_AVX2)
  if (cpu_has_avx2_fma()) levels.push_back(Isa::Avx2);
#endif
#if defined(AE_HAVE_AVX512)
  if (cpu_has_avx512()) levels.push_back(Isa::Avx512);
#endif
  return levels;
}

Isa isa_active() {
  int v = g_active.load(std::memory_order_relaxed);
  if (v < 0) {
    v = static_cast<int>(best_available());
    g_active.store(v, std::memory_order_relaxed);
  }
  return static_cast<Isa>(v);
}

bool set_isa(const std::string& name) {
  for (Isa isa : isa_available()) {
    if (name == isa_name(isa)) {
      g_active.store(static_cast<int>(isa), std::memory_order_relaxed);
      return true;
    }
  }
  return false;
}

void init_isa_from_env(std::string& error) {
  const char* env = std::getenv("ADVANTAGE_ENGINE_SIMD");
  if (env == nullptr || *env == '\0') return;
  if (!set_isa(env)) {
    error = std::string("ADVANTAGE_ENGINE_SIMD=") + env +
            " is not one of the levels available here (scalar, avx2, avx512 as supported by this CPU and build)";
  }
}

}  // namespace ae
