// AVX512 instantiation of the policy-loss row kernels (built with this ISA's target flags).
// No code sinking in the token loops: for the modes whose loss does not use the clipped ratio (sapo, reinforce,
// klCov) GCC sinks exp(δ) under the mask select, and the control flow that leaves stops the whole loop from
// vectorising (-fopt-info-vec: "control flow in loop"; sapo ran scalar, 0.07 of the read bandwidth).
#pragma GCC optimize("no-tree-sink")
#include "policy_loss.h"

#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

namespace ae {
namespace avx512_isa {
#include "policy_loss_kernels.h"

namespace {

// −x exactly (the sign flipped; 0 − x would turn −0 into +0).
inline __m512 negate(__m512 x) { return _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(x), _mm512_set1_epi32(INT32_MIN))); }

// exp of 16 lanes, the operations of ExpF32 (native/exp_f32.h) written out: clamp to ±87, n = trunc(x·log2 e ± ½),
// Cody–Waite reduction, degree-7 Horner, 2^n from the exponent bits (FMA wherever GCC contracts the scalar form).
inline __m512 exp_f32x16(__m512 x) {
  x = _mm512_min_ps(_mm512_set1_ps(87.0f), _mm512_max_ps(_mm512_set1_ps(-87.0f), x));
  const __mmask16 negative = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ);
  const __m512 half = _mm512_mask_blend_ps(negative, _mm512_set1_ps(0.5f), _mm512_set1_ps(-0.5f));
  const __m512i ni = _mm512_cvttps_epi32(_mm512_fmadd_ps(x, _mm512_set1_ps(1.44269504f), half));
  const __m512 n = _mm512_cvtepi32_ps(ni);
  const __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x));
  __m512 p = _mm512_set1_ps(1.0f / 5040.0f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  const __m512i bits = _mm512_slli_epi32(_mm512_add_epi32(ni, _mm512_set1_epi32(127)), 23);
  return _mm512_mul_ps(p, _mm512_castsi512_ps(bits));
}

