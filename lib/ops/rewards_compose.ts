/**
 * Reward composition and group filters (SPEC §5.6, §5.7).
 *
 *   combine:              r = clip(Σ_k w_k·x_k) over components that are not NaN and whose gate holds
 *   trustWeighted:        r = answer + w·thinking, w = w0·exp(−step/T)·(per group exp(μ_correct − μ_wrong) when
 *                         correct answers' thinking scores lower on average; 0 in all-correct / all-wrong groups)
 *   logSigmoidCentered:   log σ(r − r_ref);  sigmoidCentered: σ(r − r_ref)
 *   correctNoisyVerifier: (r − ρ0)/(1 − ρ0 − ρ1), ρ0 + ρ1 < 1
 *   potentialShaping:     γ·Φ_{t+1} − Φ_t per token
 *   groupFilter:          drop zero-variance groups or groups whose mean reward is outside (low, high)
 *
 * Sequence-level and elementwise arithmetic in f64 with f32 outputs, plain JS: O(B·K) or one pass over [B, T]
 * with no reduction over a vocabulary, where a native call would only add its fixed cost.
 */
import { ErrorCode, argError } from '../errors';
import * as is from '../is';
import * as read from './rewards_inputs';
import type { Binary, Integers, Numbers } from './rewards_inputs';

// ---- combine ----

export const GATE_OPS = ['>=', '>', '<=', '<', '==', '!='] as const;
export type GateOp = (typeof GATE_OPS)[number];

/** Component `component` counts only in rows where component `on` satisfies `op value` (NaN never does). */
export interface Gate {
  component: number;
  on: number;
  op: GateOp;
  value: number;
}

export interface CombineResult {
  /** [B] f32: the clipped weighted sum. */
  rewards: Float32Array;
  /** [B, K] f32: w_k·x_k where component k counted, 0 where it was NaN or gated off. */
  weighted: Float32Array;
  /** [B]: how many components counted. */
  counted: Int32Array;
  /** [B] 0/1: whether clipping changed the sum. */
  clipped: Uint8Array;
}

function gateHolds(x: number, op: GateOp, value: number): boolean {
  switch (op) {
    case '>=': return x >= value;
    case '>': return x > value;
    case '<=': return x <= value;
    case '<': return x < value;
    case '==': return x === value;
    default: return x === x && x !== value;
  }
}

/**
 * NaN-aware weighted sum of reward components (SPEC §5.6): a NaN component (unscorable) is skipped, as are
 * components whose gate fails; a row where nothing counts gets 0 (TRL's nansum). `clip` [low, high] bounds the sum.
 * @param components [B, K] flat (K = weights.length), NaN allowed; opts.weights [K] finite
 * @example process reward only when the outcome is correct: gates [{component: 1, on: 0, op: '>=', value: 1}]
 */
export function combine(
  components: Numbers,
  options: { weights: Numbers; gates?: readonly Gate[]; clip?: readonly [number, number] },
): CombineResult {
  const opts = read.options(options, ['weights', 'gates', 'clip'] as const);
  const weights = read.numbers(read.required(opts.weights, 'opts.weights'), 'opts.weights');
  const k = weights.length;
  if (k === 0) throw argError(ErrorCode.INVALID_ARG_VALUE, 'opts.weights', 'at least one weight', opts.weights);
  const x = read.numbers(read.required(components, 'components'), 'components', undefined, true);
  if (x.length % k !== 0) throw argError(ErrorCode.SHAPE_MISMATCH, 'components', `[B, K] values with K = ${k} (weights.length)`, components);
  const rows = x.length / k;
  const gates: Gate[] = [];
  if (opts.gates !== undefined) {
    if (!Array.isArray(opts.gates)) throw argError(ErrorCode.INVALID_ARG_TYPE, 'opts.gates', 'an array of gates', opts.gates);
    opts.gates.forEach((g: unknown, i: number) => {
      const gate = is.options(g, `opts.gates[${i}]`, ['component', 'on', 'op', 'value'] as const);
      const index = (name: 'component' | 'on') => {
        const v = is.nonNegativeInteger(read.required(gate[name], `opts.gates[${i}].${name}`), `opts.gates[${i}].${name}`);
        if (v >= k) throw argError(ErrorCode.OUT_OF_RANGE, `opts.gates[${i}].${name}`, `a component index in [0, ${k})`, v);
        return v;
      };
      gates.push({
        component: index('component'),
        on: index('on'),
        op: is.oneOf(read.required(gate.op, `opts.gates[${i}].op`), `opts.gates[${i}].op`, GATE_OPS),
        value: is.finiteNumber(read.required(gate.value, `opts.gates[${i}].value`), `opts.gates[${i}].value`),
      });
    });
  }
  let low = -Infinity, high = Infinity;
  if (opts.clip !== undefined) {
    const clip = read.numbers(opts.clip, 'opts.clip', 2);
    if (!(clip[0] <= clip[1])) throw argError(ErrorCode.INVALID_ARG_VALUE, 'opts.clip', '[low, high] with low ≤ high', opts.clip);
    [low, high] = [clip[0], clip[1]];
  }
  const rewards = new Float32Array(rows);
  const weighted = new Float32Array(rows * k);
  const counted = new Int32Array(rows);
  const clipped = new Uint8Array(rows);
  for (let b = 0; b < rows; b++) {
    const o = b * k;
    let sum = 0;
    for (let j = 0; j < k; j++) {
      const v = x[o + j];
      if (v !== v) continue;
      if (gates.some((g) => g.component === j && !gateHolds(x[o + g.on], g.op, g.value))) continue;
      const term = weights[j] * v;
      weighted[o + j] = term;
      sum += term;
      counted[b]++;
    }
    const bounded = Math.min(high, Math.max(low, sum));
    clipped[b] = bounded !== sum ? 1 : 0;
    rewards[b] = bounded;
  }
  return { rewards, weighted, counted, clipped };
}

