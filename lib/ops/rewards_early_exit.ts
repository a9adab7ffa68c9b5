/**
 * Early-exit and early-rejection rewards (SPEC §5.1, §5.2).
 *
 *   S-GRPO (serialGroupRewards):  one reasoning path cut at E exits, front to back; the k-th correct exit gets
 *                                 decay^(k−1), wrong exits 0; advantages r − mean(r) over the row's exits.
 *   Anytime reasoning (budgetRewards): J = Σ_j p_j·r_j over budgets b_1 < … < b_S, dense segment return
 *                                 R_s = Σ_{j≥s} p_j·r_j, baseline_s = group mean of R_s (optionally blended).
 *   Overthinking (firstCorrectIndex / overthinkPenalty): −penalty per token (or step) after the first step
 *                                 whose answer is correct.
 *   Early rejection (rejectByPartialReward): top-K and/or threshold on partial rewards after minTokens.
 *
 * Everything here is O(B·E) or O(B·S) arithmetic on sequence-level arrays, so it is plain JS in f64 with f32
 * outputs: a native call would cost more than the work (lib/backend.ts SMALL_INPUT_ELEMENTS) and the per-token
 * output of overthinkPenalty is a fill. Same results on every backend by construction.
 */
import { ErrorCode, argError } from '../errors';
import * as is from '../is';
import * as read from './rewards_inputs';
import type { Binary, Integers, Numbers } from './rewards_inputs';

/** std eps of the optional std division (the engine's group eps, SPEC §7). */
const STD_EPS = 1e-6;
/** How far a prior's sum may be from 1 (rounding of a user's decimal weights). */
const PRIOR_SUM_TOLERANCE = 1e-6;

// ---- S-GRPO ----

export interface SerialGroupInputs {
  /** 0/1 per exit, [B, E] flat: exit e of row b is `correct[b·E + e]`, exits ordered front to back. */
  correct: Binary;
  shape: readonly [number, number];
  /** 0/1 per exit, [B, E]: rows with fewer exits pad with 0 (padded exits get reward and advantage 0). */
  exitMask?: Binary;
}

export interface SerialGroupResult {
  /** [B, E] f32: decay^(k−1) for the k-th correct exit, 0 for wrong or padded exits. */
  rewards: Float32Array;
  /** [B, E] f32: r − mean(r) over the row's valid exits (divided by std + 1e-6 with `scaleByStd`). */
  advantages: Float32Array;
  /** [B] f32: the mean reward of each row (the baseline). */
  mean: Float32Array;
  /** [B, E]: k for the k-th correct exit (1-based), 0 otherwise. */
  correctRank: Int32Array;
}

/**
 * S-GRPO serial-group rewards (SPEC §5.1, arXiv:2505.07686): r_e = decay^(k−1) for the k-th correct exit,
 * wrong exits 0; A = r − mean(r) over the row (no std division unless `scaleByStd`, then unbiased std + 1e-6).
 * Example: exits [wrong, right, right, wrong, right] with decay 0.5 → [0, 1, 0.5, 0, 0.25].
 * @param inputs.correct [B, E] 0/1; `shape` [B, E]; `exitMask` [B, E] 0/1 optional
 * @param opts.decay in [0, 1], default 0.5; opts.scaleByStd default false. A row with no valid exit → 0s.
 */
