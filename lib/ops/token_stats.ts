/**
 * Token statistics from logits (SPEC §1): per-token entropy, log-prob of the sampled token, logsumexp,
 * Σp² and max-prob in one fused pass per row; the backward pass into the logits; vocabulary-shard partial
 * states and their merge; full-vocabulary KL; high-entropy token selection.
 *
 * This layer sets defaults, validates every argument before any kernel runs, picks the backend and turns
 * a non-finite row reported by a kernel into ERR_AE_NON_FINITE. Kernels: lib/js/token_stats.ts and
 * native/token_stats.{h,cc} (same names).
 */
import { EngineError, ErrorCode, argError } from '../errors';
import * as is from '../is';
import { resolveBackend, nativeAddon, type BackendName } from '../backend';
import { DTYPE_CODE, logitRows, numberToBf16, numberToF16, type Rows, type Tensor, type TensorData } from '../tensor';
import * as js from '../js/token_stats';

export const STAT_NAMES = ['entropy', 'logprob', 'logsumexp', 'sumPiSquared', 'maxProb'] as const;
export type StatName = (typeof STAT_NAMES)[number];
/** Per-row statistics, [N] each (Float32Array, or Float64Array with precision 'f64'); only the requested ones. */
export type TokenStatsResult<A extends Float32Array | Float64Array = Float32Array> = Partial<Record<StatName, A>>;
type AnyTokenStatsResult = TokenStatsResult<Float32Array> | TokenStatsResult<Float64Array>;
export type TokenIds = Int32Array | Uint32Array | BigInt64Array | number[];
type NonFinite = 'throw' | 'nan';
/**
 * 'f32' (default): the vectorised kernels, f32 lanes within blocks, f64 across them (SPEC §1.1 bound 1e-5).
 * 'f64': f64 arithmetic with exp() throughout, f64 outputs, exact to double rounding (≈ 1e-15): what the
 * trainer presets need to reproduce a float64 reference (shared/vectors). Scalar, several times slower.
 */
export type Precision = 'f32' | 'f64';

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
  backend?: BackendName;
}

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
  /** 'f64': the state in f64 arithmetic (the outputs are f64 either way). */
  precision?: Precision;
  backend?: BackendName;
}

export interface FullKlOptions {
  temperature?: number;
  rowMask?: Uint8Array;
  nonFinite?: NonFinite;
  backend?: BackendName;
}

// ---- validation shared by the family ----

const FORWARD_KEYS = ['tokens', 'temperature', 'outputs', 'rowMask', 'nonFinite', 'out', 'precision', 'backend'] as const;
const BACKWARD_KEYS = [
  'tokens', 'temperature', 'gradLogprob', 'gradEntropy', 'logsumexp', 'entropy', 'rowMask', 'out', 'inPlace', 'backend',
] as const;
const PARTIAL_KEYS = ['tokens', 'vocabOffset', 'temperature', 'rowMask', 'precision', 'backend'] as const;
const KL_KEYS = ['temperature', 'rowMask', 'nonFinite', 'backend'] as const;

function temperatureOf(value: unknown): number {
  return value === undefined ? 1 : is.positiveNumber(value, 'opts.temperature');
}

function rowMaskOf(value: unknown, rows: number): Uint8Array | null {
  return value === undefined ? null : is.mask01(value, 'opts.rowMask', rows);
}

function precisionOf(value: unknown): Precision {
  return value === undefined ? 'f32' : is.oneOf(value, 'opts.precision', ['f32', 'f64'] as const);
}

function nonFiniteOf(value: unknown): NonFinite {
  return value === undefined ? 'throw' : is.oneOf(value, 'opts.nonFinite', ['throw', 'nan'] as const);
}

function nonFiniteError(row: number, what: string): EngineError {
  return new EngineError(
    ErrorCode.NON_FINITE,
    `${what}: row ${row} is not finite (NaN, +inf, or every entry −inf); pass nonFinite: 'nan' to get NaN instead`,
    { param: 'logits', row },
  );
}

