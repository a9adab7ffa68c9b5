// Per-token math of the policy losses (SPEC §2) and KL estimators (SPEC §3), shared by the CPU kernels
// (native/policy_loss_kernels.h, native/kl_penalty.cc) and the CUDA kernels. Templated on the arithmetic type
// R (float in the vectorised kernels, double in the exact path) and on the exp function, and written
// branch-free (selects, not ifs) so that the CPU loops auto-vectorise.
//
// Every function returns a value and its derivative with respect to the current policy's log-prob `lp`, the
// derivative autograd would return for the expression as written: a clamp passes gradient only inside its
// bounds (inclusive), max/min pass it to the larger/smaller branch (an exact tie splits it in halves, which
// for these expressions gives the same total), and sg(·) passes none.
#pragma once

#include <cmath>
#include <cstdint>

#include "host_device.h"

namespace ae {

enum class PolicyMode : int32_t { Ppo = 0, Gppo, Gspo, Sapo, Cispo, Gmpo, Reinforce, ClipCov, KlCov };
enum class KlEstimator : int32_t { K1 = 0, Abs, K2, K3 };
// Which guards the KL estimators apply: none (TRL); k3's −d in ±20 before exp and value in ±10 (engine, verl);
// every estimator's value in ±10 (OpenRLHF, whose k3 has no input clamp — the same function, since k3 ≥ 10
// wherever −d would leave ±20).
enum class KlClamp : int32_t { None = 0, K3 = 1, AllOutputs = 2 };


// Parameters of one policy-loss call as the token math sees them (bounds already resolved by the caller).
template <typename R>
struct PolicyParams {
  PolicyMode mode;
  R ratio_low, ratio_high;  // r is clipped to [ratio_low, ratio_high] (1 − clipLow, 1 + clipHigh; cispo: see TS)
  R log_low, log_high;      // gmpo: δ is clipped to [log_low, log_high] = [−clipLow, clipHigh]
  R dual_clip;              // ppo/gppo with A < 0: cap −A·r at −A·dual_clip; 0 = off
  R clamp_low, clamp_high;  // δ = lp − old is clamped to [clamp_low, clamp_high] before exp (±inf = off)
  R tau_pos, tau_neg;       // sapo temperatures
  R cov_coef;               // klCov: coefficient of |δ| on the selected tokens
  R gmpo_count_outside;     // 1: gmpo's clip metrics count every δ outside the bounds (verl), 0: binding clips
};

// The metric flags are values of R (0 or 1), not bits: the vectorised loops add them up directly.
template <typename R>
struct TokenLoss {
  R loss;   // ℓ, the policy term of this token
  R grad;   // ∂ℓ/∂lp
  R ratio;  // the importance ratio the mode uses (for the ratio metrics)
  R clipped_low, clipped_high, dual_clipped;
};

template <typename R>
AE_HD R clamp_value(R x, R lo, R hi) {
  return x < lo ? lo : (x > hi ? hi : x);
}

// 1 where `c` holds, else 0. The token math keeps its conditions as R values and combines them by products:
// the compiler vectorises selects on R, not logic on bool next to R lanes.
template <typename R>
AE_HD R flag(bool c) {
  return c ? R(1) : R(0);
}

// The token-level modes (everything but gspo and gmpo, whose ratio is a sequence's and which the kernels
// handle with the row's sequence statistics). `selected` (0/1) marks the tokens clipCov zeroes / klCov
// penalises. The mode is a template parameter and every branch inside is a select, so the loops vectorise.
// kDual = false: the caller knows the dual clip is off (p.dual_clip == 0) and its terms are left out.
template <PolicyMode M, typename R, typename Exp, bool kDual = true>
AE_HD TokenLoss<R> token_policy_loss(const PolicyParams<R>& p, R lp, R old, R adv, R selected, Exp exp_fn) {
  const R delta_raw = lp - old;
  const R delta = clamp_value(delta_raw, p.clamp_low, p.clamp_high);
  const R inside = flag<R>(delta == delta_raw);  // the clamp passes gradient where it leaves δ unchanged
  const R r = exp_fn(delta);
  const R rc = clamp_value(r, p.ratio_low, p.ratio_high);
  const R high = flag<R>(adv > R(0)) * flag<R>(r > p.ratio_high);
  const R low = flag<R>(adv < R(0)) * flag<R>(r < p.ratio_low);
  if constexpr (M == PolicyMode::Ppo || M == PolicyMode::Gppo || M == PolicyMode::ClipCov) {
    // max(−A·r, −A·clip(r)): the clipped branch is active exactly when A·(r − clip(r)) > 0.
    const R clipped = high + low;
    const R clip_loss = clipped > R(0) ? -adv * rc : -adv * r;
    const R clip_grad = clipped > R(0) ? (M == PolicyMode::Gppo ? -adv * rc : R(0)) : -adv * r;
    const R cap = -adv * p.dual_clip;
    const R dual = (M == PolicyMode::ClipCov || !kDual) ? R(0)
                   : flag<R>(p.dual_clip > R(0)) * flag<R>(adv < R(0)) * flag<R>(clip_loss > cap);
    const R zeroed = M == PolicyMode::ClipCov ? selected : R(0);
    const R loss = zeroed > R(0) ? R(0) : (dual > R(0) ? cap : clip_loss);
    const R grad = zeroed + dual > R(0) ? R(0) : clip_grad;
    return {loss, grad * inside, r, low, high, dual};
  } else if constexpr (M == PolicyMode::Sapo) {
    // σ(z) with z = τ(r − 1), and σ(1 − σ) as e/(1 + e)² with e = exp(−z): 1 − σ cancels as σ → 1.
    const R tau = adv > R(0) ? p.tau_pos : p.tau_neg;
    const R e = exp_fn(clamp_value(-tau * (r - R(1)), R(-80), R(80)));
    const R sig = R(1) / (R(1) + e);
    return {-adv * (R(4) / tau) * sig, -adv * R(4) * (e * sig * sig) * r * inside, r, R(0), R(0), R(0)};
  } else if constexpr (M == PolicyMode::Cispo) {
    // −sg(clip(r))·A·lp: the weight carries no gradient, so neither does the clamp of δ.
    return {-rc * adv * lp, -rc * adv, r, flag<R>(r < p.ratio_low), flag<R>(r > p.ratio_high), R(0)};
  } else if constexpr (M == PolicyMode::Reinforce) {
    return {-adv * lp, -adv, r, R(0), R(0), R(0)};
  } else {
    static_assert(M == PolicyMode::KlCov, "gspo and gmpo have their own token functions");
    const R abs_delta = delta < R(0) ? -delta : delta;
    const R sign_delta = delta > R(0) ? R(1) : (delta < R(0) ? R(-1) : R(0));
    const R loss = -adv * r + selected * p.cov_coef * abs_delta;
    const R grad = (-adv * r + selected * p.cov_coef * sign_delta) * inside;
    return {loss, grad, r, R(0), R(0), R(0)};
  }
}

// gspo, per token, given the sequence's log-ratio log s_b (already averaged and clamped) and whether the
// sequence clamp passes gradient: the token form sg(log s_b) + lp − sg(lp) has ∂/∂lp = 1.
template <typename R>
AE_HD TokenLoss<R> gspo_token_loss(const PolicyParams<R>& p, R seq_ratio, R seq_inside, R adv) {
  const R rc = clamp_value(seq_ratio, p.ratio_low, p.ratio_high);
  const R high = flag<R>(adv > R(0)) * flag<R>(seq_ratio > p.ratio_high);
  const R low = flag<R>(adv < R(0)) * flag<R>(seq_ratio < p.ratio_low);
  const bool clipped = high + low > R(0);
  return {clipped ? -adv * rc : -adv * seq_ratio, clipped ? R(0) : -adv * seq_ratio * seq_inside, seq_ratio, low, high,
          R(0)};
}

// gmpo's sign-aware log-space clip of one token: δ* = sgn(A)·min(sgn(A)·δ, sgn(A)·clip(δ, lo, hi)).
// `grad` = ∂δ*/∂δ: 1 where the unclipped branch is the smaller (or ties), 0 where the clip binds or A = 0.
// The side flags count tokens where the clip binds (A > 0 and δ > hi, A < 0 and δ < lo); with
// `count_outside` (verl's pg_clipfrac) every δ outside [lo, hi], by the sign of A.
template <typename R>
struct GmpoToken {
  R delta_star;
  R grad;
  R clipped_low, clipped_high;
};

template <typename R>
AE_HD GmpoToken<R> gmpo_token(const PolicyParams<R>& p, R delta, R adv) {
  const R sgn = adv > R(0) ? R(1) : (adv < R(0) ? R(-1) : R(0));
  const R dc = clamp_value(delta, p.log_low, p.log_high);
  const R clip_wins = flag<R>(sgn * delta > sgn * dc);
  const R counted = p.gmpo_count_outside > R(0) ? flag<R>(delta != dc) : clip_wins;
  return {sgn * (clip_wins > R(0) ? sgn * dc : sgn * delta), (sgn != R(0) ? R(1) : R(0)) * (R(1) - clip_wins),
          counted * flag<R>(adv < R(0)), counted * flag<R>(adv > R(0))};
}

// k3's pieces, e^x − 1 − x and e^x − 1, for x = −d (clamped). In f32 both cancel for small |x| (k3 ≈ x²/2
// next to terms of size 1), so below |x| < 1.5 they are summed as Taylor series (truncation < 5e-8 relative);
// in f64 the plain formulas are what the trainers compute (and what the verl vectors reproduce to 1e-9).
template <typename Exp>
AE_HD float exp_m1_mx(float x, Exp exp_fn) {
  // Horner from 1/14! down to 1/2!, then ·x² (both branches computed: a select keeps the loops vectorised).
  float t = 1.0f / 87178291200.0f;
  t = t * x + 1.0f / 6227020800.0f;
  t = t * x + 1.0f / 479001600.0f;
  t = t * x + 1.0f / 39916800.0f;
  t = t * x + 1.0f / 3628800.0f;
  t = t * x + 1.0f / 362880.0f;
  t = t * x + 1.0f / 40320.0f;
  t = t * x + 1.0f / 5040.0f;
  t = t * x + 1.0f / 720.0f;
  t = t * x + 1.0f / 120.0f;
  t = t * x + 1.0f / 24.0f;
  t = t * x + 1.0f / 6.0f;
  t = t * x + 0.5f;
  // Both are finite (exp_fn clamps), so an arithmetic blend picks one exactly; a select here would make the
  // compiler branch around exp_fn and stop vectorising the token loops.
  const float direct = exp_fn(x) - 1.0f - x;
  const float near = (x < 0.0f ? -x : x) < 1.5f ? 1.0f : 0.0f;
  return near * (t * x * x) + (1.0f - near) * direct;
}
template <typename Exp>
AE_HD double exp_m1_mx(double x, Exp exp_fn) {
  return exp_fn(x) - 1.0 - x;
}
template <typename Exp>
AE_HD float exp_m1(float x, Exp exp_fn) {
  return exp_m1_mx(x, exp_fn) + x;
}
template <typename Exp>
AE_HD double exp_m1(double x, Exp exp_fn) {
  return exp_fn(x) - 1.0;
}

// KL estimators of SPEC §3 with d = lp − ref: value and ∂/∂lp, guarded as `clamp` says (a binding clamp passes
// no gradient). `straight_through` ("k3+"): the value of the estimator with the gradient of k2 (= d).
template <typename R>
struct KlValue {
  R value;
  R grad;
};

template <typename R, typename Exp>
AE_HD KlValue<R> kl_estimate(KlEstimator est, KlClamp guard, bool straight_through, R lp, R ref, Exp exp_fn) {
  const R d = lp - ref;
  // k3 with its guards; every estimator is computed and one selected, so the token loops carry no branch.
  const bool clamp = guard != KlClamp::None;
  const R neg = -d;
  const R neg_c = clamp ? clamp_value(neg, R(-20), R(20)) : neg;
  const R in_exp = clamp ? flag<R>(neg >= R(-20)) * flag<R>(neg <= R(20)) : R(1);
  const R k3_raw = exp_m1_mx(neg_c, exp_fn);
  const R k3 = clamp ? clamp_value(k3_raw, R(-10), R(10)) : k3_raw;
  const R k3_in = clamp ? flag<R>(k3_raw >= R(-10)) * flag<R>(k3_raw <= R(10)) : R(1);
  // ∂/∂lp of e^{−d} − (−d) − 1 is −(e^{−d} − 1), through the inner clamp of −d.
  const R k3_grad = -exp_m1(neg_c, exp_fn) * in_exp * k3_in;
  const R abs_d = d < R(0) ? -d : d;
  const R sign_d = d > R(0) ? R(1) : (d < R(0) ? R(-1) : R(0));
  R value = est == KlEstimator::K1 ? d : est == KlEstimator::Abs ? abs_d : est == KlEstimator::K2 ? R(0.5) * d * d : k3;
  R grad = est == KlEstimator::K1 ? R(1) : est == KlEstimator::Abs ? sign_d : est == KlEstimator::K2 ? d : k3_grad;
  // OpenRLHF clamps every estimator's value (k3 is already inside ±10).
  const bool out_clamp = guard == KlClamp::AllOutputs && est != KlEstimator::K3;
  const R out_inside = flag<R>(value >= R(-10)) * flag<R>(value <= R(10));
  grad = out_clamp ? grad * out_inside : grad;
  value = out_clamp ? clamp_value(value, R(-10), R(10)) : value;
  // A blend, not a select on the run-time flag (which the compiler keeps as a branch and then cannot vectorise);
  // written as two products so that each side is exact (grad + st·(d − grad) rounds d − 1 for k1+ and loses
  // the digits of a small d).
  const R st = straight_through ? R(1) : R(0);
  return {value, grad * (R(1) - st) + d * st};
}

}  // namespace ae
