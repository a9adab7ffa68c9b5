/**
 * Float64 reference for importance ratios, policy losses, KL estimators and rollout correction (SPEC §2, §2.1,
 * §2.2, §3; contract in the policyLoss TSDoc). Deliberately plain: loops over b and t, Math.exp, every value a
 * JS number, no shared kernels with lib/. Written from the SPEC, not from the implementation.
 *
 *   δ = clamp(lp − old, ±ratioClamp), r = exp(δ)            (a clamped δ has zero gradient)
 *   L = w·e·ℓ + klCoef·k(lp, ref) − entropyCoef·H          (w = isWeights·rollout weights, e = tokenMask·rollout mask)
 *   loss = Σ m·(c_b·w·e·ℓ + c_b·(KL − entropy)),  gradLogprob = m·∂(that)/∂lp,  gradEntropy = −entropyCoef·c_b·m
 *   c_b: token-mean 1/N, seq-mean-token-mean 1/(|y_b|·S), seq-mean-token-sum 1/S, seq-mean-token-sum-norm 1/C
 *   gmpo: policy part Σ_b −Ā_b·ρ_b / S instead of the token sum (KL / entropy still use c_b)
 *   gspo: policy part with the seq-mean-token-mean weight whatever `aggregation` says (KL / entropy use c_b)
 *
 * The gradient is that of the expression as written, sg(·) included (SPEC §2 preamble). `frozenLogprob` evaluates
 * every sg(·) factor (gspo's sequence ratio, cispo's clipped weight, gppo's 1/sg(r), the '+' KL forward value, the
 * clipCov / klCov covariance selection) at another point than `logprob`: the loss as a function of `logprob` with
 * `frozenLogprob` fixed is then the autograd surrogate whose derivative at logprob = frozenLogprob is the returned
 * gradient. That is what the finite-difference tests differentiate.
 */

const { exp, abs, floor, max, min, sqrt } = Math;

export type Arr = ArrayLike<number>;
export type Mode = 'ppo' | 'gppo' | 'gspo' | 'sapo' | 'cispo' | 'gmpo' | 'reinforce' | 'clipCov' | 'klCov';
export type Aggregation = 'token-mean' | 'seq-mean-token-mean' | 'seq-mean-token-sum' | 'seq-mean-token-sum-norm';
export type KlEstimator = 'k1' | 'abs' | 'k2' | 'k3' | 'k1+' | 'abs+' | 'k3+';

export const MODES: readonly Mode[] = ['ppo', 'gppo', 'gspo', 'sapo', 'cispo', 'gmpo', 'reinforce', 'clipCov', 'klCov'];
export const AGGREGATIONS: readonly Aggregation[] = [
  'token-mean', 'seq-mean-token-mean', 'seq-mean-token-sum', 'seq-mean-token-sum-norm',
];
export const KL_ESTIMATORS: readonly KlEstimator[] = ['k1', 'abs', 'k2', 'k3', 'k1+', 'abs+', 'k3+'];

/** SPEC §3 guards of k3: −d clamped to ±20 before exp, the output to ±10. */
export const K3_EXP_CLAMP = 20;
export const K3_OUT_CLAMP = 10;
/** SPEC §2.2: log-weights clamped to ±20 before exp (token and sequence levels). */
export const ROLLOUT_LOG_CLAMP = 20;

// ---- §3 KL estimators ----

export interface KlPoint {
  value: number;
  grad: number;
}

/** One estimator at d = lp − ref (value, ∂/∂lp). Exactly at a clamp or at d = 0 for abs: the one-sided choice below. */
export function refKlAt(d: number, estimator: KlEstimator, clamp = true): KlPoint {
  const base = estimator.endsWith('+') ? (estimator.slice(0, -1) as KlEstimator) : estimator;
  let value: number;
  let grad: number;
  if (base === 'k1') {
    value = d;
    grad = 1;
  } else if (base === 'abs') {
    value = abs(d);
    grad = d > 0 ? 1 : d < 0 ? -1 : 0;
  } else if (base === 'k2') {
    value = 0.5 * d * d;
    grad = d;
  } else {
    // k3 = exp(x) − x − 1 with x = ref − lp = −d; ∂/∂lp = −(exp(x) − 1) = 1 − exp(−d)
    let x = -d;
    let inside = true;
    if (clamp && (x > K3_EXP_CLAMP || x < -K3_EXP_CLAMP)) {
      x = x > 0 ? K3_EXP_CLAMP : -K3_EXP_CLAMP;
      inside = false;
    }
    value = exp(x) - x - 1;
    grad = inside ? 1 - exp(x) : 0;
    if (clamp && (value > K3_OUT_CLAMP || value < -K3_OUT_CLAMP)) {
      value = value > 0 ? K3_OUT_CLAMP : -K3_OUT_CLAMP;
      grad = 0;
    }
  }
  if (estimator.endsWith('+')) grad = d; // straight-through: gradient of k2
  return { value, grad };
}

export interface RefKl {
  value: Float64Array;
  grad: Float64Array;
}

export function refKlPenalty(logprob: Arr, refLogprob: Arr, estimator: KlEstimator = 'k3', clamp = true): RefKl {
  const n = logprob.length;
  const value = new Float64Array(n);
  const grad = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const k = refKlAt(logprob[i] - refLogprob[i], estimator, clamp);
    value[i] = k.value;
    grad[i] = k.grad;
  }
  return { value, grad };
}

/**
 * The KL term as an autograd surrogate: for '+' forms, value(sg d) + ½d² − ½sg(d)², whose value at d = d0 is the
 * named estimator and whose derivative is d (k2). Plain forms: the estimator itself.
 */