export function serialGroupRewards(
  inputs: SerialGroupInputs, options?: { decay?: number; scaleByStd?: boolean },
): SerialGroupResult {
  const input = read.inputs(inputs, ['correct', 'shape', 'exitMask'] as const);
  const [rows, exits] = read.shape2(read.required(input.shape, 'inputs.shape'), 'inputs.shape');
  const correct = read.binary(read.required(input.correct, 'inputs.correct'), 'inputs.correct', rows * exits);
  const valid = input.exitMask === undefined ? null : read.binary(input.exitMask, 'inputs.exitMask', rows * exits);
  const opts = read.options(options, ['decay', 'scaleByStd'] as const);
  const decay = opts.decay === undefined ? 0.5 : is.numberInRange(opts.decay, 'opts.decay', 0, 1);
  const scaleByStd = opts.scaleByStd === undefined ? false : opts.scaleByStd;
  if (typeof scaleByStd !== 'boolean') throw argError(ErrorCode.INVALID_ARG_TYPE, 'opts.scaleByStd', 'a boolean', scaleByStd);

  const rewards = new Float32Array(rows * exits);
  const advantages = new Float32Array(rows * exits);
  const mean = new Float32Array(rows);
  const correctRank = new Int32Array(rows * exits);
  const r = new Float64Array(exits);
  for (let b = 0; b < rows; b++) {
    const o = b * exits;
    let k = 0;
    let n = 0;
    let sum = 0;
    for (let e = 0; e < exits; e++) {
      r[e] = 0;
      if (valid && !valid[o + e]) continue;
      n++;
      if (correct[o + e]) {
        r[e] = decay ** k;
        correctRank[o + e] = ++k;
      }
      sum += r[e];
    }
    const m = n > 0 ? sum / n : 0;
    let scale = 1;
    if (scaleByStd && n > 1) {
      let ss = 0;
      for (let e = 0; e < exits; e++) if (!valid || valid[o + e]) ss += (r[e] - m) ** 2;
      scale = 1 / (Math.sqrt(ss / (n - 1)) + STD_EPS);
    }
    mean[b] = m;
    for (let e = 0; e < exits; e++) {
      if (valid && !valid[o + e]) continue;
      rewards[o + e] = r[e];
      advantages[o + e] = (r[e] - m) * scale;
    }
  }
  return { rewards, advantages, mean, correctRank };
}

// ---- anytime reasoning ----

export type BudgetPrior = 'uniform' | 'linear' | 'last' | Numbers;

export interface BudgetInputs {
  /** [B, S]: the score of row b's answer when its thinking is cut at budget s. */
  scores: Numbers;
  shape: readonly [number, number];
  /** [B]: the prompt of each row; the baseline is a per-group mean (whole batch when absent). */
  groupIds?: Integers;
}

export interface BudgetOptions {
  /** [S] token budgets, strictly increasing, > 0 (the truncation points the scores were taken at). */
  budgets: Numbers;
  /** Weights p_j over budgets: 'uniform' (1/S), 'linear' (∝ j = 1..S), 'last' (all on b_S) or [S] summing to 1. */
  prior?: BudgetPrior;
  /** λ ∈ [0, 1]: baseline_s = (1−λ)·mean_group(R_s) + λ·r_{s−1}·Σ_{j≥s} p_j (the rollout's own earlier score). */
  blend?: number;
}

export interface BudgetResult {
  /** [B] f32: J = Σ_j p_j·r_j. */
  objective: Float32Array;
  /** [B, S] f32: R_s = Σ_{j≥s} p_j·r_j, the return of thinking segment s. */
  returns: Float32Array;
  /** [B, S] f32: the baseline of each segment. */
  baselines: Float32Array;
  /** [B, S] f32: R_s − baseline_s. */
  advantages: Float32Array;
  /** [S] f64: the prior used. */
  prior: Float64Array;
}

function budgetPrior(value: unknown, steps: number): Float64Array {
  const p = new Float64Array(steps);
  if (value === undefined || value === 'uniform') return p.fill(1 / steps);
  if (value === 'linear') {
    // ∝ j: later budgets weigh more (the answer is expected to improve with thinking).
    for (let j = 0; j < steps; j++) p[j] = (2 * (j + 1)) / (steps * (steps + 1));
    return p;
  }
  if (value === 'last') {
    if (steps > 0) p[steps - 1] = 1;
    return p;
  }
  if (typeof value === 'string') throw argError(ErrorCode.INVALID_ARG_VALUE, 'opts.prior', "'uniform' | 'linear' | 'last' | number[S]", value);
  const given = read.numbers(value, 'opts.prior', steps);
  let sum = 0;
  for (let j = 0; j < steps; j++) {
    if (given[j] < 0) throw argError(ErrorCode.OUT_OF_RANGE, `opts.prior[${j}]`, 'a weight ≥ 0', given[j]);
    p[j] = given[j];
    sum += given[j];
  }
  if (Math.abs(sum - 1) > PRIOR_SUM_TOLERANCE) {
    throw argError(ErrorCode.INVALID_ARG_VALUE, 'opts.prior', `weights summing to 1 (±${PRIOR_SUM_TOLERANCE}); they sum to ${sum}`, value);
  }
  return p;
}

