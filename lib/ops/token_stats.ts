/**
 * Token statistics from logits (SPEC §1): per-token entropy, log-prob of the sampled token, logsumexp,
 * Σp² and max-prob in one fused pass per row; the backward pass into the logits; vocabulary-shard partial
 * states and their merge (token_stats_shards.ts); full-vocabulary KL; high-entropy token selection
 * (entropy_mask.ts).
 *
 * This layer sets defaults, validates every argument before any kernel runs, picks the backend and turns
 * a non-finite row reported by a kernel into ERR_AE_NON_FINITE. Kernels: lib/js/token_stats.ts and
 * native/token_stats.{h,cc} (same names).
 */
import { ErrorCode, argError } from '../errors';
import * as is from '../is';
import { requireCuda, resolveBackend, nativeAddon, type BackendName } from '../backend';
import { DTYPE_CODE, logitRows, numberToBf16, numberToF16, type Rows, type Tensor, type TensorData } from '../tensor';
import * as js from '../js/token_stats';
import type { CudaBackwardOptions, CudaFullKlOptions, CudaTokenStatsOptions } from '../cuda';
import {
  asyncForm, nonFiniteError, nonFiniteOf, precisionOf, rowMaskOf, run, syncForm, temperatureOf, type NonFinite,
  type Precision,
} from './run';

export const STAT_NAMES = ['entropy', 'logprob', 'logsumexp', 'sumPiSquared', 'maxProb'] as const;
export type StatName = (typeof STAT_NAMES)[number];
/** Per-row statistics, [N] each (Float32Array, or Float64Array with precision 'f64'); only the requested ones. */
export type TokenStatsResult<A extends Float32Array | Float64Array = Float32Array> = Partial<Record<StatName, A>>;
export type AnyTokenStatsResult = TokenStatsResult<Float32Array> | TokenStatsResult<Float64Array>;
export type TokenIds = Int32Array | Uint32Array | BigInt64Array | number[];

export interface TokenStatsOptions {
  /** Sampled token per row, [N] (or [B, T]); required for `logprob`. */
  tokens?: TokenIds;
  /** τ > 0; statistics are of softmax(z/τ). Default 1. */
  temperature?: number;
  /** Which outputs to compute; default: all that the inputs allow (logprob only with tokens). */
  outputs?: readonly StatName[];
  /** 0/1 per row; rows with 0 are skipped and output 0. */
  rowMask?: Uint8Array;
  /** 'throw' (default): ERR_AE_NON_FINITE for a row with NaN, +inf or only −inf; 'nan': NaN outputs there. */
  nonFinite?: NonFinite;
  /** Caller-provided Float32Array(N) buffers (Float64Array with precision 'f64'), filled and returned. */
  out?: TokenStatsResult;
  /** Arithmetic and output precision, default 'f32' (see {@link Precision}; 'f64' takes {@link TokenStatsF64Options}). */
  precision?: 'f32';
  backend?: BackendName;
}

/** {@link TokenStatsOptions} with f64 arithmetic and Float64Array outputs. */
export interface TokenStatsF64Options extends Omit<TokenStatsOptions, 'precision' | 'out'> {
  precision: 'f64';
  out?: TokenStatsResult<Float64Array>;
}

export interface TokenStatsBackwardOptions {
  tokens?: TokenIds;
  temperature?: number;
  /** ∂L/∂logprob per row, Float32Array(N). */
  gradLogprob?: Float32Array;
  /** ∂L/∂entropy per row, Float32Array(N). */
  gradEntropy?: Float32Array;
  /** From the forward pass: skips recomputing each row's normaliser (f32 rounding of lse then applies). */
  logsumexp?: Float32Array;
  /** From the forward pass; used with `logsumexp` when `gradEntropy` is given. */
  entropy?: Float32Array;
  rowMask?: Uint8Array;
  /** Gradient buffer of N·V: a Float32Array, or an array of the logits' own kind (written in that dtype). */
  out?: TensorData;
  /** Write the gradient over the logits (in their dtype) and return logits.data. */
  inPlace?: boolean;
  /**
   * 'f64': recompute each row in f64 arithmetic (logsumexp / entropy are then not accepted) and return a
   * Float64Array unless `out` or `inPlace` says otherwise. Default 'f32'.
   */
  precision?: Precision;
  backend?: BackendName;
}

