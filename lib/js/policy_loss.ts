/**
 * JS kernels of the policy losses (SPEC §2): the same passes as native/policy_loss.cc — mask check and
 * counts, aggregation weights, the per-token pass of the mode, row sums reduced in row order — in f64
 * arithmetic (Math.exp), writing Float32Array or Float64Array outputs. The token math mirrors
 * cuda/math/policy_loss_math.h line by line; both are checked against the float64 reference in test/ref.
 */
import type { KlClampName, KlEstimatorName } from './kl_penalty';
import { KL_CLAMPS, KL_ESTIMATORS, klEstimate } from './kl_penalty';

export const MODES = ['ppo', 'gppo', 'gspo', 'sapo', 'cispo', 'gmpo', 'reinforce', 'clipCov', 'klCov'] as const;
export type PolicyModeName = (typeof MODES)[number];
export const AGGREGATIONS = ['token-mean', 'seq-mean-token-mean', 'seq-mean-token-sum', 'seq-mean-token-sum-norm'] as const;
export type Aggregation = (typeof AGGREGATIONS)[number];

/** Indices of the `params` Float64Array handed to the native kernel (native/addon/policy_loss.cc Param). */
export const PARAM = {
  mode: 0, ratioLow: 1, ratioHigh: 2, logLow: 3, logHigh: 4, dualClip: 5, clampLow: 6, clampHigh: 7, tauPos: 8,
  tauNeg: 9, covCoef: 10, seqClampLow: 11, seqClampHigh: 12, gmpoWeightEps: 13, klEstimator: 14, klClamp: 15,
  klStraightThrough: 16, klCoef: 17, entropyCoef: 18, aggregation: 19, globalTokens: 20, globalSequences: 21,
  normConstant: 22, countEps: 23, seqDivisorAllRows: 24, policyAggregation: 25, gmpoCountOutside: 26, size: 27,
} as const;

/** Per-row sums (native/policy_loss.h RowSum), then the summary fields after them. */
export const SUM = {
  policyLoss: 0, extraLoss: 1, valid: 2, clippedLow: 3, clippedHigh: 4, dualClipped: 5, negLogRatio: 6,
  absLogRatio: 7, ratio: 8, entropy: 9, kl: 10, selected: 11, count: 12,
} as const;
export const SUMMARY = {
  loss: 0, sums: 1, ratioMin: 1 + SUM.count, ratioMax: 2 + SUM.count, sequences: 3 + SUM.count,
  badMask: 4 + SUM.count, nonFiniteRow: 5 + SUM.count, size: 6 + SUM.count,
} as const;

/** The resolved numeric parameters of one call (what `params` carries). */
export interface PolicyKernelParams {
  mode: PolicyModeName;
  ratioLow: number;
  ratioHigh: number;
  logLow: number;
  logHigh: number;
  dualClip: number;
  clampLow: number;
  clampHigh: number;
  tauPos: number;
  tauNeg: number;
  covCoef: number;
  seqClampLow: number;
  seqClampHigh: number;
  gmpoWeightEps: number;
  klEstimator: KlEstimatorName;
  klClamp: KlClampName;
  klStraightThrough: boolean;
  klCoef: number;
  entropyCoef: number;
  /** Of the extras (KL, entropy), and of the policy term unless `policyAggregation` differs (forced by a mode). */
  aggregation: Aggregation;
  policyAggregation: Aggregation;
  globalTokens: number;
  globalSequences: number;
  normConstant: number;
  countEps: number;
  seqDivisorAllRows: boolean;
  /** gmpo's clip metrics count every δ outside [−clipLow, clipHigh] by the sign of A (verl), not binding clips. */
  gmpoCountOutside: boolean;
}

