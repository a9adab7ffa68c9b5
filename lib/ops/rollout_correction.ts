/**
 * Rollout correction (SPEC §2.2): importance weights for the mismatch between the inference engine's
 * log-probs (`roll`) and the trainer's (`old`), δ_r = old − roll:
 *   token:      w = exp(clamp(δ_r, ±20))
 *   sequence:   w_b = exp(clamp(Σ_t m·δ_r, ±20))
 *   geometric:  w_b = exp(Σ_t m·δ_r / |y_b|)
 * truncated to [low, high] ('truncate', TIS) or kept raw inside the bounds and zeroed outside ('mask', icepop
 * / sequence masking), with optional rejection of tokens or sequences whose divergence statistic exceeds a
 * bound. The weights multiply the policy term of policyLoss (its `isWeights`), the mask its `tokenMask`.
 * Backends: js (lib/js/rollout_correction.ts), cpu (native/rollout_correction.cc) and, per call with
 * `backend: 'cuda'` and f32 arrays, cuda/rollout_correction.cu; all three compute in f64.
 */
import { kernelOf, resolveCudaBackend } from '../backend';
import { EngineError, ErrorCode, argError } from '../errors';
import * as is from '../is';
import {
  CORRECTION_MODES,
  CSUM,
  CSUMMARY,
  LEVELS,
  REJECT_AGGREGATES,
  STATISTICS,
  rolloutCorrection as jsRolloutCorrection,
  type CorrectionMode,
  type CorrectionParams,
  type Level,
  type RejectAggregate,
  type Statistic,
} from '../js/rollout_correction';
import { asyncForm, precisionOf, run, syncForm, type Precision } from './run';

export interface RolloutCorrectionInputs {
  /** [B·T] log-probs under the trainer's behaviour policy. */
  oldLogprob: Float32Array | Float64Array;
  /** [B·T] as reported by the inference engine. */
  rolloutLogprob: Float32Array | Float64Array;
  /** [B·T] 0/1 response mask. */
  mask: Uint8Array | Float32Array | number[];
  shape: [number, number];
}

export interface RolloutCorrectionOptions {
  /** 'token' (default) | 'sequence' | 'geometric'. */
  level?: Level;
  /** 'truncate' (default) | 'mask'. */
  mode?: CorrectionMode;
  /** Lower bound of the weight, default null (none: truncate from above only). */
  low?: number | null;
  /** Upper bound of the weight, default 2. */
  high?: number;
  /** Drop tokens (aggregate 'token') or whole sequences ('sum' | 'mean' | 'max' of the statistic over the
   * sequence) whose statistic k1 = −δ_r, k2 = ½δ_r² or k3 = exp(δ_r) − 1 − δ_r exceeds `bound`. */
  reject?: { statistic: Statistic; aggregate?: RejectAggregate; bound: number };
  /** 'f32' (default, Float32Array weights) or 'f64' (not on the cuda backend). */
  precision?: Precision;
  /** 'cuda' (per call only; precision 'f32'): the CUDA kernel, host arrays in and out. 'auto' never picks it. */
  backend?: 'auto' | 'cpu' | 'js' | 'cuda';
}

export interface RolloutCorrectionMetrics {
  /** Mean, min, max and population std of the final weights over the kept tokens. */
  weightMean: number;
  weightMin: number;
  weightMax: number;
  weightStd: number;
  /** Valid tokens whose raw weight was above `high` / below `low`. */
  fractionTruncatedHigh: number;
  fractionTruncatedLow: number;
  /** Valid tokens dropped (rejected, or outside the bounds in mask mode). */
  fractionRejected: number;
  /** Effective sample size as a fraction, 1 / mean(ŵ²) with ŵ = w / mean(w) over the kept tokens. */
  ess: number;
  /** E[w²] − 1 over the valid tokens, on the raw (untruncated) weights. */
  chi2: number;
  /** mean_m(roll − old): the mismatch KL estimate (k1). */
  mismatchKl: number;
  validTokens: number;
  emptyBatch: boolean;
}

export interface RolloutCorrectionResult<A extends Float32Array | Float64Array = Float32Array | Float64Array> {
  /** [B·T] weights: 0 at masked, rejected and masked-out tokens. */
  weights: A;
  /** [B·T] the tokens kept (the input mask minus the rejected ones). */
  mask: Uint8Array;
  metrics: RolloutCorrectionMetrics;
}

const KEYS = ['level', 'mode', 'low', 'high', 'reject', 'precision', 'backend'] as const;
const INPUT_KEYS = ['oldLogprob', 'rolloutLogprob', 'mask', 'shape'] as const;

