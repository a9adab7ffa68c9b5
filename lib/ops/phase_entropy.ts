/**
 * Phase entropy (SPEC §5.5, PEAR arXiv:2510.08026): the mean token entropy of the thinking phase (valid tokens
 * before the boundary, e.g. `</think>`) and of the answer phase (valid tokens after it), and the shaped reward
 *
 *   r' = r + wThink·H̄_think + wAnswer·H̄_answer,   defaults wThink = −α (α = 0.1), wAnswer = 0.
 *
 * The boundary token itself belongs to neither phase (it is a delimiter). Rows without a boundary are all
 * thinking; an empty phase has mean 0. Sums in f64 in token order; kernels in lib/js/phase_entropy.ts and
 * native/phase_entropy.{h,cc}, and on the GPU with `backend: 'cuda'` per call (cuda/phase_entropy.cu: f64 sums in
 * a fixed tree).
 */
import { ErrorCode, EngineError, argError } from '../errors';
import * as is from '../is';
import { kernelOf, resolveCudaBackend, type BackendName } from '../backend';
import * as js from '../js/phase_entropy';
import { asyncForm, run, syncForm } from './run';
import * as read from './rewards_inputs';
import type { Binary, Integers, Numbers } from './rewards_inputs';

/** PEAR's thinking-entropy weight when neither wThink nor alpha is given (wThink = −α). */
export const PHASE_ENTROPY_ALPHA = 0.1;

export interface PhaseEntropyInputs {
  /** [B, T] per-token entropy (e.g. tokenStats' entropy), Float32Array or Float64Array. */
  entropy: Float32Array | Float64Array;
  /** [B, T] 0/1 valid tokens (default: all valid). */
  mask?: Binary;
  shape: readonly [number, number];
  /**
   * Per-row boundary positions [B] in [−1, T) (−1 = none), or one token id (such as the id of `</think>`) whose
   * first valid occurrence in `tokens` is the row's boundary.
   */
  boundary: Integers | number;
  /** [B, T] token ids, required when `boundary` is a token id. */
  tokens?: Integers;
  /** [B] base rewards r (default 0). */
  rewards?: Numbers;
}

export interface PhaseEntropyOptions {
  /** Weight of the thinking-phase mean entropy; default −alpha. */
  wThink?: number;
  /** Weight of the answer-phase mean entropy; default 0. */
  wAnswer?: number;
  /** α ≥ 0 of the default wThink = −α; default 0.1. Not with wThink. */
  alpha?: number;
  /** 'cuda' (per call only): the CUDA kernel, host arrays in and out. 'auto' never picks it. */
  backend?: BackendName;
}

export interface PhaseEntropyResult {
  /** [B] f32: r + wThink·H̄_think + wAnswer·H̄_answer. */
  rewards: Float32Array;
  /** [B] f32: mean entropy over the thinking phase (0 when empty). */
  thinkEntropy: Float32Array;
  /** [B] f32: mean entropy over the answer phase (0 when empty). */
  answerEntropy: Float32Array;
  /** [B]: valid tokens in each phase. */
  thinkTokens: Int32Array;
  answerTokens: Int32Array;
  /** [B]: the boundary position used, −1 when the row has none. */
  boundary: Int32Array;
}

