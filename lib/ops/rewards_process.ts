/**
 * Process rewards (SPEC §5.3): step scores from a process reward model (PRM) or a verifier, turned into
 * sequence rewards, bounded step rewards, thought units, and per-token rewards for the token-level estimators
 * of SPEC §4.2.
 *
 *   aggregateSteps:  per row min | mean | last | product | geomean | sum of its step scores
 *   transformSteps:  clip  → min(r_k − η, 0);  delta → r_k − r_{k+1}, last step keeps r_K (Σ telescopes to r_1)
 *   thoughtUnits:    run-length units of equal consecutive labels; each unit's steps get the unit's mean score
 *   scatterSteps:    [B, T] per-token rewards with each step's reward at its last token          (native + JS)
 *   implicitProcessReward: r_t = β·(lp_t − ref_t)·m_t; step k = R_{e_k} − R_{e_{k−1}}, R the running sum (native + JS)
 *
 * Step arrays are [B, S] flat with `stepCounts` [B] (entries past a row's count are ignored and output 0).
 * Sequence-level arithmetic is f64 with f32 outputs. aggregateSteps, transformSteps and thoughtUnits are O(B·S)
 * plain JS (a native call would cost more than the work); the per-token ones run natively when the addon is
 * loaded (kernels in lib/js/process_rewards.ts and native/process_rewards.{h,cc}, same arithmetic), and on the
 * GPU with `backend: 'cuda'` per call (cuda/process_rewards.cu: the same f64 arithmetic, sums in a fixed tree).
 */
import { ErrorCode, EngineError, argError } from '../errors';
import * as is from '../is';
import { kernelOf, resolveCudaBackend, type BackendName } from '../backend';
import * as js from '../js/process_rewards';
import { asyncForm, run, syncForm } from './run';
import * as read from './rewards_inputs';
import type { Binary, Integers, Numbers } from './rewards_inputs';

interface StepArrays {
  rows: number;
  steps: number;
  scores: Float32Array | Float64Array;
  counts: Int32Array;
}

/** [B·S] step scores and [B] step counts: S is the scores' length / B. */
function stepArrays(stepScores: unknown, counts: unknown, param: string): StepArrays {
  const rawCounts = read.integers(read.required(counts, 'stepCounts'), 'stepCounts', undefined, 0, 2147483647);
  const rows = rawCounts.length;
  const scores = read.numbers(read.required(stepScores, param), param);
  const steps = read.columnsOf(scores.length, rows, param);
  return { rows, steps, scores, counts: read.stepCounts(rawCounts, 'stepCounts', rows, steps) };
}

// ---- aggregateSteps ----

export const AGGREGATE_MODES = ['min', 'mean', 'last', 'product', 'geomean', 'sum'] as const;
export type AggregateMode = (typeof AGGREGATE_MODES)[number];

/**
 * One reward per sequence from its step scores (SPEC §5.3): `min` (the weakest step, PRM-min), `mean`, `last`,
 * `product`, `geomean` = exp(mean log r) (scores must be ≥ 0; a 0 score gives 0), or `sum`.
 * @param stepScores [B, S] flat; stepCounts [B] in [0, S]; opts.mode default 'min'.
 * A row with no steps gets 0 in every mode (never NaN; the empty product's 1 would reward saying nothing).
 * @returns rewards [B] f32
 */
export function aggregateSteps(stepScores: Numbers, stepCounts: Integers, options?: { mode?: AggregateMode }): { rewards: Float32Array } {
  const { rows, steps, scores, counts } = stepArrays(stepScores, stepCounts, 'stepScores');
  const opts = read.options(options, ['mode'] as const);
  const mode = opts.mode === undefined ? 'min' : is.oneOf(opts.mode, 'opts.mode', AGGREGATE_MODES);
  if (mode === 'geomean') {
    for (let b = 0; b < rows; b++) {
      for (let s = 0; s < counts[b]; s++) {
        const r = scores[b * steps + s];
        if (r < 0) throw argError(ErrorCode.OUT_OF_RANGE, `stepScores[${b * steps + s}]`, "a score ≥ 0 (mode 'geomean')", r);
      }
    }
  }
  const rewards = new Float32Array(rows);
  for (let b = 0; b < rows; b++) {
    const n = counts[b];
    if (n === 0) continue;
    const o = b * steps;
    let acc = mode === 'min' ? Infinity : mode === 'product' ? 1 : 0;
    for (let s = 0; s < n; s++) {
      const r = scores[o + s];
      if (mode === 'min') acc = Math.min(acc, r);
      else if (mode === 'product') acc *= r;
      else if (mode === 'geomean') acc += Math.log(r);
      else acc += r;
    }
    rewards[b] = mode === 'mean' ? acc / n : mode === 'geomean' ? Math.exp(acc / n) : mode === 'last' ? scores[o + n - 1] : acc;
  }
  return { rewards };
}

