/**
 * KL estimators (SPEC §3) and the adaptive KL coefficient: `klPenalty(lp, ref, {estimator, clamp})` returns
 * per-element values and their gradient w.r.t. lp, d = lp − ref:
 *   k1 = d   abs = |d|   k2 = ½d²   k3 = exp(−d) − 1 + d  (−d clamped to ±20 before exp, value to ±10)
 * and the straight-through forms ('k1+', 'abs+', 'k3+': the named value, the gradient of k2). Presets change
 * the guards: TRL none, OpenRLHF every estimator's value in ±10.
 */
import { kernelOf, resolveCudaBackend } from '../backend';
import { DeviceTensor, anyOnDevice, checkDeviceCall, deviceOutputs, deviceValues, kernelArg } from '../cuda';
import { EngineError, ErrorCode, argError } from '../errors';
import * as is from '../is';
import { KL_CLAMPS, KL_ESTIMATORS, klPenalty as jsKlPenalty, type KlClampName, type KlEstimatorName } from '../js/kl_penalty';
import { asyncForm, precisionOf, presetOf, run, syncForm, type Precision, type Preset } from './run';

export type KlEstimatorOption = KlEstimatorName | 'k1+' | 'abs+' | 'k2+' | 'k3+';
export const KL_ESTIMATOR_OPTIONS: readonly KlEstimatorOption[] = [...KL_ESTIMATORS, 'k1+', 'abs+', 'k2+', 'k3+'];

export interface ParsedEstimator {
  estimator: KlEstimatorName;
  straightThrough: boolean;
}

export function estimatorOf(value: unknown, param: string): ParsedEstimator {
  const name = value === undefined ? 'k3' : is.oneOf(value, param, KL_ESTIMATOR_OPTIONS);
  const straightThrough = name.endsWith('+');
  return { estimator: (straightThrough ? name.slice(0, -1) : name) as KlEstimatorName, straightThrough };
}

/**
 * The guards in force: `clamp: false` → none; `clamp: true` (default) → the preset's guards (engine and verl:
 * k3's input ±20 and value ±10; OpenRLHF: every value ±10); TRL's default is none (its k3 is unguarded).
 */
export function klClampOf(value: unknown, param: string, preset: Preset | null): KlClampName {
  if (value !== undefined && typeof value !== 'boolean') throw argError(ErrorCode.INVALID_ARG_TYPE, param, 'a boolean', value);
  const clamp = value === undefined ? preset !== 'trl' : value;
  if (!clamp) return 'none';
  return preset === 'openrlhf' ? 'all' : 'k3';
}

export interface KlPenaltyOptions {
  /** 'k1' | 'abs' | 'k2' | 'k3' (default) and the straight-through 'k1+' | 'abs+' | 'k2+' | 'k3+'. */
  estimator?: KlEstimatorOption;
  /** Apply the estimator guards (default true; TRL preset: false). */
  clamp?: boolean;
  preset?: Preset;
  /** 'f32' (default, Float32Array outputs) or 'f64'. */
  precision?: Precision;
  /**
   * 'cuda' (per call only; f32): the CUDA kernel. 'auto' never picks it for host arrays; a DeviceTensor input
   * selects it (and refuses 'cpu' / 'js').
   */
  backend?: 'auto' | 'cpu' | 'js' | 'cuda';
  /**
   * Buffers to write into instead of new arrays (each N values in the precision's type, neither an input;
   * DeviceTensors when logprob is one): a trainer calling every step can reuse them, and a call on 10⁸ values
   * then allocates nothing.
   */
  out?: { value?: Float32Array | Float64Array | DeviceTensor; grad?: Float32Array | Float64Array | DeviceTensor };
}

type Values = Float32Array | Float64Array;

/** Host arrays, or (logprob a DeviceTensor) DeviceTensors. */
export interface KlPenaltyResult<A extends Values | DeviceTensor = Values> {
  /** The estimator's value per element. */
  value: A;
  /** ∂value/∂logprob per element (k2's for the '+' forms). */
  grad: A;
}

const KEYS = ['estimator', 'clamp', 'preset', 'precision', 'backend', 'out'] as const;