function phaseEntropyImpl(async: boolean, inputs: PhaseEntropyInputs, options?: PhaseEntropyOptions) {
  const input = read.inputs(inputs, ['entropy', 'mask', 'shape', 'boundary', 'tokens', 'rewards'] as const);
  const [rows, tokens] = read.shape2(read.required(input.shape, 'inputs.shape'), 'inputs.shape');
  const entropy = read.required(input.entropy, 'inputs.entropy');
  if (!(entropy instanceof Float32Array || entropy instanceof Float64Array)) {
    throw argError(ErrorCode.INVALID_ARG_TYPE, 'inputs.entropy', 'a Float32Array or Float64Array', entropy);
  }
  if (entropy.length !== rows * tokens) throw argError(ErrorCode.SHAPE_MISMATCH, 'inputs.entropy', `${rows * tokens} values ([B, T])`, entropy);
  const mask = input.mask === undefined ? null : read.binary(input.mask, 'inputs.mask', rows * tokens);
  const given = read.required(input.boundary, 'inputs.boundary');
  let boundary: Int32Array | null = null;
  let tokenIds: Int32Array | null = null;
  let boundaryToken = -1;
  if (typeof given === 'number') {
    boundaryToken = is.nonNegativeInteger(given, 'inputs.boundary');
    if (boundaryToken > 2147483647) throw argError(ErrorCode.OUT_OF_RANGE, 'inputs.boundary', 'a token id below 2^31', given);
    if (input.tokens === undefined) throw argError(ErrorCode.INVALID_ARG_VALUE, 'inputs.tokens', 'token ids [B, T] (boundary is a token id)', undefined);
    tokenIds = read.integers(input.tokens, 'inputs.tokens', rows * tokens, -2147483648, 2147483647);
  } else {
    // A boundary at T or beyond is a caller's bug (a position from another padding), not "no boundary".
    boundary = read.integers(given, 'inputs.boundary', rows, -1, Math.max(tokens - 1, -1));
    if (input.tokens !== undefined) throw argError(ErrorCode.INVALID_ARG_VALUE, 'inputs.tokens', 'no token ids when boundary gives positions', input.tokens);
  }
  const base = input.rewards === undefined ? null : read.numbers(input.rewards, 'inputs.rewards', rows);
  const opts = read.options(options, ['wThink', 'wAnswer', 'alpha', 'backend'] as const);
  if (opts.wThink !== undefined && opts.alpha !== undefined) {
    throw argError(ErrorCode.INVALID_ARG_VALUE, 'opts.alpha', 'either wThink or alpha (wThink = −alpha), not both', opts.alpha);
  }
  const alpha = opts.alpha === undefined ? PHASE_ENTROPY_ALPHA : is.numberInRange(opts.alpha, 'opts.alpha', 0, Number.MAX_VALUE);
  const wThink = opts.wThink === undefined ? -alpha : is.finiteNumber(opts.wThink, 'opts.wThink');
  const wAnswer = read.numberOr(opts.wAnswer, 'opts.wAnswer', 0);

  const boundaryOut = new Int32Array(rows);
  const thinkMean = new Float64Array(rows);
  const answerMean = new Float64Array(rows);
  const thinkCount = new Int32Array(rows);
  const answerCount = new Int32Array(rows);
  const backend = resolveCudaBackend(opts.backend, rows * tokens, async);
  // The cuda addon takes the cpu addon's arguments (cuda/addon/phase_entropy.cc).
  const kernel = kernelOf(backend, 'phaseEntropy');
  return run(
    backend === 'js' ? 'js' : 'cpu',
    async,
    (a) => kernel(
      entropy, entropy instanceof Float64Array, mask, rows, tokens, boundary, tokenIds, boundaryToken, boundaryOut,
      thinkMean, answerMean, thinkCount, answerCount, a,
    ),
    () => js.phaseEntropy({
      entropy, mask, rows, tokens, boundary, tokenIds, boundaryToken, boundaryOut, thinkMean, answerMean, thinkCount, answerCount,
    }),
    (bad): PhaseEntropyResult => {
      if (bad >= 0) {
        throw new EngineError(ErrorCode.NON_FINITE, `phaseEntropy: row ${bad} holds a non-finite entropy at a valid token`, {
          param: 'inputs.entropy', row: bad,
        });
      }
      const rewards = new Float32Array(rows);
      for (let b = 0; b < rows; b++) rewards[b] = (base ? base[b] : 0) + wThink * thinkMean[b] + wAnswer * answerMean[b];
      return {
        rewards,
        thinkEntropy: Float32Array.from(thinkMean),
        answerEntropy: Float32Array.from(answerMean),
        thinkTokens: thinkCount,
        answerTokens: answerCount,
        boundary: boundaryOut,
      };
    },
  );
}

/**
 * Phase entropy and the PEAR-shaped reward (SPEC §5.5). `boundary` is a position per row or a token id looked
 * up in `tokens`; the thinking phase is the valid tokens before it, the answer phase those after it.
 * Errors: a boundary position ≥ T (ERR_OUT_OF_RANGE), a non-finite entropy at a valid token (ERR_AE_NON_FINITE).
 */
export const phaseEntropy = asyncForm(phaseEntropyImpl);
/** Synchronous {@link phaseEntropy}. */
export const phaseEntropySync = syncForm(phaseEntropyImpl);
