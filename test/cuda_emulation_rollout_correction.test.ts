/**
 * The CUDA rollout correction (cuda/rollout_correction_kernels.cuh, cuda/rollout_correction.cu), verified without a
 * GPU: the kernel compiled for the CPU emulation of the CUDA execution model (cuda/emu/) and reached through the
 * public op, `rolloutCorrection(…, {backend: 'cuda'})`, with ADVANTAGE_ENGINE_CUDA_ADDON pointing at the
 * emulation build. Checked:
 *   - every level × mode × rejection (none, or each statistic × aggregate), with and without a lower bound,
 *     against the float64 reference (test/ref/policy_loss.ts refRolloutCorrection) on fresh random inputs at the
 *     CPU tests' tolerance, bitwise the same under forward, reverse and random thread schedules, and equal to
 *     the cpu backend's up to the order of the row sums (the arithmetic is the same f64 math,
 *     cuda/math/rollout_correction_math.h);
 *   - rows longer than a block (several tokens per thread), rows of length 1, fully masked rows, more rows than
 *     the (emulation's) grid, a fully masked batch, B = 0 and T = 0; hand-worked cases;
 *   - errors: a non-finite input at a valid token names its row (at a masked token it does not matter),
 *     precision 'f64' is refused; the async form equals the Sync one;
 *   - policyLoss with rolloutLogprob on backend 'cuda' runs the correction on the device and equals the cpu
 *     backend's result.
 * On a machine with a GPU, `npm run test:gpu` (AE_CUDA_TEST=gpu) runs the same cases on the device.
 */
import * as ae from '../lib';
import {
  Batch, makeBatch, refRolloutCorrection, RefRollout, RefRolloutOptions, RejectAggregate, RejectStatistic, RolloutLevel,
  RolloutMode,
} from './ref/policy_loss';
import { rng, SEED } from './helpers';
import { EmulatorControls, loadCudaBackend, TOOLCHAIN, underEverySchedule } from './cuda_setup';

if (!TOOLCHAIN) console.log('cuda rollout-correction emulation tests skipped: cmake or a C++ compiler is missing');
const maybe = TOOLCHAIN ? describe : describe.skip;

let emu: EmulatorControls | undefined;
beforeAll(() => {
  if (TOOLCHAIN) emu = loadCudaBackend();
}, 900_000);

afterEach(() => emu?.emuSetSchedule(2, SEED));

type Inputs = Parameters<typeof ae.rolloutCorrectionSync>[0];
type Options = Parameters<typeof ae.rolloutCorrectionSync>[1];
type Result = ReturnType<typeof ae.rolloutCorrectionSync>;
type Metrics = Result['metrics'];

const LEVELS: readonly RolloutLevel[] = ['token', 'sequence', 'geometric'];
const MODES: readonly RolloutMode[] = ['truncate', 'mask'];
const STATISTICS: readonly RejectStatistic[] = ['k1', 'k2', 'k3'];
const AGGREGATES: readonly RejectAggregate[] = ['token', 'sum', 'mean', 'max'];
/** The CPU tests' tolerance (test/rollout_correction.test.ts): f32 weights against the float64 reference. */
const F32_TOL = { rtol: 1e-5, atol: 1e-7 };
/**
 * cuda against cpu: the same f64 math per token, the row sums in another order, so a sequence weight may differ
 * in its last f64 bits and its f32 rounding by one ulp (2⁻²³ relative); the metrics are f64 sums.
 */
const PARITY_WEIGHT_RTOL = 2 ** -23;
const PARITY_METRIC_RTOL = 1e-12;

function inputsOf(batch: Batch): Inputs {
  return { oldLogprob: batch.oldLogprob, rolloutLogprob: batch.rolloutLogprob, mask: batch.mask, shape: [batch.B, batch.T] } as unknown as Inputs;
}

function refOf(batch: Batch, opts: RefRolloutOptions): RefRollout {
  return refRolloutCorrection({ ...batch, rolloutLogprob: batch.rolloutLogprob!, shape: [batch.B, batch.T] }, opts);
}

/** The per-token statistic as the SPEC defines it (δ_r clamped to ±20). */
function statisticOf(statistic: RejectStatistic, deltaR: number): number {
  const d = Math.min(Math.max(deltaR, -20), 20);
  return statistic === 'k1' ? -d : statistic === 'k2' ? 0.5 * d * d : Math.exp(d) - 1 - d;
}

