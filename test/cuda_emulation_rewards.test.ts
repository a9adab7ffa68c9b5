/**
 * The CUDA reward kernels with native versions (cuda/process_rewards.cu: scatterSteps, implicitProcessReward;
 * cuda/phase_entropy.cu: phaseEntropy) verified without a GPU, through the public ops with `backend: 'cuda'` on
 * the emulation build (test/cuda_setup.ts). Checked, on fresh random inputs: the float64 references of
 * test/ref/rewards.ts, bitwise the same results under forward, reverse and random thread schedules, parity with
 * the cpu backend (bitwise where the arithmetic is elementwise, within f64 summation order where it sums), f32
 * and f64 inputs; rows longer than a block (several tokens per thread, steps in several tiles, a tile full of
 * step ends), rows of length 1, fully masked rows, steps at the first and last token, rows without steps, more
 * rows than the emulation's 4-block grid, B = 0 and T = 0; boundaries absent, at 0, at the end, and found by
 * token search (a masked first occurrence skipped); the smallest non-finite row; and through the addon directly,
 * step ends the ops' validation would refuse (out of order, repeated: the CPU's serial loop) and ends changed by
 * the caller while an async job is in flight (never written outside a row). async equals sync.
 */
import * as ae from '../lib';
import { nativeAddon } from '../lib/backend';
import { cudaDevice } from '../lib/cuda';
import { refImplicit, refPhaseEntropy, refScatter, rowsOf } from './ref/rewards';
import { randomMask, rng } from './helpers';
import { EmulatorControls, loadCudaBackend, SCHEDULES, TOOLCHAIN, underEverySchedule } from './cuda_setup';
import type { Sfc32 } from '../lib/prng';
import type { PhaseEntropyResult } from '../lib/ops/phase_entropy';

if (!TOOLCHAIN) console.log('cuda reward emulation tests skipped: cmake or a C++ compiler is missing');
const maybe = TOOLCHAIN ? describe : describe.skip;

const { rewards } = ae;
/** f32 outputs of f64 arithmetic, as test/rewards_process.test.ts and test/rewards_phase_entropy.test.ts. */
const TOL = { rtol: 1e-6, atol: 1e-7 };
/** cuda against cpu where only the f64 summation order differs: at most one f32 rounding apart. */
const PARITY_TOL = { rtol: 3e-7, atol: 1e-9 };
const THINK_END = 151668;

// Shapes: more rows than the emulation's 4 blocks; T past the 128-thread block (several tokens per thread and
// tiles of the scan), a tail tile of 3 tokens (131), T = 1; 140 steps in 300 tokens puts a tile full of step ends.
const IMPLICIT_CASES = [
  { rows: 9, T: 517, steps: 12, lp64: false, ref64: false },
  { rows: 7, T: 300, steps: 140, lp64: true, ref64: false },
  { rows: 6, T: 131, steps: 5, lp64: false, ref64: true },
  { rows: 5, T: 1, steps: 1, lp64: true, ref64: true },
];
const SCATTER_CASES = [
  { rows: 9, T: 517, steps: 12, f64: false },
  { rows: 7, T: 300, steps: 140, f64: true },
  { rows: 5, T: 1, steps: 1, f64: false },
];
const PHASE_CASES = [
  { rows: 9, T: 517, f64: false },
  { rows: 6, T: 129, f64: true },
  { rows: 5, T: 1, f64: false },
];

let emu: EmulatorControls | undefined;
beforeAll(() => {
  if (TOOLCHAIN) emu = loadCudaBackend();
}, 900_000);

/**
 * Step ends [rows, steps]: strictly increasing inside [0, T) for each row's count. Row 0 has every step, the
 * first at token 0 and the last at T − 1; row 1 none; row 2 every step, ends 0, 1, 2, … (a tile full of them);
 * the others random counts and gaps.
 */
