/**
 * The CUDA outcome advantages (cuda/advantages_kernels.cuh, cuda/advantages.cu), verified without a GPU: the
 * kernels compiled for the CPU emulation of the CUDA execution model (cuda/emu/) and reached through the public
 * ops, `advantages(…, {backend: 'cuda'})` and `advantagesPartial`, with ADVANTAGE_ENGINE_CUDA_ADDON pointing at
 * the emulation build (test/cuda_setup.ts). Checked:
 *   - every estimator of the CPU suite's table (test/ref/advantages.ts ESTIMATORS) × binary / continuous / tied
 *     rewards × K = 1 and 3 × with and without NaN entries, against the float64 reference on fresh random
 *     batches (f64 and f32 outputs, group mean / std, stats), bitwise the same under forward, reverse and random
 *     thread schedules, and within the CPU suite's f64 tolerance of the cpu backend (js where the native addon
 *     is not built); normalizeThenSum;
 *   - the trainer presets (raw singletons, no exact zero variance, whitening rules, clip) against the cpu backend;
 *   - groups of one, ids as number[] / Int32Array / BigInt64Array (beyond 2^32) / groupSize; groups larger than a
 *     warp, more groups than the emulation's grid (4 blocks × 4 warps) and batches of several reduction chunks;
 *     remax without groups, reinforceBaseline without lengths, every row unscored, B = 0;
 *   - the batch state: advantagesPartial on two ranks, mergeAdvantageStats, advantages with batchStats equals
 *     the single call; the cuda partial equals the cpu one;
 *   - errors: a ±inf reward (named by its row's first component), a singleton rejected by a preset; async
 *     equals Sync.
 * On a machine with a GPU, `npm run test:gpu` (AE_CUDA_TEST=gpu) runs the same cases on the device.
 */
import * as ae from '../lib';
import { EmulatorControls, loadCudaBackend, TOOLCHAIN, underEverySchedule } from './cuda_setup';
import { ESTIMATORS, KINDS, makeBatch, refAdvantages, type Batch, type RefAdvantageOptions } from './ref/advantages';
import { nativeLoaded, rng, SEED } from './helpers';

if (!TOOLCHAIN) console.log('cuda advantages emulation tests skipped: cmake or a C++ compiler is missing');
const maybe = TOOLCHAIN ? describe : describe.skip;

let emu: EmulatorControls | undefined;
/** The backend the device is compared with: cpu, or js where the native addon is not built (asked only after the
 * cuda probe, which backendInfo() would otherwise run and cache before the emulation addon is named). */
let host: 'cpu' | 'js' = 'js';
beforeAll(() => {
  if (!TOOLCHAIN) return;
  emu = loadCudaBackend();
  host = nativeLoaded() ? 'cpu' : 'js';
}, 900_000);

afterEach(() => emu?.emuSetSchedule(2, SEED));

type Result = ae.AdvantageResult<Float32Array | Float64Array>;

/** The CPU suite's tolerances (test/advantages.test.ts): f64 with different summation orders; one f32 rounding. */
const F64_TOL = { rtol: 1e-9, atol: 1e-9 };
const F32_TOL = { rtol: 1e-6, atol: 1e-6 };

function inputsOf(b: Batch): ae.AdvantageInputs {
  return { rewards: b.rewards, groupIds: b.groupIds, lengths: b.lengths, baselines: b.baselines, ...(b.weights ? { rewardWeights: b.weights } : {}) };
}

function optionsOf(o: RefAdvantageOptions): ae.AdvantageOptions {
  return { ...o, estimator: o.estimator as ae.Estimator };
}

function cuda(inputs: ae.AdvantageInputs, opts: ae.AdvantageOptions): Result {
  return ae.advantagesSync(inputs, { ...opts, backend: 'cuda' });
}

/** a and b within the f64 tolerance, outputs and stats. */
function expectClose(a: Result, b: Result, label: string) {
  expect(a.advantages).toMatchReference(b.advantages, F64_TOL, `${label} advantages`);
  expect(a.groupMean).toMatchReference(b.groupMean, F64_TOL, `${label} groupMean`);
  expect(a.groupStd).toMatchReference(b.groupStd, F64_TOL, `${label} groupStd`);
  expect(a.stats).toEqual(b.stats);
}

// ---- every estimator against the reference ----

