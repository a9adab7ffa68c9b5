// AVX-512 (F, BW, VL, DQ) vector of 16 f32 lanes for the kernel templates. Compiled only into
// token_stats_avx512.cc, which carries the target flags; the baseline translation units stay x86-64.
#pragma once

#include <immintrin.h>

#include <cstdint>

#include "storage.h"

namespace ae {
namespace avx512_isa {

struct Vec {
  using F = __m512;
  static constexpr int W = 16;

  static F set1(float x) { return _mm512_set1_ps(x); }
  static F zero() { return _mm512_setzero_ps(); }
  static F add(F a, F b) { return _mm512_add_ps(a, b); }
  static F sub(F a, F b) { return _mm512_sub_ps(a, b); }
  static F mul(F a, F b) { return _mm512_mul_ps(a, b); }
  static F fmadd(F a, F b, F c) { return _mm512_fmadd_ps(a, b, c); }
  static F fmsub(F a, F b, F c) { return _mm512_fmsub_ps(a, b, c); }
  static constexpr bool kFusedMultiplySubtract = true;
  // exp2_clamped takes any x ≤ 0 (scalef scales by 2^⌊x⌋ itself): see block_state's kClamp.
  static constexpr bool kExp2AnyExponent = true;
  static F max(F a, F b) { return _mm512_max_ps(a, b); }
  static float reduce_add(F a) { return _mm512_reduce_add_ps(a); }
  static float reduce_max(F a) { return _mm512_reduce_max_ps(a); }

  // 16-bit integer lanes, 2·W of them, for the maximum of bf16 / f16 bit patterns (Max16, token_stats_kernels.h).
  using I16 = __m512i;
  static I16 i16_set1(int16_t v) { return _mm512_set1_epi16(v); }
  static I16 i16_load(const uint16_t* p) { return _mm512_loadu_si512(p); }
  static I16 i16_max(I16 a, I16 b) { return _mm512_max_epi16(a, b); }
  static I16 u16_min(I16 a, I16 b) { return _mm512_min_epu16(a, b); }
  static void i16_store(uint16_t* p, I16 v) { _mm512_storeu_si512(p, v); }

  static F load(const float* p) { return _mm512_loadu_ps(p); }
  static F load(const bf16_t* p) {
    // bf16 → f32 is a 16-bit left shift of the bit pattern: exact, in registers.
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
  // 2·W bf16 entries as two vectors, the even entries in one and the odd in the other: each 32-bit lane holds a
  // pair, and a pair's low half shifted up (or its high half masked) is the f32 value, one instruction each.
  static void load_pair(const bf16_t* p, F& even, F& odd) {
    const __m512i x = _mm512_loadu_si512(p);
    even = _mm512_castsi512_ps(_mm512_slli_epi32(x, 16));
    odd = _mm512_castsi512_ps(_mm512_and_si512(x, _mm512_set1_epi32(static_cast<int>(0xffff0000u))));
  }
  static F load(const f16_t* p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  static F load(const double* p) {
    const __m256 lo = _mm512_cvtpd_ps(_mm512_loadu_pd(p));
    const __m256 hi = _mm512_cvtpd_ps(_mm512_loadu_pd(p + 8));
    return _mm512_insertf32x8(_mm512_castps256_ps512(lo), hi, 1);
  }

  template <typename T>
  static F centered(const T* p, F shift, F scale) { return _mm512_mul_ps(_mm512_sub_ps(load(p), shift), scale); }
  static F centered(const double* p, F shift, F scale) {
    // Subtract in f64 so that large f64 logits keep their low bits before narrowing.
    const __m512d s = _mm512_cvtps_pd(_mm512_castps512_ps256(shift));
    const __m512d k = _mm512_cvtps_pd(_mm512_castps512_ps256(scale));
    const __m256 lo = _mm512_cvtpd_ps(_mm512_mul_pd(_mm512_sub_pd(_mm512_loadu_pd(p), s), k));
    const __m256 hi = _mm512_cvtpd_ps(_mm512_mul_pd(_mm512_sub_pd(_mm512_loadu_pd(p + 8), s), k));
    return _mm512_insertf32x8(_mm512_castps256_ps512(lo), hi, 1);
  }

  static void store(float* p, F v) { _mm512_storeu_ps(p, v); }
  static void store(bf16_t* p, F v) {
    // Round to nearest even; NaN kept quiet.
    const __m512i u = _mm512_castps_si512(v);
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    __m512i r = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)), lsb), 16);
    const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    r = _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtepi32_epi16(r));
  }
  static void store(f16_t* p, F v) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
  static void store(double* p, F v) {
    _mm512_storeu_pd(p, _mm512_cvtps_pd(_mm512_castps512_ps256(v)));
    _mm512_storeu_pd(p + 8, _mm512_cvtps_pd(_mm512_extractf32x8_ps(v, 1)));
  }

  // 2^x for kExp2Floor ≤ x ≤ ~0 or NaN (NaN stays NaN): x = n + f, |f| ≤ ½, 2^f by a degree-5 polynomial
  // fitted for relative error (≤ 2.4e-7 evaluated in f32), 2^n by scalef. Working in base 2 saves the
  // ln2 reduction: callers scale their argument by log2(e) once, together with 1/τ.
  static F exp2_clamped(F x) {
    // f = x − ⌊x⌋ ∈ [0, 1) in one instruction; scalef multiplies by 2^⌊x⌋ itself, so n is never formed.
    const F f = _mm512_reduce_ps(x, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    F p = _mm512_set1_ps(kExp2PolyUnit[5]);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(kExp2PolyUnit[4]));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(kExp2PolyUnit[3]));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(kExp2PolyUnit[2]));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(kExp2PolyUnit[1]));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(kExp2PolyUnit[0]));
    return _mm512_scalef_ps(p, x);
  }
  // 2^x for any x ≤ ~0: exactly 0 below kExp2Floor (so −inf → 0), NaN stays NaN.
  static F exp2_nonpositive(F x) {
    const __mmask16 keep = _mm512_cmp_ps_mask(x, _mm512_set1_ps(kExp2Floor), _CMP_NLT_UQ);
    return _mm512_maskz_mov_ps(keep, exp2_clamped(_mm512_max_ps(_mm512_set1_ps(kExp2Floor), x)));
  }
  // exp(t) for any t ≤ ~0: 0 below the same floor (so −inf → 0), NaN stays NaN.
  static F exp_nonpositive(F t) { return exp2_nonpositive(_mm512_mul_ps(t, _mm512_set1_ps(kLog2e))); }
  static F zero_where_zero(F e, F x) {
    return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(e, _mm512_setzero_ps(), _CMP_NEQ_UQ), x);
  }
};

}  // namespace avx512_isa
}  // namespace ae
