/**
 * Float64 reference for token statistics (SPEC §1). Deliberately plain: one loop per sum, every value a JS
 * number, no blocking, no SIMD, no shortcuts. Tests and benches import this file; nothing copies it.
 *
 *   u = z/τ (z widened exactly with elementAt),  M = max u,  S = Σ exp(u − M),  lse = M + log S
 *   p_j = exp(u_j − lse),  logprob = u_y − lse,  H = −Σ p log p  (0·(−∞) := 0),  Σp²,  maxProb = exp(M − lse)
 *   backward (§1.2): ∂L/∂z_j = (1/τ)·( g_lp·(1[j=y] − p_j) − g_H·p_j·(log p_j + H) )
 *   partial (§1.3): (M, Σ exp(u−M), Σ exp(u−M)·u, Σ exp(2(u−M)), u_y or NaN)
 *   full KL (§1.4): Σ p_j (log p_j − log q_j); p_j = 0 contributes 0; p_j > 0 with q_j = 0 gives +∞
 *   entropyMask (§1.5): threshold = (1−ρ) quantile with linear interpolation (torch.quantile)
 *
 * A row holding NaN or +∞, or only −∞, is "not finite": every output of that row is NaN here (what the
 * engine returns under nonFinite: 'nan'). Rows with rowMask 0 output 0.
 */
import { elementAt, Tensor } from '../../lib/tensor';

// Globals bound once: jest runs tests in a vm context where every global lookup (Math, Infinity) inside a
// hot loop costs ~0.3 µs, which made this reference 20× slower than under plain node.
const { exp, log, floor, ceil } = Math;
const INF = Infinity;
const NAN = NaN;
const isNaN = Number.isNaN;

export type Ids = ArrayLike<number> | ArrayLike<bigint>;

export interface RefOptions {
  tokens?: Ids;
  temperature?: number;
  rowMask?: ArrayLike<number>;
}

export interface RefStats {
  entropy: Float64Array;
  logprob?: Float64Array;
  logsumexp: Float64Array;
  sumPiSquared: Float64Array;
  maxProb: Float64Array;
  /** Rows that are not finite (NaN / +∞ / all −∞), in increasing order. */
  badRows: number[];
}

export interface RowStats {
  finite: boolean;
  max: number;
  lse: number;
  entropy: number;
  sumPiSquared: number;
  maxProb: number;
}

export function rowsAndVocab(t: Tensor): { rows: number; vocab: number } {
  const vocab = t.shape[t.shape.length - 1];
  return { rows: t.data.length / vocab, vocab };
}

/** Row `i` of u = z/τ as float64. */
export function rowU(t: Tensor, i: number, temperature = 1): Float64Array {
  const { vocab } = rowsAndVocab(t);
  const u = new Float64Array(vocab);
  for (let j = 0; j < vocab; j++) u[j] = elementAt(t, i * vocab + j) / temperature;
  return u;
}

export function tokenAt(tokens: Ids, i: number): number {
  return Number(tokens[i]);
}

/** The statistics of one row of tempered logits. */
export function rowStats(u: ArrayLike<number>): RowStats {
  let max = -INF;
  let finite = true;
  for (let j = 0; j < u.length; j++) {
    if (isNaN(u[j]) || u[j] === INF) finite = false;
    if (u[j] > max) max = u[j];
  }
  if (!finite || max === -INF) {
    return { finite: false, max: NAN, lse: NAN, entropy: NAN, sumPiSquared: NAN, maxProb: NAN };
  }
  let sumExp = 0;
  for (let j = 0; j < u.length; j++) sumExp += exp(u[j] - max);
  const lse = max + log(sumExp);
  let entropy = 0;
  let sumPiSquared = 0;
  for (let j = 0; j < u.length; j++) {
    if (u[j] === -INF) continue; // p = 0: contributes 0 to every sum
    const logp = u[j] - lse;
    const p = exp(logp);
    entropy -= p * logp;
    sumPiSquared += p * p;
  }
  return { finite: true, max, lse, entropy, sumPiSquared, maxProb: exp(max - lse) };
}

/** SPEC §1.1 for every row of `logits`. */
export function refTokenStats(logits: Tensor, opts: RefOptions = {}): RefStats {
  const { rows } = rowsAndVocab(logits);
  const tau = opts.temperature ?? 1;
  const out: RefStats = {
    entropy: new Float64Array(rows),
    logsumexp: new Float64Array(rows),
    sumPiSquared: new Float64Array(rows),
    maxProb: new Float64Array(rows),
    badRows: [],
  };
  if (opts.tokens) out.logprob = new Float64Array(rows);
  for (let i = 0; i < rows; i++) {
    if (opts.rowMask && opts.rowMask[i] === 0) continue; // masked rows stay 0
    const u = rowU(logits, i, tau);
    const s = rowStats(u);
    if (!s.finite) out.badRows.push(i);
    out.entropy[i] = s.entropy;
    out.logsumexp[i] = s.lse;
    out.sumPiSquared[i] = s.sumPiSquared;
    out.maxProb[i] = s.maxProb;
    if (out.logprob && opts.tokens) out.logprob[i] = s.finite ? u[tokenAt(opts.tokens, i)] - s.lse : NAN;
  }
  return out;
}

export interface RefBackwardOptions extends RefOptions {
  gradLogprob?: ArrayLike<number>;
  gradEntropy?: ArrayLike<number>;
  /** Use these instead of recomputing (the engine's "from the forward pass" inputs). */
  logsumexp?: ArrayLike<number>;
  entropy?: ArrayLike<number>;
}

