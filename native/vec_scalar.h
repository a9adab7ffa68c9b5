// Scalar "vector" of width 1: the portable contract every SIMD level must match. Same interface as
// vec_avx2.h and vec_avx512.h so one kernel template (token_stats_kernels.h) serves all three.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "../cuda/math/token_stats_math.h"
#include "storage.h"

namespace ae {
namespace scalar_isa {

struct Vec {
  using F = float;
  static constexpr int W = 1;

  static F set1(float x) { return x; }
  static F zero() { return 0.0f; }
  static F add(F a, F b) { return a + b; }
  static F sub(F a, F b) { return a - b; }
  static F mul(F a, F b) { return a * b; }
  static F fmadd(F a, F b, F c) { return a * b + c; }  // std::fma is a libm call without -mfma
  // a·b − c rounded twice (std::fma is a libm call without -mfma): kernels must not rely on it being fused.
  static F fmsub(F a, F b, F c) { return a * b - c; }
  static constexpr bool kFusedMultiplySubtract = false;
  static constexpr bool kExp2AnyExponent = false;  // exp2_clamped needs x ≥ kExp2Floor
  static F max(F a, F b) { return a > b ? a : b; }
  static float reduce_add(F a) { return a; }
  static float reduce_max(F a) { return a; }

  static F load(const float* p) { return *p; }
  static F load(const double* p) { return static_cast<float>(*p); }
  // 16-bit integer lanes, 2·W of them, for the maximum of bf16 / f16 bit patterns (Max16, token_stats_kernels.h).
  struct I16 {
    uint16_t lane[2];
  };
  static I16 i16_set1(int16_t v) { return I16{{static_cast<uint16_t>(v), static_cast<uint16_t>(v)}}; }
  static I16 i16_load(const uint16_t* p) { return I16{{p[0], p[1]}}; }
  static I16 i16_max(I16 a, I16 b) {
    for (int i = 0; i < 2; ++i)
      if (static_cast<int16_t>(b.lane[i]) > static_cast<int16_t>(a.lane[i])) a.lane[i] = b.lane[i];
    return a;
  }
  static I16 u16_min(I16 a, I16 b) {
    for (int i = 0; i < 2; ++i)
      if (b.lane[i] < a.lane[i]) a.lane[i] = b.lane[i];
    return a;
  }
  static void i16_store(uint16_t* p, I16 v) { std::memcpy(p, v.lane, sizeof v.lane); }

  static F load(const bf16_t* p) { return bf16_to_f32(p->bits); }
  static F load(const f16_t* p) { return f16_to_f32(p->bits); }
  static void load_pair(const bf16_t* p, F& even, F& odd) {
    even = load(p);
    odd = load(p + 1);
  }

  // (z − shift)·scale, subtracting in the input's own precision (f64 stays f64 until the product).
  template <typename T>
  static F centered(const T* p, float shift, float scale) { return (load(p) - shift) * scale; }
  static F centered(const double* p, float shift, float scale) {
    return static_cast<float>((*p - static_cast<double>(shift)) * static_cast<double>(scale));
  }

  static void store(float* p, F v) { *p = v; }
  static void store(double* p, F v) { *p = v; }
  static void store(bf16_t* p, F v) { p->bits = f32_to_bf16(v); }
  static void store(f16_t* p, F v) { p->bits = f32_to_f16(v); }

  // 2^x for kExp2Floor ≤ x ≤ ~0 or NaN.
  static F exp2_clamped(F x) { return std::exp2(x); }
  // exp(t) for any t ≤ ~0: exactly 0 below kExpFloor (so −inf → 0), NaN stays NaN.
  static F exp_nonpositive(F t) { return t < kExpFloor ? 0.0f : std::exp(t); }
  // 2^x for any x ≤ ~0: exactly 0 below kExp2Floor (so −inf → 0), NaN stays NaN.
  static F exp2_nonpositive(F x) { return x < kExp2Floor ? 0.0f : std::exp2(x); }
  // Where e == 0 (a −inf logit), x·e is defined as 0 even when x is ±inf (0·(−inf) := 0, SPEC §1.1).
  static F zero_where_zero(F e, F x) { return e == 0.0f ? 0.0f : x; }
};

}  // namespace scalar_isa
}  // namespace ae