export interface FullKlOptions {
  temperature?: number;
  rowMask?: Uint8Array;
  nonFinite?: NonFinite;
  /** 'f64': f64 arithmetic, Float64Array result. Default 'f32'. */
  precision?: Precision;
  backend?: BackendName;
}

const FORWARD_KEYS = ['tokens', 'temperature', 'outputs', 'rowMask', 'nonFinite', 'out', 'precision', 'backend'] as const;
const BACKWARD_KEYS = [
  'tokens', 'temperature', 'gradLogprob', 'gradEntropy', 'logsumexp', 'entropy', 'rowMask', 'out', 'inPlace', 'precision',
  'backend',
] as const;
const KL_KEYS = ['temperature', 'rowMask', 'nonFinite', 'precision', 'backend'] as const;

/** The options minus `backend`: what the cuda device's ops take (the same names and rules). */
export function withoutBackend<T extends { backend?: unknown }>(opts: T): Omit<T, 'backend'> {
  const rest = { ...opts };
  delete rest.backend;
  return rest;
}

// ---- tokenStats ----

function tokenStatsImpl(
  async: boolean, logits: Tensor, options?: TokenStatsOptions | TokenStatsF64Options,
): AnyTokenStatsResult | Promise<AnyTokenStatsResult> {
  const opts = is.options(options, 'opts', FORWARD_KEYS);
  // backend 'cuda': the device's op (lib/cuda.ts), which validates the same options (precision 'f32' only).
  // (resultOn is not among this op's keys, so the results are host arrays.)
  if (opts.backend === 'cuda') {
    return requireCuda('opts.backend').tokenStatsImpl(async, logits, withoutBackend(opts) as CudaTokenStatsOptions) as AnyTokenStatsResult | Promise<AnyTokenStatsResult>;
  }
  const { tensor: t, rows, vocab } = logitRows(logits, 'logits');
  const temperature = temperatureOf(opts.temperature);
  const rowMask = rowMaskOf(opts.rowMask, rows);
  const tokens = opts.tokens === undefined ? null : is.tokenIds(opts.tokens, 'opts.tokens', rows, vocab, rowMask ?? undefined);
  const nonFinite = nonFiniteOf(opts.nonFinite);
  let wanted: readonly StatName[];
  if (opts.outputs === undefined) {
    wanted = tokens ? STAT_NAMES : STAT_NAMES.filter((n) => n !== 'logprob');
  } else {
    if (!Array.isArray(opts.outputs) || opts.outputs.length === 0) {
      throw argError(ErrorCode.INVALID_ARG_TYPE, 'opts.outputs', `a non-empty array of ${STAT_NAMES.join(', ')}`, opts.outputs);
    }
    wanted = opts.outputs.map((name, k) => is.oneOf(name, `opts.outputs[${k}]`, STAT_NAMES));
    if (wanted.includes('logprob') && !tokens) {
      throw argError(ErrorCode.INVALID_ARG_VALUE, 'opts.outputs', "'logprob' only together with opts.tokens", 'logprob');
    }
  }
  const exact = precisionOf(opts.precision) === 'f64';
  const out: Partial<Record<StatName, Float32Array | Float64Array>> = {};
  const given = opts.out === undefined ? {} : is.options(opts.out, 'opts.out', STAT_NAMES);
  for (const name of wanted) {
    const param = `opts.out.${name}`;
    out[name] = given[name] === undefined
      ? (exact ? new Float64Array(rows) : new Float32Array(rows))
      : exact ? is.float64Of(given[name], param, rows) : is.float32Of(given[name], param, rows);
  }
  const backend = resolveBackend(opts.backend, t.data.length, async);
  return run(
    backend,
    async,
    (a) => nativeAddon().tokenStats(
      t.data, DTYPE_CODE[t.dtype], rows, vocab, tokens, temperature, rowMask,
      out.entropy ?? null, out.logprob ?? null, out.logsumexp ?? null, out.sumPiSquared ?? null, out.maxProb ?? null,
      exact, a,
    ),
    () => js.tokenStats(t, rows, vocab, tokens, temperature, rowMask, out, exact),
    (bad) => {
      if (bad >= 0 && nonFinite === 'throw') throw nonFiniteError(bad, 'tokenStats');
      return out as AnyTokenStatsResult;
    },
  );
}

/**
 * Per-token statistics of softmax(z/τ) for logits [N, V] or [B, T, V] (f32, f64, bf16, f16), one fused
 * pass per row. SPEC §1.1:
 *   lse = log Σ exp(u), logprob = u_y − lse, entropy = −Σ p log p, sumPiSquared = Σ p², maxProb = max p.
 * Returns Float32Array(N) per requested output. −inf logits have p = 0; masked rows give 0.
 */