/** Whether a weight or a statistic lies so near a bound that f32 inputs could flip the comparison. */
function nearBound(batch: Batch, opts: RefRolloutOptions): boolean {
  const ref = refOf(batch, opts);
  if (opts.reject && !(ref.metrics.fractionRejected > 0 && ref.metrics.fractionRejected < 1)) return true;
  const bounds = [opts.high ?? 2, ...(opts.low != null ? [opts.low] : [])];
  for (let i = 0; i < batch.mask.length; i++) {
    if (batch.mask[i] !== 0 && bounds.some((b) => Math.abs(ref.raw[i] / b - 1) < 1e-4)) return true;
  }
  if (!opts.reject) return false;
  const { statistic, aggregate, bound } = opts.reject;
  for (let b = 0; b < batch.B; b++) {
    const row: number[] = [];
    for (let t = 0; t < batch.T; t++) {
      const i = b * batch.T + t;
      if (batch.mask[i] !== 0) row.push(statisticOf(statistic, batch.oldLogprob[i] - batch.rolloutLogprob![i]));
    }
    if (row.length === 0) continue;
    const sum = row.reduce((x, y) => x + y, 0);
    const values = aggregate === 'token' ? row : [aggregate === 'sum' ? sum : aggregate === 'mean' ? sum / row.length : Math.max(...row)];
    if (values.some((s) => Math.abs(s - bound) < 1e-4 * Math.max(1, Math.abs(bound)))) return true;
  }
  return false;
}

/** A batch of shape [B, T] (row 0 fully masked, row 1 of length 1) whose comparisons stay away from the bounds. */
function batchFor(label: string, opts: RefRolloutOptions, B: number, T: number): Batch {
  const r = rng(label);
  for (let attempt = 0; ; attempt++) {
    const batch = makeBatch(r, { B, T, withRollout: true, maskKind: attempt % 2 ? 'f32' : 'u8' });
    if (attempt >= 200 || !nearBound(batch, opts)) return batch;
  }
}

function expectMatches(got: Result, ref: RefRollout, batch: Batch, label: string) {
  expect(got.weights).toBeInstanceOf(Float32Array);
  expect(got.mask).toEqualBitwise(ref.mask, `${label} mask`);
  expect(got.weights).toMatchReference(ref.weights, F32_TOL, `${label} weights`);
  const m = got.metrics as unknown as Record<string, number>;
  for (const [name, value] of Object.entries(ref.metrics)) {
    // weightStd: the engine's one-pass sqrt(E[w²] − E[w]²) has √ε·max w absolute error (test/rollout_correction.test.ts)
    const slack = name === 'weightStd' ? 3e-8 * ref.metrics.weightMax : 0;
    const allowed = F32_TOL.rtol * Math.max(1, Math.abs(value)) + F32_TOL.atol + slack;
    if (!(Math.abs(m[name] - value) <= allowed)) throw new Error(`${label}: metrics.${name} = ${m[name]}, reference ${value} (allowed ${allowed}, seed ${SEED})`);
  }
  expect([label, got.metrics.validTokens]).toEqual([label, Array.from(batch.mask).filter((x) => x !== 0).length]);
}

function expectMetricsParity(a: Metrics, b: Metrics, label: string) {
  for (const [name, value] of Object.entries(b as unknown as Record<string, number | boolean>)) {
    const got = (a as unknown as Record<string, number | boolean>)[name];
    if (typeof value === 'boolean') {
      expect([label, name, got]).toEqual([label, name, value]);
      continue;
    }
    // weightStd: sqrt(E[w²] − E[w]²) turns a difference of a few ε·E[w²] in its terms (summed in another order)
    // into up to √(64ε)·max w where the spread is tiny
    const slack = name === 'weightStd' ? Math.sqrt(64 * Number.EPSILON) * b.weightMax : 0;
    const allowed = PARITY_METRIC_RTOL * Math.max(1, Math.abs(value)) + slack;
    if (!(Math.abs((got as number) - value) <= allowed)) throw new Error(`${label}: metrics.${name} = ${got}, cpu ${value} (allowed ${allowed}, seed ${SEED})`);
  }
}

function expectParity(got: Result, cpu: Result, label: string) {
  expect(got.mask).toEqualBitwise(cpu.mask, `${label} mask vs cpu`);
  expect(got.weights).toMatchReference(cpu.weights, { rtol: PARITY_WEIGHT_RTOL, atol: 0 }, `${label} weights vs cpu`);
  expectMetricsParity(got.metrics, cpu.metrics, `${label} vs cpu`);
}

/** Rows shorter than a block (128 threads) with 9 rows > 4 blocks, rows of length 1, rows longer than a block. */
const SHAPES: readonly [number, number][] = [[9, 17], [6, 1], [3, 300]];