/** SPEC §1.2: the gradient of Σ_i g_lp[i]·logprob_i + g_H[i]·H_i with respect to the logits, [N·V]. */
export function refTokenStatsBackward(logits: Tensor, opts: RefBackwardOptions): Float64Array {
  const { rows, vocab } = rowsAndVocab(logits);
  const tau = opts.temperature ?? 1;
  const grad = new Float64Array(rows * vocab);
  for (let i = 0; i < rows; i++) {
    if (opts.rowMask && opts.rowMask[i] === 0) continue;
    const u = rowU(logits, i, tau);
    const s = rowStats(u);
    const lse = opts.logsumexp ? opts.logsumexp[i] : s.lse;
    const entropy = opts.entropy ? opts.entropy[i] : s.entropy;
    const gLp = opts.gradLogprob ? opts.gradLogprob[i] : 0;
    const gH = opts.gradEntropy ? opts.gradEntropy[i] : 0;
    const y = opts.tokens && opts.gradLogprob ? tokenAt(opts.tokens, i) : -1;
    for (let j = 0; j < vocab; j++) {
      const logp = u[j] - lse;
      const p = exp(logp);
      const entropyTerm = p === 0 ? 0 : gH * p * (logp + entropy); // 0·(−∞) := 0
      grad[i * vocab + j] = (gLp * ((j === y ? 1 : 0) - p) - entropyTerm) / tau;
    }
  }
  return grad;
}

export interface RefPartial {
  rows: number;
  max: Float64Array;
  sumExp: Float64Array;
  sumExpU: Float64Array;
  sumExp2: Float64Array;
  targetLogit: Float64Array;
}

/** SPEC §1.3: the partial state of one vocabulary shard; tokens are global ids. */
export function refTokenStatsPartial(shard: Tensor, opts: RefOptions & { vocabOffset: number }): RefPartial {
  const { rows, vocab } = rowsAndVocab(shard);
  const tau = opts.temperature ?? 1;
  const out: RefPartial = {
    rows,
    max: new Float64Array(rows),
    sumExp: new Float64Array(rows),
    sumExpU: new Float64Array(rows),
    sumExp2: new Float64Array(rows),
    targetLogit: new Float64Array(rows),
  };
  for (let i = 0; i < rows; i++) {
    if (opts.rowMask && opts.rowMask[i] === 0) continue;
    const u = rowU(shard, i, tau);
    let max = -INF;
    for (const v of u) if (v > max || isNaN(v)) max = v;
    let sumExp = 0;
    let sumExpU = 0;
    let sumExp2 = 0;
    if (max !== -INF) {
      for (const v of u) {
        if (v === -INF) continue;
        const e = exp(v - max);
        sumExp += e;
        sumExpU += e * v;
        sumExp2 += e * e;
      }
    }
    out.max[i] = max;
    out.sumExp[i] = sumExp;
    out.sumExpU[i] = sumExpU;
    out.sumExp2[i] = sumExp2;
    const y = opts.tokens ? tokenAt(opts.tokens, i) - opts.vocabOffset : -1;
    out.targetLogit[i] = y >= 0 && y < vocab ? u[y] : NAN;
  }
  return out;
}

/** SPEC §1.4: KL(p‖q) per row with p from `logits`, q from `refLogits`, both tempered. */
export function refFullKl(logits: Tensor, refLogits: Tensor, opts: RefOptions = {}): Float64Array {
  const { rows, vocab } = rowsAndVocab(logits);
  const tau = opts.temperature ?? 1;
  const kl = new Float64Array(rows);
  for (let i = 0; i < rows; i++) {
    if (opts.rowMask && opts.rowMask[i] === 0) continue;
    const u = rowU(logits, i, tau);
    const v = rowU(refLogits, i, tau);
    const sp = rowStats(u);
    const sq = rowStats(v);
    if (!sp.finite || !sq.finite) {
      kl[i] = NAN;
      continue;
    }
    let sum = 0;
    for (let j = 0; j < vocab; j++) {
      if (u[j] === -INF) continue; // p_j = 0 contributes 0, whatever q_j is
      if (v[j] === -INF) {
        sum = INF; // p_j > 0 where q_j = 0
        break;
      }
      const logp = u[j] - sp.lse;
      sum += exp(logp) * (logp - (v[j] - sq.lse));
    }
    kl[i] = sum;
  }
  return kl;
}

/** torch.quantile(values, q) with linear interpolation; NaN for an empty list. */
export function refQuantile(values: number[], q: number): number {
  if (values.length === 0) return NAN;
  const sorted = [...values].sort((a, b) => a - b);
  const position = q * (sorted.length - 1);
  const lo = floor(position);
  const hi = ceil(position);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (position - lo);
}

/** SPEC §1.5: keep valid tokens whose entropy is at least the (1 − ρ) quantile of the valid entropies. */
export function refEntropyMask(
  entropy: ArrayLike<number>,
  mask: ArrayLike<number> | null,
  topQuantile: number,
): { mask: Uint8Array; threshold: number } {
  const valid: number[] = [];
  for (let i = 0; i < entropy.length; i++) if (!mask || mask[i] === 1) valid.push(entropy[i]);
  const threshold = refQuantile(valid, 1 - topQuantile);
  const out = new Uint8Array(entropy.length);
  for (let i = 0; i < entropy.length; i++) out[i] = (!mask || mask[i] === 1) && entropy[i] >= threshold ? 1 : 0;
  return { mask: out, threshold };
}