function drawSteps(r: Sfc32, rows: number, steps: number, T: number) {
  const counts = new Int32Array(rows);
  const ends = new Int32Array(rows * steps);
  for (let b = 0; b < rows; b++) {
    const count = b === 0 || b === 2 ? Math.min(steps, T) : b === 1 ? 0 : r.int(Math.min(steps, T) + 1);
    counts[b] = count;
    let at = -1;
    for (let s = 0; s < count; s++) {
      const room = T - 1 - at - (count - 1 - s);
      at += b === 2 ? 1 : 1 + r.int(Math.max(1, Math.min(room, 2 * Math.ceil(T / steps))));
      ends[b * steps + s] = at;
    }
    if (b === 0 && count > 0) {
      ends[0] = 0;
      if (count > 1) ends[count - 1] = T - 1;
    }
    for (let s = count; s < steps; s++) ends[b * steps + s] = r.int(2 * T + 3) - T;  // ignored past the count
  }
  return { counts, ends };
}

/** n values of `draw()`, as a Float64Array or a Float32Array. */
function floats(f64: boolean, n: number, draw: () => number): Float32Array | Float64Array {
  const values = Float64Array.from({ length: n }, draw);
  return f64 ? values : Float32Array.from(values);
}

function drawImplicit(label: string, rows: number, T: number, steps: number, lp64: boolean, ref64: boolean) {
  const r = rng(label);
  const lp = floats(lp64, rows * T, () => -3 * r.float());
  const ref = floats(ref64, rows * T, () => -3 * r.float());
  const mask = randomMask(r, rows * T, 0.8);
  if (rows > 3) mask.fill(0, 3 * T, 4 * T);  // a fully masked row
  return { lp, ref, mask, ...drawSteps(r, rows, steps, T) };
}

maybe('implicitProcessReward on the cuda backend', () => {
  test.each(IMPLICIT_CASES)('[$rows, $T] with $steps steps (f64 lp $lp64, ref $ref64): the reference, every schedule, the cpu backend', ({ rows, T, steps, lp64, ref64 }) => {
    const { lp, ref, mask, counts, ends } = drawImplicit(`cuda implicit ${rows} ${T} ${steps}`, rows, T, steps, lp64, ref64);
    const beta = 0.07;
    const opts = { shape: [rows, T] as const, beta, stepEnd: ends, stepCounts: counts };
    const got = underEverySchedule(emu, 11, 'implicitProcessReward', () => rewards.implicitProcessRewardSync(lp, ref, mask, { ...opts, backend: 'cuda' }));
    const want = refImplicit(rowsOf(lp, rows, T), rowsOf(ref, rows, T), rowsOf(mask, rows, T), beta, rowsOf(ends, rows, steps), Array.from(counts));
    expect(got.tokenRewards).toMatchReference(want.flatMap((x) => x.token), TOL, 'token rewards');
    expect(got.stepRewards!).toMatchReference(want.flatMap((x) => x.steps!), TOL, 'step rewards');
    expect(got.total).toMatchReference(want.map((x) => x.total), TOL, 'total');
    const cpu = rewards.implicitProcessRewardSync(lp, ref, mask, { ...opts, backend: 'cpu' });
    expect(got.tokenRewards).toEqualBitwise(cpu.tokenRewards, 'token rewards vs cpu');
    expect(got.stepRewards!).toMatchReference(cpu.stepRewards!, PARITY_TOL, 'step rewards vs cpu');
    expect(got.total).toMatchReference(cpu.total, PARITY_TOL, 'total vs cpu');
    // Without steps, and without a mask.
    const plain = rewards.implicitProcessRewardSync(lp, ref, null, { shape: [rows, T], beta, backend: 'cuda' });
    const plainWant = refImplicit(rowsOf(lp, rows, T), rowsOf(ref, rows, T), null, beta, null, null);
    expect(plain.stepRewards).toBeUndefined();
    expect(plain.tokenRewards).toMatchReference(plainWant.flatMap((x) => x.token), TOL, 'unmasked token rewards');
    expect(plain.total).toMatchReference(plainWant.map((x) => x.total), TOL, 'unmasked total');
  });

  test('hand-worked: steps at the first and the last token, a fully masked row', () => {
    const lp = Float32Array.of(1, 2, 3, 4, 5, 6, 7, 8);
    const ref = new Float32Array(8);
    const got = rewards.implicitProcessRewardSync(lp, ref, [1, 1, 0, 1, 0, 0, 0, 0], {
      shape: [2, 4], beta: 0.5, stepEnd: [0, 3, 1, 3], stepCounts: [2, 2], backend: 'cuda',
    });
    expect(Array.from(got.tokenRewards)).toEqual([0.5, 1, 0, 2, 0, 0, 0, 0]);
    expect(Array.from(got.stepRewards!)).toEqual([0.5, 3, 0, 0]);
    expect(Array.from(got.total)).toEqual([3.5, 0]);
  });

  test('B = 0 and T = 0', () => {
    const none = rewards.implicitProcessRewardSync(new Float32Array(0), new Float32Array(0), null, {
      shape: [0, 5], stepEnd: [], backend: 'cuda',
    });
    expect(none.tokenRewards.length).toBe(0);
    expect(none.total.length).toBe(0);
    const empty = rewards.implicitProcessRewardSync(new Float32Array(0), new Float32Array(0), null, {
      shape: [3, 0], stepEnd: [0, 0, 0, 0, 0, 0], stepCounts: [0, 0, 0], backend: 'cuda',
    });
    expect(Array.from(empty.total)).toEqual([0, 0, 0]);
    expect(Array.from(empty.stepRewards!)).toEqual([0, 0, 0, 0, 0, 0]);
  });

  test('a non-finite lp − ref at a valid token names the smallest such row; masked ones are ignored', () => {
    const { lp, ref, counts, ends } = drawImplicit('cuda implicit nonfinite', 9, 300, 4, false, false);
    const mask = new Uint8Array(9 * 300).fill(1);
    lp[8 * 300 + 299] = NaN;
    ref[5 * 300 + 140] = Infinity;
    lp[2 * 300 + 7] = NaN;
    mask[2 * 300 + 7] = 0;
    const opts = { shape: [9, 300] as const, stepEnd: ends, stepCounts: counts, backend: 'cuda' as const };
    for (const s of emu ? SCHEDULES : SCHEDULES.slice(0, 1)) {
      emu?.emuSetSchedule(s.kind, 5);
      expect(() => rewards.implicitProcessRewardSync(lp, ref, mask, opts)).toThrow(
        expect.objectContaining({ code: 'ERR_AE_NON_FINITE', row: 5 }));
    }
    ref[5 * 300 + 140] = 0;
    expect(() => rewards.implicitProcessRewardSync(lp, ref, mask, opts)).toThrow(expect.objectContaining({ code: 'ERR_AE_NON_FINITE', row: 8 }));
  });

  test('async equals sync', async () => {
    const { lp, ref, mask, counts, ends } = drawImplicit('cuda implicit async', 6, 257, 9, false, false);
    const opts = { shape: [6, 257] as const, stepEnd: ends, stepCounts: counts, backend: 'cuda' as const };
    const sync = rewards.implicitProcessRewardSync(lp, ref, mask, opts);
    const viaPromise = await rewards.implicitProcessReward(lp, ref, mask, opts);
    expect(viaPromise.tokenRewards).toEqualBitwise(sync.tokenRewards, 'token rewards');
    expect(viaPromise.stepRewards!).toEqualBitwise(sync.stepRewards!, 'step rewards');
    expect(viaPromise.total).toEqualBitwise(sync.total, 'total');
  });
});

