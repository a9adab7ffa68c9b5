/**
 * Float64 reference for the advantage family (SPEC §4), engine defaults (no preset). Deliberately plain: groups
 * are lists of row indices in a Map, every statistic is a loop over a list, every formula is the SPEC's line.
 * Tests import this file; nothing copies it.
 */
import type { Sfc32 } from '../../lib/prng';

const { sqrt, log, exp, PI, max, min } = Math;
const isNaN = Number.isNaN;

export function mean(xs: number[]): number {
  let s = 0;
  for (const x of xs) s += x;
  return xs.length ? s / xs.length : 0;
}

/** Unbiased (N − 1) standard deviation; 0 below 2 values. */
export function std(xs: number[]): number {
  if (xs.length < 2) return 0;
  const m = mean(xs);
  let s = 0;
  for (const x of xs) s += (x - m) * (x - m);
  return sqrt(s / (xs.length - 1));
}

function allEqual(xs: number[]): boolean {
  return xs.every((x) => x === xs[0]);
}

/** log Γ(x), x > 0: shift to z ≥ 8, then Stirling's series (independent of the engine's Lanczos). */
export function logGammaRef(x: number): number {
  let shift = 0;
  let z = x;
  while (z < 8) {
    shift += log(z);
    z += 1;
  }
  const z2 = z * z;
  return (z - 0.5) * log(z) - z + 0.5 * log(2 * PI) + 1 / (12 * z) - 1 / (360 * z * z2) + 1 / (1260 * z * z2 * z2)
    - 1 / (1680 * z * z2 * z2 * z2) - shift;
}

export interface RefAdvantageInputs {
  rewards: ArrayLike<number>;
  weights?: number[];
  groupIds?: ArrayLike<number>;
  lengths?: ArrayLike<number>;
  baselines?: ArrayLike<number>;
}
export interface RefAdvantageOptions {
  estimator: string;
  scale?: 'group' | 'batch' | 'none';
  eps?: number;
  virtualMax?: number;
  multiReward?: 'sumThenNormalize' | 'normalizeThenSum';
}
export interface RefAdvantages {
  advantages: Float64Array;
  groupMean: Float64Array;
  groupStd: Float64Array;
  groups: number;
  singletonGroups: number;
  zeroStdGroups: number;
  unscorableRows: number;
}

// ---- the case table of the advantage suites (test/advantages.test.ts, test/cuda_emulation_advantages.test.ts) ----

export const ESTIMATORS: readonly RefAdvantageOptions[] = [
  { estimator: 'grpo' },
  { estimator: 'grpo', scale: 'batch' },
  { estimator: 'grpo', scale: 'none' },
  { estimator: 'rloo' },
  { estimator: 'reinforceBaseline' },
  { estimator: 'remax' },
  { estimator: 'opo' },
  { estimator: 'gpg' },
  { estimator: 'passk' },
  { estimator: 'passk', scale: 'none' },
  { estimator: 'bnpo' },
  { estimator: 'ngrpo' },
  { estimator: 'ngrpo', virtualMax: 2, scale: 'batch' },
];
export const KINDS = ['binary', 'continuous', 'ties'] as const;
export type Kind = (typeof KINDS)[number];
export interface Batch {
  rewards: Float64Array;
  weights?: number[];
  groupIds: number[];
  lengths: number[];
  baselines: number[];
}

/** A shuffled batch of groups of sizes 1, 2, 3–9 and 64, some all equal, with NaN entries when `nan`. */
export function makeBatch(r: Sfc32, kind: Kind, K: number, nan: boolean): Batch {
  const sizes = [1, 2, 64, 1, 2, 2 + r.int(8), 2 + r.int(8), 2 + r.int(8), 3];
  const rows: { id: number; values: number[] }[] = [];
  sizes.forEach((size, k) => {
    const id = r.int(2) ? r.int(1 << 30) - (1 << 29) : k * 1000003; // arbitrary, non-contiguous keys
    const equal = k === 7 || k === 8; // all-equal groups
    const common = Array.from({ length: K }, () => draw(r, kind));
    for (let j = 0; j < size; j++) {
      rows.push({ id, values: Array.from({ length: K }, (_, c) => (equal ? common[c] : draw(r, kind))) });
    }
  });
  for (let i = rows.length - 1; i > 0; i--) {
    const j = r.int(i + 1);
    [rows[i], rows[j]] = [rows[j], rows[i]];
  }
  if (nan) {
    for (const row of rows) {
      if (r.float() < 0.1) row.values.fill(NaN); // unscorable row
      else if (K > 1 && r.float() < 0.2) row.values[r.int(K)] = NaN; // one component not scored
    }
  }
  return {
    rewards: Float64Array.from(rows.flatMap((x) => x.values)),
    ...(K > 1 ? { weights: Array.from({ length: K }, () => r.uniform(0.2, 2)) } : {}),
    groupIds: rows.map((x) => x.id),
    lengths: rows.map(() => 1 + r.int(50)),
    baselines: rows.map(() => r.normal()),
  };
}