const CASES = ESTIMATORS.flatMap((o) => KINDS.flatMap((kind) => [1, 3].map((K) => ({
  o, kind, K, label: `${o.estimator}${o.scale ? `/${o.scale}` : ''}${o.virtualMax ? `/v=${o.virtualMax}` : ''} ${kind} K=${K}`,
}))));

maybe('every estimator × reward kind × K', () => {
  test.each(CASES)('$label matches the reference, every schedule the same', ({ o, kind, K, label }) => {
    for (const nan of [false, true]) {
      const b = makeBatch(rng(`cuda ${label} ${nan}`), kind, K, nan);
      const ref = refAdvantages({ rewards: b.rewards, weights: b.weights, groupIds: b.groupIds, lengths: b.lengths, baselines: b.baselines }, o);
      const tag = `${label} nan=${nan}`;
      const got = underEverySchedule(emu, SEED, tag, () => cuda(inputsOf(b), { ...optionsOf(o), precision: 'f64' }));
      expect(got.advantages).toBeInstanceOf(Float64Array);
      expect(got.advantages).toMatchReference(ref.advantages, F64_TOL, `${tag} advantages`);
      expect(got.groupMean).toMatchReference(ref.groupMean, F64_TOL, `${tag} groupMean`);
      expect(got.groupStd).toMatchReference(ref.groupStd, F64_TOL, `${tag} groupStd`);
      expect(got.stats).toMatchObject({
        groups: ref.groups, singletonGroups: ref.singletonGroups, zeroStdGroups: ref.zeroStdGroups,
        unscorableRows: ref.unscorableRows, zeroStdFraction: ref.zeroStdGroups / ref.groups, emptyBatch: false,
      });
      const f32 = cuda(inputsOf(b), optionsOf(o));
      expect(f32.advantages).toBeInstanceOf(Float32Array);
      expect(f32.advantages).toMatchReference(ref.advantages, F32_TOL, `${tag} f32`);
      expectClose(got, ae.advantagesSync(inputsOf(b), { ...optionsOf(o), precision: 'f64', backend: host }), `${tag} vs ${host}`);
    }
  });

  test.each(KINDS)('normalizeThenSum (GDPO) %s matches the reference', (kind) => {
    const b = makeBatch(rng(`cuda gdpo ${kind}`), kind, 3, true);
    const o: RefAdvantageOptions = { estimator: 'grpo', multiReward: 'normalizeThenSum' };
    const ref = refAdvantages({ rewards: b.rewards, weights: b.weights, groupIds: b.groupIds }, o);
    const got = underEverySchedule(emu, SEED, `gdpo ${kind}`, () => cuda(inputsOf(b), { ...optionsOf(o), precision: 'f64' }));
    expect(got.advantages).toMatchReference(ref.advantages, F64_TOL, 'advantages');
    expect(got.groupMean).toMatchReference(ref.groupMean, F64_TOL, 'groupMean');
  });
});

// ---- presets: the trainers' conventions, against the cpu backend ----

/**
 * Device against host under a preset. Presets drop the exact zero-variance rule, so an all-equal group's
 * R − mean is rounding noise of its summation order (a fixed warp tree here, row order on the host) divided by
 * std + eps ≈ eps: those rows are allowed 64ε·|R|/eps more.
 */
function presetTolerance(b: Batch, eps: number) {
  const K = b.weights ? b.weights.length : 1;
  const R = b.groupIds.map((_, i) => {
    let s = NaN;
    for (let k = 0; k < K; k++) {
      const v = b.rewards[i * K + k];
      if (!Number.isNaN(v)) s = (Number.isNaN(s) ? 0 : s) + (b.weights ? b.weights[k] : 1) * v;
    }
    return s;
  });
  const values = new Map<number, number[]>();
  b.groupIds.forEach((id, i) => {
    if (!Number.isNaN(R[i])) values.set(id, [...(values.get(id) ?? []), R[i]]);
  });
  const noisy = b.groupIds.map((id) => {
    const v = values.get(id) ?? [];
    return v.length >= 2 && v.every((x) => x === v[0]);
  });
  return (ref: number, i: number) => F64_TOL.atol + F64_TOL.rtol * Math.abs(ref) + (noisy[i] && !Number.isNaN(R[i]) ? (64 * Number.EPSILON * Math.abs(R[i])) / eps : 0);
}

