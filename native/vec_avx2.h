// AVX2 + FMA + F16C vector of 8 f32 lanes for the kernel templates. Compiled only into
// token_stats_avx2.cc, which carries the target flags.
#pragma once

#include <immintrin.h>

#include <cstdint>

#include "storage.h"

namespace ae {
namespace avx2_isa {

struct Vec {
  using F = __m256;
  static constexpr int W = 8;

  static F set1(float x) { return _mm256_set1_ps(x); }
  static F zero() { return _mm256_setzero_ps(); }
  static F add(F a, F b) { return _mm256_add_ps(a, b); }
  static F sub(F a, F b) { return _mm256_sub_ps(a, b); }
  static F mul(F a, F b) { return _mm256_mul_ps(a, b); }
  static F fmadd(F a, F b, F c) { return _mm256_fmadd_ps(a, b, c); }
  static F fmsub(F a, F b, F c) { return _mm256_fmsub_ps(a, b, c); }
  static constexpr bool kFusedMultiplySubtract = true;
  static constexpr bool kExp2AnyExponent = false;  // exp2_clamped needs x ≥ kExp2Floor
  static F max(F a, F b) { return _mm256_max_ps(a, b); }
  static float reduce_add(F a) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  static float reduce_max(F a) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }

  // 16-bit integer lanes, 2·W of them, for the maximum of bf16 / f16 bit patterns (Max16, token_stats_kernels.h).
  using I16 = __m256i;
  static I16 i16_set1(int16_t v) { return _mm256_set1_epi16(v); }
  static I16 i16_load(const uint16_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
  static I16 i16_max(I16 a, I16 b) { return _mm256_max_epi16(a, b); }
  static I16 u16_min(I16 a, I16 b) { return _mm256_min_epu16(a, b); }
  static void i16_store(uint16_t* p, I16 v) { _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), v); }

  static F load(const float* p) { return _mm256_loadu_ps(p); }
  static F load(const bf16_t* p) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
  // 2·W bf16 entries as two vectors, even and odd entries (see vec_avx512.h).
  static void load_pair(const bf16_t* p, F& even, F& odd) {
    const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    even = _mm256_castsi256_ps(_mm256_slli_epi32(x, 16));
    odd = _mm256_castsi256_ps(_mm256_and_si256(x, _mm256_set1_epi32(static_cast<int>(0xffff0000u))));
  }
  static F load(const f16_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
  static F load(const double* p) {
    return _mm256_set_m128(_mm256_cvtpd_ps(_mm256_loadu_pd(p + 4)), _mm256_cvtpd_ps(_mm256_loadu_pd(p)));
  }

  template <typename T>
  static F centered(const T* p, F shift, F scale) { return _mm256_mul_ps(_mm256_sub_ps(load(p), shift), scale); }
  static F centered(const double* p, F shift, F scale) {
    const __m256d s = _mm256_cvtps_pd(_mm256_castps256_ps128(shift));
    const __m256d k = _mm256_cvtps_pd(_mm256_castps256_ps128(scale));
    const __m128 lo = _mm256_cvtpd_ps(_mm256_mul_pd(_mm256_sub_pd(_mm256_loadu_pd(p), s), k));
    const __m128 hi = _mm256_cvtpd_ps(_mm256_mul_pd(_mm256_sub_pd(_mm256_loadu_pd(p + 4), s), k));
    return _mm256_set_m128(hi, lo);
  }

  static void store(float* p, F v) { _mm256_storeu_ps(p, v); }
  static void store(bf16_t* p, F v) {
    const __m256i u = _mm256_castps_si256(v);
    const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    __m256i r = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7fff)), lsb), 16);
    const __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    r = _mm256_blendv_epi8(r, _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x40)), nan);
    // Pack the 8 low halves into 16 bytes (packus works in 128-bit lanes, then fix the lane order).
    const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0x08);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm256_castsi256_si128(packed));
  }
  static void store(f16_t* p, F v) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
  static void store(double* p, F v) {
    _mm256_storeu_pd(p, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
    _mm256_storeu_pd(p + 4, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
  }

  // 2^x for kExp2Floor ≤ x ≤ ~0 or NaN (see vec_avx512.h). Adding 1.5·2^23 rounds x to the nearest integer n
  // and leaves n in the low mantissa bits, so one add yields both n (as a float, after subtracting the magic
  // again) and the integer for the exponent field of 2^n (normal for n ≥ −126, i.e. x ≥ kExp2Floor).
  static F exp2_clamped(F x) {
    const F magic = _mm256_set1_ps(12582912.0f);
    const F shifted = _mm256_add_ps(x, magic);
    const F f = _mm256_sub_ps(x, _mm256_sub_ps(shifted, magic));
    F p = _mm256_set1_ps(kExp2Poly[5]);
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(kExp2Poly[4]));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(kExp2Poly[3]));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(kExp2Poly[2]));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(kExp2Poly[1]));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(kExp2Poly[0]));
    // bits(shifted) = bits(magic) + n; the exponent field of 2^n is n + 127.
    const __m256i pow2n = _mm256_slli_epi32(
        _mm256_sub_epi32(_mm256_castps_si256(shifted), _mm256_set1_epi32(0x4B400000 - 127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(pow2n));
  }
  // 2^x for any x ≤ ~0: exactly 0 below kExp2Floor (so −inf → 0), NaN stays NaN.
  static F exp2_nonpositive(F x) {
    const F keep = _mm256_cmp_ps(x, _mm256_set1_ps(kExp2Floor), _CMP_NLT_UQ);
    return _mm256_and_ps(keep, exp2_clamped(_mm256_max_ps(_mm256_set1_ps(kExp2Floor), x)));
  }
  // exp(t) for any t ≤ ~0: 0 below the same floor (so −inf → 0), NaN stays NaN.
  static F exp_nonpositive(F t) { return exp2_nonpositive(_mm256_mul_ps(t, _mm256_set1_ps(kLog2e))); }
  static F zero_where_zero(F e, F x) { return _mm256_and_ps(_mm256_cmp_ps(e, _mm256_setzero_ps(), _CMP_NEQ_UQ), x); }
};

}  // namespace avx2_isa
}  // namespace ae