function draw(r: Sfc32, kind: Kind): number {
  return kind === 'binary' ? r.int(2) : kind === 'ties' ? r.pick([0, 0.5, 1]) : 2 * r.normal() + 0.5;
}

function groupsOf(ids: ArrayLike<number>): Map<number, number[]> {
  const groups = new Map<number, number[]>();
  for (let i = 0; i < ids.length; i++) {
    if (!groups.has(ids[i])) groups.set(ids[i], []);
    groups.get(ids[i])!.push(i);
  }
  return groups;
}

const scoredOf = (rows: number[], R: ArrayLike<number>) => rows.filter((i) => !isNaN(R[i]));

/** Component k of row i. */
function component(rewards: ArrayLike<number>, K: number, i: number, k: number): number {
  return rewards[i * K + k];
}

/** R_i = Σ_k w_k r_ik over scored components (NaN when none is scored). */
function sumThenNormalize(rewards: ArrayLike<number>, w: number[], B: number): number[] {
  const K = w.length;
  return Array.from({ length: B }, (_, i) => {
    let s = NaN;
    for (let k = 0; k < K; k++) {
      const v = component(rewards, K, i, k);
      if (!isNaN(v)) s = (isNaN(s) ? 0 : s) + w[k] * v;
    }
    return s;
  });
}

/** GDPO: each component z-scored in its group (eps 1e-4; < 2 scored or all equal → 0), weighted sum. */
function normalizeThenSumRewards(rewards: ArrayLike<number>, w: number[], B: number, groups: Map<number, number[]>): number[] {
  const K = w.length;
  const R = new Array<number>(B).fill(NaN);
  for (let k = 0; k < K; k++) {
    for (const rows of groups.values()) {
      const vals = rows.map((i) => component(rewards, K, i, k)).filter((v) => !isNaN(v));
      for (const i of rows) {
        const v = component(rewards, K, i, k);
        if (isNaN(v)) continue;
        const z = vals.length >= 2 && !allEqual(vals) ? (v - mean(vals)) / (std(vals) + 1e-4) : 0;
        R[i] = (isNaN(R[i]) ? 0 : R[i]) + w[k] * z;
      }
    }
  }
  return R;
}

