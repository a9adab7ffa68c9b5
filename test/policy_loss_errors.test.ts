/**
 * Bad inputs to policyLoss, klPenalty, rolloutCorrection and AdaptiveKlController: one row per case, asserting the
 * error's `code` and the parameter it names (the tail of `param`, so 'advantages' matches 'inputs.advantages'),
 * never whole messages. The Sync form throws; the async form rejects (never throws) with the same error. Run on
 * every backend: validation happens in TypeScript before any kernel, so the answer is the same everywhere.
 */
import * as ae from '../lib';
import { EngineError } from '../lib/errors';
import { backendCases } from './helpers';

const B = 2;
const T = 3;
const f32 = (n: number, v = -0.5) => new Float32Array(n).fill(v);
const good = () => ({
  logprob: f32(B * T), oldLogprob: f32(B * T, -0.4), advantages: Float32Array.from([1, -1]),
  mask: Uint8Array.from([1, 1, 0, 1, 0, 0]), shape: [B, T],
});
const BACKEND_NAMES = backendCases().filter((c) => !c.simd).map((c) => c.backend);

interface Case {
  name: string;
  code: string;
  /** The parameter named by the error: `param` equals it or ends with '.' + it (or '[i]' after it). */
  param: string;
  /** For ERR_AE_NON_FINITE from a kernel: the first offending row. */
  row?: number;
  sync: (backend: string) => unknown;
  async?: (backend: string) => Promise<unknown>;
}

const CASES: Case[] = [];
/* eslint-disable @typescript-eslint/no-explicit-any */
const policy = (name: string, inputs: unknown, opts: Record<string, unknown>, code: string, param: string, row?: number) =>
  CASES.push({
    name: `policyLoss: ${name}`, code, param, row,
    sync: (backend) => ae.policyLossSync(inputs as any, { ...opts, backend } as any),
    async: (backend) => ae.policyLoss(inputs as any, { ...opts, backend } as any),
  });
const kl = (name: string, lp: unknown, ref: unknown, opts: Record<string, unknown>, code: string, param: string) =>
  CASES.push({
    name: `klPenalty: ${name}`, code, param,
    sync: (backend) => ae.klPenaltySync(lp as any, ref as any, { ...opts, backend } as any),
    async: (backend) => ae.klPenalty(lp as any, ref as any, { ...opts, backend } as any),
  });
const rollout = (name: string, inputs: unknown, opts: Record<string, unknown>, code: string, param: string) =>
  CASES.push({
    name: `rolloutCorrection: ${name}`, code, param,
    sync: (backend) => ae.rolloutCorrectionSync(inputs as any, { ...opts, backend } as any),
    async: (backend) => ae.rolloutCorrection(inputs as any, { ...opts, backend } as any),
  });
const plain = (name: string, call: () => unknown, code: string, param: string) => CASES.push({ name, code, param, sync: call });

