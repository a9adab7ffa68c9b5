// Storage types for the four logits dtypes, and the constants the kernels share.
#pragma once

#include <cstdint>

namespace ae {

// 16-bit floats travel as bit patterns; distinct types let kernels overload on the dtype.
struct bf16_t {
  uint16_t bits;
};
struct f16_t {
  uint16_t bits;
};

// exp(x) for x < kExpFloor is taken as exactly 0: exp(−87.3) ≈ 1.2e-38 is the smallest normal f32, and a
// term that small can never move a row sum that contains exp(0) = 1.
constexpr float kExpFloor = -87.3f;
constexpr float kLog2e = 1.44269504088896341f;
constexpr float kLn2 = 0.693147180559945309f;
// The same floor in base 2 (the forward kernels work in log2 units): kExpFloor·log2(e).
constexpr float kExp2Floor = -125.9f;
// 2^f ≈ Σ kExp2PolyUnit[k]·f^k on 0 ≤ f < 1, fitted the same way (≤ 1.8e-7 evaluated in f32): for
// reductions that split x = ⌊x⌋ + f (AVX-512 reduce/scalef).
constexpr float kExp2PolyUnit[6] = {0.9999999403953552f, 0.6931530237197876f, 0.24015390872955322f,
                                    0.05582591891288757f, 0.0089894263073802f, 0.0018776666838675737f};
// 2^f ≈ Σ kExp2Poly[k]·f^k on |f| ≤ ½, fitted for relative error (≤ 2.4e-7 evaluated in f32).
constexpr float kExp2Poly[6] = {1.0000001192092896f, 0.6931469440460205f, 0.24022112786769867f, 0.05550713092088699f, 0.00967587810009718f, 0.00132774468511343f};

// −inf in each storage type, used to pad a row's ragged tail to a full vector (−inf contributes nothing).
template <typename T>
inline T negative_infinity();
template <>
inline float negative_infinity<float>() {
  return -__builtin_inff();
}
template <>
inline double negative_infinity<double>() {
  return -__builtin_inf();
}
template <>
inline bf16_t negative_infinity<bf16_t>() {
  return bf16_t{0xff80u};
}
template <>
inline f16_t negative_infinity<f16_t>() {
  return f16_t{0xfc00u};
}

}  // namespace ae
