/**
 * Outcome advantages over groups (SPEC §4.1): one function for every estimator the current trainers use —
 * grpo (scale group | batch | none = Dr.GRPO), rloo, reinforceBaseline, remax, opo, gpg, passk, bnpo, ngrpo —
 * with multi-reward [B, K] inputs, trainer presets (lib/ops/advantage_presets.ts) and a mergeable batch state
 * for data-parallel ranks (advantagesPartial → mergeAdvantageStats → advantages with `batchStats`).
 *
 * This layer validates, resolves the preset and the backend, and maps kernel reports to errors. Kernels:
 * lib/js/advantages.ts, native/advantages.{h,cc} and cuda/advantages.cu (`backend: 'cuda'`, per call; the same
 * addon arguments) — same phases, f64 arithmetic throughout.
 */
import { EngineError, ErrorCode, argError } from '../errors';
import * as is from '../is';
import { kernelOf, resolveCudaBackend, type BackendName } from '../backend';
import type { CudaDevice } from '../cuda';
import * as js from '../js/advantages';
import { BATCH, ESTIMATOR, SCALE, SINGLETON, STAT } from '../js/advantages';
import {
  finiteValuesOf, groupIdsOf, groupSizeOf, nonFinite, valuesOf, epsOf, type GroupIds, type NumberArray, type Values,
} from './advantage_args';
import { advantagePreset, singletonRule } from './advantage_presets';
import { mergeMoments, type Moments } from './moments';
import { asyncForm, precisionOf, presetOf, run, syncForm, type Precision, type Preset } from './run';

// ---- the estimator registry ----

interface EstimatorEntry {
  readonly code: number;
  readonly summary: string;
  readonly paper: string;
  /** Accepts opts.scale. */
  readonly scaled: boolean;
  /** Input it cannot do without. */
  readonly needs: 'lengths' | 'baselines' | null;
}

const registry: Record<string, EstimatorEntry> = {};
function register(name: string, entry: EstimatorEntry): void {
  if (name in registry) throw new Error(`advantage estimator '${name}' registered twice`);
  registry[name] = Object.freeze(entry);
}
register('grpo', { code: ESTIMATOR.grpo, summary: '(R − mean_G)/(std_G + eps); scale batch | none (Dr.GRPO)', paper: 'arXiv:2402.03300, 2503.20783', scaled: true, needs: null });
register('rloo', { code: ESTIMATOR.rloo, summary: 'R_i − mean of the others = (n·R_i − Σ_G R)/(n − 1)', paper: 'arXiv:2402.14740', scaled: false, needs: null });
register('reinforceBaseline', { code: ESTIMATOR.reinforceBaseline, summary: 'R − mean_G, whitened over the valid tokens of the batch', paper: 'arXiv:2501.03262', scaled: false, needs: null });
register('remax', { code: ESTIMATOR.remax, summary: 'R − baselines (greedy-rollout reward)', paper: 'arXiv:2310.10505', scaled: false, needs: 'baselines' });
register('opo', { code: ESTIMATOR.opo, summary: 'R − Σ_G |y|·R / Σ_G |y| (length-weighted baseline)', paper: 'arXiv:2505.23585', scaled: false, needs: 'lengths' });
register('gpg', { code: ESTIMATOR.gpg, summary: 'α·(R − mean_G), α = B / #{R ≠ 0}', paper: 'arXiv:2504.02546', scaled: false, needs: null });
register('passk', { code: ESTIMATOR.passk, summary: 'the best response gets R_max − R_second (/ (std_G + eps)); others 0', paper: 'arXiv:2503.19595', scaled: true, needs: null });
register('bnpo', { code: ESTIMATOR.bnpo, summary: 'clip(1/BetaPDF(p_G; α, β))·(r − p_G), Beta fitted to the batch of p_G', paper: 'arXiv:2506.02864', scaled: false, needs: null });
register('ngrpo', { code: ESTIMATOR.ngrpo, summary: 'grpo with one virtual response of reward virtualMax in each group', paper: 'arXiv:2509.18851', scaled: true, needs: null });