// ---- policyLoss: shapes ----
policy('logprob shorter than B·T', { ...good(), logprob: f32(5) }, {}, 'ERR_AE_SHAPE_MISMATCH', 'logprob');
policy('oldLogprob longer than B·T', { ...good(), oldLogprob: f32(7) }, {}, 'ERR_AE_SHAPE_MISMATCH', 'oldLogprob');
policy('advantages neither [B] nor [B·T]', { ...good(), advantages: f32(4) }, {}, 'ERR_AE_SHAPE_MISMATCH', 'advantages');
policy('mask length mismatch', { ...good(), mask: new Uint8Array(5) }, {}, 'ERR_AE_SHAPE_MISMATCH', 'mask');
policy('refLogprob length mismatch', { ...good(), refLogprob: f32(2) }, { klCoef: 0.1 }, 'ERR_AE_SHAPE_MISMATCH', 'refLogprob');
policy('entropy length mismatch', { ...good(), entropy: f32(8) }, { entropyCoef: 0.1 }, 'ERR_AE_SHAPE_MISMATCH', 'entropy');
policy('rolloutLogprob length mismatch', { ...good(), rolloutLogprob: f32(1) }, {}, 'ERR_AE_SHAPE_MISMATCH', 'rolloutLogprob');
policy('isWeights neither [B] nor [B·T]', good(), { isWeights: f32(4, 1) }, 'ERR_AE_SHAPE_MISMATCH', 'isWeights');
policy('tokenMask length mismatch', good(), { tokenMask: new Uint8Array(2) }, 'ERR_AE_SHAPE_MISMATCH', 'tokenMask');
policy('shape [3, 2] against 6 values per array but advantages of 2', { ...good(), shape: [3, 2] }, {}, 'ERR_AE_SHAPE_MISMATCH', 'advantages');
// ---- policyLoss: values ----
policy('NaN in advantages', { ...good(), advantages: Float32Array.from([NaN, 1]) }, {}, 'ERR_AE_NON_FINITE', 'advantages');
// [B·T] arrays are not scanned in TypeScript: the kernel reports the first row with a non-finite valid token
// (it cannot tell which array: param 'inputs', and the row); a non-finite value at a masked token is ignored.
policy('+inf in [B·T] advantages at a valid token', { ...good(), advantages: Float32Array.from([1, 1, 1, Infinity, 1, 1]) }, {}, 'ERR_AE_NON_FINITE', 'inputs', 1);
policy('NaN in logprob at a valid token', { ...good(), logprob: Float32Array.from([-1, NaN, -1, -1, -1, -1]) }, {}, 'ERR_AE_NON_FINITE', 'inputs', 0);
// mask values other than 0/1: ERR_INVALID_ARG_VALUE, as is.mask01 answers for every mask of the package
policy('mask value 2 (Uint8Array)', { ...good(), mask: Uint8Array.from([1, 2, 0, 1, 0, 0]) }, {}, 'ERR_INVALID_ARG_VALUE', 'mask');
policy('mask value 0.5 (Float32Array)', { ...good(), mask: Float32Array.from([1, 0.5, 0, 1, 0, 0]) }, {}, 'ERR_INVALID_ARG_VALUE', 'mask');
// ---- policyLoss: options ----
policy('dualClip = 1', good(), { dualClip: 1 }, 'ERR_OUT_OF_RANGE', 'dualClip');
policy('dualClip = 0.5', good(), { dualClip: 0.5 }, 'ERR_OUT_OF_RANGE', 'dualClip');
policy('clipLow = 1', good(), { clipLow: 1 }, 'ERR_OUT_OF_RANGE', 'clipLow');
policy('clipLow = 1.5', good(), { clipLow: 1.5 }, 'ERR_OUT_OF_RANGE', 'clipLow');
policy('clipLow < 0', good(), { clipLow: -0.1 }, 'ERR_OUT_OF_RANGE', 'clipLow');
policy('clipHigh < 0', good(), { clipHigh: -0.1 }, 'ERR_OUT_OF_RANGE', 'clipHigh');
policy("unknown mode 'ppo2'", good(), { mode: 'ppo2' }, 'ERR_INVALID_ARG_VALUE', 'mode');
policy("unknown aggregation 'token-sum'", good(), { aggregation: 'token-sum' }, 'ERR_INVALID_ARG_VALUE', 'aggregation');
policy("unknown klEstimator 'k4'", good(), { klEstimator: 'k4' }, 'ERR_INVALID_ARG_VALUE', 'klEstimator');
policy("misspelt option 'clipLo'", good(), { clipLo: 0.2 }, 'ERR_INVALID_ARG_VALUE', 'clipLo');
policy("unknown preset 'deepspeed'", good(), { preset: 'deepspeed' }, 'ERR_INVALID_ARG_VALUE', 'preset');
policy('ratioClamp ≤ 0', good(), { ratioClamp: 0 }, 'ERR_OUT_OF_RANGE', 'ratioClamp');
policy('globalTokens = 0', good(), { globalTokens: 0 }, 'ERR_OUT_OF_RANGE', 'globalTokens');
policy('normConstant < 0', good(), { aggregation: 'seq-mean-token-sum-norm', normConstant: -1 }, 'ERR_OUT_OF_RANGE', 'normConstant');
policy('klCoef NaN (a non-finite option is out of range, as is.finiteNumber says)', good(), { klCoef: NaN }, 'ERR_OUT_OF_RANGE', 'klCoef');