/**
 * Anytime-reasoning rewards (SPEC §5.1, AnytimeReasoner arXiv:2505.13438): thinking truncated at budgets
 * b_1 < … < b_S and each truncation scored. J = Σ_j p_j·r_j; R_s = Σ_{j≥s} p_j·r_j; baseline_s = group mean
 * of R_s, blended with λ·r_{s−1}·Σ_{j≥s} p_j (segment 1 has no earlier score: group mean only); A_s = R_s − baseline_s.
 * Errors: unsorted or non-positive budgets, a prior that does not sum to 1, negative weights.
 */
export function budgetRewards(inputs: BudgetInputs, options: BudgetOptions): BudgetResult {
  const input = read.inputs(inputs, ['scores', 'shape', 'groupIds'] as const);
  const [rows, steps] = read.shape2(read.required(input.shape, 'inputs.shape'), 'inputs.shape');
  const scores = read.numbers(read.required(input.scores, 'inputs.scores'), 'inputs.scores', rows * steps);
  const groups = read.groups(input.groupIds, 'inputs.groupIds', rows);
  const opts = read.options(options, ['budgets', 'prior', 'blend'] as const);
  const budgets = read.numbers(read.required(opts.budgets, 'opts.budgets'), 'opts.budgets', steps);
  for (let j = 0; j < steps; j++) {
    if (!(budgets[j] > 0)) throw argError(ErrorCode.OUT_OF_RANGE, `opts.budgets[${j}]`, 'a budget > 0', budgets[j]);
    if (j > 0 && !(budgets[j] > budgets[j - 1])) {
      throw argError(ErrorCode.INVALID_ARG_VALUE, `opts.budgets[${j}]`, `budgets sorted strictly increasing (after ${budgets[j - 1]})`, budgets[j]);
    }
  }
  const prior = budgetPrior(opts.prior, steps);
  const blend = opts.blend === undefined ? 0 : is.numberInRange(opts.blend, 'opts.blend', 0, 1);

  const objective = new Float32Array(rows);
  const returns = new Float64Array(rows * steps);
  const tailMass = new Float64Array(steps + 1); // Σ_{j≥s} p_j
  for (let s = steps - 1; s >= 0; s--) tailMass[s] = tailMass[s + 1] + prior[s];
  for (let b = 0; b < rows; b++) {
    let tail = 0;
    for (let s = steps - 1; s >= 0; s--) {
      tail += prior[s] * scores[b * steps + s];
      returns[b * steps + s] = tail;
    }
    objective[b] = steps > 0 ? returns[b * steps] : 0;
  }
  const groupSum = new Float64Array(groups.count * steps);
  for (let b = 0; b < rows; b++) {
    for (let s = 0; s < steps; s++) groupSum[groups.index[b] * steps + s] += returns[b * steps + s];
  }
  const baselines = new Float32Array(rows * steps);
  const advantages = new Float32Array(rows * steps);
  for (let b = 0; b < rows; b++) {
    const g = groups.index[b];
    for (let s = 0; s < steps; s++) {
      const groupMean = groupSum[g * steps + s] / groups.size[g];
      const own = s > 0 ? scores[b * steps + s - 1] * tailMass[s] : groupMean;
      const base = s > 0 ? (1 - blend) * groupMean + blend * own : groupMean;
      baselines[b * steps + s] = base;
      advantages[b * steps + s] = returns[b * steps + s] - base;
    }
  }
  return { objective, returns: Float32Array.from(returns), baselines, advantages, prior };
}

// ---- overthinking ----

export interface StepOutcomeInputs {
  /** [B, S] 0/1: whether the answer extracted after step s is correct. */
  stepCorrect: Binary;
  /** [B, S]: the last token position of each step, strictly increasing per row. */
  stepEnd: Integers;
  shape: readonly [number, number];
  /** [B]: valid steps per row (default S). */
  stepCounts?: Integers;
}

export interface FirstCorrectResult {
  /** [B]: the token position where the answer first becomes correct (end of that step), −1 when never. */
  position: Int32Array;
  /** [B]: the index of that step, −1 when never. */
  step: Int32Array;
}

