/**
 * advantages (SPEC §4.1) against the float64 reference in test/ref/advantages.ts on every backend, on fresh
 * random batches: binary, continuous and tied rewards; groups of 1, 2, 3–9 and 64 rows under shuffled,
 * non-contiguous ids; all-equal groups; NaN components and unscorable rows; [B] and [B, K] rewards. Plus
 * hand-worked cases, the Sync/async twins, thread-count independence and coded errors for bad input.
 */
import * as ae from '../lib';
import { ESTIMATORS, KINDS, makeBatch, refAdvantages, type Batch, type RefAdvantageOptions } from './ref/advantages';
import { backendCases, nativeLoaded, rng, withBackend, type BackendCase } from './helpers';

// ---- parameter table: ESTIMATORS, KINDS and makeBatch (test/ref/advantages.ts, shared with the CUDA suite) ----

/** f64 outputs: both sides are f64 with different summation orders; bnpo's weights reach 1e6. */
const F64_TOL = { rtol: 1e-9, atol: 1e-9 };
/** f32 outputs: one f32 rounding of an f64 result. */
const F32_TOL = { rtol: 1e-6, atol: 1e-6 };
const BACKENDS: readonly BackendCase[] = backendCases();

function inputsOf(b: Batch): ae.AdvantageInputs {
  return { rewards: b.rewards, groupIds: b.groupIds, lengths: b.lengths, baselines: b.baselines, ...(b.weights ? { rewardWeights: b.weights } : {}) };
}

function optionsOf(o: RefAdvantageOptions): ae.AdvantageOptions {
  return { ...o, estimator: o.estimator as ae.Estimator };
}

// ---- parity on fresh random batches ----

const PARITY = ESTIMATORS.flatMap((o) => KINDS.flatMap((kind) => [1, 3].map((K) => ({ ...o, kind, K, label: `${o.estimator}${o.scale ? `/${o.scale}` : ''}${o.virtualMax ? `/v=${o.virtualMax}` : ''}` }))));

describe.each(PARITY)('$label $kind K=$K', ({ kind, K, label, ...o }) => {
  test.each(BACKENDS)('$label: matches the reference (with and without NaN)', async (c) => {
    await withBackend(c, async () => {
      for (const nan of [false, true]) {
        const b = makeBatch(rng(`${label} ${kind} ${K} ${nan}`), kind, K, nan);
        const ref = refAdvantages({ rewards: b.rewards, weights: b.weights, groupIds: b.groupIds, lengths: b.lengths, baselines: b.baselines }, o);
        const got = await ae.advantages(inputsOf(b), { ...optionsOf(o), precision: 'f64', backend: c.backend });
        const tag = `${label} ${kind} K=${K} nan=${nan} ${c.label}`;
        expect(got.advantages).toMatchReference(ref.advantages, F64_TOL, `${tag} advantages`);
        expect(got.groupMean).toMatchReference(ref.groupMean, F64_TOL, `${tag} groupMean`);
        expect(got.groupStd).toMatchReference(ref.groupStd, F64_TOL, `${tag} groupStd`);
        expect(got.stats).toMatchObject({
          groups: ref.groups, singletonGroups: ref.singletonGroups, zeroStdGroups: ref.zeroStdGroups,
          unscorableRows: ref.unscorableRows, zeroStdFraction: ref.zeroStdGroups / ref.groups, emptyBatch: false,
        });
        const f32 = ae.advantagesSync(inputsOf(b), { ...optionsOf(o), backend: c.backend });
        expect(f32.advantages).toBeInstanceOf(Float32Array);
        expect(f32.advantages).toMatchReference(ref.advantages, F32_TOL, `${tag} f32`);
      }
    });
  });
});

describe.each(KINDS)('normalizeThenSum (GDPO) %s', (kind) => {
  test.each(BACKENDS)('$label: matches the reference', async (c) => {
    const b = makeBatch(rng(`gdpo ${kind} ${c.label}`), kind, 3, true);
    const o: RefAdvantageOptions = { estimator: 'grpo', multiReward: 'normalizeThenSum' };
    const ref = refAdvantages({ rewards: b.rewards, weights: b.weights, groupIds: b.groupIds }, o);
    await withBackend(c, async () => {
      const got = ae.advantagesSync(inputsOf(b), { ...optionsOf(o), precision: 'f64', backend: c.backend });
      expect(got.advantages).toMatchReference(ref.advantages, F64_TOL, 'advantages');
    });
  });
});

// ---- hand-worked cases ----

