/**
 * The CUDA backend, verified without a GPU: the kernels of cuda/token_stats_kernels.cuh and the host code of
 * cuda/*.cu, compiled with g++ against the CPU emulation of the CUDA execution model (cuda/emu/: a fiber per
 * CUDA thread, __syncthreads as a real barrier, warp-synchronous shuffles, checked global memory, streams as
 * threads), driven through lib/cuda.ts exactly as the GPU build is. Checked here:
 *   - the emulator itself: out-of-bounds and misaligned accesses fault, a barrier skipped by one thread is
 *     reported, warp intrinsics give known answers, shared-memory races and reads of unwritten shared memory
 *     are reported, and a removed barrier is caught: reported as a race in race-checked shared memory (the
 *     real statistics kernel, under every schedule), wrong results under some schedule in plain shared memory;
 *   - every kernel against the float64 reference (test/ref/token_stats.ts) on fresh random inputs: f32 / bf16 /
 *     f16, V not a multiple of the vector width (rows starting unaligned), rows split across blocks, masks,
 *     non-finite rows; bitwise identical under forward, reverse and random thread schedules;
 *   - the device-memory API: toDevice / fromDevice, dispose and the finalizer, host inputs streamed in several
 *     pinned chunks, device-resident pipelines, in-place gradients, errors.
 * The emulation addon is built on first use by scripts/build_cuda.js (cmake-js, g++; incremental afterwards).
 *
 * On a machine with a GPU, `npm run test:gpu` runs this same suite against the GPU build (AE_CUDA_TEST=gpu):
 * the reference and device-memory tests run on the device; the emulator's own tests are skipped there.
 */
import { spawnSync } from 'child_process';
import * as path from 'path';
import * as v8 from 'v8';
import * as vm from 'vm';
import { DType, fromNumbers, Tensor, elementAt } from '../lib/tensor';
import { CudaAddon, CudaDevice, DeviceTensor, cudaAddonPath, openCudaAddon } from '../lib/cuda';
import { refFullKl, refTokenStats, refTokenStatsBackward, rowStats, rowU } from './ref/token_stats';
import {
  makeLogits, randomFloat32, randomMask, rng, roundBf16, roundF16, SEED, STATS_TOL, Tolerance, ulp16, widened,
} from './helpers';

const { abs, max } = Math;

interface EmulatorControls {
  emuSetSchedule(schedule: number, seed: number): void;
  emuCounters(): { launches: number; blocks: number; barrierWaits: number; warpSyncs: number; checkedAccesses: number; liveAllocations: number; liveBytes: number };
  emuResetError(): void;
  emuSetMemoryLimit(bytes: number): void;
  emuBreakBarrier(broken: boolean): void;
  emuSelfTest(name: string): { error: string; message: string; values: number[] };
}

const ROOT = path.resolve(__dirname, '..');
/** AE_CUDA_TEST=gpu: the GPU build on a real device (npm run test:gpu) instead of the emulation. */
const GPU = process.env.AE_CUDA_TEST === 'gpu';
/** The emulation build needs cmake and a C++ compiler (it is what CI and every dev machine has). */
const TOOLCHAIN = GPU || ['cmake', 'c++'].every((tool) => spawnSync(tool, ['--version'], { stdio: 'ignore' }).status === 0);
if (!TOOLCHAIN) console.log('cuda emulation tests skipped: cmake or a C++ compiler is missing');
const maybe = TOOLCHAIN ? describe : describe.skip;
/** Tests of the emulator itself (faults, schedules, memory limit): emulation only. */
const emulatorOnly = TOOLCHAIN && !GPU ? describe : describe.skip;

const SCHEDULES = [
  { name: 'forward', kind: 0 },
  { name: 'reverse', kind: 1 },
  { name: 'random', kind: 2 },
] as const;

let device: CudaDevice;
let emu: EmulatorControls;

beforeAll(() => {
  if (!TOOLCHAIN) return;
  if (GPU) {
    device = openCudaAddon(cudaAddonPath());
    const info = device.info();
    if (info.deviceCount === 0) throw new Error(`AE_CUDA_TEST=gpu but no device: ${info.errorName}: ${info.error}`);
    console.log(`cuda tests on ${info.name} (sm_${info.computeCapability}, ${info.multiprocessors} SMs)`);
    return;
  }
  const build = spawnSync(process.execPath, [path.join(ROOT, 'scripts', 'build_cuda.js'), '--emulation'], {
    cwd: ROOT, encoding: 'utf8', timeout: 900_000,
  });
  const lines = (build.stdout ?? '').trim().split('\n');
  if (build.status !== 0) throw new Error(`emulation build failed:\n${build.stdout}\n${build.stderr}`);
  device = openCudaAddon(lines[lines.length - 1]);
  emu = device.addon as CudaAddon & EmulatorControls as EmulatorControls;
}, 900_000);

