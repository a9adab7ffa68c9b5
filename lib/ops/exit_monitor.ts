/**
 * Streaming early-exit monitor (SPEC §6). During generation, each `push` carries one decode step for the live
 * sequences — their next-token logits [live, V] (entropy and max-prob are computed by tokenStats, SPEC §1.1, in
 * one fused native pass per row) or precomputed signals — and returns one decision per sequence:
 * `continue`, `exit` (force the end of thinking now) or `reject` (stop and discard), with the rule that fired.
 *
 * Rules, checked in this order (rejections first: a sequence that should be discarded is never merely exited):
 *   partialReward  reject when this step's partial reward < threshold, once tokens ≥ minTokens
 *   topK           reject the rows of this step ranked below the K best partial rewards (rows with tokens ≥ minTokens
 *                  and a score this step; ties keep the lower id) — rejectByPartialReward's rule, SPEC §5.2
 *   entropyBelow   exit when entropy < threshold for k consecutive tokens
 *   maxProbAbove   exit when max-prob > threshold for k consecutive tokens
 *   plateau        exit when the mean entropy of the last full window of `window` tokens differs from that of the
 *                  window before by ≤ tolerance (windows are consecutive blocks: O(1) state per sequence)
 *   budget         exit when the sequence has `maxTokens` tokens
 *
 * State is a few numbers per sequence (O(batch), never O(tokens)). Sequences leave the live set when they exit or
 * are rejected, or when the caller says they finished (EOS) or removes them; pushing a row for a sequence that is
 * not live is an error (its decision was already final).
 */
import { ErrorCode, EngineError, argError } from '../errors';
import * as is from '../is';
import { requireCuda, type BackendName } from '../backend';
import { logitRows, type Tensor } from '../tensor';
import { DeviceTensor } from '../cuda';
import { tokenStats, tokenStatsSync, type StatName } from './token_stats';
import * as read from './rewards_inputs';
import type { Integers, Numbers } from './rewards_inputs';

export type ExitDecision = 'continue' | 'exit' | 'reject';
export const EXIT_RULES = ['partialReward', 'topK', 'entropyBelow', 'maxProbAbove', 'plateau', 'budget'] as const;
export type ExitRule = (typeof EXIT_RULES)[number];
export type SequenceStatus = 'live' | 'exited' | 'rejected' | 'finished' | 'removed';

export interface ExitRules {
  /** Exit when entropy < threshold for k consecutive tokens (k default 1). */
  entropyBelow?: { threshold: number; k?: number };
  /** Exit when max-prob > threshold for k consecutive tokens (k default 1). */
  maxProbAbove?: { threshold: number; k?: number };
  /** Exit when consecutive windows' mean entropies differ by ≤ tolerance, once tokens ≥ minTokens (default 0). */
  plateau?: { window: number; tolerance: number; minTokens?: number };
  /** Exit at maxTokens tokens. */
  budget?: { maxTokens: number };
  /** Reject when the partial reward is below threshold, once tokens ≥ minTokens (default 0). */
  partialReward?: { threshold: number; minTokens?: number };
  /** Keep only the k best partial rewards among the scored rows of a step (once tokens ≥ minTokens, default 0). */
  topK?: { k: number; minTokens?: number };
}

export interface ExitMonitorOptions {
  /** Sequences in the batch, ids 0 … batch−1. */
  batch: number;
  rules: ExitRules;
  /** τ of the logits path (statistics of softmax(z/τ)), default 1. */
  temperature?: number;
  /**
   * Backend of the logits path's tokenStats. 'cuda' (the CUDA token statistics) also takes the logits as a
   * DeviceTensor, so that a sampler's logits never leave the GPU: only entropy and max-prob come back.
   */
  backend?: BackendName;
}

/** One decode step: the logits of the live sequences, or their precomputed signals. */
export interface ExitStep {
  /** [rows, V] (or [rows, 1, V]) next-token logits, one row per sequence in `ids` (a DeviceTensor on backend 'cuda'). */
  logits?: Tensor | DeviceTensor;
  /** [rows] precomputed entropy (instead of logits). */
  entropy?: Numbers;
  /** [rows] precomputed max-prob (instead of logits). */
  maxProb?: Numbers;
  /** [rows] partial reward of each row this step; NaN = not scored this step. */
  partialReward?: Numbers;
  /** Which sequences the rows are; default: every live sequence in increasing id order. */
  ids?: Integers;
}