maybe('scatterSteps on the cuda backend', () => {
  test.each(SCATTER_CASES)('[$rows, $T] with $steps steps (f64 $f64): the reference, every schedule, the cpu backend bitwise', async ({ rows, T, steps, f64 }) => {
    const r = rng(`cuda scatter ${rows} ${T}`);
    const { counts, ends } = drawSteps(r, rows, steps, T);
    const stepRewards = floats(f64, rows * steps, () => r.normal());
    if (counts[0] > 1) stepRewards[1] = -0;  // lands as +0, as the CPU's += on a zeroed row
    const opts = { shape: [rows, T] as const, stepCounts: counts };
    const got = underEverySchedule(emu, 13, 'scatterSteps', () => ({ out: rewards.scatterStepsSync(stepRewards, ends, { ...opts, backend: 'cuda' }) })).out;
    expect(got).toMatchReference(refScatter(rowsOf(stepRewards, rows, steps), rowsOf(ends, rows, steps), Array.from(counts), T).flat(), TOL, 'scatter');
    expect(got).toEqualBitwise(rewards.scatterStepsSync(stepRewards, ends, { ...opts, backend: 'cpu' }), 'scatter vs cpu');
    expect(await rewards.scatterSteps(stepRewards, ends, { ...opts, backend: 'cuda' })).toEqualBitwise(got, 'async');
  });

  test('B = 0, T = 0, zero steps', () => {
    expect(rewards.scatterStepsSync([], [], { shape: [0, 4], backend: 'cuda' }).length).toBe(0);
    expect(Array.from(rewards.scatterStepsSync([], [], { shape: [3, 0], backend: 'cuda' }))).toEqual([]);
    expect(Array.from(rewards.scatterStepsSync([], [], { shape: [2, 3], backend: 'cuda' }))).toEqual([0, 0, 0, 0, 0, 0]);
  });
});