maybe('presets', () => {
  const PRESET_CASES = (['verl', 'trl', 'openrlhf'] as const).flatMap((preset) => ESTIMATORS.map((o) => ({ preset, o, label: `${preset} ${o.estimator}${o.scale ? `/${o.scale}` : ''}` })));
  test.each(PRESET_CASES)('$label equals the cpu backend', ({ preset, o, label }) => {
    for (const K of [1, 3]) {
      const b = makeBatch(rng(`cuda preset ${label} ${K}`), 'continuous', K, true);
      if (preset !== 'verl') {
        // trl and openrlhf reject groups of one: the batch's two groups of one become one group of two.
        const ids = [...b.groupIds];
        const counts = new Map<number, number>();
        for (const id of ids) counts.set(id, (counts.get(id) ?? 0) + 1);
        const lone = ids.findIndex((id) => counts.get(id) === 1);
        const other = ids.findIndex((id, i) => i !== lone && counts.get(id) === 1);
        ids[other] = ids[lone];
        b.groupIds = ids;
      }
      const opts = { ...optionsOf(o), preset, precision: 'f64' as const };
      const cpu = () => ae.advantagesSync(inputsOf(b), { ...opts, backend: host });
      let want: Result;
      try {
        want = cpu();
      } catch (error) {
        // verl rejects passk's singletons: the same coded error on the device.
        expect(() => cuda(inputsOf(b), opts)).toThrow(expect.objectContaining({ code: (error as { code: string }).code, message: (error as Error).message }));
        continue;
      }
      const got = underEverySchedule(emu, SEED, `${label} K=${K}`, () => cuda(inputsOf(b), opts));
      expect(got.advantages).toMatchReference(want.advantages, presetTolerance(b, ae.ADVANTAGE_PRESETS[preset].eps), `${label} K=${K} advantages`);
      expect(got.groupMean).toMatchReference(want.groupMean, F64_TOL, `${label} K=${K} groupMean`);
      expect(got.groupStd).toMatchReference(want.groupStd, F64_TOL, `${label} K=${K} groupStd`);
      expect(got.stats).toEqual(want.stats);
    }
  });
});

// ---- shapes and ids ----

