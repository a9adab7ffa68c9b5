/**
 * Policy losses with their gradients (SPEC §2, §2.1, §7): one call takes the log-probs of a batch [B, T] and
 * returns the aggregated loss, the per-token loss, ∂loss/∂logprob (and ∂loss/∂entropy) — exactly what
 * autograd returns for the expression as written — and the metrics trainers log. δ = lp − old (clamped to
 * ±ratioClamp before exp), r = exp(δ); per valid token
 *   L = w·e·ℓ_mode(r, A) + klCoef·k(lp, ref) − entropyCoef·H,   loss = Σ_b c_b Σ_t m·L
 * with w the importance weights, e an external token mask and c_b the aggregation weight (§2.1).
 *
 * The modes (POLICY_MODES) and the trainer presets (POLICY_PRESETS, data rows citing the code they reproduce)
 * are in policy_presets.ts; the covariance modes' batch-wide token selection (the same on every backend) is in
 * policy_cov.ts. Everything per token runs in lib/js/policy_loss.ts, native/policy_loss.cc or
 * cuda/policy_loss.cu (`backend: 'cuda'`).
 */
import { kernelOf, resolveCudaBackend } from '../backend';
import { DeviceTensor, anyOnDevice, checkDeviceCall, deviceOutputs, deviceValues, kernelArg } from '../cuda';
import { EngineError, ErrorCode, argError } from '../errors';
import * as is from '../is';
import {
  AGGREGATIONS,
  MODES,
  SUM,
  SUMMARY,
  packParams,
  policyLoss as jsPolicyLoss,
  type Aggregation,
  type PolicyKernelIo,
  type PolicyKernelParams,
  type PolicyModeName,
} from '../js/policy_loss';
import { estimatorOf, klClampOf, type KlEstimatorOption } from './kl_penalty';
import { covOptions, selectCovTokens } from './policy_cov';
import { ENGINE, LOSS_TYPES, POLICY_MODES, POLICY_PRESETS, type LossType, type PolicyPreset } from './policy_presets';
import {
  rolloutCorrection,
  rolloutCorrectionSync,
  type RolloutCorrectionMetrics,
  type RolloutCorrectionOptions,
  type RolloutCorrectionResult,
} from './rollout_correction';
import { asyncForm, precisionOf, presetOf, run, syncForm, type Precision, type Preset } from './run';

export type { Aggregation, PolicyModeName } from '../js/policy_loss';
export { LOSS_TYPES, POLICY_MODES, POLICY_PRESETS } from './policy_presets';
export type { LossType } from './policy_presets';

type Values = Float32Array | Float64Array;
type MaskInput = Uint8Array | Float32Array | number[];
/** A [B·T] value array: on the host, or (backend 'cuda', f32) a DeviceTensor read in place. */
type TokenValues = Values | DeviceTensor;

/**
 * The inputs of one call. The [B·T] value arrays may be f32 DeviceTensors (any mix with host arrays): the call
 * then runs on the cuda backend, and with `logprob` on the device its per-token outputs stay there (see
 * {@link PolicyLossResult}), so that tokenStats → policyLoss → tokenStatsBackward never copies a per-token array
 * through the host. Per-row
 * arrays ([B] advantages or weights), masks and the rollout correction stay host-side (decision: they are B
 * values or bytes per token from the sampler; the rollout correction and the covariance modes' token selection
 * read values on the host).
 */
export interface PolicyLossInputs {
  /** [B·T] log-probs of the sampled tokens under the current policy (the differentiable input). */
  logprob: TokenValues;
  /** [B·T] under the policy that produced the data. */
  oldLogprob: TokenValues;
  /** [B] (broadcast over tokens) or [B·T]. */
  advantages: TokenValues;
  /** [B·T] 0/1 response mask (Uint8Array used in place; Float32Array converted). */
  mask: MaskInput;
  shape: [number, number];
  /** [B·T] as reported by the inference engine: triggers rollout correction (opts.rolloutCorrection). */
  rolloutLogprob?: Values;
  /** [B·T] under the reference policy: needed for klCoef > 0 (and gives metrics.klMean). */
  refLogprob?: TokenValues;
  /** [B·T] per-token entropy: needed for entropyCoef ≠ 0; gives gradEntropy and metrics.entropyMean. */
  entropy?: TokenValues;
}