export function refKlSurrogate(d: number, d0: number, estimator: KlEstimator, clamp = true): number {
  if (!estimator.endsWith('+')) return refKlAt(d, estimator, clamp).value;
  return refKlAt(d0, estimator, clamp).value + 0.5 * d * d - 0.5 * d0 * d0;
}

/** SPEC §3 adaptive controller: e = clip(KL/target − 1, ±0.2), β ← β·(1 + e·nSteps/horizon). */
export function refAdaptiveKl(beta: number, currentKl: number, targetKl: number, horizon: number, nSteps: number): number {
  const e = max(-0.2, min(0.2, currentKl / targetKl - 1));
  return beta * (1 + (e * nSteps) / horizon);
}

// ---- §2.2 rollout correction ----

export type RolloutLevel = 'token' | 'sequence' | 'geometric';
export type RolloutMode = 'truncate' | 'mask';
export type RejectStatistic = 'k1' | 'k2' | 'k3';
export type RejectAggregate = 'token' | 'sum' | 'mean' | 'max';

export interface RefRolloutOptions {
  level?: RolloutLevel;
  mode?: RolloutMode;
  low?: number | null;
  high?: number;
  reject?: { statistic: RejectStatistic; aggregate: RejectAggregate; bound: number };
}

export interface RefRolloutMetrics {
  weightMean: number;
  weightMin: number;
  weightMax: number;
  weightStd: number;
  fractionTruncatedHigh: number;
  fractionTruncatedLow: number;
  fractionRejected: number;
  ess: number;
  chi2: number;
  mismatchKl: number;
}

export interface RefRollout {
  /** Final weights (after truncation); 0 at masked and dropped positions. */
  weights: Float64Array;
  /** Input mask ∧ kept by `mode: 'mask'` ∧ not rejected (the tokens kept). */
  mask: Uint8Array;
  /** The level's weight before truncation / masking. */
  raw: Float64Array;
  /** 1 where the reject rule dropped a valid token. */
  rejected: Uint8Array;
  metrics: RefRolloutMetrics;
}

export interface RefRolloutInputs {
  oldLogprob: Arr;
  rolloutLogprob: Arr;
  mask: Arr;
  shape: readonly [number, number] | readonly number[];
}

/** k1 = −δ_r, k2 = ½δ_r², k3 = exp(δ_r) − 1 − δ_r on δ_r clamped to ±20 (verl's rollout_corr_helper guard). */
function rejectStatistic(deltaR: number, statistic: RejectStatistic): number {
  const d = clampAbs(deltaR, ROLLOUT_LOG_CLAMP);
  if (statistic === 'k1') return -d;
  if (statistic === 'k2') return 0.5 * d * d;
  return exp(d) - 1 - d;
}

function clampAbs(x: number, bound: number): number {
  return x > bound ? bound : x < -bound ? -bound : x;
}

export function refRolloutCorrection(inputs: RefRolloutInputs, opts: RefRolloutOptions = {}): RefRollout {
  const [B, T] = inputs.shape;
  const level = opts.level ?? 'token';
  const mode = opts.mode ?? 'truncate';
  const low = opts.low ?? null;
  const high = opts.high ?? 2;
  const m = inputs.mask;
  const n = B * T;
  const raw = new Float64Array(n);
  const weights = new Float64Array(n);
  const mask = new Uint8Array(n);
  const rejected = new Uint8Array(n);
  let valid = 0;
  let truncHigh = 0;
  let truncLow = 0;
  let nDropped = 0;
  let rawSq = 0;
  let mismatch = 0;
  for (let b = 0; b < B; b++) {
    let len = 0;
    let sumDelta = 0;
    for (let t = 0; t < T; t++) {
      const i = b * T + t;
      if (m[i] === 0) continue;
      len++;
      sumDelta += inputs.oldLogprob[i] - inputs.rolloutLogprob[i];
    }
    let rowWeight = 0;
    if (level === 'sequence') rowWeight = exp(clampAbs(sumDelta, ROLLOUT_LOG_CLAMP));
    else if (level === 'geometric') rowWeight = len > 0 ? exp(sumDelta / len) : 1;
    // reject: per-row aggregate of the statistic over valid tokens
    let rowStat = 0;
    if (opts.reject && opts.reject.aggregate !== 'token') {
      let acc = opts.reject.aggregate === 'max' ? -Infinity : 0;
      for (let t = 0; t < T; t++) {
        const i = b * T + t;
        if (m[i] === 0) continue;
        const s = rejectStatistic(inputs.oldLogprob[i] - inputs.rolloutLogprob[i], opts.reject.statistic);
        acc = opts.reject.aggregate === 'max' ? max(acc, s) : acc + s;
      }
      rowStat = opts.reject.aggregate === 'mean' ? (len > 0 ? acc / len : 0) : acc;
    }
    for (let t = 0; t < T; t++) {
      const i = b * T + t;
      if (m[i] === 0) continue;
      valid++;
      const deltaR = inputs.oldLogprob[i] - inputs.rolloutLogprob[i];
      mismatch += -deltaR;
      const w = level === 'token' ? exp(clampAbs(deltaR, ROLLOUT_LOG_CLAMP)) : rowWeight;
      raw[i] = w;
      const isHigh = w > high;
      const isLow = low !== null && w < low;
      if (isHigh) truncHigh++;
      if (isLow) truncLow++;
      rawSq += w * w;
      let keep = 1;
      if (mode === 'truncate') weights[i] = isHigh ? high : isLow ? (low as number) : w;
      else if (isHigh || isLow) keep = 0;
      else weights[i] = w;
      if (opts.reject) {
        const s = opts.reject.aggregate === 'token' ? rejectStatistic(deltaR, opts.reject.statistic) : rowStat;
        if (s > opts.reject.bound) {
          rejected[i] = 1;
          keep = 0;
        }
      }
      // dropped (rejected, or outside the bounds in mask mode): weight 0, mask 0
      if (!keep) {
        weights[i] = 0;
        nDropped++;
      }
      mask[i] = keep;
    }
  }
  // Weight statistics over the kept tokens, of the final weights; population std. (Decisions the SPEC leaves
  // open, as lib/ops/rollout_correction.ts documents them; chi2 is a divergence of the two policies, so it is
  // taken on the raw weights of every valid token.)
  let kept = 0;
  let sum = 0;
  let wMin = Infinity;
  let wMax = -Infinity;
  for (let i = 0; i < n; i++) {
    if (mask[i] === 0) continue;
    kept++;
    sum += weights[i];
    wMin = min(wMin, weights[i]);
    wMax = max(wMax, weights[i]);
  }
  const mean = kept > 0 ? sum / kept : 0;
  let varSum = 0;
  let hatSq = 0;
  for (let i = 0; i < n; i++) {
    if (mask[i] === 0) continue;
    varSum += (weights[i] - mean) ** 2;
    if (mean > 0) hatSq += (weights[i] / mean) ** 2;
  }
  const denom = max(valid, 1);
  const metrics: RefRolloutMetrics = {
    weightMean: mean,
    weightMin: kept > 0 ? wMin : 0,
    weightMax: kept > 0 ? wMax : 0,
    weightStd: kept > 0 ? sqrt(varSum / kept) : 0,
    fractionTruncatedHigh: truncHigh / denom,
    fractionTruncatedLow: truncLow / denom,
    fractionRejected: nDropped / denom,
    ess: hatSq > 0 ? 1 / (hatSq / kept) : 0,
    chi2: valid > 0 ? rawSq / denom - 1 : 0,
    mismatchKl: mismatch / denom,
  };
  return { weights, mask, raw, rejected, metrics };
}