/** Every estimator: name → {summary, paper}. */
export const ADVANTAGE_ESTIMATORS: Readonly<Record<string, EstimatorEntry>> = Object.freeze(registry);
export type Estimator = 'grpo' | 'rloo' | 'reinforceBaseline' | 'remax' | 'opo' | 'gpg' | 'passk' | 'bnpo' | 'ngrpo';
export type Scale = 'group' | 'batch' | 'none';
export type MultiReward = 'sumThenNormalize' | 'normalizeThenSum';

// ---- public types ----

export interface AdvantageInputs {
  /** [B] rewards, or [B, K] row-major when `rewardWeights` (length K) is given. NaN = not scored. */
  rewards: NumberArray;
  /** [B] integer group key per row (any integers, need not be contiguous). */
  groupIds?: GroupIds;
  /** Contiguous groups of this many rows (instead of groupIds); must divide B. */
  groupSize?: number;
  /** [B] response lengths |y| (tokens): opo's weights, reinforceBaseline's token weighting. */
  lengths?: NumberArray;
  /** [B] baseline rewards (remax: the greedy rollout's reward). */
  baselines?: NumberArray;
  /** [K] weights of the reward components; makes `rewards` [B, K]. */
  rewardWeights?: NumberArray;
}

export interface AdvantageOptions {
  /** Default 'grpo'. */
  estimator?: Estimator;
  /** grpo / ngrpo / passk: divide by the group std (default), the batch std, or not at all. */
  scale?: Scale;
  /** (std + eps); default 1e-6, or the preset's. */
  eps?: number;
  /** [B, K] rewards: weighted sum then the estimator (default), or GDPO's per-component z-scores (grpo only). */
  multiReward?: MultiReward;
  /** ngrpo's virtual reward, default 1. */
  virtualMax?: number;
  /** Reproduce a trainer's conventions (SPEC §7). */
  preset?: Preset;
  /** The merged advantagesPartial of every rank: batch statistics then equal the single-process ones. */
  batchStats?: AdvantageBatchStats;
  /** Outputs Float32Array (default) or Float64Array ('f64'); arithmetic is f64 either way. */
  precision?: Precision;
  backend?: BackendName;
}

export interface AdvantageStats {
  groups: number;
  singletonGroups: number;
  zeroStdGroups: number;
  /** zeroStdGroups / groups (0 without groups). */
  zeroStdFraction: number;
  unscorableRows: number;
  /** No row had a scored reward: every advantage is 0. */
  emptyBatch: boolean;
  /** reinforceBaseline: fewer than 2 valid entries, so the centred rewards were not whitened. */
  whitenSkipped: boolean;
}

export interface AdvantageResult<A extends Values = Float32Array> {
  /** [B] advantage per response. */
  advantages: A;
  /** [B] mean of the row's group (scored rows of R; 0 without groups). */
  groupMean: A;
  /** [B] unbiased std of the row's group (0 below 2 scored rows). */
  groupStd: A;
  stats: AdvantageStats;
}

/** A batch's statistics as a mergeable state (SPEC §4.4): sums, Chan moments, min / max. */
export interface AdvantageBatchStats {
  estimator: Estimator;
  scoredRows: number;
  nonZeroRows: number;
  /** Moments of the scored rewards R (grpo/ngrpo/passk scale 'batch', normalizeThenSum). */
  rewards: Moments;
  /** Token-weighted moments of reinforceBaseline's centred rewards. */
  whiten: Moments;
  /** bnpo, per reward component: range, and moments of the group means. */
  components: { min: number; max: number; groupMeans: Moments }[];
  counts: { groups: number; singletonGroups: number; zeroStdGroups: number; unscorableRows: number };
}

const OPTION_KEYS = ['estimator', 'scale', 'eps', 'multiReward', 'virtualMax', 'preset', 'batchStats', 'precision', 'backend'] as const;
const INPUT_KEYS = ['rewards', 'groupIds', 'groupSize', 'lengths', 'baselines', 'rewardWeights'] as const;

// ---- validation into a kernel job ----

interface Prepared {
  job: js.AdvantagesJob;
  estimator: Estimator;
  exact: boolean;
  backend: 'cpu' | 'js' | CudaDevice;
  groupParam: string;
  preset: Preset | null;
}

