/**
 * Whitening and mergeable statistics (SPEC §4.4). Every batch statistic the advantage family uses is also a
 * partial state that data-parallel ranks merge (their own all-reduce carries the numbers):
 *
 *   moments (count, mean, M2)  — Chan's merge: n = n_a + n_b, δ = μ_b − μ_a, μ = μ_a + δ·n_b/n,
 *                                M2 = M2_a + M2_b + δ²·n_a·n_b/n
 *   group moments              — the same per group key, merged key by key
 *   token counts               — sums
 *
 *   whiten(x, m) = (x − mean_m x) / sqrt(var_m x + eps), unbiased variance, eps 1e-8; fewer than 2 valid
 *   entries: x unchanged and `skipped` set. With `moments` (merged from every rank) the statistics are the
 *   whole batch's. Presets change the mean / variance conventions (lib/ops/advantage_presets.ts).
 *
 * Kernels: lib/js/moments.ts, lib/js/token_advantages.ts (tokenAdvantages, momentsPartial) and
 * native/token_advantages.cc; with `backend: 'cuda'` (whiten, momentsPartial) cuda/token_advantages.cu. Group
 * moments and token counts are small host-side reductions (JS only).
 */
import { ErrorCode, argError } from '../errors';
import * as is from '../is';
import { kernelOf, resolveCudaBackend, type BackendName } from '../backend';
import { kernelArg, type DeviceTensor } from '../cuda';
import * as jsMoments from '../js/moments';
import * as js from '../js/token_advantages';
import { SCAN } from '../js/token_advantages';
import { booleanOf, epsOf, groupIdsOf, groupSizeOf, maskOf, nonFinite, shapeOf, valuesOf, type GroupIds, type NumberArray, type Values } from './advantage_args';
import { advantagePreset } from './advantage_presets';
import { asyncForm, precisionOf, presetOf, run, syncForm, type Precision, type Preset } from './run';

/** (count, mean, M2 = Σ(x − mean)²) of a set of values; count may be a sum of weights. */
export interface Moments {
  count: number;
  mean: number;
  m2: number;
}

function momentsOf(value: unknown, param: string): Moments {
  if (!is.isPlainObject(value)) throw argError(ErrorCode.INVALID_ARG_TYPE, param, 'a Moments {count, mean, m2}', value);
  const m = value as unknown as Moments;
  for (const key of ['count', 'mean', 'm2'] as const) {
    if (typeof m[key] !== 'number' || !Number.isFinite(m[key])) {
      throw argError(ErrorCode.INVALID_ARG_TYPE, `${param}.${key}`, 'a finite number', m[key]);
    }
  }
  if (m.count < 0 || m.m2 < 0) throw argError(ErrorCode.OUT_OF_RANGE, param, 'count ≥ 0 and m2 ≥ 0', m.count);
  return m;
}

/** Chan's merge of any number of moment states, in the order given. */
export function mergeMoments(parts: readonly Moments[]): Moments {
  if (!Array.isArray(parts)) throw argError(ErrorCode.INVALID_ARG_TYPE, 'parts', 'an array of Moments', parts);
  const total: jsMoments.MomentsState = [0, 0, 0];
  parts.forEach((p, k) => {
    const m = momentsOf(p, `parts[${k}]`);
    jsMoments.mergeInto(total, m.count, m.mean, m.m2);
  });
  return { count: total[0], mean: total[1], m2: total[2] };
}

/** Mean, variance (unbiased by default: M2/(n − 1); 0 below 2 entries) and std of a state. */
export function finalizeMoments(m: Moments, options?: { unbiased?: boolean }): Moments & { variance: number; std: number } {
  const s = momentsOf(m, 'moments');
  const opts = is.options(options, 'opts', ['unbiased'] as const);
  const unbiased = booleanOf(opts.unbiased, 'opts.unbiased', true);
  const d = unbiased ? s.count - 1 : s.count;
  const variance = d > 0 ? s.m2 / d : 0;
  return { count: s.count, mean: s.mean, m2: s.m2, variance, std: Math.sqrt(variance) };
}

// ---- moments of an array, whitening ----

export interface MomentsOptions {
  /** Rows × columns of x (rows are reduced separately and merged in order); default [1, x.length]. */
  shape?: [number, number];
  backend?: BackendName;
}

function rowsOf(shape: unknown, length: number, param: string): [number, number] {
  if (shape === undefined) return [length === 0 ? 0 : 1, length];
  const s = shapeOf(shape, param);
  if (s[0] * s[1] !== length) throw argError(ErrorCode.SHAPE_MISMATCH, param, `a shape of ${length} elements`, shape);
  return s;
}