afterEach(() => {
  if (!TOOLCHAIN || GPU) return;
  emu.emuBreakBarrier(false);
  emu.emuSetSchedule(2, SEED);
});

/** Runs `fn` under each thread schedule and checks that every schedule gives bitwise the same arrays. */
function underEverySchedule<T extends Record<string, ArrayLike<number>>>(label: string, fn: () => T): T {
  if (GPU) return fn();
  let first: T | undefined;
  for (const s of SCHEDULES) {
    emu.emuSetSchedule(s.kind, SEED);
    const got = fn();
    if (!first) first = got;
    else for (const key of Object.keys(first)) expect(got[key]).toEqualBitwise(first[key], `${label} ${key}: ${s.name} vs forward schedule`);
  }
  return first as T;
}

function expectStats(got: Record<string, Float32Array | undefined>, ref: ReturnType<typeof refTokenStats>, label: string) {
  for (const key of ['entropy', 'logprob', 'logsumexp', 'sumPiSquared', 'maxProb'] as const) {
    if (ref[key] === undefined) continue;
    expect(got[key]).toMatchReference(ref[key]!, STATS_TOL, `${label} ${key}`);
  }
}

emulatorOnly('the emulator', () => {
  test('reports the device as the emulator', () => {
    const info = device.info();
    expect(info.build).toBe('emulation');
    expect(info.deviceCount).toBe(1);
    expect(info.name).toMatch(/emulator/);
  });

  test.each([
    ['read-past-end', 'cudaErrorIllegalAddress', /outside every device allocation/],
    ['misaligned-vector', 'cudaErrorMisalignedAddress', /misaligned 16-byte load/],
    ['divergent-barrier', 'cudaErrorLaunchFailure', /63 of 64 threads at __syncthreads.*1 exited/],
  ])('%s faults with %s', (name, error, message) => {
    const r = emu.emuSelfTest(name);
    expect(r.error).toBe(error);
    expect(r.message).toMatch(message);
  });

  test('warp shuffles and ballots give their known answers in every lane of every block', () => {
    const r = emu.emuSelfTest('warp-ops');
    expect(r.error).toBe('cudaSuccess');
    for (let t = 0; t < 128; t++) {
      const lane = t % 32;
      expect(r.values.slice(4 * t, 4 * t + 4)).toEqual([496, 1, 70, lane === 31 ? 31 : lane + 1]);
    }
  });

  test('a shared-memory sum is right under every schedule with its barrier; without it the race is reported', () => {
    const want = Array.from({ length: 8 }, (_, b) => 32896 + 256 * b);
    let wrong = 0;
    for (const s of SCHEDULES) {
      emu.emuSetSchedule(s.kind, SEED);
      expect(emu.emuSelfTest('shared-sum').values).toEqual(want);
      // Race-checked shared memory: thread 0 reads slots that other threads write in the same barrier interval
      // (or, when it runs first, slots nobody has written yet). Reported whatever the schedule.
      const checked = emu.emuSelfTest('shared-sum-no-barrier');
      expect(checked.error).toBe('cudaErrorLaunchFailure');
      expect(checked.message).toMatch(/data race on shared checked\[\d+\]: written by thread \d+ and read by thread 0|shared checked\[\d+\] read before any thread/);
      // Plain shared memory: a race is not a fault, only the results show it, under some schedule.
      const plain = emu.emuSelfTest('shared-sum-no-barrier-unchecked');
      expect(plain.error).toBe('cudaSuccess');
      if (plain.values.some((v, b) => v !== want[b])) wrong++;
    }
    expect(wrong).toBeGreaterThan(0);
  });

  test('reading shared memory that no thread of the block wrote is reported', () => {
    const r = emu.emuSelfTest('unwritten-shared');
    expect(r.error).toBe('cudaErrorLaunchFailure');
    expect(r.message).toMatch(/thread \(0,0,0\): shared slots\[3\] read before any thread of the block wrote it/);
  });

  test('the statistics kernel with its block-reduction barrier removed is caught under every schedule', () => {
    const { logits } = makeLogits(rng('broken barrier'), [6, 3000], 'f32', { negInf: false });
    emu.emuBreakBarrier(true);
    try {
      for (const s of SCHEDULES) {
        emu.emuSetSchedule(s.kind, SEED);
        expect(() => device.tokenStatsSync(logits)).toThrow(expect.objectContaining({
          code: 'ERR_AE_NATIVE',
          cudaError: 'cudaErrorLaunchFailure',
          message: expect.stringMatching(/data race on shared scratch\[\d+\]|shared scratch\[\d+\] read before any thread/),
        }));
        emu.emuResetError(); // the fault is sticky, as on a GPU; the emulator alone can clear it
      }
    } finally {
      emu.emuBreakBarrier(false);
    }
    expectStats(device.tokenStatsSync(logits), refTokenStats(logits), 'barrier restored');
  });

  test('counts the work it emulated (blocks, barriers, warp exchanges, checked accesses)', () => {
    const before = emu.emuCounters();
    const { logits } = makeLogits(rng('counters'), [2, 5000], 'bf16');
    device.tokenStatsSync(logits, { blockSplit: 2, nonFinite: 'nan' });
    const after = emu.emuCounters();
    expect(after.launches - before.launches).toBe(2); // the chunk pass and the finalize pass
    expect(after.blocks - before.blocks).toBe(2 * 2 + 1);
    expect(after.barrierWaits - before.barrierWaits).toBe(4); // one __syncthreads per statistics block
    expect(after.warpSyncs).toBeGreaterThan(before.warpSyncs);
    expect(after.checkedAccesses - before.checkedAccesses).toBeGreaterThanOrEqual(10000 / 8);
  });
});