// ---- transformSteps ----

export type TransformOptions = { mode: 'clip'; eta: number } | { mode: 'delta' };

/**
 * Bounded process rewards that cannot be farmed by repeating steps (SPEC §5.3, PURE arXiv:2504.15275):
 * `clip` → min(r_k − η, 0) (η required: there is no threshold that fits every PRM's scale);
 * `delta` → r_k − r_{k+1}, the last step keeping r_K, so a row's steps sum to r_1.
 * @returns rewards [B, S] f32 (0 past each row's count)
 */
export function transformSteps(stepScores: Numbers, stepCounts: Integers, options: TransformOptions): { rewards: Float32Array } {
  const { rows, steps, scores, counts } = stepArrays(stepScores, stepCounts, 'stepScores');
  const opts = read.options(options, ['mode', 'eta'] as const);
  const mode = is.oneOf(read.required(opts.mode, 'opts.mode'), 'opts.mode', ['clip', 'delta'] as const);
  let eta = 0;
  if (mode === 'clip') eta = is.finiteNumber(read.required(opts.eta, 'opts.eta'), 'opts.eta');
  else if (opts.eta !== undefined) throw argError(ErrorCode.INVALID_ARG_VALUE, 'opts.eta', "no eta with mode 'delta'", opts.eta);
  const rewards = new Float32Array(rows * steps);
  for (let b = 0; b < rows; b++) {
    const o = b * steps;
    const n = counts[b];
    for (let s = 0; s < n; s++) {
      rewards[o + s] = mode === 'clip' ? Math.min(scores[o + s] - eta, 0) : s + 1 < n ? scores[o + s] - scores[o + s + 1] : scores[o + s];
    }
  }
  return { rewards };
}

// ---- thoughtUnits ----

export interface ThoughtUnitsResult {
  /** [B, S] f32: each step carries its unit's value (0 past a row's count). */
  rewards: Float32Array;
  /** [B, S]: the unit index of each step within its row (−1 past a row's count). */
  unit: Int32Array;
  /** [B]: units per row. */
  unitCount: Int32Array;
}

/**
 * Thought units (SPEC §5.3): consecutive steps with the same label (correct / incorrect) form one unit; each
 * unit's value is the mean of its steps' scores. `spread: 'broadcast'` (default) gives every step of the unit
 * that mean; 'split' gives each step mean / unitLength, so a unit's steps sum to its mean whatever its length.
 * @param inputs.stepLabels [B, S] 0/1; inputs.stepScores [B, S] (default: the labels); inputs.stepCounts [B]
 */
