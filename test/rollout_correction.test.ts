/**
 * rolloutCorrection (SPEC §2.2) against the float64 reference: each level (token, sequence, geometric) × mode
 * (truncate, mask) with and without a lower bound, each reject statistic (k1, k2, k3) × aggregate (token, sum, mean,
 * max), the metrics (weight mean/min/max/std, fractions truncated and rejected, ess = 1/mean(ŵ²), chi2 = E[w²] − 1,
 * mismatchKl = mean_m(roll − old)), on fresh random inputs with fully masked rows and rows of length 1, on every
 * backend; plus hand-worked cases.
 */
import * as ae from '../lib';
import {
  Batch, makeBatch, refRolloutCorrection, RefRollout, RefRolloutOptions, RejectAggregate, RejectStatistic, RolloutLevel,
  RolloutMode,
} from './ref/policy_loss';
import { backendCases, BackendCase, rng, SEED, withBackend } from './helpers';

const BACKENDS: readonly BackendCase[] = backendCases();
const LEVELS: readonly RolloutLevel[] = ['token', 'sequence', 'geometric'];
const MODES: readonly RolloutMode[] = ['truncate', 'mask'];
const STATISTICS: readonly RejectStatistic[] = ['k1', 'k2', 'k3'];
const AGGREGATES: readonly RejectAggregate[] = ['token', 'sum', 'mean', 'max'];
/** f32 weights against the float64 reference; the metrics are sums of them. */
const F32_TOL = { rtol: 1e-5, atol: 1e-7 };

type Inputs = Parameters<typeof ae.rolloutCorrectionSync>[0];
type Options = Parameters<typeof ae.rolloutCorrectionSync>[1];
type Result = ReturnType<typeof ae.rolloutCorrectionSync>;

function inputsOf(batch: Batch): Inputs {
  return {
    oldLogprob: batch.oldLogprob, rolloutLogprob: batch.rolloutLogprob, mask: batch.mask, shape: [batch.B, batch.T],
  } as unknown as Inputs;
}

/** A batch whose weights and statistics stay away from the bounds (so f32 rounding cannot flip a comparison). */
function batchFor(label: string, opts: RefRolloutOptions, dtype: 'f32' | 'f64' = 'f32', maskKind: 'u8' | 'f32' = 'u8'): Batch {
  const r = rng(label);
  for (let attempt = 0; ; attempt++) {
    const batch = makeBatch(r, { B: 10, T: 12, dtype, withRollout: true, maskKind });
    if (attempt >= 200 || !nearBound(batch, opts)) return batch;
  }
}

function nearBound(batch: Batch, opts: RefRolloutOptions): boolean {
  const ref = refRolloutCorrection({ ...batch, rolloutLogprob: batch.rolloutLogprob!, shape: [batch.B, batch.T] }, opts);
  // a reject case must reject something and keep something
  if (opts.reject && !(ref.metrics.fractionRejected > 0 && ref.metrics.fractionRejected < 1)) return true;
  const bounds = [opts.high ?? 2, ...(opts.low != null ? [opts.low] : [])];
  for (let i = 0; i < batch.mask.length; i++) {
    if (batch.mask[i] !== 0 && bounds.some((b) => Math.abs(ref.raw[i] / b - 1) < 1e-4)) return true;
  }
  if (opts.reject) {
    const { statistic, aggregate, bound } = opts.reject;
    const stats = rejectStats(batch, statistic, aggregate);
    if (stats.some((s) => Math.abs(s - bound) < 1e-4 * Math.max(1, Math.abs(bound)))) return true;
  }
  return false;
}

function rejectStats(batch: Batch, statistic: RejectStatistic, aggregate: RejectAggregate): number[] {
  const out: number[] = [];
  for (let b = 0; b < batch.B; b++) {
    const row: number[] = [];
    for (let t = 0; t < batch.T; t++) {
      const i = b * batch.T + t;
      if (batch.mask[i] === 0) continue;
      const d = batch.oldLogprob[i] - batch.rolloutLogprob![i];
      row.push(statistic === 'k1' ? -d : statistic === 'k2' ? 0.5 * d * d : Math.exp(d) - 1 - d);
    }
    if (row.length === 0) continue;
    if (aggregate === 'token') out.push(...row);
    else if (aggregate === 'sum') out.push(row.reduce((x, y) => x + y, 0));
    else if (aggregate === 'mean') out.push(row.reduce((x, y) => x + y, 0) / row.length);
    else out.push(Math.max(...row));
  }
  return out;
}