// ---- §2 policy losses ----

export interface RefPolicyInputs {
  logprob: Arr;
  oldLogprob: Arr;
  advantages: Arr;
  mask: Arr;
  shape: readonly [number, number] | readonly number[];
  rolloutLogprob?: Arr;
  refLogprob?: Arr;
  entropy?: Arr;
}

export interface RefPolicyOptions {
  mode?: Mode;
  clipLow?: number;
  clipHigh?: number;
  dualClip?: number | null;
  ratioClamp?: number | null;
  aggregation?: Aggregation;
  globalTokens?: number;
  globalSequences?: number;
  normConstant?: number;
  klCoef?: number;
  klEstimator?: KlEstimator;
  entropyCoef?: number;
  isWeights?: Arr;
  tokenMask?: Arr;
  tauPos?: number;
  tauNeg?: number;
  clipCov?: { ratio?: number; lb?: number; ub?: number };
  klCov?: { ratio?: number; coef?: number };
  /** clipCov's random choice (flat indices), taken from the implementation; the reference checks it separately. */
  clipCovSelection?: Iterable<number>;
  rolloutCorrection?: RefRolloutOptions;
  /** Where sg(·) factors are evaluated (default: logprob). See the file header. */
  frozenLogprob?: Arr;
}

export interface RefPolicyMetrics {
  clipFraction: number;
  clipFractionLow: number;
  clipFractionHigh: number;
  dualClipFraction: number;
  approxKl: number;
  ratioMean: number;
  ratioMin: number;
  ratioMax: number;
  entropyMean?: number;
  klMean?: number;
  validTokens: number;
  emptyBatch: boolean;
  covFraction?: number;
  rollout?: RefRolloutMetrics;
}

export interface RefPolicy {
  loss: number;
  tokenLoss: Float64Array;
  gradLogprob: Float64Array;
  gradEntropy?: Float64Array;
  metrics: RefPolicyMetrics;
  /** Per-token magnitude Σ|terms| of tokenLoss (for f32 tolerances where terms cancel). */
  tokenLossScale: Float64Array;
  /** Per-token magnitude of gradLogprob's terms, aggregation weight included. */
  gradScale: Float64Array;
  /** Σ |c·terms|: the scale of `loss` (sums can cancel). */
  lossScale: number;
  /** Each token's policy and KL / entropy terms of `loss` (Σ both = loss): finite differences subtract these term
   * by term, so that a constant e^20-sized policy term (a clamped ratio) does not swamp the change of its KL term. */
  contribution: Float64Array;
  extraContribution: Float64Array;
  /** clipCov candidates (valid, unclipped, cov in (lb, ub)) and the count to zero; klCov: the top-k chosen. */
  covCandidates: number[];
  covCount: number;
  cov: Float64Array;
}

/** Clip bounds when the caller gives none: 0.2 / 0.2, GSPO's per-sequence 3e-4 / 4e-4 (SPEC §2 table notes). */
export function clipDefaults(mode: Mode): { clipLow: number; clipHigh: number } {
  return mode === 'gspo' ? { clipLow: 3e-4, clipHigh: 4e-4 } : { clipLow: 0.2, clipHigh: 0.2 };
}

/** Advantage of token (b, t) whether A is [B] or [B·T]. */
export function advAt(A: Arr, B: number, T: number, b: number, t: number): number {
  return A.length === B * T ? A[b * T + t] : A[b];
}

/** A per-token or per-row optional array at (b, t). */
function at(x: Arr | undefined, B: number, T: number, b: number, t: number): number {
  if (x === undefined) return 1;
  return x.length === B * T ? x[b * T + t] : x[b];
}

interface Ratio {
  delta: number; // clamped δ
  r: number;
  dr: number; // ∂r/∂lp: r, or 0 where the clamp binds
  ddelta: number; // ∂δ/∂lp: 1 or 0
}