export interface PolicyLossOptions {
  mode?: PolicyModeName;
  /** r is clipped to [1 − clipLow, 1 + clipHigh]; defaults 0.2 / 0.2 (gspo 3e-4 / 4e-4). */
  clipLow?: number;
  clipHigh?: number;
  /** ppo / gppo with A < 0: cap the loss at −A·dualClip (> 1); default off (verl preset: 3). */
  dualClip?: number | null;
  /** |δ| clamp before exp, default 20 (presets differ by mode); null disables. */
  ratioClamp?: number | null;
  aggregation?: Aggregation;
  /** TRL's loss_type names, mapped to an aggregation (LOSS_TYPES); exclusive with `aggregation`. */
  lossType?: LossType;
  /** dr_grpo's normaliser is B·maxCompletionLength (default T). */
  maxCompletionLength?: number;
  /** Data parallel: the whole step's valid tokens (token-mean divisor). */
  globalTokens?: number;
  /** Data parallel: the whole step's non-empty sequences (sequence-mean divisor). */
  globalSequences?: number;
  /** seq-mean-token-sum-norm divisor, default T (Dr.GRPO). */
  normConstant?: number;
  klCoef?: number;
  klEstimator?: KlEstimatorOption;
  /** KL estimator guards (default true; TRL preset false). */
  klClamp?: boolean;
  entropyCoef?: number;
  /** [B] or [B·T] importance weights multiplying the policy term (e.g. from rolloutCorrection). */
  isWeights?: TokenValues;
  /** [B·T] 0/1 mask multiplying the policy term only (e.g. entropyMask's high-entropy tokens). */
  tokenMask?: MaskInput;
  tauPos?: number;
  tauNeg?: number;
  clipCov?: { ratio?: number; lb?: number; ub?: number };
  klCov?: { ratio?: number; coef?: number };
  /** Seed of clipCov's random choice (default 0). */
  seed?: number;
  rolloutCorrection?: RolloutCorrectionOptions;
  preset?: Preset;
  /** 'f32' (default, Float32Array outputs) or 'f64' (f64 arithmetic, Float64Array outputs). */
  precision?: Precision;
  /**
   * Caller-provided [B·T] output buffers (Float32Array; Float64Array with precision 'f64'; DeviceTensors when
   * inputs.logprob is one), filled and returned.
   */
  out?: { tokenLoss?: TokenValues; gradLogprob?: TokenValues; gradEntropy?: TokenValues };
  /**
   * 'cuda' (per call only; f32): the CUDA kernels. 'auto' never picks it for host arrays; a DeviceTensor input
   * selects it (and refuses 'cpu' / 'js').
   */
  backend?: 'auto' | 'cpu' | 'js' | 'cuda';
}

export interface PolicyLossMetrics {
  /** Tokens whose clipped branch is the active one (verl preset: verl's pg_clipfrac). */
  clipFraction: number;
  /** A < 0 and r < 1 − clipLow. */
  clipFractionLow: number;
  /** A > 0 and r > 1 + clipHigh. */
  clipFractionHigh: number;
  /** Tokens where the dual clip binds (verl preset: verl's pg_clipfrac_lower). */
  dualClipFraction: number;
  /** mean(old − lp) over valid tokens, on the clamped δ (verl preset: verl's ppo_kl). */
  approxKl: number;
  ratioMean: number;
  ratioMin: number;
  ratioMax: number;
  entropyMean?: number;
  klMean?: number;
  /** clipCov / klCov: the fraction of valid tokens selected. */
  covFraction?: number;
  validTokens: number;
  validSequences: number;
  /** No valid token: the loss is 0 and every metric 0 (where a trainer's own code would give NaN). */
  emptyBatch: boolean;
  rollout?: RolloutCorrectionMetrics;
}