function expectMatches(got: Result, ref: RefRollout, batch: Batch, tol: { rtol: number; atol: number }, label: string) {
  expect(got.mask).toBeInstanceOf(Uint8Array);
  expect(got.mask).toEqualBitwise(ref.mask, `${label} mask`);
  // weights compared where the token is valid (the value at a masked position is the implementation's choice)
  const w = Float64Array.from(got.weights);
  for (let i = 0; i < w.length; i++) {
    if (batch.mask[i] === 0) {
      expect([i, Number.isFinite(w[i])]).toEqual([i, true]);
      w[i] = 0;
    }
  }
  expect(w).toMatchReference(ref.weights, tol, `${label} weights`);
  const m = got.metrics as unknown as Record<string, number>;
  for (const [name, value] of Object.entries(ref.metrics)) {
    // weightStd: the engine's one-pass sqrt(E[w²] − E[w]²) (verl's formula) has √ε·max w absolute error where the
    // spread is tiny, e.g. a single kept sequence (std 0 returns ~1e-8)
    const slack = name === 'weightStd' ? 3e-8 * ref.metrics.weightMax : 0;
    const allowed = tol.rtol * Math.max(1, Math.abs(value)) + tol.atol + slack;
    if (!(typeof m[name] === 'number' && Math.abs(m[name] - value) <= allowed)) {
      throw new Error(`${label}: metrics.${name} = ${m[name]}, reference ${value} (allowed ${allowed}, seed ${SEED})`);
    }
  }
}

// ---- level × mode × low ----

const GRID = LEVELS.flatMap((level) =>
  MODES.flatMap((mode) =>
    [null, 0.5].map((low) => ({ name: `${level} ${mode} low ${low}`, opts: { level, mode, low, high: level === 'token' ? 1.5 : 2 } as RefRolloutOptions })),
  ),
);

describe.each(GRID)('$name', ({ name, opts }) => {
  test.each(BACKENDS)('$label matches the reference', async (c) => {
    const batch = batchFor(`rollout ${name}`, opts, 'f32', name.length % 2 ? 'u8' : 'f32');
    const ref = refRolloutCorrection({ ...batch, rolloutLogprob: batch.rolloutLogprob!, shape: [batch.B, batch.T] }, opts);
    await withBackend(c, async () => {
      const o = { ...opts, backend: c.backend } as unknown as Options;
      const got = ae.rolloutCorrectionSync(inputsOf(batch), o);
      expect(got.weights).toBeInstanceOf(Float32Array);
      expectMatches(got, ref, batch, F32_TOL, `${name} ${c.label}`);
      const viaPromise = await ae.rolloutCorrection(inputsOf(batch), o);
      expect(viaPromise.weights).toEqualBitwise(got.weights, 'async weights');
      expect(viaPromise.mask).toEqualBitwise(got.mask, 'async mask');
    });
  });

  test('precision f64 within double rounding', () => {
    const batch = batchFor(`rollout f64 ${name}`, opts, 'f64');
    const ref = refRolloutCorrection({ ...batch, rolloutLogprob: batch.rolloutLogprob!, shape: [batch.B, batch.T] }, opts);
    const got = ae.rolloutCorrectionSync(inputsOf(batch), { ...opts, precision: 'f64' } as unknown as Options);
    expect(got.weights).toBeInstanceOf(Float64Array);
    expectMatches(got, ref, batch, { rtol: 1e-12, atol: 1e-14 }, `${name} f64`);
  });
});

// ---- reject: statistic × aggregate ----

const REJECT_GRID = STATISTICS.flatMap((statistic) =>
  AGGREGATES.map((aggregate) => {
    // bounds that reject some rows or tokens but not all (batchFor redraws until that holds)
    const bounds = statistic === 'k1' ? { token: 0.3, sum: 1.2, mean: 0.3, max: 1.2 } : { token: 0.08, sum: 3, mean: 0.3, max: 1 };
    const bound = bounds[aggregate];
    return { name: `reject ${statistic} ${aggregate} > ${bound}`, opts: { level: 'token', mode: 'truncate', low: null, high: 2, reject: { statistic, aggregate, bound } } as RefRolloutOptions };
  }),
);

describe.each(REJECT_GRID)('$name', ({ name, opts }) => {
  test.each(BACKENDS)('$label matches the reference', async (c) => {
    const batch = batchFor(`rollout ${name}`, opts);
    const ref = refRolloutCorrection({ ...batch, rolloutLogprob: batch.rolloutLogprob!, shape: [batch.B, batch.T] }, opts);
    await withBackend(c, () => {
      const got = ae.rolloutCorrectionSync(inputsOf(batch), { ...opts, backend: c.backend } as unknown as Options);
      expectMatches(got, ref, batch, F32_TOL, `${name} ${c.label}`);
    });
  });
});

// ---- hand-worked cases ----

