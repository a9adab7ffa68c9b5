/**
 * Process rewards (SPEC §5.3) against the float64 reference in test/ref/rewards.ts on fresh random inputs, plus
 * hand-worked cases. scatterSteps and implicitProcessReward have native kernels: they run on every backend
 * (backendCases: js, cpu, cpu at each SIMD level) and async and Sync must agree bitwise.
 */
import { rewards } from '../lib';
import { flat, refAggregate, refImplicit, refScatter, refThoughtUnits, refTransform, rowsOf } from './ref/rewards';
import { BackendCase, backendCases, randomMask, rng, withBackend } from './helpers';

/** f32 outputs of f64 arithmetic. */
const TOL = { rtol: 1e-6, atol: 1e-7 };
const BACKENDS: readonly BackendCase[] = backendCases();

function randomSteps(label: string, rows: number, steps: number, T: number) {
  const r = rng(label);
  const counts = Int32Array.from({ length: rows }, () => r.int(steps + 1));
  const ends = new Int32Array(rows * steps);
  for (let b = 0; b < rows; b++) {
    // Strictly increasing ends inside [0, T) for the counted steps.
    let at = -1;
    for (let s = 0; s < counts[b]; s++) {
      const room = T - 1 - at - (counts[b] - 1 - s);
      at += 1 + r.int(Math.max(1, Math.min(room, 2 * Math.ceil(T / steps))));
      ends[b * steps + s] = at;
    }
  }
  return { r, counts, ends };
}