// ---- trust-weighted thinking reward ----

export interface TrustWeightedInputs {
  /** [B] answer (outcome) reward. */
  answer: Numbers;
  /** [B] thinking (process) reward. */
  thinking: Numbers;
  /** [B] 0/1 outcome. */
  correct: Binary;
  /** [B] prompt of each response; the whole batch is one group when absent. */
  groupIds?: Integers;
}

/**
 * Trust-weighted thinking reward (SPEC §5.6): r = answer + w·thinking with w = w0·exp(−step/T) (T = 500 by default,
 * or halfLife/ln 2), multiplied per group by exp(μ_correct − μ_wrong) when the thinking reward of correct answers
 * is lower on average than that of wrong ones (the thinking reward is then less trusted); w = 0 in groups that
 * are all correct or all wrong.
 * @param opts.step ≥ 0 the training step (required); opts.w0 default 0.3
 * @returns rewards [B] f32, weight [B] f32 (the w applied), groupFactor [B] f32
 */
export function trustWeighted(
  inputs: TrustWeightedInputs,
  options: { step: number; w0?: number; T?: number; halfLife?: number },
) {
  const input = read.inputs(inputs, ['answer', 'thinking', 'correct', 'groupIds'] as const);
  const answer = read.numbers(read.required(input.answer, 'inputs.answer'), 'inputs.answer');
  const n = answer.length;
  const thinking = read.numbers(read.required(input.thinking, 'inputs.thinking'), 'inputs.thinking', n);
  const correct = read.binary(read.required(input.correct, 'inputs.correct'), 'inputs.correct', n);
  const groups = read.groups(input.groupIds, 'inputs.groupIds', n);
  const opts = read.options(options, ['step', 'w0', 'T', 'halfLife'] as const);
  const step = is.numberInRange(read.required(opts.step, 'opts.step'), 'opts.step', 0, Number.MAX_VALUE);
  const w0 = read.numberOr(opts.w0, 'opts.w0', 0.3);
  if (opts.T !== undefined && opts.halfLife !== undefined) {
    throw argError(ErrorCode.INVALID_ARG_VALUE, 'opts.halfLife', 'either T or halfLife, not both', opts.halfLife);
  }
  const T = opts.halfLife !== undefined ? is.positiveNumber(opts.halfLife, 'opts.halfLife') / Math.LN2 : opts.T === undefined ? 500 : is.positiveNumber(opts.T, 'opts.T');
  const decayed = w0 * Math.exp(-step / T);
  const sums = new Float64Array(4 * groups.count); // per group: Σ thinking | correct, count correct, Σ | wrong, count wrong
  for (let i = 0; i < n; i++) {
    const o = 4 * groups.index[i] + (correct[i] ? 0 : 2);
    sums[o] += thinking[i];
    sums[o + 1]++;
  }
  const factor = new Float64Array(groups.count);
  for (let g = 0; g < groups.count; g++) {
    const [sc, nc, sw, nw] = sums.subarray(4 * g, 4 * g + 4);
    if (nc === 0 || nw === 0) continue;
    const gap = sc / nc - sw / nw;
    factor[g] = gap < 0 ? Math.exp(gap) : 1;
  }
  const rewards = new Float32Array(n);
  const weight = new Float32Array(n);
  const groupFactor = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const f = factor[groups.index[i]];
    const w = decayed * f;
    rewards[i] = answer[i] + w * thinking[i];
    weight[i] = w;
    groupFactor[i] = f;
  }
  return { rewards, weight, groupFactor };
}

