/**
 * tokenStats (SPEC §1.1) against the float64 reference in test/ref/token_stats.ts, on every backend: js, cpu
 * at its default SIMD level, and cpu with each level in backendInfo().isaAvailable forced by name.
 */
import * as ae from '../lib';
import { DType, fromNumbers, Tensor } from '../lib/tensor';
import { refTokenStats, RefStats } from './ref/token_stats';
import {
  BackendCase, backendCases, makeLogits, randomMask, randomRow, rng, STATS_TOL, withBackend,
} from './helpers';

// ---- parameter table ----

const SHAPES: readonly (readonly number[])[] = [
  [1, 1],
  [3, 7],
  [41, 1271], // V not a multiple of 16 (nor of any vector width)
  [2, 3, 37], // [B, T, V]
  [4, 152064], // V = 152k (Qwen vocabulary); N kept small for runtime
];
const DTYPES: readonly DType[] = ['f32', 'f64', 'bf16', 'f16'];
const TEMPERATURES = [1, 0.7, 1.3];
/**
 * One tolerance for every dtype (SPEC §1.1): |got − ref| ≤ max(1e-5·|ref|, 1e-6). bf16 / f16 are widened
 * exactly before any arithmetic, so the reference is computed from the same widened values and the bound
 * is the f32 one; f64 inputs are held to the same bound (outputs are f32).
 */
const TOLERANCE: Record<DType, typeof STATS_TOL> = { f32: STATS_TOL, f64: STATS_TOL, bf16: STATS_TOL, f16: STATS_TOL };
const OUTPUT_SUBSETS: readonly (readonly ae.StatName[])[] = [
  ['entropy'],
  ['logprob', 'maxProb'],
  ['sumPiSquared', 'logsumexp'],
  ['maxProb', 'entropy', 'logprob'],
];
const BACKENDS: readonly BackendCase[] = backendCases();
const STATS = ae.STAT_NAMES;

function expectStats(got: ae.TokenStatsResult, ref: RefStats, names: readonly ae.StatName[], dtype: DType, label: string) {
  expect(Object.keys(got).sort()).toEqual([...names].sort());
  for (const name of names) {
    expect(got[name]).toMatchReference(ref[name] as Float64Array, TOLERANCE[dtype], `${label} ${name}`);
  }
}

// ---- parity on fresh random inputs ----

const PARITY_CASES = SHAPES.flatMap((shape) =>
  DTYPES.flatMap((dtype) => TEMPERATURES.map((temperature) => ({ shape, dtype, temperature }))),
);

describe.each(PARITY_CASES)('parity [$shape] $dtype τ=$temperature', ({ shape, dtype, temperature }) => {
  const label = `[${shape}] ${dtype} τ=${temperature}`;
  let logits: Tensor;
  let tokens: Int32Array;
  let ref: RefStats;
  beforeAll(() => {
    ({ logits, tokens } = makeLogits(rng(`parity ${label}`), shape, dtype));
    ref = refTokenStats(logits, { tokens, temperature });
  });

  test.each(BACKENDS)('$label: async and Sync match the reference', async (c) => {
    await withBackend(c, async () => {
      const opts = { tokens, temperature, backend: c.backend };
      const sync = ae.tokenStatsSync(logits, opts);
      expectStats(sync, ref, STATS, dtype, `${label} ${c.label} Sync`);
      const viaPromise = await ae.tokenStats(logits, opts);
      for (const name of STATS) expect(viaPromise[name]).toEqualBitwise(sync[name]!, `${c.label} async vs Sync ${name}`);
    });
  });
});

// ---- options: rowMask, outputs, out buffers, nonFinite ----

const OPTION_CASES = [
  { shape: [3, 7], dtype: 'f32' as DType },
  { shape: [41, 1271], dtype: 'bf16' as DType },
  { shape: [5, 2, 300], dtype: 'f16' as DType },
  { shape: [9, 4099], dtype: 'f64' as DType },
];

