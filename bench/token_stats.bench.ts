/**
 * Benchmark suite of the token-statistics family (SPEC §1): tokenStats (forward), tokenStatsBackward,
 * fullKl, and the fixed per-call cost of tokenStats on tiny inputs (call-overhead, which sets
 * SMALL_INPUT_ELEMENTS in lib/backend.ts). Run it with `advantage-engine bench --op …` (lib/cli.ts), which
 * times these functions with benchmark.js and reports them against the measured read bandwidth
 * (bench/report.ts).
 *
 * Inputs are LM-like logits, made once per configuration outside the timed function: a Zipf prior over the
 * vocabulary (logit bias −s·ln(rank), ranks a seeded permutation), per-row Gaussian noise of a per-row
 * scale, and a few context tokens per row raised well above the rest — peaked rows and flat rows, no −inf.
 */
import {
  tensor,
  tokenStats,
  tokenStatsSync,
  tokenStatsBackwardSync,
  fullKlSync,
  DTYPE_BYTES,
  type DType,
  type Tensor,
} from '../lib';
import { Sfc32 } from '../lib/prng';
import type { Backend, Case, OpDefinition, Prepared } from './ops';

export const DTYPES: readonly DType[] = ['f32', 'bf16', 'f16', 'f64'];

// ---- data ----

/** Parameters of the synthetic logits (also printed by `bench --help`). */
export const LOGITS_MODEL = {
  /** Zipf exponent of the vocabulary prior: bias = −s·ln(rank + 1). */
  zipfExponent: 1.1,
  /** Per-row noise scale, uniform in this range. */
  noiseScale: [1.0, 2.5] as const,
  /** Context tokens per row (chosen among the 4096 most frequent), raised by a per-row boost. */
  contextTokens: 4,
  boost: [4, 16] as const,
  /** full-kl: the reference logits are the policy logits plus Gaussian noise of this scale. */
  refNoise: 0.3,
};

const NORMALS_BITS = 16;
let normals: Float32Array | undefined;
/** 2^16 standard normals: the bulk noise is drawn from this table, two indices per PRNG output. */
function normalTable(): Float32Array {
  if (!normals) {
    const rng = new Sfc32(0x5eed);
    normals = new Float32Array(1 << NORMALS_BITS);
    for (let i = 0; i < normals.length; i++) normals[i] = rng.normal();
  }
  return normals;
}

/** The Zipf prior over a vocabulary: bias[j] = −s·ln(rank_j + 1), ranks a seeded permutation. */
function zipfBias(vocab: number, rng: Sfc32): { bias: Float32Array; byRank: Int32Array } {
  const byRank = new Int32Array(vocab);
  for (let j = 0; j < vocab; j++) byRank[j] = j;
  for (let j = vocab - 1; j > 0; j--) {
    const k = rng.uint32() % (j + 1);
    const t = byRank[j];
    byRank[j] = byRank[k];
    byRank[k] = t;
  }
  const bias = new Float32Array(vocab);
  for (let r = 0; r < vocab; r++) bias[byRank[r]] = -LOGITS_MODEL.zipfExponent * Math.log(r + 1);
  return { bias, byRank };
}

/** f32 bits → bf16 bits, round to nearest even (finite inputs). */
function bf16Bits(bits: number): number {
  return ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
}

/** f32 bits → f16 bits, round to nearest even, with subnormals, overflow to ±inf and NaN. */
export function f16Bits(bits: number): number {
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff;
  const mant = bits & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 112; // f16 biased exponent
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    const shift = 14 - e; // ≥ 14
    if (shift > 24) return sign;
    const m = mant | 0x800000;
    let q = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && q & 1)) q++;
    return sign | q;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && h & 1)) h++;
  return sign | h;
}

function storage(dtype: DType, length: number): Float32Array | Float64Array | Uint16Array {
  return dtype === 'f32' ? new Float32Array(length) : dtype === 'f64' ? new Float64Array(length) : new Uint16Array(length);
}

function store(row: Float32Array, rowBits: Uint32Array, dst: Float32Array | Float64Array | Uint16Array, dtype: DType, offset: number): void {
  const n = row.length;
  if (dtype === 'f32' || dtype === 'f64') {
    (dst as Float32Array | Float64Array).set(row, offset);
  } else if (dtype === 'bf16') {
    for (let j = 0; j < n; j++) dst[offset + j] = bf16Bits(rowBits[j]);
  } else {
    for (let j = 0; j < n; j++) dst[offset + j] = f16Bits(rowBits[j]);
  }
}