function ratioOf(lp: number, old: number, ratioClamp: number | null): Ratio {
  const raw = lp - old;
  if (ratioClamp !== null && (raw > ratioClamp || raw < -ratioClamp)) {
    const delta = raw > 0 ? ratioClamp : -ratioClamp;
    return { delta, r: exp(delta), dr: 0, ddelta: 0 };
  }
  const r = exp(raw);
  return { delta: raw, r, dr: r, ddelta: 1 };
}

function clip(x: number, lo: number, hi: number): number {
  return x < lo ? lo : x > hi ? hi : x;
}

/** Centred covariance (A − mean_m A)·(lp0 − mean_m lp0) over valid tokens (clipCov / klCov selection). */
export function refCovariance(inputs: RefPolicyInputs, lp0: Arr): Float64Array {
  const [B, T] = inputs.shape;
  const m = inputs.mask;
  let n = 0;
  let sumA = 0;
  let sumLp = 0;
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      const i = b * T + t;
      if (m[i] === 0) continue;
      n++;
      sumA += advAt(inputs.advantages, B, T, b, t);
      sumLp += lp0[i];
    }
  }
  const meanA = sumA / max(n, 1);
  const meanLp = sumLp / max(n, 1);
  const cov = new Float64Array(B * T);
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      const i = b * T + t;
      cov[i] = m[i] === 0 ? 0 : (advAt(inputs.advantages, B, T, b, t) - meanA) * (lp0[i] - meanLp);
    }
  }
  return cov;
}