describe.each(OPTION_CASES)('options [$shape] $dtype', ({ shape, dtype }) => {
  const label = `[${shape}] ${dtype}`;

  test.each(BACKENDS)('$label: rowMask skips rows (0 output, tokens and values unchecked there)', async (c) => {
    const r = rng(`rowMask ${label} ${c.label}`);
    const { logits, tokens, rows, vocab } = makeLogits(r, shape, dtype);
    const temperature = r.pick(TEMPERATURES);
    const rowMask = randomMask(r, rows);
    rowMask[0] = 0;
    // Masked rows may hold anything: an out-of-range token, a NaN logit.
    tokens[0] = r.float() < 0.5 ? -1 : vocab;
    logits.data[0] = dtype === 'bf16' ? 0x7fc0 : dtype === 'f16' ? 0x7e00 : NaN; // a NaN in each encoding
    const ref = refTokenStats(logits, { tokens, temperature, rowMask });
    await withBackend(c, async () => {
      const got = await ae.tokenStats(logits, { tokens, temperature, rowMask, backend: c.backend });
      expectStats(got, ref, STATS, dtype, `${label} ${c.label} rowMask`);
      const nonZero = STATS.filter((name) => rowMask.some((m, i) => m === 0 && got[name]![i] !== 0));
      expect(nonZero).toEqual([]);
    });
  });

  test.each(BACKENDS)('$label: outputs subsets return exactly the names asked for', async (c) => {
    const r = rng(`outputs ${label} ${c.label}`);
    const { logits, tokens } = makeLogits(r, shape, dtype);
    const ref = refTokenStats(logits, { tokens, temperature: 0.7 });
    await withBackend(c, async () => {
      for (const outputs of OUTPUT_SUBSETS) {
        const got = ae.tokenStatsSync(logits, { tokens, outputs, temperature: 0.7, backend: c.backend });
        expectStats(got, ref, outputs, dtype, `${label} ${c.label} outputs=${outputs}`);
      }
      // Without tokens the default is every output but logprob.
      const noTokens = await ae.tokenStats(logits, { temperature: 0.7, backend: c.backend });
      expectStats(noTokens, ref, STATS.filter((n) => n !== 'logprob'), dtype, `${label} ${c.label} no tokens`);
    });
  });

  test.each(BACKENDS)('$label: out buffers are filled (masked rows zeroed) and returned', async (c) => {
    const r = rng(`out ${label} ${c.label}`);
    const { logits, tokens, rows } = makeLogits(r, shape, dtype);
    const rowMask = randomMask(r, rows, 0.6);
    const ref = refTokenStats(logits, { tokens, rowMask });
    await withBackend(c, async () => {
      for (const form of ['sync', 'async'] as const) {
        const out = { entropy: new Float32Array(rows).fill(12345), logprob: new Float32Array(rows).fill(NaN) };
        const opts = { tokens, rowMask, outputs: ['entropy', 'logprob'] as const, out, backend: c.backend };
        const got = form === 'sync' ? ae.tokenStatsSync(logits, opts) : await ae.tokenStats(logits, opts);
        expect(got.entropy).toBe(out.entropy);
        expect(got.logprob).toBe(out.logprob);
        expectStats(got, ref, ['entropy', 'logprob'], dtype, `${label} ${c.label} out ${form}`);
      }
    });
  });

  test.each(BACKENDS)("$label: nonFinite 'nan' gives NaN rows for NaN, +inf and all −inf, others exact", async (c) => {
    const r = rng(`nonFinite ${label} ${c.label}`);
    const vocab = shape[shape.length - 1];
    const rows = shape.reduce((a, b) => a * b, 1) / vocab;
    const values = new Float64Array(rows * vocab);
    const kinds = ['finite', 'nan', '+inf', 'all-inf'] as const;
    const rowKind = Array.from({ length: rows }, (_, i) => (i < kinds.length ? kinds[(i + 1) % kinds.length] : r.pick(kinds)));
    for (let i = 0; i < rows; i++) {
      const row = randomRow(r, vocab);
      if (rowKind[i] === 'nan') row[r.int(vocab)] = NaN;
      if (rowKind[i] === '+inf') row[r.int(vocab)] = Infinity;
      if (rowKind[i] === 'all-inf') row.fill(-Infinity);
      values.set(row, i * vocab);
    }
    const logits = fromNumbers(values, shape, dtype);
    const ref = refTokenStats(logits, { temperature: 1.3 });
    expect(ref.badRows).toEqual(rowKind.flatMap((k, i) => (k === 'finite' ? [] : [i])));
    await withBackend(c, async () => {
      const got = await ae.tokenStats(logits, { temperature: 1.3, nonFinite: 'nan', backend: c.backend });
      expectStats(got, ref, STATS.filter((n) => n !== 'logprob'), dtype, `${label} ${c.label} nonFinite`);
      expect(() => ae.tokenStatsSync(logits, { temperature: 1.3, backend: c.backend })).toThrow(
        expect.objectContaining({ code: 'ERR_AE_NON_FINITE', row: ref.badRows[0] }),
      );
    });
  });
});

// ---- hand-worked cases ----

/** A tensor whose every element is `value` (encoded once, then filled: fast for V = 152k). */
function filled(value: number, shape: readonly number[], dtype: DType): Tensor {
  const one = fromNumbers([value], [1], dtype).data;
  const data = new (one.constructor as new (n: number) => typeof one)(shape.reduce((a, b) => a * b, 1));
  return ae.tensor(data.fill(one[0]), shape, dtype);
}