function prepare(inputs: AdvantageInputs, options: AdvantageOptions | undefined, async: boolean, partialOnly: boolean): Prepared {
  const input = is.options(inputs, 'inputs', INPUT_KEYS);
  const opts = is.options(options, 'opts', OPTION_KEYS);
  const estimator = (opts.estimator === undefined ? 'grpo' : is.oneOf(opts.estimator, 'opts.estimator', Object.keys(registry))) as Estimator;
  const entry = registry[estimator];
  const presetName = presetOf(opts.preset);
  const preset = advantagePreset(presetName);
  if (input.rewards === undefined) throw argError(ErrorCode.INVALID_ARG_TYPE, 'inputs.rewards', 'an array of rewards', undefined);
  const weights = input.rewardWeights === undefined ? Float64Array.of(1) : finiteValuesOf(input.rewardWeights, 'inputs.rewardWeights', (input.rewardWeights as ArrayLike<number>).length);
  const K = weights.length;
  if (K === 0) throw argError(ErrorCode.SHAPE_MISMATCH, 'inputs.rewardWeights', 'at least one weight', input.rewardWeights);
  const rewards = valuesOf(input.rewards, 'inputs.rewards');
  if (rewards.length % K !== 0) throw argError(ErrorCode.SHAPE_MISMATCH, 'inputs.rewards', `B·K values (K = ${K} reward weights)`, input.rewards);
  const B = rewards.length / K;
  if (input.groupIds !== undefined && input.groupSize !== undefined) {
    throw argError(ErrorCode.INVALID_ARG_VALUE, 'inputs.groupSize', 'either groupIds or groupSize, not both', input.groupSize);
  }
  const ids = input.groupIds === undefined ? null : groupIdsOf(input.groupIds, 'inputs.groupIds', B);
  const groupSize = input.groupSize === undefined ? 0 : groupSizeOf(input.groupSize, 'inputs.groupSize', B);
  if (!ids && groupSize === 0 && estimator !== 'remax') {
    throw argError(ErrorCode.INVALID_ARG_VALUE, 'inputs.groupIds', `groupIds or groupSize (${estimator} normalises within groups)`, undefined);
  }
  const lengths = input.lengths === undefined ? null
    : finiteValuesOf(input.lengths, 'inputs.lengths', B, { bound: 0, strict: estimator === 'opo' });
  const baselines = input.baselines === undefined ? null : finiteValuesOf(input.baselines, 'inputs.baselines', B);
  if (entry.needs === 'lengths' && !lengths) throw argError(ErrorCode.INVALID_ARG_VALUE, 'inputs.lengths', `response lengths (${estimator} needs them)`, undefined);
  if (entry.needs === 'baselines' && !baselines) throw argError(ErrorCode.INVALID_ARG_VALUE, 'inputs.baselines', `baseline rewards (${estimator} needs them)`, undefined);
  if (opts.scale !== undefined && !entry.scaled) {
    throw argError(ErrorCode.INVALID_ARG_VALUE, 'opts.scale', `no scale with ${estimator} (only grpo, ngrpo, passk)`, opts.scale);
  }
  const scale = opts.scale === undefined ? 'group' : is.oneOf(opts.scale, 'opts.scale', ['group', 'batch', 'none'] as const);
  const multiReward = opts.multiReward === undefined ? 'sumThenNormalize'
    : is.oneOf(opts.multiReward, 'opts.multiReward', ['sumThenNormalize', 'normalizeThenSum'] as const);
  const normalizeThenSum = multiReward === 'normalizeThenSum';
  if (normalizeThenSum && (estimator !== 'grpo' || scale !== 'group')) {
    throw argError(ErrorCode.INVALID_ARG_VALUE, 'opts.multiReward', "'normalizeThenSum' only with estimator grpo and the default scale (it ends in a batch z-score)", multiReward);
  }
  if (opts.virtualMax !== undefined && estimator !== 'ngrpo') {
    throw argError(ErrorCode.INVALID_ARG_VALUE, 'opts.virtualMax', 'no virtualMax except with ngrpo', opts.virtualMax);
  }
  const virtualMax = opts.virtualMax === undefined ? 1 : is.finiteNumber(opts.virtualMax, 'opts.virtualMax');
  const eps = epsOf(opts.eps, 'opts.eps', preset.eps);
  const rule = singletonRule(preset, estimator);
  if (rule === 'reject' && groupSize === 1 && estimator !== 'remax') {
    throw argError(ErrorCode.INVALID_ARG_VALUE, 'inputs.groupSize', `groups of at least 2 rows (preset '${presetName}' with ${estimator})`, 1);
  }
  const components = estimator === 'bnpo' ? K : 0;
  const batchIn = opts.batchStats === undefined ? null : packBatchStats(opts.batchStats, estimator, components);
  const exact = precisionOf(opts.precision) === 'f64';
  const alloc = () => (partialOnly ? null : exact ? new Float64Array(B) : new Float32Array(B));
  const job: js.AdvantagesJob = {
    rows: B, components: K, rewards, weights, ids, groupSize, lengths, baselines,
    estimator: entry.code, scale: SCALE[scale], eps, virtualMax, normalizeThenSum,
    singleton: SINGLETON[rule], exactZeroVariance: preset.exactZeroVariance, whiten: preset.whiten, clip: preset.clip,
    batchIn, partialOnly, advantages: alloc(), groupMean: alloc(), groupStd: alloc(),
    stats: new Float64Array(STAT.length), batchOut: new Float64Array(BATCH.fixed + BATCH.perComponent * components),
  };
  const backend = resolveCudaBackend(opts.backend, B * K, async);
  return { job, estimator, exact, backend, groupParam: ids ? 'inputs.groupIds' : 'inputs.groupSize', preset: presetName };
}