// ---- klPenalty ----
kl('length mismatch', f32(4), f32(5), {}, 'ERR_AE_SHAPE_MISMATCH', 'refLogprob');
kl("unknown estimator 'k5'", f32(4), f32(4), { estimator: 'k5' }, 'ERR_INVALID_ARG_VALUE', 'estimator');
kl("misspelt option 'estimater'", f32(4), f32(4), { estimater: 'k3' }, 'ERR_INVALID_ARG_VALUE', 'estimater');
kl('logprob not a float array', 'abc', f32(3), {}, 'ERR_INVALID_ARG_TYPE', 'logprob');

// ---- rolloutCorrection ----
const goodRollout = () => ({ oldLogprob: f32(B * T), rolloutLogprob: f32(B * T, -0.3), mask: Uint8Array.from([1, 1, 0, 1, 0, 0]), shape: [B, T] });
rollout('rolloutLogprob length mismatch', { ...goodRollout(), rolloutLogprob: f32(5) }, {}, 'ERR_AE_SHAPE_MISMATCH', 'rolloutLogprob');
rollout("unknown level 'batch'", goodRollout(), { level: 'batch' }, 'ERR_INVALID_ARG_VALUE', 'level');
rollout("unknown mode 'clip'", goodRollout(), { mode: 'clip' }, 'ERR_INVALID_ARG_VALUE', 'mode');
rollout('high ≤ 0', goodRollout(), { high: 0 }, 'ERR_OUT_OF_RANGE', 'high');
rollout('low > high', goodRollout(), { low: 3, high: 2 }, 'ERR_OUT_OF_RANGE', 'low');
rollout("unknown reject statistic 'k4'", goodRollout(), { reject: { statistic: 'k4', aggregate: 'token', bound: 1 } }, 'ERR_INVALID_ARG_VALUE', 'statistic');
rollout("unknown reject aggregate 'min'", goodRollout(), { reject: { statistic: 'k1', aggregate: 'min', bound: 1 } }, 'ERR_INVALID_ARG_VALUE', 'aggregate');

// ---- AdaptiveKlController ----
plain('AdaptiveKlController targetKl = 0', () => new ae.AdaptiveKlController({ initKlCoef: 0.1, targetKl: 0, horizon: 100 }), 'ERR_OUT_OF_RANGE', 'targetKl');
plain('AdaptiveKlController horizon < 0', () => new ae.AdaptiveKlController({ initKlCoef: 0.1, targetKl: 1, horizon: -5 }), 'ERR_OUT_OF_RANGE', 'horizon');
/* eslint-enable @typescript-eslint/no-explicit-any */

function details(error: unknown, c: Case) {
  const e = error as EngineError;
  const p = e.param ?? '';
  const names = p === c.param || p.endsWith(`.${c.param}`) || p.startsWith(`${c.param}[`) || p.includes(`.${c.param}[`);
  return { isEngineError: e instanceof EngineError, code: e.code, param: names ? c.param : p, ...(c.row !== undefined ? { row: e.row } : {}) };
}

const RUNS = CASES.flatMap((c) => BACKEND_NAMES.map((backend) => ({ ...c, backend, label: `${c.name} [${backend}]` })));

describe('bad inputs', () => {
  test.each(RUNS)('$label → $code ($param)', async (c) => {
    const expected = { isEngineError: true, code: c.code, param: c.param, ...(c.row !== undefined ? { row: c.row } : {}) };
    let thrown: unknown;
    try {
      c.sync(c.backend);
    } catch (error) {
      thrown = error;
    }
    expect(thrown === undefined ? 'nothing thrown' : details(thrown, c)).toEqual(expected);
    if (c.async) {
      let promise: Promise<unknown> | undefined;
      let syncThrow: unknown;
      try {
        promise = c.async(c.backend);
      } catch (error) {
        syncThrow = error;
      }
      expect(syncThrow === undefined ? 'no synchronous throw' : details(syncThrow, c)).toBe('no synchronous throw');
      let rejected: unknown;
      await promise!.then(() => undefined, (error) => { rejected = error; });
      expect(rejected === undefined ? 'resolved' : details(rejected, c)).toEqual(expected);
    }
  });
});