/** Bounds that reject some rows or tokens but not all (batchFor redraws until that holds), as the CPU tests'. */
function rejectOf(statistic: RejectStatistic, aggregate: RejectAggregate): NonNullable<RefRolloutOptions['reject']> {
  const bounds = statistic === 'k1' ? { token: 0.3, sum: 1.2, mean: 0.3, max: 1.2 } : { token: 0.08, sum: 3, mean: 0.3, max: 1 };
  return { statistic, aggregate, bound: bounds[aggregate] };
}

const REJECTS = [null, ...STATISTICS.flatMap((s) => AGGREGATES.map((a) => rejectOf(s, a)))];

const GRID = LEVELS.flatMap((level, i) => MODES.flatMap((mode, j) => REJECTS.map((reject, k) => {
  const low = (i + j + k) % 2 === 0 ? null : 0.5;
  const opts: RefRolloutOptions = { level, mode, low, high: level === 'token' ? 1.5 : 2, ...(reject ? { reject } : {}) };
  const what = reject ? `reject ${reject.statistic} ${reject.aggregate} > ${reject.bound}` : 'no reject';
  return { name: `${level} ${mode} low ${low} ${what}`, opts, shape: SHAPES[(i + j + k) % SHAPES.length] };
})));

maybe('every level × mode × rejection', () => {
  test.each(GRID)('$name: the reference, every schedule alike, cpu parity', ({ name, opts, shape }) => {
    const batch = batchFor(`cuda rollout ${name}`, opts, shape[0], shape[1]);
    const o = { ...opts } as unknown as Options;
    const got = underEverySchedule(emu, SEED, name, () => ae.rolloutCorrectionSync(inputsOf(batch), { ...o, backend: 'cuda' } as Options));
    expectMatches(got, refOf(batch, opts), batch, name);
    expectParity(got, ae.rolloutCorrectionSync(inputsOf(batch), { ...o, backend: 'cpu' } as Options), name);
  });
});

