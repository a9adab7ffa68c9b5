/**
 * Vocabulary shards (tensor parallel, SPEC §1.3): the mergeable softmax state of one shard of the
 * vocabulary, the associative merge of states, and the final statistics from merged states (the same
 * outputs as tokenStats on the whole vocabulary). Kernels: tokenStatsPartial in lib/js/token_stats.ts,
 * native/token_stats.cc and, with `backend: 'cuda'`, cuda/token_stats.cu (CudaDevice.tokenStatsPartial).
 */
import { ErrorCode, argError } from '../errors';
import * as is from '../is';
import { requireCuda, resolveBackend, nativeAddon, type BackendName } from '../backend';
import type { CudaTokenStatsPartialOptions } from '../cuda';
import { DTYPE_CODE, logitRows, type Tensor } from '../tensor';
import * as js from '../js/token_stats';
import {
  asyncForm, nonFiniteError, nonFiniteOf, precisionOf, rowMaskOf, run, syncForm, temperatureOf,
  type NonFinite, type Precision,
} from './run';
import {
  STAT_NAMES, withoutBackend, type AnyTokenStatsResult, type StatName, type TokenIds, type TokenStatsResult,
} from './token_stats';

export interface TokenStatsPartial {
  rows: number;
  /** M = max of u = z/τ over the shard (−inf for an all −inf shard row), f64. */
  max: Float64Array;
  /** Σ exp(u − M). */
  sumExp: Float64Array;
  /** Σ exp(u − M)·u. */
  sumExpU: Float64Array;
  /** Σ exp(2(u − M)). */
  sumExp2: Float64Array;
  /** u_y when the global token id y falls in this shard, else NaN. */
  targetLogit: Float64Array;
}

export interface TokenStatsPartialOptions {
  /** Global token ids (any integer ≥ 0; those outside the shard give NaN targetLogit). */
  tokens?: TokenIds;
  /** Global vocabulary index of this shard's column 0. */
  vocabOffset: number;
  temperature?: number;
  rowMask?: Uint8Array;
  /** 'f64': the state in f64 arithmetic (the outputs are f64 either way; the cuda backend computes 'f32' only). */
  precision?: Precision;
  /** 'cuda': the CUDA kernels (CudaDevice.tokenStatsPartial, which also takes a DeviceTensor shard). */
  backend?: BackendName;
}

const PARTIAL_KEYS = ['tokens', 'vocabOffset', 'temperature', 'rowMask', 'precision', 'backend'] as const;

const PARTIAL_FIELDS = ['max', 'sumExp', 'sumExpU', 'sumExp2', 'targetLogit'] as const;

function allocatePartial(rows: number): TokenStatsPartial {
  const state = { rows } as TokenStatsPartial;
  for (const field of PARTIAL_FIELDS) state[field] = new Float64Array(rows);
  return state;
}

// ---- tokenStatsPartial / merge ----

function tokenStatsPartialImpl(async: boolean, shard: Tensor, options: TokenStatsPartialOptions): TokenStatsPartial | Promise<TokenStatsPartial> {
  const opts = is.options(options, 'opts', PARTIAL_KEYS);
  // backend 'cuda': the device's op (lib/cuda.ts), which validates the same options (precision 'f32' only).
  if (opts.backend === 'cuda') {
    return requireCuda('opts.backend').tokenStatsPartialImpl(async, shard, withoutBackend(opts) as CudaTokenStatsPartialOptions);
  }
  const { tensor: t, rows, vocab } = logitRows(shard, 'logitsShard');
  const vocabOffset = is.nonNegativeInteger(opts.vocabOffset, 'opts.vocabOffset');
  const temperature = temperatureOf(opts.temperature);
  const rowMask = rowMaskOf(opts.rowMask, rows);
  const exact = precisionOf(opts.precision) === 'f64';
  const tokens = opts.tokens === undefined
    ? null
    : is.tokenIds(opts.tokens, 'opts.tokens', rows, 2147483647, rowMask ?? undefined);
  const out = allocatePartial(rows);
  const backend = resolveBackend(opts.backend, t.data.length, async);
  return run(
    backend,
    async,
    (a) => nativeAddon().tokenStatsPartial(
      t.data, DTYPE_CODE[t.dtype], rows, vocab, tokens, vocabOffset, temperature, rowMask,
      out.max, out.sumExp, out.sumExpU, out.sumExp2, out.targetLogit, exact, a,
    ),
    () => js.tokenStatsPartial(t, rows, vocab, tokens, vocabOffset, temperature, rowMask, out, exact),
    (bad) => {
      if (bad >= 0) throw nonFiniteError(bad, 'tokenStatsPartial');
      return out;
    },
  );
}

/**
 * The mergeable softmax state of one vocabulary shard (tensor parallel, SPEC §1.3): per row
 * (M, Σ exp(u−M), Σ exp(u−M)·u, Σ exp(2(u−M)), u_y or NaN), f64. Merge with {@link mergeTokenStats}.
 */
export const tokenStatsPartial = asyncForm(tokenStatsPartialImpl);
export const tokenStatsPartialSync = syncForm(tokenStatsPartialImpl);