export function packParams(p: PolicyKernelParams): Float64Array {
  const a = new Float64Array(PARAM.size);
  a[PARAM.mode] = MODES.indexOf(p.mode);
  a[PARAM.ratioLow] = p.ratioLow;
  a[PARAM.ratioHigh] = p.ratioHigh;
  a[PARAM.logLow] = p.logLow;
  a[PARAM.logHigh] = p.logHigh;
  a[PARAM.dualClip] = p.dualClip;
  a[PARAM.clampLow] = p.clampLow;
  a[PARAM.clampHigh] = p.clampHigh;
  a[PARAM.tauPos] = p.tauPos;
  a[PARAM.tauNeg] = p.tauNeg;
  a[PARAM.covCoef] = p.covCoef;
  a[PARAM.seqClampLow] = p.seqClampLow;
  a[PARAM.seqClampHigh] = p.seqClampHigh;
  a[PARAM.gmpoWeightEps] = p.gmpoWeightEps;
  a[PARAM.klEstimator] = KL_ESTIMATORS.indexOf(p.klEstimator);
  a[PARAM.klClamp] = KL_CLAMPS.indexOf(p.klClamp);
  a[PARAM.klStraightThrough] = p.klStraightThrough ? 1 : 0;
  a[PARAM.klCoef] = p.klCoef;
  a[PARAM.entropyCoef] = p.entropyCoef;
  a[PARAM.aggregation] = AGGREGATIONS.indexOf(p.aggregation);
  a[PARAM.globalTokens] = p.globalTokens;
  a[PARAM.globalSequences] = p.globalSequences;
  a[PARAM.normConstant] = p.normConstant;
  a[PARAM.countEps] = p.countEps;
  a[PARAM.seqDivisorAllRows] = p.seqDivisorAllRows ? 1 : 0;
  a[PARAM.policyAggregation] = AGGREGATIONS.indexOf(p.policyAggregation);
  a[PARAM.gmpoCountOutside] = p.gmpoCountOutside ? 1 : 0;
  return a;
}

type Values = Float32Array | Float64Array;

/**
 * Inputs and outputs of one call, as the kernels see them (lengths already validated). `V`: host arrays here;
 * lib/ops/policy_loss.ts also holds calls whose value arrays are DeviceTensors (the cuda backend only).
 */
export interface PolicyKernelIo<V = Values> {
  rows: number;
  cols: number;
  logprob: V;
  oldLogprob: V;
  advantages: V;
  advantagesPerRow: boolean;
  isWeights: V | null;
  weightsPerRow: boolean;
  refLogprob: V | null;
  entropy: V | null;
  mask: Uint8Array;
  tokenMask: Uint8Array | null;
  selected: Uint8Array | null;
  tokenLoss: V;
  gradLogprob: V;
  gradEntropy: V | null;
}

const CLIPPED_LOW = 1;
const CLIPPED_HIGH = 2;
const DUAL_CLIPPED = 4;

function clamp(x: number, lo: number, hi: number): number {
  return x < lo ? lo : x > hi ? hi : x;
}

interface TokenLoss {
  loss: number;
  grad: number;
  ratio: number;
  flags: number;
}

/** The token-level modes (cuda/math/policy_loss_math.h token_policy_loss). */
function tokenPolicyLoss(p: PolicyKernelParams, lp: number, old: number, adv: number, selected: boolean): TokenLoss {
  const deltaRaw = lp - old;
  const delta = clamp(deltaRaw, p.clampLow, p.clampHigh);
  const inside = deltaRaw >= p.clampLow && deltaRaw <= p.clampHigh ? 1 : 0;
  const r = Math.exp(delta);
  const rc = clamp(r, p.ratioLow, p.ratioHigh);
  const high = adv > 0 && r > p.ratioHigh;
  const low = adv < 0 && r < p.ratioLow;
  switch (p.mode) {
    case 'ppo':
    case 'gppo':
    case 'clipCov': {
      const clipped = high || low;
      const clipLoss = clipped ? -adv * rc : -adv * r;
      let grad = clipped ? (p.mode === 'gppo' ? -adv * rc : 0) : -adv * r;
      let loss = clipLoss;
      let flags = (low ? CLIPPED_LOW : 0) | (high ? CLIPPED_HIGH : 0);
      if (p.dualClip > 0 && adv < 0 && p.mode !== 'clipCov') {
        const cap = -adv * p.dualClip;
        if (clipLoss > cap) {
          loss = cap;
          grad = 0;
          flags |= DUAL_CLIPPED;
        }
      }
      if (p.mode === 'clipCov' && selected) {
        loss = 0;
        grad = 0;
      }
      return { loss, grad: grad * inside, ratio: r, flags };
    }
    case 'sapo': {
      // σ(1 − σ) as e/(1 + e)², e = exp(−τ(r − 1)): 1 − σ cancels as σ → 1.
      const tau = adv > 0 ? p.tauPos : p.tauNeg;
      const e = Math.exp(clamp(-tau * (r - 1), -80, 80));
      const sig = 1 / (1 + e);
      return { loss: -adv * (4 / tau) * sig, grad: -adv * 4 * e * sig * sig * r * inside, ratio: r, flags: 0 };
    }
    case 'cispo':
      return {
        loss: -rc * adv * lp,
        grad: -rc * adv,
        ratio: r,
        flags: (r < p.ratioLow ? CLIPPED_LOW : 0) | (r > p.ratioHigh ? CLIPPED_HIGH : 0),
      };
    case 'reinforce':
      return { loss: -adv * lp, grad: -adv, ratio: r, flags: 0 };
    case 'klCov': {
      const absDelta = Math.abs(delta);
      const sign = delta > 0 ? 1 : delta < 0 ? -1 : 0;
      return {
        loss: -adv * r + (selected ? p.covCoef * absDelta : 0),
        grad: (-adv * r + (selected ? p.covCoef * sign : 0)) * inside,
        ratio: r,
        flags: 0,
      };
    }
    default:
      throw new Error(`tokenPolicyLoss: ${p.mode} is a sequence mode`);
  }
}