export function thoughtUnits(
  inputs: { stepLabels: Binary; stepScores?: Numbers; stepCounts: Integers },
  options?: { spread?: 'broadcast' | 'split' },
): ThoughtUnitsResult {
  const input = read.inputs(inputs, ['stepLabels', 'stepScores', 'stepCounts'] as const);
  const labels = read.binary(read.required(input.stepLabels, 'inputs.stepLabels'), 'inputs.stepLabels');
  const rawCounts = read.integers(read.required(input.stepCounts, 'inputs.stepCounts'), 'inputs.stepCounts', undefined, 0, 2147483647);
  const rows = rawCounts.length;
  const steps = read.columnsOf(labels.length, rows, 'inputs.stepLabels');
  const counts = read.stepCounts(rawCounts, 'inputs.stepCounts', rows, steps);
  const scores = input.stepScores === undefined ? labels : read.numbers(input.stepScores, 'inputs.stepScores', rows * steps);
  const opts = read.options(options, ['spread'] as const);
  const split = (opts.spread === undefined ? 'broadcast' : is.oneOf(opts.spread, 'opts.spread', ['broadcast', 'split'] as const)) === 'split';
  const rewards = new Float32Array(rows * steps);
  const unit = new Int32Array(rows * steps).fill(-1);
  const unitCount = new Int32Array(rows);
  for (let b = 0; b < rows; b++) {
    const o = b * steps;
    let start = 0;
    let units = 0;
    for (let s = 1; s <= counts[b]; s++) {
      if (s < counts[b] && labels[o + s] === labels[o + start]) continue;
      let sum = 0;
      for (let k = start; k < s; k++) sum += scores[o + k];
      const length = s - start;
      const value = split ? sum / length / length : sum / length;
      for (let k = start; k < s; k++) {
        rewards[o + k] = value;
        unit[o + k] = units;
      }
      units++;
      start = s;
    }
    unitCount[b] = units;
  }
  return { rewards, unit, unitCount };
}

// ---- scatterSteps ----

export interface ScatterStepsOptions {
  /** [B, T] of the per-token output. */
  shape: readonly [number, number];
  /** [B] valid steps per row (default S). */
  stepCounts?: Integers;
  /** 'cuda' (per call only): the CUDA kernel, host arrays in and out. 'auto' never picks it. */
  backend?: BackendName;
}

function scatterStepsImpl(async: boolean, stepRewards: Numbers, stepEnd: Integers, options: ScatterStepsOptions) {
  const opts = read.options(options, ['shape', 'stepCounts', 'backend'] as const);
  const [rows, tokens] = read.shape2(read.required(opts.shape, 'opts.shape'), 'opts.shape');
  const rewards = read.numbers(read.required(stepRewards, 'stepRewards'), 'stepRewards');
  const steps = read.columnsOf(rewards.length, rows, 'stepRewards');
  const counts = read.stepCounts(opts.stepCounts, 'opts.stepCounts', rows, steps);
  const ends = read.stepEnds(stepEnd, 'stepEnd', rows, steps, counts, tokens);
  const out = new Float32Array(rows * tokens);
  const backend = resolveCudaBackend(opts.backend, rows * tokens, async);
  // The cuda addon takes the cpu addon's arguments (cuda/addon/process_rewards.cc).
  const kernel = kernelOf(backend, 'scatterSteps');
  return run(
    backend === 'js' ? 'js' : 'cpu',
    async,
    (a) => kernel(rewards, rewards instanceof Float64Array, ends, counts, rows, steps, tokens, out, a),
    () => js.scatterSteps(rewards, ends, counts, rows, steps, tokens, out),
    () => out,
  );
}

/**
 * Per-token rewards [B, T] with each step's reward at its last token and 0 elsewhere (SPEC §5.3), for the
 * token-level estimators of SPEC §4.2. Step ends must be strictly increasing per row and inside [0, T).
 * @param stepRewards [B, S] flat; stepEnd [B, S]; opts.shape [B, T]
 * @returns Float32Array [B, T]
 */
export const scatterSteps = asyncForm(scatterStepsImpl);
/** Synchronous {@link scatterSteps}. */
export const scatterStepsSync = syncForm(scatterStepsImpl);

// ---- implicitProcessReward ----

export interface ImplicitProcessRewardOptions {
  /** [B, T] of lp, ref and mask. */
  shape: readonly [number, number];
  /** β, default 0.05 (PRIME's coefficient). */
  beta?: number;
  /** [B, S] step ends (strictly increasing per row, < T): step rewards are returned too. */
  stepEnd?: Integers;
  /** [B] valid steps per row (default S). */
  stepCounts?: Integers;
  /** 'cuda' (per call only): the CUDA kernel, host arrays in and out. 'auto' never picks it. */
  backend?: BackendName;
}