/** Host arrays, or DeviceTensors when inputs.logprob was one (`A`). */
export interface PolicyLossResult<A extends TokenValues = Values> {
  loss: number;
  /** [B·T] L per valid token (0 at masked ones), before the aggregation weight. */
  tokenLoss: A;
  /** [B·T] ∂loss/∂logprob. */
  gradLogprob: A;
  /** [B·T] ∂loss/∂entropy, when inputs.entropy was given. */
  gradEntropy?: A;
  /** clipCov / klCov: the tokens selected (1). */
  covSelected?: Uint8Array;
  metrics: PolicyLossMetrics;
}

const KEYS = [
  'mode', 'clipLow', 'clipHigh', 'dualClip', 'ratioClamp', 'aggregation', 'lossType', 'maxCompletionLength',
  'globalTokens', 'globalSequences', 'normConstant', 'klCoef', 'klEstimator', 'klClamp', 'entropyCoef', 'isWeights',
  'tokenMask', 'tauPos', 'tauNeg', 'clipCov', 'klCov', 'seed', 'rolloutCorrection', 'preset', 'precision', 'out', 'backend',
] as const;
const INPUT_KEYS = ['logprob', 'oldLogprob', 'advantages', 'mask', 'shape', 'rolloutLogprob', 'refLogprob', 'entropy'] as const;

function optionalNumber(value: unknown, param: string, fallback: number): number {
  return value === undefined ? fallback : is.finiteNumber(value, param);
}

function nonNegative(value: unknown, param: string, fallback: number): number {
  const x = optionalNumber(value, param, fallback);
  if (x < 0) throw argError(ErrorCode.OUT_OF_RANGE, param, 'a number ≥ 0', value);
  return x;
}

function optionalPositive(value: unknown, param: string): number {
  return value === undefined || value === null ? 0 : is.positiveNumber(value, param);
}

function shapeOf(value: unknown): [number, number] {
  if (!Array.isArray(value) || value.length !== 2) throw argError(ErrorCode.INVALID_ARG_TYPE, 'inputs.shape', '[B, T]', value);
  const [b, t] = value.map((v, k) => is.nonNegativeInteger(v, `inputs.shape[${k}]`));
  if (b * t > Number.MAX_SAFE_INTEGER) throw argError(ErrorCode.OUT_OF_RANGE, 'inputs.shape', 'B·T below 2^53', value);
  return [b, t];
}

/** Everything one call resolved: the kernel parameters, the arrays, and what the metrics need. */
interface Job {
  params: PolicyKernelParams;
  io: PolicyKernelIo<TokenValues>;
  preset: PolicyPreset;
  covSelected: Uint8Array | null;
  hasEntropy: boolean;
  hasRef: boolean;
  precision: Precision;
  backend: unknown;
}

interface Resolved {
  job: Job;
  rollout: { inputs: Parameters<typeof rolloutCorrectionSync>[0]; options: RolloutCorrectionOptions | undefined } | null;
}