// ppo on a row without extras (no reference, entropy, KL or entropy coefficient) and without weights or a token
// mask — the common case, and the bench's: the compiler-vectorised token loop spends as many instructions on
// storing each token's contributions and summing them in a second pass as on the loss itself, so here the
// sums stay in registers. The same function as token_loop + token_policy_loss<Ppo> (each lane sums positions
// j, j + 16, … in order, as there); any other row takes that generic loop.
template <bool kDual>
void row_ppo(const PolicyRow<float>& row, const PolicyParams<float>& p, RowOut& out) {
  const bool extras = row.ref != row.lp || row.kl_coef != 0.0f || row.ent_coef != 0.0f || row.has_entropy;
  const bool weighted = row.w != row.ones || row.e != row.m;
  if (extras || weighted) return row_token_mode_dual<float, PolicyMode::Ppo, kDual>(row, p, out);
  const float* __restrict lp = row.lp;
  const float* __restrict old = row.old;
  const float* __restrict adv = row.adv;
  const uint8_t* __restrict m = row.m;
  const __m512 clamp_low = _mm512_set1_ps(p.clamp_low), clamp_high = _mm512_set1_ps(p.clamp_high);
  const __m512 ratio_low = _mm512_set1_ps(p.ratio_low), ratio_high = _mm512_set1_ps(p.ratio_high);
  const __m512 dual_clip = _mm512_set1_ps(p.dual_clip), c_policy = _mm512_set1_ps(row.c_policy);
  const __m512 zero = _mm512_setzero_ps(), one = _mm512_set1_ps(1.0f);
  __m512 sum_policy = zero, sum_low = zero, sum_high = zero, sum_dual = zero, sum_neg_delta = zero, sum_ratio = zero;
  __m512 ratio_min = _mm512_set1_ps(INFINITY), ratio_max = _mm512_set1_ps(-INFINITY);
  // Outputs go through an aligned chunk buffer and out with streaming stores, as in token_loop (store_chunk).
  alignas(64) float loss_out[kChunk];
  alignas(64) float grad_out[kChunk];
  for (index_t t0 = 0; t0 < row.n; t0 += kChunk) {
    const int count = row.n - t0 < kChunk ? static_cast<int>(row.n - t0) : kChunk;
    for (int j = 0; j < count; j += 16) {
      const index_t t = t0 + j;
      // The last group of a row is partial: masked loads read nothing past it, and its lanes stay out of the sums.
      const __mmask16 in_row = count - j >= 16 ? __mmask16(0xffff) : __mmask16((1u << (count - j)) - 1u);
      const __m512 lp_t = _mm512_maskz_loadu_ps(in_row, lp + t);
      const __m512 old_t = _mm512_maskz_loadu_ps(in_row, old + t);
      const __m512 adv_t = _mm512_maskz_loadu_ps(in_row, adv + t);
      const __mmask16 valid = _mm512_mask_test_epi32_mask(in_row, _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(in_row, m + t)),
                                                          _mm512_set1_epi32(0xff));
      const __m512 raw = _mm512_sub_ps(lp_t, old_t);
      // clamp_value(x, lo, hi) with NaN kept: max / min return their second operand when either is NaN.
      const __m512 delta = _mm512_min_ps(clamp_high, _mm512_max_ps(clamp_low, raw));
      const __mmask16 inside = _mm512_cmp_ps_mask(delta, raw, _CMP_EQ_OQ);
      const __m512 r = exp_f32x16(delta);
      const __m512 rc = _mm512_min_ps(ratio_high, _mm512_max_ps(ratio_low, r));
      const __mmask16 high = _mm512_cmp_ps_mask(adv_t, zero, _CMP_GT_OQ) & _mm512_cmp_ps_mask(r, ratio_high, _CMP_GT_OQ);
      const __mmask16 negative = _mm512_cmp_ps_mask(adv_t, zero, _CMP_LT_OQ);
      const __mmask16 low = negative & _mm512_cmp_ps_mask(r, ratio_low, _CMP_LT_OQ);
      const __mmask16 clipped = high | low;
      const __m512 neg_adv = negate(adv_t);
      const __m512 unclipped = _mm512_mul_ps(neg_adv, r);
      __m512 loss = _mm512_mask_mul_ps(unclipped, clipped, neg_adv, rc);
      __mmask16 has_grad = inside & ~clipped;
      __mmask16 dual = 0;
      if (kDual) {
        const __m512 cap = _mm512_mul_ps(neg_adv, dual_clip);
        dual = negative & _mm512_cmp_ps_mask(loss, cap, _CMP_GT_OQ);
        loss = _mm512_mask_blend_ps(dual, loss, cap);
        has_grad &= ~dual;
      }
      _mm512_store_ps(loss_out + j, _mm512_maskz_mov_ps(valid, loss));
      _mm512_store_ps(grad_out + j, _mm512_maskz_mul_ps(valid & has_grad, c_policy, unclipped));
      // (x − x) is NaN exactly for a non-finite input: it makes the row's Σ −δ NaN (the non-finite check).
      const __m512 check = _mm512_add_ps(_mm512_add_ps(_mm512_sub_ps(lp_t, lp_t), _mm512_sub_ps(old_t, old_t)), _mm512_sub_ps(adv_t, adv_t));
      sum_policy = _mm512_mask_add_ps(sum_policy, valid, sum_policy, loss);
      sum_low = _mm512_mask_add_ps(sum_low, valid & low, sum_low, one);
      sum_high = _mm512_mask_add_ps(sum_high, valid & high, sum_high, one);
      if (kDual) sum_dual = _mm512_mask_add_ps(sum_dual, valid & dual, sum_dual, one);
      sum_neg_delta = _mm512_mask_add_ps(sum_neg_delta, valid, sum_neg_delta, _mm512_add_ps(negate(delta), check));
      sum_ratio = _mm512_mask_add_ps(sum_ratio, valid, sum_ratio, r);
      ratio_min = _mm512_mask_min_ps(ratio_min, valid, r, ratio_min);
      ratio_max = _mm512_mask_max_ps(ratio_max, valid, r, ratio_max);
    }
    store_chunk(row.loss_out + t0, loss_out, count);
    store_chunk(row.grad_out + t0, grad_out, count);
  }
  alignas(64) float lanes[8][16];
  _mm512_store_ps(lanes[0], sum_policy);
  _mm512_store_ps(lanes[1], sum_low);
  _mm512_store_ps(lanes[2], sum_high);
  _mm512_store_ps(lanes[3], sum_dual);
  _mm512_store_ps(lanes[4], sum_neg_delta);
  _mm512_store_ps(lanes[5], sum_ratio);
  _mm512_store_ps(lanes[6], ratio_min);
  _mm512_store_ps(lanes[7], ratio_max);
  for (int j = 0; j < 16; j++) {
    out.sums[kSumPolicyLoss] += static_cast<double>(lanes[0][j]);
    out.sums[kSumClippedLow] += static_cast<double>(lanes[1][j]);
    out.sums[kSumClippedHigh] += static_cast<double>(lanes[2][j]);
    out.sums[kSumDualClipped] += static_cast<double>(lanes[3][j]);
    out.sums[kSumNegLogRatio] += static_cast<double>(lanes[4][j]);
    out.sums[kSumRatio] += static_cast<double>(lanes[5][j]);
    out.ratio_min = lanes[6][j] < out.ratio_min ? lanes[6][j] : out.ratio_min;
    out.ratio_max = lanes[7][j] > out.ratio_max ? lanes[7][j] : out.ratio_max;
    out.non_finite = out.non_finite || lanes[4][j] != lanes[4][j];
  }
  stream_fence();
}

void row_ppo_any_dual(const PolicyRow<float>& row, const PolicyParams<float>& p, RowOut& out) {
  if (p.dual_clip > 0.0f) row_ppo<true>(row, p, out);
  else row_ppo<false>(row, p, out);
}

}  // namespace

void install_policy_loss(PolicyLossKernels& k) {
  fill_policy_row_kernels<float>(k.f32);
  k.f32[static_cast<int>(PolicyMode::Ppo)] = row_ppo_any_dual;
  fill_kl_chunk_kernels(k.kl_f32);
}
}  // namespace avx512_isa
}  // namespace ae