describe('hand-worked cases', () => {
  const run = (old: number[], roll: number[], mask: number[], shape: [number, number], opts: Record<string, unknown>) =>
    ae.rolloutCorrectionSync(
      { oldLogprob: Float64Array.from(old), rolloutLogprob: Float64Array.from(roll), mask: Uint8Array.from(mask), shape } as unknown as Inputs,
      { precision: 'f64', ...opts } as unknown as Options,
    );

  test('token level, truncate at 2: weights exp(old − roll) capped; metrics by hand', () => {
    const old = [Math.log(3), Math.log(0.5), 0, 0];
    const got = run(old, [0, 0, 0, 5], [1, 1, 1, 0], [1, 4], { level: 'token', mode: 'truncate', high: 2 });
    expect(Array.from(got.weights.slice(0, 3)).map((x) => +x.toFixed(12))).toEqual([2, 0.5, 1]);
    expect(Array.from(got.mask)).toEqual([1, 1, 1, 0]);
    const w = [2, 0.5, 1];
    const mean = 3.5 / 3;
    expect(got.metrics.weightMean).toBeCloseTo(mean, 12);
    expect(got.metrics.weightMin).toBeCloseTo(0.5, 12);
    expect(got.metrics.weightMax).toBeCloseTo(2, 12);
    expect(got.metrics.fractionTruncatedHigh).toBeCloseTo(1 / 3, 12);
    expect(got.metrics.fractionTruncatedLow).toBeCloseTo(0, 12);
    expect(got.metrics.ess).toBeCloseTo(1 / (w.reduce((s, x) => s + (x / mean) ** 2, 0) / 3), 12);
    // chi2 on the raw weights 3, 0.5, 1 (a divergence of the two policies, before truncation)
    expect(got.metrics.chi2).toBeCloseTo((9 + 0.25 + 1) / 3 - 1, 12);
    expect(got.metrics.mismatchKl).toBeCloseTo(-(Math.log(3) + Math.log(0.5)) / 3, 12);
  });

  test('sequence level: one weight per row exp(Σ m·δ_r), clamped at ±20 before exp', () => {
    const got = run([0.1, 0.2, 9, 30, 0, 0], [0, 0, 0, 0, 0, 0], [1, 1, 0, 1, 1, 0], [2, 3], { level: 'sequence', mode: 'truncate', high: 1e12 });
    expect(got.weights[0]).toBeCloseTo(Math.exp(0.3), 12);
    expect(got.weights[1]).toBeCloseTo(Math.exp(0.3), 12);
    expect(got.weights[3] / Math.exp(20)).toBeCloseTo(1, 12);
    expect(got.weights[4] / Math.exp(20)).toBeCloseTo(1, 12);
  });

  test('geometric level: exp of the mean δ_r, no clamp', () => {
    const got = run([30, 24, 0, 0], [0, 0, 0, 0], [1, 1, 0, 0], [2, 2], { level: 'geometric', mode: 'truncate', high: 1e30 });
    expect(got.weights[0] / Math.exp(27)).toBeCloseTo(1, 12);
    expect(Array.from(got.mask)).toEqual([1, 1, 0, 0]);
  });

  test('mask mode: tokens outside [low, high] get weight 0 and mask 0, inside keep the raw weight', () => {
    const old = [Math.log(3), Math.log(0.2), Math.log(1.5)];
    const got = run(old, [0, 0, 0], [1, 1, 1], [1, 3], { level: 'token', mode: 'mask', low: 0.5, high: 2 });
    expect(Array.from(got.mask)).toEqual([0, 0, 1]);
    expect(got.weights[0]).toBe(0);
    expect(got.weights[1]).toBe(0);
    expect(got.weights[2]).toBeCloseTo(1.5, 12);
    expect(got.metrics.fractionTruncatedHigh).toBeCloseTo(1 / 3, 12);
    expect(got.metrics.fractionTruncatedLow).toBeCloseTo(1 / 3, 12);
  });

  test('reject k1 per sequence (sum): the whole row goes', () => {
    // row 0: roll − old = [0.5, 0.6] → sum 1.1 > 1 → rejected; row 1: [0.5, 0.4] → 0.9 kept
    const got = run([0, 0, 0, 0], [0.5, 0.6, 0.5, 0.4], [1, 1, 1, 1], [2, 2], { reject: { statistic: 'k1', aggregate: 'sum', bound: 1 } });
    expect(Array.from(got.mask)).toEqual([0, 0, 1, 1]);
    expect(got.metrics.fractionRejected).toBeCloseTo(0.5, 12);
  });

  test('no valid token: all-zero mask, every metric 0, emptyBatch', () => {
    const got = run([1, 2], [0, 0], [0, 0], [1, 2], {});
    expect(Array.from(got.mask)).toEqual([0, 0]);
    const metrics = got.metrics as unknown as Record<string, unknown>;
    expect(metrics.emptyBatch).toBe(true);
    for (const [name, value] of Object.entries(metrics)) {
      if (typeof value === 'number') expect([name, value]).toEqual([name, 0]);
    }
  });
});