function resolve(inputs: unknown, options: unknown): Resolved {
  if (!is.isPlainObject(inputs)) throw argError(ErrorCode.INVALID_ARG_TYPE, 'inputs', 'an inputs object', inputs);
  const input = is.options(inputs, 'inputs', INPUT_KEYS);
  const opts = is.options(options, 'opts', KEYS);
  const precision = precisionOf(opts.precision);
  const presetName = presetOf(opts.preset);
  const preset = presetName ? POLICY_PRESETS[presetName] : ENGINE;
  const mode = opts.mode === undefined ? 'ppo' : is.oneOf(opts.mode, 'opts.mode', MODES);
  const info = POLICY_MODES[mode];
  const [rows, cols] = shapeOf(input.shape);
  const n = rows * cols;

  // Clip bounds.
  const clipLow = optionalNumber(opts.clipLow, 'opts.clipLow', info.clipDefaults?.clipLow ?? 0.2);
  const clipHigh = optionalNumber(opts.clipHigh, 'opts.clipHigh', info.clipDefaults?.clipHigh ?? 0.2);
  if (clipLow < 0 || clipLow >= 1) throw argError(ErrorCode.OUT_OF_RANGE, 'opts.clipLow', 'a number in [0, 1)', opts.clipLow);
  if (clipHigh < 0) throw argError(ErrorCode.OUT_OF_RANGE, 'opts.clipHigh', 'a number ≥ 0', opts.clipHigh);
  let dualClip = preset.dualClip;
  if (opts.dualClip !== undefined) dualClip = opts.dualClip === null ? null : is.finiteNumber(opts.dualClip, 'opts.dualClip');
  if (dualClip !== null && dualClip <= 1) throw argError(ErrorCode.OUT_OF_RANGE, 'opts.dualClip', 'a number > 1 (or null)', opts.dualClip);
  if (opts.dualClip !== undefined && opts.dualClip !== null && mode !== 'ppo' && mode !== 'gppo') {
    throw argError(ErrorCode.INVALID_ARG_VALUE, 'opts.dualClip', "mode 'ppo' or 'gppo' (the dual clip is theirs)", mode);
  }
  let ratioClamp = preset.ratioClamp(mode);
  if (opts.ratioClamp !== undefined) ratioClamp = opts.ratioClamp === null ? null : is.positiveNumber(opts.ratioClamp, 'opts.ratioClamp');
  const clamp = ratioClamp ?? Infinity;

  // Aggregation.
  if (opts.aggregation !== undefined && opts.lossType !== undefined) {
    throw argError(ErrorCode.INVALID_ARG_VALUE, 'opts.lossType', 'either aggregation or lossType, not both', opts.lossType);
  }
  const lossType = opts.lossType === undefined ? (presetName === 'trl' && opts.aggregation === undefined ? 'dapo' : null)
    : is.oneOf(opts.lossType, 'opts.lossType', Object.keys(LOSS_TYPES) as LossType[]);
  const aggregation: Aggregation = lossType ? LOSS_TYPES[lossType].aggregation
    : opts.aggregation === undefined ? 'token-mean' : is.oneOf(opts.aggregation, 'opts.aggregation', AGGREGATIONS);
  const forced = preset.forcedAggregation[mode];
  let normConstant = optionalPositive(opts.normConstant, 'opts.normConstant') || cols || 1;
  if (lossType === 'dr_grpo') {
    if (opts.normConstant !== undefined) throw argError(ErrorCode.INVALID_ARG_VALUE, 'opts.normConstant', "no normConstant with lossType 'dr_grpo' (it is B·maxCompletionLength)", opts.normConstant);
    normConstant = Math.max(rows, 1) * (optionalPositive(opts.maxCompletionLength, 'opts.maxCompletionLength') || cols || 1);
  } else if (opts.maxCompletionLength !== undefined) {
    throw argError(ErrorCode.INVALID_ARG_VALUE, 'opts.maxCompletionLength', "lossType 'dr_grpo'", opts.maxCompletionLength);
  }

  // Extras.
  const klCoef = nonNegative(opts.klCoef, 'opts.klCoef', 0);
  const { estimator, straightThrough } = estimatorOf(opts.klEstimator, 'opts.klEstimator');
  const entropyCoef = optionalNumber(opts.entropyCoef, 'opts.entropyCoef', 0);
  if (klCoef > 0 && input.refLogprob === undefined) {
    throw argError(ErrorCode.INVALID_ARG_VALUE, 'inputs.refLogprob', 'the reference log-probs when opts.klCoef > 0', undefined);
  }
  if (entropyCoef !== 0 && input.entropy === undefined) {
    throw argError(ErrorCode.INVALID_ARG_VALUE, 'inputs.entropy', 'per-token entropy when opts.entropyCoef ≠ 0', undefined);
  }
  const tauPos = opts.tauPos === undefined ? 1 : is.positiveNumber(opts.tauPos, 'opts.tauPos');
  const tauNeg = opts.tauNeg === undefined ? 1.05 : is.positiveNumber(opts.tauNeg, 'opts.tauNeg');

  // Arrays: host arrays, or DeviceTensors of n values (per-row arrays are host-only: checked here).
  const onDevice = anyOnDevice(input.logprob, input.oldLogprob, input.advantages, opts.isWeights, input.refLogprob, input.entropy);
  if (onDevice) deviceCallChecks(opts, input, mode, precision);
  const values = (v: unknown, name: string, length: number): TokenValues =>
    v instanceof DeviceTensor ? deviceValues(v, name, n) : is.floatValues(v, name, length, precision);
  const perRow = (v: unknown) => !(v instanceof DeviceTensor) && (v as ArrayLike<number> | undefined)?.length === rows && rows !== n;
  const logprob = values(input.logprob, 'inputs.logprob', n);
  const oldLogprob = values(input.oldLogprob, 'inputs.oldLogprob', n);
  const advantagesPerRow = perRow(input.advantages);
  const advantages = values(input.advantages, 'inputs.advantages', advantagesPerRow ? rows : n);
  if (advantagesPerRow) finiteRows(advantages as Values, 'inputs.advantages');
  const mask = is.kernelMask(input.mask, 'inputs.mask', n);
  const weightsPerRow = opts.isWeights !== undefined && perRow(opts.isWeights);
  const isWeights = opts.isWeights === undefined ? null : values(opts.isWeights, 'opts.isWeights', weightsPerRow ? rows : n);
  if (isWeights && weightsPerRow) finiteRows(isWeights as Values, 'opts.isWeights');
  const tokenMask = opts.tokenMask === undefined ? null : is.kernelMask(opts.tokenMask, 'opts.tokenMask', n);
  const refLogprob = input.refLogprob === undefined ? null : values(input.refLogprob, 'inputs.refLogprob', n);
  const entropy = input.entropy === undefined ? null : values(input.entropy, 'inputs.entropy', n);
  const rollout = input.rolloutLogprob === undefined ? null : {
    inputs: { oldLogprob: oldLogprob as Values, rolloutLogprob: input.rolloutLogprob as Values, mask, shape: [rows, cols] as [number, number] },
    options: opts.rolloutCorrection as RolloutCorrectionOptions | undefined,
  };
  if (!rollout && opts.rolloutCorrection !== undefined) {
    throw argError(ErrorCode.INVALID_ARG_VALUE, 'inputs.rolloutLogprob', 'the rollout log-probs with opts.rolloutCorrection', undefined);
  }

  // The covariance modes.
  const cov = covOptions(mode, opts, preset);
  const upperOnly = mode === 'cispo' && preset.cispoUpperOnly;
  if (upperOnly && !(clipHigh > 0)) throw argError(ErrorCode.OUT_OF_RANGE, 'opts.clipHigh', 'a cap > 0 (TRL cispo: absolute bound)', clipHigh);
  const params: PolicyKernelParams = {
    mode,
    ratioLow: upperOnly ? -Infinity : 1 - clipLow,
    ratioHigh: upperOnly ? clipHigh : 1 + clipHigh,
    logLow: -clipLow,
    logHigh: clipHigh,
    dualClip: (mode === 'ppo' || mode === 'gppo') && dualClip !== null ? dualClip : 0,
    clampLow: -clamp,
    clampHigh: clamp,
    tauPos,
    tauNeg,
    covCoef: cov?.coef ?? 0,
    seqClampLow: preset.gspoSeqClamp[0],
    seqClampHigh: preset.gspoSeqClamp[1],
    gmpoWeightEps: isWeights ? preset.gmpoWeightEps : 0,
    klEstimator: estimator,
    klClamp: klClampOf(opts.klClamp, 'opts.klClamp', presetName),
    klStraightThrough: straightThrough,
    klCoef,
    entropyCoef,
    aggregation,
    policyAggregation: forced ?? aggregation,
    globalTokens: optionalPositive(opts.globalTokens, 'opts.globalTokens'),
    globalSequences: optionalPositive(opts.globalSequences, 'opts.globalSequences'),
    normConstant,
    countEps: preset.countEps,
    seqDivisorAllRows: (mode === 'gmpo' && preset.gmpoAllRows) || (lossType !== null && LOSS_TYPES[lossType].allRows),
    gmpoCountOutside: preset.metrics === 'verl',
  };
  const inputArrays = [logprob, oldLogprob, advantages, isWeights, refLogprob, entropy];
  // The outputs live where the differentiable input does.
  const out = logprob instanceof DeviceTensor
    ? deviceOutputs(is.options(opts.out, 'opts.out', OUT_NAMES), entropy ? OUT_NAMES : OUT_NAMES.slice(0, 2), n, inputArrays)
    : outBuffers(opts.out, n, precision, inputArrays.filter((a): a is Values => !(a instanceof DeviceTensor)), entropy !== null);
  const io: PolicyKernelIo<TokenValues> = {
    rows, cols, logprob, oldLogprob, advantages, advantagesPerRow, isWeights, weightsPerRow, refLogprob, entropy, mask,
    tokenMask, selected: null, tokenLoss: out.tokenLoss, gradLogprob: out.gradLogprob,
    gradEntropy: out.gradEntropy ?? null,
  };
  if (cov) io.selected = selectCovTokens(hostIo(io), params, cov, mode as 'clipCov' | 'klCov', preset);
  return {
    job: {
      params, io, preset, covSelected: io.selected, hasEntropy: entropy !== null, hasRef: refLogprob !== null, precision,
      backend: onDevice ? 'cuda' : opts.backend,
    },
    rollout,
  };
}

