/**
 * Length and efficiency shaping (SPEC §5.4). Per sequence: L = response length (tokens), c = correct ∈ {0, 1}.
 *
 *   lengthStep (LASER):          c + α·c·1[L ≤ L_T];  wrongReward when c = 0
 *   lengthByDifficulty (LASER-D): L_T per group from its accuracy bucket (easy ≥ 2/3, medium ≥ 1/3, hard)
 *   kimiLength (Kimi k1.5):      λ = 0.5 − (L − L_min)/(L_max − L_min) in the group; +w·λ if correct, +w·min(0, λ) if wrong
 *   overlongPenalty (DAPO):      min(0, −(L − (L_max − L_buf))/L_buf·f), capped at −f
 *   truncationPenalty:           truncated responses get r·coef (coef ∈ [0, 1]) or coef (coef < 0)
 *   groupGatedLength (GRPO-λ):   the Kimi length reward only in groups whose accuracy ≥ threshold
 *   conciseWhenCorrect:          c·(1 + w·(1 − σ(z))), z = (L − mean)/std of the group's correct lengths
 *
 * Every function returns the shaped `rewards` [B] f32 and the components it combined. O(B) plain JS in f64:
 * there is no per-token work here, so a native path could only add call overhead.
 */
import { ErrorCode, argError } from '../errors';
import * as is from '../is';
import * as read from './rewards_inputs';
import type { Binary, Groups, Integers, Numbers } from './rewards_inputs';

/** The engine's group std eps (SPEC §7), for conciseWhenCorrect's length z-score. */
const STD_EPS = 1e-6;

export interface LengthInputs {
  /** [B] 0/1 outcome. */
  correct: Binary;
  /** [B] response lengths in tokens, integers ≥ 0. */
  lengths: Integers;
  /** [B] prompt of each response (any integers); the whole batch is one group when absent. */
  groupIds?: Integers;
}

interface Length {
  n: number;
  correct: Uint8Array;
  lengths: Int32Array;
  groups: Groups;
}

function lengthInputs(inputs: unknown, extra: readonly string[] = []): Length & { input: Partial<Record<string, unknown>> } {
  const input = read.inputs(inputs, ['correct', 'lengths', 'groupIds', ...extra]);
  const correct = read.binary(read.required(input.correct, 'inputs.correct'), 'inputs.correct');
  const n = correct.length;
  const lengths = read.lengths(read.required(input.lengths, 'inputs.lengths'), 'inputs.lengths', n);
  return { input, n, correct, lengths, groups: read.groups(input.groupIds, 'inputs.groupIds', n) };
}

function groupAccuracy({ n, correct, groups }: Length): Float64Array {
  const hits = new Float64Array(groups.count);
  for (let i = 0; i < n; i++) hits[groups.index[i]] += correct[i];
  const accuracy = new Float64Array(n);
  for (let i = 0; i < n; i++) accuracy[i] = hits[groups.index[i]] / groups.size[groups.index[i]];
  return accuracy;
}

// ---- LASER ----

export interface LengthStepOptions {
  /** L_T: responses at most this long earn the bonus (required). */
  targetLength: number;
  /** α, default 0.5. */
  alpha?: number;
  /** Reward of a wrong response, default 0 (LASER uses −0.5). */
  wrongReward?: number;
}

function stepReward(c: number, length: number, target: number, alpha: number, wrong: number): number {
  return c ? 1 + (length <= target ? alpha : 0) : wrong;
}

function laserOptions(opts: Partial<Record<string, unknown>>): { alpha: number; wrong: number } {
  return { alpha: read.numberOr(opts.alpha, 'opts.alpha', 0.5), wrong: read.numberOr(opts.wrongReward, 'opts.wrongReward', 0) };
}

/**
 * LASER step length reward (SPEC §5.4, arXiv:2505.15612): c + α·c·1[L ≤ L_T]; `wrongReward` when c = 0.
 * @returns rewards [B] f32; bonus [B] 0/1 (within the target and correct)
 */
