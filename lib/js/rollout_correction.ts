/**
 * JS kernel of the rollout (train/inference mismatch) correction (SPEC §2.2), f64 arithmetic, the same passes
 * as native/rollout_correction.cc: per row, δ_r = old − roll over the valid tokens, the raw weight (token:
 * exp(clamp(δ_r, ±20)); sequence: exp(clamp(Σ m·δ_r, ±20)); geometric: exp(Σ m·δ_r / |y|)), the rejection
 * statistic, then the final weight (truncated, or 0 outside the bounds in mask mode) and mask, and the sums the
 * metrics are built from, reduced in row order.
 */
export const LEVELS = ['token', 'sequence', 'geometric'] as const;
export type Level = (typeof LEVELS)[number];
export const CORRECTION_MODES = ['truncate', 'mask'] as const;
export type CorrectionMode = (typeof CORRECTION_MODES)[number];
export const STATISTICS = ['k1', 'k2', 'k3'] as const;
export type Statistic = (typeof STATISTICS)[number];
export const REJECT_AGGREGATES = ['token', 'sum', 'mean', 'max'] as const;
export type RejectAggregate = (typeof REJECT_AGGREGATES)[number];

export interface CorrectionParams {
  level: Level;
  mode: CorrectionMode;
  /** Bounds of the weight; −inf / +inf when absent. */
  low: number;
  high: number;
  /** Rejection: statistic, how it is aggregated per sequence, and the bound it may not exceed (null: none). */
  reject: { statistic: Statistic; aggregate: RejectAggregate; bound: number } | null;
}

/** Sums over valid tokens (native/rollout_correction.h CorrectionSum), then the summary's extrema. */
export const CSUM = {
  valid: 0, kept: 1, weight: 2, weightSq: 3, rawWeightSq: 4, truncatedHigh: 5, truncatedLow: 6, rejected: 7,
  mismatch: 8, count: 9,
} as const;
export const CSUMMARY = { sums: 0, weightMin: CSUM.count, weightMax: CSUM.count + 1, nonFiniteRow: CSUM.count + 2, size: CSUM.count + 3 } as const;

/** The per-token rejection statistic of δ_r (clamped to ±20 as verl's rollout_corr_helper does). */
export function statisticOf(statistic: Statistic, deltaR: number): number {
  const d = Math.min(Math.max(deltaR, -20), 20);
  return statistic === 'k1' ? -d : statistic === 'k2' ? 0.5 * d * d : Math.exp(d) - 1 - d;
}

type Values = Float32Array | Float64Array;

export function rolloutCorrection(
  rows: number, cols: number, old: Values, roll: Values, mask: Uint8Array, p: CorrectionParams,
  weights: Values, keep: Uint8Array, summary: Float64Array,
): number {
  summary.fill(0);
  let weightMin = Infinity;
  let weightMax = -Infinity;
  let nonFinite = -1;
  const sums = new Float64Array(CSUM.count);
  for (let b = 0; b < rows; b++) {
    const off = b * cols;
    let sumDelta = 0;
    let count = 0;
    let statSum = 0;
    let statMax = 0;
    let rowFinite = true;
    for (let i = off; i < off + cols; i++) {
      if (mask[i] === 0) continue;
      const d = old[i] - roll[i];
      if (!Number.isFinite(d)) rowFinite = false;
      sumDelta += d;
      count++;
      if (p.reject) {
        const s = statisticOf(p.reject.statistic, d);
        statSum += s;
        statMax = count === 1 || s > statMax ? s : statMax;
      }
    }
    if (!rowFinite && nonFinite < 0) nonFinite = b;
    const seqWeight = p.level === 'sequence' ? Math.exp(Math.min(Math.max(sumDelta, -20), 20))
      : p.level === 'geometric' ? Math.exp(count > 0 ? sumDelta / count : 0) : 0;
    const seqStat = !p.reject ? 0 : p.reject.aggregate === 'sum' ? statSum
      : p.reject.aggregate === 'mean' ? (count > 0 ? statSum / count : 0) : statMax;
    const rowRejected = p.reject !== null && p.reject.aggregate !== 'token' && seqStat > p.reject.bound;
    for (let i = off; i < off + cols; i++) {
      if (mask[i] === 0) {
        weights[i] = 0;
        keep[i] = 0;
        continue;
      }
      const d = old[i] - roll[i];
      const raw = p.level === 'token' ? Math.exp(Math.min(Math.max(d, -20), 20)) : seqWeight;
      const high = raw > p.high;
      const low = raw < p.low;
      const tokenRejected = p.reject !== null && p.reject.aggregate === 'token' && statisticOf(p.reject.statistic, d) > p.reject.bound;
      const kept = !rowRejected && !tokenRejected && !(p.mode === 'mask' && (high || low));
      const w = kept ? (p.mode === 'truncate' ? Math.min(Math.max(raw, p.low), p.high) : raw) : 0;
      weights[i] = w;
      keep[i] = kept ? 1 : 0;
      sums[CSUM.valid] += 1;
      sums[CSUM.rawWeightSq] += raw * raw;
      sums[CSUM.mismatch] += -d;
      if (high) sums[CSUM.truncatedHigh] += 1;
      if (low) sums[CSUM.truncatedLow] += 1;
      if (!kept) {
        sums[CSUM.rejected] += 1;
        continue;
      }
      sums[CSUM.kept] += 1;
      sums[CSUM.weight] += w;
      sums[CSUM.weightSq] += w * w;
      if (w < weightMin) weightMin = w;
      if (w > weightMax) weightMax = w;
    }
  }
  summary.set(sums, CSUMMARY.sums);
  summary[CSUMMARY.weightMin] = Number.isFinite(weightMin) ? weightMin : 0;
  summary[CSUMMARY.weightMax] = Number.isFinite(weightMax) ? weightMax : 0;
  summary[CSUMMARY.nonFiniteRow] = nonFinite;
  return nonFinite;
}
