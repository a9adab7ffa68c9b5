/**
 * The CUDA vocabulary-shard states (SPEC §1.3, cuda/token_stats.cu token_stats_partial: pass 1 of tokenStats, then
 * one thread per row merging the chunk states and writing M, Σe, Σe·u, Σe², u_y) verified without a GPU, through
 * `tokenStatsPartial(…, {backend: 'cuda'})` and CudaDevice.tokenStatsPartial on the emulation build
 * (test/cuda_setup.ts). Checked on fresh random logits in f32 / bf16 / f16, V not a multiple of the vector width,
 * uneven shards of it, rows split across several blocks (blockSplit and the 32768-entry rule), τ ≠ 1:
 *   - each shard's state against the float64 reference (test/ref/token_stats.ts refTokenStatsPartial), M the exact
 *     maximum of u as on the cpu backend; the shards' CUDA states merged by mergeTokenStats equal the reference
 *     tokenStats of the whole rows (SPEC §1.1 bound); bitwise the same under forward, reverse and random thread
 *     schedules; M and u_y bitwise the cpu backend's, the sums within f32 rounding of them;
 *   - tokens inside and outside the shard, row masks, all −inf shard rows (empty states), rows with one finite
 *     entry, NaN / +inf rows (ERR_AE_NON_FINITE naming the first, as on the cpu backend);
 *   - device-resident shards and host shards streamed in several pinned chunks give bitwise the same states;
 *     async equals Sync; bad options are refused before any kernel runs.
 */
import * as ae from '../lib';
import { DType, fromNumbers } from '../lib/tensor';
import { cudaDevice } from '../lib/cuda';
import { refTokenStats, refTokenStatsPartial } from './ref/token_stats';
import { makeSharded, nativeLoaded, randomMask, rng, SEED, Sharded, STATS_TOL, Tolerance } from './helpers';
import { EmulatorControls, loadCudaBackend, TOOLCHAIN, underEverySchedule } from './cuda_setup';

const { abs, log, max } = Math;

if (!TOOLCHAIN) console.log('cuda tokenStatsPartial emulation tests skipped: cmake or a C++ compiler is missing');
const maybe = TOOLCHAIN ? describe : describe.skip;

type State = ae.TokenStatsPartial;
type PartialOptions = Parameters<typeof ae.tokenStatsPartialSync>[1];
const FIELDS = ['max', 'sumExp', 'sumExpU', 'sumExp2', 'targetLogit'] as const;
/** M and u_y are one rounding of z/τ (z·(1/τ) here, z/τ in the reference). */
const U_TOL: Tolerance = (x) => 4e-16 * abs(x);
/** The sums: f32 within a block, f64 across blocks, against the f64 reference (or the cpu backend's f32 lanes). */
const SUM_TOL: Tolerance = { rtol: 1e-5, atol: 0 };

let emu: EmulatorControls | undefined;
beforeAll(() => {
  if (TOOLCHAIN) emu = loadCudaBackend();
}, 900_000);

/**
 * A state against the reference: M and u_y to one rounding, Σe and Σe² relative, and the shift-free views
 * M + log S (SPEC §1.1 bound), Σe·u/S (1e-5 of max(|mean|, 1)) and Σe²/S². `rows` limits the check (masked rows).
 */
function expectPartial(got: State, ref: State, label: string, rows?: (i: number) => boolean) {
  const pick = (a: Float64Array) => (rows ? a.filter((_, i) => rows(i)) : a);
  const view = (p: State) => ({
    logMass: pick(p.max.map((m, i) => (p.sumExp[i] === 0 ? -Infinity : m + log(p.sumExp[i])))),
    meanU: pick(p.sumExpU.map((x, i) => (p.sumExp[i] === 0 ? 0 : x / p.sumExp[i]))),
    sumP2: pick(p.sumExp2.map((x, i) => (p.sumExp[i] === 0 ? 0 : x / (p.sumExp[i] * p.sumExp[i])))),
  });
  const g = view(got);
  const e = view(ref);
  expect(got.rows).toBe(ref.rows);
  expect(pick(got.max)).toMatchReference(pick(ref.max), U_TOL, `${label} M`);
  expect(pick(got.targetLogit)).toMatchReference(pick(ref.targetLogit), U_TOL, `${label} u_y`);
  expect(pick(got.sumExp)).toMatchReference(pick(ref.sumExp), SUM_TOL, `${label} Σe`);
  expect(pick(got.sumExp2)).toMatchReference(pick(ref.sumExp2), SUM_TOL, `${label} Σe²`);
  expect(g.logMass).toMatchReference(e.logMass, STATS_TOL, `${label} M + log S`);
  expect(g.meanU).toMatchReference(e.meanU, (x) => 1e-5 * max(abs(x), 1), `${label} Σe·u/S`);
  expect(g.sumP2).toMatchReference(e.sumP2, STATS_TOL, `${label} Σe²/S²`);
  // An all −inf shard row is a valid empty state: M = −inf and every sum exactly 0.
  const empty = ref.sumExp.reduce<number[]>((a, s, i) => (s === 0 && (!rows || rows(i)) ? [...a, i] : a), []);
  expect(empty.filter((i) => !(got.max[i] === -Infinity && got.sumExp[i] === 0 && got.sumExpU[i] === 0 && got.sumExp2[i] === 0))).toEqual([]);
}