export interface StepDecisions {
  /** [rows] the sequence of each row. */
  ids: Int32Array;
  decisions: ExitDecision[];
  /** The rule that fired per row (null for 'continue'). */
  rules: (ExitRule | null)[];
  /** [rows] entropy and max-prob used (NaN where not available). */
  entropy: Float32Array;
  maxProb: Float32Array;
  /** [rows] tokens of each sequence including this step's. */
  tokens: Int32Array;
}

export interface SequenceSummary {
  id: number;
  status: SequenceStatus;
  /** Tokens pushed for the sequence. */
  tokens: number;
  /** The rule that ended it ('exited' / 'rejected'), else null. */
  rule: ExitRule | null;
}

export interface ExitMonitor {
  readonly batch: number;
  /** Applies one decode step (sync: tokenStatsSync on the logits path). */
  push(step: ExitStep): StepDecisions;
  /** {@link push} with the logits path off the event loop (tokenStats); one push at a time. */
  pushAsync(step: ExitStep): Promise<StepDecisions>;
  /** The sequence ended on its own (EOS): it leaves the live set. */
  finish(id: number): void;
  /** The caller dropped the sequence: it leaves the live set. */
  remove(id: number): void;
  /** Live sequence ids, increasing. */
  live(): Int32Array;
  /** Per sequence: status, tokens, rule. */
  summary(): SequenceSummary[];
}

const STATUS: readonly SequenceStatus[] = ['live', 'exited', 'rejected', 'finished', 'removed'];
const LIVE = 0, EXITED = 1, REJECTED = 2, FINISHED = 3, REMOVED = 4;
const NO_RULE = 255;

function ruleOptions<K extends string>(value: unknown, name: string, known: readonly K[]): Partial<Record<K, unknown>> {
  return is.options(value, `opts.rules.${name}`, known);
}

interface Rules {
  entropyBelow: { threshold: number; k: number } | null;
  maxProbAbove: { threshold: number; k: number } | null;
  plateau: { window: number; tolerance: number; minTokens: number } | null;
  budget: { maxTokens: number } | null;
  partialReward: { threshold: number; minTokens: number } | null;
  topK: { k: number; minTokens: number } | null;
}

function parseRules(value: unknown): Rules {
  const r = is.options(read.required(value, 'opts.rules'), 'opts.rules', EXIT_RULES);
  const positive = (v: unknown, p: string) => {
    const x = is.nonNegativeInteger(v, p);
    if (x < 1) throw argError(ErrorCode.OUT_OF_RANGE, p, 'an integer ≥ 1', v);
    return x;
  };
  const minTokens = (v: unknown, p: string) => (v === undefined ? 0 : is.nonNegativeInteger(v, p));
  const rules: Rules = { entropyBelow: null, maxProbAbove: null, plateau: null, budget: null, partialReward: null, topK: null };
  if (r.entropyBelow !== undefined) {
    const o = ruleOptions(r.entropyBelow, 'entropyBelow', ['threshold', 'k'] as const);
    rules.entropyBelow = {
      threshold: is.finiteNumber(read.required(o.threshold, 'opts.rules.entropyBelow.threshold'), 'opts.rules.entropyBelow.threshold'),
      k: o.k === undefined ? 1 : positive(o.k, 'opts.rules.entropyBelow.k'),
    };
  }
  if (r.maxProbAbove !== undefined) {
    const o = ruleOptions(r.maxProbAbove, 'maxProbAbove', ['threshold', 'k'] as const);
    rules.maxProbAbove = {
      threshold: is.numberInRange(read.required(o.threshold, 'opts.rules.maxProbAbove.threshold'), 'opts.rules.maxProbAbove.threshold', 0, 1),
      k: o.k === undefined ? 1 : positive(o.k, 'opts.rules.maxProbAbove.k'),
    };
  }
  if (r.plateau !== undefined) {
    const o = ruleOptions(r.plateau, 'plateau', ['window', 'tolerance', 'minTokens'] as const);
    rules.plateau = {
      window: positive(read.required(o.window, 'opts.rules.plateau.window'), 'opts.rules.plateau.window'),
      tolerance: is.numberInRange(read.required(o.tolerance, 'opts.rules.plateau.tolerance'), 'opts.rules.plateau.tolerance', 0, Number.MAX_VALUE),
      minTokens: minTokens(o.minTokens, 'opts.rules.plateau.minTokens'),
    };
  }
  if (r.budget !== undefined) {
    const o = ruleOptions(r.budget, 'budget', ['maxTokens'] as const);
    rules.budget = { maxTokens: positive(read.required(o.maxTokens, 'opts.rules.budget.maxTokens'), 'opts.rules.budget.maxTokens') };
  }
  if (r.partialReward !== undefined) {
    const o = ruleOptions(r.partialReward, 'partialReward', ['threshold', 'minTokens'] as const);
    rules.partialReward = {
      threshold: is.finiteNumber(read.required(o.threshold, 'opts.rules.partialReward.threshold'), 'opts.rules.partialReward.threshold'),
      minTokens: minTokens(o.minTokens, 'opts.rules.partialReward.minTokens'),
    };
  }
  if (r.topK !== undefined) {
    const o = ruleOptions(r.topK, 'topK', ['k', 'minTokens'] as const);
    rules.topK = { k: is.nonNegativeInteger(read.required(o.k, 'opts.rules.topK.k'), 'opts.rules.topK.k'), minTokens: minTokens(o.minTokens, 'opts.rules.topK.minTokens') };
  }
  return rules;
}