function momentsPartialImpl(async: boolean, x: NumberArray, mask?: Uint8Array | null, options?: MomentsOptions): Moments | Promise<Moments> {
  const opts = is.options(options, 'opts', ['shape', 'backend'] as const);
  const values = valuesOf(x, 'x');
  const m = mask === undefined || mask === null ? null : maskOf(mask, 'mask', values.length);
  const [rows, cols] = rowsOf(opts.shape, values.length, 'opts.shape');
  const out = new Float64Array(3);
  // The cuda addon takes the cpu addon's arguments (cuda/addon/token_advantages.cc).
  const backend = resolveCudaBackend(opts.backend, values.length, async);
  const kernel = kernelOf(backend, 'momentsPartial');
  return run(
    backend === 'js' ? 'js' : 'cpu', async,
    (a) => kernel(values, m, rows, cols, out, a),
    () => js.momentsPartial(values, m, rows, cols, out),
    (bad) => {
      if (bad >= 0) throw nonFinite('x', bad * cols, bad);
      return { count: out[0], mean: out[1], m2: out[2] };
    },
  );
}

/** (count, mean, M2) of x over the entries where mask = 1 (all when no mask), f64. Non-finite valid entries throw. */
export const momentsPartial = asyncForm(momentsPartialImpl);
export const momentsPartialSync = syncForm(momentsPartialImpl);

export interface WhitenOptions {
  /** false: add the mean back after scaling (verl shift_mean=False). Default true. */
  shiftMean?: boolean;
  /** var + eps; default 1e-8. */
  eps?: number;
  /** Merged moments of every rank: whiten with the whole batch's statistics. */
  moments?: Moments;
  preset?: Preset;
  shape?: [number, number];
  precision?: Precision;
  backend?: BackendName;
}

export interface WhitenResult<A extends Values = Float32Array> {
  values: A;
  /** The statistics used (this call's, or the `moments` given). */
  moments: Moments;
  /** Fewer than 2 valid entries: values returned unchanged. */
  skipped: boolean;
}

const WHITEN_KEYS = ['shiftMean', 'eps', 'moments', 'preset', 'shape', 'precision', 'backend'] as const;

function whitenImpl(async: boolean, x: NumberArray, mask?: Uint8Array | null, options?: WhitenOptions): WhitenResult<Values> | Promise<WhitenResult<Values>> {
  const opts = is.options(options, 'opts', WHITEN_KEYS);
  const values = valuesOf(x, 'x');
  const m = mask === undefined || mask === null ? null : maskOf(mask, 'mask', values.length);
  const [rows, cols] = rowsOf(opts.shape, values.length, 'opts.shape');
  const preset = advantagePreset(presetOf(opts.preset));
  const rule = { ...preset.whiten, eps: epsOf(opts.eps, 'opts.eps', preset.whiten.eps) };
  const given = opts.moments === undefined ? null : momentsOf(opts.moments, 'opts.moments');
  const exact = precisionOf(opts.precision) === 'f64';
  const job: js.TokenJob = {
    rows, cols, scan: SCAN.none, x: values, values: null, mask: m, gamma: 1, lambda: 1, gap: 0, whiten: true, rule,
    shiftMean: booleanOf(opts.shiftMean, 'opts.shiftMean', true), momentsIn: given && [given.count, given.mean, given.m2],
    maskOutput: false, out: exact ? new Float64Array(values.length) : new Float32Array(values.length), returns: null,
    momentsOut: new Float64Array(4),
  };
  const backend = resolveCudaBackend(opts.backend, values.length, async);
  const kernel = kernelOf(backend, 'tokenAdvantages');
  return run(
    backend === 'js' ? 'js' : 'cpu', async,
    (a) => kernel(...nativeTokenArgs(job), a),
    () => js.tokenAdvantages(job),
    (bad) => {
      if (bad >= 0) throw nonFinite('x', bad * cols, bad);
      const [count, mean, m2, skipped] = job.momentsOut;
      return { values: job.out, moments: { count, mean, m2 }, skipped: skipped === 1 };
    },
  );
}

type TokenArgs<V> = readonly [V, V | null, Uint8Array | null, number, number, Float64Array, Float64Array | null, V, V | null, Float64Array];
/**
 * The positional arguments of the native tokenAdvantages for a job (lib/native.ts documents them); a job's
 * DeviceTensors become the handles the CUDA glue reads.
 */
export function nativeTokenArgs(job: js.TokenJob): TokenArgs<Values>;
export function nativeTokenArgs(job: js.TokenJob<Values | DeviceTensor>): TokenArgs<Values | number>;
export function nativeTokenArgs(job: js.TokenJob<Values | DeviceTensor>): TokenArgs<Values | number> {
  const r = job.rule;
  const config = Float64Array.of(
    job.scan, job.gamma, job.lambda, job.gap, job.whiten ? 1 : 0, r.meanEps, r.unbiased ? 1 : 0,
    r.epsMode === 'clamp' ? 1 : 0, r.eps, job.shiftMean ? 1 : 0, job.maskOutput ? 1 : 0,
  );
  const momentsIn = job.momentsIn ? Float64Array.from(job.momentsIn) : null;
  return [
    kernelArg(job.x, 'inputs.rewards'), kernelArg(job.values, 'inputs.values'), job.mask, job.rows, job.cols, config, momentsIn,
    kernelArg(job.out, 'out'), kernelArg(job.returns, 'returns'), job.momentsOut,
  ];
}

