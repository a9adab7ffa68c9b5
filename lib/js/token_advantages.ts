/**
 * Token-level advantages in plain JavaScript (SPEC §4.2–§4.4): the same functions as
 * native/token_advantages.cc.
 *
 *   gae:        δ_t = r_t + γ·V_next − V_t,  g_t = δ_t + γλ·g_next,  returns = g + V
 *   discounted: G_t = r_t + γ·G_{t+1}
 *   whitening:  (x − mean_m x)·(var_m x + eps)^−½ over the valid entries (moments: lib/js/moments.ts)
 *   placeOutcome: R_b at the last valid token of row b
 *   optimal token baseline (§4.3): b_t = Σ_i G_it·W_it·m_it / (Σ_i W_it·m_it + 1e-8) per group and position
 *
 * What a masked position (m = 0) does to a scan is a rule of the preset (GAP): carry the scan through
 * unchanged (engine default; verl's GAE: observation tokens of multi-turn responses), reset it to 0 (verl's
 * REINFORCE++ returns, "reset after EOS"), or read its reward and value as 0 and keep discounting
 * (OpenRLHF). Each row is scanned in f64 into a row buffer; rows are independent and their moments merge in
 * row order. A non-finite reward or value at a valid position reports the row.
 */
import { groupIndex } from './advantages';
import { maskedMoments, mergeInto, whitenParams, type MomentsState, type WhitenRule } from './moments';

type Values = Float32Array | Float64Array;

export const SCAN = Object.freeze({ none: 0, discounted: 1, gae: 2 });
export const GAP = Object.freeze({ carry: 0, reset: 1, zero: 2 });

/** eps of the optimal-token-baseline denominator (verl compute_optimal_token_baseline_advantage). */
export const OTB_EPS = 1e-8;

/** One scan or whitening call. `V`: host arrays here; lib/ops also builds cuda jobs whose arrays are DeviceTensors. */
export interface TokenJob<V = Values> {
  rows: number;
  cols: number;
  scan: number;
  /** Rewards (scans) or the values to whiten (SCAN.none), [B·T]. */
  x: V;
  values: V | null;
  mask: Uint8Array | null;
  gamma: number;
  lambda: number;
  gap: number;
  whiten: boolean;
  rule: WhitenRule;
  shiftMean: boolean;
  /** Merged (count, mean, M2) from every rank; null: this batch's own. */
  momentsIn: MomentsState | null;
  /** Multiply the whitened result by the mask (REINFORCE++). */
  maskOutput: boolean;
  out: V;
  returns: V | null;
  /** count, mean, M2 of what was whitened, and 1 when whitening was skipped (< 2 valid entries). */
  momentsOut: Float64Array;
}

function scanRow(job: TokenJob, b: number, row: Float64Array): boolean {
  const { cols: T, x, values, mask, gamma, gap } = job;
  const o = b * T;
  let ok = true;
  if (job.scan === SCAN.none) {
    for (let t = 0; t < T; t++) {
      row[t] = x[o + t];
      if (!(mask && mask[o + t] === 0) && !Number.isFinite(row[t])) ok = false;
    }
    return ok;
  }
  const gl = gamma * job.lambda;
  let g = 0, nextValue = 0;
  for (let t = T - 1; t >= 0; t--) {
    const valid = !mask || mask[o + t] === 1;
    const r = x[o + t];
    const v = values ? values[o + t] : 0;
    if (valid && !(Number.isFinite(r) && Number.isFinite(v))) ok = false;
    if (valid || gap === GAP.zero) {
      const rv = valid ? r : 0, vv = valid ? v : 0;
      if (job.scan === SCAN.gae) {
        g = rv + gamma * nextValue - vv + gl * g;
        nextValue = vv;
      } else g = rv + gamma * g;
      row[t] = g;
    } else if (gap === GAP.reset) {
      row[t] = job.scan === SCAN.gae ? g : r + gamma * g;
      g = 0;
      nextValue = 0;
    } else row[t] = g; // carry
    if (job.returns) job.returns[o + t] = job.scan === SCAN.gae ? row[t] + (valid || gap !== GAP.zero ? v : 0) : row[t];
  }
  return ok;
}

