/**
 * Token statistics in plain JavaScript (SPEC §1): the same functions as native/token_stats.{h,cc}, for
 * machines where the addon cannot load and for inputs too small to be worth a native call.
 *
 * Per row: max z, then one pass accumulating in f64 the SoftmaxState of cuda/math/token_stats_math.h
 *   s = Σ exp(t), t = Σ exp(t)·t, q = Σ exp(2t),   t_j = (z_j − max z)/τ ≤ 0.
 * exp(t) for t ≤ 0 uses a 64-entries-per-octave table times a quadratic (relative error < 7e-9, next to
 * the native f32 kernels' 2e-7), about twice as fast as Math.exp in V8; terms below exp(−87) count as 0 (the
 * native kernels' floor is the same).
 * bf16 / f16 rows are widened through a 65536-entry table into a reusable row buffer.
 */
import type { Tensor } from '../tensor';
import { wideningTable } from '../tensor';

type Row = Float32Array | Float64Array;

const EXP_FLOOR = -87; // exp(−87) ≈ 1.6e-38: below it a term cannot move a row sum containing exp(0) = 1
const STEPS = 64;
const SCALE = -STEPS * Math.LOG2E;
const LN2_STEP = -Math.LN2 / STEPS;
/** The table index bound: y = −d·64·log2(e) below it means d > EXP_FLOOR. */
const Y_MAX = -EXP_FLOOR * STEPS * Math.LOG2E;
/** 2^(−i/64) for i < ⌈Y_MAX⌉, then zeros: y clamped to Y_ZERO lands on a zero, so the forward loop needs no branch. */
const TABLE_ZERO = Math.ceil(Y_MAX);
const Y_ZERO = TABLE_ZERO + 0.5;
const EXP2_NEG_TABLE = new Float64Array(TABLE_ZERO + 2);
let tableReady = false;

function ensureTable(): void {
  if (tableReady) return;
  for (let i = 0; i < TABLE_ZERO; i++) EXP2_NEG_TABLE[i] = Math.pow(2, -i / STEPS);
  tableReady = true;
}

/**
 * exp(d) for d = y·LN2_STEP, 0 ≤ y ≤ Y_ZERO: 2^(−k/64) from the table times e^f, f = (y − k)·LN2_STEP ∈
 * (−ln2/64, 0], by the quadratic of least maximum relative error on that interval (6.6e-9).
 */
function expFromSteps(y: number): number {
  const k = y | 0;
  const f = (y - k) * LN2_STEP;
  return EXP2_NEG_TABLE[k] * (0.9999999933814144 + f * (0.9999890260831905 + f * 0.49729879978883507));
}

/** exp(d) for any d ≤ 0 (0 below EXP_FLOOR, NaN for NaN). */
function expNonPositive(d: number): number {
  const y = d * SCALE;
  return y < Y_MAX ? expFromSteps(y) : d !== d ? NaN : 0;
}

/** A row's values as numbers: f32 / f64 rows are read in place, 16-bit rows widened into `scratch`. */
export class RowReader {
  private scratch: Float32Array;
  private readonly table?: Float32Array;
  constructor(private readonly t: Tensor, private readonly vocab: number) {
    this.scratch = new Float32Array(t.dtype === 'bf16' || t.dtype === 'f16' ? vocab : 0);
    if (t.dtype === 'bf16' || t.dtype === 'f16') this.table = wideningTable(t.dtype);
  }
  /** Returns [array, offset] of row i. */
  row(i: number): [Row, number] {
    const offset = i * this.vocab;
    if (!this.table) return [this.t.data as Row, offset];
    const src = this.t.data as Uint16Array;
    const dst = this.scratch;
    const table = this.table;
    for (let j = 0; j < this.vocab; j++) dst[j] = table[src[offset + j]];
    return [dst, 0];
  }
}

