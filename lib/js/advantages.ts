/**
 * Outcome advantages over groups in plain JavaScript (SPEC §4.1): the same pipeline as
 * native/advantages.cc, phase for phase.
 *
 *   1. R_i: the scalar reward of row i (K = 1: r_i; K > 1: Σ_k w_k r_ik over scored components, or with
 *      normalizeThenSum Σ_k w_k z_ik, z the component z-scored in its group with eps 1e-4). NaN = unscored.
 *   2. groups: ids hashed by open addressing (numbered in order of first appearance), or i / groupSize.
 *   3. per group, in row order: rows, scored n, Σ R → mean, Σ (R − mean)², min, max (+ opo's Σ L, Σ L·R,
 *      passk's two best).
 *   4. the batch partial state (mergeable across data-parallel ranks), or the merged one given by the caller.
 *   5. A_i by the estimator's formula; singletons, zero-variance groups and unscored rows as the rules say.
 *
 * Everything is f64; groups accumulate in row order, so results do not depend on how rows are split.
 */
import { mergeInto, whitenParams, type MomentsState, type WhitenRule } from './moments';

export const ESTIMATOR = Object.freeze({
  grpo: 0, rloo: 1, reinforceBaseline: 2, remax: 3, opo: 4, gpg: 5, passk: 6, bnpo: 7, ngrpo: 8,
});
export const SCALE = Object.freeze({ group: 0, batch: 1, none: 2 });
/** What a group of one row gets: 0 (engine), its raw score against baseline 0 and scale 1 (verl), or an error. */
export const SINGLETON = Object.freeze({ zero: 0, raw: 1, reject: 2 });

/** Layout of the stats output: counts over this call's rows. */
export const STAT = Object.freeze({ groups: 0, singletonGroups: 1, zeroStdGroups: 2, unscorableRows: 3, whitenSkipped: 4, length: 5 });
/**
 * Layout of the batch partial state (f64): scored rows, rows with R ≠ 0, moments of R, weighted moments of
 * the centred rewards that reinforceBaseline whitens, then per reward component (bnpo): min, max, and the
 * moments of the component's group means.
 */
export const BATCH = Object.freeze({
  rows: 0, nonZero: 1, rewardN: 2, rewardMean: 3, rewardM2: 4, whitenN: 5, whitenMean: 6, whitenM2: 7,
  fixed: 8, perComponent: 5, min: 0, max: 1, groupN: 2, groupMean: 3, groupM2: 4,
});

/** eps of the per-component z-score under normalizeThenSum (GDPO, TRL). */
const COMPONENT_EPS = 1e-4;
/** bnpo clips 1/BetaPDF(p) to [0, 1e6] (infinite where the density is 0). */
const BNPO_MAX_WEIGHT = 1e6;

export interface AdvantagesJob {
  rows: number;
  components: number;
  rewards: Float32Array | Float64Array;
  weights: Float64Array;
  ids: Int32Array | BigInt64Array | null;
  groupSize: number;
  lengths: Float64Array | null;
  baselines: Float64Array | null;
  estimator: number;
  scale: number;
  eps: number;
  virtualMax: number;
  normalizeThenSum: boolean;
  singleton: number;
  exactZeroVariance: boolean;
  whiten: WhitenRule;
  /** |A| ≤ clip before whitening (0: none). */
  clip: number;
  batchIn: Float64Array | null;
  partialOnly: boolean;
  advantages: Float32Array | Float64Array | null;
  groupMean: Float32Array | Float64Array | null;
  groupStd: Float32Array | Float64Array | null;
  stats: Float64Array;
  batchOut: Float64Array;
}

// ---- groups ----

/**
 * groupOf[i] for every row, groups numbered in order of first appearance; returns the group count. Ids are
 * hashed (open addressing, no sort): O(B) expected.
 */
