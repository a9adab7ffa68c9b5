/**
 * Bad inputs: one row per case, asserting the error's `code` and `param` (never whole messages). For each
 * async function the Promise rejects (it does not throw) with the same code and param.
 */
import * as ae from '../lib';
import { EngineError } from '../lib/errors';
import { fromNumbers, Tensor } from '../lib/tensor';
import { backendCases, makeLogits, rng } from './helpers';

const r = rng('errors');
const { logits, tokens } = makeLogits(r, [2, 5], 'f32', { negInf: false }); // N = 2, V = 5
const bf16 = makeLogits(r, [2, 5], 'bf16').logits;
const grad = new Float32Array(2).fill(1);
const BACKEND_NAMES = backendCases().filter((c) => !c.simd).map((c) => c.backend);

/** Rows 1 (NaN) and 2 (+inf) and 3 (all −inf) are not finite; the first is row 1. */
const nonFinite: Tensor = fromNumbers([0, 1, 2, NaN, 1, 2, 0, Infinity, 1, -Infinity, -Infinity, -Infinity], [4, 3], 'f32');

interface Case {
  name: string;
  code: string;
  param?: string;
  row?: number;
  /** Throws synchronously. */
  sync: () => unknown;
  /** Returns a Promise that rejects. */
  async?: () => Promise<unknown>;
}

const CASES: Case[] = [];
type Opts = Record<string, unknown>;
/* eslint-disable @typescript-eslint/no-explicit-any */
const forward = (name: string, x: unknown, opts: unknown, code: string, param: string, row?: number) =>
  CASES.push({ name: `tokenStats: ${name}`, code, param, row, sync: () => ae.tokenStatsSync(x as any, opts as any), async: () => ae.tokenStats(x as any, opts as any) });
const backward = (name: string, x: unknown, opts: unknown, code: string, param: string, row?: number) =>
  CASES.push({ name: `tokenStatsBackward: ${name}`, code, param, row, sync: () => ae.tokenStatsBackwardSync(x as any, opts as any), async: () => ae.tokenStatsBackward(x as any, opts as any) });
const partial = (name: string, x: unknown, opts: unknown, code: string, param: string) =>
  CASES.push({ name: `tokenStatsPartial: ${name}`, code, param, sync: () => ae.tokenStatsPartialSync(x as any, opts as any), async: () => ae.tokenStatsPartial(x as any, opts as any) });
const kl = (name: string, p: unknown, q: unknown, opts: unknown, code: string, param: string, row?: number) =>
  CASES.push({ name: `fullKl: ${name}`, code, param, row, sync: () => ae.fullKlSync(p as any, q as any, opts as any), async: () => ae.fullKl(p as any, q as any, opts as any) });
const plain = (name: string, call: () => unknown, code: string, param: string) => CASES.push({ name, code, param, sync: call });
const withTokens = (extra: Opts) => ({ tokens, ...extra });

// ---- logits ----
forward('a bare Float32Array as logits', new Float32Array(10), {}, 'ERR_INVALID_ARG_TYPE', 'logits');
forward('null logits', null, {}, 'ERR_INVALID_ARG_TYPE', 'logits');
forward('Float64Array data for dtype f32', { data: new Float64Array(10), shape: [2, 5], dtype: 'f32' }, {}, 'ERR_AE_DTYPE', 'logits.data');
forward('Float32Array data for dtype bf16', { data: new Float32Array(10), shape: [2, 5], dtype: 'bf16' }, {}, 'ERR_AE_DTYPE', 'logits.data');
forward("unknown dtype 'f8'", { data: new Float32Array(10), shape: [2, 5], dtype: 'f8' }, {}, 'ERR_AE_DTYPE', 'logits.dtype');
forward('shape product ≠ length', { data: new Float32Array(10), shape: [3, 5], dtype: 'f32' }, {}, 'ERR_AE_SHAPE_MISMATCH', 'logits.data');
forward('1-D logits', { data: new Float32Array(10), shape: [10], dtype: 'f32' }, {}, 'ERR_AE_SHAPE_MISMATCH', 'logits.shape');
forward('4-D logits', { data: new Float32Array(10), shape: [1, 2, 1, 5], dtype: 'f32' }, {}, 'ERR_AE_SHAPE_MISMATCH', 'logits.shape');
forward('V = 0', { data: new Float32Array(0), shape: [2, 0], dtype: 'f32' }, {}, 'ERR_AE_SHAPE_MISMATCH', 'logits.shape');
forward('negative dimension', { data: new Float32Array(10), shape: [-2, -5], dtype: 'f32' }, {}, 'ERR_OUT_OF_RANGE', 'logits.shape[0]');
plain("tensor(): unknown dtype 'f8'", () => ae.tensor(new Float32Array(2), [2], 'f8' as any), 'ERR_AE_DTYPE', 'dtype');
plain('tensor(): Uint16Array without a dtype', () => ae.tensor(new Uint16Array(2), [2]), 'ERR_AE_DTYPE', 'dtype');
plain('tensor(): Int8Array data', () => ae.tensor(new Int8Array(2) as any, [2]), 'ERR_INVALID_ARG_TYPE', 'data');