describe.each(BACKENDS)('hand-worked, $label', (c) => {
  const opts = { precision: 'f64' as const, backend: c.backend };
  test('ngrpo on 8 zero rewards gives −1/3 each (eps 0), about −1/3 with the default eps', () => {
    const exact = ae.advantagesSync({ rewards: new Float64Array(8), groupSize: 8 }, { ...opts, estimator: 'ngrpo', eps: 0 });
    expect(exact.advantages).toMatchReference(new Array(8).fill(-1 / 3), { rtol: 1e-12, atol: 0 }, 'ngrpo eps 0');
    const dflt = ae.advantagesSync({ rewards: new Float64Array(8), groupSize: 8 }, { ...opts, estimator: 'ngrpo' });
    expect(dflt.advantages).toMatchReference(new Array(8).fill(-1 / 3), { rtol: 1e-5, atol: 0 }, 'ngrpo');
  });
  test('rloo on [1, 0, 0, 0] gives [1, −1/3, −1/3, −1/3]', () => {
    const got = ae.advantagesSync({ rewards: [1, 0, 0, 0], groupSize: 4 }, { ...opts, estimator: 'rloo' });
    expect(got.advantages).toMatchReference([1, -1 / 3, -1 / 3, -1 / 3], { rtol: 1e-12, atol: 1e-15 }, 'rloo');
  });
  test('grpo: a group of one, an all-equal group and an unscorable row get 0 and are counted', () => {
    const got = ae.advantagesSync({ rewards: [5, 1, 1, 1, 0, 1, NaN], groupIds: [9, 4, 4, 4, 7, 7, 7] }, opts);
    const d = 1 / (Math.SQRT1_2 + 1e-6); // group 7: [0, 1], std √½
    expect(got.advantages).toMatchReference([0, 0, 0, 0, -0.5 * d, 0.5 * d, 0], { rtol: 1e-12, atol: 0 }, 'grpo');
    expect(got.stats).toEqual({ groups: 3, singletonGroups: 1, zeroStdGroups: 1, zeroStdFraction: 1 / 3, unscorableRows: 1, emptyBatch: false, whitenSkipped: false });
  });
  test('passk: only the unique best gets max − second; a tie at the top gives 0 to all', () => {
    const got = ae.advantagesSync({ rewards: [0.2, 0.9, 0.5, 1, 1, 0], groupSize: 3 }, { ...opts, estimator: 'passk', scale: 'none' });
    expect(got.advantages).toMatchReference([0, 0.4, 0, 0, 0, 0], { rtol: 1e-12, atol: 1e-15 }, 'passk');
  });
  test('every row unscorable: all 0 and emptyBatch', () => {
    const got = ae.advantagesSync({ rewards: [NaN, NaN, NaN, NaN], groupSize: 2 }, opts);
    expect(Array.from(got.advantages)).toEqual([0, 0, 0, 0]);
    expect(got.stats.emptyBatch).toBe(true);
  });
  test('presets: TRL eps 1e-4, OpenRLHF eps 1e-9 and ±10 clip, verl keeps a singleton raw score', () => {
    const rewards = [1, 0, 0, 0];
    const s = Math.sqrt(0.25);
    const trl = ae.advantagesSync({ rewards, groupSize: 4 }, { ...opts, preset: 'trl' });
    expect(trl.advantages[0]).toBeCloseTo(0.75 / (s + 1e-4), 12);
    const clipped = ae.advantagesSync({ rewards: [30, 0, 0, 0], groupSize: 4 }, { ...opts, preset: 'openrlhf', estimator: 'rloo' });
    expect(Array.from(clipped.advantages)).toEqual([10, -10, -10, -10]); // rloo gives [30, −10, −10, −10]
    const tiny = ae.advantagesSync({ rewards: [0, 1e-6], groupSize: 2 }, { ...opts, preset: 'openrlhf' });
    expect(tiny.advantages[1]).toBeCloseTo(5e-7 / (Math.sqrt(5e-13) + 1e-9), 9);
    const verl = ae.advantagesSync({ rewards: [3, 1, 0], groupIds: [1, 2, 2] }, { ...opts, preset: 'verl', estimator: 'rloo' });
    expect(verl.advantages[0]).toBe(3);
  });
});

// ---- async twin, threads ----

test.each(BACKENDS)('$label: async and Sync agree bitwise', async (c) => {
  const b = makeBatch(rng(`twins ${c.label}`), 'continuous', 1, true);
  await withBackend(c, async () => {
    for (const estimator of ['grpo', 'bnpo', 'reinforceBaseline'] as const) {
      const sync = ae.advantagesSync(inputsOf(b), { estimator, backend: c.backend });
      const viaPromise = await ae.advantages(inputsOf(b), { estimator, backend: c.backend });
      expect(viaPromise.advantages).toEqualBitwise(sync.advantages, `${estimator} async vs Sync`);
    }
  });
});

(nativeLoaded() ? test : test.skip)('cpu results are bitwise the same at 1 and 4 threads (B = 200k)', () => {
  const r = rng('threads');
  const B = 200_000;
  const rewards = Float32Array.from({ length: B }, () => r.int(2));
  const groupIds = Int32Array.from({ length: B }, () => r.int(B / 8));
  const before = ae.backendInfo().threads;
  try {
    ae.setThreads(1);
    const one = ae.advantagesSync({ rewards, groupIds }, { backend: 'cpu', estimator: 'gpg' });
    ae.setThreads(4);
    const four = ae.advantagesSync({ rewards, groupIds }, { backend: 'cpu', estimator: 'gpg' });
    expect(four.advantages).toEqualBitwise(one.advantages, 'threads');
  } finally {
    ae.setThreads(before);
  }
});