function gspoTokenLoss(p: PolicyKernelParams, seqRatio: number, seqInside: number, adv: number): TokenLoss {
  const rc = clamp(seqRatio, p.ratioLow, p.ratioHigh);
  const high = adv > 0 && seqRatio > p.ratioHigh;
  const low = adv < 0 && seqRatio < p.ratioLow;
  const clipped = high || low;
  return {
    loss: clipped ? -adv * rc : -adv * seqRatio,
    grad: clipped ? 0 : -adv * seqRatio * seqInside,
    ratio: seqRatio,
    flags: (low ? CLIPPED_LOW : 0) | (high ? CLIPPED_HIGH : 0),
  };
}

/** gmpo's sign-aware log-space clip of one token: δ*, its derivative in δ and the side flags. */
function gmpoToken(p: PolicyKernelParams, delta: number, adv: number): { deltaStar: number; grad: number; flags: number } {
  const sgn = adv > 0 ? 1 : adv < 0 ? -1 : 0;
  const dc = clamp(delta, p.logLow, p.logHigh);
  const clipWins = sgn * delta > sgn * dc;
  // Binding clips (A > 0 and δ > clipHigh, A < 0 and δ < −clipLow); verl counts every δ outside the bounds.
  const counted = p.gmpoCountOutside ? delta !== dc : clipWins;
  return {
    deltaStar: sgn * (clipWins ? sgn * dc : sgn * delta),
    grad: sgn !== 0 && !clipWins ? 1 : 0,
    flags: (counted && adv < 0 ? CLIPPED_LOW : 0) | (counted && adv > 0 ? CLIPPED_HIGH : 0),
  };
}

function aggregationWeight(p: PolicyKernelParams, aggregation: Aggregation, count: number, tokens: number, sequences: number): number {
  const inMean = count > 0 || p.seqDivisorAllRows;
  switch (aggregation) {
    case 'token-mean':
      return tokens > 0 ? 1 / tokens : 0;
    case 'seq-mean-token-mean':
      return count > 0 && sequences > 0 ? 1 / ((count + p.countEps) * sequences) : 0;
    case 'seq-mean-token-sum':
      return inMean && sequences > 0 ? 1 / sequences : 0;
    case 'seq-mean-token-sum-norm':
      return 1 / p.normConstant;
  }
}

/**
 * Runs one policy-loss call; fills `summary` (SUMMARY layout). Returns −1, or 0 when the summary reports a
 * bad mask entry or a non-finite input (the caller turns it into an error).
 */
