// Run-time SIMD dispatch: which instruction-set level the kernels use. Detected once from cpuid,
// intersected with what this binary was compiled with, and narrowable (never widened) by the env
// switch ADVANTAGE_ENGINE_SIMD=scalar|avx2|avx512 or set_isa() (tests force each level by name).
#pragma once

#include <string>
#include <vector>

namespace ae {

enum class Isa { Scalar = 0, Avx2 = 1, Avx512 = 2 };

const char* isa_name(Isa isa);

// Levels this CPU supports (cpuid + OS register state) and this binary carries code for.
std::vector<Isa> isa_available();

// The level in use now.
Isa isa_active();

// Picks a level by name ("scalar", "avx2", "avx512"); returns false (and changes nothing) for an unknown
// name or one that is not available here.
bool set_isa(const std::string& name);

// Applies ADVANTAGE_ENGINE_SIMD once at load. An unknown or unavailable value is reported in `error`.
void init_isa_from_env(std::string& error);

}  // namespace ae