export interface BenchData {
  logits: Tensor;
  /** Only with `{ref: true}`: the reference policy's logits, close to `logits`. */
  ref?: Tensor;
  /** Per row: the row's argmax (greedy), or for a quarter of the rows a uniform random column. */
  tokens: Int32Array;
}

/**
 * Deterministic LM-like logits [rows, vocab] in `dtype` (values are generated in f32 and rounded to
 * nearest even). The tokens are not drawn from the softmax (which would cost a pass of exp in JS per
 * element); kernel time does not depend on which column is the target.
 */
export function makeLogits(rows: number, vocab: number, dtype: DType, options: { seed?: number; ref?: boolean } = {}): BenchData {
  const rng = new Sfc32(options.seed ?? 1);
  const table = normalTable();
  const { bias, byRank } = zipfBias(vocab, rng);
  const data = storage(dtype, rows * vocab);
  const refData = options.ref ? storage(dtype, rows * vocab) : undefined;
  const tokens = new Int32Array(rows);
  const row = new Float32Array(vocab);
  const rowBits = new Uint32Array(row.buffer);
  const refRow = new Float32Array(vocab);
  const refBits = new Uint32Array(refRow.buffer);
  const [s0, s1] = LOGITS_MODEL.noiseScale;
  const [b0, b1] = LOGITS_MODEL.boost;
  const mask = (1 << NORMALS_BITS) - 1;
  for (let i = 0; i < rows; i++) {
    const sigma = rng.uniform(s0, s1);
    for (let j = 0; j + 1 < vocab; j += 2) {
      const r = rng.uint32();
      row[j] = bias[j] + sigma * table[r & mask];
      row[j + 1] = bias[j + 1] + sigma * table[r >>> NORMALS_BITS];
    }
    if (vocab & 1) row[vocab - 1] = bias[vocab - 1] + sigma * table[rng.uint32() & mask];
    const boost = rng.uniform(b0, b1);
    for (let k = 0; k < LOGITS_MODEL.contextTokens; k++) {
      row[byRank[rng.uint32() % Math.min(vocab, 4096)]] += boost * (1 - 0.25 * k);
    }
    let argmax = 0;
    for (let j = 1; j < vocab; j++) if (row[j] > row[argmax]) argmax = j;
    tokens[i] = rng.uint32() % 4 === 0 ? rng.uint32() % vocab : argmax;
    store(row, rowBits, data, dtype, i * vocab);
    if (refData) {
      for (let j = 0; j + 1 < vocab; j += 2) {
        const r = rng.uint32();
        refRow[j] = row[j] + LOGITS_MODEL.refNoise * table[r & mask];
        refRow[j + 1] = row[j + 1] + LOGITS_MODEL.refNoise * table[r >>> NORMALS_BITS];
      }
      if (vocab & 1) refRow[vocab - 1] = row[vocab - 1];
      store(refRow, refBits, refData, dtype, i * vocab);
    }
  }
  return {
    logits: tensor(data, [rows, vocab], dtype),
    ...(refData ? { ref: tensor(refData, [rows, vocab], dtype) } : {}),
    tokens,
  };
}

// ---- throughput ops ----

const logitBytes = (c: Case) => c.rows * c.cols * DTYPE_BYTES[c.dtype];

/** The Prepared of one configuration: the timed call and its sizes. */
function prepared(c: Case, fn: () => void, bytesMoved: number, inputBytes: number): Prepared {
  return { fn, elements: c.rows * c.cols, bytesMoved, inputBytes };
}

const LOGITS_OP = { dtypes: DTYPES, defaultRows: { cpu: 1024, js: 64 }, defaultCols: 151936, colsAreVocab: true } as const;

