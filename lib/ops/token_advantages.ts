/**
 * Token-level advantages on [B, T] arrays with a 0/1 mask (SPEC §4.2–§4.3):
 *
 *   gae:                δ_t = r_t + γ·V_next − V_t,  g_t = δ_t + γλ·g_next,  returns = g + V, advantages
 *                       whitened over the valid tokens (§4.4) unless whiten: false
 *   discountedReturns:  G_t = r_t + γ·G_{t+1}
 *   reinforcePlusPlus:  discountedReturns whitened over the batch, times the mask
 *   placeOutcome:       R_b at the last valid token of row b
 *   optimalTokenBaseline: A_t = (G_t − b_t)·m_t, b_t = Σ_i G_it·W_it·m_it / (Σ_i W_it·m_it + 1e-8) per group
 *                       and position, W_t = Σ_{s≤t} m_s·(1 − 2π_s + Σπ²_s), π = exp(oldLogprobs)
 *
 * Multi-turn rule: at masked positions (observation tokens) the scans carry V_next, g_next and G through
 * unchanged, and their own reward and value are not read (presets: verl resets the REINFORCE++ return there,
 * OpenRLHF reads them as 0 and keeps discounting). Arithmetic is f64; outputs Float32Array, or Float64Array with
 * precision 'f64'. Kernels: lib/js/token_advantages.ts, native/token_advantages.{h,cc}, and with `backend: 'cuda'`
 * (gae, discountedReturns, reinforcePlusPlus, placeOutcome, optimalTokenBaseline; f32 or f64 like the cpu)
 * cuda/token_advantages.cu. On 'cuda', gae / discountedReturns / reinforcePlusPlus also take their [B·T] rewards and
 * values as f32 DeviceTensors, and with rewards on the device return advantages and returns as DeviceTensors (a
 * critic's values then never leave the GPU on their way to policyLoss); masks stay host arrays.
 */
import { ErrorCode, argError } from '../errors';
import * as is from '../is';
import { kernelOf, resolveCudaBackend, type BackendName } from '../backend';
import { anyOnDevice, checkDeviceCall, DeviceTensor, deviceValues, type CudaDevice } from '../cuda';
import * as js from '../js/token_advantages';
import { SCAN } from '../js/token_advantages';
import {
  booleanOf, groupIdsOf, groupSizeOf, maskOf, nonFinite, shapeOf, tokenValuesOf, valuesOf,
  type GroupIds, type NumberArray, type Values,
} from './advantage_args';
import { advantagePreset, singletonRule } from './advantage_presets';
import { nativeTokenArgs, type Moments } from './moments';
import { asyncForm, precisionOf, presetOf, run, syncForm, type Precision, type Preset } from './run';

export interface TokenInputs {
  /** [B·T] per-token rewards (an f32 DeviceTensor on the cuda backend). */
  rewards: NumberArray | DeviceTensor;
  /** [B·T] 0/1 (Uint8Array, or any numeric array). */
  mask: Uint8Array | ArrayLike<number>;
  shape: [number, number];
}

export interface GaeInputs extends TokenInputs {
  /** [B·T] value estimates V_t (an f32 DeviceTensor on the cuda backend). */
  values: NumberArray | DeviceTensor;
}

interface CommonOptions {
  preset?: Preset;
  precision?: Precision;
  backend?: BackendName;
}

export interface GaeOptions extends CommonOptions {
  gamma?: number;
  lambda?: number;
  /** Whiten the advantages over the valid tokens (default true). */
  whiten?: boolean;
  /** Merged moments of the raw advantages from every rank (momentsPartial of a whiten: false run). */
  moments?: Moments;
}

export interface ReturnsOptions extends CommonOptions {
  gamma?: number;
}

export interface ReinforcePlusPlusOptions extends ReturnsOptions {
  /** Merged moments of the returns from every rank. */
  moments?: Moments;
}

/** Host arrays, or DeviceTensors when the rewards were one. */
export interface TokenAdvantageResult<A extends Values | DeviceTensor = Float32Array> {
  /** [B·T] advantages. */
  advantages: A;
  /** [B·T] returns (gae: g + V before whitening; reinforcePlusPlus: the discounted returns). */
  returns: A;
  /** The whitening's statistics and whether it was skipped (< 2 valid tokens). */
  moments: Moments;
  whitenSkipped: boolean;
}