/** Runs a validated job on the chosen backend, sync or async, mapping a reported bad row to an error. */
function run<T>(
  backend: 'cpu' | 'js', async: boolean, nativeJob: (async: boolean) => number | Promise<number>, jsJob: () => number,
  finish: (badRow: number) => T,
): T | Promise<T> {
  if (backend === 'js') {
    const bad = jsJob();
    return async ? Promise.resolve().then(() => finish(bad)) : finish(bad);
  }
  const result = nativeJob(async);
  if (!async) return finish(result as number);
  // The caller's stack, not the worker's, is the useful one in an async failure.
  const callSite = new Error();
  return (result as Promise<number>).then(finish, (error: Error) => {
    error.stack = `${error.stack}\n    --- called from ---\n${callSite.stack?.split('\n').slice(2).join('\n')}`;
    throw error;
  });
}

/** Wraps a validating implementation so the async form rejects (not throws) on bad input. */
function asyncForm<A extends unknown[], T>(impl: (async: boolean, ...args: A) => T | Promise<T>): (...args: A) => Promise<T> {
  return (...args: A) => {
    try {
      return Promise.resolve(impl(true, ...args));
    } catch (error) {
      return Promise.reject(error);
    }
  };
}

function syncForm<A extends unknown[], T>(impl: (async: boolean, ...args: A) => T | Promise<T>): (...args: A) => T {
  return (...args: A) => impl(false, ...args) as T;
}

// ---- tokenStats ----