/**
 * The output buffers: the caller's (`opts.out`, each of n elements in the precision's array type, none of them
 * an input: the kernels read inputs while writing outputs) or new ones; gradEntropy only with an entropy input.
 */
function outBuffers(value: unknown, n: number, precision: Precision, inputs: readonly (Values | null)[], withEntropy: boolean) {
  const given = is.options(value, 'opts.out', OUT_NAMES);
  const pick = (name: 'tokenLoss' | 'gradLogprob' | 'gradEntropy'): Values => is.outputArray(given[name], `opts.out.${name}`, n, precision, inputs);
  return { tokenLoss: pick('tokenLoss'), gradLogprob: pick('gradLogprob'), gradEntropy: withEntropy ? pick('gradEntropy') : null };
}

/** What a call with DeviceTensor inputs cannot do: run on a host backend, in f64, or read values on the host. */
function deviceCallChecks(opts: Partial<Record<(typeof KEYS)[number], unknown>>, input: Partial<Record<(typeof INPUT_KEYS)[number], unknown>>,
  mode: PolicyModeName, precision: Precision): void {
  checkDeviceCall(opts.backend, precision);
  if (input.rolloutLogprob !== undefined) {
    throw argError(ErrorCode.INVALID_ARG_VALUE, 'inputs.rolloutLogprob', 'host arrays for a rollout correction (it is applied on the host)', 'given with DeviceTensor inputs');
  }
  if (mode === 'clipCov' || mode === 'klCov') {
    throw argError(ErrorCode.INVALID_ARG_VALUE, 'opts.mode', 'host arrays for clipCov / klCov (their token selection runs on the host)', mode);
  }
}