maybe('the process-reward kernels on step ends the ops would refuse (the addon called directly)', () => {
  const dev = () => cudaDevice();

  test('ends out of order or repeated: the CPU serial loop, bitwise; a non-finite step reward names its row', () => {
    const rows = 6, T = 200, steps = 4;
    const r = rng('cuda raw ends');
    const { counts, ends } = drawSteps(r, rows, steps, T);
    counts.fill(steps);
    ends.set([150, 20, 20, 199], 2 * steps);  // out of order and repeated
    ends.set([0, 1, 2, 3], 3 * steps);
    ends.set([7, 7, 7, 7], 4 * steps);
    ends.set([10, 60, 130, 199], 5 * steps);
    ends.set([5, 6, 7, 8], 0);
    ends.set([3, 2, 1, 0], steps);
    const stepRewards = Float32Array.from({ length: rows * steps }, () => r.normal());
    const lp = Float32Array.from({ length: rows * T }, () => -2 * r.float());
    const ref = Float32Array.from({ length: rows * T }, () => -2 * r.float());
    const cpuOut = new Float32Array(rows * T), cudaOut = new Float32Array(rows * T);
    expect(nativeAddon().scatterSteps(stepRewards, false, ends, counts, rows, steps, T, cpuOut, false)).toBe(-1);
    expect(dev().kernel('scatterSteps', stepRewards, false, ends, counts, rows, steps, T, cudaOut, false)).toBe(-1);
    expect(cudaOut).toEqualBitwise(cpuOut, 'scatter');
    const outs = [0, 1].map(() => ({ token: new Float32Array(rows * T), step: new Float32Array(rows * steps), total: new Float32Array(rows) }));
    expect(nativeAddon().implicitProcessReward(lp, false, ref, false, null, rows, T, 0.1, ends, counts, steps, outs[0].token, outs[0].step, outs[0].total, false)).toBe(-1);
    expect(dev().kernel('implicitProcessReward', lp, false, ref, false, null, rows, T, 0.1, ends, counts, steps, outs[1].token, outs[1].step, outs[1].total, false)).toBe(-1);
    expect(outs[1].token).toEqualBitwise(outs[0].token, 'token rewards');
    expect(outs[1].step).toMatchReference(outs[0].step, PARITY_TOL, 'step rewards');
    expect(outs[1].total).toMatchReference(outs[0].total, PARITY_TOL, 'total');
    stepRewards[4 * steps + 3] = NaN;
    stepRewards[3 * steps] = -Infinity;
    expect(dev().kernel('scatterSteps', stepRewards, false, ends, counts, rows, steps, T, cudaOut, false)).toBe(3);
    expect(nativeAddon().scatterSteps(stepRewards, false, ends, counts, rows, steps, T, cpuOut, false)).toBe(3);
  });

  test('ends changed while an async job is in flight: each row as the CPU reads one of the two arrays, nothing outside a row', async () => {
    const rows = 6, T = 150, steps = 5;
    const r = rng('cuda raw async');
    const { counts, ends } = drawSteps(r, rows, steps, T);
    const stepRewards = Float64Array.from({ length: rows * steps }, () => r.normal());
    const before = { ends: ends.slice(), counts: counts.slice() };
    const out = new Float32Array(rows * T).fill(7);
    const job = dev().kernel('scatterSteps', stepRewards, true, ends, counts, rows, steps, T, out, true) as Promise<number>;
    // Past the row, before it, and a count beyond `steps`: what the glue refused, arriving after its check.
    ends.set([T, -1, T + 100, 2 ** 31 - 1, -(2 ** 31)], 0);
    ends.set([T - 1, T - 1, T - 1, 0, 0], steps);
    counts[0] = steps + 3;
    counts[1] = steps;
    counts[2] = -4;
    expect(await job).toBe(-1);
    // The CPU's reading of a row (native/process_rewards.cc): count capped at `steps`, ends outside [0, T) skipped.
    const cpuRow = (b: number, e: Int32Array, c: Int32Array) => {
      const row = new Float32Array(T);
      for (let s = 0; s < Math.min(c[b], steps); s++) {
        const at = e[b * steps + s];
        if (at >= 0 && at < T) row[at] = Math.fround(row[at] + Math.fround(stepRewards[b * steps + s]));
      }
      return row;
    };
    for (let b = 0; b < rows; b++) {
      const got = out.subarray(b * T, (b + 1) * T);
      const candidates = [cpuRow(b, before.ends, before.counts), cpuRow(b, ends, counts)];
      expect(candidates.some((c) => c.every((x, t) => Object.is(x, got[t])))).toBe(true);
    }
  });
});