// ---- forward ----

const FORWARD: { shape: number[]; dtype: DType; temperature: number; blockSplit?: number }[] = [
  { shape: [3, 7], dtype: 'f32', temperature: 0.7 }, // V < one vector; rows start unaligned
  { shape: [5, 13], dtype: 'bf16', temperature: 1 },
  { shape: [4, 1001], dtype: 'f16', temperature: 1.3 },
  { shape: [2, 3, 37], dtype: 'f32', temperature: 1 },
  { shape: [3, 5003], dtype: 'bf16', temperature: 1, blockSplit: 3 }, // forced row split, ragged chunks
  { shape: [2, 5003], dtype: 'f32', temperature: 0.7, blockSplit: 7 },
  { shape: [3, 40000], dtype: 'f16', temperature: 1 }, // split by the size rule (≤ 32768 per block)
  { shape: [2, 152064], dtype: 'bf16', temperature: 1 }, // Qwen vocabulary: 5 chunks per row
  { shape: [1, 1], dtype: 'f32', temperature: 1 },
];

maybe.each(FORWARD)('tokenStats [$shape] $dtype τ=$temperature split=$blockSplit', ({ shape, dtype, temperature, blockSplit }) => {
  const label = `[${shape}] ${dtype} τ=${temperature}`;
  let logits: Tensor;
  let tokens: Int32Array;
  let ref: ReturnType<typeof refTokenStats>;
  beforeAll(() => {
    ({ logits, tokens } = makeLogits(rng(`cuda forward ${label}`), shape, dtype));
    ref = refTokenStats(logits, { tokens, temperature });
  });

  test('host logits match the reference under every schedule', () => {
    const got = underEverySchedule(label, () => device.tokenStatsSync(logits, { tokens, temperature, blockSplit }) as Record<string, Float32Array>);
    expectStats(got, ref, label);
  });

  test('device logits give bitwise the host-logits result; async equals Sync', async () => {
    const host = device.tokenStatsSync(logits, { tokens, temperature, blockSplit });
    const d = device.toDevice(logits);
    try {
      const onDevice = device.tokenStatsSync(d, { tokens, temperature, blockSplit });
      const viaAsync = await device.tokenStats(d, { tokens, temperature, blockSplit });
      for (const key of Object.keys(host) as (keyof typeof host)[]) {
        expect(onDevice[key]).toEqualBitwise(host[key]!, `${label} ${key} device vs host`);
        expect(viaAsync[key]).toEqualBitwise(host[key]!, `${label} ${key} async vs Sync`);
      }
    } finally {
      d.dispose();
    }
  });

  test('masked rows output 0 and the others still match', () => {
    const rows = ref.entropy.length;
    const rowMask = randomMask(rng(`cuda mask ${label}`), rows, 0.6);
    const masked = refTokenStats(logits, { tokens, temperature, rowMask });
    expectStats(device.tokenStatsSync(logits, { tokens, temperature, rowMask, blockSplit }) as Record<string, Float32Array>, masked, `${label} rowMask`);
  });
});