/**
 * Creates a streaming early-exit monitor over `batch` sequences (SPEC §6). See the file header for the rules
 * and their order.
 * @example
 *   const monitor = createExitMonitor({ batch: 8, rules: { entropyBelow: { threshold: 0.3, k: 16 }, budget: { maxTokens: 4096 } } });
 *   const { decisions, rules } = monitor.push({ logits });   // logits [live, V], rows in live-id order
 */
export function createExitMonitor(options: ExitMonitorOptions): ExitMonitor {
  const opts = is.options(read.required(options, 'opts'), 'opts', ['batch', 'rules', 'temperature', 'backend'] as const);
  const batch = is.nonNegativeInteger(read.required(opts.batch, 'opts.batch'), 'opts.batch');
  if (batch > 2147483647) throw argError(ErrorCode.OUT_OF_RANGE, 'opts.batch', 'a batch below 2^31', batch);
  const rules = parseRules(opts.rules);
  const temperature = opts.temperature === undefined ? 1 : is.positiveNumber(opts.temperature, 'opts.temperature');
  const backend = opts.backend === undefined ? undefined : is.oneOf(opts.backend, 'opts.backend', ['auto', 'cpu', 'js', 'cuda'] as const);
  if (backend === 'cuda') requireCuda('opts.backend');

  // Per-sequence state: O(batch).
  const status = new Uint8Array(batch);
  const tokens = new Int32Array(batch);
  const lowEntropyRun = new Int32Array(batch);
  const highProbRun = new Int32Array(batch);
  const windowSum = new Float64Array(batch);
  const windowFill = new Int32Array(batch);
  const previousWindowMean = new Float64Array(batch).fill(NaN);
  const firedRule = new Uint8Array(batch).fill(NO_RULE);
  let liveCount = batch;
  let pending = false;

  function sequenceId(id: unknown, param: string): number {
    const i = is.nonNegativeInteger(id, param);
    if (i >= batch) throw argError(ErrorCode.OUT_OF_RANGE, param, `a sequence id in [0, ${batch})`, id);
    return i;
  }

  function leave(id: number, to: number): void {
    const i = sequenceId(id, 'id');
    if (status[i] !== LIVE) {
      throw argError(ErrorCode.INVALID_ARG_VALUE, 'id', `a live sequence (sequence ${i} is ${STATUS[status[i]]})`, id);
    }
    status[i] = to;
    liveCount--;
  }

  function live(): Int32Array {
    const ids = new Int32Array(liveCount);
    for (let i = 0, k = 0; i < batch; i++) if (status[i] === LIVE) ids[k++] = i;
    return ids;
  }

  /** Validates a step (everything but the logits' statistics) and returns its rows. */
  function prepare(step: ExitStep) {
    const s = is.options(read.required(step, 'step'), 'step', ['logits', 'entropy', 'maxProb', 'partialReward', 'ids'] as const);
    let ids: Int32Array;
    if (s.ids === undefined) ids = live();
    else {
      ids = Int32Array.from(read.integers(s.ids, 'step.ids', undefined, 0, batch - 1));
      const seen = new Uint8Array(batch);
      ids.forEach((id, k) => {
        if (seen[id]) throw argError(ErrorCode.INVALID_ARG_VALUE, `step.ids[${k}]`, 'each sequence at most once per step', id);
        seen[id] = 1;
      });
    }
    ids.forEach((id, k) => {
      if (status[id] !== LIVE) throw argError(ErrorCode.INVALID_ARG_VALUE, `step.ids[${k}]`, `a live sequence (sequence ${id} is ${STATUS[status[id]]})`, id);
    });
    const rows = ids.length;
    let logits: Tensor | DeviceTensor | null = null;
    if (s.logits !== undefined) {
      if (s.entropy !== undefined || s.maxProb !== undefined) {
        throw argError(ErrorCode.INVALID_ARG_VALUE, 'step.entropy', 'either logits or precomputed entropy / maxProb, not both', s.entropy ?? s.maxProb);
      }
      let shape: readonly number[];
      if (s.logits instanceof DeviceTensor) {
        if (backend !== 'cuda') throw argError(ErrorCode.INVALID_ARG_VALUE, 'step.logits', "host logits (device logits need opts.backend 'cuda')", 'DeviceTensor');
        shape = s.logits.shape;
        logits = s.logits;
      } else {
        const r = logitRows(s.logits, 'step.logits');
        shape = r.tensor.shape;
        logits = r.tensor;
      }
      // [rows, V] or [rows, 1, V]; the device op checks a device tensor's layout itself.
      const logitRowCount = shape.length < 2 ? -1 : shape.slice(0, -1).reduce((a, b) => a * b, 1);
      if (logitRowCount !== rows) throw argError(ErrorCode.SHAPE_MISMATCH, 'step.logits.shape', `${rows} rows (one per sequence in ids)`, `[${shape.join(', ')}]`);
    }
    const entropy = s.entropy === undefined ? null : read.numbers(s.entropy, 'step.entropy', rows);
    const maxProb = s.maxProb === undefined ? null : read.numbers(s.maxProb, 'step.maxProb', rows);
    if (!logits) {
      if (!entropy && (rules.entropyBelow || rules.plateau)) {
        throw argError(ErrorCode.INVALID_ARG_VALUE, 'step.entropy', 'entropy per row (or logits): the entropy rules need it', undefined);
      }
      if (!maxProb && rules.maxProbAbove) {
        throw argError(ErrorCode.INVALID_ARG_VALUE, 'step.maxProb', 'max-prob per row (or logits): the maxProbAbove rule needs it', undefined);
      }
    }
    const partial = s.partialReward === undefined ? null : read.numbers(s.partialReward, 'step.partialReward', rows, true);
    return { ids, logits, entropy, maxProb, partial };
  }

  function decide(
    ids: Int32Array, entropyIn: ArrayLike<number> | null, maxProbIn: ArrayLike<number> | null, partial: ArrayLike<number> | null,
  ): StepDecisions {
    const rows = ids.length;
    const entropy = new Float32Array(rows).fill(NaN);
    const maxProb = new Float32Array(rows).fill(NaN);
    const count = new Int32Array(rows);
    const fired: (ExitRule | null)[] = new Array(rows).fill(null);
    // Top-K over the rows scored this step (after minTokens), as in rejectByPartialReward.
    if (rules.topK && partial) {
      const ranked: number[] = [];
      for (let k = 0; k < rows; k++) if (partial[k] === partial[k] && tokens[ids[k]] + 1 >= rules.topK.minTokens) ranked.push(k);
      ranked.sort((a, b) => partial[b] - partial[a] || ids[a] - ids[b]);
      for (let j = rules.topK.k; j < ranked.length; j++) fired[ranked[j]] = 'topK';
    }
    for (let k = 0; k < rows; k++) {
      const id = ids[k];
      const n = ++tokens[id];
      count[k] = n;
      if (entropyIn) entropy[k] = entropyIn[k];
      if (maxProbIn) maxProb[k] = maxProbIn[k];
      const h = entropyIn ? entropyIn[k] : NaN;
      const p = maxProbIn ? maxProbIn[k] : NaN;
      if (rules.entropyBelow) lowEntropyRun[id] = h < rules.entropyBelow.threshold ? lowEntropyRun[id] + 1 : 0;
      if (rules.maxProbAbove) highProbRun[id] = p > rules.maxProbAbove.threshold ? highProbRun[id] + 1 : 0;
      let plateaued = false;
      if (rules.plateau) {
        windowSum[id] += h;
        if (++windowFill[id] === rules.plateau.window) {
          const mean = windowSum[id] / rules.plateau.window;
          plateaued = Math.abs(mean - previousWindowMean[id]) <= rules.plateau.tolerance && n >= rules.plateau.minTokens;
          previousWindowMean[id] = mean;
          windowSum[id] = 0;
          windowFill[id] = 0;
        }
      }
      const score = partial ? partial[k] : NaN;
      let rule: ExitRule | null = null;
      if (rules.partialReward && score === score && n >= rules.partialReward.minTokens && score < rules.partialReward.threshold) rule = 'partialReward';
      else if (fired[k] === 'topK') rule = 'topK';
      else if (rules.entropyBelow && lowEntropyRun[id] >= rules.entropyBelow.k) rule = 'entropyBelow';
      else if (rules.maxProbAbove && highProbRun[id] >= rules.maxProbAbove.k) rule = 'maxProbAbove';
      else if (plateaued) rule = 'plateau';
      else if (rules.budget && n >= rules.budget.maxTokens) rule = 'budget';
      fired[k] = rule;
      if (rule !== null) {
        status[id] = rule === 'partialReward' || rule === 'topK' ? REJECTED : EXITED;
        firedRule[id] = EXIT_RULES.indexOf(rule);
        liveCount--;
      }
    }
    const decisions = fired.map((rule): ExitDecision => (rule === null ? 'continue' : rule === 'partialReward' || rule === 'topK' ? 'reject' : 'exit'));
    return { ids, decisions, rules: fired, entropy, maxProb, tokens: count };
  }

  // One fused pass per row gives both statistics; tokenStats throws ERR_AE_NON_FINITE for a row with NaN, +inf or
  // only −inf (a row of −inf but one finite entry is valid: entropy 0, max-prob 1).
  // On 'cuda' the device's op, which also takes device logits.
  const outputs: StatName[] = ['entropy', 'maxProb'];
  function statsOf(logits: Tensor | DeviceTensor): ReturnType<typeof tokenStatsSync>;
  function statsOf(logits: Tensor | DeviceTensor, async: true): ReturnType<typeof tokenStats>;
  function statsOf(logits: Tensor | DeviceTensor, async = false) {
    if (backend === 'cuda') {
      const device = requireCuda('opts.backend');
      return async ? device.tokenStats(logits, { outputs, temperature }) : device.tokenStatsSync(logits, { outputs, temperature });
    }
    const opts = { outputs, temperature, ...(backend === undefined ? {} : { backend }) };
    return async ? tokenStats(logits as Tensor, opts) : tokenStatsSync(logits as Tensor, opts);
  }
  function notPending(what: string): void {
    if (pending) throw new EngineError(ErrorCode.INVALID_ARG_VALUE, `ExitMonitor.${what}: a pushAsync is still pending (await it first)`, { param: 'step' });
  }

  return {
    batch,
    push(step) {
      notPending('push');
      const { ids, logits, entropy, maxProb, partial } = prepare(step);
      if (!logits) return decide(ids, entropy, maxProb, partial);
      const stats = statsOf(logits);
      return decide(ids, stats.entropy!, stats.maxProb!, partial);
    },
    async pushAsync(step) {
      notPending('pushAsync');
      const { ids, logits, entropy, maxProb, partial } = prepare(step);
      if (!logits) return decide(ids, entropy, maxProb, partial);
      pending = true;
      try {
        const stats = await statsOf(logits, true);
        return decide(ids, stats.entropy!, stats.maxProb!, partial);
      } finally {
        pending = false;
      }
    },
    finish(id) {
      notPending('finish');
      leave(id, FINISHED);
    },
    remove(id) {
      notPending('remove');
      leave(id, REMOVED);
    },
    live,
    summary() {
      return Array.from({ length: batch }, (_, id) => ({
        id,
        status: STATUS[status[id]],
        tokens: tokens[id],
        rule: firedRule[id] === NO_RULE ? null : EXIT_RULES[firedRule[id]],
      }));
    },
  };
}