// ---- tokens ----
forward('tokens of the wrong length', logits, { tokens: [0] }, 'ERR_AE_SHAPE_MISMATCH', 'opts.tokens');
forward('tokens Int32Array of the wrong length', logits, { tokens: new Int32Array(3) }, 'ERR_AE_SHAPE_MISMATCH', 'opts.tokens');
forward('tokens as a string', logits, { tokens: 'ab' }, 'ERR_INVALID_ARG_TYPE', 'opts.tokens');
forward('tokens as a Float32Array', logits, { tokens: new Float32Array(2) }, 'ERR_INVALID_ARG_TYPE', 'opts.tokens');
forward('a fractional token id', logits, { tokens: [0, 1.5] }, 'ERR_INVALID_ARG_TYPE', 'opts.tokens[1]');
forward('token −1', logits, { tokens: [-1, 0] }, 'ERR_AE_TOKEN_RANGE', 'opts.tokens[0]');
forward('token V (Int32Array)', logits, { tokens: new Int32Array([0, 5]) }, 'ERR_AE_TOKEN_RANGE', 'opts.tokens[1]');
forward('token V (BigInt64Array)', logits, { tokens: new BigInt64Array([5n, 0n]) }, 'ERR_AE_TOKEN_RANGE', 'opts.tokens[0]');
forward('token 2^32 (Uint32Array max)', logits, { tokens: new Uint32Array([0, 2 ** 32 - 1]) }, 'ERR_AE_TOKEN_RANGE', 'opts.tokens[1]');

// ---- temperature ----
forward('temperature 0', logits, { temperature: 0 }, 'ERR_OUT_OF_RANGE', 'opts.temperature');
forward('temperature −1', logits, { temperature: -1 }, 'ERR_OUT_OF_RANGE', 'opts.temperature');
forward('temperature NaN', logits, { temperature: NaN }, 'ERR_OUT_OF_RANGE', 'opts.temperature');
forward('temperature +Infinity', logits, { temperature: Infinity }, 'ERR_OUT_OF_RANGE', 'opts.temperature');
forward("temperature '1'", logits, { temperature: '1' }, 'ERR_INVALID_ARG_TYPE', 'opts.temperature');

// ---- options ----
forward('options that are not an object', logits, 7, 'ERR_INVALID_ARG_TYPE', 'opts');
forward("misspelt option 'temprature'", logits, { temprature: 0.7 }, 'ERR_INVALID_ARG_VALUE', 'opts.temprature');
forward("outputs with an unknown name 'perplexity'", logits, withTokens({ outputs: ['entropy', 'perplexity'] }), 'ERR_INVALID_ARG_VALUE', 'opts.outputs[1]');
forward('outputs that is not an array', logits, { outputs: 'entropy' }, 'ERR_INVALID_ARG_TYPE', 'opts.outputs');
forward("'logprob' without tokens", logits, { outputs: ['entropy', 'logprob'] }, 'ERR_INVALID_ARG_VALUE', 'opts.outputs');
forward('rowMask of the wrong length', logits, { rowMask: new Uint8Array(3) }, 'ERR_AE_SHAPE_MISMATCH', 'opts.rowMask');
forward('rowMask value 2', logits, { rowMask: new Uint8Array([1, 2]) }, 'ERR_INVALID_ARG_VALUE', 'opts.rowMask[1]');
forward("nonFinite 'ignore'", logits, { nonFinite: 'ignore' }, 'ERR_INVALID_ARG_VALUE', 'opts.nonFinite');
forward('out buffer of the wrong length', logits, { out: { entropy: new Float32Array(3) } }, 'ERR_AE_SHAPE_MISMATCH', 'opts.out.entropy');
forward('out buffer of the wrong kind', logits, { out: { entropy: new Float64Array(2) } }, 'ERR_INVALID_ARG_TYPE', 'opts.out.entropy');
forward("out with an unknown name 'perplexity'", logits, { out: { perplexity: new Float32Array(2) } }, 'ERR_INVALID_ARG_VALUE', 'opts.out.perplexity');
for (const backend of BACKEND_NAMES) {
  forward(`NaN / +inf / all −inf rows, default nonFinite (${backend})`, nonFinite, { backend }, 'ERR_AE_NON_FINITE', 'logits', 1);
}

