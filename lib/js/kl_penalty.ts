/**
 * JS kernels of the KL estimators (SPEC §3), d = lp − ref, in f64:
 *   k1 = d,  abs = |d|,  k2 = ½d²,  k3 = exp(−d) − 1 + d  (−d clamped to ±20 before exp, value to ±10),
 * each with ∂/∂lp as autograd returns it (a binding clamp passes no gradient); the straight-through forms
 * ('k3+') keep the value and take the gradient of k2 (= d). Mirrors cuda/math/policy_loss_math.h kl_estimate.
 */
export const KL_ESTIMATORS = ['k1', 'abs', 'k2', 'k3'] as const;
export type KlEstimatorName = (typeof KL_ESTIMATORS)[number];
/**
 * The guards: none (TRL); k3's −d in ±20 before exp and its value in ±10 (engine default, verl); every
 * estimator's value in ±10 (OpenRLHF). Same order as KlClamp in cuda/math/policy_loss_math.h.
 */
export const KL_CLAMPS = ['none', 'k3', 'all'] as const;
export type KlClampName = (typeof KL_CLAMPS)[number];

export interface KlValue {
  value: number;
  grad: number;
}

export function klEstimate(est: KlEstimatorName, guard: KlClampName, straightThrough: boolean, lp: number, ref: number): KlValue {
  const d = lp - ref;
  const clamp = guard !== 'none';
  let out: KlValue;
  switch (est) {
    case 'k1':
      out = { value: d, grad: 1 };
      break;
    case 'abs':
      out = { value: Math.abs(d), grad: d > 0 ? 1 : d < 0 ? -1 : 0 };
      break;
    case 'k2':
      out = { value: 0.5 * d * d, grad: d };
      break;
    case 'k3': {
      const neg = -d;
      const negC = clamp ? Math.min(Math.max(neg, -20), 20) : neg;
      const inExp = !clamp || (neg >= -20 && neg <= 20) ? 1 : 0;
      const e = Math.exp(negC);
      const raw = e - negC - 1;
      const value = clamp ? Math.min(Math.max(raw, -10), 10) : raw;
      const inOut = !clamp || (raw >= -10 && raw <= 10) ? 1 : 0;
      out = { value, grad: (1 - e) * inExp * inOut };
      break;
    }
  }
  if (guard === 'all' && est !== 'k3') {
    const inside = out.value >= -10 && out.value <= 10 ? 1 : 0;
    out = { value: Math.min(Math.max(out.value, -10), 10), grad: out.grad * inside };
  }
  if (straightThrough) out.grad = d;
  return out;
}

/** klPenalty over arrays: value[i], grad[i] for each pair; returns the first non-finite index or −1. */
export function klPenalty(
  lp: Float32Array | Float64Array, ref: Float32Array | Float64Array, est: KlEstimatorName, guard: KlClampName,
  straightThrough: boolean, value: Float32Array | Float64Array, grad: Float32Array | Float64Array,
): number {
  let bad = -1;
  for (let i = 0; i < lp.length; i++) {
    const k = klEstimate(est, guard, straightThrough, lp[i], ref[i]);
    value[i] = k.value;
    grad[i] = k.grad;
    if (bad < 0 && !(Number.isFinite(lp[i]) && Number.isFinite(ref[i]))) bad = i;
  }
  return bad;
}