// ---- centred sigmoids ----

/** r_ref per element: a number, [N], or [K] per property with opts.shape [B, K]. */
function references(rRef: unknown, n: number, columns: number | null): (i: number) => number {
  if (typeof rRef === 'number') {
    const v = is.finiteNumber(rRef, 'rRef');
    return () => v;
  }
  const ref = read.numbers(rRef, 'rRef');
  if (ref.length === n) return (i) => ref[i];
  if (columns !== null && ref.length === columns) return (i) => ref[i % columns];
  throw argError(ErrorCode.SHAPE_MISMATCH, 'rRef', `a number, ${n} values${columns !== null ? ` or ${columns} (one per property)` : ''}`, rRef);
}

function centred(r: Numbers, rRef: number | Numbers, options: unknown, log: boolean) {
  const x = read.numbers(read.required(r, 'r'), 'r');
  const opts = read.options(options, ['shape'] as const);
  const shape = opts.shape === undefined ? null : read.shape2(opts.shape, 'opts.shape');
  if (shape && shape[0] * shape[1] !== x.length) throw argError(ErrorCode.SHAPE_MISMATCH, 'r', `${shape[0] * shape[1]} values (opts.shape)`, r);
  const ref = references(rRef, x.length, shape ? shape[1] : null);
  const values = new Float32Array(x.length);
  const total = shape ? new Float64Array(shape[0]) : null;
  for (let i = 0; i < x.length; i++) {
    const d = x[i] - ref(i);
    // log σ(d) = −softplus(−d), stable for large |d|.
    const v = log ? (d >= 0 ? -Math.log1p(Math.exp(-d)) : d - Math.log1p(Math.exp(d))) : d >= 0 ? 1 / (1 + Math.exp(-d)) : Math.exp(d) / (1 + Math.exp(d));
    values[i] = v;
    if (total) total[Math.floor(i / shape![1])] += v;
  }
  return { values, total };
}

/**
 * log σ(r − r_ref) (SPEC §5.6): with opts.shape [B, K] (K properties per response), `total` [B] is the sum over
 * properties = the log-probability of being good on all. rRef: a number, [N], or [K] with shape.
 */
export function logSigmoidCentered(r: Numbers, rRef: number | Numbers, options?: { shape?: readonly [number, number] }) {
  const { values, total } = centred(r, rRef, options, true);
  return total ? { values, total: Float32Array.from(total) } : { values };
}

/** σ(r − r_ref) (SPEC §5.6): a bounded reward centred on a reference, against reward hacking. */
export function sigmoidCentered(r: Numbers, rRef: number | Numbers, options?: { shape?: readonly [number, number] }): { values: Float32Array } {
  return { values: centred(r, rRef, options, false).values };
}

// ---- noisy verifier ----

/**
 * Unbiased reward under a noisy verifier (SPEC §5.6): (r − ρ0)/(1 − ρ0 − ρ1), ρ0 = false-positive rate,
 * ρ1 = false-negative rate, each in [0, 1), ρ0 + ρ1 < 1 (else ERR_OUT_OF_RANGE: the verifier carries no signal).
 */
export function correctNoisyVerifier(r: Numbers, options: { falsePositive?: number; falseNegative?: number }): { rewards: Float32Array } {
  const x = read.numbers(read.required(r, 'r'), 'r');
  const opts = read.options(options, ['falsePositive', 'falseNegative'] as const);
  const rho0 = opts.falsePositive === undefined ? 0 : is.numberInRange(opts.falsePositive, 'opts.falsePositive', 0, 1);
  const rho1 = opts.falseNegative === undefined ? 0 : is.numberInRange(opts.falseNegative, 'opts.falseNegative', 0, 1);
  if (!(rho0 + rho1 < 1)) {
    throw argError(ErrorCode.OUT_OF_RANGE, 'opts.falseNegative', `falsePositive + falseNegative < 1 (falsePositive = ${rho0})`, rho1);
  }
  const rewards = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) rewards[i] = (x[i] - rho0) / (1 - rho0 - rho1);
  return { rewards };
}

// ---- potential-based shaping ----

/**
 * Potential-based shaping (SPEC §5.6, Ng et al. 1999): F_t = γ·Φ_{t+1} − Φ_t per token, which leaves the optimal
 * policy unchanged. Masked tokens get 0. With `rewards` [B, T], `rewards` out = rewards + F.
 * @param phi [B, T+1] flat; opts.shape [B, T]; opts.gamma in [0, 1], default 1
 */
