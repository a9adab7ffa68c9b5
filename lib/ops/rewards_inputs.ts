/**
 * Readers for the inputs of the reward family (SPEC §5): per-sequence arrays `[B]`, step arrays `[B, S]` with
 * their step counts, per-token arrays `[B, T]`, 0/1 outcomes, lengths and group ids. Each validates fully and
 * throws a coded EngineError naming the parameter, so every reward function checks everything before it
 * computes anything. Values are read in place (Float32Array / Float64Array) or converted once (number[]).
 */
import { ErrorCode, EngineError, argError } from '../errors';
import * as is from '../is';

/** A numeric input: Float32Array, Float64Array, or an array of numbers. */
export type Numbers = Float32Array | Float64Array | readonly number[];
/** 0/1 input (correct / wrong, truncated, valid): Uint8Array, any numeric array of 0/1, or booleans. */
export type Binary = Uint8Array | Float32Array | Float64Array | Int32Array | readonly (number | boolean)[];
/** Integer input (lengths, positions, counts, group ids). */
export type Integers = Int32Array | Uint32Array | Float64Array | readonly number[];

/** A numeric array of `length` values (any length when undefined), finite unless `allowNaN` (NaN only). */
export function numbers(value: unknown, param: string, length?: number, allowNaN = false): Float32Array | Float64Array {
  const out = is.floatArray(value, param, length);
  for (let i = 0; i < out.length; i++) {
    const x = out[i];
    if (x - x !== 0 && !(allowNaN && x !== x)) {
      throw argError(ErrorCode.NON_FINITE, `${param}[${i}]`, allowNaN ? 'a finite number or NaN' : 'a finite number', x);
    }
  }
  return out;
}

/** A 0/1 array of `length` entries (booleans accepted) as a Uint8Array. */
export function binary(value: unknown, param: string, length?: number): Uint8Array {
  if (!(ArrayBuffer.isView(value) || Array.isArray(value)) || value instanceof DataView || value instanceof BigInt64Array) {
    throw argError(ErrorCode.INVALID_ARG_TYPE, param, 'a Uint8Array, numeric array or boolean[] of 0/1', value);
  }
  const source = value as ArrayLike<number | boolean>;
  if (length !== undefined && source.length !== length) {
    throw argError(ErrorCode.SHAPE_MISMATCH, param, `${length} entries of 0/1`, value);
  }
  if (value instanceof Uint8Array) {
    for (let i = 0; i < value.length; i++) {
      if (value[i] > 1) throw argError(ErrorCode.INVALID_ARG_VALUE, `${param}[${i}]`, '0 or 1', value[i]);
    }
    return value;
  }
  const out = new Uint8Array(source.length);
  for (let i = 0; i < source.length; i++) {
    const v = source[i];
    if (v === true || v === 1) out[i] = 1;
    else if (v !== false && v !== 0) throw argError(ErrorCode.INVALID_ARG_VALUE, `${param}[${i}]`, '0 or 1 (or a boolean)', v);
  }
  return out;
}

/** Integers in [low, high] as an Int32Array (`length` of them when given). */
export function integers(value: unknown, param: string, length: number | undefined, low: number, high: number): Int32Array {
  if (!(value instanceof Int32Array || value instanceof Uint32Array || value instanceof Float64Array || Array.isArray(value))) {
    throw argError(ErrorCode.INVALID_ARG_TYPE, param, 'an Int32Array, Uint32Array, Float64Array or number[] of integers', value);
  }
  const source = value as ArrayLike<number>;
  if (length !== undefined && source.length !== length) {
    throw argError(ErrorCode.SHAPE_MISMATCH, param, `${length} integers`, value);
  }
  const out = value instanceof Int32Array ? value : new Int32Array(source.length);
  for (let i = 0; i < source.length; i++) {
    const v = source[i];
    if (typeof v !== 'number' || !Number.isInteger(v)) throw argError(ErrorCode.INVALID_ARG_TYPE, `${param}[${i}]`, 'an integer', v);
    if (v < low || v > high) throw argError(ErrorCode.OUT_OF_RANGE, `${param}[${i}]`, `an integer in [${low}, ${high}]`, v);
    out[i] = v;
  }
  return out;
}

const INT32_MAX = 2147483647;

/** Response lengths: integers ≥ 0 (a negative length is ERR_OUT_OF_RANGE). */
export function lengths(value: unknown, param: string, length?: number): Int32Array {
  return integers(value, param, length, 0, INT32_MAX);
}

/** Dense groups from arbitrary integer ids (first-appearance order): index per sequence and group sizes. */
export interface Groups {
  index: Int32Array;
  count: number;
  size: Int32Array;
  /** The caller's id of each dense group. */
  ids: number[];
}