function checkParts(parts: unknown): TokenStatsPartial[] {
  if (!Array.isArray(parts) || parts.length === 0) {
    throw argError(ErrorCode.INVALID_ARG_TYPE, 'parts', 'a non-empty array of tokenStatsPartial results', parts);
  }
  const rows = (parts[0] as TokenStatsPartial)?.rows;
  parts.forEach((p, k) => {
    if (!is.isPlainObject(p) || PARTIAL_FIELDS.some((f) => !((p as Record<string, unknown>)[f] instanceof Float64Array))) {
      throw argError(ErrorCode.INVALID_ARG_TYPE, `parts[${k}]`, 'a tokenStatsPartial result', p);
    }
    const part = p as unknown as TokenStatsPartial;
    if (part.rows !== rows || PARTIAL_FIELDS.some((f) => part[f].length !== rows)) {
      throw argError(ErrorCode.SHAPE_MISMATCH, `parts[${k}]`, `a partial state of ${rows} rows`, part.rows);
    }
  });
  return parts as TokenStatsPartial[];
}

/**
 * Merges partial states of disjoint vocabulary shards into one (associative, exact up to f64 rounding):
 * M = max M_k, every sum rescaled by exp(M_k − M) (Σ exp(2(u−M)) by its square).
 */
export function mergeTokenStatsPartial(parts: readonly TokenStatsPartial[]): TokenStatsPartial {
  const checked = checkParts(parts);
  const rows = checked[0].rows;
  const merged = allocatePartial(rows);
  for (let i = 0; i < rows; i++) {
    let m = -Infinity;
    for (const p of checked) if (p.sumExp[i] !== 0 && !(p.max[i] <= m)) m = p.max[i]; // NaN wins
    let s = 0, su = 0, s2 = 0, target = NaN;
    for (const p of checked) {
      if (p.targetLogit[i] === p.targetLogit[i]) target = p.targetLogit[i];
      if (p.sumExp[i] === 0) continue; // an all −inf shard row carries no mass
      const a = Math.exp(p.max[i] - m);
      s += a * p.sumExp[i];
      su += a * p.sumExpU[i];
      s2 += a * a * p.sumExp2[i];
    }
    merged.max[i] = s === 0 ? -Infinity : m;
    merged.sumExp[i] = s;
    merged.sumExpU[i] = su;
    merged.sumExp2[i] = s2;
    merged.targetLogit[i] = target;
  }
  return merged;
}

/**
 * Final statistics from the partial states of all shards (SPEC §1.3): the same outputs as
 * {@link tokenStats} on the whole vocabulary. `logprob` is present when every unmasked row's target was
 * found in some shard.
 */
export interface MergeTokenStatsOptions {
  outputs?: readonly StatName[];
  rowMask?: Uint8Array;
  nonFinite?: NonFinite;
  /** The merge is f64 either way; 'f64' returns Float64Arrays. */
  precision?: Precision;
}

export function mergeTokenStats(parts: readonly TokenStatsPartial[], options: MergeTokenStatsOptions & { precision: 'f64' }): TokenStatsResult<Float64Array>;
export function mergeTokenStats(parts: readonly TokenStatsPartial[], options?: MergeTokenStatsOptions & { precision?: 'f32' }): TokenStatsResult;
export function mergeTokenStats(parts: readonly TokenStatsPartial[], options?: MergeTokenStatsOptions): AnyTokenStatsResult {
  const opts = is.options(options, 'opts', ['outputs', 'rowMask', 'nonFinite', 'precision'] as const);
  // The merge itself is f64; 'f64' only keeps the outputs in f64.
  const exact = precisionOf(opts.precision) === 'f64';
  const merged = mergeTokenStatsPartial(parts);
  const rows = merged.rows;
  const rowMask = rowMaskOf(opts.rowMask, rows);
  const nonFinite = nonFiniteOf(opts.nonFinite);
  let hasTargets = true;
  for (let i = 0; i < rows; i++) if ((!rowMask || rowMask[i]) && Number.isNaN(merged.targetLogit[i])) hasTargets = false;
  const wanted = opts.outputs === undefined
    ? STAT_NAMES.filter((n) => n !== 'logprob' || hasTargets)
    : (opts.outputs as unknown[]).map((n, k) => is.oneOf(n, `opts.outputs[${k}]`, STAT_NAMES));
  if (wanted.includes('logprob') && !hasTargets) {
    throw argError(ErrorCode.INVALID_ARG_VALUE, 'opts.outputs', "'logprob' only when every row's token is in some shard", 'logprob');
  }
  const out: Partial<Record<StatName, Float32Array | Float64Array>> = {};
  for (const name of wanted) out[name] = exact ? new Float64Array(rows) : new Float32Array(rows);
  for (let i = 0; i < rows; i++) {
    if (rowMask && rowMask[i] === 0) continue; // outputs stay 0
    const m = merged.max[i], s = merged.sumExp[i];
    if (!(s > 0 && s < Infinity) || !Number.isFinite(m)) {
      if (nonFinite === 'throw') throw nonFiniteError(i, 'mergeTokenStats');
      for (const name of wanted) out[name]![i] = NaN;
      continue;
    }
    const lse = m + Math.log(s);
    // H = lse − Σ p·u = log s − (Σ e·u − m·s)/s
    if (out.entropy) out.entropy[i] = Math.max(Math.log(s) - (merged.sumExpU[i] - m * s) / s, 0);
    if (out.logsumexp) out.logsumexp[i] = lse;
    if (out.sumPiSquared) out.sumPiSquared[i] = merged.sumExp2[i] / (s * s);
    if (out.maxProb) out.maxProb[i] = 1 / s;
    if (out.logprob) out.logprob[i] = merged.targetLogit[i] - lse;
  }
  return out as AnyTokenStatsResult;
}