export function refPolicyLoss(inputs: RefPolicyInputs, opts: RefPolicyOptions = {}): RefPolicy {
  const [B, T] = inputs.shape;
  const n = B * T;
  const mode = opts.mode ?? 'ppo';
  const lo = opts.clipLow ?? clipDefaults(mode).clipLow;
  const hi = opts.clipHigh ?? clipDefaults(mode).clipHigh;
  const dual = mode === 'ppo' ? opts.dualClip ?? null : null;
  const ratioClamp = opts.ratioClamp === undefined ? 20 : opts.ratioClamp;
  // gspo forces seq-mean-token-mean on its policy term; the KL / entropy terms keep the caller's aggregation (as
  // in verl, where the forced mode lives inside the policy-loss function and the KL loss is aggregated apart).
  const aggregation: Aggregation = opts.aggregation ?? 'token-mean';
  const policyAggregation: Aggregation = mode === 'gspo' ? 'seq-mean-token-mean' : aggregation;
  const klCoef = opts.klCoef ?? 0;
  const estimator = opts.klEstimator ?? 'k3';
  const entropyCoef = opts.entropyCoef ?? 0;
  const tauPos = opts.tauPos ?? 1.0;
  const tauNeg = opts.tauNeg ?? 1.05;
  const lp = inputs.logprob;
  const lp0 = opts.frozenLogprob ?? lp;
  const old = inputs.oldLogprob;
  const A = inputs.advantages;
  const m = inputs.mask;
  const ref = inputs.refLogprob;
  const H = inputs.entropy;

  const lens = new Float64Array(B);
  let N = 0;
  let S = 0;
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) lens[b] += m[b * T + t] !== 0 ? 1 : 0;
    N += lens[b];
    if (lens[b] > 0) S++;
  }
  const Nnorm = opts.globalTokens ?? N;
  const Snorm = opts.globalSequences ?? S;
  const C = opts.normConstant ?? T;
  const rowWeight = (b: number, agg: Aggregation): number => {
    if (agg === 'token-mean') return 1 / Nnorm;
    if (agg === 'seq-mean-token-mean') return lens[b] > 0 ? 1 / (lens[b] * Snorm) : 0;
    if (agg === 'seq-mean-token-sum') return 1 / Snorm;
    return 1 / C;
  };

  // rollout correction: weights and mask on the policy term
  let rollout: RefRollout | undefined;
  if (inputs.rolloutLogprob !== undefined) {
    rollout = refRolloutCorrection(
      { oldLogprob: old, rolloutLogprob: inputs.rolloutLogprob, mask: m, shape: [B, T] },
      opts.rolloutCorrection ?? { level: 'token', mode: 'truncate', high: 2 },
    );
  }

  // clipCov / klCov selection from the frozen point
  const cov = mode === 'clipCov' || mode === 'klCov' ? refCovariance(inputs, lp0) : new Float64Array(n);
  const selected = new Uint8Array(n);
  let covCandidates: number[] = [];
  let covCount = 0;
  if (mode === 'clipCov') {
    const ratio = opts.clipCov?.ratio ?? 2e-4;
    const lb = opts.clipCov?.lb ?? 1;
    const ub = opts.clipCov?.ub ?? 5;
    for (let b = 0; b < B; b++) {
      for (let t = 0; t < T; t++) {
        const i = b * T + t;
        if (m[i] === 0) continue;
        const a = advAt(A, B, T, b, t);
        const { r } = ratioOf(lp0[i], old[i], ratioClamp);
        const clipped = -a * clip(r, 1 - lo, 1 + hi) > -a * r;
        if (!clipped && cov[i] > lb && cov[i] < ub) covCandidates.push(i);
      }
    }
    covCount = N > 0 ? min(max(1, floor(ratio * N)), covCandidates.length) : 0;
    if (opts.clipCovSelection) for (const i of opts.clipCovSelection) selected[i] = 1;
  } else if (mode === 'klCov') {
    const ratio = opts.klCov?.ratio ?? 2e-4;
    const valid: number[] = [];
    for (let i = 0; i < n; i++) if (m[i] !== 0) valid.push(i);
    valid.sort((x, y) => cov[y] - cov[x] || x - y);
    covCount = N > 0 ? min(max(1, floor(ratio * N)), N) : 0;
    covCandidates = valid.slice(0, covCount);
    for (const i of covCandidates) selected[i] = 1;
  }
  const klCovCoef = opts.klCov?.coef ?? 1;

  // gspo sequence ratio (sg) from the frozen point; gmpo per-row sums
  const seqRatio = new Float64Array(B);
  const gmpoRho = new Float64Array(B);
  const gmpoAdv = new Float64Array(B);
  for (let b = 0; b < B; b++) {
    if (mode === 'gspo') {
      // δ is the clamped log-ratio (SPEC §2: "δ = lp − old, clamped to [−20, 20]"), summed per token
      let s = 0;
      for (let t = 0; t < T; t++) {
        const i = b * T + t;
        if (m[i] !== 0) s += ratioOf(lp0[i], old[i], ratioClamp).delta;
      }
      let logS = s / max(lens[b], 1);
      if (ratioClamp !== null) logS = clampAbs(logS, ratioClamp);
      seqRatio[b] = exp(logS);
    }
    if (mode === 'gmpo' && lens[b] > 0) {
      let sumD = 0;
      let sumA = 0;
      for (let t = 0; t < T; t++) {
        const i = b * T + t;
        if (m[i] === 0) continue;
        const a = advAt(A, B, T, b, t);
        sumD += gmpoDelta(ratioOf(lp[i], old[i], ratioClamp).delta, a, lo, hi).value;
        sumA += a;
      }
      gmpoRho[b] = exp(sumD / lens[b]);
      gmpoAdv[b] = sumA / lens[b];
    }
  }

  const tokenLoss = new Float64Array(n);
  const gradLogprob = new Float64Array(n);
  const gradEntropy = H !== undefined ? new Float64Array(n) : undefined;
  const tokenLossScale = new Float64Array(n);
  const gradScale = new Float64Array(n);
  const contribution = new Float64Array(n);
  const extraContribution = new Float64Array(n);
  let loss = 0;
  let lossScale = 0;
  let clipCount = 0;
  let clipLowCount = 0;
  let clipHighCount = 0;
  let dualCount = 0;
  let approxKl = 0;
  let ratioSum = 0;
  let ratioMin = Infinity;
  let ratioMax = -Infinity;
  let entropySum = 0;
  let klSum = 0;
  let selectedCount = 0;

  for (let b = 0; b < B; b++) {
    const c = rowWeight(b, aggregation); // KL and entropy terms
    // policy term: gmpo's is a mean of sequence losses Σ_b ℓ_b / S, spread over the row's tokens as ℓ_b/|y_b|
    const cP = mode === 'gmpo' ? 1 / Snorm : rowWeight(b, policyAggregation);
    for (let t = 0; t < T; t++) {
      const i = b * T + t;
      if (m[i] === 0) continue;
      const a = advAt(A, B, T, b, t);
      const q = ratioOf(lp[i], old[i], ratioClamp);
      const q0 = ratioOf(lp0[i], old[i], ratioClamp);
      let ell = 0; // policy term
      let g = 0; // ∂ell/∂lp
      let usedRatio = q.r;
      let clippedLow = false;
      let clippedHigh = false;
      let clippedAny = false;
      let dualBinds = false;
      if (mode === 'ppo' || mode === 'gppo' || mode === 'clipCov') {
        const cr = clip(q.r, 1 - lo, 1 + hi);
        const l1 = -a * q.r;
        const l2 = -a * cr;
        if (l2 > l1) {
          clippedAny = true;
          clippedLow = a < 0;
          clippedHigh = a > 0;
          if (mode === 'gppo') {
            // gradient kept, scaled to the bound: surrogate −A·bound·r/sg(r)
            const bound = a > 0 ? 1 + hi : 1 - lo;
            ell = -a * bound * (q.r / q0.r);
            g = -a * bound * (q.dr / q0.r);
          } else {
            ell = l2;
            g = 0;
          }
        } else {
          ell = l1;
          g = -a * q.dr;
        }
        if (dual !== null && a < 0 && ell > -a * dual) {
          ell = -a * dual;
          g = 0;
          dualBinds = true;
        }
        if (mode === 'clipCov' && selected[i]) {
          ell = 0;
          g = 0;
          selectedCount++;
        }
      } else if (mode === 'gspo') {
        const s = seqRatio[b] * exp(lp[i] - lp0[i]); // token form: sg(s_b)·exp(lp − sg(lp))
        usedRatio = seqRatio[b];
        const l1 = -a * s;
        const l2 = -a * clip(s, 1 - lo, 1 + hi);
        if (l2 > l1) {
          clippedAny = true;
          clippedLow = a < 0;
          clippedHigh = a > 0;
          ell = l2;
          g = 0;
        } else {
          ell = l1;
          g = -a * s;
        }
      } else if (mode === 'sapo') {
        const tau = a > 0 ? tauPos : tauNeg;
        const sig = 1 / (1 + exp(-tau * (q.r - 1)));
        // σ(x)(1 − σ(x)) written as σ(x)σ(−x): 1 − σ cancels to a few digits where the gate saturates
        const sigNeg = 1 / (1 + exp(tau * (q.r - 1)));
        ell = -a * (4 / tau) * sig;
        g = -a * 4 * sig * sigNeg * q.dr;
      } else if (mode === 'cispo') {
        const w0 = clip(q0.r, 1 - lo, 1 + hi);
        // cispo clips the weight whatever the sign of A: the side is the ratio's (low: r < 1 − clipLow)
        clippedLow = q0.r < 1 - lo;
        clippedHigh = q0.r > 1 + hi;
        clippedAny = clippedLow || clippedHigh;
        ell = -w0 * a * lp[i];
        g = -w0 * a;
      } else if (mode === 'gmpo') {
        const gd = gmpoDelta(q.delta, a, lo, hi);
        usedRatio = gmpoRho[b];
        clippedHigh = gd.clipped && a > 0;
        clippedLow = gd.clipped && a < 0;
        clippedAny = gd.clipped;
        // per-token share of the sequence loss; its gradient: −Ā·ρ·∂δ*/∂lp / |y_b|, over S sequences
        ell = (-gmpoAdv[b] * gmpoRho[b]) / lens[b];
        g = (-gmpoAdv[b] * gmpoRho[b] * gd.grad * q.ddelta) / lens[b];
      } else if (mode === 'reinforce') {
        ell = -a * lp[i];
        g = -a;
      } else if (mode === 'klCov') {
        ell = -a * q.r;
        g = -a * q.dr;
        if (selected[i]) {
          ell += klCovCoef * abs(q.delta);
          g += klCovCoef * (q.delta > 0 ? 1 : q.delta < 0 ? -1 : 0) * q.ddelta;
          selectedCount++;
        }
      }

      let w = at(opts.isWeights, B, T, b, t) * at(opts.tokenMask, B, T, b, t);
      if (rollout) w *= rollout.weights[i] * rollout.mask[i];
      let kl = 0;
      let klGrad = 0;
      let klValue = 0;
      if (ref !== undefined) {
        const d = lp[i] - ref[i];
        const d0 = lp0[i] - ref[i];
        klValue = refKlAt(d0, estimator).value;
        kl = refKlSurrogate(d, d0, estimator);
        klGrad = estimator.endsWith('+') ? d : refKlAt(d, estimator).grad;
        klSum += klValue;
      }
      const h = H !== undefined ? H[i] : 0;
      entropySum += h;
      const policy = w * ell;
      const extra = klCoef * kl - entropyCoef * h;
      tokenLoss[i] = policy + extra;
      tokenLossScale[i] = abs(policy) + abs(klCoef * kl) + abs(entropyCoef * h);
      gradLogprob[i] = cP * w * g + c * klCoef * klGrad;
      gradScale[i] = abs(cP * w * g) + abs(c * klCoef * klGrad);
      contribution[i] = cP * policy;
      extraContribution[i] = c * extra;
      loss += contribution[i] + extraContribution[i];
      lossScale += abs(cP * policy) + c * (abs(klCoef * kl) + abs(entropyCoef * h));
      if (gradEntropy) gradEntropy[i] = -entropyCoef * c;

      if (clippedAny) clipCount++;
      if (clippedLow) clipLowCount++;
      if (clippedHigh) clipHighCount++;
      if (dualBinds) dualCount++;
      approxKl += -q.delta;
      ratioSum += usedRatio;
      ratioMin = min(ratioMin, usedRatio);
      ratioMax = max(ratioMax, usedRatio);
    }
  }
  const denom = max(N, 1);
  const metrics: RefPolicyMetrics = {
    clipFraction: clipCount / denom,
    clipFractionLow: clipLowCount / denom,
    clipFractionHigh: clipHighCount / denom,
    dualClipFraction: dualCount / denom,
    approxKl: approxKl / denom,
    ratioMean: ratioSum / denom,
    ratioMin: N > 0 ? ratioMin : 0,
    ratioMax: N > 0 ? ratioMax : 0,
    validTokens: N,
    emptyBatch: N === 0,
  };
  if (H !== undefined) metrics.entropyMean = entropySum / denom;
  if (ref !== undefined) metrics.klMean = klSum / denom;
  if (mode === 'clipCov' || mode === 'klCov') metrics.covFraction = selectedCount / denom;
  if (rollout) metrics.rollout = rollout.metrics;
  if (N === 0) loss = 0;
  return {
    loss, tokenLoss, gradLogprob, gradEntropy, metrics, tokenLossScale, gradScale, lossScale, contribution,
    extraContribution, covCandidates, covCount, cov,
  };
}