/**
 * (x − mean_m x)/sqrt(var_m x + eps) over the valid entries of x (SPEC §4.4), unbiased variance, eps 1e-8;
 * every entry is transformed (masked ones too), statistics come from the valid ones. Fewer than 2 valid
 * entries: x is returned unchanged with `skipped`. Float32Array out (Float64Array with precision 'f64').
 */
export const whiten = asyncForm(whitenImpl) as {
  (x: NumberArray, mask: Uint8Array | null | undefined, options: WhitenOptions & { precision: 'f64' }): Promise<WhitenResult<Float64Array>>;
  (x: NumberArray, mask?: Uint8Array | null, options?: WhitenOptions): Promise<WhitenResult>;
};
export const whitenSync = syncForm(whitenImpl) as {
  (x: NumberArray, mask: Uint8Array | null | undefined, options: WhitenOptions & { precision: 'f64' }): WhitenResult<Float64Array>;
  (x: NumberArray, mask?: Uint8Array | null, options?: WhitenOptions): WhitenResult;
};

// ---- group moments and token counts ----

/** Per-group moments keyed by group id, ids in order of first appearance. */
export interface GroupMoments {
  ids: number[];
  count: number[];
  mean: number[];
  m2: number[];
  min: number[];
  max: number[];
}

/**
 * Moments of `values` [B] (NaN skipped) per group, from groupIds or contiguous groupSize. Merge ranks'
 * states with {@link mergeGroupMoments} when a group's rows are spread over several ranks.
 */
export function groupMomentsPartial(values: NumberArray, groups: { groupIds?: GroupIds; groupSize?: number }): GroupMoments {
  const v = valuesOf(values, 'values');
  const g = is.options(groups, 'groups', ['groupIds', 'groupSize'] as const);
  let keys: ArrayLike<number>;
  if (g.groupIds !== undefined) {
    const ids = groupIdsOf(g.groupIds, 'groups.groupIds', v.length);
    keys = ids instanceof Int32Array ? ids : Array.from(ids, (id, i) => {
      if (id > BigInt(Number.MAX_SAFE_INTEGER) || id < -BigInt(Number.MAX_SAFE_INTEGER)) {
        throw argError(ErrorCode.OUT_OF_RANGE, `groups.groupIds[${i}]`, 'an id below 2^53 in magnitude', id);
      }
      return Number(id);
    });
  } else {
    const size = groupSizeOf(g.groupSize, 'groups.groupSize', v.length);
    keys = Array.from({ length: v.length }, (_, i) => Math.floor(i / size));
  }
  for (let i = 0; i < v.length; i++) if (v[i] === Infinity || v[i] === -Infinity) throw nonFinite('values', i);
  return jsMoments.groupMoments(v, keys);
}

/** Merges group states key by key (ids in order of first appearance across the parts). */
export function mergeGroupMoments(parts: readonly GroupMoments[]): GroupMoments {
  const index = new Map<number, number>();
  const out: GroupMoments = { ids: [], count: [], mean: [], m2: [], min: [], max: [] };
  const states: jsMoments.MomentsState[] = [];
  for (const p of parts) {
    p.ids.forEach((id, j) => {
      let g = index.get(id);
      if (g === undefined) {
        g = out.ids.length;
        index.set(id, g);
        out.ids.push(id), out.min.push(Infinity), out.max.push(-Infinity);
        states.push([0, 0, 0]);
      }
      jsMoments.mergeInto(states[g], p.count[j], p.mean[j], p.m2[j]);
      out.min[g] = Math.min(out.min[g], p.min[j]);
      out.max[g] = Math.max(out.max[g], p.max[j]);
    });
  }
  for (const [n, mean, m2] of states) out.count.push(n), out.mean.push(mean), out.m2.push(m2);
  return out;
}

/** Per-group mean and unbiased std (0 below 2 values). */
export function finalizeGroupMoments(g: GroupMoments): { ids: number[]; count: number[]; mean: number[]; std: number[] } {
  return { ids: g.ids, count: g.count, mean: g.mean, std: g.m2.map((m2, k) => (g.count[k] >= 2 ? Math.sqrt(m2 / (g.count[k] - 1)) : 0)) };
}

export interface TokenCounts {
  /** Valid tokens Σ m. */
  tokens: number;
  /** Rows with at least one valid token. */
  sequences: number;
  rows: number;
}

/** Token counts of a [B, T] mask (the global normaliser of token-mean losses once merged). */
export function tokenCountsPartial(mask: Uint8Array, shape: [number, number]): TokenCounts {
  const [B, T] = shapeOf(shape, 'shape');
  const m = maskOf(mask, 'mask', B * T);
  let tokens = 0, sequences = 0;
  for (let b = 0; b < B; b++) {
    let n = 0;
    for (let t = 0; t < T; t++) n += m[b * T + t];
    tokens += n;
    if (n > 0) sequences++;
  }
  return { tokens, sequences, rows: B };
}

export function mergeTokenCounts(parts: readonly TokenCounts[]): TokenCounts {
  return parts.reduce((a, p) => ({ tokens: a.tokens + p.tokens, sequences: a.sequences + p.sequences, rows: a.rows + p.rows }), { tokens: 0, sequences: 0, rows: 0 });
}