export interface ImplicitProcessRewardResult {
  /** [B, T] f32: β·(lp − ref) at valid tokens, 0 at masked ones. */
  tokenRewards: Float32Array;
  /** [B, S] f32 (with stepEnd): the running sum at each step end minus that at the previous end. */
  stepRewards?: Float32Array;
  /** [B] f32: the row sum (the implicit outcome reward β·log π/π_ref of the whole response). */
  total: Float32Array;
}

function floatValues(value: unknown, param: string, length: number): Float32Array | Float64Array {
  if (!(value instanceof Float32Array || value instanceof Float64Array)) {
    throw argError(ErrorCode.INVALID_ARG_TYPE, param, 'a Float32Array or Float64Array', value);
  }
  if (value.length !== length) throw argError(ErrorCode.SHAPE_MISMATCH, param, `${length} values ([B, T])`, value);
  return value;
}

function implicitImpl(
  async: boolean, logprob: Float32Array | Float64Array, ref: Float32Array | Float64Array, mask: Binary | null,
  options: ImplicitProcessRewardOptions,
) {
  const opts = read.options(options, ['shape', 'beta', 'stepEnd', 'stepCounts', 'backend'] as const);
  const [rows, tokens] = read.shape2(read.required(opts.shape, 'opts.shape'), 'opts.shape');
  const lp = floatValues(logprob, 'logprob', rows * tokens);
  const rf = floatValues(ref, 'ref', rows * tokens);
  const m = mask === null || mask === undefined ? null : read.binary(mask, 'mask', rows * tokens);
  const beta = read.numberOr(opts.beta, 'opts.beta', 0.05);
  let ends: Int32Array | null = null;
  let counts: Int32Array | null = null;
  let steps = 0;
  if (opts.stepEnd !== undefined) {
    const raw = read.integers(opts.stepEnd, 'opts.stepEnd', undefined, -2147483648, 2147483647);
    steps = read.columnsOf(raw.length, rows, 'opts.stepEnd');
    counts = read.stepCounts(opts.stepCounts, 'opts.stepCounts', rows, steps);
    ends = read.stepEnds(raw, 'opts.stepEnd', rows, steps, counts, tokens);
  } else if (opts.stepCounts !== undefined) {
    throw argError(ErrorCode.INVALID_ARG_VALUE, 'opts.stepCounts', 'stepCounts only together with stepEnd', opts.stepCounts);
  }
  const tokenRewards = new Float32Array(rows * tokens);
  const stepRewards = ends ? new Float32Array(rows * steps) : null;
  const total = new Float32Array(rows);
  const backend = resolveCudaBackend(opts.backend, 2 * rows * tokens, async);
  const kernel = kernelOf(backend, 'implicitProcessReward');
  return run(
    backend === 'js' ? 'js' : 'cpu',
    async,
    (a) => kernel(
      lp, lp instanceof Float64Array, rf, rf instanceof Float64Array, m, rows, tokens, beta, ends, counts, steps,
      tokenRewards, stepRewards, total, a,
    ),
    () => js.implicitProcessReward({
      logprob: lp, ref: rf, mask: m, rows, tokens, beta, stepEnd: ends, stepCounts: counts, steps, tokenRewards, stepRewards, total,
    }),
    (bad): ImplicitProcessRewardResult => {
      if (bad >= 0) {
        throw new EngineError(ErrorCode.NON_FINITE, `implicitProcessReward: row ${bad} holds a non-finite lp − ref at a valid token`, {
          param: 'logprob', row: bad,
        });
      }
      return stepRewards ? { tokenRewards, stepRewards, total } : { tokenRewards, total };
    },
  );
}

/**
 * Implicit process reward (SPEC §5.3, PRIME arXiv:2502.01456): per token β·(lp − ref) where m = 1; the reward
 * of step k is the running sum at its last token minus the running sum at the previous step's last token.
 * Tokens after the last step end count only in `total`. A non-finite lp − ref at a valid token is
 * ERR_AE_NON_FINITE naming the row (masked positions may hold anything).
 * @param logprob, ref [B, T] Float32Array | Float64Array; mask [B, T] 0/1 or null
 */
export const implicitProcessReward = asyncForm(implicitImpl);
/** Synchronous {@link implicitProcessReward}. */
export const implicitProcessRewardSync = syncForm(implicitImpl);