export const tokenStats = asyncForm(tokenStatsImpl) as {
  (logits: Tensor, options: TokenStatsF64Options): Promise<TokenStatsResult<Float64Array>>;
  (logits: Tensor, options?: TokenStatsOptions): Promise<TokenStatsResult>;
};
/** Synchronous {@link tokenStats}: for small inputs and microbenchmarks (blocks the event loop). */
export const tokenStatsSync = syncForm(tokenStatsImpl) as {
  (logits: Tensor, options: TokenStatsF64Options): TokenStatsResult<Float64Array>;
  (logits: Tensor, options?: TokenStatsOptions): TokenStatsResult;
};

// ---- tokenStatsBackward ----

type GradientArray = Float32Array | Float64Array | Uint16Array;

function tokenStatsBackwardImpl(async: boolean, logits: Tensor, options: TokenStatsBackwardOptions): GradientArray | Promise<GradientArray> {
  const opts = is.options(options, 'opts', BACKWARD_KEYS);
  if (opts.backend === 'cuda') {
    const device = requireCuda('opts.backend');
    return device.tokenStatsBackwardImpl(async, logits, withoutBackend(opts) as CudaBackwardOptions) as GradientArray | Promise<GradientArray>;
  }
  const { tensor: t, rows, vocab } = logitRows(logits, 'logits');
  const temperature = temperatureOf(opts.temperature);
  const rowMask = rowMaskOf(opts.rowMask, rows);
  const row = (name: 'gradLogprob' | 'gradEntropy' | 'logsumexp' | 'entropy') =>
    opts[name] === undefined ? null : is.float32Of(opts[name], `opts.${name}`, rows);
  const gradLogprob = row('gradLogprob');
  const gradEntropy = row('gradEntropy');
  if (!gradLogprob && !gradEntropy) {
    throw argError(ErrorCode.INVALID_ARG_VALUE, 'opts', 'at least one of gradLogprob, gradEntropy', options);
  }
  if (gradLogprob && opts.tokens === undefined) {
    throw argError(ErrorCode.INVALID_ARG_VALUE, 'opts.tokens', 'token ids (gradLogprob needs them)', undefined);
  }
  const tokens = opts.tokens === undefined ? null : is.tokenIds(opts.tokens, 'opts.tokens', rows, vocab, rowMask ?? undefined);
  const logsumexp = row('logsumexp');
  const entropy = row('entropy');
  const exact = precisionOf(opts.precision) === 'f64';
  if (exact && (logsumexp || entropy)) {
    throw argError(ErrorCode.INVALID_ARG_VALUE, 'opts.logsumexp', "no f32 forward values with precision 'f64' (rows are recomputed in f64)", 'given');
  }
  const inPlace = opts.inPlace === undefined ? false : opts.inPlace;
  if (typeof inPlace !== 'boolean') throw argError(ErrorCode.INVALID_ARG_TYPE, 'opts.inPlace', 'a boolean', inPlace);
  let out: GradientArray;
  let outDtype: 'f32' | 'f64' | typeof t.dtype;
  if (inPlace) {
    if (opts.out !== undefined) throw argError(ErrorCode.INVALID_ARG_VALUE, 'opts.out', 'no out buffer with inPlace', opts.out);
    out = t.data;
    outDtype = t.dtype;
  } else if (opts.out !== undefined) {
    const given = opts.out;
    const ownKind = t.data.constructor;
    const f64Out = exact && given instanceof Float64Array;
    if (!(given instanceof Float32Array) && !f64Out && !(ArrayBuffer.isView(given) && given.constructor === ownKind)) {
      const kinds = `a Float32Array${exact ? ', Float64Array' : ''} or ${ownKind.name}`;
      throw argError(ErrorCode.INVALID_ARG_TYPE, 'opts.out', `${kinds} of ${t.data.length} elements`, given);
    }
    out = given as GradientArray;
    if (out.length !== t.data.length) {
      throw argError(ErrorCode.SHAPE_MISMATCH, 'opts.out', `${t.data.length} elements (N·V)`, given);
    }
    outDtype = out instanceof Float32Array ? 'f32' : f64Out ? 'f64' : t.dtype;
  } else {
    out = exact ? new Float64Array(t.data.length) : new Float32Array(t.data.length);
    outDtype = exact ? 'f64' : 'f32';
  }
  const backend = resolveBackend(opts.backend, t.data.length, async);
  const encode = outDtype === 'bf16' ? numberToBf16 : outDtype === 'f16' ? numberToF16 : null;
  return run(
    backend,
    async,
    (a) => nativeAddon().tokenStatsBackward(
      t.data, DTYPE_CODE[t.dtype], rows, vocab, tokens, temperature, gradLogprob, gradEntropy, logsumexp, entropy,
      rowMask, out, DTYPE_CODE[outDtype], exact, a,
    ),
    () => js.tokenStatsBackward(
      t, rows, vocab, { tokens, temperature, gradLogprob, gradEntropy, logsumexp, entropy, rowMask }, out, encode, exact,
    ),
    (bad) => {
      if (bad >= 0) throw nonFiniteError(bad, 'tokenStatsBackward');
      return out;
    },
  );
}