/** Scans (or copies) every row, whitens when asked; returns the first row with a non-finite valid entry, or −1. */
export function tokenAdvantages(job: TokenJob): number {
  const { rows: B, cols: T, mask, out } = job;
  const row = new Float64Array(T);
  const own: MomentsState = [0, 0, 0];
  let bad = -1;
  for (let b = 0; b < B; b++) {
    if (!scanRow(job, b, row) && bad < 0) bad = b;
    out.set(row, b * T);
    if (!job.whiten || job.momentsIn) continue;
    // Each row's moments from its f64 scan, merged in row order.
    const [n, mean, m2] = maskedMoments(row, mask ? mask.subarray(b * T, b * T + T) : null, 1, T);
    mergeInto(own, n, mean, m2);
  }
  job.momentsOut.fill(0);
  if (!job.whiten) return bad;
  const m = job.momentsIn ?? own;
  const [mean, invStd, skipped] = whitenParams(m, job.rule);
  job.momentsOut.set([m[0], m[1], m[2], skipped]);
  if (skipped) return bad;
  const back = job.shiftMean ? 0 : mean;
  for (let i = 0; i < B * T; i++) {
    const w = (out[i] - mean) * invStd + back;
    out[i] = job.maskOutput && mask && mask[i] === 0 ? 0 : w;
  }
  return bad;
}

/** (count, mean, M2) of x over the valid entries; the first row with a non-finite valid entry, or −1. */
export function momentsPartial(x: Values, mask: Uint8Array | null, rows: number, cols: number, out: Float64Array): number {
  let bad = -1;
  for (let i = 0; i < rows * cols && bad < 0; i++) {
    if ((!mask || mask[i] === 1) && !Number.isFinite(x[i])) bad = (i / cols) | 0;
  }
  const m = maskedMoments(x, mask, rows, cols);
  out.set(m);
  return bad;
}

/** out[b, last valid t] = R_b, 0 elsewhere; a row with no valid token gets nothing. */
export function placeOutcome(rewards: Values, mask: Uint8Array, rows: number, cols: number, out: Values): number {
  out.fill(0);
  for (let b = 0; b < rows; b++) {
    for (let t = cols - 1; t >= 0; t--) {
      if (mask[b * cols + t] === 1) {
        out[b * cols + t] = rewards[b];
        break;
      }
    }
  }
  return -1;
}

export interface OtbJob {
  rows: number;
  cols: number;
  rewards: Values;
  mask: Uint8Array;
  oldLogprobs: Values;
  sumPiSquared: Values;
  isWeights: Values | null;
  ids: Int32Array | BigInt64Array | null;
  groupSize: number;
  /** 0: a group of one row gets A = 0; 1: A = G (verl: no baseline). */
  rawSingleton: boolean;
  advantages: Values;
  returns: Values;
}

/** SPEC §4.3. Returns the first row with a non-finite input at a valid position, or −1. */
export function optimalTokenBaseline(job: OtbJob): number {
  const { rows: B, cols: T, rewards, mask, oldLogprobs, sumPiSquared, isWeights } = job;
  const groupOf = new Int32Array(B);
  const groups = groupIndex(job.ids, job.groupSize, B, groupOf);
  const G = new Float64Array(B * T);
  const W = new Float64Array(B * T);
  const num = new Float64Array(groups * T);
  const den = new Float64Array(groups * T);
  const size = new Float64Array(groups);
  let bad = -1;
  for (let b = 0; b < B; b++) {
    const o = b * T;
    size[groupOf[b]]++;
    let ret = 0;
    for (let t = T - 1; t >= 0; t--) {
      if (mask[o + t] === 1) ret += rewards[o + t];
      G[o + t] = ret;
    }
    let cum = 0;
    for (let t = 0; t < T; t++) {
      if (mask[o + t] === 1) {
        const rho = isWeights ? isWeights[o + t] : 1;
        const w = (1 - 2 * Math.exp(oldLogprobs[o + t]) + sumPiSquared[o + t]) * rho * rho;
        if (!Number.isFinite(w) || !Number.isFinite(rewards[o + t])) bad = bad < 0 ? b : bad;
        cum += w;
      }
      W[o + t] = cum;
    }
  }
  for (let b = 0; b < B; b++) {
    const o = b * T, go = groupOf[b] * T;
    for (let t = 0; t < T; t++) {
      if (mask[o + t] === 0) continue;
      num[go + t] += G[o + t] * W[o + t];
      den[go + t] += W[o + t];
    }
  }
  for (let b = 0; b < B; b++) {
    const o = b * T, go = groupOf[b] * T;
    const single = size[groupOf[b]] === 1;
    for (let t = 0; t < T; t++) {
      job.returns[o + t] = G[o + t];
      const baseline = single ? (job.rawSingleton ? 0 : G[o + t]) : num[go + t] / (den[go + t] + OTB_EPS);
      job.advantages[o + t] = mask[o + t] === 1 ? G[o + t] - baseline : 0;
    }
  }
  return bad;
}