maybe('edge cases and errors', () => {
  test('hand-worked: token level truncated at 2, a sequence rejected by its k1 sum', () => {
    // δ_r: row 0 = [ln 3, −ln 2, 0] (and one masked token), row 1 = [0.5, 0.5]. Weights: [3 → 2, 0.5, 1], [e^0.5, e^0.5].
    // k1 sums Σ −δ_r: row 0 ln 2 − ln 3 ≈ −0.405, row 1 −1; bound −0.5 drops row 0 and keeps row 1.
    const old = Float32Array.from([Math.log(3), -Math.log(2), 0, 0, 0.5, 0.5, 0, 0]);
    const roll = Float32Array.from([0, 0, 0, 5, 0, 0, 0, 0]);
    const mask = Uint8Array.from([1, 1, 1, 0, 1, 1, 0, 0]);
    const inputs = { oldLogprob: old, rolloutLogprob: roll, mask, shape: [2, 4] } as unknown as Inputs;
    const plain = ae.rolloutCorrectionSync(inputs, { high: 2, backend: 'cuda' } as Options);
    expect(Array.from(plain.weights).map((x) => +x.toFixed(6))).toEqual([2, 0.5, 1, 0, +Math.exp(0.5).toFixed(6), +Math.exp(0.5).toFixed(6), 0, 0]);
    expect(Array.from(plain.mask)).toEqual([1, 1, 1, 0, 1, 1, 0, 0]);
    expect(plain.metrics.validTokens).toBe(5);
    expect(plain.metrics.fractionTruncatedHigh).toBeCloseTo(1 / 5, 12);
    expect(plain.metrics.weightMin).toBeCloseTo(0.5, 6);
    expect(plain.metrics.weightMax).toBeCloseTo(2, 12);
    const rejected = ae.rolloutCorrectionSync(inputs, { high: 2, reject: { statistic: 'k1', aggregate: 'sum', bound: -0.5 }, backend: 'cuda' } as Options);
    expect(Array.from(rejected.mask)).toEqual([0, 0, 0, 0, 1, 1, 0, 0]);
    expect(rejected.weights[0]).toBe(0);
    expect(rejected.metrics.fractionRejected).toBeCloseTo(3 / 5, 12);
    expect(rejected.metrics.weightMean).toBeCloseTo(Math.exp(0.5), 6);
  });

  test('geometric and sequence level on one row longer than a block: one weight on every valid token', () => {
    const T = 1000;
    const old = new Float32Array(T).fill(0.0625);
    const mask = new Uint8Array(T).map((_, t) => (t % 3 === 0 ? 0 : 1));
    const valid = mask.reduce((s, x) => s + x, 0);
    const got = ae.rolloutCorrectionSync(
      { oldLogprob: old, rolloutLogprob: new Float32Array(T), mask, shape: [1, T] } as unknown as Inputs,
      { level: 'geometric', high: 10, backend: 'cuda' } as Options,
    );
    for (let t = 0; t < T; t++) expect([t, got.weights[t]]).toEqual([t, mask[t] ? Math.fround(Math.exp(0.0625)) : 0]);
    const seq = ae.rolloutCorrectionSync(
      { oldLogprob: old, rolloutLogprob: new Float32Array(T), mask, shape: [1, T] } as unknown as Inputs,
      { level: 'sequence', mode: 'mask', high: 1e12, backend: 'cuda' } as Options,
    );
    expect(valid * 0.0625).toBeGreaterThan(20);
    expect(seq.weights[1]).toBe(Math.fround(Math.exp(20)));
    expect(seq.metrics.fractionRejected).toBe(0);
  });

  test('a fully masked batch: weights 0, mask 0, every metric 0 and emptyBatch, as on the cpu', () => {
    const batch = makeBatch(rng('cuda rollout empty'), { B: 5, T: 7, withRollout: true });
    batch.mask.fill(0);
    for (const level of LEVELS) {
      const opts = { level, reject: { statistic: 'k3', aggregate: 'max', bound: -1 }, backend: 'cuda' } as Options;
      const got = ae.rolloutCorrectionSync(inputsOf(batch), opts);
      expect(got.weights).toEqualBitwise(new Float32Array(35), `${level} weights`);
      expect(got.mask).toEqualBitwise(new Uint8Array(35), `${level} mask`);
      const cpu = ae.rolloutCorrectionSync(inputsOf(batch), { ...opts, backend: 'cpu' } as Options);
      expect([level, got.metrics]).toEqual([level, cpu.metrics]);
      expect(got.metrics.emptyBatch).toBe(true);
    }
  });

  test.each([[0, 5], [3, 0]])('zero-size batch [%i, %i]: empty outputs, emptyBatch', (B, T) => {
    const empty = new Float32Array(0);
    const got = ae.rolloutCorrectionSync({ oldLogprob: empty, rolloutLogprob: empty, mask: new Uint8Array(0), shape: [B, T] } as unknown as Inputs, {
      backend: 'cuda',
    } as Options);
    expect(got.weights).toBeInstanceOf(Float32Array);
    expect(got.weights.length).toBe(0);
    expect(got.mask.length).toBe(0);
    expect(got.metrics.emptyBatch).toBe(true);
    expect(got.metrics.validTokens).toBe(0);
  });

  test('a non-finite input at a valid token names its row; at a masked token it does not matter', () => {
    const batch = makeBatch(rng('cuda rollout non-finite'), { B: 7, T: 150, edgeRows: false, maskedFraction: 0.3, withRollout: true });
    const T = batch.T;
    const valid = (b: number) => Array.from({ length: T }, (_, t) => b * T + t).filter((i) => batch.mask[i] !== 0);
    const masked = Array.from(batch.mask.keys()).filter((i) => batch.mask[i] === 0);
    const opts = { level: 'sequence', reject: { statistic: 'k2', aggregate: 'mean', bound: 1 }, backend: 'cuda' } as Options;
    const baseline = ae.rolloutCorrectionSync(inputsOf(batch), opts);
    const changed = { ...batch, oldLogprob: batch.oldLogprob.slice(), rolloutLogprob: batch.rolloutLogprob!.slice() };
    for (const i of masked) changed.oldLogprob[i] = NaN;
    const ignored = ae.rolloutCorrectionSync(inputsOf(changed), opts);
    expect(ignored.weights).toEqualBitwise(baseline.weights, 'weights with NaN at masked tokens');
    expect(ignored.metrics).toEqual(baseline.metrics);
    const rows = [5, 2].filter((b) => valid(b).length > 0);
    const last = (b: number) => valid(b)[valid(b).length - 1];
    changed.rolloutLogprob[last(rows[0])] = -Infinity;
    changed.oldLogprob[last(rows[1])] = NaN;
    for (const backend of ['cuda', 'cpu']) {
      expect(() => ae.rolloutCorrectionSync(inputsOf(changed), { ...opts, backend } as Options)).toThrow(
        expect.objectContaining({ code: 'ERR_AE_NON_FINITE', row: Math.min(...rows) }),
      );
    }
  });

  test("precision 'f64' is the cpu backend's: refused on cuda", () => {
    const batch = makeBatch(rng('cuda rollout f64'), { B: 3, T: 4, dtype: 'f64', withRollout: true });
    expect(() => ae.rolloutCorrectionSync(inputsOf(batch), { backend: 'cuda', precision: 'f64' } as Options)).toThrow(
      expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE', param: 'opts.precision' }),
    );
  });

  test.each(LEVELS)('%s: the async form resolves to what the Sync form returns', async (level) => {
    const batch = makeBatch(rng(`cuda rollout async ${level}`), { B: 6, T: 40, withRollout: true });
    const opts = { level, mode: 'mask', low: 0.5, reject: { statistic: 'k3', aggregate: 'token', bound: 0.5 }, backend: 'cuda' } as Options;
    const sync = ae.rolloutCorrectionSync(inputsOf(batch), opts);
    const viaPromise = await ae.rolloutCorrection(inputsOf(batch), opts);
    expect(viaPromise.weights).toEqualBitwise(sync.weights, 'weights');
    expect(viaPromise.mask).toEqualBitwise(sync.mask, 'mask');
    expect(viaPromise.metrics).toEqual(sync.metrics);
  });
});