/**
 * Gradient of a loss with respect to the logits, given its gradients with respect to logprob and entropy
 * (SPEC §1.2): ∂L/∂z_j = (1/τ)·( g_lp·(1[j=y] − p_j) − g_H·p_j·(log p_j + H) ). Returns N·V values in f32,
 * in `out`, or over the logits with `inPlace`. Masked rows get 0.
 */
export const tokenStatsBackward = asyncForm(tokenStatsBackwardImpl);
export const tokenStatsBackwardSync = syncForm(tokenStatsBackwardImpl);

// ---- fullKl ----

type KlResult = Float32Array | Float64Array;

function fullKlImpl(async: boolean, logits: Tensor, refLogits: Tensor, options?: FullKlOptions): KlResult | Promise<KlResult> {
  const opts = is.options(options, 'opts', KL_KEYS);
  if (opts.backend === 'cuda') {
    return requireCuda('opts.backend').fullKlImpl(async, logits, refLogits, withoutBackend(opts) as CudaFullKlOptions) as KlResult | Promise<KlResult>;
  }
  const p: Rows = logitRows(logits, 'logits');
  const q: Rows = logitRows(refLogits, 'refLogits');
  if (q.tensor.dtype !== p.tensor.dtype) {
    throw argError(ErrorCode.DTYPE, 'refLogits.dtype', `'${p.tensor.dtype}' (the dtype of logits)`, q.tensor.dtype);
  }
  if (q.rows !== p.rows || q.vocab !== p.vocab) {
    throw argError(ErrorCode.SHAPE_MISMATCH, 'refLogits.shape', `[${p.tensor.shape.join(', ')}]`, `[${q.tensor.shape.join(', ')}]`);
  }
  const temperature = temperatureOf(opts.temperature);
  const rowMask = rowMaskOf(opts.rowMask, p.rows);
  const nonFinite = nonFiniteOf(opts.nonFinite);
  const exact = precisionOf(opts.precision) === 'f64';
  const out = exact ? new Float64Array(p.rows) : new Float32Array(p.rows);
  const backend = resolveBackend(opts.backend, 2 * p.tensor.data.length, async);
  return run(
    backend,
    async,
    (a) => nativeAddon().fullKl(
      p.tensor.data, q.tensor.data, DTYPE_CODE[p.tensor.dtype], p.rows, p.vocab, temperature, rowMask, out, exact, a,
    ),
    () => js.fullKl(p.tensor, q.tensor, p.rows, p.vocab, temperature, rowMask, out, exact),
    (bad) => {
      if (bad >= 0 && nonFinite === 'throw') throw nonFiniteError(bad, 'fullKl');
      return out;
    },
  );
}

/**
 * Full-vocabulary KL(p‖q) per row with both distributions tempered (SPEC §1.4), one pass over both
 * inputs: Σ_j p_j (log p_j − log q_j). +Infinity where p has mass and the reference logit is −inf.
 */
export const fullKl = asyncForm(fullKlImpl) as {
  (logits: Tensor, refLogits: Tensor, options: FullKlOptions & { precision: 'f64' }): Promise<Float64Array>;
  (logits: Tensor, refLogits: Tensor, options?: FullKlOptions & { precision?: 'f32' }): Promise<Float32Array>;
};
export const fullKlSync = syncForm(fullKlImpl) as {
  (logits: Tensor, refLogits: Tensor, options: FullKlOptions & { precision: 'f64' }): Float64Array;
  (logits: Tensor, refLogits: Tensor, options?: FullKlOptions & { precision?: 'f32' }): Float32Array;
};