describe('aggregateSteps', () => {
  test('hand-worked: scores [0.9, 0.5, 0.8] in every mode; an empty row gives 0', () => {
    const scores = [0.9, 0.5, 0.8, 7, 7, 7];
    const expected: Record<string, number> = {
      min: 0.5, mean: 2.2 / 3, last: 0.8, product: 0.36, geomean: Math.cbrt(0.36), sum: 2.2,
    };
    for (const [mode, value] of Object.entries(expected)) {
      const got = rewards.aggregateSteps(scores, [3, 0], { mode: mode as never });
      expect(got.rewards).toMatchReference([value, 0], TOL, mode);
    }
  });

  test.each(['min', 'mean', 'last', 'product', 'geomean', 'sum'] as const)('random %s matches the reference', (mode) => {
    const r = rng(`aggregate ${mode}`);
    const rows = 30, steps = 9;
    const scores = Float32Array.from({ length: rows * steps }, () => r.float());
    const counts = Int32Array.from({ length: rows }, () => r.int(steps + 1));
    const got = rewards.aggregateSteps(scores, counts, { mode });
    expect(got.rewards).toMatchReference(refAggregate(rowsOf(scores, rows, steps), Array.from(counts), mode), { rtol: 1e-6, atol: 1e-7 }, mode);
  });

  test('bad input gives coded errors', () => {
    expect(() => rewards.aggregateSteps([1, 2, 3], [1, 1])).toThrow(expect.objectContaining({ code: 'ERR_AE_SHAPE_MISMATCH', param: 'stepScores' }));
    expect(() => rewards.aggregateSteps([1, 2], [3])).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE', param: 'stepCounts[0]' }));
    expect(() => rewards.aggregateSteps([1, -2], [2], { mode: 'geomean' })).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE', param: 'stepScores[1]' }));
    expect(() => rewards.aggregateSteps([1, 2], [2], { mode: 'max' as never })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE', param: 'opts.mode' }));
  });
});

describe('transformSteps', () => {
  test('hand-worked: delta telescopes to the first step; clip is min(r − η, 0)', () => {
    const delta = rewards.transformSteps([0.9, 0.6, 0.7, 0.2], [4], { mode: 'delta' });
    expect(delta.rewards).toMatchReference([0.3, -0.1, 0.5, 0.2], TOL, 'delta');
    expect(Array.from(delta.rewards).reduce((a, b) => a + b, 0)).toBeCloseTo(0.9, 6);
    const clip = rewards.transformSteps([0.9, 0.6, 0.7, 0.2], [4], { mode: 'clip', eta: 0.65 });
    expect(clip.rewards).toMatchReference([0, -0.05, 0, -0.45], TOL, 'clip');
  });

  test('random rows: both modes match the reference; delta rows sum to their first score', () => {
    const r = rng('transform');
    const rows = 25, steps = 8;
    const scores = Float64Array.from({ length: rows * steps }, () => r.float());
    const counts = Int32Array.from({ length: rows }, () => r.int(steps + 1));
    const eta = r.float();
    const m = rowsOf(scores, rows, steps);
    expect(rewards.transformSteps(scores, counts, { mode: 'clip', eta }).rewards).toMatchReference(flat(refTransform(m, Array.from(counts), 'clip', eta)), TOL, 'clip');
    const delta = rewards.transformSteps(scores, counts, { mode: 'delta' }).rewards;
    expect(delta).toMatchReference(flat(refTransform(m, Array.from(counts), 'delta')), TOL, 'delta');
    const sums = m.map((_, b) => Array.from(delta.subarray(b * steps, (b + 1) * steps)).reduce((a, x) => a + x, 0));
    expect(sums).toMatchReference(m.map((row, b) => (counts[b] > 0 ? row[0] : 0)), { rtol: 1e-5, atol: 1e-6 }, 'telescoping');
  });

  test('clip needs eta', () => {
    expect(() => rewards.transformSteps([1], [1], { mode: 'clip' } as never)).toThrow(expect.objectContaining({ param: 'opts.eta' }));
  });
});

describe('thoughtUnits', () => {
  test('hand-worked: labels [1, 1, 0, 0, 0, 1] → units {0,1}, {2,3,4}, {5}', () => {
    const stepScores = [0.8, 0.6, 0.3, 0.1, 0.2, 0.9];
    const got = rewards.thoughtUnits({ stepLabels: [1, 1, 0, 0, 0, 1], stepScores, stepCounts: [6] });
    expect(got.rewards).toMatchReference([0.7, 0.7, 0.2, 0.2, 0.2, 0.9], TOL, 'broadcast');
    expect(Array.from(got.unit)).toEqual([0, 0, 1, 1, 1, 2]);
    expect(Array.from(got.unitCount)).toEqual([3]);
    const split = rewards.thoughtUnits({ stepLabels: [1, 1, 0, 0, 0, 1], stepScores, stepCounts: [6] }, { spread: 'split' });
    expect(split.rewards).toMatchReference([0.35, 0.35, 0.2 / 3, 0.2 / 3, 0.2 / 3, 0.9], TOL, 'split');
  });

  test('random rows match the reference', () => {
    const r = rng('units');
    const rows = 20, steps = 10;
    const labels = Uint8Array.from({ length: rows * steps }, () => (r.float() < 0.5 ? 1 : 0));
    const scores = Float64Array.from({ length: rows * steps }, () => r.float());
    const counts = Int32Array.from({ length: rows }, () => r.int(steps + 1));
    for (const spread of ['broadcast', 'split'] as const) {
      const got = rewards.thoughtUnits({ stepLabels: labels, stepScores: scores, stepCounts: counts }, { spread });
      const ref = refThoughtUnits(rowsOf(labels, rows, steps), rowsOf(scores, rows, steps), Array.from(counts), spread === 'split');
      expect(got.rewards).toMatchReference(flat(ref), TOL, spread);
    }
  });
});

describe.each(BACKENDS)('scatterSteps and implicitProcessReward on $label', (c) => {
  test('hand-worked cases', async () => {
    await withBackend(c, async () => {
      const scattered = rewards.scatterStepsSync([0.5, -1, 2, 0, 0, 0], [1, 4, 5, 0, 0, 0], { shape: [2, 6], stepCounts: [3, 0], backend: c.backend });
      expect(Array.from(scattered)).toEqual([0, 0.5, 0, 0, -1, 2, 0, 0, 0, 0, 0, 0]);
      // β = 0.5, lp − ref = [1, 2, 3, 4, 5] with token 2 masked; steps end at 1 and 3; token 4 is after the last step.
      const got = rewards.implicitProcessRewardSync(
        Float32Array.of(1, 2, 3, 4, 5), new Float64Array(5), [1, 1, 0, 1, 1], { shape: [1, 5], beta: 0.5, stepEnd: [1, 3], backend: c.backend },
      );
      expect(Array.from(got.tokenRewards)).toEqual([0.5, 1, 0, 2, 2.5]);
      expect(Array.from(got.stepRewards!)).toEqual([1.5, 2]);
      expect(Array.from(got.total)).toEqual([6]);
    });
  });

  test.each([
    { rows: 1, T: 1, steps: 1 }, { rows: 9, T: 37, steps: 5 }, { rows: 64, T: 1500, steps: 24 }, { rows: 3, T: 0, steps: 0 },
  ])('random [$rows, $T] with $steps steps matches the reference; async equals Sync', async ({ rows, T, steps }) => {
    const { r, counts, ends } = randomSteps(`process ${c.label} ${rows} ${T}`, rows, steps, T);
    const stepRewards = Float64Array.from({ length: rows * steps }, () => r.normal());
    const lp = Float32Array.from({ length: rows * T }, () => -Math.abs(3 * r.normal()));
    const ref = Float64Array.from({ length: rows * T }, () => -Math.abs(3 * r.normal()));
    const mask = randomMask(r, rows * T, 0.8);
    const beta = r.uniform(0.01, 1);
    await withBackend(c, async () => {
      const scattered = rewards.scatterStepsSync(stepRewards, ends, { shape: [rows, T], stepCounts: counts, backend: c.backend });
      const refScattered = flat(refScatter(rowsOf(stepRewards, rows, steps), rowsOf(ends, rows, steps), Array.from(counts), T));
      expect(scattered).toMatchReference(refScattered, TOL, 'scatter');
      expect(await rewards.scatterSteps(stepRewards, ends, { shape: [rows, T], stepCounts: counts, backend: c.backend })).toEqualBitwise(scattered);

      const opts = { shape: [rows, T] as const, beta, stepEnd: ends, stepCounts: counts, backend: c.backend };
      const got = rewards.implicitProcessRewardSync(lp, ref, mask, opts);
      const expected = refImplicit(rowsOf(lp, rows, T), rowsOf(ref, rows, T), rowsOf(mask, rows, T), beta, rowsOf(ends, rows, steps), Array.from(counts));
      expect(got.tokenRewards).toMatchReference(expected.flatMap((x) => x.token), TOL, 'token rewards');
      // Step sums of up to T terms of size ~β·3: f64 running sums, one f32 rounding; the reference differences its own running sum.
      expect(got.stepRewards).toMatchReference(expected.flatMap((x) => x.steps!), { rtol: 1e-6, atol: 1e-6 }, 'step rewards');
      expect(got.total).toMatchReference(expected.map((x) => x.total), { rtol: 1e-6, atol: 1e-6 }, 'total');
      const viaPromise = await rewards.implicitProcessReward(lp, ref, mask, opts);
      expect(viaPromise.tokenRewards).toEqualBitwise(got.tokenRewards);
      expect(viaPromise.stepRewards!).toEqualBitwise(got.stepRewards!);
      expect(viaPromise.total).toEqualBitwise(got.total);
      // Without steps or mask: only token rewards and totals.
      const plain = rewards.implicitProcessRewardSync(lp, ref, null, { shape: [rows, T], backend: c.backend });
      expect(plain.stepRewards).toBeUndefined();
      const plainRef = refImplicit(rowsOf(lp, rows, T), rowsOf(ref, rows, T), null, 0.05, null, null);
      expect(plain.total).toMatchReference(plainRef.map((x) => x.total), { rtol: 1e-6, atol: 1e-6 }, 'total (β default)');
    });
  });

  test('a non-finite lp − ref at a valid token names the row; masked positions may hold anything', async () => {
    const lp = Float32Array.of(0, 0, 0, 0, NaN, 0);
    const ref = new Float32Array(6);
    await withBackend(c, async () => {
      expect(() => rewards.implicitProcessRewardSync(lp, ref, null, { shape: [3, 2], backend: c.backend }))
        .toThrow(expect.objectContaining({ code: 'ERR_AE_NON_FINITE', row: 2 }));
      await expect(rewards.implicitProcessReward(lp, ref, null, { shape: [3, 2], backend: c.backend }))
        .rejects.toMatchObject({ code: 'ERR_AE_NON_FINITE', row: 2 });
      const masked = rewards.implicitProcessRewardSync(lp, ref, [1, 1, 1, 1, 0, 1], { shape: [3, 2], backend: c.backend });
      expect(Array.from(masked.total)).toEqual([0, 0, 0]);
    });
  });
});

describe('scatterSteps / implicitProcessReward bad input', () => {
  test('coded errors before any kernel runs', () => {
    expect(() => rewards.scatterStepsSync([1, 2], [1, 6], { shape: [1, 6] })).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE', param: 'stepEnd[1]' }));
    expect(() => rewards.scatterStepsSync([1, 2], [3, 2], { shape: [1, 6] })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE', param: 'stepEnd[1]' }));
    expect(() => rewards.scatterStepsSync([1, NaN], [1, 2], { shape: [1, 6] })).toThrow(expect.objectContaining({ code: 'ERR_AE_NON_FINITE', param: 'stepRewards[1]' }));
    expect(() => rewards.scatterStepsSync([1, 2, 3], [1, 2], { shape: [2, 6] })).toThrow(expect.objectContaining({ code: 'ERR_AE_SHAPE_MISMATCH', param: 'stepRewards' }));
    expect(() => rewards.implicitProcessRewardSync(new Float32Array(4), new Float32Array(3), null, { shape: [1, 4] })).toThrow(expect.objectContaining({ code: 'ERR_AE_SHAPE_MISMATCH', param: 'ref' }));
    expect(() => rewards.implicitProcessRewardSync(new Float32Array(4), new Float32Array(4), null, { shape: [1, 4], stepEnd: [4] })).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE', param: 'opts.stepEnd[0]' }));
    expect(() => rewards.implicitProcessRewardSync([0, 1] as never, new Float32Array(2), null, { shape: [1, 2] })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE', param: 'logprob' }));
  });
});