export function lengthStep(inputs: LengthInputs, options: LengthStepOptions): { rewards: Float32Array; bonus: Uint8Array } {
  const { n, correct, lengths } = lengthInputs(inputs);
  const opts = read.options(options, ['targetLength', 'alpha', 'wrongReward'] as const);
  const target = is.nonNegativeInteger(read.required(opts.targetLength, 'opts.targetLength'), 'opts.targetLength');
  const { alpha, wrong } = laserOptions(opts);
  const rewards = new Float32Array(n);
  const bonus = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    rewards[i] = stepReward(correct[i], lengths[i], target, alpha, wrong);
    bonus[i] = correct[i] && lengths[i] <= target ? 1 : 0;
  }
  return { rewards, bonus };
}

export interface LengthByDifficultyOptions {
  /** [easy, medium, hard] L_T per accuracy bucket (required). */
  targets: readonly [number, number, number] | Integers;
  /** [easy, medium] lower accuracy bounds, default [2/3, 1/3]: easy ≥ 2/3, medium ∈ [1/3, 2/3), hard < 1/3. */
  thresholds?: readonly [number, number];
  alpha?: number;
  wrongReward?: number;
}

/**
 * LASER-D (SPEC §5.4): L_T chosen per group from its accuracy bucket, then {@link lengthStep}.
 * @returns rewards [B] f32; targetLength [B]; accuracy [B] f32 (of each response's group); bucket [B] 0 easy, 1 medium, 2 hard
 */
export function lengthByDifficulty(inputs: LengthInputs, options: LengthByDifficultyOptions) {
  const data = lengthInputs(inputs);
  const opts = read.options(options, ['targets', 'thresholds', 'alpha', 'wrongReward'] as const);
  const targets = read.integers(read.required(opts.targets, 'opts.targets'), 'opts.targets', 3, 0, 2147483647);
  const thresholds = opts.thresholds === undefined ? Float64Array.of(2 / 3, 1 / 3) : read.numbers(opts.thresholds, 'opts.thresholds', 2);
  if (!(thresholds[0] >= thresholds[1] && thresholds[1] >= 0 && thresholds[0] <= 1)) {
    throw argError(ErrorCode.OUT_OF_RANGE, 'opts.thresholds', '[easy, medium] with 1 ≥ easy ≥ medium ≥ 0', opts.thresholds);
  }
  const { alpha, wrong } = laserOptions(opts);
  const accuracy = groupAccuracy(data);
  const rewards = new Float32Array(data.n);
  const targetLength = new Int32Array(data.n);
  const bucket = new Uint8Array(data.n);
  for (let i = 0; i < data.n; i++) {
    bucket[i] = accuracy[i] >= thresholds[0] ? 0 : accuracy[i] >= thresholds[1] ? 1 : 2;
    targetLength[i] = targets[bucket[i]];
    rewards[i] = stepReward(data.correct[i], data.lengths[i], targetLength[i], alpha, wrong);
  }
  return { rewards, targetLength, accuracy: Float32Array.from(accuracy), bucket };
}

// ---- Kimi ----

/** λ per response: 0.5 − (L − L_min)/(L_max − L_min) over its group; 0 in a group of equal lengths. */
function kimiLambda({ n, lengths, groups }: Length): Float64Array {
  const lo = new Float64Array(groups.count).fill(Infinity);
  const hi = new Float64Array(groups.count).fill(-Infinity);
  for (let i = 0; i < n; i++) {
    const g = groups.index[i];
    lo[g] = Math.min(lo[g], lengths[i]);
    hi[g] = Math.max(hi[g], lengths[i]);
  }
  const lambda = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const g = groups.index[i];
    lambda[i] = hi[g] > lo[g] ? 0.5 - (lengths[i] - lo[g]) / (hi[g] - lo[g]) : 0;
  }
  return lambda;
}

/**
 * Kimi k1.5 length reward (SPEC §5.4, arXiv:2501.12599): λ = 0.5 − (L − L_min)/(L_max − L_min) within the group;
 * the length reward is w·λ when correct and w·min(0, λ) when wrong; rewards = c + length reward.
 * @param opts.weight w, default 1
 */
