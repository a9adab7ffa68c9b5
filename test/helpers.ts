/**
 * Test helpers: seeded PRNGs (lib/prng.ts sfc32; seed from AE_TEST_SEED, else fresh each run, printed once per test file),
 * generators of heavy-tailed logits, the list of backends to run, and the `toMatchReference` /
 * `toEqualBitwise` matchers whose failure reports give the mismatch count, the first 5 indices with both
 * values, and the seed to replay.
 */
import * as ae from '../lib';
import {
  bf16ToNumber, DType, elementAt, f16ToNumber, fromNumbers, numberToBf16, numberToF16, Tensor, TensorData,
} from '../lib/tensor';
import { Sfc32 } from '../lib/prng';

// Globals used in per-element loops are bound once: in jest's vm context a global lookup costs ~0.3 µs.
const { log2, exp, floor, max, min, abs } = Math;
const { isFinite, isNaN } = Number;

// ---- seed and PRNG ----

function parseSeed(text: string | undefined): number {
  if (text === undefined || text === '') return (Math.random() * 2 ** 32) >>> 0;
  const seed = Number(text);
  if (!Number.isInteger(seed) || seed < 0 || seed >= 2 ** 32) throw new Error(`AE_TEST_SEED must be a uint32, got ${text}`);
  return seed;
}

export const SEED = parseSeed(process.env.AE_TEST_SEED);
console.log(`advantage-engine tests: seed ${SEED} (replay with AE_TEST_SEED=${SEED})`);

function hash32(seed: number, label: string): number {
  let h = (seed ^ 0x9e3779b9) >>> 0;
  for (let i = 0; i < label.length; i++) h = Math.imul(h ^ label.charCodeAt(i), 0x01000193) >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b) >>> 0;
  h ^= h >>> 13;
  return h >>> 0;
}

/** A PRNG for one test, derived from the run seed and a label: replaying one test replays its inputs. */
export function rng(label: string): Sfc32 {
  return new Sfc32(hash32(SEED, label));
}

// ---- logits ----

export interface LogitOptions {
  /** Put −∞ (masked vocabulary) entries in about half the rows (default true). */
  negInf?: boolean;
  /** Allow rows with a few ±1e4 entries and Cauchy tails (default true). */
  extremes?: boolean;
  /** Bound on |z| for finite entries (default 3e4: inside the f16 range). */
  limit?: number;
}

/** One row of heavy-tailed logits in float64 (before encoding to a dtype). */
export function randomRow(r: Sfc32, vocab: number, opts: LogitOptions = {}): Float64Array {
  const limit = opts.limit ?? 3e4;
  const extremes = opts.extremes ?? true;
  const kind = r.int(extremes ? 4 : 2);
  const row = new Float64Array(vocab);
  const offset = r.uniform(-20, 20);
  const sigma = r.pick([0.3, 1, 3, 8]);
  for (let j = 0; j < vocab; j++) {
    if (kind === 0) row[j] = offset + sigma * r.normal(); // normal
    else if (kind === 1) row[j] = offset + exp(1.5 * r.normal()); // lognormal: long right tail
    else if (kind === 2) row[j] = offset + r.uniform(0.2, 3) * r.cauchy(); // Cauchy-like
    else row[j] = offset + r.normal(); // normal plus a few ±1e4 below
    row[j] = max(-limit, min(limit, row[j]));
  }
  if (kind === 3) {
    const count = 1 + r.int(3);
    for (let k = 0; k < count; k++) row[r.int(vocab)] = min(limit, 1e4) * (r.float() < 0.6 ? 1 : -1);
  }
  if ((opts.negInf ?? true) && vocab > 1 && r.float() < 0.5) {
    const fraction = r.uniform(0.05, 0.9);
    const negInf = -Infinity;
    for (let j = 0; j < vocab; j++) if (r.float() < fraction) row[j] = negInf;
    if (row.every((v) => v === -Infinity)) row[r.int(vocab)] = offset; // keep the row finite
  }
  return row;
}

export interface Logits {
  logits: Tensor;
  /** One token per row, at a finite entry; about a third of them at the row's argmax (logprob near 0). */
  tokens: Int32Array;
  rows: number;
  vocab: number;
}

export function makeLogits(r: Sfc32, shape: readonly number[], dtype: DType, opts: LogitOptions = {}): Logits {
  const vocab = shape[shape.length - 1];
  const rows = shape.reduce((a, b) => a * b, 1) / vocab;
  const values = new Float64Array(rows * vocab);
  for (let i = 0; i < rows; i++) values.set(randomRow(r, vocab, opts), i * vocab);
  const logits = fromNumbers(values, shape, dtype);
  return { logits, tokens: pickTokens(r, logits), rows, vocab };
}