/** Runs a prepared job on its backend; `finish` builds the result once the kernel reports success. */
function runJob<T>(p: Prepared, async: boolean, finish: () => T): T | Promise<T> {
  const { job, backend } = p;
  // The cuda addon takes the cpu addon's arguments (cuda/addon/advantages.cc).
  const kernel = kernelOf(backend, 'advantages');
  return run(
    backend === 'js' ? 'js' : 'cpu',
    async,
    (a) => kernel(
      job.rewards, job.rows, job.components, job.weights, job.ids instanceof Int32Array ? job.ids : null,
      job.ids instanceof BigInt64Array ? job.ids : null, job.groupSize, job.lengths, job.baselines, nativeConfig(job),
      job.batchIn, job.partialOnly, job.advantages, job.groupMean, job.groupStd, job.stats, job.batchOut, a,
    ),
    () => js.advantages(job),
    (bad) => {
      if (bad >= job.rows) {
        throw new EngineError(
          ErrorCode.INVALID_ARG_VALUE,
          `Expected groups of at least 2 rows for ${p.groupParam} (preset '${p.preset}' with ${p.estimator}) but row ${bad - job.rows} is alone in its group`,
          { param: p.groupParam, row: bad - job.rows },
        );
      }
      if (bad >= 0) throw nonFinite('inputs.rewards', bad * job.components, bad);
      return finish();
    },
  );
}

/** The scalar configuration as native/advantages.h AdvantagesConfig reads it (same order). */
function nativeConfig(job: js.AdvantagesJob): Float64Array {
  const w = job.whiten;
  return Float64Array.of(
    job.estimator, job.scale, job.eps, job.virtualMax, job.normalizeThenSum ? 1 : 0, job.singleton,
    job.exactZeroVariance ? 1 : 0, w.meanEps, w.unbiased ? 1 : 0, w.epsMode === 'clamp' ? 1 : 0, w.eps, job.clip,
  );
}

// ---- batch state ----