/** The inputs object, its shape, rewards (read by `readRewards`: host only, or also on the device) and mask. */
function tokenArrays<R>(inputs: unknown, keys: readonly string[], readRewards: (value: unknown, param: string, shape: [number, number]) => R) {
  const input = is.options(inputs, 'inputs', keys);
  const shape = shapeOf(input.shape, 'inputs.shape');
  const rewards = readRewards(input.rewards, 'inputs.rewards', shape);
  const mask = maskOf(input.mask, 'inputs.mask', shape[0] * shape[1]);
  return { input, shape, rewards, mask };
}

/** A [B·T] value array: an f32 DeviceTensor (cuda backend) or host values. */
function deviceOrHost(value: unknown, param: string, shape: [number, number]): Values | DeviceTensor {
  return value instanceof DeviceTensor ? deviceValues(value, param, shape[0] * shape[1]) : tokenValuesOf(value, param, shape);
}

/** The backend of a scan: DeviceTensor arrays take the cuda one (f32), and refuse the others. */
function scanBackend(option: unknown, elements: number, async: boolean, onDevice: boolean, precision: unknown): 'cpu' | 'js' | CudaDevice {
  if (!onDevice) return resolveCudaBackend(option, elements, async);
  checkDeviceCall(option, precision);
  return resolveCudaBackend('cuda', elements, async) as CudaDevice;
}

function discountOf(value: unknown, param: string, fallback = 1): number {
  return value === undefined ? fallback : is.numberInRange(value, param, 0, 1);
}

function momentsArg(value: unknown): [number, number, number] | null {
  if (value === undefined) return null;
  if (!is.isPlainObject(value)) throw argError(ErrorCode.INVALID_ARG_TYPE, 'opts.moments', 'a Moments {count, mean, m2}', value);
  const m = value as unknown as Moments;
  return [m.count, m.mean, m.m2].map((x, k) => {
    if (typeof x !== 'number' || !Number.isFinite(x)) throw argError(ErrorCode.INVALID_ARG_TYPE, `opts.moments.${['count', 'mean', 'm2'][k]}`, 'a finite number', x);
    return x;
  }) as [number, number, number];
}

/**
 * Runs a scan job on the js, cpu or cuda backend (the cuda addon takes the cpu addon's arguments,
 * cuda/addon/token_advantages.cc); the kernel reports the first row with a non-finite reward or value at a valid
 * position.
 */
function runScan(
  async: boolean, job: js.TokenJob<Values | DeviceTensor>, backend: 'cpu' | 'js' | CudaDevice,
): TokenAdvantageResult<Values | DeviceTensor> | Promise<TokenAdvantageResult<Values | DeviceTensor>> {
  const kernel = kernelOf(backend, 'tokenAdvantages');
  return run(
    backend === 'js' ? 'js' : 'cpu', async,
    (a) => kernel(...nativeTokenArgs(job), a),
    // scanBackend sends DeviceTensor jobs to cuda only.
    () => js.tokenAdvantages(job as js.TokenJob),
    (bad) => {
      if (bad >= 0) throw nonFinite(job.values ? 'inputs.rewards / inputs.values' : 'inputs.rewards', bad * job.cols, bad);
      const [count, mean, m2, skipped] = job.momentsOut;
      return { advantages: job.out, returns: job.returns ?? job.out, moments: { count, mean, m2 }, whitenSkipped: skipped === 1 };
    },
  );
}