export function kimiLength(inputs: LengthInputs, options?: { weight?: number }) {
  const data = lengthInputs(inputs);
  const opts = read.options(options, ['weight'] as const);
  const weight = read.numberOr(opts.weight, 'opts.weight', 1);
  const lambda = kimiLambda(data);
  const lengthReward = new Float32Array(data.n);
  const rewards = new Float32Array(data.n);
  for (let i = 0; i < data.n; i++) {
    const term = weight * (data.correct[i] ? lambda[i] : Math.min(0, lambda[i]));
    lengthReward[i] = term;
    rewards[i] = data.correct[i] + term;
  }
  return { rewards, lengthReward, lambda: Float32Array.from(lambda) };
}

// ---- DAPO overlong, truncation ----

/**
 * DAPO soft overlong punishment (SPEC §5.4, arXiv:2503.14476): with the free length L_max − L_buf,
 * penalty = min(0, −(L − (L_max − L_buf))/L_buf·f), capped at −f (L ≥ L_max). rewards = scores + penalty
 * (the penalty alone without scores).
 * @param opts.maxLength L_max ≥ 1; opts.buffer L_buf in [1, L_max]; opts.factor f ≥ 0, default 1
 */
export function overlongPenalty(
  inputs: { lengths: Integers; scores?: Numbers },
  options: { maxLength: number; buffer: number; factor?: number },
): { rewards: Float32Array; penalty: Float32Array } {
  const input = read.inputs(inputs, ['lengths', 'scores'] as const);
  const lengths = read.lengths(read.required(input.lengths, 'inputs.lengths'), 'inputs.lengths');
  const n = lengths.length;
  const scores = input.scores === undefined ? null : read.numbers(input.scores, 'inputs.scores', n);
  const opts = read.options(options, ['maxLength', 'buffer', 'factor'] as const);
  const maxLength = is.nonNegativeInteger(read.required(opts.maxLength, 'opts.maxLength'), 'opts.maxLength');
  const buffer = is.nonNegativeInteger(read.required(opts.buffer, 'opts.buffer'), 'opts.buffer');
  if (buffer < 1 || buffer > maxLength) throw argError(ErrorCode.OUT_OF_RANGE, 'opts.buffer', `an integer in [1, maxLength = ${maxLength}]`, buffer);
  const factor = is.numberInRange(opts.factor === undefined ? 1 : opts.factor, 'opts.factor', 0, Number.MAX_VALUE);
  const free = maxLength - buffer;
  const penalty = new Float32Array(n);
  const rewards = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const p = Math.max(-factor, Math.min(0, (-(lengths[i] - free) / buffer) * factor));
    penalty[i] = p;
    rewards[i] = (scores ? scores[i] : 0) + p;
  }
  return { rewards, penalty };
}

/**
 * Truncation penalty (SPEC §5.4): responses that hit the length limit get r·coef when coef ∈ [0, 1] (scaled
 * down), or the constant coef when coef < 0; others keep r. Truncation is given as `truncated` [B] 0/1, or as
 * `lengths` with opts.maxLength (L ≥ maxLength is truncated).
 */
export function truncationPenalty(
  inputs: { scores: Numbers; truncated?: Binary; lengths?: Integers },
  options: { coef: number; maxLength?: number },
): { rewards: Float32Array; truncated: Uint8Array } {
  const input = read.inputs(inputs, ['scores', 'truncated', 'lengths'] as const);
  const scores = read.numbers(read.required(input.scores, 'inputs.scores'), 'inputs.scores');
  const n = scores.length;
  const opts = read.options(options, ['coef', 'maxLength'] as const);
  const coef = is.numberInRange(read.required(opts.coef, 'opts.coef'), 'opts.coef', -Number.MAX_VALUE, 1);
  let truncated: Uint8Array;
  if (input.truncated !== undefined) {
    if (input.lengths !== undefined || opts.maxLength !== undefined) {
      throw argError(ErrorCode.INVALID_ARG_VALUE, 'inputs.truncated', 'either truncated, or lengths with opts.maxLength', input.truncated);
    }
    truncated = read.binary(input.truncated, 'inputs.truncated', n);
  } else {
    const lengths = read.lengths(read.required(input.lengths, 'inputs.lengths'), 'inputs.lengths', n);
    const maxLength = is.nonNegativeInteger(read.required(opts.maxLength, 'opts.maxLength'), 'opts.maxLength');
    truncated = new Uint8Array(n);
    for (let i = 0; i < n; i++) truncated[i] = lengths[i] >= maxLength ? 1 : 0;
  }
  const rewards = new Float32Array(n);
  for (let i = 0; i < n; i++) rewards[i] = !truncated[i] ? scores[i] : coef >= 0 ? scores[i] * coef : coef;
  return { rewards, truncated };
}