function unpackBatchStats(p: Prepared): AdvantageBatchStats {
  const b = p.job.batchOut, s = p.job.stats;
  const components: AdvantageBatchStats['components'] = [];
  for (let k = 0; k < (b.length - BATCH.fixed) / BATCH.perComponent; k++) {
    const o = BATCH.fixed + k * BATCH.perComponent;
    components.push({
      min: b[o + BATCH.min], max: b[o + BATCH.max],
      groupMeans: { count: b[o + BATCH.groupN], mean: b[o + BATCH.groupMean], m2: b[o + BATCH.groupM2] },
    });
  }
  return {
    estimator: p.estimator,
    scoredRows: b[BATCH.rows],
    nonZeroRows: b[BATCH.nonZero],
    rewards: { count: b[BATCH.rewardN], mean: b[BATCH.rewardMean], m2: b[BATCH.rewardM2] },
    whiten: { count: b[BATCH.whitenN], mean: b[BATCH.whitenMean], m2: b[BATCH.whitenM2] },
    components,
    counts: {
      groups: s[STAT.groups], singletonGroups: s[STAT.singletonGroups], zeroStdGroups: s[STAT.zeroStdGroups],
      unscorableRows: s[STAT.unscorableRows],
    },
  };
}

function packBatchStats(value: unknown, estimator: Estimator, components: number): Float64Array {
  const param = 'opts.batchStats';
  if (!is.isPlainObject(value)) throw argError(ErrorCode.INVALID_ARG_TYPE, param, 'an AdvantageBatchStats (from advantagesPartial)', value);
  const s = value as unknown as AdvantageBatchStats;
  if (s.estimator !== estimator) throw argError(ErrorCode.INVALID_ARG_VALUE, `${param}.estimator`, `'${estimator}' (the estimator of this call)`, s.estimator);
  if (!Array.isArray(s.components) || s.components.length !== components) {
    throw argError(ErrorCode.SHAPE_MISMATCH, `${param}.components`, `${components} reward components`, s.components);
  }
  const out = new Float64Array(BATCH.fixed + BATCH.perComponent * components);
  const num = (x: unknown, name: string) => {
    if (typeof x !== 'number' || x !== x) throw argError(ErrorCode.INVALID_ARG_TYPE, `${param}.${name}`, 'a number', x);
    return x;
  };
  out[BATCH.rows] = num(s.scoredRows, 'scoredRows');
  out[BATCH.nonZero] = num(s.nonZeroRows, 'nonZeroRows');
  [out[BATCH.rewardN], out[BATCH.rewardMean], out[BATCH.rewardM2]] = [num(s.rewards?.count, 'rewards.count'), num(s.rewards.mean, 'rewards.mean'), num(s.rewards.m2, 'rewards.m2')];
  [out[BATCH.whitenN], out[BATCH.whitenMean], out[BATCH.whitenM2]] = [num(s.whiten?.count, 'whiten.count'), num(s.whiten.mean, 'whiten.mean'), num(s.whiten.m2, 'whiten.m2')];
  s.components.forEach((c, k) => {
    const o = BATCH.fixed + k * BATCH.perComponent;
    out.set([c.min, c.max, c.groupMeans.count, c.groupMeans.mean, c.groupMeans.m2].map((x, j) => num(x, `components[${k}][${j}]`)), o);
  });
  return out;
}

/** Merges the batch states of several ranks (any order of ranks gives the same result up to rounding). */
export function mergeAdvantageStats(parts: readonly AdvantageBatchStats[]): AdvantageBatchStats {
  if (!Array.isArray(parts) || parts.length === 0) throw argError(ErrorCode.INVALID_ARG_VALUE, 'parts', 'a non-empty array of AdvantageBatchStats', parts);
  const first = parts[0];
  for (const p of parts) {
    if (p.estimator !== first.estimator || p.components.length !== first.components.length) {
      throw argError(ErrorCode.INVALID_ARG_VALUE, 'parts', `states of one estimator ('${first.estimator}') and component count`, p.estimator);
    }
  }
  const sum = (f: (p: AdvantageBatchStats) => number) => parts.reduce((a, p) => a + f(p), 0);
  return {
    estimator: first.estimator,
    scoredRows: sum((p) => p.scoredRows),
    nonZeroRows: sum((p) => p.nonZeroRows),
    rewards: mergeMoments(parts.map((p) => p.rewards)),
    whiten: mergeMoments(parts.map((p) => p.whiten)),
    components: first.components.map((_: unknown, k: number) => ({
      min: Math.min(...parts.map((p) => p.components[k].min)),
      max: Math.max(...parts.map((p) => p.components[k].max)),
      groupMeans: mergeMoments(parts.map((p) => p.components[k].groupMeans)),
    })),
    counts: {
      groups: sum((p) => p.counts.groups), singletonGroups: sum((p) => p.counts.singletonGroups),
      zeroStdGroups: sum((p) => p.counts.zeroStdGroups), unscorableRows: sum((p) => p.counts.unscorableRows),
    },
  };
}