/** A scan job; its outputs are DeviceTensors when the rewards are one (f32), else host arrays of the precision. */
function scanJob(
  scan: number, rewards: Values | DeviceTensor, values: Values | DeviceTensor | null, mask: Uint8Array, shape: [number, number],
  opts: Record<string, unknown>, whiten: boolean, maskOutput: boolean, gapOf: (p: ReturnType<typeof advantagePreset>) => number,
  withReturns = true,
): js.TokenJob<Values | DeviceTensor> {
  const preset = advantagePreset(presetOf(opts.preset));
  const exact = precisionOf(opts.precision) === 'f64';
  const n = shape[0] * shape[1];
  const output = () => (rewards instanceof DeviceTensor ? rewards.device.empty([n], 'f32') : exact ? new Float64Array(n) : new Float32Array(n));
  return {
    rows: shape[0], cols: shape[1], scan, x: rewards, values, mask,
    gamma: discountOf(opts.gamma, 'opts.gamma'), lambda: discountOf(opts.lambda, 'opts.lambda'), gap: gapOf(preset),
    whiten, rule: preset.whiten, shiftMean: true, momentsIn: momentsArg(opts.moments), maskOutput,
    out: output(),
    returns: withReturns ? output() : null,
    momentsOut: new Float64Array(4),
  };
}

// ---- gae ----

function gaeImpl(async: boolean, inputs: GaeInputs, options?: GaeOptions) {
  const { input, shape, rewards, mask } = tokenArrays(inputs, ['rewards', 'values', 'mask', 'shape'], deviceOrHost);
  const values = deviceOrHost(input.values, 'inputs.values', shape);
  const opts = is.options(options, 'opts', ['gamma', 'lambda', 'whiten', 'moments', 'preset', 'precision', 'backend'] as const);
  const whiten = booleanOf(opts.whiten, 'opts.whiten', true);
  if (!whiten && opts.moments !== undefined) throw argError(ErrorCode.INVALID_ARG_VALUE, 'opts.moments', 'no moments with whiten: false', opts.moments);
  const backend = scanBackend(opts.backend, 2 * rewards.length, async, anyOnDevice(rewards, values), opts.precision);
  return runScan(async, scanJob(SCAN.gae, rewards, values, mask, shape, opts, whiten, false, (p) => p.gaeGap), backend);
}

/**
 * Generalised advantage estimation (SPEC §4.2) over `rewards`, `values` and `mask` of `shape` [B, T]:
 * reverse scan δ_t = r_t + γ·V_next − V_t, g_t = δ_t + γλ·g_next (γ = λ = 1 by default); masked positions
 * carry V_next and g_next through (multi-turn observation tokens); returns = g + V; advantages whitened over
 * the valid tokens (masked entries are transformed too, as verl does). Source: verl compute_gae_advantage_return.
 */
export const gae = asyncForm(gaeImpl) as {
  (inputs: GaeInputs & { rewards: DeviceTensor }, options?: GaeOptions): Promise<TokenAdvantageResult<DeviceTensor>>;
  (inputs: GaeInputs, options: GaeOptions & { precision: 'f64' }): Promise<TokenAdvantageResult<Float64Array>>;
  (inputs: GaeInputs, options?: GaeOptions): Promise<TokenAdvantageResult>;
};
export const gaeSync = syncForm(gaeImpl) as {
  (inputs: GaeInputs & { rewards: DeviceTensor }, options?: GaeOptions): TokenAdvantageResult<DeviceTensor>;
  (inputs: GaeInputs, options: GaeOptions & { precision: 'f64' }): TokenAdvantageResult<Float64Array>;
  (inputs: GaeInputs, options?: GaeOptions): TokenAdvantageResult;
};

// ---- discounted returns, REINFORCE++ ----

function discountedReturnsImpl(async: boolean, inputs: TokenInputs, options?: ReturnsOptions) {
  const { shape, rewards, mask } = tokenArrays(inputs, ['rewards', 'mask', 'shape'], deviceOrHost);
  const opts = is.options(options, 'opts', ['gamma', 'preset', 'precision', 'backend'] as const);
  // Without whitening the scan's output is the returns themselves.
  const backend = scanBackend(opts.backend, rewards.length, async, anyOnDevice(rewards), opts.precision);
  const job = scanJob(SCAN.discounted, rewards, null, mask, shape, opts, false, false, (p) => p.returnsGap, false);
  const result = runScan(async, job, backend);
  // A thenable test, not instanceof: the addon's promises may come from another realm (jest's vm contexts).
  return 'then' in result ? result.then((r) => r.advantages) : result.advantages;
}