export function potentialShaping(
  phi: Numbers,
  options: { shape: readonly [number, number]; gamma?: number; mask?: Binary; rewards?: Numbers },
): { shaping: Float32Array; rewards?: Float32Array } {
  const opts = read.options(options, ['shape', 'gamma', 'mask', 'rewards'] as const);
  const [rows, tokens] = read.shape2(read.required(opts.shape, 'opts.shape'), 'opts.shape');
  const potential = read.numbers(read.required(phi, 'phi'), 'phi', rows * (tokens + 1));
  const gamma = opts.gamma === undefined ? 1 : is.numberInRange(opts.gamma, 'opts.gamma', 0, 1);
  const mask = opts.mask === undefined ? null : read.binary(opts.mask, 'opts.mask', rows * tokens);
  const base = opts.rewards === undefined ? null : read.numbers(opts.rewards, 'opts.rewards', rows * tokens);
  const shaping = new Float32Array(rows * tokens);
  const rewards = base ? new Float32Array(rows * tokens) : null;
  for (let b = 0; b < rows; b++) {
    for (let t = 0; t < tokens; t++) {
      const i = b * tokens + t;
      const p = b * (tokens + 1) + t;
      const f = mask && !mask[i] ? 0 : gamma * potential[p + 1] - potential[p];
      shaping[i] = f;
      if (rewards) rewards[i] = base![i] + f;
    }
  }
  return rewards ? { shaping, rewards } : { shaping };
}

// ---- group filters ----

export type GroupDropReason = 'zeroVariance' | 'belowRange' | 'aboveRange';

export interface GroupFilterResult {
  /** Indices of the responses kept, increasing. */
  keep: Int32Array;
  /** One entry per group (first-appearance order): its id, size, mean, and why it was dropped (null when kept). */
  groups: { id: number; size: number; mean: number; reason: GroupDropReason | null }[];
  /** Responses kept / responses. 1 for an empty batch. */
  fractionKept: number;
}

/**
 * Group filters (SPEC §5.7): `drop: 'zeroVariance'` (DAPO dynamic sampling) drops groups whose rewards are all
 * equal — a group of one included — since their advantages are all 0; `drop: 'range'` (OpenRLHF dynamic
 * filtering) keeps groups whose mean reward lies strictly inside (low, high), defaults (0, 1).
 */
export function groupFilter(
  rewards: Numbers, groupIds: Integers, options?: { drop?: 'zeroVariance' | 'range'; low?: number; high?: number },
): GroupFilterResult {
  const r = read.numbers(read.required(rewards, 'rewards'), 'rewards');
  const groups = read.groups(read.required(groupIds, 'groupIds'), 'groupIds', r.length);
  const opts = read.options(options, ['drop', 'low', 'high'] as const);
  const drop = opts.drop === undefined ? 'zeroVariance' : is.oneOf(opts.drop, 'opts.drop', ['zeroVariance', 'range'] as const);
  if (drop === 'zeroVariance' && (opts.low !== undefined || opts.high !== undefined)) {
    throw argError(ErrorCode.INVALID_ARG_VALUE, 'opts.low', "low / high only with drop: 'range'", opts.low ?? opts.high);
  }
  const low = read.numberOr(opts.low, 'opts.low', 0);
  const high = read.numberOr(opts.high, 'opts.high', 1);
  if (!(low < high)) throw argError(ErrorCode.INVALID_ARG_VALUE, 'opts.high', `a bound above low (${low})`, high);
  const sum = new Float64Array(groups.count);
  const lo = new Float64Array(groups.count).fill(Infinity);
  const hi = new Float64Array(groups.count).fill(-Infinity);
  for (let i = 0; i < r.length; i++) {
    const g = groups.index[i];
    sum[g] += r[i];
    lo[g] = Math.min(lo[g], r[i]);
    hi[g] = Math.max(hi[g], r[i]);
  }
  const summary = groups.ids.map((id, g) => {
    const mean = sum[g] / groups.size[g];
    let reason: GroupDropReason | null = null;
    if (drop === 'zeroVariance') reason = hi[g] === lo[g] ? 'zeroVariance' : null;
    else reason = mean <= low ? 'belowRange' : mean >= high ? 'aboveRange' : null;
    return { id, size: groups.size[g], mean, reason };
  });
  const keep: number[] = [];
  for (let i = 0; i < r.length; i++) if (summary[groups.index[i]].reason === null) keep.push(i);
  return { keep: Int32Array.from(keep), groups: summary, fractionKept: r.length === 0 ? 1 : keep.length / r.length };
}