describe.each(DTYPES)('hand-worked rows, %s', (dtype) => {
  test.each(BACKENDS)('$label: uniform rows give entropy log V, maxProb = Σp² = 1/V, logprob −log V', async (c) => {
    const r = rng(`uniform ${dtype} ${c.label}`);
    for (const vocab of [1, 7, 1000, 152064]) {
      const value = r.pick([-3.5, 0, 2.25, 40]); // exact in every dtype
      const temperature = r.pick(TEMPERATURES);
      const logits = filled(value, [2, vocab], dtype);
      const tokens = [r.int(vocab), r.int(vocab)];
      const logV = Math.log(vocab);
      const expected = {
        entropy: [logV, logV],
        logprob: [-logV, -logV],
        logsumexp: [value / temperature + logV, value / temperature + logV],
        sumPiSquared: [1 / vocab, 1 / vocab],
        maxProb: [1 / vocab, 1 / vocab],
      };
      await withBackend(c, async () => {
        const got = await ae.tokenStats(logits, { tokens, temperature, backend: c.backend });
        for (const name of STATS) expect(got[name]).toMatchReference(expected[name], STATS_TOL, `V=${vocab} ${name}`);
      });
    }
  });

  test.each(BACKENDS)('$label: one-hot-ish row [0, −inf, −inf] has entropy 0 and logprob 0', async (c) => {
    const logits = fromNumbers([0, -Infinity, -Infinity, 1, -Infinity, 2], [2, 3], dtype);
    await withBackend(c, async () => {
      const got = ae.tokenStatsSync(logits, { tokens: [0, 1], backend: c.backend });
      const lse1 = Math.log(Math.E + Math.E ** 2);
      expect(got.entropy).toMatchReference(
        [0, -(Math.exp(1 - lse1) * (1 - lse1) + Math.exp(2 - lse1) * (2 - lse1))], STATS_TOL, 'entropy');
      // A token at a −inf entry has probability 0: logprob −inf.
      expect(got.logprob).toMatchReference([0, -Infinity], STATS_TOL, 'logprob');
      expect(got.maxProb).toMatchReference([1, Math.exp(2 - lse1)], STATS_TOL, 'maxProb');
      expect(got.sumPiSquared).toMatchReference([1, Math.exp(2 * (1 - lse1)) + Math.exp(2 * (2 - lse1))], STATS_TOL, 'Σp²');
      expect(got.logsumexp).toMatchReference([0, lse1], STATS_TOL, 'logsumexp');
    });
  });
});

// ---- where the row maximum lies ----

// The native kernels cut a row into blocks of 256 vectors (4096 entries with AVX-512, 2048 with AVX2, 256 scalar)
// and take each block's maximum during the previous block's pass (16-bit dtypes: by integer order of the bit
// patterns). Rows here put their maximum in the first, middle, or short last 4096-entry stretch, some with −inf
// entries in one stretch, with values all negative,
// around zero, or all positive, and ties of ±0 at the maximum.
describe('the row maximum in any block', () => {
  // The second vocabulary ends in a stretch of 5 entries: shorter than two vectors at every SIMD width.
  test.each(BACKENDS.flatMap((c) => DTYPES.flatMap((dtype) => [3 * 4096 + 517, 2 * 4096 + 5].map((VOCAB) => ({ ...c, dtype, VOCAB })))))(
    '$label $dtype V=$VOCAB', async (c) => {
    const VOCAB = c.VOCAB;
    const BLOCK_STARTS = Array.from({ length: Math.ceil(VOCAB / 4096) }, (_, k) => k * 4096);
    const r = rng(`max placement ${c.dtype} ${c.label} ${VOCAB}`);
    const rows: Float64Array[] = [];
    for (const start of BLOCK_STARTS) {
      for (const level of [-30, -0.5, 0, 12]) {
        const row = new Float64Array(VOCAB);
        const zeroTop = level === 0;
        for (let j = 0; j < VOCAB; j++) row[j] = zeroTop ? -r.uniform(0.01, 6) : level - r.uniform(0.5, 8);
        const at = start + r.int(Math.min(4096, VOCAB - start));
        row[at] = zeroTop ? -0 : level; // rows at level 0 peak at −0 and +0 in two blocks
        if (zeroTop) row[(at + 4096) % VOCAB] = 0;
        // Half the rows mask entries to −inf in one stretch (before, at or after the maximum's block).
        if (r.int(2) === 1) {
          const from = r.pick(BLOCK_STARTS);
          for (let k = 0; k < 64; k++) {
            const j = from + r.int(Math.min(4096, VOCAB - from));
            if (j !== at) row[j] = -Infinity;
          }
        }
        rows.push(row);
      }
    }
    const values = new Float64Array(rows.length * VOCAB);
    rows.forEach((row, i) => values.set(row, i * VOCAB));
    const logits = fromNumbers(values, [rows.length, VOCAB], c.dtype);
    const tokens = Array.from({ length: rows.length }, () => r.int(VOCAB));
    const temperature = r.pick(TEMPERATURES);
    await withBackend(c, async () => {
      const got = ae.tokenStatsSync(logits, { tokens, temperature, backend: c.backend });
      expectStats(got, refTokenStats(logits, { tokens, temperature }), STATS, c.dtype, `${c.label} ${c.dtype}`);
    });
  });
});