/** Discounted returns G_t = r_t + γ·G_{t+1} within each row (SPEC §4.2), [B·T]; γ default 1. */
export const discountedReturns = asyncForm(discountedReturnsImpl) as {
  (inputs: TokenInputs & { rewards: DeviceTensor }, options?: ReturnsOptions): Promise<DeviceTensor>;
  (inputs: TokenInputs, options: ReturnsOptions & { precision: 'f64' }): Promise<Float64Array>;
  (inputs: TokenInputs, options?: ReturnsOptions): Promise<Float32Array>;
};
export const discountedReturnsSync = syncForm(discountedReturnsImpl) as {
  (inputs: TokenInputs & { rewards: DeviceTensor }, options?: ReturnsOptions): DeviceTensor;
  (inputs: TokenInputs, options: ReturnsOptions & { precision: 'f64' }): Float64Array;
  (inputs: TokenInputs, options?: ReturnsOptions): Float32Array;
};

function reinforcePlusPlusImpl(async: boolean, inputs: TokenInputs, options?: ReinforcePlusPlusOptions) {
  const { shape, rewards, mask } = tokenArrays(inputs, ['rewards', 'mask', 'shape'], deviceOrHost);
  const opts = is.options(options, 'opts', ['gamma', 'moments', 'preset', 'precision', 'backend'] as const);
  const backend = scanBackend(opts.backend, rewards.length, async, anyOnDevice(rewards), opts.precision);
  return runScan(async, scanJob(SCAN.discounted, rewards, null, mask, shape, opts, true, true, (p) => p.returnsGap), backend);
}

/**
 * REINFORCE++ (SPEC §4.2, arXiv:2501.03262): discounted returns of the token rewards, whitened over the valid
 * tokens of the batch, times the mask. Source: verl compute_reinforce_plus_plus_outcome_advantage.
 */
export const reinforcePlusPlus = asyncForm(reinforcePlusPlusImpl) as {
  (inputs: TokenInputs & { rewards: DeviceTensor }, options?: ReinforcePlusPlusOptions): Promise<TokenAdvantageResult<DeviceTensor>>;
  (inputs: TokenInputs, options: ReinforcePlusPlusOptions & { precision: 'f64' }): Promise<TokenAdvantageResult<Float64Array>>;
  (inputs: TokenInputs, options?: ReinforcePlusPlusOptions): Promise<TokenAdvantageResult>;
};
export const reinforcePlusPlusSync = syncForm(reinforcePlusPlusImpl) as {
  (inputs: TokenInputs & { rewards: DeviceTensor }, options?: ReinforcePlusPlusOptions): TokenAdvantageResult<DeviceTensor>;
  (inputs: TokenInputs, options: ReinforcePlusPlusOptions & { precision: 'f64' }): TokenAdvantageResult<Float64Array>;
  (inputs: TokenInputs, options?: ReinforcePlusPlusOptions): TokenAdvantageResult;
};

// ---- placeOutcome ----

function placeOutcomeImpl(async: boolean, rewards: NumberArray, mask: Uint8Array | ArrayLike<number>, options?: { precision?: Precision; backend?: BackendName }) {
  const opts = is.options(options, 'opts', ['precision', 'backend'] as const);
  const R = valuesOf(rewards, 'rewards');
  const B = R.length;
  const length = (mask as ArrayLike<number>)?.length;
  if (typeof length !== 'number' || (B === 0 ? length !== 0 : length % B !== 0)) {
    throw argError(ErrorCode.SHAPE_MISMATCH, 'mask', `B·T entries (B = ${B} rewards)`, mask);
  }
  const T = B === 0 ? 0 : length / B;
  const m = maskOf(mask, 'mask', B * T);
  const out = precisionOf(opts.precision) === 'f64' ? new Float64Array(B * T) : new Float32Array(B * T);
  const backend = resolveCudaBackend(opts.backend, B * T, async);
  const kernel = kernelOf(backend, 'placeOutcome');
  return run(
    backend === 'js' ? 'js' : 'cpu', async,
    (a) => kernel(R, m, B, T, out, a),
    () => js.placeOutcome(R, m, B, T, out),
    () => out,
  );
}