/** A token per row at a finite entry of the encoded tensor (the argmax a third of the time). */
export function pickTokens(r: Sfc32, logits: Tensor): Int32Array {
  const vocab = logits.shape[logits.shape.length - 1];
  const rows = logits.data.length / vocab;
  const tokens = new Int32Array(rows);
  for (let i = 0; i < rows; i++) {
    let best = 0;
    const finite: number[] = [];
    for (let j = 0; j < vocab; j++) {
      const z = elementAt(logits, i * vocab + j);
      if (isFinite(z)) finite.push(j);
      if (z > elementAt(logits, i * vocab + best)) best = j;
    }
    tokens[i] = r.float() < 1 / 3 || finite.length === 0 ? best : r.pick(finite);
  }
  return tokens;
}

/** Logits cut along the vocabulary into tensor-parallel shards (SPEC §1.3), with the whole and the target tokens. */
export interface Sharded {
  full: Tensor;
  shards: { tensor: Tensor; offset: number }[];
  tokens: Int32Array;
  rows: number;
}

/** Random cut points 0 < c_1 < … < c_{k−1} < V: shards of uneven widths, at least 1 column each. */
function cuts(r: Sfc32, vocab: number, k: number): number[] {
  const points = new Set<number>();
  while (points.size < k - 1) points.add(1 + r.int(vocab - 1));
  return [0, ...[...points].sort((a, b) => a - b), vocab];
}

/** Logits cut into k shards along V; one shard is entirely −inf in about half of the rows (the rows stay finite). */
export function makeSharded(r: Sfc32, shape: readonly number[], dtype: DType, k: number): Sharded {
  const vocab = shape[shape.length - 1];
  const rows = shape.reduce((a, b) => a * b, 1) / vocab;
  const bounds = cuts(r, vocab, k);
  const blank = r.int(k);
  const values = new Float64Array(rows * vocab);
  for (let i = 0; i < rows; i++) {
    const row = randomRow(r, vocab);
    if (r.float() < 0.5) row.fill(-Infinity, bounds[blank], bounds[blank + 1]);
    if (row.every((v) => v === -Infinity)) row[blank === 0 ? vocab - 1 : 0] = r.normal();
    values.set(row, i * vocab);
  }
  const full = fromNumbers(values, shape, dtype);
  const shards = [];
  for (let s = 0; s < k; s++) {
    const width = bounds[s + 1] - bounds[s];
    const data = new (full.data.constructor as new (n: number) => TensorData)(rows * width);
    for (let i = 0; i < rows; i++) data.set(full.data.subarray(i * vocab + bounds[s], i * vocab + bounds[s + 1]), i * width);
    shards.push({ tensor: ae.tensor(data, [...shape.slice(0, -1), width], dtype), offset: bounds[s] });
  }
  return { full, shards, tokens: pickTokens(r, full), rows };
}

export function randomMask(r: Sfc32, n: number, pOne = 0.7): Uint8Array {
  const m = new Uint8Array(n);
  for (let i = 0; i < n; i++) m[i] = r.float() < pOne ? 1 : 0;
  return m;
}

export function randomFloat32(r: Sfc32, n: number, scale = 1): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = scale * r.normal();
  return a;
}

// ---- backends ----

export type BackendName = 'js' | 'cpu';

export interface BackendCase {
  label: string;
  backend: BackendName;
  /** Forced native SIMD level, restored afterwards. */
  simd?: string;
}

export function nativeLoaded(): boolean {
  return ae.backendInfo().native.loaded;
}

/** js always; cpu at its default level and at every level in isaAvailable, when the addon is loaded. */
export function backendCases(): BackendCase[] {
  const cases: BackendCase[] = [{ label: 'js', backend: 'js' }];
  const info = ae.backendInfo();
  if (!info.native.loaded) {
    console.log(`native backend not loaded, testing js only: ${JSON.stringify(info.native.attempts)}`);
    return cases;
  }
  cases.push({ label: 'cpu', backend: 'cpu' });
  for (const level of info.isaAvailable) cases.push({ label: `cpu/${level}`, backend: 'cpu', simd: level });
  return cases;
}

/** Runs `fn` with the native SIMD level forced (when the case names one), restoring the previous level. */
export async function withBackend<T>(c: BackendCase, fn: () => T | Promise<T>): Promise<T> {
  if (!c.simd) return fn();
  const previous = ae.backendInfo().isa;
  ae.setSimd(c.simd);
  expect(ae.backendInfo().isa).toBe(c.simd);
  try {
    return await fn();
  } finally {
    if (previous !== null) ae.setSimd(previous);
  }
}