const OUT_NAMES = ['tokenLoss', 'gradLogprob', 'gradEntropy'] as const;

/** The io of a step that reads values on the host (the js kernel, the covariance selection, the rollout
 * correction): device inputs were refused for each before it is reached. */
function hostIo(io: PolicyKernelIo<TokenValues>): PolicyKernelIo {
  const arrays = [io.logprob, io.oldLogprob, io.advantages, io.isWeights, io.refLogprob, io.entropy, io.tokenLoss, io.gradLogprob, io.gradEntropy];
  if (anyOnDevice(...arrays)) throw new EngineError(ErrorCode.INVALID_ARG_VALUE, 'policyLoss: DeviceTensor arrays reached a host-side step');
  return io as PolicyKernelIo;
}

function finiteRows(a: Values, param: string): void {
  for (let i = 0; i < a.length; i++) {
    if (!Number.isFinite(a[i])) {
      throw new EngineError(ErrorCode.NON_FINITE, `Expected finite values for ${param} but ${param}[${i}] is ${a[i]}`, { param: `${param}[${i}]`, row: i });
    }
  }
}

/** The metrics from the kernel's summary: masked means over valid tokens, 0 when there are none. */
function metricsOf(job: Job, summary: Float64Array): PolicyLossMetrics {
  const s = (k: number) => summary[SUMMARY.sums + k];
  const valid = s(SUM.valid);
  const den = valid + job.preset.metricEps;
  const mean = (x: number) => (valid > 0 ? x / den : 0);
  const mode = job.params.mode;
  const low = s(SUM.clippedLow);
  const high = s(SUM.clippedHigh);
  const metrics: PolicyLossMetrics = {
    clipFraction: mean(low + high),
    clipFractionLow: mean(low),
    clipFractionHigh: mean(high),
    dualClipFraction: mean(s(SUM.dualClipped)),
    approxKl: mean(s(SUM.negLogRatio)),
    ratioMean: mean(s(SUM.ratio)),
    ratioMin: summary[SUMMARY.ratioMin],
    ratioMax: summary[SUMMARY.ratioMax],
    validTokens: valid,
    validSequences: summary[SUMMARY.sequences],
    emptyBatch: valid === 0,
  };
  if (job.hasEntropy) metrics.entropyMean = mean(s(SUM.entropy));
  if (job.hasRef) metrics.klMean = mean(s(SUM.kl));
  if (mode === 'clipCov' || mode === 'klCov') metrics.covFraction = mean(s(SUM.selected));
  if (job.preset.metrics === 'verl') {
    // verl's names under ours (shared/vectors README): pg_clipfrac → clipFraction, pg_clipfrac_lower →
    // dualClipFraction, ppo_kl → approxKl, each with verl's own definition for the mode.
    if (mode === 'gmpo') {
      metrics.clipFraction = mean(high);
      metrics.dualClipFraction = mean(low);
    } else if (mode === 'clipCov') {
      metrics.clipFraction = mean(s(SUM.selected));
    } else if (mode === 'sapo' || mode === 'reinforce' || mode === 'klCov') {
      metrics.clipFraction = 0;
    }
    if (mode === 'klCov') metrics.approxKl = mean(s(SUM.absLogRatio));
  }
  return metrics;
}