// ---- GRPO-λ, conciseness ----

/**
 * GRPO-λ group-gated length penalty (SPEC §5.4, arXiv:2505.18086): in groups whose accuracy ≥ `threshold`
 * (default 0.5) the reward is c + the Kimi length reward (weight w, default 1); other groups keep the plain c.
 * @returns rewards [B] f32, gated [B] 0/1 (penalty applied), lengthReward [B] f32 (0 where not gated), accuracy [B] f32
 */
export function groupGatedLength(inputs: LengthInputs, options?: { threshold?: number; weight?: number }) {
  const data = lengthInputs(inputs);
  const opts = read.options(options, ['threshold', 'weight'] as const);
  const threshold = opts.threshold === undefined ? 0.5 : is.numberInRange(opts.threshold, 'opts.threshold', 0, 1);
  const weight = read.numberOr(opts.weight, 'opts.weight', 1);
  const accuracy = groupAccuracy(data);
  const lambda = kimiLambda(data);
  const rewards = new Float32Array(data.n);
  const gated = new Uint8Array(data.n);
  const lengthReward = new Float32Array(data.n);
  for (let i = 0; i < data.n; i++) {
    gated[i] = accuracy[i] >= threshold ? 1 : 0;
    const term = gated[i] ? weight * (data.correct[i] ? lambda[i] : Math.min(0, lambda[i])) : 0;
    lengthReward[i] = term;
    rewards[i] = data.correct[i] + term;
  }
  return { rewards, gated, lengthReward, accuracy: Float32Array.from(accuracy) };
}

/**
 * Conciseness bonus paid only when correct (SPEC §5.4, after arXiv:2502.04463): for a correct response,
 * z = (L − mean)/(std + 1e-6) over the correct responses of its group (unbiased std; 0 with fewer than two) and
 * bonus = w·(1 − σ(z)) ∈ (0, w); wrong responses get no bonus. rewards = c + bonus.
 * @param opts.weight w ≥ 0, default 0.1
 */
export function conciseWhenCorrect(inputs: LengthInputs, options?: { weight?: number }) {
  const data = lengthInputs(inputs);
  const opts = read.options(options, ['weight'] as const);
  const weight = is.numberInRange(opts.weight === undefined ? 0.1 : opts.weight, 'opts.weight', 0, Number.MAX_VALUE);
  const { n, correct, lengths, groups } = data;
  const count = new Float64Array(groups.count);
  const sum = new Float64Array(groups.count);
  for (let i = 0; i < n; i++) {
    if (!correct[i]) continue;
    count[groups.index[i]]++;
    sum[groups.index[i]] += lengths[i];
  }
  const squares = new Float64Array(groups.count);
  for (let i = 0; i < n; i++) {
    if (correct[i]) squares[groups.index[i]] += (lengths[i] - sum[groups.index[i]] / count[groups.index[i]]) ** 2;
  }
  const rewards = new Float32Array(n);
  const bonus = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    if (!correct[i]) continue;
    const g = groups.index[i];
    const std = count[g] > 1 ? Math.sqrt(squares[g] / (count[g] - 1)) : 0;
    const z = (lengths[i] - sum[g] / count[g]) / (std + STD_EPS);
    const paid = weight * (1 - 1 / (1 + Math.exp(-z)));
    bonus[i] = paid;
    rewards[i] = 1 + paid;
  }
  return { rewards, bonus };
}