// ---- bad input ----

describe.each(BACKENDS)('errors, $label', (c) => {
  const call = (inputs: unknown, opts: object = {}) => () => ae.advantagesSync(inputs as ae.AdvantageInputs, { ...opts, backend: c.backend } as ae.AdvantageOptions);
  const code = (codeName: string, param?: string) => expect.objectContaining({ code: codeName, ...(param ? { param } : {}) });
  test('groupIds length mismatch → ERR_AE_SHAPE_MISMATCH', () => {
    expect(call({ rewards: [1, 2, 3], groupIds: [1, 2] })).toThrow(code('ERR_AE_SHAPE_MISMATCH', 'inputs.groupIds'));
  });
  test('negative or zero groupSize → ERR_OUT_OF_RANGE; not dividing B → ERR_AE_SHAPE_MISMATCH', () => {
    expect(call({ rewards: [1, 2, 3, 4], groupSize: -2 })).toThrow(code('ERR_OUT_OF_RANGE', 'inputs.groupSize'));
    expect(call({ rewards: [1, 2, 3, 4], groupSize: 0 })).toThrow(code('ERR_OUT_OF_RANGE', 'inputs.groupSize'));
    expect(call({ rewards: [1, 2, 3, 4], groupSize: 3 })).toThrow(code('ERR_AE_SHAPE_MISMATCH', 'inputs.groupSize'));
  });
  test('NaN where not allowed → ERR_AE_NON_FINITE naming the parameter', () => {
    expect(call({ rewards: [1, Infinity], groupSize: 2 })).toThrow(code('ERR_AE_NON_FINITE', 'inputs.rewards[1]'));
    expect(call({ rewards: [1, 2], groupSize: 2, lengths: [1, NaN] }, { estimator: 'opo' })).toThrow(code('ERR_AE_NON_FINITE', 'inputs.lengths[1]'));
    expect(call({ rewards: [1, 2], baselines: [NaN, 0] }, { estimator: 'remax' })).toThrow(code('ERR_AE_NON_FINITE', 'inputs.baselines[0]'));
    expect(call({ rewards: [1, 2], groupIds: [1, NaN] })).toThrow(code('ERR_AE_NON_FINITE', 'inputs.groupIds[1]'));
  });
  test('lengths ≤ 0 for opo → ERR_OUT_OF_RANGE; missing → ERR_INVALID_ARG_VALUE', () => {
    expect(call({ rewards: [1, 2], groupSize: 2, lengths: [3, 0] }, { estimator: 'opo' })).toThrow(code('ERR_OUT_OF_RANGE', 'inputs.lengths[1]'));
    expect(call({ rewards: [1, 2], groupSize: 2 }, { estimator: 'opo' })).toThrow(code('ERR_INVALID_ARG_VALUE', 'inputs.lengths'));
  });
  test('unknown estimator → ERR_INVALID_ARG_VALUE listing the valid names', () => {
    expect(call({ rewards: [1, 2], groupSize: 2 }, { estimator: 'gspo' })).toThrow(/grpo \| rloo \| reinforceBaseline \| remax \| opo \| gpg \| passk \| bnpo \| ngrpo/);
    expect(call({ rewards: [1, 2], groupSize: 2 }, { estimator: 'gspo' })).toThrow(code('ERR_INVALID_ARG_VALUE', 'opts.estimator'));
  });
  test('scale where the estimator has none, no groups, singleton rejected by a preset', () => {
    expect(call({ rewards: [1, 2], groupSize: 2 }, { estimator: 'rloo', scale: 'batch' })).toThrow(code('ERR_INVALID_ARG_VALUE', 'opts.scale'));
    expect(call({ rewards: [1, 2] })).toThrow(code('ERR_INVALID_ARG_VALUE', 'inputs.groupIds'));
    expect(call({ rewards: [1, 2, 3], groupIds: [5, 5, 6] }, { preset: 'trl' })).toThrow(code('ERR_INVALID_ARG_VALUE', 'inputs.groupIds'));
  });
  test('rewards not a multiple of K → ERR_AE_SHAPE_MISMATCH', () => {
    expect(call({ rewards: [1, 2, 3], rewardWeights: [1, 1], groupSize: 1 })).toThrow(code('ERR_AE_SHAPE_MISMATCH', 'inputs.rewards'));
  });
  test('the async form rejects with the same code', async () => {
    await expect(ae.advantages({ rewards: [1, 2, 3], groupIds: [1, 2] }, { backend: c.backend })).rejects.toMatchObject({ code: 'ERR_AE_SHAPE_MISMATCH' });
  });
});