export const TOKEN_STATS_OPS: Readonly<Record<string, OpDefinition>> = {
  'token-stats': {
    ...LOGITS_OP,
    description: 'tokenStatsSync with tokens: entropy, logprob, logsumexp, sumPiSquared, maxProb in one pass (bytes: logits read)',
    inputBytes: logitBytes,
    allocatedBytes: logitBytes,
    prepare(c, seed) {
      const { logits, tokens } = makeLogits(c.rows, c.cols, c.dtype, { seed });
      const out = { entropy: new Float32Array(c.rows), logprob: new Float32Array(c.rows), logsumexp: new Float32Array(c.rows),
        sumPiSquared: new Float32Array(c.rows), maxProb: new Float32Array(c.rows) };
      const options = { tokens, out, backend: c.backend };
      return prepared(c, () => void tokenStatsSync(logits, options), logitBytes(c), logitBytes(c));
    },
  },
  'token-stats-backward': {
    ...LOGITS_OP,
    description: 'tokenStatsBackwardSync (gradLogprob and gradEntropy, forward logsumexp/entropy reused) into an f32 buffer ' +
      '(bytes: logits read + f32 gradient written)',
    inputBytes: logitBytes,
    allocatedBytes: (c) => logitBytes(c) + c.rows * c.cols * 4,
    prepare(c, seed) {
      const { logits, tokens } = makeLogits(c.rows, c.cols, c.dtype, { seed });
      const forward = tokenStatsSync(logits, { tokens, outputs: ['logsumexp', 'entropy'], backend: c.backend });
      const gradLogprob = new Float32Array(c.rows).fill(-1 / c.rows);
      const gradEntropy = new Float32Array(c.rows).fill(-0.01 / c.rows);
      const out = new Float32Array(c.rows * c.cols);
      const options = {
        tokens, gradLogprob, gradEntropy, logsumexp: forward.logsumexp, entropy: forward.entropy, out, backend: c.backend,
      };
      return prepared(c, () => void tokenStatsBackwardSync(logits, options), logitBytes(c) + c.rows * c.cols * 4, logitBytes(c));
    },
  },
  'full-kl': {
    ...LOGITS_OP,
    description: 'fullKlSync(logits, refLogits): KL(p‖q) per row over the full vocabulary, one pass over both inputs (bytes: both read)',
    inputBytes: (c) => 2 * logitBytes(c),
    allocatedBytes: (c) => 2 * logitBytes(c),
    prepare(c, seed) {
      const { logits, ref } = makeLogits(c.rows, c.cols, c.dtype, { seed, ref: true });
      const options = { backend: c.backend };
      return prepared(c, () => void fullKlSync(logits, ref!, options), 2 * logitBytes(c), 2 * logitBytes(c));
    },
  },
};

// ---- call overhead ----

/** Vocabulary sizes of the call-overhead sweep (rows = 1): elements = vocab. */
export const CALL_OVERHEAD_VOCABS: readonly number[] = [16, 64, 256, 1024, 4096, 16384];

export type CallMode = 'sync' | 'async';

/** The per-call cases at one size: tokenStatsSync / tokenStats with backend cpu and js, all outputs. */
export interface CallCase {
  backend: Backend;
  mode: CallMode;
  /** sync: the call; async: a call returning the Promise to wait for. */
  sync?: () => void;
  async?: () => Promise<unknown>;
}

export function callOverheadCases(dtype: DType, vocab: number, backends: readonly Backend[], seed?: number): CallCase[] {
  const { logits, tokens } = makeLogits(1, vocab, dtype, { seed });
  const cases: CallCase[] = [];
  for (const mode of ['sync', 'async'] as const) {
    for (const backend of backends) {
      const options = { tokens, backend };
      cases.push(
        mode === 'sync'
          ? { backend, mode, sync: () => void tokenStatsSync(logits, options) }
          : { backend, mode, async: () => tokenStats(logits, options) },
      );
    }
  }
  return cases;
}

/**
 * The element count at which `fast` (cpu) becomes faster than `slow` (js), interpolated on log(elements)
 * between the two sizes that bracket the last crossing; '<min' / '>max' when it does not cross in range.
 */
export function breakEven(elements: readonly number[], cpuSeconds: readonly number[], jsSeconds: readonly number[]): number | string {
  const n = elements.length;
  let k = n; // first index from which cpu stays faster
  while (k > 0 && cpuSeconds[k - 1] < jsSeconds[k - 1]) k--;
  if (k === 0) return `<${elements[0]}`;
  if (k === n) return `>${elements[n - 1]}`;
  const d0 = jsSeconds[k - 1] - cpuSeconds[k - 1]; // ≤ 0
  const d1 = jsSeconds[k] - cpuSeconds[k]; // > 0
  const x0 = Math.log(elements[k - 1]);
  const x1 = Math.log(elements[k]);
  return Math.round(Math.exp(x0 + ((0 - d0) / (d1 - d0)) * (x1 - x0)));
}