function klPenaltyImpl(async: boolean, logprob: unknown, refLogprob: unknown, options?: KlPenaltyOptions) {
  const opts = is.options(options, 'opts', KEYS);
  const precision = precisionOf(opts.precision);
  const preset = presetOf(opts.preset);
  const { estimator, straightThrough } = estimatorOf(opts.estimator, 'opts.estimator');
  const clamp = klClampOf(opts.clamp, 'opts.clamp', preset);
  const n = (logprob as { length?: number } | undefined)?.length ?? 0;
  // DeviceTensor inputs (f32, n values) run on the cuda backend; outputs live where logprob does.
  const onDevice = anyOnDevice(logprob, refLogprob);
  if (onDevice) checkDeviceCall(opts.backend, opts.precision);
  const values = (v: unknown, name: string) => (v instanceof DeviceTensor ? deviceValues(v, name, n) : is.floatValues(v, name, n, precision));
  const lp = values(logprob, 'logprob');
  const ref = values(refLogprob, 'refLogprob');
  const out = is.options(opts.out, 'opts.out', ['value', 'grad'] as const);
  const hostInputs = [lp, ref].filter((a): a is Values => !(a instanceof DeviceTensor));
  let value: Values | DeviceTensor, grad: Values | DeviceTensor;
  if (lp instanceof DeviceTensor) {
    ({ value, grad } = deviceOutputs(out, ['value', 'grad'] as const, n, [lp, ref]));
  } else {
    value = is.outputArray(out.value, 'opts.out.value', n, precision, hostInputs);
    grad = is.outputArray(out.grad, 'opts.out.grad', n, precision, [...hostInputs, value]);
  }
  const backend = resolveCudaBackend(onDevice ? 'cuda' : opts.backend, n, async);
  if (backend !== 'js' && backend !== 'cpu' && precision === 'f64') {
    throw argError(ErrorCode.INVALID_ARG_VALUE, 'opts.precision', "'f32' on the cuda backend (use the cpu backend for 'f64')", 'f64');
  }
  // The cuda addon takes the cpu addon's arguments (cuda/addon/kl_penalty.cc).
  const kernel = kernelOf(backend, 'klPenalty');
  return run(
    backend === 'js' ? 'js' : 'cpu', async,
    (a) => kernel(n, precision === 'f64', kernelArg(lp, 'logprob'), kernelArg(ref, 'refLogprob'), kernelArg(value, 'opts.out.value'),
      kernelArg(grad, 'opts.out.grad'), KL_ESTIMATORS.indexOf(estimator), KL_CLAMPS.indexOf(clamp), straightThrough, a),
    // The js backend is never chosen for DeviceTensors (they select 'cuda' above).
    () => jsKlPenalty(lp as Values, ref as Values, estimator, clamp, straightThrough, value as Values, grad as Values),
    (bad) => {
      if (bad >= 0) {
        throw new EngineError(ErrorCode.NON_FINITE, `klPenalty: logprob[${bad}] or refLogprob[${bad}] is not finite`,
          { param: 'logprob', row: bad });
      }
      return { value, grad } as KlPenaltyResult<Values | DeviceTensor>;
    },
  );
}

/**
 * KL estimator values and gradients (SPEC §3), elementwise over `logprob` and `refLogprob` (Float32Array or
 * Float64Array, same length N). Returns `{value[N], grad[N]}` (Float32Array; Float64Array with precision 'f64').
 * A non-finite input throws ERR_AE_NON_FINITE with its index. Source: verl `kl_penalty`, OpenRLHF
 * `compute_approx_kl`, TRL GRPOTrainer's per-token KL; J. Schulman, "Approximating KL divergence" (2020).
 */
export const klPenalty = asyncForm(klPenaltyImpl) as {
  (logprob: DeviceTensor, refLogprob: Values | DeviceTensor, options?: KlPenaltyOptions): Promise<KlPenaltyResult<DeviceTensor>>;
  (logprob: Values, refLogprob: Values | DeviceTensor, options?: KlPenaltyOptions): Promise<KlPenaltyResult>;
};
export const klPenaltySync = syncForm(klPenaltyImpl) as {
  (logprob: DeviceTensor, refLogprob: Values | DeviceTensor, options?: KlPenaltyOptions): KlPenaltyResult<DeviceTensor>;
  (logprob: Values, refLogprob: Values | DeviceTensor, options?: KlPenaltyOptions): KlPenaltyResult;
};

export interface AdaptiveKlOptions {
  /** β at the start. */
  initKlCoef: number;
  /** The KL the controller steers toward. */
  targetKl: number;
  /** Steps over which a full proportional error moves β by its own size. */
  horizon: number;
}

/**
 * The adaptive KL coefficient of Ziegler et al. (arXiv:1909.08593), as verl's and OpenRLHF's
 * AdaptiveKLController: e = clip(KL/target − 1, ±0.2), β ← β·(1 + e·nSteps/horizon).
 */
export class AdaptiveKlController {
  value: number;
  readonly target: number;
  readonly horizon: number;

  constructor(options: AdaptiveKlOptions) {
    const opts = is.options(options, 'opts', ['initKlCoef', 'targetKl', 'horizon'] as const);
    this.value = is.finiteNumber(opts.initKlCoef, 'opts.initKlCoef');
    if (this.value < 0) throw argError(ErrorCode.OUT_OF_RANGE, 'opts.initKlCoef', 'a number ≥ 0', this.value);
    this.target = is.positiveNumber(opts.targetKl, 'opts.targetKl');
    this.horizon = is.positiveNumber(opts.horizon, 'opts.horizon');
  }

  /** Moves β toward the target given the KL measured over the last `nSteps` samples; returns the new β. */
  update(currentKl: number, nSteps: number): number {
    is.finiteNumber(currentKl, 'currentKl');
    is.finiteNumber(nSteps, 'nSteps');
    const error = Math.min(Math.max(currentKl / this.target - 1, -0.2), 0.2);
    this.value *= 1 + (error * nSteps) / this.horizon;
    return this.value;
  }
}