// ---- comparison ----

/** `atol` and `rtol`: allowed |got − ref| ≤ max(rtol·|ref|, atol); or a function giving the bound per index. */
export type Tolerance = { rtol: number; atol: number } | ((ref: number, index: number) => number);

/** SPEC §1.1: every token statistic within 1e-5 relative or 1e-6 absolute of the float64 reference. */
export const STATS_TOL: Tolerance = { rtol: 1e-5, atol: 1e-6 };

function bound(tol: Tolerance, ref: number, index: number): number {
  return typeof tol === 'function' ? tol(ref, index) : max(tol.rtol * abs(ref), tol.atol);
}

function close(got: number, ref: number, allowed: number): boolean {
  if (isNaN(ref) || isNaN(got)) return isNaN(ref) && isNaN(got);
  if (!isFinite(ref) || !isFinite(got)) return got === ref;
  return abs(got - ref) <= allowed;
}

export interface MismatchReport {
  count: number;
  message: string;
}

export function compare(got: ArrayLike<number>, ref: ArrayLike<number>, tol: Tolerance, label = ''): MismatchReport {
  if (got.length !== ref.length) {
    return { count: max(got.length, ref.length), message: `${label}: length ${got.length}, reference ${ref.length} (seed ${SEED})` };
  }
  let count = 0;
  const first: string[] = [];
  for (let i = 0; i < ref.length; i++) {
    const allowed = bound(tol, ref[i], i);
    if (close(got[i], ref[i], allowed)) continue;
    count++;
    if (first.length < 5) first.push(`  [${i}] got ${got[i]}, reference ${ref[i]} (|diff| ${abs(got[i] - ref[i])}, allowed ${allowed})`);
  }
  const message = `${label}: ${count} of ${ref.length} outside tolerance (seed ${SEED}, replay with AE_TEST_SEED=${SEED})\n${first.join('\n')}`;
  return { count, message };
}

declare global {
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace jest {
    interface Matchers<R> {
      toMatchReference(ref: ArrayLike<number>, tol: Tolerance, label?: string): R;
      toEqualBitwise(expected: ArrayLike<number>, label?: string): R;
    }
  }
}

expect.extend({
  toMatchReference(got: ArrayLike<number>, ref: ArrayLike<number>, tol: Tolerance, label = 'values') {
    if (got === undefined || got === null || typeof got.length !== 'number') {
      return { pass: false, message: () => `${label}: expected an array, received ${String(got)} (seed ${SEED})` };
    }
    const report = compare(got, ref, tol, label);
    return { pass: report.count === 0, message: () => report.message };
  },
  toEqualBitwise(got: ArrayLike<number>, expected: ArrayLike<number>, label = 'values') {
    // Widen both to f64 (exact) and compare bit patterns: NaN payloads and −0 count as differences.
    const a = new BigUint64Array(Float64Array.from(got).buffer);
    const b = new BigUint64Array(Float64Array.from(expected).buffer);
    let count = 0;
    const first: string[] = [];
    const n = max(got.length, expected.length);
    for (let i = 0; i < n; i++) {
      if (i < a.length && i < b.length && a[i] === b[i]) continue;
      count++;
      if (first.length < 5) first.push(`  [${i}] ${got[i]} vs ${expected[i]}`);
    }
    return {
      pass: count === 0,
      message: () => `${label}: ${count} of ${n} differ bitwise (seed ${SEED})\n${first.join('\n')}`,
    };
  },
});

/** Rounds to the nearest bf16 value (as a number). */
export function roundBf16(x: number): number {
  return bf16ToNumber(numberToBf16(x));
}

/** Rounds to the nearest f16 value (as a number). */
export function roundF16(x: number): number {
  return f16ToNumber(numberToF16(x));
}

/** The spacing of representable values of a 16-bit dtype at |x| (subnormal spacing near 0). */
export function ulp16(x: number, dtype: 'bf16' | 'f16'): number {
  const mantissaBits = dtype === 'bf16' ? 7 : 10;
  const minExponent = dtype === 'bf16' ? -126 : -14;
  const a = abs(x);
  const exponent = a === 0 ? minExponent : max(minExponent, floor(log2(a)));
  return 2 ** (exponent - mantissaBits);
}

/** Every element of a tensor's data as numbers (exact widening), e.g. to compare a bf16 gradient. */
export function widened(data: Float32Array | Float64Array | Uint16Array, dtype: DType): Float64Array {
  const t = { data, shape: [data.length], dtype } as Tensor;
  const out = new Float64Array(data.length);
  for (let i = 0; i < data.length; i++) out[i] = elementAt(t, i);
  return out;
}