maybe('groups, ids and sizes', () => {
  test('ids as number[], Int32Array, BigInt64Array (beyond 2^32) and groupSize give the same advantages', () => {
    const r = rng('cuda ids');
    const G = 40;
    const size = 5;
    const order = Array.from({ length: G * size }, (_, i) => i).sort(() => r.float() - 0.5);
    const keys = Array.from({ length: G }, () => r.int(1 << 30) - (1 << 29));
    const rewards = Float64Array.from({ length: G * size }, () => r.int(2));
    const contiguous = cuda({ rewards, groupSize: size }, { precision: 'f64' });
    // The same groups with rows shuffled, keyed three ways.
    const shuffled = Float64Array.from(order, (i) => rewards[i]);
    const ids = order.map((i) => keys[Math.floor(i / size)]);
    const wide = BigInt64Array.from(order, (i) => (BigInt(keys[Math.floor(i / size)]) << 33n) + 7n);
    for (const [name, groupIds] of [['number[]', ids], ['Int32Array', Int32Array.from(ids)], ['BigInt64Array', wide]] as const) {
      const got = underEverySchedule(emu, SEED, name, () => cuda({ rewards: shuffled, groupIds }, { precision: 'f64' }));
      expect(got.advantages).toMatchReference(Float64Array.from(order, (i) => contiguous.advantages[i]), F64_TOL, name);
      expect(got.stats.groups).toBe(G);
    }
  });

  test('groups larger than a warp, more groups than the grid, several reduction chunks', () => {
    const r = rng('cuda sizes');
    const sizes = [1000, 33, 1, 2, ...Array.from({ length: 60 }, () => 1 + r.int(12))];
    const groupIds: number[] = [];
    sizes.forEach((s, g) => { for (let j = 0; j < s; j++) groupIds.push(g * 7919); });
    for (let i = groupIds.length - 1; i > 0; i--) {
      const j = r.int(i + 1);
      [groupIds[i], groupIds[j]] = [groupIds[j], groupIds[i]];
    }
    const B = groupIds.length;
    const rewards = Float64Array.from({ length: B }, () => (r.float() < 0.05 ? NaN : 2 * r.normal()));
    const lengths = Array.from({ length: B }, () => 1 + r.int(100));
    for (const o of [{ estimator: 'grpo' }, { estimator: 'passk' }, { estimator: 'opo' }, { estimator: 'reinforceBaseline' }, { estimator: 'bnpo' }, { estimator: 'grpo', scale: 'batch' }] as RefAdvantageOptions[]) {
      const ref = refAdvantages({ rewards, groupIds, lengths }, o);
      const got = underEverySchedule(emu, SEED, o.estimator, () => cuda({ rewards, groupIds, lengths }, { ...optionsOf(o), precision: 'f64' }));
      expect(got.advantages).toMatchReference(ref.advantages, F64_TOL, `${o.estimator} advantages`);
      expect(got.groupStd).toMatchReference(ref.groupStd, F64_TOL, `${o.estimator} groupStd`);
      expect(got.stats.groups).toBe(sizes.length);
    }
  });

  test('remax without groups, reinforceBaseline without lengths, f32 rewards', () => {
    const r = rng('cuda remax');
    const rewards = Float32Array.from({ length: 77 }, () => r.normal());
    const baselines = Array.from({ length: 77 }, () => r.normal());
    const remax = cuda({ rewards, baselines }, { estimator: 'remax', precision: 'f64' });
    expect(remax.advantages).toMatchReference(refAdvantages({ rewards, baselines }, { estimator: 'remax' }).advantages, F64_TOL, 'remax');
    expect(Array.from(remax.groupMean)).toEqual(new Array(77).fill(0));
    expect(remax.stats.groups).toBe(0);
    const groupIds = Array.from({ length: 77 }, () => r.int(9));
    const rb = cuda({ rewards, groupIds }, { estimator: 'reinforceBaseline', precision: 'f64' });
    expect(rb.advantages).toMatchReference(refAdvantages({ rewards, groupIds }, { estimator: 'reinforceBaseline' }).advantages, F64_TOL, 'reinforceBaseline');
  });

  test('hand-worked: ngrpo −1/3, rloo, grpo counts, passk ties, every row unscored, B = 0', () => {
    const opts = { precision: 'f64' as const };
    const ngrpo = cuda({ rewards: new Float64Array(8), groupSize: 8 }, { ...opts, estimator: 'ngrpo', eps: 0 });
    expect(ngrpo.advantages).toMatchReference(new Array(8).fill(-1 / 3), { rtol: 1e-12, atol: 0 }, 'ngrpo');
    const rloo = cuda({ rewards: [1, 0, 0, 0], groupSize: 4 }, { ...opts, estimator: 'rloo' });
    expect(rloo.advantages).toMatchReference([1, -1 / 3, -1 / 3, -1 / 3], { rtol: 1e-12, atol: 1e-15 }, 'rloo');
    const grpo = cuda({ rewards: [5, 1, 1, 1, 0, 1, NaN], groupIds: [9, 4, 4, 4, 7, 7, 7] }, opts);
    const d = 1 / (Math.SQRT1_2 + 1e-6);
    expect(grpo.advantages).toMatchReference([0, 0, 0, 0, -0.5 * d, 0.5 * d, 0], { rtol: 1e-12, atol: 0 }, 'grpo');
    expect(grpo.stats).toEqual({ groups: 3, singletonGroups: 1, zeroStdGroups: 1, zeroStdFraction: 1 / 3, unscorableRows: 1, emptyBatch: false, whitenSkipped: false });
    const passk = cuda({ rewards: [0.2, 0.9, 0.5, 1, 1, 0], groupSize: 3 }, { ...opts, estimator: 'passk', scale: 'none' });
    expect(passk.advantages).toMatchReference([0, 0.4, 0, 0, 0, 0], { rtol: 1e-12, atol: 1e-15 }, 'passk');
    const empty = cuda({ rewards: [NaN, NaN, NaN, NaN], groupSize: 2 }, opts);
    expect(Array.from(empty.advantages)).toEqual([0, 0, 0, 0]);
    expect(empty.stats.emptyBatch).toBe(true);
    const none = cuda({ rewards: [], groupIds: [] }, opts);
    expect(none.advantages).toHaveLength(0);
    expect(none.stats.groups).toBe(0);
  });
});

// ---- the batch state ----