// ---- properties ----

describe('properties', () => {
  test.each(BACKENDS)('$label: adding a constant to a row leaves entropy, logprob, Σp², maxProb unchanged', async (c) => {
    const r = rng(`shift ${c.label}`);
    for (const dtype of ['f32', 'f64'] as const) {
      const rows = 6;
      const vocab = 1 + r.int(3000);
      const temperature = r.pick(TEMPERATURES);
      // Values on a 2^-10 grid below 2^10 plus integer shifts below 2^10 are exact in f32: the shifted
      // tensor is exactly z + c, so any difference is the engine's.
      const base = new Float64Array(rows * vocab);
      const shifted = new Float64Array(rows * vocab);
      const shifts = Array.from({ length: rows }, () => r.int(2001) - 1000);
      for (let i = 0; i < rows; i++) {
        const row = randomRow(r, vocab, { limit: 1000, extremes: false });
        for (let j = 0; j < vocab; j++) {
          const z = Math.round(row[j] * 1024) / 1024;
          base[i * vocab + j] = z;
          shifted[i * vocab + j] = z + shifts[i];
        }
      }
      const a = fromNumbers(base, [rows, vocab], dtype);
      const b = fromNumbers(shifted, [rows, vocab], dtype);
      const tokens = Array.from({ length: rows }, (_, i) => {
        let j = r.int(vocab);
        while (base[i * vocab + j] === -Infinity) j = (j + 1) % vocab;
        return j;
      });
      await withBackend(c, async () => {
        const ga = await ae.tokenStats(a, { tokens, temperature, backend: c.backend });
        const gb = await ae.tokenStats(b, { tokens, temperature, backend: c.backend });
        // Both sides carry the SPEC §1.1 error, so they may differ by twice the bound.
        const twice = { rtol: 2e-5, atol: 2e-6 };
        for (const name of ['entropy', 'logprob', 'sumPiSquared', 'maxProb'] as const) {
          expect(gb[name]).toMatchReference(ga[name]!, twice, `${dtype} shifted ${name}`);
        }
        const lseShifted = ga.logsumexp!.map((x, i) => x + shifts[i] / temperature);
        expect(gb.logsumexp).toMatchReference(lseShifted, twice, `${dtype} shifted logsumexp`);
      });
    }
  });

  test("the default backend ('auto') matches the reference below and above smallInputThreshold", async () => {
    const r = rng('auto');
    const threshold = ae.backendInfo().smallInputThreshold.async;
    for (const shape of [[2, 9], [4, Math.ceil((2 * threshold) / 4)]]) {
      const { logits, tokens } = makeLogits(r, shape, 'bf16');
      const got = await ae.tokenStats(logits, { tokens });
      expectStats(got, refTokenStats(logits, { tokens }), STATS, 'bf16', `auto [${shape}]`);
    }
  });

  const cpuCases = BACKENDS.filter((c) => c.backend === 'cpu');
  if (cpuCases.length === 0) console.log('thread-count test not run: the native backend is not loaded');
  else describe('cpu thread count', () => {
    test.each(cpuCases)('$label: results are bitwise identical at 1 and 2 threads', async (c) => {
      const r = rng(`threads ${c.label}`);
      const previous = ae.backendInfo().threads;
      for (const dtype of ['f32', 'bf16'] as const) {
        const { logits, tokens } = makeLogits(r, [37, 4099], dtype);
        const results: ae.TokenStatsResult[] = [];
        await withBackend(c, async () => {
          try {
            for (const threads of [1, 2]) {
              ae.setThreads(threads);
              expect(ae.backendInfo().threads).toBe(threads);
              results.push(await ae.tokenStats(logits, { tokens, temperature: 0.7, backend: 'cpu' }));
            }
          } finally {
            ae.setThreads(previous);
          }
        });
        for (const name of STATS) expect(results[1][name]).toEqualBitwise(results[0][name]!, `${dtype} ${name}`);
      }
      expect(ae.backendInfo().threads).toBe(previous);
    });
  });
});