/**
 * gmpo's sign-aware log-space clip δ* = sgn(A)·min(sgn(A)·δ, sgn(A)·clip(δ, −clipLow, clipHigh)) (0 when A = 0),
 * its derivative in δ, and whether the clip binds (δ* ≠ δ).
 */
export function gmpoDelta(delta: number, a: number, lo: number, hi: number): { value: number; grad: number; clipped: boolean } {
  if (a === 0) return { value: 0, grad: 0, clipped: false };
  if (a > 0 && delta > hi) return { value: hi, grad: 0, clipped: true };
  if (a < 0 && delta < -lo) return { value: -lo, grad: 0, clipped: true };
  return { value: delta, grad: 1, clipped: false };
}

/**
 * Central finite difference of the aggregated loss of the autograd surrogate (sg(·) frozen at the inputs' logprob)
 * in logprob[i]: Σ_j (contribution⁺_j − contribution⁻_j) / 2h, term by term so that the terms the step does not reach
 * cancel exactly (a clamped ratio of e^20 would otherwise swamp the difference).
 */
export function refFiniteDifference(inputs: RefPolicyInputs, opts: RefPolicyOptions, i: number, h: number): number {
  const frozenLogprob = Float64Array.from(inputs.logprob);
  const plus = Float64Array.from(inputs.logprob);
  const minus = Float64Array.from(inputs.logprob);
  plus[i] += h;
  minus[i] -= h;
  const a = refPolicyLoss({ ...inputs, logprob: plus }, { ...opts, frozenLogprob });
  const b = refPolicyLoss({ ...inputs, logprob: minus }, { ...opts, frozenLogprob });
  let sum = 0;
  for (let j = 0; j < a.contribution.length; j++) {
    sum += a.contribution[j] - b.contribution[j] + (a.extraContribution[j] - b.extraContribution[j]);
  }
  return sum / ((plus[i] - minus[i]));
}