function rowMax(x: Row, o: number, n: number): number {
  let m0 = -Infinity, m1 = -Infinity;
  let j = o;
  const end = o + n;
  for (; j + 1 < end; j += 2) {
    const a = x[j], b = x[j + 1];
    if (a > m0 || a !== a) m0 = a; // NaN sticks, and poisons every exponent below
    if (b > m1 || b !== b) m1 = b;
  }
  if (j < end && (x[j] > m0 || x[j] !== x[j])) m0 = x[j];
  return m0 > m1 || m0 !== m0 ? m0 : m1;
}

/** [shift, s, t, q] of one row; s is NaN for a row with NaN or +inf, 0 for an all −inf row. */
export function rowState(x: Row, o: number, n: number, invTau: number, st: Float64Array): void {
  ensureTable();
  const zmax = rowMax(x, o, n);
  st[0] = zmax === -Infinity ? 0 : zmax; // all −inf: every term is exp(−inf) = 0
  if (zmax !== zmax || zmax === Infinity) {
    st[1] = st[2] = st[3] = NaN;
    return;
  }
  // y = (z − shift)·(−64·log2(e)/τ) ≥ 0 counts 64ths of an octave below the max; t = y·LN2_STEP. Every y is
  // now finite or +inf (a −inf logit), clamped to Y_ZERO where the table holds 0: no per-element branch.
  const shift = st[0];
  const scale = invTau * SCALE;
  let s0 = 0, t0 = 0, q0 = 0, s1 = 0, t1 = 0, q1 = 0;
  let j = o;
  const end = o + n;
  // Two independent accumulator sets let consecutive exps overlap.
  for (; j + 1 < end; j += 2) {
    let ya = (x[j] - shift) * scale;
    let yb = (x[j + 1] - shift) * scale;
    ya = ya < Y_ZERO ? ya : Y_ZERO;
    yb = yb < Y_ZERO ? yb : Y_ZERO;
    const ea = expFromSteps(ya), eb = expFromSteps(yb);
    s0 += ea; t0 += ea * ya; q0 += ea * ea;
    s1 += eb; t1 += eb * yb; q1 += eb * eb;
  }
  if (j < end) {
    let y = (x[j] - shift) * scale;
    y = y < Y_ZERO ? y : Y_ZERO;
    const e = expFromSteps(y);
    s0 += e; t0 += e * y; q0 += e * e;
  }
  st[1] = s0 + s1;
  st[2] = (t0 + t1) * LN2_STEP;
  st[3] = q0 + q1;
}

/** rowState in plain f64 with Math.exp (no table): the `precision: 'f64'` path, exact to double rounding. */
export function rowStateExact(x: Row, o: number, n: number, invTau: number, st: Float64Array): void {
  const zmax = rowMax(x, o, n);
  const shift = zmax === -Infinity ? 0 : zmax;
  let s = 0, t = 0, q = 0;
  for (let j = o, end = o + n; j < end; j++) {
    const d = (x[j] - shift) * invTau;
    const e = Math.exp(d);
    s += e;
    if (e !== 0) t += e * d; // 0·(−inf) := 0
    q += e * e;
  }
  st[0] = shift;
  st[1] = s;
  st[2] = t;
  st[3] = q;
}

function finite(s: number): boolean {
  return s > 0 && s < Infinity;
}

type Column = Float32Array | Float64Array;
export interface StatsOutputs {
  entropy?: Column;
  logprob?: Column;
  logsumexp?: Column;
  sumPiSquared?: Column;
  maxProb?: Column;
}