function resolve(inputs: unknown, options: unknown) {
  if (!is.isPlainObject(inputs)) throw argError(ErrorCode.INVALID_ARG_TYPE, 'inputs', 'an inputs object', inputs);
  const input = is.options(inputs, 'inputs', INPUT_KEYS);
  const opts = is.options(options, 'opts', KEYS);
  const precision = precisionOf(opts.precision);
  if (!Array.isArray(input.shape) || input.shape.length !== 2) {
    throw argError(ErrorCode.INVALID_ARG_TYPE, 'inputs.shape', '[B, T]', input.shape);
  }
  const [rows, cols] = input.shape.map((v: unknown, k: number) => is.nonNegativeInteger(v, `inputs.shape[${k}]`));
  const n = rows * cols;
  const level = opts.level === undefined ? 'token' : is.oneOf(opts.level, 'opts.level', LEVELS);
  const mode = opts.mode === undefined ? 'truncate' : is.oneOf(opts.mode, 'opts.mode', CORRECTION_MODES);
  const high = opts.high === undefined ? 2 : is.positiveNumber(opts.high, 'opts.high');
  const low = opts.low === undefined || opts.low === null ? -Infinity : is.finiteNumber(opts.low, 'opts.low');
  if (opts.low !== undefined && opts.low !== null && (low < 0 || low > high)) throw argError(ErrorCode.OUT_OF_RANGE, 'opts.low', `a number in [0, high = ${high}] or null`, opts.low);
  let reject: CorrectionParams['reject'] = null;
  if (opts.reject !== undefined) {
    const r = is.options(opts.reject, 'opts.reject', ['statistic', 'aggregate', 'bound'] as const);
    reject = {
      statistic: is.oneOf(r.statistic, 'opts.reject.statistic', STATISTICS),
      aggregate: r.aggregate === undefined ? 'token' : is.oneOf(r.aggregate, 'opts.reject.aggregate', REJECT_AGGREGATES),
      bound: is.finiteNumber(r.bound, 'opts.reject.bound'),
    };
  }
  const params: CorrectionParams = { level, mode, low, high, reject };
  return {
    rows, cols, precision, params, backend: opts.backend,
    old: is.floatValues(input.oldLogprob, 'inputs.oldLogprob', n, precision),
    roll: is.floatValues(input.rolloutLogprob, 'inputs.rolloutLogprob', n, precision),
    mask: is.mask01(input.mask, 'inputs.mask', n),
  };
}

function packParams(p: CorrectionParams): Float64Array {
  return Float64Array.of(
    LEVELS.indexOf(p.level), CORRECTION_MODES.indexOf(p.mode), p.low, p.high, p.reject ? 1 : 0,
    p.reject ? STATISTICS.indexOf(p.reject.statistic) : 0, p.reject ? REJECT_AGGREGATES.indexOf(p.reject.aggregate) : 0,
    p.reject ? p.reject.bound : 0,
  );
}

function metricsOf(summary: Float64Array): RolloutCorrectionMetrics {
  const s = (k: number) => summary[CSUMMARY.sums + k];
  const valid = s(CSUM.valid);
  const kept = s(CSUM.kept);
  const perValid = (x: number) => (valid > 0 ? x / valid : 0);
  const mean = kept > 0 ? s(CSUM.weight) / kept : 0;
  const meanSq = kept > 0 ? s(CSUM.weightSq) / kept : 0;
  return {
    weightMean: mean,
    weightMin: summary[CSUMMARY.weightMin],
    weightMax: summary[CSUMMARY.weightMax],
    weightStd: Math.sqrt(Math.max(meanSq - mean * mean, 0)),
    fractionTruncatedHigh: perValid(s(CSUM.truncatedHigh)),
    fractionTruncatedLow: perValid(s(CSUM.truncatedLow)),
    fractionRejected: perValid(s(CSUM.rejected)),
    ess: meanSq > 0 ? (mean * mean) / meanSq : 0,
    chi2: valid > 0 ? s(CSUM.rawWeightSq) / valid - 1 : 0,
    mismatchKl: perValid(s(CSUM.mismatch)),
    validTokens: valid,
    emptyBatch: valid === 0,
  };
}

function rolloutCorrectionImpl(async: boolean, inputs: unknown, options?: unknown) {
  const r = resolve(inputs, options);
  const n = r.rows * r.cols;
  const weights = r.precision === 'f64' ? new Float64Array(n) : new Float32Array(n);
  const keep = new Uint8Array(n);
  const summary = new Float64Array(CSUMMARY.size);
  const backend = resolveCudaBackend(r.backend, n, async);
  if (backend !== 'js' && backend !== 'cpu' && r.precision === 'f64') {
    throw argError(ErrorCode.INVALID_ARG_VALUE, 'opts.precision', "'f32' on the cuda backend (use the cpu backend for 'f64')", 'f64');
  }
  // The cuda addon takes the cpu addon's arguments (cuda/addon/rollout_correction.cc).
  const kernel = kernelOf(backend, 'rolloutCorrection');
  return run(
    backend === 'js' ? 'js' : 'cpu', async,
    (a) => kernel(r.rows, r.cols, r.precision === 'f64', r.old, r.roll, r.mask, weights, keep, packParams(r.params), summary, a),
    () => jsRolloutCorrection(r.rows, r.cols, r.old, r.roll, r.mask, r.params, weights, keep, summary),
    (bad) => {
      if (bad >= 0) {
        throw new EngineError(ErrorCode.NON_FINITE, `rolloutCorrection: a non-finite oldLogprob or rolloutLogprob at a valid token of row ${bad}`,
          { param: 'inputs', row: bad });
      }
      return { weights, mask: keep, metrics: metricsOf(summary) } as RolloutCorrectionResult;
    },
  );
}

/**
 * Rollout correction weights, mask and metrics for a batch [B, T] (SPEC §2.2). Returns `{weights[B·T],
 * mask[B·T] Uint8Array, metrics}`; weights Float32Array (Float64Array with precision 'f64'). Sources: TIS
 * (Yao et al. 2025, verl `rollout_is`, OpenRLHF `tis`), icepop / sequence masking (OpenRLHF `icepop`,
 * `seq-mask-tis`, TRL `vllm_importance_sampling_mode`), rejection (verl `rollout_rs`). Note verl's k1 rejection
 * bounds the ratio on both sides; here every statistic is bounded from above (k1 = roll − old).
 */
export const rolloutCorrection = asyncForm(rolloutCorrectionImpl) as (
  inputs: RolloutCorrectionInputs, options?: RolloutCorrectionOptions,
) => Promise<RolloutCorrectionResult>;
export const rolloutCorrectionSync = syncForm(rolloutCorrectionImpl) as (
  inputs: RolloutCorrectionInputs, options?: RolloutCorrectionOptions,
) => RolloutCorrectionResult;