function tokenStatsImpl(
  async: boolean, logits: Tensor, options?: TokenStatsOptions | TokenStatsF64Options,
): AnyTokenStatsResult | Promise<AnyTokenStatsResult> {
  const opts = is.options(options, 'opts', FORWARD_KEYS);
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
  const inPlace = opts.inPlace === undefined ? false : opts.inPlace;
  if (typeof inPlace !== 'boolean') throw argError(ErrorCode.INVALID_ARG_TYPE, 'opts.inPlace', 'a boolean', inPlace);
  let out: GradientArray;
  let outDtype: 'f32' | typeof t.dtype;
  if (inPlace) {
    if (opts.out !== undefined) throw argError(ErrorCode.INVALID_ARG_VALUE, 'opts.out', 'no out buffer with inPlace', opts.out);
    out = t.data;
    outDtype = t.dtype;
  } else if (opts.out !== undefined) {
    const given = opts.out;
    const ownKind = t.data.constructor;
    if (!(given instanceof Float32Array) && !(ArrayBuffer.isView(given) && given.constructor === ownKind)) {
      throw argError(ErrorCode.INVALID_ARG_TYPE, 'opts.out', `a Float32Array or ${ownKind.name} of ${t.data.length} elements`, given);
    }
    out = given as GradientArray;
    if (out.length !== t.data.length) {
      throw argError(ErrorCode.SHAPE_MISMATCH, 'opts.out', `${t.data.length} elements (N·V)`, given);
    }
    outDtype = out instanceof Float32Array ? 'f32' : t.dtype;
  } else {
    out = new Float32Array(t.data.length);
    outDtype = 'f32';
  }
  const backend = resolveBackend(opts.backend, t.data.length, async);
  const encode = outDtype === 'bf16' ? numberToBf16 : outDtype === 'f16' ? numberToF16 : null;
  return run(
    backend,
    async,
    (a) => nativeAddon().tokenStatsBackward(
      t.data, DTYPE_CODE[t.dtype], rows, vocab, tokens, temperature, gradLogprob, gradEntropy, logsumexp, entropy,
      rowMask, out, DTYPE_CODE[outDtype], a,
    ),
    () => js.tokenStatsBackward(
      t, rows, vocab, { tokens, temperature, gradLogprob, gradEntropy, logsumexp, entropy, rowMask }, out, encode,
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

// ---- tokenStatsPartial / merge ----

function tokenStatsPartialImpl(async: boolean, shard: Tensor, options: TokenStatsPartialOptions): TokenStatsPartial | Promise<TokenStatsPartial> {
  const opts = is.options(options, 'opts', PARTIAL_KEYS);
  const { tensor: t, rows, vocab } = logitRows(shard, 'logitsShard');
  const vocabOffset = is.nonNegativeInteger(opts.vocabOffset, 'opts.vocabOffset');
  const temperature = temperatureOf(opts.temperature);
  const rowMask = rowMaskOf(opts.rowMask, rows);
  const exact = precisionOf(opts.precision) === 'f64';
  const tokens = opts.tokens === undefined
    ? null
    : is.tokenIds(opts.tokens, 'opts.tokens', rows, 2147483647, rowMask ?? undefined);
  const out: TokenStatsPartial = {
    rows,
    max: new Float64Array(rows),
    sumExp: new Float64Array(rows),
    sumExpU: new Float64Array(rows),
    sumExp2: new Float64Array(rows),
    targetLogit: new Float64Array(rows),
  };
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
    const fields = ['max', 'sumExp', 'sumExpU', 'sumExp2', 'targetLogit'] as const;
    if (!is.isPlainObject(p) || fields.some((f) => !((p as Record<string, unknown>)[f] instanceof Float64Array))) {
      throw argError(ErrorCode.INVALID_ARG_TYPE, `parts[${k}]`, 'a tokenStatsPartial result', p);
    }
    const part = p as unknown as TokenStatsPartial;
    if (part.rows !== rows || fields.some((f) => part[f].length !== rows)) {
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
  const merged: TokenStatsPartial = {
    rows,
    max: new Float64Array(rows),
    sumExp: new Float64Array(rows),
    sumExpU: new Float64Array(rows),
    sumExp2: new Float64Array(rows),
    targetLogit: new Float64Array(rows),
  };
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

// ---- fullKl ----

function fullKlImpl(async: boolean, logits: Tensor, refLogits: Tensor, options?: FullKlOptions): Float32Array | Promise<Float32Array> {
  const opts = is.options(options, 'opts', KL_KEYS);
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
  const out = new Float32Array(p.rows);
  const backend = resolveBackend(opts.backend, 2 * p.tensor.data.length, async);
  return run(
    backend,
    async,
    (a) => nativeAddon().fullKl(
      p.tensor.data, q.tensor.data, DTYPE_CODE[p.tensor.dtype], p.rows, p.vocab, temperature, rowMask, out, a,
    ),
    () => js.fullKl(p.tensor, q.tensor, p.rows, p.vocab, temperature, rowMask, out),
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
export const fullKl = asyncForm(fullKlImpl);
export const fullKlSync = syncForm(fullKlImpl);

// ---- entropyMask ----

/**
 * High-entropy token selection (SPEC §1.5): threshold = the (1 − ρ) quantile of H over valid tokens with
 * linear interpolation (torch.quantile), mask = m ∧ H ≥ threshold. ρ = 1 keeps every valid token, ρ = 0 the
 * maximum. Sharded batches: exact by gathering — all-gather the valid entropies and call this on the whole
 * (no approximate histogram is offered). No valid token → empty mask, threshold NaN.
 */
export function entropyMask(
  entropy: Float32Array | Float64Array,
  mask: Uint8Array | null,
  options: { topQuantile: number },
): { mask: Uint8Array; threshold: number } {
  if (!(entropy instanceof Float32Array || entropy instanceof Float64Array)) {
    throw argError(ErrorCode.INVALID_ARG_TYPE, 'entropy', 'a Float32Array or Float64Array', entropy);
  }
  const n = entropy.length;
  const valid = mask === null ? null : is.mask01(mask, 'mask', n);
  const opts = is.options(options, 'opts', ['topQuantile'] as const);
  const rho = is.numberInRange(opts.topQuantile, 'opts.topQuantile', 0, 1);
  const values: number[] = [];
  for (let i = 0; i < n; i++) if (!valid || valid[i]) values.push(entropy[i]);
  const out = new Uint8Array(n);
  if (values.length === 0) return { mask: out, threshold: NaN };
  values.sort((a, b) => a - b);
  const position = (1 - rho) * (values.length - 1);
  const lo = Math.floor(position);
  const hi = Math.min(lo + 1, values.length - 1);
  const threshold = values[lo] + (values[hi] - values[lo]) * (position - lo);
  for (let i = 0; i < n; i++) out[i] = (!valid || valid[i]) && entropy[i] >= threshold ? 1 : 0;
  return { mask: out, threshold };
}