interface StepOutcomes {
  rows: number;
  steps: number;
  counts: Int32Array;
  ends: Int32Array;
  first: FirstCorrectResult;
}

function stepOutcomes(input: Partial<Record<string, unknown>>, tokens: number): StepOutcomes {
  const [rows, steps] = read.shape2(read.required(input.shape, 'inputs.shape'), 'inputs.shape');
  const correct = read.binary(read.required(input.stepCorrect, 'inputs.stepCorrect'), 'inputs.stepCorrect', rows * steps);
  const counts = read.stepCounts(input.stepCounts, 'inputs.stepCounts', rows, steps);
  const ends = read.stepEnds(read.required(input.stepEnd, 'inputs.stepEnd'), 'inputs.stepEnd', rows, steps, counts, tokens);
  const position = new Int32Array(rows).fill(-1);
  const step = new Int32Array(rows).fill(-1);
  for (let b = 0; b < rows; b++) {
    for (let s = 0; s < counts[b]; s++) {
      if (correct[b * steps + s]) {
        step[b] = s;
        position[b] = ends[b * steps + s];
        break;
      }
    }
  }
  return { rows, steps, counts, ends, first: { position, step } };
}

/** The first step whose answer is correct, per row (SPEC §5.1): its index and its last token position, −1 when none. */
export function firstCorrectIndex(inputs: StepOutcomeInputs): FirstCorrectResult {
  const input = read.inputs(inputs, ['stepCorrect', 'stepEnd', 'shape', 'stepCounts'] as const);
  return stepOutcomes(input, 2147483647).first;
}

export interface OverthinkInputs extends StepOutcomeInputs {
  /** T: the per-token output is [B, T]; step ends must lie in [0, T). */
  tokens: number;
  /** [B, T] 0/1: valid response tokens. Without it a row's tokens are those up to its last step end. */
  mask?: Binary;
}

export interface OverthinkResult extends FirstCorrectResult {
  /** [B, T] f32: −penalty on each token (or at the end of each step) after the first correct step, else 0. */
  rewards: Float32Array;
  /** [B] f32: the row sum of `rewards`. */
  total: Float32Array;
}

/**
 * Overthinking penalty (SPEC §5.1): tokens after the position where the answer first becomes correct get
 * −penalty each (`per: 'token'`), or each later step gets −penalty at its last token (`per: 'step'`); tokens
 * before it, and rows never correct, are untouched.
 * @param opts.penalty ≥ 0 (required); opts.per 'token' (default) | 'step'
 */
export function overthinkPenalty(inputs: OverthinkInputs, options: { penalty: number; per?: 'token' | 'step' }): OverthinkResult {
  const input = read.inputs(inputs, ['stepCorrect', 'stepEnd', 'shape', 'stepCounts', 'tokens', 'mask'] as const);
  const tokens = is.nonNegativeInteger(read.required(input.tokens, 'inputs.tokens'), 'inputs.tokens');
  const { rows, steps, counts, ends, first } = stepOutcomes(input, tokens);
  const mask = input.mask === undefined ? null : read.binary(input.mask, 'inputs.mask', rows * tokens);
  const opts = read.options(options, ['penalty', 'per'] as const);
  const penalty = is.numberInRange(read.required(opts.penalty, 'opts.penalty'), 'opts.penalty', 0, Number.MAX_VALUE);
  const per = opts.per === undefined ? 'token' : is.oneOf(opts.per, 'opts.per', ['token', 'step'] as const);

  const rewards = new Float32Array(rows * tokens);
  const total = new Float32Array(rows);
  for (let b = 0; b < rows; b++) {
    if (first.step[b] < 0) continue;
    let count = 0;
    if (per === 'step') {
      for (let s = first.step[b] + 1; s < counts[b]; s++) {
        rewards[b * tokens + ends[b * steps + s]] = -penalty;
        count++;
      }
    } else {
      const last = mask ? tokens - 1 : ends[b * steps + counts[b] - 1];
      for (let t = first.position[b] + 1; t <= last; t++) {
        if (mask && !mask[b * tokens + t]) continue;
        rewards[b * tokens + t] = -penalty;
        count++;
      }
    }
    total[b] = -penalty * count;
  }
  return { rewards, total, ...first };
}