export function groupIndex(ids: Int32Array | BigInt64Array | null, groupSize: number, B: number, groupOf: Int32Array): number {
  if (ids === null) {
    for (let i = 0; i < B; i++) groupOf[i] = (i / groupSize) | 0;
    return groupSize > 0 ? B / groupSize : 0;
  }
  // 64-bit ids are compared as (lo, hi) int32 halves of the little-endian words, 32-bit ids as (id, 0).
  const wide = ids instanceof BigInt64Array;
  const words = wide ? new Int32Array(ids.buffer, ids.byteOffset, 2 * B) : (ids as Int32Array);
  let capacity = 16;
  while (capacity < 2 * B) capacity *= 2;
  const mask = capacity - 1;
  const table = new Int32Array(capacity).fill(-1);
  const firstRow = new Int32Array(B);
  let groups = 0;
  for (let i = 0; i < B; i++) {
    const lo = wide ? words[2 * i] : words[i];
    const hi = wide ? words[2 * i + 1] : 0;
    let h = Math.imul(lo ^ Math.imul(hi, 0x27d4eb2f), 0x9e3779b1);
    h ^= h >>> 16;
    let slot = h & mask;
    for (;;) {
      const g = table[slot];
      if (g < 0) {
        table[slot] = groups;
        firstRow[groups] = i;
        groupOf[i] = groups++;
        break;
      }
      const r = firstRow[g];
      if ((wide ? words[2 * r] : words[r]) === lo && (wide ? words[2 * r + 1] : 0) === hi) {
        groupOf[i] = g;
        break;
      }
      slot = (slot + 1) & mask;
    }
  }
  return groups;
}

interface GroupStats {
  rows: Float64Array;
  n: Float64Array;
  sum: Float64Array;
  mean: Float64Array;
  m2: Float64Array;
  min: Float64Array;
  max: Float64Array;
}

function newGroupStats(G: number): GroupStats {
  return {
    rows: new Float64Array(G), n: new Float64Array(G), sum: new Float64Array(G), mean: new Float64Array(G),
    m2: new Float64Array(G), min: new Float64Array(G).fill(Infinity), max: new Float64Array(G).fill(-Infinity),
  };
}

/** Two passes in row order over the values x[i·stride + offset] that are not NaN. */
function groupStats(
  x: ArrayLike<number>, stride: number, offset: number, groupOf: Int32Array, B: number, s: GroupStats,
): void {
  for (let i = 0; i < B; i++) {
    const g = groupOf[i];
    s.rows[g]++;
    const v = x[i * stride + offset];
    if (v !== v) continue;
    s.n[g]++;
    s.sum[g] += v;
    if (v < s.min[g]) s.min[g] = v;
    if (v > s.max[g]) s.max[g] = v;
  }
  for (let g = 0; g < s.n.length; g++) s.mean[g] = s.n[g] > 0 ? s.sum[g] / s.n[g] : 0;
  for (let i = 0; i < B; i++) {
    const v = x[i * stride + offset];
    if (v !== v) continue;
    const d = v - s.mean[groupOf[i]];
    s.m2[groupOf[i]] += d * d;
  }
}

function unbiasedStd(n: number, m2: number): number {
  return n >= 2 ? Math.sqrt(m2 / (n - 1)) : 0;
}

// ---- phase 1: the scalar reward per row ----

/** R[i] (NaN when unscored); returns the first row holding ±inf, or −1. */
function combineRewards(job: AdvantagesJob, groupOf: Int32Array, G: number, R: Float64Array): number {
  const { rows: B, components: K, rewards, weights } = job;
  for (let i = 0; i < B * K; i++) if (rewards[i] === Infinity || rewards[i] === -Infinity) return (i / K) | 0;
  if (K === 1) {
    for (let i = 0; i < B; i++) R[i] = rewards[i];
    return -1;
  }
  R.fill(NaN);
  if (!job.normalizeThenSum) {
    for (let i = 0; i < B; i++) {
      for (let k = 0; k < K; k++) {
        const v = rewards[i * K + k];
        if (v === v) R[i] = (R[i] === R[i] ? R[i] : 0) + weights[k] * v;
      }
    }
    return -1;
  }
  // GDPO: z-score each component in its group; a component with < 2 scored values in the group adds 0.
  for (let k = 0; k < K; k++) {
    const s = newGroupStats(G);
    groupStats(rewards, K, k, groupOf, B, s);
    for (let i = 0; i < B; i++) {
      const v = rewards[i * K + k];
      if (v !== v) continue;
      const g = groupOf[i];
      let z = 0;
      if (s.n[g] >= 2 && !(job.exactZeroVariance && s.min[g] === s.max[g])) {
        z = (v - s.mean[g]) / (unbiasedStd(s.n[g], s.m2[g]) + COMPONENT_EPS);
      }
      R[i] = (R[i] === R[i] ? R[i] : 0) + weights[k] * z;
    }
  }
  return -1;
}

// ---- bnpo ----