// ---- backward ----
backward('neither gradLogprob nor gradEntropy', logits, { tokens }, 'ERR_INVALID_ARG_VALUE', 'opts');
backward('no options at all', logits, undefined, 'ERR_INVALID_ARG_VALUE', 'opts');
backward('gradLogprob without tokens', logits, { gradLogprob: grad }, 'ERR_INVALID_ARG_VALUE', 'opts.tokens');
backward('gradEntropy of the wrong length', logits, { gradEntropy: new Float32Array(3) }, 'ERR_AE_SHAPE_MISMATCH', 'opts.gradEntropy');
backward('gradEntropy as a Float64Array', logits, { gradEntropy: new Float64Array(2) }, 'ERR_INVALID_ARG_TYPE', 'opts.gradEntropy');
backward('out of the wrong length', logits, { gradEntropy: grad, out: new Float32Array(9) }, 'ERR_AE_SHAPE_MISMATCH', 'opts.out');
backward('out of the wrong kind (Float64Array for f32)', logits, { gradEntropy: grad, out: new Float64Array(10) }, 'ERR_INVALID_ARG_TYPE', 'opts.out');
backward('out of the wrong kind (Float64Array for bf16)', bf16, { gradEntropy: grad, out: new Float64Array(10) }, 'ERR_INVALID_ARG_TYPE', 'opts.out');
backward('inPlace together with out', logits, { gradEntropy: grad, inPlace: true, out: new Float32Array(10) }, 'ERR_INVALID_ARG_VALUE', 'opts.out');
backward("inPlace 'yes'", logits, { gradEntropy: grad, inPlace: 'yes' }, 'ERR_INVALID_ARG_TYPE', 'opts.inPlace');
backward('token V', logits, { gradLogprob: grad, tokens: [5, 0] }, 'ERR_AE_TOKEN_RANGE', 'opts.tokens[0]');
for (const backend of BACKEND_NAMES) {
  backward(`NaN / +inf / all −inf rows (${backend})`, nonFinite, { gradEntropy: new Float32Array(4), backend }, 'ERR_AE_NON_FINITE', 'logits', 1);
}

// ---- partial states and merge ----
partial('no vocabOffset', logits, {}, 'ERR_INVALID_ARG_TYPE', 'opts.vocabOffset');
partial('vocabOffset −1', logits, { vocabOffset: -1 }, 'ERR_OUT_OF_RANGE', 'opts.vocabOffset');
partial('a negative global token', logits, { vocabOffset: 0, tokens: [0, -1] }, 'ERR_AE_TOKEN_RANGE', 'opts.tokens[1]');
const state = ae.tokenStatsPartialSync(logits, { vocabOffset: 0 });
const threeRows = ae.tokenStatsPartialSync(fromNumbers(new Float64Array(6), [3, 2], 'f64'), { vocabOffset: 5 });
plain('mergeTokenStats of no parts', () => ae.mergeTokenStats([]), 'ERR_INVALID_ARG_TYPE', 'parts');
plain('mergeTokenStats of parts with different row counts', () => ae.mergeTokenStats([state, threeRows]), 'ERR_AE_SHAPE_MISMATCH', 'parts[1]');
plain('mergeTokenStatsPartial of a non-state', () => ae.mergeTokenStatsPartial([state, { rows: 2 } as any]), 'ERR_INVALID_ARG_TYPE', 'parts[1]');
plain("mergeTokenStats nonFinite 'skip'", () => ae.mergeTokenStats([state], { nonFinite: 'skip' as any }), 'ERR_INVALID_ARG_VALUE', 'opts.nonFinite');