/** Phase-entropy inputs; `boundaries` per row: −1, 0, T − 1, or interior. */
function drawPhase(label: string, rows: number, T: number, f64: boolean) {
  const r = rng(label);
  const entropy = floats(f64, rows * T, () => Math.abs(2 * r.normal()));
  const mask = randomMask(r, rows * T, 0.85);
  if (rows > 3) mask.fill(0, 3 * T, 4 * T);
  const boundary = Int32Array.from({ length: rows }, (_, b) => (T === 0 ? -1 : [-1, 0, T - 1][b % 4] ?? r.int(T)));
  return { r, entropy, mask, boundary };
}

/** The first valid position holding `token` (−1 when none), as SPEC §5.5 defines the searched boundary. */
function firstValid(ids: Int32Array, mask: Uint8Array, rows: number, T: number, token: number): number[] {
  return Array.from({ length: rows }, (_, b) => {
    for (let t = 0; t < T; t++) if (mask[b * T + t] && ids[b * T + t] === token) return t;
    return -1;
  });
}

function checkPhase(got: PhaseEntropyResult, entropy: Float32Array | Float64Array, mask: Uint8Array, rows: number, T: number, boundary: number[]) {
  const want = refPhaseEntropy(rowsOf(entropy, rows, T), rowsOf(mask, rows, T), boundary);
  expect(Array.from(got.boundary)).toEqual(boundary);
  expect(Array.from(got.thinkTokens)).toEqual(want.map((x) => x.nThink));
  expect(Array.from(got.answerTokens)).toEqual(want.map((x) => x.nAnswer));
  expect(got.thinkEntropy).toMatchReference(want.map((x) => x.think), TOL, 'think');
  expect(got.answerEntropy).toMatchReference(want.map((x) => x.answer), TOL, 'answer');
}