maybe('tokenStats edge rows', () => {
  test('rows with NaN, +inf or only −inf are NaN with nonFinite: nan, and throw naming the first bad row', () => {
    const r = rng('cuda non-finite');
    for (const dtype of ['f32', 'bf16', 'f16'] as DType[]) {
      const rows = 7;
      const vocab = 2053;
      const values = new Float64Array(rows * vocab);
      for (let j = 0; j < values.length; j++) values[j] = 3 * r.normal();
      values[2 * vocab + 1500] = NaN;
      values[4 * vocab + 7] = Infinity;
      values.fill(-Infinity, 5 * vocab, 6 * vocab);
      const logits = fromNumbers(values, [rows, vocab], dtype);
      const ref = refTokenStats(logits);
      expect(ref.badRows).toEqual([2, 4, 5]);
      const got = device.tokenStatsSync(logits, { nonFinite: 'nan', blockSplit: 2 });
      expectStats(got as Record<string, Float32Array>, ref, `non-finite ${dtype}`);
      expect(() => device.tokenStatsSync(logits, { blockSplit: 2 })).toThrow(expect.objectContaining({ code: 'ERR_AE_NON_FINITE', row: 2 }));
      const maskBad = Uint8Array.from({ length: rows }, (_, i) => (i === 2 ? 0 : 1));
      expect(() => device.tokenStatsSync(logits, { rowMask: maskBad })).toThrow(expect.objectContaining({ row: 4 }));
    }
  });

  test('host logits streamed in several pinned chunks give bitwise the one-chunk result', () => {
    const { logits, tokens } = makeLogits(rng('cuda chunks'), [37, 1001], 'f32');
    const whole = device.tokenStatsSync(logits, { tokens });
    device.setStagingChunkBytes(16 * 1024); // 4 rows of 4004 bytes → rounded to 8-row chunks: 5 chunks
    try {
      const chunked = device.tokenStatsSync(logits, { tokens });
      for (const key of Object.keys(whole) as (keyof typeof whole)[]) expect(chunked[key]).toEqualBitwise(whole[key]!, `chunked ${key}`);
      expectStats(chunked as Record<string, Float32Array>, refTokenStats(logits, { tokens }), 'chunked');
    } finally {
      device.setStagingChunkBytes(32 << 20);
    }
  });

  test('bad arguments are rejected before any kernel runs', () => {
    const { logits } = makeLogits(rng('cuda bad args'), [2, 10], 'f32');
    const f64 = fromNumbers(new Float64Array(20), [2, 10], 'f64');
    expect(() => device.tokenStatsSync(f64)).toThrow(expect.objectContaining({ code: 'ERR_AE_DTYPE' }));
    expect(() => device.tokenStatsSync(logits, { precision: 'f64' as 'f32' })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE' }));
    expect(() => device.tokenStatsSync(logits, { tokens: Int32Array.of(0, 10) })).toThrow(expect.objectContaining({ code: 'ERR_AE_TOKEN_RANGE' }));
    expect(() => device.tokenStatsSync(logits, { blockSplit: 0 })).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => device.tokenStatsSync(logits, { blockSplit: 1.5 })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE' }));
  });
});

// ---- backward ----

/** The gradient bound of test/token_stats_backward.test.ts: a fraction of the row's largest entry plus f32 cancellation. */
function gradTolerance(logits: Tensor, ref: Float64Array, g: { gradLogprob?: Float32Array; gradEntropy?: Float32Array }, temperature: number, forwardGiven = false): (r: number, i: number) => number {
  const vocab = logits.shape[logits.shape.length - 1];
  const rows = ref.length / vocab;
  const rowTol = new Float64Array(rows);
  for (let i = 0; i < ref.length; i++) rowTol[(i / vocab) | 0] = max(rowTol[(i / vocab) | 0], abs(ref[i]));
  for (let i = 0; i < rows; i++) {
    const s = rowStats(rowU(logits, i, temperature));
    const terms = (abs(g.gradLogprob?.[i] ?? 0) + abs(g.gradEntropy?.[i] ?? 0) * (1 + s.entropy)) / temperature;
    rowTol[i] = 1e-5 * rowTol[i] + 1e-7 + 4 * 2 ** -24 * terms * (forwardGiven ? 1 + abs(s.lse) : 1);
  }
  return (_r, i) => rowTol[(i / vocab) | 0];
}

function expect16(got: Uint16Array, ref: Float64Array, dtype: 'bf16' | 'f16', f32: (r: number, i: number) => number, label: string) {
  const rounded = ref.map(dtype === 'bf16' ? roundBf16 : roundF16);
  const tol: Tolerance = (r, i) => ulp16(r, dtype) + f32(r, i);
  expect(widened(got, dtype)).toMatchReference(rounded, tol, label);
}

const BACKWARD: { shape: number[]; dtype: DType; temperature: number; blockSplit?: number }[] = [
  { shape: [3, 7], dtype: 'f32', temperature: 0.7 },
  { shape: [5, 1271], dtype: 'bf16', temperature: 1.3, blockSplit: 3 },
  { shape: [2, 3, 37], dtype: 'f16', temperature: 0.7 },
  { shape: [2, 40000], dtype: 'bf16', temperature: 1 },
];

maybe.each(BACKWARD)('tokenStatsBackward [$shape] $dtype τ=$temperature', ({ shape, dtype, temperature, blockSplit }) => {
  const label = `[${shape}] ${dtype} τ=${temperature}`;
  let logits: Tensor;
  let tokens: Int32Array;
  let up: { gradLogprob: Float32Array; gradEntropy: Float32Array };
  let ref: Float64Array;
  beforeAll(() => {
    const r = rng(`cuda backward ${label}`);
    ({ logits, tokens } = makeLogits(r, shape, dtype));
    const rows = logits.data.length / shape[shape.length - 1];
    up = { gradLogprob: randomFloat32(r, rows), gradEntropy: randomFloat32(r, rows) };
    ref = refTokenStatsBackward(logits, { tokens, temperature, ...up });
  });

  test('host logits → host f32 gradient, under every schedule', () => {
    const got = underEverySchedule(label, () => ({ g: device.tokenStatsBackwardSync(logits, { tokens, temperature, ...up, blockSplit }) as Float32Array }));
    expect(got.g).toMatchReference(ref, gradTolerance(logits, ref, up, temperature), `${label} host`);
  });

  test('only one upstream gradient; forward values given; row mask', () => {
    const lpOnly = refTokenStatsBackward(logits, { tokens, temperature, gradLogprob: up.gradLogprob });
    expect(device.tokenStatsBackwardSync(logits, { tokens, temperature, gradLogprob: up.gradLogprob, blockSplit }))
      .toMatchReference(lpOnly, gradTolerance(logits, lpOnly, { gradLogprob: up.gradLogprob }, temperature), `${label} logprob only`);
    const hOnly = refTokenStatsBackward(logits, { temperature, gradEntropy: up.gradEntropy });
    expect(device.tokenStatsBackwardSync(logits, { temperature, gradEntropy: up.gradEntropy }))
      .toMatchReference(hOnly, gradTolerance(logits, hOnly, { gradEntropy: up.gradEntropy }, temperature), `${label} entropy only`);
    const fwd = device.tokenStatsSync(logits, { temperature, outputs: ['logsumexp', 'entropy'] });
    const given = device.tokenStatsBackwardSync(logits, { tokens, temperature, ...up, logsumexp: fwd.logsumexp, entropy: fwd.entropy });
    expect(given).toMatchReference(ref, gradTolerance(logits, ref, up, temperature, true), `${label} forward given`);
    const rows = up.gradLogprob.length;
    const rowMask = randomMask(rng(`cuda backward mask ${label}`), rows, 0.5);
    const masked = refTokenStatsBackward(logits, { tokens, temperature, ...up, rowMask });
    expect(device.tokenStatsBackwardSync(logits, { tokens, temperature, ...up, rowMask, blockSplit }))
      .toMatchReference(masked, gradTolerance(logits, masked, up, temperature), `${label} rowMask`);
  });

  test('device pipeline: forward and backward on a DeviceTensor, gradient left on the device, in place too', async () => {
    const d = device.toDevice(logits);
    const tol = gradTolerance(logits, ref, up, temperature);
    try {
      const g = (await device.tokenStatsBackward(d, { tokens, temperature, ...up, blockSplit })) as DeviceTensor;
      expect(g).toBeInstanceOf(DeviceTensor);
      expect(g.dtype).toBe('f32');
      expect(device.fromDevice(g).data).toMatchReference(ref, tol, `${label} device → device`);
      g.dispose();
      if (dtype !== 'f32') {
        const own = device.empty(logits.shape, dtype);
        device.tokenStatsBackwardSync(d, { tokens, temperature, ...up, out: own });
        expect16(device.fromDevice(own).data as Uint16Array, ref, dtype as 'bf16' | 'f16', tol, `${label} device out ${dtype}`);
        own.dispose();
      }
      const same = device.tokenStatsBackwardSync(d, { tokens, temperature, ...up, inPlace: true });
      expect(same).toBe(d);
      const inPlace = device.fromDevice(d).data;
      if (dtype === 'f32') expect(inPlace).toMatchReference(ref, tol, `${label} in place on device`);
      else expect16(inPlace as Uint16Array, ref, dtype as 'bf16' | 'f16', tol, `${label} in place on device`);
    } finally {
      d.dispose();
    }
  });

  test('in place on host logits, in several staged chunks', () => {
    const copy = { data: logits.data.slice(), shape: logits.shape, dtype: logits.dtype } as Tensor;
    device.setStagingChunkBytes(4096);
    try {
      const got = device.tokenStatsBackwardSync(copy, { tokens, temperature, ...up, inPlace: true, blockSplit });
      expect(got).toBe(copy.data);
      const tol = gradTolerance(logits, ref, up, temperature);
      if (dtype === 'f32') expect(got as Float32Array).toMatchReference(ref, tol, `${label} in place on host`);
      else expect16(got as Uint16Array, ref, dtype as 'bf16' | 'f16', tol, `${label} in place on host`);
    } finally {
      device.setStagingChunkBytes(32 << 20);
    }
  });
});

maybe('tokenStatsBackward edge rows', () => {
  test('host logits into a device gradient of their own dtype, in chunks that start 16-byte aligned', () => {
    // 37 rows of 1001 bf16 (2002 bytes): 8 KiB of staging holds 4 rows, rounded up to 8 so that each chunk of the
    // bf16 output starts at a multiple of 8 entries (4 rows would start at byte 8008 and fault on a 16-byte store).
    const r = rng('cuda chunk alignment');
    const { logits, tokens } = makeLogits(r, [37, 1001], 'bf16');
    const up = { gradLogprob: randomFloat32(r, 37), gradEntropy: randomFloat32(r, 37) };
    const ref = refTokenStatsBackward(logits, { tokens, ...up });
    const out = device.empty([37, 1001], 'bf16');
    device.setStagingChunkBytes(8 * 1024);
    try {
      expect(device.tokenStatsBackwardSync(logits, { tokens, ...up, out })).toBe(out);
      expect16(device.fromDevice(out).data as Uint16Array, ref, 'bf16', gradTolerance(logits, ref, up, 1), 'host → device bf16');
    } finally {
      device.setStagingChunkBytes(32 << 20);
      out.dispose();
    }
  });

  test('a non-finite row throws naming it; with non-finite forward values that row is NaN, the others right', () => {
    const values = Float64Array.from({ length: 3 * 300 }, (_, j) => Math.sin(j));
    values[300 + 5] = NaN;
    const logits = fromNumbers(values, [3, 300], 'f32');
    const gradEntropy = Float32Array.of(1, 1, 1);
    expect(() => device.tokenStatsBackwardSync(logits, { gradEntropy })).toThrow(expect.objectContaining({ code: 'ERR_AE_NON_FINITE', row: 1 }));
    const out = new Float32Array(900).fill(7);
    expect(() => device.tokenStatsBackwardSync(logits, {
      gradEntropy, logsumexp: Float32Array.of(1, NaN, 1), entropy: Float32Array.of(1, 1, 1), out,
    })).toThrow(expect.objectContaining({ row: 1 }));
    expect(out.subarray(300, 600).every((v) => Number.isNaN(v))).toBe(true);
    const ref = refTokenStatsBackward(logits, { gradEntropy, logsumexp: [1, NaN, 1], entropy: [1, 1, 1] });
    expect(out.subarray(0, 300)).toMatchReference(ref.subarray(0, 300), { rtol: 1e-5, atol: 1e-6 }, 'rows around it');
  });
});

// ---- full KL ----

function refLogitsFor(r: ReturnType<typeof rng>, p: Tensor): Tensor {
  const vocab = p.shape[p.shape.length - 1];
  const values = new Float64Array(p.data.length);
  for (let i = 0; i < values.length / vocab; i++) {
    const sigma = r.pick([0.01, 0.3, 3]);
    for (let j = i * vocab; j < (i + 1) * vocab; j++) {
      const z = elementAt(p, j);
      values[j] = z === -Infinity ? (r.float() < 0.5 ? -Infinity : 5 * r.normal()) : z + sigma * r.normal();
    }
  }
  return fromNumbers(values, p.shape, p.dtype);
}

const KL: { shape: number[]; dtype: DType; temperature: number; blockSplit?: number }[] = [
  { shape: [3, 7], dtype: 'f32', temperature: 1 },
  { shape: [6, 1271], dtype: 'bf16', temperature: 0.7, blockSplit: 4 },
  { shape: [2, 3, 37], dtype: 'f16', temperature: 1.3 },
  { shape: [2, 152064], dtype: 'bf16', temperature: 1 },
];

maybe.each(KL)('fullKl [$shape] $dtype τ=$temperature', ({ shape, dtype, temperature, blockSplit }) => {
  const label = `[${shape}] ${dtype} τ=${temperature}`;
  test('matches the reference on host and device inputs under every schedule; KL(p‖p) = 0', () => {
    const r = rng(`cuda kl ${label}`);
    const p = makeLogits(r, shape, dtype).logits;
    const q = refLogitsFor(r, p);
    const ref = refFullKl(p, q, { temperature });
    const got = underEverySchedule(label, () => ({ kl: device.fullKlSync(p, q, { temperature, blockSplit }) }));
    expect(got.kl).toMatchReference(ref, STATS_TOL, label);
    const dp = device.toDevice(p);
    const dq = device.toDevice(q);
    try {
      expect(device.fullKlSync(dp, dq, { temperature, blockSplit })).toEqualBitwise(got.kl, `${label} device vs host`);
      expect(device.fullKlSync(dp, q, { temperature, blockSplit })).toEqualBitwise(got.kl, `${label} device p, host q`);
      const self = device.fullKlSync(dp, dp, { temperature });
      expect(self).toMatchReference(new Float64Array(self.length), STATS_TOL, `${label} KL(p‖p)`);
    } finally {
      dp.dispose();
      dq.dispose();
    }
  });
});

maybe('fullKl edge rows', () => {
  test('p > 0 where q = −inf gives +Infinity; a NaN row throws or is NaN', () => {
    const p = fromNumbers([0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3], [3, 4], 'f32');
    const q = fromNumbers([0, -Infinity, 2, 3, 1, 1, 1, 1, NaN, 1, 1, 1], [3, 4], 'f32');
    const ref = refFullKl(p, q);
    const got = device.fullKlSync(p, q, { nonFinite: 'nan' });
    expect(got[0]).toBe(Infinity);
    expect(got).toMatchReference(ref, STATS_TOL, 'edge rows');
    expect(() => device.fullKlSync(p, q)).toThrow(expect.objectContaining({ code: 'ERR_AE_NON_FINITE', row: 2 }));
  });
});

// ---- device memory ----

maybe('device memory', () => {
  test('toDevice / fromDevice round-trip bitwise for every dtype', () => {
    for (const dtype of ['f32', 'bf16', 'f16'] as DType[]) {
      const { logits } = makeLogits(rng(`roundtrip ${dtype}`), [3, 129], dtype);
      const d = device.toDevice(logits);
      expect(d.shape).toEqual([3, 129]);
      expect(d.byteLength).toBe(logits.data.byteLength);
      expect(device.fromDevice(d).data).toEqualBitwise(logits.data, `roundtrip ${dtype}`);
      d.dispose();
    }
  });

  test('dispose frees the buffer at once; a disposed tensor is refused; dispose twice is harmless', () => {
    const before = device.info().liveBuffers;
    const d = device.toDevice(fromNumbers([1, 2, 3, 4], [2, 2], 'f32'));
    expect(device.info().liveBuffers).toBe(before + 1);
    d.dispose();
    d.dispose();
    expect(d.disposed).toBe(true);
    expect(device.info().liveBuffers).toBe(before);
    expect(() => device.fromDevice(d)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE' }));
    expect(() => device.tokenStatsSync(d)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_VALUE' }));
  });

  test('a DeviceTensor dropped without dispose is freed by the finalizer', async () => {
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    // Tensors earlier tests dropped are collectable too: let the finalizers settle before counting.
    const settle = async () => {
      for (let quiet = 0, last = -1, round = 0; quiet < 3 && round < 100; round++) {
        gc();
        await new Promise((resolve) => setTimeout(resolve, 10));
        const live = device.info().liveBuffers;
        quiet = live === last ? quiet + 1 : 0;
        last = live;
      }
    };
    await settle();
    const before = device.info().liveBuffers;
    (() => {
      for (let k = 0; k < 4; k++) device.empty([16, 16], 'f32');
    })();
    expect(device.info().liveBuffers).toBe(before + 4);
    for (let attempt = 0; attempt < 50 && device.info().liveBuffers > before; attempt++) {
      gc();
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    expect(device.info().liveBuffers).toBe(before);
  });

  (GPU ? test.skip : test)('out of device memory is an ERR_AE_NATIVE error naming cudaErrorMemoryAllocation, and the device recovers', () => {
    emu.emuSetMemoryLimit(1 << 20);
    try {
      expect(() => device.empty([1024, 1024], 'f32')).toThrow(expect.objectContaining({ code: 'ERR_AE_NATIVE', cudaError: 'cudaErrorMemoryAllocation' }));
    } finally {
      emu.emuSetMemoryLimit(8 * 2 ** 30);
    }
    const { logits } = makeLogits(rng('after oom'), [2, 100], 'f32');
    expectStats(device.tokenStatsSync(logits) as Record<string, Float32Array>, refTokenStats(logits), 'after oom');
  });

  test('concurrent async ops are serialised and a tensor disposed while an op runs on it stays valid until it ends', async () => {
    const r = rng('cuda concurrent');
    const inputs = [0, 1, 2, 3].map((k) => makeLogits(r, [3, 2000 + 37 * k], k % 2 ? 'bf16' : 'f32'));
    const sync = inputs.map(({ logits, tokens }) => device.tokenStatsSync(logits, { tokens }));
    const onDevice = inputs.map(({ logits }) => device.toDevice(logits));
    const pending = inputs.map(({ tokens }, k) => device.tokenStats(k % 2 ? onDevice[k] : inputs[k].logits, { tokens }));
    for (const d of onDevice) d.dispose(); // the running ops hold their buffers
    const got = await Promise.all(pending);
    got.forEach((g, k) => {
      for (const key of Object.keys(sync[k]) as (keyof (typeof sync)[number])[]) expect(g[key]).toEqualBitwise(sync[k][key]!, `op ${k} ${key}`);
    });
    expect(onDevice.every((d) => d.disposed)).toBe(true);
  });

  test('times its kernels and the device bandwidth with CUDA events', () => {
    const { logits } = makeLogits(rng('timing'), [4, 3000], 'bf16');
    device.tokenStatsSync(logits, { nonFinite: 'nan' });
    expect(device.lastDeviceMs()).toBeGreaterThan(0);
    const bw = device.measureBandwidth(1 << 20, 3);
    expect(bw.repeats).toBe(3);
    expect(bw.bestGbPerSec).toBeGreaterThanOrEqual(bw.medianGbPerSec);
    expect(bw.medianGbPerSec).toBeGreaterThan(0);
  });

  test('tensors of another device, wrong shapes and wrong out buffers are refused', () => {
    const d = device.toDevice(fromNumbers([1, 2, 3, 4, 5, 6], [2, 3], 'f32'));
    try {
      expect(() => device.tokenStatsBackwardSync(d, { gradEntropy: new Float32Array(2), out: new Float32Array(5) }))
        .toThrow(expect.objectContaining({ code: 'ERR_AE_SHAPE_MISMATCH' }));
      const small = device.empty([2, 2], 'f32');
      expect(() => device.tokenStatsBackwardSync(d, { gradEntropy: new Float32Array(2), out: small }))
        .toThrow(expect.objectContaining({ code: 'ERR_AE_SHAPE_MISMATCH' }));
      small.dispose();
      const flat = device.empty([6], 'f32');
      expect(() => device.tokenStatsSync(flat)).toThrow(expect.objectContaining({ code: 'ERR_AE_SHAPE_MISMATCH' }));
      flat.dispose();
      expect(() => device.fullKlSync(d, fromNumbers([1, 2, 3, 4], [2, 2], 'f32'))).toThrow(expect.objectContaining({ code: 'ERR_AE_SHAPE_MISMATCH' }));
    } finally {
      d.dispose();
    }
  });
});
