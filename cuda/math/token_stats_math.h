// Token statistics math shared by the CPU kernels (native/) and the CUDA kernels (cuda/).
//
// A row of logits z ∈ R^V at temperature τ is summarised by a mergeable softmax state in u = z/τ space:
//   m = max u,  s = Σ exp(u − m),  t = Σ exp(u − m)·(u − m),  q = Σ exp(2(u − m))
// Any two states over disjoint parts of a row merge exactly (rescaling by exp(m_k − m)); a row, a block
// of a row, a vocabulary shard (SPEC §1.3) and a CUDA block all use this one state. From it:
//   lse = m + log s,  H = log s − t/s,  Σp² = q/s²,  max p = 1/s,  log p_y = u_y − lse.
// Keeping t centred on m (not Σ e·u) avoids the cancellation of Σ e·u − m·s when |m| is large.
// Precision: states are f64; kernels accumulate f32 within a block and hand f64 block states here.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "host_device.h"

namespace ae {

struct SoftmaxState {
  double m;  // max of u = z/τ over the part (−inf when the part is empty or all −inf)
  double s;  // Σ exp(u − m)
  double t;  // Σ exp(u − m)·(u − m)
  double q;  // Σ exp(2(u − m))
};

AE_HD SoftmaxState softmax_state_empty() { return SoftmaxState{-INFINITY, 0.0, 0.0, 0.0}; }

// Merges `part` into `acc`. A part with s == 0 (empty, or every entry −inf) carries no mass and is skipped:
// its m is −inf and rescaling it would compute 0·(−inf). NaN in either propagates through s.
AE_HD void softmax_state_merge(SoftmaxState& acc, const SoftmaxState& part) {
  if (part.s == 0.0) return;
  if (acc.s == 0.0) {
    acc = part;
    return;
  }
  if (part.m > acc.m) {
    const double d = acc.m - part.m;  // ≤ 0: rescale what we had to the new max
    const double a = exp(d);
    acc.t = a * (acc.t + d * acc.s) + part.t;
    acc.s = a * acc.s + part.s;
    acc.q = a * a * acc.q + part.q;
    acc.m = part.m;
  } else {
    const double d = part.m - acc.m;
    const double a = exp(d);
    acc.t += a * (part.t + d * part.s);
    acc.s += a * part.s;
    acc.q += a * a * part.q;
  }
}

// Re-expresses a state relative to another reference point m_new (e.g. the exact maximum when the kernel
// shifted by a rounded one): the sums are rescaled by exp(m − m_new) and t is shifted by m − m_new.
AE_HD SoftmaxState softmax_state_recenter(const SoftmaxState& st, double m_new) {
  if (st.s == 0.0 || st.m == m_new) return st;
  const double d = st.m - m_new;
  const double a = exp(d);
  return SoftmaxState{m_new, a * st.s, a * (st.t + d * st.s), a * a * st.q};
}

// True when the state describes a usable distribution (some finite mass, no NaN / +inf seen).
AE_HD bool softmax_state_finite(const SoftmaxState& st) {
  return st.s > 0.0 && st.s < INFINITY && st.m > -INFINITY && st.m < INFINITY && st.t == st.t && st.q == st.q;
}

struct TokenStatsRow {
  double lse, entropy, sum_pi_squared, max_prob;
};

AE_HD TokenStatsRow softmax_state_finalize(const SoftmaxState& st) {
  const double log_s = log(st.s);
  TokenStatsRow r;
  r.lse = st.m + log_s;
  // H = log s − t/s ≥ 0 in exact arithmetic; clamp the rounding of a one-hot row at 0.
  const double h = log_s - st.t / st.s;
  r.entropy = h > 0.0 ? h : 0.0;
  r.sum_pi_squared = st.q / (st.s * st.s);
  r.max_prob = 1.0 / st.s;
  return r;
}

// Full-vocabulary KL(p‖q) state over a part of a row: p from u = z/τ, q from v = r/τ.
//   mp = max u, sp = Σ exp(u − mp), mq = max v, sq = Σ exp(v − mq),
//   w = Σ exp(u − mp)·((u − mp) − (v − mq))       ⇒   KL = w/sp − log sp + log sq.
struct KlState {
  double mp, sp, mq, sq, w;
};

AE_HD KlState kl_state_empty() { return KlState{-INFINITY, 0.0, -INFINITY, 0.0, 0.0}; }

AE_HD void kl_state_merge(KlState& acc, const KlState& part) {
  // p and q are rescaled independently; w is weighted by p's rescale and shifted by the change of both maxima.
  const double mp = part.sp == 0.0 ? acc.mp : (acc.sp == 0.0 ? part.mp : fmax(acc.mp, part.mp));
  const double mq = part.sq == 0.0 ? acc.mq : (acc.sq == 0.0 ? part.mq : fmax(acc.mq, part.mq));
  double sp = 0.0, sq = 0.0, w = 0.0;
  const KlState* states[2] = {&acc, &part};
  for (int k = 0; k < 2; ++k) {
    const KlState& x = *states[k];
    double dq = 0.0;
    if (x.sq != 0.0) {
      dq = x.mq - mq;
      sq += exp(dq) * x.sq;
    }
    if (x.sp != 0.0) {
      const double dp = x.mp - mp;
      const double a = exp(dp);
      sp += a * x.sp;
      // mq of a part with no q-mass is −inf; its p-mass then sits where q = 0, so KL is +inf via w.
      w += a * (x.w + (dp - (x.sq != 0.0 ? dq : -INFINITY)) * x.sp);
    }
  }
  acc = KlState{mp, sp, mq, sq, w};
}

AE_HD double kl_state_finalize(const KlState& st) { return st.w / st.sp - log(st.sp) + log(st.sq); }

// Exact widening of 16-bit floats (bit patterns) to f32, for scalar and device code.
AE_HD float bf16_to_f32(uint16_t bits) {
  const uint32_t u = static_cast<uint32_t>(bits) << 16;
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

AE_HD float f16_to_f32(uint16_t bits) {
  const uint32_t sign = static_cast<uint32_t>(bits & 0x8000u) << 16;
  const uint32_t exponent = (bits >> 10) & 0x1fu;
  uint32_t mantissa = bits & 0x3ffu;
  uint32_t u;
  if (exponent == 0x1fu) {
    u = sign | 0x7f800000u | (mantissa << 13);  // inf / NaN
  } else if (exponent != 0) {
    u = sign | ((exponent + 112u) << 23) | (mantissa << 13);
  } else if (mantissa == 0) {
    u = sign;
  } else {
    // subnormal: normalise into an f32 normal
    uint32_t e = 113u;
    while ((mantissa & 0x400u) == 0) {
      mantissa <<= 1;
      --e;
    }
    u = sign | (e << 23) | ((mantissa & 0x3ffu) << 13);
  }
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

// Round-to-nearest-even narrowing, used when a gradient is written in the input's 16-bit dtype.
AE_HD uint16_t f32_to_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

AE_HD uint16_t f32_to_f16(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  const uint32_t sign = (u >> 16) & 0x8000u;
  const uint32_t abs = u & 0x7fffffffu;
  if (abs > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u);
  if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // ≥ 65520 rounds to inf
  if (abs < 0x38800000u) {                                                // below 2^-14: subnormal half
    if (abs < 0x33000000u) return static_cast<uint16_t>(sign);           // below 2^-25 rounds to 0
    const uint32_t exponent = abs >> 23;
    const uint32_t mantissa = (abs & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126u - exponent;  // 14..24
    uint32_t h = mantissa >> shift;
    const uint32_t rest = mantissa & ((1u << shift) - 1u);
    const uint32_t half = 1u << (shift - 1u);
    if (rest > half || (rest == half && (h & 1u))) ++h;
    return static_cast<uint16_t>(sign | h);
  }
  uint32_t h = ((abs - 0x38000000u) >> 13);
  const uint32_t rest = abs & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;
  return static_cast<uint16_t>(sign | h);
}

}  // namespace ae