// ---- public entry points ----

function advantagesImpl(async: boolean, inputs: AdvantageInputs, options?: AdvantageOptions): AdvantageResult<Values> | Promise<AdvantageResult<Values>> {
  const p = prepare(inputs, options, async, false);
  return runJob(p, async, () => {
    const s = p.job.stats;
    return {
      advantages: p.job.advantages!, groupMean: p.job.groupMean!, groupStd: p.job.groupStd!,
      stats: {
        groups: s[STAT.groups], singletonGroups: s[STAT.singletonGroups], zeroStdGroups: s[STAT.zeroStdGroups],
        zeroStdFraction: s[STAT.groups] > 0 ? s[STAT.zeroStdGroups] / s[STAT.groups] : 0,
        unscorableRows: s[STAT.unscorableRows], emptyBatch: s[STAT.unscorableRows] === p.job.rows,
        whitenSkipped: s[STAT.whitenSkipped] === 1,
      },
    };
  });
}

function advantagesPartialImpl(async: boolean, inputs: AdvantageInputs, options?: AdvantageOptions): AdvantageBatchStats | Promise<AdvantageBatchStats> {
  if (is.isPlainObject(options) && options.batchStats !== undefined) {
    throw argError(ErrorCode.INVALID_ARG_VALUE, 'opts.batchStats', 'no batchStats when computing a partial state', options.batchStats);
  }
  const p = prepare(inputs, options, async, true);
  return runJob(p, async, () => unpackBatchStats(p));
}

type F64Options = AdvantageOptions & { precision: 'f64' };

/**
 * Advantages of B responses from their outcome rewards, within groups (SPEC §4.1).
 * `rewards` [B] (or [B, K] with `rewardWeights` [K]; NaN = not scored), `groupIds` [B] or `groupSize`.
 * Returns `advantages`, `groupMean`, `groupStd` [B] (Float32Array; Float64Array with precision 'f64') and
 * `stats`. Defaults: estimator 'grpo', scale 'group', eps 1e-6. A group of one row gets A = 0, a group whose
 * rewards are all equal gets 0 (grpo family), an unscorable row gets 0; presets reproduce verl / TRL /
 * OpenRLHF (lib/ops/advantage_presets.ts). Bad input throws ERR_AE_SHAPE_MISMATCH, ERR_OUT_OF_RANGE,
 * ERR_AE_NON_FINITE (±inf rewards; NaN lengths or baselines), ERR_INVALID_ARG_VALUE (unknown estimator).
 */
export const advantages = asyncForm(advantagesImpl) as {
  (inputs: AdvantageInputs, options: F64Options): Promise<AdvantageResult<Float64Array>>;
  (inputs: AdvantageInputs, options?: AdvantageOptions): Promise<AdvantageResult>;
};
/** Synchronous {@link advantages}. */
export const advantagesSync = syncForm(advantagesImpl) as {
  (inputs: AdvantageInputs, options: F64Options): AdvantageResult<Float64Array>;
  (inputs: AdvantageInputs, options?: AdvantageOptions): AdvantageResult;
};
/**
 * The batch statistics of this rank's rows (groups kept whole) as a mergeable state: merge every rank's
 * with {@link mergeAdvantageStats} and pass the result as `batchStats` to {@link advantages}, which then
 * returns the single-process advantages (scale 'batch', gpg's α, reinforceBaseline's whitening, bnpo's Beta
 * fit and normalizeThenSum's batch z-score all depend on the whole batch).
 */
export const advantagesPartial = asyncForm(advantagesPartialImpl);
export const advantagesPartialSync = syncForm(advantagesPartialImpl);