/** [B·T] zeros with R_b at the last valid token of row b (SPEC §4.2); a row with no valid token gets nothing. */
export const placeOutcome = asyncForm(placeOutcomeImpl);
export const placeOutcomeSync = syncForm(placeOutcomeImpl);

// ---- optimal token baseline ----

export interface OptimalTokenBaselineInputs extends TokenInputs {
  /** [B·T] log-prob of each sampled token under the behaviour policy (π_t = exp). */
  oldLogprobs: NumberArray;
  /** [B·T] Σ_j p_j² per token (tokenStats output `sumPiSquared`). */
  sumPiSquared: NumberArray;
  /** [B·T] optional importance weights ρ; w_t is multiplied by ρ². */
  isWeights?: NumberArray;
  groupIds?: GroupIds;
  groupSize?: number;
}

function optimalTokenBaselineImpl(async: boolean, inputs: OptimalTokenBaselineInputs, options?: CommonOptions) {
  const keys = ['rewards', 'mask', 'shape', 'oldLogprobs', 'sumPiSquared', 'isWeights', 'groupIds', 'groupSize'];
  const { input, shape, rewards, mask } = tokenArrays(inputs, keys, tokenValuesOf);
  const opts = is.options(options, 'opts', ['preset', 'precision', 'backend'] as const);
  const B = shape[0];
  if ((input.groupIds === undefined) === (input.groupSize === undefined)) {
    throw argError(ErrorCode.INVALID_ARG_VALUE, 'inputs.groupIds', 'exactly one of groupIds, groupSize', input.groupIds);
  }
  const ids = input.groupIds === undefined ? null : groupIdsOf(input.groupIds, 'inputs.groupIds', B);
  const groupSize = input.groupSize === undefined ? 0 : groupSizeOf(input.groupSize, 'inputs.groupSize', B);
  const exact = precisionOf(opts.precision) === 'f64';
  const n = B * shape[1];
  const job: js.OtbJob = {
    rows: B, cols: shape[1], rewards, mask,
    oldLogprobs: tokenValuesOf(input.oldLogprobs, 'inputs.oldLogprobs', shape),
    sumPiSquared: tokenValuesOf(input.sumPiSquared, 'inputs.sumPiSquared', shape),
    isWeights: input.isWeights === undefined ? null : tokenValuesOf(input.isWeights, 'inputs.isWeights', shape),
    ids, groupSize, rawSingleton: singletonRule(advantagePreset(presetOf(opts.preset)), 'optimalTokenBaseline') === 'raw',
    advantages: exact ? new Float64Array(n) : new Float32Array(n), returns: exact ? new Float64Array(n) : new Float32Array(n),
  };
  const backend = resolveCudaBackend(opts.backend, 4 * n, async);
  const kernel = kernelOf(backend, 'optimalTokenBaseline');
  return run(
    backend === 'js' ? 'js' : 'cpu', async,
    (a) => kernel(
      job.rewards, job.mask, job.oldLogprobs, job.sumPiSquared, job.isWeights, job.ids instanceof Int32Array ? job.ids : null,
      job.ids instanceof BigInt64Array ? job.ids : null, job.groupSize, B, job.cols, job.rawSingleton, job.advantages, job.returns, a,
    ),
    () => js.optimalTokenBaseline(job),
    (bad) => {
      if (bad >= 0) throw nonFinite('inputs.rewards / oldLogprobs / sumPiSquared', bad * job.cols, bad);
      return { advantages: job.advantages, returns: job.returns };
    },
  );
}

/**
 * Optimal token baseline (SPEC §4.3; verl compute_optimal_token_baseline_advantage): per group and
 * position b_t = Σ_i G_it·W_it·m_it / (Σ_i W_it·m_it + 1e-8), A = (G − b)·m; returns G (reward-to-go).
 * A group of one row gets A = 0 (verl preset: A = G, no baseline).
 */
export const optimalTokenBaseline = asyncForm(optimalTokenBaselineImpl);
export const optimalTokenBaselineSync = syncForm(optimalTokenBaselineImpl);