export function policyLoss(io: PolicyKernelIo, p: PolicyKernelParams, summary: Float64Array): number {
  const { rows, cols, mask } = io;
  summary.fill(0);
  summary[SUMMARY.badMask] = -1;
  summary[SUMMARY.nonFiniteRow] = -1;
  // 1. Mask values and counts, before anything is written.
  const counts = new Float64Array(rows);
  for (let b = 0; b < rows; b++) {
    let count = 0;
    for (let t = 0, i = b * cols; t < cols; t++, i++) {
      const m = mask[i];
      if (m > 1) {
        summary[SUMMARY.badMask] = i;
        return 0;
      }
      count += m;
    }
    counts[b] = count;
  }
  // 2. Divisors and row weights.
  let tokens = 0;
  let nonempty = 0;
  for (let b = 0; b < rows; b++) {
    tokens += counts[b];
    nonempty += counts[b] > 0 ? 1 : 0;
  }
  summary[SUMMARY.sequences] = nonempty;
  const tokenDivisor = p.globalTokens > 0 ? p.globalTokens : tokens;
  const seqDivisor = p.globalSequences > 0 ? p.globalSequences : p.seqDivisorAllRows ? rows : nonempty;
  // 3. The token pass, row by row; 4. row sums in row order.
  const sums = new Float64Array(SUM.count);
  let ratioMin = Infinity;
  let ratioMax = -Infinity;
  let loss = 0;
  for (let b = 0; b < rows; b++) {
    const cExtra = aggregationWeight(p, p.aggregation, counts[b], tokenDivisor, seqDivisor);
    // gmpo's policy term is a mean of sequence losses: the seq-mean-token-sum weight of its row.
    const cPolicy = aggregationWeight(p, p.mode === 'gmpo' ? 'seq-mean-token-sum' : p.policyAggregation, counts[b],
      tokenDivisor, seqDivisor);
    const row = rowPass(io, p, b, cPolicy, cExtra);
    loss += cPolicy * row.sums[SUM.policyLoss] + cExtra * row.sums[SUM.extraLoss];
    for (let k = 0; k < SUM.count; k++) sums[k] += row.sums[k];
    if (row.ratioMin < ratioMin) ratioMin = row.ratioMin;
    if (row.ratioMax > ratioMax) ratioMax = row.ratioMax;
    if (row.nonFinite && summary[SUMMARY.nonFiniteRow] < 0) summary[SUMMARY.nonFiniteRow] = b;
  }
  summary[SUMMARY.loss] = loss;
  summary.set(sums, SUMMARY.sums);
  summary[SUMMARY.ratioMin] = Number.isFinite(ratioMin) ? ratioMin : 0;
  summary[SUMMARY.ratioMax] = Number.isFinite(ratioMax) ? ratioMax : 0;
  return summary[SUMMARY.nonFiniteRow] >= 0 ? 0 : -1;
}

interface RowResult {
  sums: Float64Array;
  ratioMin: number;
  ratioMax: number;
  nonFinite: boolean;
}