function finish(job: Job, summary: Float64Array, rolloutMetrics: RolloutCorrectionMetrics | null): PolicyLossResult<TokenValues> {
  const badMask = summary[SUMMARY.badMask];
  if (badMask >= 0) {
    const which = job.io.tokenMask && job.io.mask[badMask] <= 1 ? 'opts.tokenMask' : 'inputs.mask';
    throw argError(ErrorCode.INVALID_ARG_VALUE, `${which}[${badMask}]`, '0 or 1', (which === 'inputs.mask' ? job.io.mask : job.io.tokenMask!)[badMask]);
  }
  const badRow = summary[SUMMARY.nonFiniteRow];
  if (badRow >= 0) {
    throw new EngineError(
      ErrorCode.NON_FINITE,
      `policyLoss: a non-finite value (logprob, oldLogprob, advantages, isWeights, refLogprob or entropy) at a valid token of row ${badRow}`,
      { param: 'inputs', row: badRow },
    );
  }
  const result: PolicyLossResult<TokenValues> = {
    loss: summary[SUMMARY.loss],
    tokenLoss: job.io.tokenLoss,
    gradLogprob: job.io.gradLogprob,
    metrics: metricsOf(job, summary),
  };
  if (job.io.gradEntropy) result.gradEntropy = job.io.gradEntropy;
  if (job.covSelected) result.covSelected = job.covSelected;
  if (rolloutMetrics) result.metrics.rollout = rolloutMetrics;
  return result;
}

/** Folds a rollout correction into the job: its weights multiply the importance weights, its mask the token mask. */
function applyCorrection(job: Job, correction: RolloutCorrectionResult): void {
  const io = hostIo(job.io);
  const n = io.rows * io.cols;
  const weights = job.precision === 'f64' ? new Float64Array(n) : new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const w = io.isWeights ? (io.weightsPerRow ? io.isWeights[Math.floor(i / io.cols)] : io.isWeights[i]) : 1;
    weights[i] = w * correction.weights[i];
  }
  io.isWeights = weights;
  io.weightsPerRow = false;
  const tokenMask = new Uint8Array(n);
  for (let i = 0; i < n; i++) tokenMask[i] = (io.tokenMask ? io.tokenMask[i] : 1) & correction.mask[i];
  io.tokenMask = tokenMask;
  if (job.params.mode === 'gmpo') job.params.gmpoWeightEps = job.preset.gmpoWeightEps;
}