// ---- random batches for the tests and benches ----

/** The subset of lib/prng's Sfc32 the generators use (tests pass `rng(label)` from test/helpers.ts). */
export interface Rng {
  float(): number;
  uniform(lo: number, hi: number): number;
  int(n: number): number;
  normal(): number;
}

/**
 * Random (lp, ref) pairs for the KL tests: d = lp − ref mostly small, some |d| in (2.7, 4) (k3 > 10 for
 * d < −2.62), some beyond ±20, never near a kink (so that an f32 backend and the reference agree on the side).
 */
export function drawKlInputs(r: Rng, n: number, F: Float32ArrayConstructor | Float64ArrayConstructor) {
  const lp = new F(n);
  const ref = new F(n);
  for (let i = 0; i < n; i++) {
    for (;;) {
      const u = r.float();
      const d = u < 0.1 ? (r.float() < 0.5 ? -1 : 1) * r.uniform(20.2, 30) : u < 0.3 ? r.uniform(-4, 4) : 0.7 * r.normal();
      lp[i] = -2 * Math.abs(r.normal());
      ref[i] = lp[i] - d;
      const dd = lp[i] - ref[i];
      const x = Math.min(Math.max(-dd, -20), 20);
      const k3 = Math.exp(x) - x - 1;
      if (Math.abs(dd) > 1e-3 && Math.abs(Math.abs(dd) - 20) > 1e-3 && Math.abs(k3 - 10) > 1e-2) break;
    }
  }
  return { lp, ref };
}

export interface BatchSpec {
  B: number;
  T: number;
  dtype?: 'f32' | 'f64';
  /** Advantages [B·T] instead of [B]. */
  advPerToken?: boolean;
  maskKind?: 'u8' | 'f32';
  /** About 8% of the log-ratios beyond ±20 (default true), the rest within ±spread. */
  extremes?: boolean;
  spread?: number;
  withRef?: boolean;
  withEntropy?: boolean;
  withRollout?: boolean;
  /** Row 0 fully masked and row 1 of length 1 (when B allows; default true). */
  edgeRows?: boolean;
  /** Fraction of masked tokens in the other rows (default 0.25). */
  maskedFraction?: number;
  /** Log-ratio values δ = lp − old must stay `margin` away from (clip bounds, clamps). */
  deltaKinks?: readonly number[];
  margin?: number;
  /** Fraction of advantages exactly 0 (default 0.08). */
  zeroAdvantages?: number;
}

export interface Batch {
  B: number;
  T: number;
  logprob: Float32Array | Float64Array;
  oldLogprob: Float32Array | Float64Array;
  advantages: Float32Array | Float64Array;
  mask: Uint8Array | Float32Array;
  refLogprob?: Float32Array | Float64Array;
  entropy?: Float32Array | Float64Array;
  rolloutLogprob?: Float32Array | Float64Array;
}

/** δ kinks of a policy-loss configuration: ratio clip bounds, dual clip, ratio clamp, gmpo log-space bounds. */
export function deltaKinksOf(clipLow = 0.2, clipHigh = 0.2, dualClip: number | null = null, ratioClamp: number | null = 20): number[] {
  const kinks = [Math.log(1 - clipLow), Math.log(1 + clipHigh), -clipLow, clipHigh];
  if (dualClip !== null) kinks.push(Math.log(dualClip));
  if (ratioClamp !== null) kinks.push(ratioClamp, -ratioClamp);
  return kinks;
}

/** d = lp − ref values the KL estimators have kinks at: 0 (abs), ±20 (k3 exp clamp); plus k3's output clamp. */
function nearKlKink(d: number, margin: number): boolean {
  if (abs(d) < margin || abs(d - K3_EXP_CLAMP) < margin || abs(d + K3_EXP_CLAMP) < margin) return true;
  const x = min(max(-d, -K3_EXP_CLAMP), K3_EXP_CLAMP);
  return abs(exp(x) - x - 1 - K3_OUT_CLAMP) < 20 * margin;
}

function logRatio(r: Rng, spread: number, extremes: boolean): number {
  const u = r.float();
  if (extremes && u < 0.08) return (r.float() < 0.5 ? -1 : 1) * r.uniform(20.5, 28);
  if (u < 0.55) return 0.25 * r.normal();
  return r.uniform(-spread, spread);
}