maybe('policyLoss with rolloutLogprob on the cuda backend', () => {
  type PInputs = Parameters<typeof ae.policyLossSync>[0];
  type POptions = Parameters<typeof ae.policyLossSync>[1];
  /** The policy tests' parity tolerance (test/cuda_emulation_policy_loss.test.ts): f32 losses on either backend. */
  const PARITY_RTOL = 1e-6;
  const PARITY_TOKEN_RTOL = 3e-6;
  const CASES = [
    { name: 'token truncate', correction: { level: 'token', high: 2 } },
    { name: 'sequence mask', correction: { level: 'sequence', mode: 'mask', low: 0.5, high: 2 } },
    { name: 'geometric, k3 max rejection', correction: { level: 'geometric', low: 0.8, high: 1.25, reject: { statistic: 'k3', aggregate: 'max', bound: 2 } } },
  ];

  test.each(CASES)('$name: the correction runs on the device; the result equals the cpu backend\'s', async ({ name, correction }) => {
    const batch = makeBatch(rng(`cuda rollout policy ${name}`), { B: 7, T: 150, withRollout: true });
    const inputs = {
      logprob: batch.logprob, oldLogprob: batch.oldLogprob, advantages: batch.advantages, mask: batch.mask, shape: [batch.B, batch.T],
      rolloutLogprob: batch.rolloutLogprob,
    } as unknown as PInputs;
    const opts = { mode: 'ppo', aggregation: 'seq-mean-token-mean', rolloutCorrection: correction } as unknown as POptions;
    const launches = emu?.emuCounters().launches ?? 0;
    const got = ae.policyLossSync(inputs, { ...opts, backend: 'cuda' } as POptions);
    // The policy loss launches two kernels; the correction's is the third.
    if (emu) expect(emu.emuCounters().launches - launches).toBe(3);
    const cpu = ae.policyLossSync(inputs, { ...opts, backend: 'cpu' } as POptions);
    expectMetricsParity(got.metrics.rollout!, cpu.metrics.rollout!, `${name} rollout metrics`);
    let scale = 0;
    for (let i = 0; i < cpu.tokenLoss.length; i++) scale = Math.max(scale, Math.abs(cpu.tokenLoss[i]));
    expect(got.tokenLoss).toMatchReference(cpu.tokenLoss, { rtol: PARITY_TOKEN_RTOL, atol: 1e-2 * PARITY_TOKEN_RTOL * scale }, `${name} tokenLoss`);
    let gradScale = 0;
    for (let i = 0; i < cpu.gradLogprob.length; i++) gradScale = Math.max(gradScale, Math.abs(cpu.gradLogprob[i]));
    expect(got.gradLogprob).toMatchReference(cpu.gradLogprob, { rtol: PARITY_TOKEN_RTOL, atol: 1e-2 * PARITY_TOKEN_RTOL * gradScale }, `${name} gradLogprob`);
    expect(Math.abs(got.loss - cpu.loss)).toBeLessThanOrEqual(PARITY_RTOL * scale);
    const viaPromise = await ae.policyLoss(inputs, { ...opts, backend: 'cuda' } as POptions);
    expect(viaPromise.tokenLoss).toEqualBitwise(got.tokenLoss, `${name} async tokenLoss`);
    expect(viaPromise.metrics).toEqual(got.metrics);
  });
});