function expectSameBits(got: State, want: State, label: string) {
  expect(got.rows).toBe(want.rows);
  for (const f of FIELDS) expect(got[f]).toEqualBitwise(want[f], `${label} ${f}`);
}

const CASES: readonly { shape: readonly number[]; dtype: DType; shards: number; temperature: number; blockSplit?: number }[] = [
  { shape: [6, 1271], dtype: 'f32', shards: 2, temperature: 1, blockSplit: 3 },
  { shape: [5, 3001], dtype: 'bf16', shards: 3, temperature: 0.7, blockSplit: 4 },
  { shape: [2, 3, 997], dtype: 'f16', shards: 2, temperature: 1.3, blockSplit: 2 },
  { shape: [2, 70001], dtype: 'bf16', shards: 2, temperature: 0.9 }, // shards over 32768 wide: split by the size rule
];

maybe.each(CASES)('shards [$shape] $dtype into $shards, τ=$temperature', ({ shape, dtype, shards: k, temperature, blockSplit }) => {
  const label = `[${shape}] ${dtype} ${k} shards τ=${temperature} split=${blockSplit ?? 'default'}`;
  let input: Sharded;
  let states: State[];
  beforeAll(() => {
    input = makeSharded(rng(`cuda partial ${label}`), shape, dtype, k);
    states = input.shards.map(({ tensor, offset }, s) => underEverySchedule(emu, SEED, `${label} shard ${s}`, () =>
      cudaDevice().tokenStatsPartialSync(tensor, { tokens: input.tokens, vocabOffset: offset, temperature, blockSplit })));
  });

  test('each shard matches the reference (the same bits under every schedule); the merge is the whole rows\' tokenStats', () => {
    const { shards, tokens, full } = input;
    states.forEach((state, s) => {
      const ref = refTokenStatsPartial(shards[s].tensor, { tokens, vocabOffset: shards[s].offset, temperature });
      expectPartial(state, ref, `${label} shard ${s}`);
    });
    // Every row's token lies in exactly one shard: the others report NaN.
    for (let i = 0; i < input.rows; i++) expect(states.filter((p) => !Number.isNaN(p.targetLogit[i])).length).toBe(1);
    const whole = refTokenStats(full, { tokens, temperature });
    const merged = ae.mergeTokenStats(states);
    expect(Object.keys(merged).sort()).toEqual([...ae.STAT_NAMES].sort());
    for (const name of ae.STAT_NAMES) expect(merged[name]).toMatchReference(whole[name]!, STATS_TOL, `${label} merged ${name}`);
  });

  test("the public op with backend 'cuda' (sync and async) gives the device op's bits; a device shard too", async () => {
    const { tensor, offset } = input.shards[k - 1];
    const opts = { tokens: input.tokens, vocabOffset: offset, temperature };
    const direct = cudaDevice().tokenStatsPartialSync(tensor, opts);
    expectSameBits(ae.tokenStatsPartialSync(tensor, { ...opts, backend: 'cuda' } as PartialOptions), direct, `${label} op`);
    expectSameBits(await ae.tokenStatsPartial(tensor, { ...opts, backend: 'cuda' } as PartialOptions), direct, `${label} async op`);
    const d = cudaDevice().toDevice(tensor);
    try {
      expectSameBits(cudaDevice().tokenStatsPartialSync(d, opts), direct, `${label} device shard`);
      expectSameBits(await cudaDevice().tokenStatsPartial(d, opts), direct, `${label} device shard async`);
    } finally {
      d.dispose();
    }
  });

  test('M and u_y are the cpu backend\'s bits, the sums within f32 rounding of its', () => {
    // Asked here, not at load: backendInfo() probes the CUDA addon, which loadCudaBackend() must choose first.
    if (!nativeLoaded()) return;
    input.shards.forEach(({ tensor, offset }, s) => {
      const cpu = ae.tokenStatsPartialSync(tensor, { tokens: input.tokens, vocabOffset: offset, temperature, backend: 'cpu' });
      expect(states[s].max).toEqualBitwise(cpu.max, `${label} shard ${s} M vs cpu`);
      expect(states[s].targetLogit).toEqualBitwise(cpu.targetLogit, `${label} shard ${s} u_y vs cpu`);
      expectPartial(states[s], cpu, `${label} shard ${s} vs cpu`);
    });
  });

  test('masked rows are empty states with NaN targets (as on the cpu backend); the others still match', () => {
    const rowMask = randomMask(rng(`cuda partial mask ${label}`), input.rows, 0.6);
    const { tensor, offset } = input.shards[0];
    const got = cudaDevice().tokenStatsPartialSync(tensor, { tokens: input.tokens, vocabOffset: offset, temperature, rowMask, blockSplit });
    const ref = refTokenStatsPartial(tensor, { tokens: input.tokens, vocabOffset: offset, temperature });
    expectPartial(got, ref, `${label} rowMask`, (i) => rowMask[i] === 1);
    for (let i = 0; i < input.rows; i++) {
      if (rowMask[i] === 1) continue;
      expect([i, got.max[i], got.sumExp[i], got.sumExpU[i], got.sumExp2[i], got.targetLogit[i]]).toEqual([i, -Infinity, 0, 0, 0, NaN]);
    }
  });
});