export function makeBatch(r: Rng, spec: BatchSpec): Batch {
  const { B, T } = spec;
  const n = B * T;
  const F = spec.dtype === 'f64' ? Float64Array : Float32Array;
  const round = spec.dtype === 'f64' ? (x: number) => x : Math.fround;
  const extremes = spec.extremes ?? true;
  const spread = spec.spread ?? 3;
  const margin = spec.margin ?? 1e-3;
  const kinks = spec.deltaKinks ?? [];
  const edgeRows = spec.edgeRows ?? true;
  const maskedFraction = spec.maskedFraction ?? 0.25;
  const logprob = new F(n);
  const oldLogprob = new F(n);
  const mask = spec.maskKind === 'f32' ? new Float32Array(n) : new Uint8Array(n);
  for (let b = 0; b < B; b++) {
    // padding-like rows (a valid prefix) and scattered masks
    const prefix = r.float() < 0.6;
    const len = 1 + r.int(T);
    for (let t = 0; t < T; t++) {
      let on = prefix ? t < len : r.float() >= maskedFraction;
      if (edgeRows && B >= 3 && b === 0) on = false;
      if (edgeRows && B >= 3 && b === 1) on = t === T - 1;
      mask[b * T + t] = on ? 1 : 0;
    }
  }
  for (let i = 0; i < n; i++) {
    for (let attempt = 0; ; attempt++) {
      const lp = round(-2 * abs(r.normal()) - 0.01);
      const old = round(lp - logRatio(r, spread, extremes));
      const delta = lp - old;
      if (attempt < 1000 && kinks.some((k) => abs(delta - k) < margin)) continue;
      logprob[i] = lp;
      oldLogprob[i] = old;
      break;
    }
  }
  const zeroFraction = spec.zeroAdvantages ?? 0.08;
  const advantages = new F(spec.advPerToken ? n : B);
  for (let i = 0; i < advantages.length; i++) advantages[i] = r.float() < zeroFraction ? 0 : round(r.normal());
  const batch: Batch = { B, T, logprob, oldLogprob, advantages, mask };
  if (spec.withRef) {
    const ref = new F(n);
    for (let i = 0; i < n; i++) {
      for (let attempt = 0; ; attempt++) {
        const u = r.float();
        const d = u < 0.08 ? (r.float() < 0.5 ? -1 : 1) * r.uniform(20.5, 26) : u < 0.6 ? 0.5 * r.normal() : r.uniform(-4, 4);
        const v = round(logprob[i] - d);
        if (attempt < 1000 && nearKlKink(logprob[i] - v, margin)) continue;
        ref[i] = v;
        break;
      }
    }
    batch.refLogprob = ref;
  }
  if (spec.withEntropy) {
    const H = new F(n);
    for (let i = 0; i < n; i++) H[i] = round(r.uniform(0, 5));
    batch.entropy = H;
  }
  if (spec.withRollout) {
    const roll = new F(n);
    for (let i = 0; i < n; i++) {
      const u = r.float();
      const d = u < 0.05 ? (r.float() < 0.5 ? -1 : 1) * r.uniform(20.5, 24) : u < 0.7 ? 0.3 * r.normal() : r.uniform(-2, 2);
      roll[i] = round(oldLogprob[i] - d);
    }
    batch.rolloutLogprob = roll;
  }
  return batch;
}

/** Rows whose gspo log sequence ratio lies within `margin` of a clip bound or the clamp (to redraw or skip). */
export function gspoRowsNearKink(batch: Batch, clipLow: number, clipHigh: number, margin: number, ratioClamp = 20): number[] {
  const out: number[] = [];
  for (let b = 0; b < batch.B; b++) {
    let s = 0;
    let len = 0;
    for (let t = 0; t < batch.T; t++) {
      const i = b * batch.T + t;
      if (batch.mask[i] === 0) continue;
      s += clampAbs(batch.logprob[i] - batch.oldLogprob[i], ratioClamp);
      len++;
    }
    const logS = s / max(len, 1);
    const kinks = [Math.log(1 - clipLow), Math.log(1 + clipHigh), ratioClamp, -ratioClamp];
    if (len > 0 && kinks.some((k) => abs(logS - k) < margin)) out.push(b);
  }
  return out;
}

/** Shifts one valid token's logprob in each gspo row whose sequence ratio sits near a clip bound or the clamp. */
export function nudgeGspoRows(batch: Batch, clipLow: number, clipHigh: number, margin: number): void {
  for (let pass = 0; pass < 10; pass++) {
    const rows = gspoRowsNearKink(batch, clipLow, clipHigh, margin);
    if (rows.length === 0) return;
    for (const b of rows) {
      let len = 0;
      let first = -1;
      for (let t = 0; t < batch.T; t++) {
        if (batch.mask[b * batch.T + t] === 0) continue;
        len++;
        if (first < 0) first = b * batch.T + t;
      }
      batch.logprob[first] += 10 * margin * len;
    }
  }
}

/** The median of `scale` over valid tokens (a floor for per-token tolerances where a term is negligibly small). */
export function medianOver(scale: Arr, mask: Arr): number {
  const values: number[] = [];
  for (let i = 0; i < scale.length; i++) if (mask[i] !== 0) values.push(scale[i]);
  if (values.length === 0) return 0;
  values.sort((x, y) => x - y);
  return values[values.length >> 1];
}

/** The mode settings every policy-loss suite runs (cpu/js and the CUDA emulation): asymmetric clips, dual clip, GSPO's tiny ε, SAPO temperatures. */
export const MODE_CASES: readonly { mode: Mode; opts: RefPolicyOptions }[] = [
  { mode: 'ppo', opts: { clipLow: 0.2, clipHigh: 0.28, dualClip: 3 } },
  { mode: 'ppo', opts: { clipLow: 0.2, clipHigh: 0.2 } },
  { mode: 'gppo', opts: { clipLow: 0.2, clipHigh: 0.28 } },
  { mode: 'gspo', opts: { clipLow: 0.2, clipHigh: 0.2 } },
  { mode: 'gspo', opts: { clipLow: 3e-4, clipHigh: 4e-4 } },
  { mode: 'sapo', opts: { tauPos: 1, tauNeg: 1.05 } },
  { mode: 'sapo', opts: { tauPos: 2, tauNeg: 0.5 } },
  { mode: 'cispo', opts: { clipLow: 0.2, clipHigh: 0.28 } },
  { mode: 'gmpo', opts: { clipLow: 0.4, clipHigh: 0.4 } },
  { mode: 'reinforce', opts: {} },
  { mode: 'clipCov', opts: { clipLow: 0.2, clipHigh: 0.28, clipCov: { ratio: 0.05, lb: 0.2, ub: 3 } } },
  { mode: 'klCov', opts: { klCov: { ratio: 0.05, coef: 0.7 } } },
];