maybe('batch state', () => {
  test.each(['grpo', 'gpg', 'reinforceBaseline', 'bnpo'] as const)('%s: two ranks merged equal one call; the partial equals the host one', (estimator) => {
    const b = makeBatch(rng(`cuda ranks ${estimator}`), 'continuous', estimator === 'bnpo' ? 3 : 1, true);
    const K = b.weights ? b.weights.length : 1;
    // Rank 0 takes the groups whose id is even, rank 1 the others (groups kept whole).
    const rank = b.groupIds.map((id) => Math.abs(id) % 2);
    const split = (k: number): ae.AdvantageInputs => {
      const rows = rank.flatMap((x, i) => (x === k ? [i] : []));
      return {
        rewards: Float64Array.from(rows.flatMap((i) => Array.from(b.rewards.subarray(i * K, (i + 1) * K)))),
        groupIds: rows.map((i) => b.groupIds[i]),
        lengths: rows.map((i) => b.lengths[i]),
        ...(b.weights ? { rewardWeights: b.weights } : {}),
      };
    };
    const opts = { estimator, precision: 'f64' as const, ...(estimator === 'grpo' ? { scale: 'batch' as const } : {}) };
    const parts = [0, 1].map((k) => ae.advantagesPartialSync(split(k), { ...opts, backend: 'cuda' }));
    [0, 1].forEach((k) => {
      const cpu = ae.advantagesPartialSync(split(k), { ...opts, backend: host });
      expect(parts[k].counts).toEqual(cpu.counts);
      expect([parts[k].scoredRows, parts[k].nonZeroRows]).toEqual([cpu.scoredRows, cpu.nonZeroRows]);
      for (const m of ['rewards', 'whiten'] as const) {
        expect([parts[k][m].count, parts[k][m].mean, parts[k][m].m2]).toMatchReference([cpu[m].count, cpu[m].mean, cpu[m].m2], F64_TOL, `${m} rank ${k}`);
      }
      parts[k].components.forEach((c, j) => {
        const want = cpu.components[j];
        expect([c.min, c.max, c.groupMeans.count, c.groupMeans.mean, c.groupMeans.m2])
          .toMatchReference([want.min, want.max, want.groupMeans.count, want.groupMeans.mean, want.groupMeans.m2], F64_TOL, `component ${j} rank ${k}`);
      });
    });
    const merged = ae.mergeAdvantageStats(parts);
    const whole = cuda(inputsOf({ ...b, baselines: b.baselines }), opts);
    [0, 1].forEach((k) => {
      const got = underEverySchedule(emu, SEED, `rank ${k}`, () => cuda(split(k), { ...opts, batchStats: merged }));
      const rows = rank.flatMap((x, i) => (x === k ? [i] : []));
      expect(got.advantages).toMatchReference(Float64Array.from(rows, (i) => whole.advantages[i]), F64_TOL, `rank ${k}`);
    });
  });
});

// ---- errors, async ----

maybe('errors and the async form', () => {
  const code = (codeName: string, param?: string) => expect.objectContaining({ code: codeName, ...(param ? { param } : {}) });
  test("a ±inf reward → ERR_AE_NON_FINITE at its row's first component, before the singleton check", () => {
    expect(() => cuda({ rewards: [1, 2, 3, Infinity], groupSize: 2 }, {})).toThrow(code('ERR_AE_NON_FINITE', 'inputs.rewards[3]'));
    expect(() => cuda({ rewards: [1, 2, 3, -Infinity, 0, 0], rewardWeights: [1, 1], groupIds: [5, 5, 6] }, { preset: 'trl' }))
      .toThrow(code('ERR_AE_NON_FINITE', 'inputs.rewards[2]'));
  });
  test('a singleton rejected by a preset → ERR_INVALID_ARG_VALUE naming its row', () => {
    expect(() => cuda({ rewards: [1, 2, 3, 4], groupIds: [5, 6, 5, 7] }, { preset: 'trl' })).toThrow(code('ERR_INVALID_ARG_VALUE', 'inputs.groupIds'));
    expect(() => cuda({ rewards: [1, 2, 3, 4], groupIds: [5, 6, 5, 7] }, { preset: 'trl' })).toThrow(/row 1 is alone/);
  });
  test('async equals Sync bitwise; async rejects with the same codes', async () => {
    const b = makeBatch(rng('cuda twins'), 'continuous', 1, true);
    for (const estimator of ['grpo', 'bnpo', 'reinforceBaseline'] as const) {
      const sync = cuda(inputsOf(b), { estimator });
      const viaPromise = await ae.advantages(inputsOf(b), { estimator, backend: 'cuda' });
      expect(viaPromise.advantages).toEqualBitwise(sync.advantages, `${estimator} async vs Sync`);
    }
    await expect(ae.advantages({ rewards: [1, Infinity], groupSize: 2 }, { backend: 'cuda' })).rejects.toMatchObject({ code: 'ERR_AE_NON_FINITE' });
  });
});