// ---- full KL ----
kl('shape mismatch', logits, fromNumbers(new Float32Array(12), [2, 6], 'f32'), {}, 'ERR_AE_SHAPE_MISMATCH', 'refLogits.shape');
kl('dtype mismatch', logits, bf16, {}, 'ERR_AE_DTYPE', 'refLogits.dtype');
kl('temperature 0', logits, logits, { temperature: 0 }, 'ERR_OUT_OF_RANGE', 'opts.temperature');
for (const backend of BACKEND_NAMES) {
  kl(`NaN / +inf / all −inf rows in p (${backend})`, nonFinite, fromNumbers(new Float32Array(12), [4, 3], 'f32'), { backend }, 'ERR_AE_NON_FINITE', 'logits', 1);
}

// ---- entropyMask ----
const h = new Float32Array([1, 2, 3]);
plain('entropyMask ρ = 1.5', () => ae.entropyMask(h, null, { topQuantile: 1.5 }), 'ERR_OUT_OF_RANGE', 'opts.topQuantile');
plain('entropyMask ρ = −0.1', () => ae.entropyMask(h, null, { topQuantile: -0.1 }), 'ERR_OUT_OF_RANGE', 'opts.topQuantile');
plain('entropyMask without topQuantile', () => ae.entropyMask(h, null, {} as any), 'ERR_INVALID_ARG_TYPE', 'opts.topQuantile');
plain('entropyMask of a number[]', () => ae.entropyMask([1, 2] as any, null, { topQuantile: 0.5 }), 'ERR_INVALID_ARG_TYPE', 'entropy');
plain('entropyMask mask of the wrong length', () => ae.entropyMask(h, new Uint8Array(2), { topQuantile: 0.5 }), 'ERR_AE_SHAPE_MISMATCH', 'mask');

// ---- backends ----
plain("setBackend('gpu')", () => ae.setBackend('gpu' as any), 'ERR_INVALID_ARG_VALUE', 'backend');
// 'cuda' is a known backend name that this build cannot provide: unavailable rather than invalid.
plain("setBackend('cuda')", () => ae.setBackend('cuda' as any), 'ERR_AE_BACKEND_UNAVAILABLE', 'backend');
forward("explicit backend 'cuda'", logits, { backend: 'cuda' }, 'ERR_AE_BACKEND_UNAVAILABLE', 'opts.backend');
forward("explicit backend 'gpu'", logits, { backend: 'gpu' }, 'ERR_INVALID_ARG_VALUE', 'opts.backend');
plain('setThreads(0)', () => ae.setThreads(0), 'ERR_OUT_OF_RANGE', 'threads');
if (ae.backendInfo().native.loaded) {
  plain("setSimd('sse9')", () => ae.setSimd('sse9' as any), 'ERR_INVALID_ARG_VALUE', 'simd');
} else {
  forward("explicit backend 'cpu' without the addon", logits, { backend: 'cpu' }, 'ERR_AE_BACKEND_UNAVAILABLE', 'opts.backend');
  plain("setBackend('cpu') without the addon", () => ae.setBackend('cpu'), 'ERR_AE_BACKEND_UNAVAILABLE', 'backend');
}
/* eslint-enable @typescript-eslint/no-explicit-any */

function details(error: unknown) {
  const e = error as EngineError;
  return { isEngineError: e instanceof EngineError, code: e.code, param: e.param, ...(e.row !== undefined ? { row: e.row } : {}) };
}

describe('bad inputs', () => {
  afterAll(() => ae.setBackend('auto'));

  test.each(CASES)('$name → $code ($param)', async (c) => {
    const expected = { isEngineError: true, code: c.code, param: c.param, ...(c.row !== undefined ? { row: c.row } : {}) };
    let thrown: unknown;
    try {
      c.sync();
    } catch (error) {
      thrown = error;
    }
    expect(thrown === undefined ? 'nothing thrown' : details(thrown)).toEqual(expected);
    if (c.async) {
      let promise: Promise<unknown> | undefined;
      let syncThrow: unknown;
      try {
        promise = c.async();
      } catch (error) {
        syncThrow = error; // an async function must reject, not throw
      }
      expect(syncThrow === undefined ? 'no synchronous throw' : details(syncThrow)).toBe('no synchronous throw');
      const rejection = await promise!.then(() => 'resolved', (error: unknown) => details(error));
      expect(rejection).toEqual(expected);
    }
  });

  test("a misspelt option names the closest valid option in the message (the hint)", () => {
    let message = '';
    try {
      ae.tokenStatsSync(logits, { temprature: 0.7 } as never);
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toMatch(/'temperature'/);
  });
});