export function refAdvantages(inputs: RefAdvantageInputs, opts: RefAdvantageOptions): RefAdvantages {
  const w = inputs.weights ?? [1];
  const K = w.length;
  const B = inputs.rewards.length / K;
  const eps = opts.eps ?? 1e-6;
  const scale = opts.scale ?? 'group';
  const groups = inputs.groupIds ? groupsOf(inputs.groupIds) : new Map<number, number[]>();
  const R = opts.multiReward === 'normalizeThenSum'
    ? normalizeThenSumRewards(inputs.rewards, w, B, groups) : sumThenNormalize(inputs.rewards, w, B);
  const A = new Float64Array(B);
  const out: RefAdvantages = {
    advantages: A, groupMean: new Float64Array(B), groupStd: new Float64Array(B), groups: groups.size,
    singletonGroups: 0, zeroStdGroups: 0, unscorableRows: R.filter((r) => isNaN(r)).length,
  };
  const allScored = R.filter((r) => !isNaN(r));
  const batchStd = std(allScored);
  const by = (g: number) => (scale === 'group' ? g + eps : scale === 'batch' ? batchStd + eps : 1);
  const gpgAlpha = allScored.length / max(allScored.filter((r) => r !== 0).length, 1);
  const centred = new Map<number, number>(); // reinforceBaseline's d_i before whitening
  for (const rows of groups.values()) {
    const S = scoredOf(rows, R);
    const vals = S.map((i) => R[i]);
    if (rows.length === 1) out.singletonGroups++;
    if (vals.length >= 2 && allEqual(vals)) out.zeroStdGroups++;
    for (const i of rows) {
      out.groupMean[i] = mean(vals);
      out.groupStd[i] = std(vals);
    }
    if (rows.length === 1 || vals.length < 2 || opts.estimator === 'bnpo' || opts.estimator === 'remax') continue;
    const m = mean(vals), s = std(vals), n = vals.length, equal = allEqual(vals);
    if (opts.multiReward === 'normalizeThenSum') continue;
    for (const i of S) {
      const r = R[i];
      switch (opts.estimator) {
        case 'grpo': A[i] = equal ? 0 : (r - m) / by(s); break;
        case 'rloo': A[i] = equal ? 0 : r - (n * m - r) / (n - 1); break;
        case 'reinforceBaseline': centred.set(i, equal ? 0 : r - m); break;
        case 'opo': {
          let lr = 0, l = 0;
          for (const j of S) {
            lr += inputs.lengths![j] * R[j];
            l += inputs.lengths![j];
          }
          A[i] = equal ? 0 : r - lr / l;
          break;
        }
        case 'gpg': A[i] = equal ? 0 : gpgAlpha * (r - m); break;
        case 'passk': {
          const sorted = [...vals].sort((a, b) => b - a);
          const best = S.find((j) => R[j] === sorted[0]);
          A[i] = i === best && sorted[0] > sorted[1] ? (sorted[0] - sorted[1]) / by(s) : 0;
          break;
        }
        case 'ngrpo': {
          const augmented = [...vals, opts.virtualMax ?? 1];
          A[i] = allEqual(augmented) ? 0 : (r - mean(augmented)) / by(std(augmented));
          break;
        }
        default: throw new Error(`no reference for ${opts.estimator}`);
      }
    }
  }
  if (opts.estimator === 'remax') {
    for (let i = 0; i < B; i++) A[i] = isNaN(R[i]) ? 0 : R[i] - inputs.baselines![i];
  }
  if (opts.multiReward === 'normalizeThenSum') {
    const equal = allScored.length < 2 || allEqual(allScored);
    for (const rows of groups.values()) {
      for (const i of rows) A[i] = isNaN(R[i]) || rows.length === 1 || equal ? 0 : (R[i] - mean(allScored)) / (batchStd + eps);
    }
  }
  if (opts.estimator === 'reinforceBaseline') {
    // Whitened over valid tokens: each sequence counts lengths[i] times (once without lengths).
    let n = 0, s = 0;
    for (const [i, d] of centred) {
      const wt = inputs.lengths ? inputs.lengths[i] : 1;
      n += wt;
      s += wt * d;
    }
    const mu = s / n;
    let ss = 0;
    for (const [i, d] of centred) ss += (inputs.lengths ? inputs.lengths[i] : 1) * (d - mu) * (d - mu);
    for (const [i, d] of centred) A[i] = n >= 2 ? (d - mu) / sqrt(ss / (n - 1) + 1e-8) : d;
  }
  if (opts.estimator === 'bnpo') refBnpo(inputs.rewards, w, B, groups, A);
  return out;
}

/** bnpo: per component, rescale to [0, 1] over the batch, fit Beta(α, β) to the group means, average. */
function refBnpo(rewards: ArrayLike<number>, w: number[], B: number, groups: Map<number, number[]>, A: Float64Array): void {
  const K = w.length;
  const count = new Float64Array(B);
  for (let k = 0; k < K; k++) {
    const all: number[] = [];
    for (let i = 0; i < B; i++) if (!isNaN(component(rewards, K, i, k))) all.push(component(rewards, K, i, k));
    const lo = min(...all), range = max(...all) - lo;
    const fitted: number[] = [];
    for (const rows of groups.values()) {
      const vals = rows.map((i) => component(rewards, K, i, k)).filter((v) => !isNaN(v));
      if (rows.length >= 2 && vals.length >= 2) fitted.push((mean(vals) - lo) / range);
    }
    const m = mean(fitted), v = std(fitted) ** 2;
    let alpha = 1, beta = 1;
    if (fitted.length >= 2 && v > 0 && m > 0 && m < 1) {
      const kk = (m * (1 - m)) / v - 1;
      alpha = max(1 + (kk * m) / 3, 1);
      beta = max(1 + (kk * (1 - m)) / 3, 1);
    }
    const logB = logGammaRef(alpha) + logGammaRef(beta) - logGammaRef(alpha + beta);
    for (const rows of groups.values()) {
      const vals = rows.map((i) => component(rewards, K, i, k)).filter((x) => !isNaN(x));
      const p = (mean(vals) - lo) / range;
      const pdf = exp((alpha === 1 ? 0 : (alpha - 1) * log(p)) + (beta === 1 ? 0 : (beta - 1) * log(1 - p)) - logB);
      const weight = min(1 / pdf, 1e6);
      for (const i of rows) {
        const x = component(rewards, K, i, k);
        if (isNaN(x)) continue;
        count[i]++;
        if (rows.length < 2 || vals.length < 2 || allEqual(vals) || !(range > 0)) continue;
        A[i] += w[k] * weight * ((x - lo) / range - p);
      }
    }
  }
  for (let i = 0; i < B; i++) A[i] = count[i] > 0 ? A[i] / count[i] : 0;
}