/** SPEC §1.1 over all rows; returns the first non-finite row or −1. `exact`: Math.exp instead of the table. */
export function tokenStats(
  t: Tensor, rows: number, vocab: number, tokens: Int32Array | null, temperature: number,
  rowMask: Uint8Array | null, out: StatsOutputs, exact = false,
): number {
  const invTau = 1 / temperature;
  const reader = new RowReader(t, vocab);
  const st = new Float64Array(4);
  const state = exact ? rowStateExact : rowState;
  const outs = [out.entropy, out.logprob, out.logsumexp, out.sumPiSquared, out.maxProb];
  let bad = -1;
  for (let i = 0; i < rows; i++) {
    if (rowMask && rowMask[i] === 0) {
      for (const o of outs) if (o) o[i] = 0;
      continue;
    }
    const [x, o] = reader.row(i);
    state(x, o, vocab, invTau, st);
    const [shift, s, tSum, q] = st;
    if (!finite(s) || shift === Infinity || tSum !== tSum) {
      if (bad < 0) bad = i;
      for (const a of outs) if (a) a[i] = NaN;
      continue;
    }
    const logS = Math.log(s);
    if (out.entropy) out.entropy[i] = Math.max(logS - tSum / s, 0);
    if (out.logsumexp) out.logsumexp[i] = shift * invTau + logS;
    if (out.sumPiSquared) out.sumPiSquared[i] = q / (s * s);
    if (out.maxProb) out.maxProb[i] = 1 / s;
    if (out.logprob && tokens) out.logprob[i] = (x[o + tokens[i]] - shift) * invTau - logS;
  }
  return bad;
}

export interface BackwardInputs {
  tokens: Int32Array | null;
  temperature: number;
  gradLogprob: Float32Array | null;
  gradEntropy: Float32Array | null;
  logsumexp: Float32Array | null;
  entropy: Float32Array | null;
  rowMask: Uint8Array | null;
}

/**
 * SPEC §1.2: writes ∂L/∂z into `out` (f32 / f64 values, or 16-bit bit patterns via `encode`).
 * `exact`: the row state in plain f64 with Math.exp, as the forward's `precision: 'f64'` path.
 */
export function tokenStatsBackward(
  t: Tensor, rows: number, vocab: number, a: BackwardInputs, out: Float32Array | Float64Array | Uint16Array,
  encode: ((x: number) => number) | null, exact = false,
): number {
  const invTau = 1 / a.temperature;
  const reader = new RowReader(t, vocab);
  const st = new Float64Array(4);
  const useForward = a.logsumexp !== null && (a.gradEntropy === null || a.entropy !== null);
  const state = exact ? rowStateExact : rowState;
  let bad = -1;
  for (let i = 0; i < rows; i++) {
    const base = i * vocab;
    if (a.rowMask && a.rowMask[i] === 0) {
      out.fill(0, base, base + vocab);
      continue;
    }
    const [x, o] = reader.row(i);
    const gLp = a.gradLogprob ? a.gradLogprob[i] : 0;
    const gH = a.gradEntropy ? a.gradEntropy[i] : 0;
    let shift = 0, logNorm: number, h: number;
    if (useForward) {
      logNorm = a.logsumexp![i];
      h = a.entropy ? a.entropy[i] : 0;
    } else {
      state(x, o, vocab, invTau, st);
      if (!finite(st[1]) || st[0] === Infinity) {
        logNorm = NaN;
        h = NaN;
      } else {
        shift = st[0];
        logNorm = Math.log(st[1]);
        h = Math.max(logNorm - st[2] / st[1], 0);
      }
    }
    if (!Number.isFinite(logNorm) || !Number.isFinite(h)) {
      if (bad < 0) bad = i;
      out.fill(encode ? encode(NaN) : NaN, base, base + vocab);
      continue;
    }
    // ∂L/∂z_j = p_j·(A + B·log p_j) for j ≠ y (SPEC §1.2); entry y adds g_lp/τ.
    const A = -(gLp + gH * h) * invTau;
    const B = -gH * invTau;
    const y = a.tokens && gLp !== 0 ? a.tokens[i] : -1;
    const zy = y >= 0 ? x[o + y] : 0; // read before an in-place write overwrites it
    for (let j = 0; j < vocab; j++) {
      const logp = (x[o + j] - shift) * invTau - logNorm;
      const p = Math.exp(logp);
      const g = p === 0 ? 0 : p * (A + B * logp);
      out[base + j] = encode ? encode(g) : g;
    }
    if (y >= 0) {
      const logp = (zy - shift) * invTau - logNorm;
      const p = Math.exp(logp);
      const g = invTau * (gLp * (1 - p) - gH * p * (logp + h));
      out[base + y] = encode ? encode(g) : g;
    }
  }
  return bad;
}