/** log Γ(x) for x > 0 (Lanczos, g = 7, 9 terms; relative error < 1e-14 here). */
const LANCZOS = [
  0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059,
  12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7,
];
export function logGamma(x: number): number {
  if (x < 0.5) return Math.log(Math.PI / Math.sin(Math.PI * x)) - logGamma(1 - x);
  const z = x - 1;
  let a = LANCZOS[0];
  const t = z + 7.5;
  for (let i = 1; i < 9; i++) a += LANCZOS[i] / (z + i);
  return 0.5 * Math.log(2 * Math.PI) + (z + 0.5) * Math.log(t) - t + Math.log(a);
}

/** [α, β] of the Beta fitted by moments to the batch of group success rates (SPEC §4.1 bnpo). */
export function bnpoShape(mean: number, variance: number, count: number): [number, number] {
  if (!(count >= 2) || !(variance > 0) || !(mean > 0 && mean < 1)) return [1, 1]; // no spread to fit: uniform
  const k = (mean * (1 - mean)) / variance - 1;
  return [Math.max(1 + (k * mean) / 3, 1), Math.max(1 + (k * (1 - mean)) / 3, 1)];
}

/** clip(1 / BetaPDF(p; α, β), 0, 1e6). */
export function bnpoWeight(p: number, alpha: number, beta: number, logBeta: number): number {
  const a = alpha === 1 ? 0 : (alpha - 1) * Math.log(p);
  const b = beta === 1 ? 0 : (beta - 1) * Math.log(1 - p);
  const w = Math.exp(logBeta - a - b);
  return w < BNPO_MAX_WEIGHT ? w : BNPO_MAX_WEIGHT;
}

/** Per-component batch parts of bnpo (min, max, moments of the raw group means of groups with n ≥ 2). */
function bnpoPartial(job: AdvantagesJob, groupOf: Int32Array, G: number, out: Float64Array): void {
  const { rows: B, components: K, rewards } = job;
  for (let k = 0; k < K; k++) {
    const s = newGroupStats(G);
    groupStats(rewards, K, k, groupOf, B, s);
    const o = BATCH.fixed + k * BATCH.perComponent;
    let lo = Infinity, hi = -Infinity;
    const means: MomentsState = [0, 0, 0];
    for (let g = 0; g < G; g++) {
      if (s.n[g] > 0) {
        lo = Math.min(lo, s.min[g]);
        hi = Math.max(hi, s.max[g]);
      }
      if (s.n[g] >= 2 && s.rows[g] >= 2) mergeInto(means, 1, s.mean[g], 0);
    }
    out[o + BATCH.min] = lo;
    out[o + BATCH.max] = hi;
    out[o + BATCH.groupN] = means[0];
    out[o + BATCH.groupMean] = means[1];
    out[o + BATCH.groupM2] = means[2];
  }
}

/** A_i = (1/K_i)·Σ_k w_k·clip(1/BetaPDF(p_Gk))·(r̃_ik − p_Gk), r̃ the component rescaled to [0, 1]. */
function bnpoApply(job: AdvantagesJob, groupOf: Int32Array, G: number, batch: Float64Array, A: Float64Array): void {
  const { rows: B, components: K, rewards, weights } = job;
  const scoredComponents = new Float64Array(B);
  for (let k = 0; k < K; k++) {
    const o = BATCH.fixed + k * BATCH.perComponent;
    const lo = batch[o + BATCH.min];
    const range = batch[o + BATCH.max] - lo;
    const s = newGroupStats(G);
    groupStats(rewards, K, k, groupOf, B, s);
    const n = batch[o + BATCH.groupN];
    const pMean = (batch[o + BATCH.groupMean] - lo) / range;
    const pVar = n >= 2 ? batch[o + BATCH.groupM2] / (n - 1) / (range * range) : 0;
    const [alpha, beta] = bnpoShape(pMean, pVar, n);
    const logBeta = logGamma(alpha) + logGamma(beta) - logGamma(alpha + beta);
    for (let i = 0; i < B; i++) {
      const v = rewards[i * K + k];
      if (v !== v) continue;
      scoredComponents[i]++;
      const g = groupOf[i];
      if (!(range > 0) || s.n[g] < 2 || s.rows[g] < 2) continue;
      if (job.exactZeroVariance && s.min[g] === s.max[g]) continue;
      const p = (s.mean[g] - lo) / range;
      A[i] += weights[k] * bnpoWeight(p, alpha, beta, logBeta) * ((v - lo) / range - p);
    }
  }
  for (let i = 0; i < B; i++) A[i] = scoredComponents[i] > 0 ? A[i] / scoredComponents[i] : 0;
}

// ---- the pipeline ----