maybe('tokenStatsPartial edge rows and errors', () => {
  const vocab = 1029;

  test('all −inf rows are empty states; a row with one finite entry is (u, 1, u, 1); tokens past the shard are NaN', () => {
    for (const dtype of ['f32', 'bf16', 'f16'] as DType[]) {
      const values = new Float64Array(4 * vocab).fill(-Infinity);
      values[1 * vocab + 1000] = 2.5; // one finite entry, in the tail past the last whole vector
      values[2 * vocab + 3] = -7.25;
      for (let j = 0; j < vocab; j++) values[3 * vocab + j] = j % 5 === 0 ? -Infinity : 0.01 * j;
      const shard = fromNumbers(values, [4, vocab], dtype);
      const tokens = Int32Array.from([500 + 7, 500 + 1000, 500 + vocab, 2147483646]); // shard at offset 500
      const got = underEverySchedule(emu, SEED, `edge ${dtype}`, () =>
        cudaDevice().tokenStatsPartialSync(shard, { tokens, vocabOffset: 500, temperature: 0.5, blockSplit: 3 }));
      const ref = refTokenStatsPartial(shard, { tokens, vocabOffset: 500, temperature: 0.5 });
      expectPartial(got, ref, `edge ${dtype}`);
      expect([got.max[0], got.sumExp[0], got.sumExpU[0], got.sumExp2[0], got.targetLogit[0]]).toEqual([-Infinity, 0, 0, 0, -Infinity]);
      // M and u_y exact; the sums are 1, u, 1 up to the recentring from the kernels' reference point, which is
      // u·log2(e) rounded to f32 (half an ulp of |x| < 32: ≤ 2^-20·ln 2 in Σe, twice that in Σe²).
      expect([got.max[1], got.targetLogit[1], got.max[2], got.targetLogit[2]]).toEqual([5, 5, -14.5, NaN]);
      const one = [got.sumExp[1], got.sumExp2[1], got.sumExpU[1] / 5, got.sumExp[2], got.sumExp2[2], got.sumExpU[2] / -14.5];
      expect(one).toMatchReference([1, 1, 1, 1, 1, 1], { rtol: 2 ** -19, atol: 0 }, `one finite entry ${dtype}`);
      expect(got.targetLogit[3]).toBeNaN();
    }
  });

  test('NaN or +inf rows throw naming the first unmasked one, as on the cpu backend', () => {
    const r = rng('cuda partial non-finite');
    for (const dtype of ['f32', 'bf16', 'f16'] as DType[]) {
      const rows = 6;
      const values = new Float64Array(rows * vocab);
      for (let j = 0; j < values.length; j++) values[j] = 3 * r.normal();
      values[2 * vocab + 900] = NaN;
      values[4 * vocab + 5] = Infinity;
      values.fill(-Infinity, 5 * vocab, 6 * vocab); // a valid empty state, not an error
      const shard = fromNumbers(values, [rows, vocab], dtype);
      const dev = cudaDevice();
      expect(() => dev.tokenStatsPartialSync(shard, { vocabOffset: 0, blockSplit: 2 })).toThrow(
        expect.objectContaining({ code: 'ERR_AE_NON_FINITE', row: 2 }));
      const rowMask = Uint8Array.from({ length: rows }, (_, i) => (i === 2 ? 0 : 1));
      expect(() => ae.tokenStatsPartialSync(shard, { vocabOffset: 0, rowMask, backend: 'cuda' } as PartialOptions)).toThrow(
        expect.objectContaining({ code: 'ERR_AE_NON_FINITE', row: 4 }));
      if (nativeLoaded()) {
        expect(() => ae.tokenStatsPartialSync(shard, { vocabOffset: 0, rowMask, backend: 'cpu' })).toThrow(
          expect.objectContaining({ code: 'ERR_AE_NON_FINITE', row: 4 }));
      }
      const clean = Uint8Array.from({ length: rows }, (_, i) => (i === 2 || i === 4 ? 0 : 1));
      const got = dev.tokenStatsPartialSync(shard, { vocabOffset: 0, rowMask: clean });
      expect([got.max[5], got.sumExp[5]]).toEqual([-Infinity, 0]);
    }
  });

  test('host shards streamed in several pinned chunks give bitwise the one-chunk states', () => {
    const r = rng('cuda partial chunks');
    const input = makeSharded(r, [37, 1001], 'f32', 2);
    const { tensor, offset } = input.shards[1];
    const opts = { tokens: input.tokens, vocabOffset: offset };
    const whole = cudaDevice().tokenStatsPartialSync(tensor, opts);
    cudaDevice().setStagingChunkBytes(8 * 1024);
    try {
      expectSameBits(cudaDevice().tokenStatsPartialSync(tensor, opts), whole, 'chunked');
    } finally {
      cudaDevice().setStagingChunkBytes(32 << 20);
    }
    expectPartial(whole, refTokenStatsPartial(tensor, opts), 'chunked');
  });

  test('bad options are refused before any kernel runs', () => {
    const shard = fromNumbers(new Float64Array(2 * 16).fill(1), [2, 16], 'f32');
    const dev = cudaDevice();
    const refused = (fn: () => unknown, code: string, param: string) =>
      expect(fn).toThrow(expect.objectContaining({ code, param }));
    refused(() => ae.tokenStatsPartialSync(shard, { vocabOffset: 0, precision: 'f64', backend: 'cuda' } as PartialOptions), 'ERR_INVALID_ARG_VALUE', 'opts.precision');
    refused(() => ae.tokenStatsPartialSync(fromNumbers([1, 2], [1, 2], 'f64'), { vocabOffset: 0, backend: 'cuda' } as PartialOptions), 'ERR_AE_DTYPE', 'logitsShard.dtype');
    refused(() => dev.tokenStatsPartialSync(shard, { vocabOffset: -1 }), 'ERR_OUT_OF_RANGE', 'opts.vocabOffset');
    refused(() => dev.tokenStatsPartialSync(shard, {} as never), 'ERR_INVALID_ARG_TYPE', 'opts.vocabOffset');
    refused(() => dev.tokenStatsPartialSync(shard, { vocabOffset: 0, tokens: Int32Array.from([0, -1]) }), 'ERR_AE_TOKEN_RANGE', 'opts.tokens[1]');
    refused(() => dev.tokenStatsPartialSync(shard, { vocabOffset: 0, rowMask: new Uint8Array(3) }), 'ERR_AE_SHAPE_MISMATCH', 'opts.rowMask');
    refused(() => dev.tokenStatsPartialSync(shard, { vocabOffset: 0, blockSplit: 0 }), 'ERR_OUT_OF_RANGE', 'opts.blockSplit');
    // blockSplit is the device op's knob; the public op takes the cpu backend's options.
    refused(() => ae.tokenStatsPartialSync(shard, { vocabOffset: 0, blockSplit: 2, backend: 'cuda' } as never), 'ERR_INVALID_ARG_VALUE', 'opts.blockSplit');
  });
});