// ---- token level ----

/** SPEC §4.2 GAE with the carry rule, unwhitened: [g, returns]. */
export function refGae(r: ArrayLike<number>, v: ArrayLike<number>, m: ArrayLike<number>, B: number, T: number, gamma: number, lambda: number): [Float64Array, Float64Array] {
  const g = new Float64Array(B * T), ret = new Float64Array(B * T);
  for (let b = 0; b < B; b++) {
    let next = 0, acc = 0;
    for (let t = T - 1; t >= 0; t--) {
      const i = b * T + t;
      if (m[i] === 1) {
        acc = r[i] + gamma * next - v[i] + gamma * lambda * acc;
        next = v[i];
      }
      g[i] = acc;
      ret[i] = acc + v[i];
    }
  }
  return [g, ret];
}

/** G_t = r_t + γ·G_{t+1} over valid positions; masked positions carry G unchanged. */
export function refReturns(r: ArrayLike<number>, m: ArrayLike<number>, B: number, T: number, gamma: number): Float64Array {
  const out = new Float64Array(B * T);
  for (let b = 0; b < B; b++) {
    let acc = 0;
    for (let t = T - 1; t >= 0; t--) {
      const i = b * T + t;
      if (m[i] === 1) acc = r[i] + gamma * acc;
      out[i] = acc;
    }
  }
  return out;
}

/** SPEC §4.4 whitening with the unbiased variance over the valid entries. */
export function refWhiten(x: ArrayLike<number>, m: ArrayLike<number> | null, eps = 1e-8): Float64Array {
  const valid: number[] = [];
  for (let i = 0; i < x.length; i++) if (!m || m[i] === 1) valid.push(x[i]);
  if (valid.length < 2) return Float64Array.from(x);
  const mu = mean(valid), sd = std(valid);
  return Float64Array.from(x, (v) => (v - mu) / sqrt(sd * sd + eps));
}

/** SPEC §4.3 optimal token baseline (a group of one row: A = 0). */
export function refOtb(
  r: ArrayLike<number>, m: ArrayLike<number>, old: ArrayLike<number>, spp: ArrayLike<number>, ids: ArrayLike<number>, B: number, T: number,
): { advantages: Float64Array; returns: Float64Array } {
  const G = new Float64Array(B * T), W = new Float64Array(B * T), A = new Float64Array(B * T);
  for (let b = 0; b < B; b++) {
    let acc = 0;
    for (let t = T - 1; t >= 0; t--) {
      if (m[b * T + t] === 1) acc += r[b * T + t];
      G[b * T + t] = acc;
    }
    let cum = 0;
    for (let t = 0; t < T; t++) {
      if (m[b * T + t] === 1) cum += 1 - 2 * exp(old[b * T + t]) + spp[b * T + t];
      W[b * T + t] = cum;
    }
  }
  for (const rows of groupsOf(ids).values()) {
    for (let t = 0; t < T; t++) {
      let num = 0, den = 0;
      for (const j of rows) {
        if (m[j * T + t] === 1) {
          num += G[j * T + t] * W[j * T + t];
          den += W[j * T + t];
        }
      }
      for (const j of rows) {
        const baseline = rows.length === 1 ? G[j * T + t] : num / (den + 1e-8);
        A[j * T + t] = m[j * T + t] === 1 ? G[j * T + t] - baseline : 0;
      }
    }
  }
  return { advantages: A, returns: G };
}