/**
 * SPEC §4.1 for one batch. Returns −1, or r ∈ [0, B) for a ±inf reward in row r, or B + r when row r is a
 * group of one and the preset rejects those.
 */
export function advantages(job: AdvantagesJob): number {
  const { rows: B, estimator: est, eps, exactZeroVariance: exactZero } = job;
  const groupOf = new Int32Array(B);
  const grouped = job.ids !== null || job.groupSize > 0;
  const G = grouped ? groupIndex(job.ids, job.groupSize, B, groupOf) : 0;
  const R = new Float64Array(B);
  const bad = combineRewards(job, groupOf, G, R);
  if (bad >= 0) return bad;

  // Phase 3: group statistics of R.
  const s = newGroupStats(G);
  if (grouped) groupStats(R, 1, 0, groupOf, B, s);
  const stats = job.stats;
  stats.fill(0);
  stats[STAT.groups] = G;
  for (let g = 0; g < G; g++) {
    if (s.rows[g] === 1) stats[STAT.singletonGroups]++;
    if (s.n[g] >= 2 && s.min[g] === s.max[g]) stats[STAT.zeroStdGroups]++;
  }
  for (let i = 0; i < B; i++) if (R[i] !== R[i]) stats[STAT.unscorableRows]++;
  if (job.singleton === SINGLETON.reject && est !== ESTIMATOR.remax) {
    for (let i = 0; i < B; i++) if (s.rows[groupOf[i]] === 1) return B + i;
  }
  const lengthSum = new Float64Array(est === ESTIMATOR.opo ? G : 0);
  const lengthRewardSum = new Float64Array(lengthSum.length);
  const top1 = new Float64Array(est === ESTIMATOR.passk ? G : 0).fill(-Infinity);
  const top2 = new Float64Array(top1.length).fill(-Infinity);
  const topRow = new Int32Array(top1.length).fill(-1);
  for (let i = 0; i < B && (lengthSum.length > 0 || top1.length > 0); i++) {
    const r = R[i];
    if (r !== r) continue;
    const g = groupOf[i];
    if (lengthSum.length > 0) {
      lengthSum[g] += job.lengths![i];
      lengthRewardSum[g] += job.lengths![i] * r;
    } else if (r > top1[g]) {
      top2[g] = top1[g];
      top1[g] = r;
      topRow[g] = i;
    } else if (r > top2[g]) top2[g] = r;
  }

  /** How row i's group treats it: 'raw' (baseline 0, scale 1), 'skip' (A = 0) or 'group'. */
  const rawSingleton = job.singleton === SINGLETON.raw;
  const role = (i: number): 0 | 1 | 2 => {
    const g = groupOf[i];
    if (s.rows[g] === 1) return rawSingleton ? 1 : 0;
    return s.n[g] >= 2 ? 2 : 0;
  };
  const allEqual = (g: number) => exactZero && s.min[g] === s.max[g];

  // Phase 4: this batch's partial state.
  const partial = job.batchOut;
  partial.fill(0);
  const rewardMoments: MomentsState = [0, 0, 0];
  let sum = 0;
  for (let i = 0; i < B; i++) {
    if (R[i] !== R[i]) continue;
    partial[BATCH.rows]++;
    if (R[i] !== 0) partial[BATCH.nonZero]++;
    sum += R[i];
  }
  if (partial[BATCH.rows] > 0) {
    const mean = sum / partial[BATCH.rows];
    let m2 = 0;
    for (let i = 0; i < B; i++) if (R[i] === R[i]) m2 += (R[i] - mean) * (R[i] - mean);
    mergeInto(rewardMoments, partial[BATCH.rows], mean, m2);
  }
  [partial[BATCH.rewardN], partial[BATCH.rewardMean], partial[BATCH.rewardM2]] = rewardMoments;
  // reinforceBaseline's centred rewards d_i, weighted by sequence length, before the batch whitening.
  const centred = new Float64Array(est === ESTIMATOR.reinforceBaseline ? B : 0).fill(NaN);
  if (centred.length > 0) {
    let w = 0, wd = 0;
    for (let i = 0; i < B; i++) {
      const kind = R[i] === R[i] ? role(i) : 0;
      if (kind === 0) continue;
      const g = groupOf[i];
      let d = kind === 1 ? R[i] : allEqual(g) ? 0 : R[i] - s.mean[g];
      if (job.clip > 0) d = Math.min(Math.max(d, -job.clip), job.clip);
      centred[i] = d;
      const weight = job.lengths ? job.lengths[i] : 1;
      w += weight;
      wd += weight * d;
    }
    const mean = w > 0 ? wd / w : 0;
    let m2 = 0;
    for (let i = 0; i < B; i++) {
      if (centred[i] !== centred[i]) continue;
      m2 += (job.lengths ? job.lengths[i] : 1) * (centred[i] - mean) * (centred[i] - mean);
    }
    [partial[BATCH.whitenN], partial[BATCH.whitenMean], partial[BATCH.whitenM2]] = [w, mean, m2];
  }
  if (est === ESTIMATOR.bnpo) bnpoPartial(job, groupOf, G, partial);
  if (job.partialOnly) return -1;

  // Phase 5: finalize the batch statistics (merged across ranks when given) and apply the estimator.
  const batch = job.batchIn ?? partial;
  const batchStd = unbiasedStd(batch[BATCH.rewardN], batch[BATCH.rewardM2]);
  const A = new Float64Array(B);
  const scaleOf = (groupStd: number) =>
    job.scale === SCALE.group ? groupStd + eps : job.scale === SCALE.batch ? batchStd + eps : 1;
  if (est === ESTIMATOR.bnpo) bnpoApply(job, groupOf, G, batch, A);
  const [whitenMean, invStd, skipped] = whitenParams(
    [batch[BATCH.whitenN], batch[BATCH.whitenMean], batch[BATCH.whitenM2]], job.whiten,
  );
  if (est === ESTIMATOR.reinforceBaseline) stats[STAT.whitenSkipped] = skipped;
  const gpgAlpha = batch[BATCH.rows] / Math.max(batch[BATCH.nonZero], 1);
  for (let i = 0; i < B; i++) {
    const r = R[i];
    if (r !== r || est === ESTIMATOR.bnpo) continue;
    if (est === ESTIMATOR.remax) {
      A[i] = r - job.baselines![i];
      continue;
    }
    if (job.normalizeThenSum) {
      const zero = batch[BATCH.rewardN] < 2 || (exactZero && batch[BATCH.rewardM2] === 0);
      A[i] = zero || role(i) === 0 ? 0 : (r - batch[BATCH.rewardMean]) / (batchStd + eps);
      continue;
    }
    if (est === ESTIMATOR.reinforceBaseline) {
      const d = centred[i];
      A[i] = d !== d ? 0 : skipped ? d : (d - whitenMean) * invStd;
      continue;
    }
    const kind = role(i);
    if (kind === 0) continue;
    const g = groupOf[i];
    const raw = kind === 1;
    const n = s.n[g];
    const mean = raw ? 0 : s.mean[g];
    const std = raw ? 1 : unbiasedStd(n, s.m2[g]);
    const d = raw ? r : allEqual(g) ? 0 : r - mean;
    let a: number;
    switch (est) {
      case ESTIMATOR.grpo:
        a = d / scaleOf(std);
        break;
      case ESTIMATOR.rloo:
        a = raw ? d : allEqual(g) ? 0 : (n * r - s.sum[g]) / (n - 1);
        break;
      case ESTIMATOR.opo:
        a = raw ? d : allEqual(g) ? 0 : r - lengthRewardSum[g] / lengthSum[g];
        break;
      case ESTIMATOR.gpg:
        a = gpgAlpha * d;
        break;
      case ESTIMATOR.passk:
        a = i === topRow[g] && top1[g] > top2[g] ? (top1[g] - top2[g]) / scaleOf(std) : 0;
        break;
      default: {
        // ngrpo: the group plus one virtual response of reward virtualMax (Chan's update with one point).
        const v = job.virtualMax;
        const meanV = mean + (v - mean) / (n + 1);
        const m2V = s.m2[g] + ((v - mean) * (v - mean) * n) / (n + 1);
        const equal = exactZero && s.min[g] === v && s.max[g] === v;
        a = equal ? 0 : (r - meanV) / scaleOf(Math.sqrt(m2V / n));
      }
    }
    A[i] = a;
  }
  const out = job.advantages!;
  // OpenRLHF clips the shaped reward; reinforceBaseline's was clipped before its whitening.
  const clip = est === ESTIMATOR.reinforceBaseline || job.clip === 0 ? Infinity : job.clip;
  for (let i = 0; i < B; i++) out[i] = A[i] < -clip ? -clip : A[i] > clip ? clip : A[i];
  for (let i = 0; i < B; i++) {
    const g = groupOf[i];
    job.groupMean![i] = grouped ? s.mean[g] : 0;
    job.groupStd![i] = grouped ? unbiasedStd(s.n[g], s.m2[g]) : 0;
  }
  return -1;
}
