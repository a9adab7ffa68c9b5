/**
 * Mergeable moments in plain JavaScript (SPEC §4.4): the (count, mean, M2) state of Chan, Golub and LeVeque,
 * its merge, masked moments of a [B, T] array, and the whitening that uses them. The same functions as
 * native/token_advantages.cc (masked_moments, whiten_params).
 *
 *   merge (n_a, μ_a, M2_a) ⊕ (n_b, μ_b, M2_b):  n = n_a + n_b,  δ = μ_b − μ_a,
 *     μ = μ_a + δ·n_b/n,  M2 = M2_a + M2_b + δ²·n_a·n_b/n
 *
 * Each row is reduced on its own (two passes: mean, then Σ(x − μ)²) and rows are merged in row order, so
 * the result does not depend on how a backend splits rows across threads. Counts may be weights (token
 * counts of sequences). Everything in f64.
 */

/** (count, mean, M2) in f64; count 0 is the empty state. */
export type MomentsState = [count: number, mean: number, m2: number];

/** a ⊕ b into a (Chan's pairwise update). */
export function mergeInto(a: MomentsState, count: number, mean: number, m2: number): void {
  if (count === 0) return;
  const n = a[0] + count;
  const delta = mean - a[1];
  a[1] += (delta * count) / n;
  a[2] += m2 + ((delta * delta * a[0]) * count) / n;
  a[0] = n;
}

/** Moments of x over the entries where mask = 1 (all when null), rows of length `cols` merged in row order. */
export function maskedMoments(
  x: Float32Array | Float64Array, mask: Uint8Array | null, rows: number, cols: number,
): MomentsState {
  const total: MomentsState = [0, 0, 0];
  for (let b = 0; b < rows; b++) {
    const o = b * cols;
    let n = 0, sum = 0;
    for (let t = 0; t < cols; t++) {
      if (mask && mask[o + t] === 0) continue;
      n++;
      sum += x[o + t];
    }
    if (n === 0) continue;
    const mean = sum / n;
    let m2 = 0;
    for (let t = 0; t < cols; t++) {
      if (mask && mask[o + t] === 0) continue;
      const d = x[o + t] - mean;
      m2 += d * d;
    }
    mergeInto(total, n, mean, m2);
  }
  return total;
}

/** How a trainer turns (count, mean, M2) into a whitening (SPEC §7): rows of the preset table. */
export interface WhitenRule {
  /** Added to the count in every masked mean (verl's masked_mean divides by Σm + 1e-8). */
  meanEps: number;
  /** Unbiased (N − 1) variance; false: M2 / N (OpenRLHF). */
  unbiased: boolean;
  /** 'add': 1/sqrt(var + eps); 'clamp': 1/sqrt(max(var, eps)) (OpenRLHF). */
  epsMode: 'add' | 'clamp';
  eps: number;
}

/** [mean, 1/std, skipped]: fewer than 2 valid entries are left unchanged and flagged (skipped = 1). */
export function whitenParams(m: MomentsState, rule: WhitenRule): [mean: number, invStd: number, skipped: number] {
  const [n, mu, m2] = m;
  if (!(n >= 2)) return [0, 1, 1];
  // A trainer whose mean divides by (n + ε) centres on that shifted mean; M2 about it grows by n·(μ − μ')².
  const mean = rule.meanEps === 0 ? mu : (n * mu) / (n + rule.meanEps);
  const shift = mu - mean;
  const centred = m2 + n * shift * shift;
  const variance = rule.unbiased ? (centred / (n + rule.meanEps)) * (n / (n - 1)) : centred / (n + rule.meanEps);
  const invStd = 1 / Math.sqrt(rule.epsMode === 'add' ? variance + rule.eps : Math.max(variance, rule.eps));
  return [mean, invStd, 0];
}

/** Per-key moments of the non-NaN values, keys in order of first appearance (a Map is a hash table). */
export function groupMoments(
  values: ArrayLike<number>, keys: ArrayLike<number>,
): { ids: number[]; count: number[]; mean: number[]; m2: number[]; min: number[]; max: number[] } {
  const index = new Map<number, number>();
  const ids: number[] = [], count: number[] = [], sum: number[] = [], min: number[] = [], max: number[] = [];
  const groupOf = new Int32Array(values.length);
  for (let i = 0; i < values.length; i++) {
    let g = index.get(keys[i]);
    if (g === undefined) {
      g = ids.length;
      index.set(keys[i], g);
      ids.push(keys[i]);
      count.push(0), sum.push(0), min.push(Infinity), max.push(-Infinity);
    }
    groupOf[i] = g;
    const v = values[i];
    if (v !== v) continue;
    count[g]++;
    sum[g] += v;
    if (v < min[g]) min[g] = v;
    if (v > max[g]) max[g] = v;
  }
  const mean = sum.map((s, g) => (count[g] > 0 ? s / count[g] : 0));
  const m2 = new Array<number>(ids.length).fill(0);
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v === v) m2[groupOf[i]] += (v - mean[groupOf[i]]) * (v - mean[groupOf[i]]);
  }
  return { ids, count, mean, m2, min, max };
}