maybe('phaseEntropy on the cuda backend', () => {
  test.each(PHASE_CASES)('[$rows, $T] (f64 $f64), boundary positions: the reference, every schedule, the cpu backend', ({ rows, T, f64 }) => {
    const { entropy, mask, boundary } = drawPhase(`cuda phase ${rows} ${T}`, rows, T, f64);
    const inputs = { entropy, mask, shape: [rows, T] as const, boundary, rewards: Array.from({ length: rows }, (_, b) => b / 4) };
    const run = (backend: 'cuda' | 'cpu') => rewards.phaseEntropySync(inputs, { wAnswer: 0.3, backend });
    const got = underEverySchedule(emu, 17, 'phaseEntropy by position', () => ({ ...run('cuda') }));
    checkPhase(got, entropy, mask, rows, T, Array.from(boundary));
    const cpu = run('cpu');
    for (const key of ['boundary', 'thinkTokens', 'answerTokens'] as const) expect(got[key]).toEqualBitwise(cpu[key], `${key} vs cpu`);
    for (const key of ['rewards', 'thinkEntropy', 'answerEntropy'] as const) expect(got[key]).toMatchReference(cpu[key], PARITY_TOL, `${key} vs cpu`);
  });

  test('boundary by token search: first valid occurrence (masked ones skipped), several per row, none; every schedule', async () => {
    const rows = 9, T = 517;
    const { r, entropy, mask } = drawPhase('cuda phase search', rows, T, false);
    const ids = Int32Array.from({ length: rows * T }, () => r.int(50000));
    const place = (b: number, t: number) => { ids[b * T + t] = THINK_END; };
    place(0, 0); place(0, 300);                  // at 0 (kept valid below), and later
    mask[0] = 1;
    place(1, T - 1); mask[T + T - 1] = 1;        // at the end
    place(2, 5); mask[2 * T + 5] = 0; place(2, 133); place(2, 261); mask[2 * T + 133] = 1;  // masked first occurrence
    place(4, 200); place(4, 70); place(4, 71); mask[4 * T + 70] = 1;  // in different threads' tokens
    place(5, 128); mask[5 * T + 128] = 1;        // the first token of the second tile
    // Rows 3 (fully masked, with an occurrence), 6..8: none, or one at random.
    place(3, 9);
    place(7, r.int(T));
    const inputs = { entropy, mask, shape: [rows, T] as const, boundary: THINK_END, tokens: ids };
    const got = underEverySchedule(emu, 19, 'phaseEntropy by token', () => ({ ...rewards.phaseEntropySync(inputs, { backend: 'cuda' }) }));
    const boundary = firstValid(ids, mask, rows, T, THINK_END);
    expect(boundary.slice(0, 6)).toEqual([0, T - 1, 133, -1, 70, 128]);
    checkPhase(got, entropy, mask, rows, T, boundary);
    const cpu = rewards.phaseEntropySync(inputs, { backend: 'cpu' });
    expect(got.boundary).toEqualBitwise(cpu.boundary, 'boundary vs cpu');
    expect(got.rewards).toMatchReference(cpu.rewards, PARITY_TOL, 'rewards vs cpu');
    const viaPromise = await rewards.phaseEntropy(inputs, { backend: 'cuda' });
    for (const key of ['rewards', 'thinkEntropy', 'answerEntropy', 'boundary'] as const) expect(viaPromise[key]).toEqualBitwise(got[key], `async ${key}`);
  });

  test('B = 0 and T = 0', () => {
    const none = rewards.phaseEntropySync({ entropy: new Float32Array(0), shape: [0, 4], boundary: [] }, { backend: 'cuda' });
    expect(none.rewards.length).toBe(0);
    const empty = rewards.phaseEntropySync({ entropy: new Float64Array(0), shape: [2, 0], boundary: THINK_END, tokens: [] }, { backend: 'cuda' });
    expect(Array.from(empty.boundary)).toEqual([-1, -1]);
    expect(Array.from(empty.thinkEntropy)).toEqual([0, 0]);
    expect(Array.from(empty.thinkTokens)).toEqual([0, 0]);
  });

  test('a non-finite entropy at a valid token names the smallest such row; at a masked token or the boundary it is ignored', () => {
    const rows = 9, T = 300;
    const { entropy, mask, boundary } = drawPhase('cuda phase nonfinite', rows, T, false);
    mask.fill(1);
    boundary[1] = 40;
    entropy[T + 40] = NaN;      // the boundary token: in neither phase
    entropy[2 * T + 3] = NaN;
    mask[2 * T + 3] = 0;        // masked
    entropy[8 * T + 299] = Infinity;
    entropy[6 * T + 150] = NaN;
    const inputs = { entropy, mask, shape: [rows, T] as const, boundary };
    for (const s of emu ? SCHEDULES : SCHEDULES.slice(0, 1)) {
      emu?.emuSetSchedule(s.kind, 23);
      expect(() => rewards.phaseEntropySync(inputs, { backend: 'cuda' })).toThrow(
        expect.objectContaining({ code: 'ERR_AE_NON_FINITE', row: 6 }));
    }
    entropy[6 * T + 150] = 1;
    expect(() => rewards.phaseEntropySync(inputs, { backend: 'cuda' })).toThrow(expect.objectContaining({ code: 'ERR_AE_NON_FINITE', row: 8 }));
    // The kernel's own report: NaN means on the bad row, the others computed.
    const thinkMean = new Float64Array(rows), answerMean = new Float64Array(rows);
    const at = new Int32Array(rows), thinkCount = new Int32Array(rows), answerCount = new Int32Array(rows);
    expect(cudaDevice().kernel('phaseEntropy', entropy, false, mask, rows, T, boundary, null, -1, at, thinkMean, answerMean, thinkCount,
      answerCount, false)).toBe(8);
    expect(Number.isNaN(thinkMean[8]) && Number.isNaN(answerMean[8])).toBe(true);
    expect(thinkMean.slice(0, 8).every(Number.isFinite)).toBe(true);
  });
});