export interface PartialOutputs {
  max: Float64Array;
  sumExp: Float64Array;
  sumExpU: Float64Array;
  sumExp2: Float64Array;
  targetLogit: Float64Array;
}

/** SPEC §1.3 for one vocabulary shard; all −inf shard rows are valid empty states. */
export function tokenStatsPartial(
  t: Tensor, rows: number, vocab: number, tokens: Int32Array | null, vocabOffset: number, temperature: number,
  rowMask: Uint8Array | null, out: PartialOutputs, exact = false,
): number {
  const invTau = 1 / temperature;
  const reader = new RowReader(t, vocab);
  const st = new Float64Array(4);
  const state = exact ? rowStateExact : rowState;
  let bad = -1;
  for (let i = 0; i < rows; i++) {
    let m = -Infinity, s = 0, tSum = 0, q = 0, target = NaN;
    if (!rowMask || rowMask[i] !== 0) {
      const [x, o] = reader.row(i);
      state(x, o, vocab, invTau, st);
      if (st[1] !== st[1] || st[0] === Infinity || st[2] !== st[2]) {
        if (bad < 0) bad = i;
        [m, s, tSum, q] = [NaN, NaN, NaN, NaN];
      } else if (st[1] > 0) {
        [m, s, tSum, q] = [st[0] * invTau, st[1], st[2], st[3]];
      }
      if (tokens) {
        const y = tokens[i] - vocabOffset;
        if (y >= 0 && y < vocab) target = x[o + y] * invTau;
      }
    }
    out.max[i] = m;
    out.sumExp[i] = s;
    out.sumExpU[i] = s === 0 ? 0 : tSum + m * s; // Σ e·u = Σ e·(u − m) + m·Σ e
    out.sumExp2[i] = q;
    out.targetLogit[i] = target;
  }
  return bad;
}

/** SPEC §1.4: KL(p‖q) per row, p from `t`, q from `ref` (same shape and dtype). */
export function fullKl(
  t: Tensor, ref: Tensor, rows: number, vocab: number, temperature: number, rowMask: Uint8Array | null,
  out: Float32Array | Float64Array, exact = false,
): number {
  ensureTable();
  const exp = exact ? Math.exp : expNonPositive;
  const invTau = 1 / temperature;
  const readP = new RowReader(t, vocab);
  const readQ = new RowReader(ref, vocab);
  let bad = -1;
  for (let i = 0; i < rows; i++) {
    if (rowMask && rowMask[i] === 0) {
      out[i] = 0;
      continue;
    }
    const [x, ox] = readP.row(i);
    const [r, or] = readQ.row(i);
    const mx = rowMax(x, ox, vocab), mr = rowMax(r, or, vocab);
    let sp = 0, sq = 0, w = 0;
    for (let j = 0; j < vocab; j++) {
      const tu = (x[ox + j] - mx) * invTau;
      const tv = (r[or + j] - mr) * invTau;
      sq += exp(tv);
      const e = exp(tu);
      sp += e;
      if (e > 0) w += e * (tu - tv); // p > 0 where q = 0 gives +inf: KL is infinite
      else if (e !== e) w = NaN;
    }
    if (!finite(sp) || !finite(sq) || w !== w) {
      if (bad < 0) bad = i;
      out[i] = NaN;
      continue;
    }
    out[i] = w / sp - Math.log(sp) + Math.log(sq);
  }
  return bad;
}