// ---- early rejection ----

export type RejectReason = 'kept' | 'waiting' | 'belowThreshold' | 'notTopK' | 'notScored';

export interface RejectResult {
  /** Indices of the candidates kept, increasing. */
  kept: Int32Array;
  /** Indices of the candidates rejected, increasing. */
  rejected: Int32Array;
  /** Per candidate: 'kept', 'waiting' (kept: fewer than minTokens generated), or why it was rejected. */
  reasons: RejectReason[];
}

/**
 * Early rejection by partial reward (SPEC §5.2): among candidates with at least `minTokens` tokens, keep those
 * in the top `keepTop` by score and/or with score ≥ `threshold` (`mode` 'and': both rules that are given must
 * hold; 'or': either). Candidates still under `minTokens` are kept ('waiting') and take no top-K slot. Ties at
 * the K-th score keep the lower index; a NaN score is 'notScored' and never kept once eligible.
 * @param inputs.scores [K]; inputs.tokens [K] tokens generated so far (required with minTokens > 0)
 */
export function rejectByPartialReward(
  inputs: { scores: Numbers; tokens?: Integers },
  options: { keepTop?: number; threshold?: number; minTokens?: number; mode?: 'and' | 'or' },
): RejectResult {
  const input = read.inputs(inputs, ['scores', 'tokens'] as const);
  const scores = read.numbers(read.required(input.scores, 'inputs.scores'), 'inputs.scores', undefined, true);
  const n = scores.length;
  const opts = read.options(options, ['keepTop', 'threshold', 'minTokens', 'mode'] as const);
  const keepTop = opts.keepTop === undefined ? null : is.nonNegativeInteger(opts.keepTop, 'opts.keepTop');
  const threshold = opts.threshold === undefined ? null : is.finiteNumber(opts.threshold, 'opts.threshold');
  if (keepTop === null && threshold === null) {
    throw argError(ErrorCode.INVALID_ARG_VALUE, 'opts', 'at least one of keepTop, threshold', options);
  }
  const minTokens = opts.minTokens === undefined ? 0 : is.nonNegativeInteger(opts.minTokens, 'opts.minTokens');
  const mode = opts.mode === undefined ? 'and' : is.oneOf(opts.mode, 'opts.mode', ['and', 'or'] as const);
  let generated: Int32Array | null = null;
  if (input.tokens !== undefined) generated = read.lengths(input.tokens, 'inputs.tokens', n);
  else if (minTokens > 0) throw argError(ErrorCode.INVALID_ARG_VALUE, 'inputs.tokens', 'tokens generated per candidate (minTokens > 0)', undefined);

  const eligible: number[] = [];
  for (let i = 0; i < n; i++) if (!generated || generated[i] >= minTokens) eligible.push(i);
  const inTop = new Uint8Array(n);
  if (keepTop !== null) {
    const ranked = eligible.filter((i) => scores[i] === scores[i]).sort((a, b) => scores[b] - scores[a] || a - b);
    for (let k = 0; k < Math.min(keepTop, ranked.length); k++) inTop[ranked[k]] = 1;
  }
  const reasons: RejectReason[] = new Array(n).fill('waiting');
  const kept: number[] = [];
  const rejected: number[] = [];
  for (let i = 0; i < n; i++) {
    if (generated && generated[i] < minTokens) {
      kept.push(i);
      continue;
    }
    let reason: RejectReason = 'kept';
    if (scores[i] !== scores[i]) reason = 'notScored';
    else {
      const passThreshold = threshold === null ? null : scores[i] >= threshold;
      const passTop = keepTop === null ? null : inTop[i] === 1;
      const keep = mode === 'and' ? passThreshold !== false && passTop !== false : passThreshold === true || passTop === true;
      if (!keep) reason = passThreshold === false ? 'belowThreshold' : 'notTopK';
    }
    reasons[i] = reason;
    (reason === 'kept' ? kept : rejected).push(i);
  }
  return { kept: Int32Array.from(kept), rejected: Int32Array.from(rejected), reasons };
}