/** `groupIds` (any integers, need not be contiguous) or, when undefined, the whole batch as one group. */
export function groups(value: unknown, param: string, length: number): Groups {
  const index = new Int32Array(length);
  if (value === undefined) {
    return { index, count: length > 0 ? 1 : 0, size: Int32Array.of(length), ids: length > 0 ? [0] : [] };
  }
  const raw = integers(value, param, length, -INT32_MAX - 1, INT32_MAX);
  const dense = new Map<number, number>();
  const ids: number[] = [];
  for (let i = 0; i < length; i++) {
    let g = dense.get(raw[i]);
    if (g === undefined) {
      g = ids.length;
      dense.set(raw[i], g);
      ids.push(raw[i]);
    }
    index[i] = g;
  }
  const size = new Int32Array(ids.length);
  for (let i = 0; i < length; i++) size[index[i]]++;
  return { index, count: ids.length, size, ids };
}

/** A `[rows, cols]` shape: two integers ≥ 0 (rows·cols must be a safe integer). */
export function shape2(value: unknown, param: string): [number, number] {
  if (!Array.isArray(value) || value.length !== 2) throw argError(ErrorCode.INVALID_ARG_TYPE, param, 'a shape [rows, cols]', value);
  const rows = is.nonNegativeInteger(value[0], `${param}[0]`);
  const cols = is.nonNegativeInteger(value[1], `${param}[1]`);
  if (!Number.isSafeInteger(rows * cols)) throw argError(ErrorCode.OUT_OF_RANGE, param, 'a product below 2^53', value);
  return [rows, cols];
}

/** The column count of a flat `[rows, cols]` array whose row count is known. */
export function columnsOf(total: number, rows: number, param: string): number {
  if (rows === 0) {
    if (total !== 0) throw argError(ErrorCode.SHAPE_MISMATCH, param, '0 values for 0 rows', total);
    return 0;
  }
  if (total % rows !== 0) {
    throw new EngineError(ErrorCode.SHAPE_MISMATCH, `Expected ${param} to hold ${rows} rows of equal length but received ${total} values`, {
      param, expected: `a multiple of ${rows} values`, received: `${total} values`,
    });
  }
  return total / rows;
}

/** Steps per row: integers in [0, S]; every row has S steps when undefined. */
export function stepCounts(value: unknown, param: string, rows: number, steps: number): Int32Array {
  if (value === undefined) return new Int32Array(rows).fill(steps);
  return integers(value, param, rows, 0, steps);
}

/**
 * Step end positions `[B, S]`: the last token of each step, strictly increasing within a row's first
 * `counts[b]` steps and inside [0, T) (a boundary beyond T is ERR_OUT_OF_RANGE). Entries past a row's count
 * are ignored.
 */
export function stepEnds(value: unknown, param: string, rows: number, steps: number, counts: Int32Array, tokens: number): Int32Array {
  const ends = integers(value, param, rows * steps, -INT32_MAX - 1, INT32_MAX);
  for (let b = 0; b < rows; b++) {
    let previous = -1;
    for (let s = 0; s < counts[b]; s++) {
      const e = ends[b * steps + s];
      const at = `${param}[${b * steps + s}]`;
      if (e < 0 || e >= tokens) throw argError(ErrorCode.OUT_OF_RANGE, at, `a token position in [0, ${tokens}) (T = ${tokens})`, e);
      if (e <= previous) throw argError(ErrorCode.INVALID_ARG_VALUE, at, `a step end after the previous one (${previous})`, e);
      previous = e;
    }
  }
  return ends;
}

/** A plain options object with only `known` keys (undefined → {}). */
export function options<K extends string>(value: unknown, known: readonly K[]): Partial<Record<K, unknown>> {
  return is.options(value, 'opts', known);
}

/** An input record (the first argument of the reward functions) with only `known` keys. */
export function inputs<K extends string>(value: unknown, known: readonly K[]): Partial<Record<K, unknown>> {
  if (!is.isPlainObject(value)) throw argError(ErrorCode.INVALID_ARG_TYPE, 'inputs', 'an input record', value);
  return is.options(value, 'inputs', known);
}

/** A required field of an input or options record. */
export function required<T>(value: T | undefined, param: string): T {
  if (value === undefined) throw argError(ErrorCode.INVALID_ARG_VALUE, param, 'a value (required)', value);
  return value;
}

/** An optional number with a default. */
export function numberOr(value: unknown, param: string, fallback: number): number {
  return value === undefined ? fallback : is.finiteNumber(value, param);
}

/** The f64 values of an f32 result buffer. */
export function f32(values: ArrayLike<number>): Float32Array {
  return Float32Array.from(values);
}