function runJob(async: boolean, job: Job, rolloutMetrics: RolloutCorrectionMetrics | null) {
  const { io, params } = job;
  const summary = new Float64Array(SUMMARY.size);
  const backend = resolveCudaBackend(job.backend, io.rows * io.cols, async);
  if (backend !== 'js' && backend !== 'cpu' && job.precision === 'f64') {
    throw argError(ErrorCode.INVALID_ARG_VALUE, 'opts.precision', "'f32' on the cuda backend (use the cpu backend for 'f64')", 'f64');
  }
  // The cuda addon takes the cpu addon's arguments (cuda/addon/policy_loss.cc).
  const kernel = kernelOf(backend, 'policyLoss');
  return run(
    backend === 'js' ? 'js' : 'cpu', async,
    (a) => kernel(
      io.rows, io.cols, job.precision === 'f64', kernelArg(io.logprob, 'inputs.logprob'), kernelArg(io.oldLogprob, 'inputs.oldLogprob'),
      kernelArg(io.advantages, 'inputs.advantages'), io.advantagesPerRow, kernelArg(io.isWeights, 'opts.isWeights'), io.weightsPerRow,
      kernelArg(io.refLogprob, 'inputs.refLogprob'), kernelArg(io.entropy, 'inputs.entropy'), io.mask, io.tokenMask, io.selected,
      kernelArg(io.tokenLoss, 'opts.out.tokenLoss'), kernelArg(io.gradLogprob, 'opts.out.gradLogprob'),
      kernelArg(io.gradEntropy, 'opts.out.gradEntropy'), packParams(params), summary, a,
    ),
    () => jsPolicyLoss(hostIo(io), params, summary),
    () => finish(job, summary, rolloutMetrics),
  );
}

function policyLossImpl(async: boolean, inputs: unknown, options?: unknown): PolicyLossResult<TokenValues> | Promise<PolicyLossResult<TokenValues>> {
  const { job, rollout } = resolve(inputs, options);
  if (!rollout) return runJob(async, job, null);
  // The correction runs on the loss's backend (under 'cuda' on the device too).
  const correctionOptions = { ...(rollout.options ?? {}), precision: job.precision, backend: job.backend } as RolloutCorrectionOptions;
  if (!async) {
    const correction = rolloutCorrectionSync(rollout.inputs, correctionOptions);
    applyCorrection(job, correction);
    return runJob(false, job, correction.metrics);
  }
  return rolloutCorrection(rollout.inputs, correctionOptions).then((correction) => {
    applyCorrection(job, correction);
    return runJob(true, job, correction.metrics);
  });
}

/**
 * The policy loss of a batch [B, T] with its exact gradient (SPEC §2): every mode of POLICY_MODES, every
 * aggregation of §2.1 (and TRL's loss types), KL and entropy terms, importance weights, token masks, rollout
 * correction, and the trainer presets of §7. Returns `{loss, tokenLoss[B·T], gradLogprob[B·T],
 * gradEntropy?[B·T], covSelected?, metrics}` (Float32Array; Float64Array with precision 'f64').
 * Edge cases: masked tokens give 0 loss and 0 gradient; a batch with no valid token gives loss 0, zero
 * gradients and metrics.emptyBatch (never NaN). Errors: shapes (ERR_AE_SHAPE_MISMATCH), options
 * (ERR_OUT_OF_RANGE / ERR_INVALID_ARG_VALUE), a mask entry not 0/1, and a non-finite input at a valid token
 * (ERR_AE_NON_FINITE with its row; per-row advantages are checked before the kernel runs).
 */
export const policyLoss = asyncForm(policyLossImpl) as {
  (inputs: PolicyLossInputs & { logprob: DeviceTensor }, options?: PolicyLossOptions): Promise<PolicyLossResult<DeviceTensor>>;
  (inputs: PolicyLossInputs, options?: PolicyLossOptions): Promise<PolicyLossResult>;
};
export const policyLossSync = syncForm(policyLossImpl) as {
  (inputs: PolicyLossInputs & { logprob: DeviceTensor }, options?: PolicyLossOptions): PolicyLossResult<DeviceTensor>;
  (inputs: PolicyLossInputs, options?: PolicyLossOptions): PolicyLossResult;
};