function rowPass(io: PolicyKernelIo, p: PolicyKernelParams, b: number, cPolicy: number, cExtra: number): RowResult {
  const { cols, logprob: lp, oldLogprob: old, mask } = io;
  const off = b * cols;
  const adv = (i: number) => (io.advantagesPerRow ? io.advantages[b] : io.advantages[i]);
  const weight = (i: number) => (io.isWeights ? (io.weightsPerRow ? io.isWeights[b] : io.isWeights[i]) : 1);
  const policyToken = (i: number) => mask[i] !== 0 && (io.tokenMask ? io.tokenMask[i] !== 0 : true);

  // Sequence modes first summarise the row.
  let token: (i: number) => TokenLoss;
  let gmpoSeqLoss = 0;
  let gmpoCount = 0;
  if (p.mode === 'gspo') {
    let sum = 0;
    let count = 0;
    for (let i = off; i < off + cols; i++) {
      if (mask[i] === 0) continue;
      sum += clamp(lp[i] - old[i], p.clampLow, p.clampHigh);
      count++;
    }
    const logS = sum / Math.max(count, 1);
    const seqInside = logS >= p.seqClampLow && logS <= p.seqClampHigh ? 1 : 0;
    const seqRatio = Math.exp(clamp(logS, p.seqClampLow, p.seqClampHigh));
    token = (i) => gspoTokenLoss(p, seqRatio, seqInside, adv(i));
  } else if (p.mode === 'gmpo') {
    let sumDelta = 0;
    let sumAdv = 0;
    let sumLogW = 0;
    for (let i = off; i < off + cols; i++) {
      if (!policyToken(i)) continue;
      sumDelta += gmpoToken(p, clamp(lp[i] - old[i], p.clampLow, p.clampHigh), adv(i)).deltaStar;
      sumAdv += adv(i);
      sumLogW += Math.log(weight(i) + p.gmpoWeightEps);
      gmpoCount++;
    }
    let len = gmpoCount + p.countEps;
    if (len === 0) len = 1;
    const rho = Math.exp(sumDelta / len);
    gmpoSeqLoss = -(sumAdv / len) * rho * Math.exp(sumLogW / len);
    const share = gmpoCount > 0 ? gmpoSeqLoss / gmpoCount : 0;
    const gradScale = gmpoSeqLoss / len;
    token = (i) => {
      const raw = lp[i] - old[i];
      const inside = raw >= p.clampLow && raw <= p.clampHigh ? 1 : 0;
      const g = gmpoToken(p, clamp(raw, p.clampLow, p.clampHigh), adv(i));
      return { loss: share, grad: gradScale * g.grad * inside, ratio: rho, flags: g.flags };
    };
  } else {
    token = (i) => tokenPolicyLoss(p, lp[i], old[i], adv(i), io.selected !== null && io.selected[i] !== 0);
  }

  const sums = new Float64Array(SUM.count);
  let ratioMin = Infinity;
  let ratioMax = -Infinity;
  let nonFinite = false;
  const gmpo = p.mode === 'gmpo';
  for (let i = off; i < off + cols; i++) {
    if (mask[i] === 0) {
      io.tokenLoss[i] = 0;
      io.gradLogprob[i] = 0;
      if (io.gradEntropy) io.gradEntropy[i] = 0;
      continue;
    }
    const pe = policyToken(i) ? (gmpo ? 1 : weight(i)) : 0;
    const tok = token(i);
    const ref = io.refLogprob ? io.refLogprob[i] : lp[i];
    const h = io.entropy ? io.entropy[i] : 0;
    const kl = klEstimate(p.klEstimator, p.klClamp, p.klStraightThrough, lp[i], ref);
    const extra = p.klCoef * kl.value - p.entropyCoef * h;
    const a = adv(i);
    if (!Number.isFinite(lp[i] + old[i] + a + weight(i) + ref + h) && !finiteEach(lp[i], old[i], a, weight(i), ref, h)) {
      nonFinite = true;
    }
    io.tokenLoss[i] = pe * tok.loss + extra;
    io.gradLogprob[i] = cPolicy * pe * tok.grad + cExtra * p.klCoef * kl.grad;
    if (io.gradEntropy) io.gradEntropy[i] = -p.entropyCoef * cExtra;
    const delta = clamp(lp[i] - old[i], p.clampLow, p.clampHigh);
    sums[SUM.policyLoss] += pe * tok.loss;
    sums[SUM.extraLoss] += extra;
    sums[SUM.valid] += 1;
    if (tok.flags & CLIPPED_LOW) sums[SUM.clippedLow] += 1;
    if (tok.flags & CLIPPED_HIGH) sums[SUM.clippedHigh] += 1;
    if (tok.flags & DUAL_CLIPPED) sums[SUM.dualClipped] += 1;
    sums[SUM.negLogRatio] += -delta;
    sums[SUM.absLogRatio] += Math.abs(delta);
    sums[SUM.ratio] += tok.ratio;
    sums[SUM.entropy] += h;
    sums[SUM.kl] += kl.value;
    if (io.selected && io.selected[i] !== 0) sums[SUM.selected] += 1;
    if (tok.ratio < ratioMin) ratioMin = tok.ratio;
    if (tok.ratio > ratioMax) ratioMax = tok.ratio;
  }
  // gmpo's policy sum is the sequence loss itself (its token shares sum to it up to rounding).
  if (gmpo) sums[SUM.policyLoss] = gmpoCount > 0 ? gmpoSeqLoss : 0;
  return { sums, ratioMin, ratioMax, nonFinite };
}

/** A finite sum can overflow to ±inf from finite terms: check each before calling the token non-finite. */
function finiteEach(...values: number[]): boolean {
  return values.every(Number.isFinite);
}
